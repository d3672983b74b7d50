-- The RESP codec (lupine.redis.codec, src/codec/resp.c) in embedded channels:
-- requests and replies whole and split at every byte, Redis's limits and
-- error texts, and the encoders.
local lupine = require "lupine"
local redis = require "lupine.redis"
local test = require "lupine.test"

-- Everything that reached the tail, and the errors caught there.
local function run(mode, chunks, opts)
  local errors = {}
  local catcher = { exceptionCaught = function(_, _, e) errors[#errors + 1] = e end }
  opts = opts or {}
  opts.mode = mode
  local ch = test.embedded(redis.codec(opts), catcher)
  for _, c in ipairs(chunks) do ch:writeInbound(c) end
  local out = {}
  while true do
    local m = ch:readInbound()
    if m == nil then break end
    out[#out + 1] = m
  end
  ch:finish()
  return out, errors
end

-- Split s at every byte: [1..k], [k+1..]; also byte by byte.
local function splits(s)
  local all = { { s } }
  for k = 1, #s - 1 do all[#all + 1] = { s:sub(1, k), s:sub(k + 1) } end
  local bytes = {}
  for i = 1, #s do bytes[i] = s:sub(i, i) end
  all[#all + 1] = bytes
  return all
end

describe("lupine.redis.codec", function()
  describe("for servers", function()
    it("decodes multibulk and inline commands, split anywhere", function()
      local stream = redis.command("SET", "k", "a\r\nb") .. "PING\r\n" .. 'set "x y" \'z\'\n' .. "*0\r\n\r\n"
        .. redis.command("GET", "k")
      for _, chunks in ipairs(splits(stream)) do
        local out, errors = run("server", chunks)
        assert.same({ { "SET", "k", "a\r\nb" }, { "PING" }, { "set", "x y", "z" }, { "GET", "k" } }, out)
        assert.same({}, errors)
      end
    end)

    local function protocol_error(input, text, opts)
      local out, errors = run("server", { input }, opts)
      assert.equal(1, #errors)
      assert.equal("ProtocolError", errors[1].kind)
      assert.equal(text, errors[1].message)
      return out
    end

    it("names each violation as Redis does, after the commands before it", function()
      local out = protocol_error(redis.command("PING") .. "*1\r\n$1099511627776\r\n", "Protocol error: invalid bulk length")
      assert.same({ { "PING" } }, out) -- 2^40: refused at its header, nothing allocated
      protocol_error("*1000000000\r\n", "Protocol error: invalid multibulk length")   -- 10^9
      protocol_error("*1048577\r\n", "Protocol error: invalid multibulk length")      -- over 1M
      protocol_error("*1\r\n:1\r\n", "Protocol error: expected '$', got ':'")
      protocol_error('GET "k\r\n', "Protocol error: unbalanced quotes in request")
      protocol_error(("x"):rep(70000), "Protocol error: too big inline request")
      protocol_error(redis.command("SET", "k", "12345"), "Protocol error: invalid bulk length", { maxBulkLength = 4 })
    end)

    it("passes the commands that arrived together as one array, with batch = true", function()
      local out, errors = run("server", { redis.command("A") .. "B\r\n" .. redis.command("C", "x"), "D\r\n*1\r\n:1\r\n" },
        { batch = true })
      assert.same({ { { "A" }, { "B" }, { "C", "x" } }, { { "D" } } }, out)
      assert.equal("Protocol error: expected '$', got ':'", errors[1].message)
      assert.has_error(function() redis.codec { mode = "client", batch = true } end,
        "lupine.redis.codec: option 'batch' is for mode \"server\"")
    end)

    it("ignores what follows a violation", function()
      local out, errors = run("server", { "*1\r\nx\r\n", redis.command("PING") })
      assert.same({}, out)
      assert.equal(1, #errors)
    end)

    it("refuses unknown options", function()
      assert.has_error(function() redis.codec { mode = "both" } end,
        "lupine.redis.codec: option 'mode' must be \"server\" or \"client\"")
      assert.has_error(function() redis.codec { maxBulk = 1 } end,
        "lupine.redis.codec: unknown option 'maxBulk' (known: mode, batch, store, maxBulkLength, maxMultibulkLength, maxInlineLength, maxQueryBuffer)")
    end)
  end)

  describe("for servers, with a store", function()
    local db = lupine.shared.declare("resp_spec_store", "1m")
    -- A handler that answers "+LUA <command>" to whatever reaches it.
    local function server(seen)
      return test.server(function(ch)
        ch.pipeline:addLast("resp", redis.codec { mode = "server", batch = true, store = db })
        ch.pipeline:addLast("h", setmetatable({
          channelRead = function(_, ctx, cmds)
            local out = {}
            for _, argv in ipairs(cmds) do
              seen[#seen + 1] = argv[1]
              out[#out + 1] = "+LUA " .. argv[1] .. "\r\n"
              if argv[1] == "NATIVE" then redis.nativeCommands(ctx.channel, argv[2] == "on") end
            end
            ctx:writeAndFlush(table.concat(out))
          end,
        }, { __index = redis.Server }))
      end)
    end
    local function lines(c, n)
      local got = {}
      for i = 1, n do got[i] = c:receiveLine() end
      return got
    end

    it("answers the store's commands itself, and the rest through the handler, in order", function()
      db:flushAll()
      local seen = {}
      local srv = server(seen)
      local c = test.client(srv.port)
      c:send(redis.command("SET", "a", "1") .. redis.command("INCR", "a") .. redis.command("PING"))
      assert.same({ "+OK", ":2", "+PONG" }, lines(c, 3))
      assert.same({}, seen) -- the handler saw none of them
      -- After a command for the handler, the rest of that read goes to it too: order is kept.
      c:send(redis.command("GET", "a") .. redis.command("FOO") .. redis.command("GET", "a") .. "INCRBY a 5\r\n")
      assert.same({ "$1", "2", "+LUA FOO", "+LUA GET", "+LUA INCRBY" }, lines(c, 5))
      assert.same({ "FOO", "GET", "INCRBY" }, seen)
      c:send(redis.command("DECRBY", "a", 10) .. redis.command("ECHO", "hi") .. redis.command("SET", "a", "1", "EX", "9"))
      assert.same({ ":-8", "$2", "hi", "+LUA SET" }, lines(c, 4))
      -- Switched off by the handler (as redis_lite does for a subscribed connection), and on again.
      c:send(redis.command("NATIVE", "off"))
      assert.equal("+LUA NATIVE", c:receiveLine())
      c:send(redis.command("GET", "a"))
      assert.equal("+LUA GET", c:receiveLine())
      c:send(redis.command("NATIVE", "on"))
      assert.equal("+LUA NATIVE", c:receiveLine())
      c:send(redis.command("GET", "a"))
      assert.same({ "$2", "-8" }, lines(c, 2))
      -- A protocol violation after native replies: those first, then Redis's error, then the close.
      c:send(redis.command("PING") .. "*1\r\n$-5\r\n")
      assert.same({ "+PONG", "-ERR Protocol error: invalid bulk length" }, lines(c, 2))
      c:close()
      srv:close()
    end)

    it("refuses a store that is not a dictionary, a store for clients, and a channel without one", function()
      assert.has_error(function() redis.codec { mode = "server", store = {} } end,
        "lupine.redis.codec: option 'store' must be a lupine.shared dictionary")
      assert.has_error(function() redis.codec { mode = "client", store = db } end,
        "lupine.redis.codec: option 'store' is for mode \"server\"")
      local ch = test.embedded(redis.codec { mode = "server" })
      assert.has_error(function() redis.nativeCommands(ch.channel, false) end,
        "lupine.redis.nativeCommands: the channel has no redis.codec with a store")
      ch:finish()
    end)
  end)

  describe("for clients", function()
    it("decodes RESP2 and RESP3 replies to Lua values, split anywhere", function()
      local stream = "+OK\r\n-ERR no\r\n:42\r\n$3\r\nfoo\r\n$-1\r\n*2\r\n$1\r\na\r\n:1\r\n"
        .. "%1\r\n+k\r\n,1.5\r\n~1\r\n#t\r\n_\r\n>2\r\n+a\r\n+b\r\n|1\r\n+ttl\r\n:3\r\n=7\r\ntxt:abc\r\n(12345678901234567890\r\n"
      for _, chunks in ipairs(splits(stream)) do
        local out = run("client", chunks)
        assert.equal(12, #out)
        assert.equal("OK", out[1])
        assert.equal("lupine.RedisError", getmetatable(out[2]))
        assert.equal("ERR no", out[2].err)
        assert.equal("ERR no", tostring(out[2]))
        assert.equal(42, out[3])
        assert.equal("foo", out[4])
        assert.equal(redis.null, out[5])
        assert.same({ "a", 1 }, out[6])
        assert.same({ k = 1.5 }, out[7])
        assert.same({ true }, out[8])
        assert.equal(redis.null, out[9])
        assert.same({ "a", "b", push = true }, out[10])
        assert.equal("abc", out[11]) -- the attribute before it is dropped
        assert.equal("12345678901234567890", out[12])
      end
    end)
  end)

  describe("encoders", function()
    it("encode replies in RESP2 and RESP3, and commands", function()
      assert.equal("$3\r\nabc\r\n", redis.encode("abc"))
      assert.equal(":-5\r\n", redis.encode(-5))
      assert.equal("$3\r\n1.5\r\n", redis.encode(1.5))
      assert.equal(",1.5\r\n", redis.encode(1.5, 3))
      assert.equal("$-1\r\n", redis.encode(redis.null))
      assert.equal("_\r\n", redis.encode(nil, 3))
      assert.equal("+OK\r\n", redis.encode { ok = "OK" })
      assert.equal("-ERR x y\r\n", redis.encode { err = "ERR x\ny" })
      assert.equal("*2\r\n$1\r\na\r\n:1\r\n", redis.encode { "a", 1 })
      assert.equal("%1\r\n$1\r\nk\r\n:1\r\n", redis.encode({ map = { "k", 1 } }, 3))
      assert.equal("*2\r\n$1\r\nk\r\n:1\r\n", redis.encode { map = { "k", 1 } })
      assert.equal("*2\r\n$3\r\nGET\r\n$1\r\n7\r\n", redis.command("GET", 7))
      assert.has_error(function() redis.encode(print) end, "lupine.redis.encode: cannot encode a function")
      assert.has_error(function() redis.command("GET", {}) end, "bad argument #2 to 'command' (string expected, got table)")
    end)
  end)
end)
