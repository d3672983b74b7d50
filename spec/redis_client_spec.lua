-- lupine.redis's client against Debian's redis-server (started here on a free
-- loopback port with a password): AUTH and SELECT at connect, pipelining,
-- errors as failed futures, RESP3, pub/sub, and a closed connection.
local lupine = require "lupine"
local redis = require "lupine.redis"
local test = require "lupine.test"

local loop = lupine.loop()

describe("lupine.redis.connect against redis-server", function()
  local server, dir, port
  setup(function()
    local which = io.popen("command -v redis-server")
    local found = which:read("l")
    which:close()
    assert(found, "redis-server is not installed: `make test` installs it (Makefile TEST_DEPS)")
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    port = test.freePort()
    server = test.spawn { "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
      "--dir", dir, "--daemonize", "no", "--loglevel", "warning", "--requirepass", "sesame" }
    test.waitForPort("127.0.0.1", port, 15)
  end)
  teardown(function()
    if server then server:stop() end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("authenticates, selects the database and pipelines", function()
    local c = redis.connect({ port = port, password = "sesame", db = 3 }):sync(10)
    c:call("FLUSHDB")
    local fs = {}
    for i = 1, 500 do fs[i] = c:call("RPUSH", "l", i) end
    assert.equal(501, c:pendingCount()) -- FLUSHDB and the 500: none answered yet
    for i = 1, 500 do assert.equal(i, fs[i]:sync()) end
    assert.same({ "1", "2", "3" }, c:call("LRANGE", "l", 0, 2):sync())
    assert.equal("OK", c:call("SET", "k", "v\0\r\nw"):sync())
    assert.equal("v\0\r\nw", c:call("GET", "k"):sync())
    assert.equal(redis.null, c:call("GET", "nope"):sync())
    local info = c:call("CLIENT", "INFO"):sync()
    assert.matches("db=3", info)
    assert.has_error(function() c:call("NOSUCH"):sync() end, "ERR unknown command 'NOSUCH', with args beginning with: ")
    c:close()
  end)

  it("fails to connect with the server's words on a wrong password, and on a closed port", function()
    local f = redis.connect({ port = port, password = "wrong" })
    assert.has_error(function() f:sync(10) end)
    assert.matches("WRONGPASS", tostring(f:cause()))
    local g = redis.connect({ port = test.freePort() })
    assert.has_error(function() g:sync(10) end)
    assert.matches("ECONNREFUSED", tostring(g:cause()))
  end)

  it("speaks RESP3: maps, doubles, null", function()
    local c = redis.connect({ port = port, password = "sesame", protocol = 3 }):sync(10)
    c:call("DEL", "h")
    c:call("HSET", "h", "a", "1")
    assert.same({ a = "1" }, c:call("HGETALL", "h"):sync())
    assert.equal(1.5, c:call("INCRBYFLOAT", "f", "1.5"):sync() + 0)
    assert.equal(redis.null, c:call("GET", "nope"):sync())
    c:close()
  end)

  it("subscribes and gets messages, RESP2 and RESP3", function()
    for _, proto in ipairs { 2, 3 } do
      local sub = redis.connect({ port = port, password = "sesame", protocol = proto }):sync(10)
      local pub = redis.connect({ port = port, password = "sesame" }):sync(10)
      local got = {}
      sub:subscribe("ch", function(msg, chan) got[#got + 1] = chan .. "=" .. msg end):sync()
      assert.equal(1, pub:call("PUBLISH", "ch", "hello"):sync())
      test.eventually(function() return #got == 1 end, 5, "the message")
      assert.same({ "ch=hello" }, got)
      sub:unsubscribe("ch"):sync()
      sub:close()
      pub:close()
    end
  end)

  it("fails what is in flight when the connection closes", function()
    local c = redis.connect({ port = port, password = "sesame" }):sync(10)
    local f = c:call("BLPOP", "never", 0) -- waits forever on the server
    c:close()
    assert.has_error(function() f:sync(5) end, "lupine.redis: the connection closed before the reply")
    assert.has_error(function() c:call("PING"):sync() end, "lupine.redis: the connection is closed")
    loop:runUntil(function() return loop:channelCount() == 0 end, 5, "channels to close")
  end)
end)
