-- Past one machine: two lupine instances (examples/counter.lua under the
-- launcher, -w 1 each) behind Debian's haproxy in TCP mode, round robin, with
-- health checks and the PROXY protocol (v2 to one instance, v1 to the
-- other), sharing one counter in Debian's redis-server through lupine.redis.
-- Requests through haproxy land on both instances, the counter is exact, and
-- each instance answers with the address of the client that connected to
-- haproxy (taken from the PROXY header), not haproxy's own connection.
-- haproxy or redis-server missing fails this spec (make test installs them).
local lupine = require "lupine"
local redis = require "lupine.redis"
local test = require "lupine.test"
local proc = require "proc"

local loop = lupine.loop()

local function need(tool)
  local p = io.popen("command -v " .. tool)
  local found = p:read("l")
  p:close()
  assert(found, tool .. " is not installed: `make test` installs it (Makefile TEST_DEPS)")
end

-- Connect until it accepts (each try runs the loop), or raise with why.
local function connect_when_up(port, what, alive)
  local deadline = loop:now() + 15
  repeat
    local ok, c = pcall(test.client, port, { timeout = 2 })
    if ok then return c end
    loop:runFor(0.05)
  until not alive() or loop:now() > deadline
  error(what .. " did not start")
end

describe("two instances behind haproxy (examples/counter.lua)", function()
  local dir, rds, haproxy, a, b, front, rport

  setup(function()
    need("haproxy")
    need("redis-server")
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    rport = test.freePort()
    rds = test.spawn { "redis-server", "--port", rport, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
      "--dir", dir, "--daemonize", "no", "--loglevel", "warning" }
    connect_when_up(rport, "redis-server", function() return rds:isRunning() end):close()
    local env = "REDIS_PORT=" .. rport .. " COUNTER_KEY=hits"
    a = proc.start("-w 1 -p 0 --log-level info examples/counter.lua", { env = env .. " COUNTER_NAME=a" })
    b = proc.start("-w 1 -p 0 --log-level info examples/counter.lua", { env = env .. " COUNTER_NAME=b" })
    a.listen, b.listen = a:port(), b:port()
    front = test.freePort()
    local cfg = dir .. "/haproxy.cfg"
    local f = assert(io.open(cfg, "w"))
    f:write(([[
global
  maxconn 256
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend counter
  bind 127.0.0.1:%d
  default_backend counters
backend counters
  balance roundrobin
  server a 127.0.0.1:%d check inter 100ms send-proxy-v2
  server b 127.0.0.1:%d check inter 100ms send-proxy
]]):format(front, a.listen, b.listen))
    f:close()
    haproxy = test.spawn { "haproxy", "-f", cfg, "-db" }
    connect_when_up(front, "haproxy", function() return haproxy:isRunning() end):close()
    -- Health checks have reached both instances (a v2 LOCAL header on a, a v1 header on b).
    assert(proc.waitFor(function()
      return a:stderr():find("PROXY v2: client (the balancer itself)", 1, true)
        and b:stderr():find("PROXY v1: client 127.0.0.1:", 1, true)
    end, 15), "no health check reached both instances: " .. a:stderr() .. b:stderr() .. haproxy:output())
  end)

  teardown(function()
    if haproxy then haproxy:stop() end
    for _, p in ipairs { a, b } do
      if p then p:cleanup() end
    end
    if rds then rds:stop() end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("spreads connections over both, keeps the counter exact, and shows the real client", function()
    local N = 40
    local per, seen = { a = 0, b = 0 }, {}
    for i = 1, N do
      local c = test.client(front)
      c:send("hit " .. i .. "\n")
      local line = c:receiveLine()
      local n, who, client = line:match("^(%d+) (%a) (%S+)$")
      assert(n, "answer: " .. line)
      per[who] = per[who] + 1
      seen[#seen + 1] = tonumber(n)
      -- The client is this connection to haproxy (its port), not haproxy's connection to the instance.
      assert.equal("127.0.0.1:" .. c.channel.localPort, client)
      c:close()
    end
    assert.is_true(per.a > 0 and per.b > 0, ("a: %d, b: %d"):format(per.a, per.b))
    assert.equal(N, per.a + per.b)
    table.sort(seen)
    for i = 1, N do assert.equal(i, seen[i]) end -- each value once: no increment lost or doubled
    local r = redis.connect { port = rport }:sync(10)
    assert.equal("40", r:call("GET", "hits"):sync(10))
    r:close()
    -- Both PROXY versions were used: each instance logged the clients of the requests it served.
    assert.matches("PROXY v2: client 127%.0%.0%.1:%d+", a:stderr())
    assert.matches("PROXY v1: client 127%.0%.0%.1:%d+", b:stderr())
    assert.is_nil(a:stderr():find("ProxyProtocolError", 1, true), a:stderr())
    assert.is_nil(b:stderr():find("ProxyProtocolError", 1, true), b:stderr())
  end)

  it("keeps the count exact with concurrent connections", function()
    local r = redis.connect { port = rport }:sync(10)
    local before = tonumber(r:call("GET", "hits"):sync(10))
    local clients, N = {}, 30
    for i = 1, N do
      clients[i] = test.client(front)
      clients[i]:send("hit\n")
    end
    local per = { a = 0, b = 0 }
    for i = 1, N do
      local who = clients[i]:receiveLine():match("^%d+ (%a) 127%.0%.0%.1:%d+$")
      per[who] = per[who] + 1
      clients[i]:close()
    end
    assert.is_true(per.a > 0 and per.b > 0, ("a: %d, b: %d"):format(per.a, per.b))
    assert.equal(tostring(before + N), r:call("GET", "hits"):sync(10))
    r:close()
  end)

  it("refuses a client that bypasses haproxy (no PROXY header)", function()
    local c = test.client(a.listen)
    c:send("hit\n")
    test.eventually(function() return c.closed end)
    assert.equal("", c:received())
    assert(proc.waitFor(function()
      return a:stderr():find("ProxyProtocolError: no PROXY protocol header at the start of the connection", 1, true)
    end, 10), a:stderr())
  end)
end)
