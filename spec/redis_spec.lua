-- The test kit against a server nobody here wrote: Debian's redis-server,
-- started on a free loopback port by this spec and stopped after, driven with
-- RESP commands. A missing redis-server fails this spec (make test installs it).
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

-- A RESP command: an array of bulk strings.
local function resp(...)
  local out = { ("*%d\r\n"):format(select("#", ...)) }
  for i = 1, select("#", ...) do
    local a = tostring((select(i, ...)))
    out[#out + 1] = ("$%d\r\n%s\r\n"):format(#a, a)
  end
  return table.concat(out)
end

-- One bulk string reply: "$n\r\n<n bytes>\r\n" (nil for "$-1").
local function bulk(c)
  local n = tonumber(c:expect("^%$(%-?%d+)\r\n"))
  if n < 0 then return nil end
  local s = c:receive(n)
  assert.equal("\r\n", c:receive(2))
  return s
end

describe("redis-server through lupine.test", function()
  local redis, dir, c, fds

  setup(function()
    -- Loudly, not a skip: this spec exists to run a server we did not write.
    local which = io.popen("command -v redis-server")
    local found = which:read("l")
    which:close()
    assert(found, "redis-server is not installed: `make test` installs it (Makefile TEST_DEPS)")
    test.eventually(function() return loop:channelCount() == 0 end, 5, "channels of earlier specs to close")
    fds = open_fds()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local port = test.freePort()
    redis = test.spawn { "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
      "--dir", dir, "--daemonize", "no", "--loglevel", "warning" }
    local deadline = loop:now() + 15
    repeat -- until it accepts (each try runs the loop: not inside eventually's predicate)
      local ok, client = pcall(test.client, port, { timeout = 2 })
      c = ok and client or nil
      if not c then loop:runFor(0.05) end
    until c or not redis:isRunning() or loop:now() > deadline
    assert(c, "redis-server did not start: " .. redis:output())
  end)

  teardown(function()
    if c then c:close() end
    if redis then
      redis:stop()
      assert.is_false(redis:isRunning(), "redis-server still runs")
    end
    if dir then os.execute("rm -rf " .. dir) end
    test.eventually(function() return loop:channelCount() == 0 end)
    assert.equal(fds, open_fds(), "descriptors leaked")
  end)

  it("answers PING, inline and as RESP", function()
    c:send("PING\r\n")
    assert.equal("+PONG", c:receiveLine())
    c:send(resp("PING", "lupine"))
    assert.equal("lupine", bulk(c))
  end)

  it("stores and returns values, binary-safe, large ones too", function()
    c:send(resp("SET", "lupine:key", "netty in lua"))
    assert.equal("+OK", c:receiveLine())
    c:send(resp("GET", "lupine:key"))
    assert.equal("netty in lua", bulk(c))
    local binary = "\0\r\n\255" .. ("x"):rep(1024 * 1024)
    c:send(resp("SET", "lupine:big", binary))
    assert.equal("+OK", c:receiveLine())
    c:send(resp("GET", "lupine:big"))
    assert.is_true(bulk(c) == binary)
    c:send(resp("GET", "lupine:missing"))
    assert.is_nil(bulk(c))
  end)

  it("counts, and answers pipelined commands in order", function()
    c:send(resp("DEL", "lupine:n") .. resp("INCR", "lupine:n") .. resp("INCR", "lupine:n") .. resp("INCRBY", "lupine:n", 40))
    assert.matches("^:[01]$", c:receiveLine())
    assert.equal(":1", c:receiveLine())
    assert.equal(":2", c:receiveLine())
    assert.equal(":42", c:receiveLine())
  end)

  it("reports errors as RESP errors, and lists come back as arrays", function()
    c:send(resp("NOSUCHCOMMAND", "x"))
    assert.matches("^%-ERR unknown command 'NOSUCHCOMMAND'", c:receiveLine())
    c:send(resp("DEL", "lupine:list") .. resp("RPUSH", "lupine:list", "a", "b", "c") .. resp("LRANGE", "lupine:list", 0, -1))
    c:receiveLine()
    assert.equal(":3", c:receiveLine())
    assert.equal("*3", c:receiveLine())
    assert.same({ "a", "b", "c" }, { bulk(c), bulk(c), bulk(c) })
  end)

  it("closes the connection on QUIT, as the kit reports", function()
    local other = test.client(c.channel.remotePort)
    other:send(resp("QUIT"))
    assert.equal("+OK", other:receiveLine())
    assert.equal("", other:receiveAll())
    assert.is_false(other:isOpen())
  end)
end)
