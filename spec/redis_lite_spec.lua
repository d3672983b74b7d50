-- examples/redis_lite.lua under the launcher with 2 workers, driven by real
-- clients: Debian's redis-cli (commands, --pipe mass insertion, --csv),
-- redis-benchmark, and lupine.redis's own client; then bad input and faults,
-- each with a named outcome.
local lupine = require "lupine"
local redis = require "lupine.redis"
local test = require "lupine.test"
local proc = require "proc"

local loop = lupine.loop()

-- Run a shell command (bounded by timeout(1)); its stdout.
local function sh(cmd)
  local p = io.popen("timeout 120 " .. cmd .. " 2>&1")
  local out = p:read("a")
  p:close()
  return out
end

local function need(tool)
  local found = sh("command -v " .. tool) ~= ""
  assert(found, tool .. " is not installed: `make test` installs redis-tools (Makefile TEST_DEPS)")
end

local function rss_kb(pid)
  local f = assert(io.open("/proc/" .. pid .. "/status"))
  local kb = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kb)
end

describe("examples/redis_lite.lua", function()
  local p, port, cli
  setup(function()
    need("redis-cli")
    need("redis-benchmark")
    p = proc.start("-w 2 -p 0 examples/redis_lite.lua", { env = "REDIS_LITE_MEMORY=128m" })
    port = p:port()
    cli = "redis-cli -p " .. port .. " "
  end)
  teardown(function() if p then p:cleanup() end end)
  before_each(function() sh(cli .. "FLUSHALL") end)

  local function call(c, ...) return c:call(...):sync(10) end

  describe("with redis-cli", function()
    it("answers the commands people type", function()
      local out = sh("printf 'PING\\nSET greeting \"hello world\"\\nGET greeting\\nINCR n\\nINCRBY n 41\\n"
        .. "LPUSH l a b\\nLRANGE l 0 -1\\nTTL greeting\\nNOSUCH x\\nGET\\nQUIT\\n' | " .. cli)
      -- (redis-cli, not a terminal, prints an error then an empty line, and QUIT's answer not at all)
      assert.equal("PONG\nOK\nhello world\n1\n42\n2\nb\na\n-1\n"
        .. "ERR unknown command 'NOSUCH', with args beginning with: 'x' \n\n"
        .. "ERR wrong number of arguments for 'get' command\n\n", out)
    end)

    it("takes 100,000 keys through --pipe", function()
      local file = os.tmpname()
      local f = assert(io.open(file, "wb"))
      for i = 1, 100000 do f:write(redis.command("SET", "key:" .. i, "value " .. i)) end
      f:close()
      local out = sh(cli .. "--pipe < " .. file)
      os.remove(file)
      assert.matches("errors: 0, replies: 100000", out)
      assert.equal("100000\n", sh(cli .. "DBSIZE"))
      assert.equal("value 77777\n", sh(cli .. "GET key:77777"))
    end)

    it("prints --csv", function()
      sh(cli .. "RPUSH l a 'b c' 3")
      assert.equal('"a","b c","3"\n', sh(cli .. "--csv LRANGE l 0 -1"))
      assert.equal('3\n', sh(cli .. "--csv LLEN l"))
    end)
  end)

  it("passes redis-benchmark's test of each command it has", function()
    local out = sh("redis-benchmark -p " .. port .. " -q -n 2000 -c 10 "
      .. "-t ping,set,get,incr,lpush,rpush,lpop,rpop,mset,lrange_100")
    for _, t in ipairs { "PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP",
      "MSET %(10 keys%)", "LRANGE_100 %(first 100 elements%)" } do
      assert.matches("\n?" .. t .. ": [%d.]+ requests per second", out)
    end
    assert.is_nil(out:find("ERR", 1, true))
  end)

  describe("with lupine.redis's client", function()
    it("pipelines: a thousand commands in flight on one connection", function()
      local c = redis.connect({ port = port }):sync()
      local futures = {}
      for i = 1, 1000 do futures[i] = c:call("INCR", "counter") end
      assert.equal(1000, c:pendingCount())
      for i = 1, 1000 do assert.equal(i, futures[i]:sync()) end
      local f = c:call("GET", "counter")
      assert.equal("1000", f:sync())
      local bad = c:call("INCR")
      assert.has_error(function() bad:sync() end, "ERR wrong number of arguments for 'incr' command")
      c:close()
    end)

    it("keeps SET's options, expiry and types as Redis does", function()
      local c = redis.connect({ port = port }):sync()
      assert.equal("OK", call(c, "SET", "k", "v", "EX", 100))
      assert.equal(redis.null, call(c, "SET", "k", "w", "NX"))
      assert.equal("v", call(c, "SET", "k", "w", "XX", "GET"))
      local ttl = call(c, "TTL", "k")
      assert.equal(-1, ttl) -- a SET without EX clears the expiry
      assert.equal(1, call(c, "PEXPIRE", "k", 100000))
      assert.is_true(call(c, "PTTL", "k") > 99000)
      assert.equal(1, call(c, "PERSIST", "k"))
      assert.equal(-1, call(c, "TTL", "k"))
      assert.equal(-2, call(c, "TTL", "nope"))
      call(c, "RPUSH", "list", "x")
      assert.has_error(function() call(c, "GET", "list") end,
        "WRONGTYPE Operation against a key holding the wrong kind of value")
      assert.has_error(function() call(c, "INCR", "k") end, "ERR value is not an integer or out of range")
      call(c, "SET", "max", tostring(math.maxinteger))
      assert.has_error(function() call(c, "INCR", "max") end, "ERR increment or decrement would overflow")
      assert.same({ "k", "list", "max" }, (function()
        local keys = call(c, "KEYS", "*")
        table.sort(keys)
        return keys
      end)())
      assert.same({ "list" }, call(c, "KEYS", "l?s[st]"))
      assert.equal(redis.null, call(c, "GETDEL", "nope"))
      assert.equal("w", call(c, "GETDEL", "k"))
      assert.equal(0, call(c, "EXISTS", "k"))
      c:close()
    end)

    it("expires at the boundary: present just before, gone after", function()
      local c = redis.connect({ port = port }):sync()
      call(c, "SET", "short", "v", "PX", 200)
      local pttl = call(c, "PTTL", "short")
      assert.is_true(pttl > 0 and pttl <= 200, "pttl " .. pttl)
      local gone = false
      for _ = 1, 250 do -- bounded: 5 s
        if call(c, "GET", "short") == redis.null then gone = true break end
        loop:runFor(0.02)
      end
      assert.is_true(gone, "the key expired")
      assert.equal(-2, call(c, "PTTL", "short"))
      c:close()
    end)

    it("publishes across workers: a subscriber on one, the publisher on the other", function()
      local sub = redis.connect({ port = port }):sync()
      local pub = redis.connect({ port = port }):sync()
      local w1 = call(sub, "INFO"):match("worker:(%d+)")
      local w2 = call(pub, "INFO"):match("worker:(%d+)")
      assert.are_not.equal(w1, w2) -- round robin: one connection on each worker
      local got = {}
      assert.same({ "subscribe", "news", 1 }, sub:subscribe("news", function(msg, chan) got[#got + 1] = chan .. ":" .. msg end):sync())
      assert.equal(1, call(pub, "PUBLISH", "news", "one"))
      call(pub, "PUBLISH", "news", "two")
      assert.equal(0, call(pub, "PUBLISH", "other", "x"))
      test.eventually(function() return #got == 2 end, 5, "the messages")
      assert.same({ "news:one", "news:two" }, got)
      assert.same({ "unsubscribe", "news", 0 }, sub:unsubscribe("news"):sync())
      assert.equal(0, call(pub, "PUBLISH", "news", "three"))
      sub:close()
      pub:close()
    end)

    it("answers as Redis while subscribed in RESP2, and after QUIT nothing (the codec's native commands off)", function()
      local c = test.client(port)
      c:send(redis.command("SET", "k", "v") .. redis.command("SUBSCRIBE", "x") .. redis.command("GET", "k")
        .. redis.command("PING"))
      local got = {}
      for i = 1, 11 do got[i] = c:receiveLine() end
      assert.same({ "+OK", "*3", "$9", "subscribe", "$1", "x", ":1",
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
        "*2", "$4", "pong" }, got)
      assert.same({ "$0", "" }, { c:receiveLine(), c:receiveLine() })
      c:send(redis.command("GET", "k")) -- a read of its own: the codec would have answered it
      assert.equal("-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
        c:receiveLine())
      c:send(redis.command("UNSUBSCRIBE"))
      for _ = 1, 6 do c:receiveLine() end
      c:send(redis.command("GET", "k"))
      assert.same({ "$1", "v" }, { c:receiveLine(), c:receiveLine() })
      c:send(redis.command("QUIT") .. redis.command("GET", "k"))
      assert.equal("+OK", c:receiveLine())
      assert.equal("", c:receiveAll()) -- nothing after QUIT's answer: closed
      c:close()
    end)

    it("speaks RESP3 after HELLO 3", function()
      local c = redis.connect({ port = port, protocol = 3 }):sync()
      local hello = call(c, "HELLO", "3")
      assert.equal(3, hello.proto)
      assert.equal("redis", hello.server)
      c:close()
    end)
  end)

  describe("bad input and faults", function()
    local function raw()
      local c = test.client(port)
      return c
    end

    it("answers protocol garbage with -ERR Protocol error and closes", function()
      local cases = {
        { "*1\r\n:x\r\n", "-ERR Protocol error: expected '$', got ':'" },
        { "*1\r\n$1099511627776\r\n", "-ERR Protocol error: invalid bulk length" },   -- a bulk of 2^40
        { "*1000000000\r\n", "-ERR Protocol error: invalid multibulk length" },       -- a multibulk of 10^9
        { "SET \"k v\r\n", "-ERR Protocol error: unbalanced quotes in request" },
      }
      for _, case in ipairs(cases) do
        local c = raw()
        c:send(case[1])
        assert.equal(case[2], c:receiveLine())
        assert.equal("", c:receiveAll()) -- then closed
        c:close()
      end
    end)

    it("takes a command split at every byte", function()
      local c = raw()
      local cmd = redis.command("SET", "split", "across reads") .. redis.command("GET", "split")
      for i = 1, #cmd do
        c:send(cmd:sub(i, i))
        loop:runFor(0.001) -- one byte per segment, as far as the kernel lets us
      end
      assert.equal("+OK", c:receiveLine())
      assert.equal("$12", c:receiveLine())
      assert.equal("across reads", c:receiveLine())
      c:close()
    end)

    it("holds a client that pipelines 100,000 commands without reading (back-pressure bounds memory)", function()
      local c0 = redis.connect({ port = port }):sync()
      call(c0, "SET", "kilo", ("x"):rep(1000))
      local before = rss_kb(p.pid)
      local c = raw()
      local get = redis.command("GET", "kilo")
      c:send(get:rep(100000)) -- 100 MB of replies, none read
      loop:runFor(1.0)
      local grew = rss_kb(p.pid) - before
      -- Under AddressSanitizer freed memory waits in its quarantine (256 MiB):
      -- the bound is measured on the plain build only.
      if not os.getenv("ASAN_OPTIONS") then
        assert.is_true(grew < 32 * 1024, ("the server grew by %d KiB"):format(grew))
      end
      c:close()
      assert.equal("PONG", call(c0, "PING")) -- and serves on
      c0:close()
    end)
  end)
end)

describe("examples/redis_lite.lua with a small budget", function()
  it("refuses a value over the dictionary's budget with -OOM, and evicts older keys for new ones", function()
    local p = proc.start("-w 1 -p 0 examples/redis_lite.lua", { env = "REDIS_LITE_MEMORY=1m" })
    local c = redis.connect({ port = p:port() }):sync()
    assert.has_error(function() c:call("SET", "big", ("x"):rep(2 * 1024 * 1024)):sync() end,
      "OOM command not allowed when used memory > 'maxmemory'.")
    for i = 1, 3000 do c:call("SET", "k" .. i, ("v"):rep(1000)) end
    assert.equal("OK", c:call("SET", "last", "v"):sync())
    local n = c:call("DBSIZE"):sync()
    assert.is_true(n < 1100, "keys kept: " .. n) -- 1 MiB holds about a thousand of them
    assert.equal("v", c:call("GET", "last"):sync())
    assert.equal(redis.null, c:call("GET", "k1"):sync())
    c:close()
    p:cleanup()
  end)
end)
