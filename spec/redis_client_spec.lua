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

  describe("in a coroutine", function()
    it("returns replies, not futures: values, nil and the error's text, pipelines", function()
      test.run(function()
        local red = assert(redis.connect { port = port, password = "sesame", db = 4 })
        assert.equal("OK", red:flushdb())
        assert.equal("OK", red:set("k", "v"))
        assert.equal("v", red:get("k"))
        assert.equal(redis.null, red:get("nope"))
        assert.equal(3, red:incrby("n", 3))
        assert.equal(2, red:call("DECR", "n"))
        assert.equal(1, red:hset("h", "f", "x"))
        assert.same({ "f", "x" }, red:hgetall("h"))
        local v, err = red:incr("k")
        assert.is_nil(v)
        assert.equal("ERR value is not an integer or out of range", err)
        v, err = red:nosuch()
        assert.is_nil(v)
        assert.equal("ERR unknown command 'NOSUCH', with args beginning with: ", err)
        local replies = red:pipeline(function(p)
          for i = 1, 100 do p:rpush("l", i) end
          p:lrange("l", 0, 2)
          p:incr("k")
          p:call("GET", "k")
        end)
        assert.equal(103, #replies)
        assert.equal(100, replies[100])
        assert.same({ "1", "2", "3" }, replies[101])
        assert.equal("lupine.RedisError", getmetatable(replies[102]))
        assert.equal("ERR value is not an integer or out of range", replies[102].err)
        assert.equal("v", replies[103])
        assert.same({}, red:pipeline(function() end))
        red:close()
        local none, why = redis.connect { port = port, password = "wrong" }
        assert.is_nil(none)
        assert.matches("WRONGPASS", why)
      end)
      -- Outside a coroutine: futures, as before.
      local c = redis.connect({ port = port, password = "sesame", db = 4 }):sync(10)
      assert.equal("v", c:get("k"):sync())
      assert.same({ "OK", "v" }, c:pipeline(function(p) p:set("k", "v") p:get("k") end):sync())
      c:close()
    end)

    it("subscribes and receives messages, with a timeout, until the connection closes", function()
      test.run(function()
        local sub = assert(redis.connect { port = port, password = "sesame" })
        local pub = assert(redis.connect { port = port, password = "sesame" })
        assert.same({ "subscribe", "co", 1 }, sub:subscribe("co"))
        assert.same({ nil, "timeout" }, { sub:receiveMessage(0.05) })
        assert.equal(1, pub:publish("co", "one"))
        pub:publish("co", "two")
        assert.same({ "one", "co" }, { sub:receiveMessage(5) })
        lupine.spawn(function()
          lupine.sleep(0.05)
          pub:publish("co", "three")
          lupine.sleep(0.05)
          sub:close()
        end)
        local got = {}
        for msg, chan in sub:messages(5) do got[#got + 1] = chan .. "=" .. msg end
        assert.same({ "co=two", "co=three" }, got)
        assert.same({ nil, "lupine.redis: the connection is closed" }, { sub:receiveMessage() })
        pub:close()
      end)
      local c = redis.connect({ port = port, password = "sesame" }):sync(10)
      assert.has_error(function() c:subscribe("x") end,
        "lupine.redis: subscribe(channel) without a function is for coroutines; outside one give fn(message, channel)")
      assert.has_error(function() c:receiveMessage() end,
        "lupine.redis: receiveMessage is for coroutines (lupine.spawn, handle, test.run)")
      c:close()
    end)

    it("closes a subscriber that lets more than maxMessages wait", function()
      test.run(function()
        local sub = assert(redis.connect { port = port, password = "sesame", maxMessages = 10 })
        local pub = assert(redis.connect { port = port, password = "sesame" })
        sub:subscribe("flood")
        for i = 1, 11 do pub:publish("flood", i) end
        for i = 1, 10 do assert.equal(tostring(i), (sub:receiveMessage(5))) end
        assert.same({ nil, "lupine.redis: more than 10 messages not received; the connection was closed" },
          { sub:receiveMessage(5) })
        pub:close()
      end)
    end)
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
