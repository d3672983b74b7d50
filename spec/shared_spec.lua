-- lupine.shared: dictionaries of the process, from this state and from the
-- launcher's worker threads (each with its own Lua state).
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"

describe("lupine.shared", function()
  local d = lupine.shared.declare("spec", "256k")
  before_each(function() d:flushAll() end)

  it("is declared once, by name, and found under that name", function()
    assert.equal(d, lupine.shared.spec)
    assert.equal(256 * 1024, d:capacity())
    assert.equal(256 * 1024, d:freeSpace())
    assert.equal(lupine.shared.declare("spec", "1m"):capacity(), 256 * 1024) -- the first size stays
    assert.matches("^lupine.SharedDict 'spec' %(262144 of 262144 bytes free%)$", tostring(d))
  end)

  it("names what is missing or wrong", function()
    assert.has_error(function() return lupine.shared.nope end,
      "lupine.shared: no dictionary 'nope' (declare it in the app: shared = { nope = \"1m\" })")
    assert.has_error(function() lupine.shared.declare("x", "12q") end,
      "lupine.shared: size of 'x' must be bytes, or a number with k, m or g (\"64m\")")
    assert.has_error(function() lupine.shared.declare("x", 100) end,
      "lupine.shared: size of 'x' must be at least 8192 bytes")
    assert.has_error(function() d:set("k", {}) end,
      "bad argument #2 to 'set' (string, number or boolean expected, got table)")
    assert.has_error(function() d:get("") end, "bad argument #1 to 'get' (empty key)")
    assert.has_error(function() d:set("k", 1, -1) end,
      "bad argument #3 to 'set' (ttl must be a number of seconds from 0 (never expires) to 1e12)")
  end)

  it("keeps strings, integers, floats and booleans as they were", function()
    assert.same({ true, nil, false }, { d:set("s", "a\0b") })
    d:set("i", 42)
    d:set("f", 1.5)
    d:set("b", false)
    assert.equal("a\0b", d:get("s"))
    assert.equal(math.type(42), math.type(d:get("i")))
    assert.equal(1.5, d:get("f"))
    assert.equal(false, d:get("b"))
    assert.is_nil(d:get("absent"))
    d:set("s", nil) -- deletes
    assert.is_nil(d:get("s"))
    assert.equal(3, d:count())
  end)

  it("adds, replaces, deletes with OpenResty's answers", function()
    assert.same({ true, nil, false }, { d:add("k", "v") })
    assert.same({ nil, "exists", false }, { d:add("k", "w") })
    assert.same({ nil, "not found", false }, { d:replace("other", "w") })
    assert.same({ true, nil, false }, { d:replace("k", "w") })
    assert.equal("w", d:get("k"))
    assert.is_true(d:delete("k"))
    assert.is_false(d:delete("k"))
  end)

  it("increments integers and floats, with an initial value and its ttl", function()
    assert.same({ nil, "not found" }, { d:incr("n", 1) })
    assert.same({ 11, nil, false }, { d:incr("n", 1, 10) })
    assert.equal(8, d:incr("n", -3))
    assert.equal(8.5, d:incr("n", 0.5))
    d:set("s", "41")
    assert.equal(42, d:incr("s", 1)) -- a decimal string counts, as Redis's INCR
    d:set("t", "x")
    assert.same({ nil, "not a number" }, { d:incr("t", 1) })
    d:set("max", math.maxinteger)
    assert.same({ nil, "increment would overflow" }, { d:incr("max", 1) })
    d:incr("e", 1, 0, 0.05)
    assert.is_true(d:ttl("e") > 0)
  end)

  it("expires entries, and reports ttl in seconds (0: never)", function()
    d:set("forever", 1)
    assert.equal(0, d:ttl("forever"))
    d:set("soon", 1, 0.05)
    local ttl = d:ttl("soon")
    assert.is_true(ttl > 0 and ttl <= 0.05)
    assert.same({ nil, "not found" }, { d:ttl("absent") })
    assert.is_true(d:expire("forever", 0.05))
    assert.same({ nil, "not found" }, { d:expire("absent", 1) })
    local loop = lupine.loop()
    loop:runUntil(function() return d:get("soon") == nil and d:get("forever") == nil end, 5, "expiry")
    assert.same({}, d:keys())
    d:set("gone", 1, 0.001)
    loop:runFor(0.01)
    assert.equal(1, d:flushExpired())
  end)

  it("holds lists: push, pop, length, range; an empty list is gone", function()
    assert.same({ 1, nil, false }, { d:rpush("l", "b") })
    assert.equal(2, d:lpush("l", "a"))
    assert.equal(3, d:rpush("l", 3))
    assert.equal(3, d:llen("l"))
    assert.same({ "a", "b", 3 }, d:lrange("l", 0, -1))
    assert.same({ "b" }, d:lrange("l", 1, 1))
    assert.same({ nil, "value is a list" }, { d:get("l") })
    d:set("str", "x")
    assert.same({ nil, "value not a list" }, { d:lpush("str", "y") })
    assert.same({ nil, "value not a list" }, { d:llen("str") })
    assert.equal("a", d:lpop("l"))
    assert.equal(3, d:rpop("l"))
    assert.equal("b", d:rpop("l"))
    assert.is_nil(d:rpop("l"))
    assert.equal(0, d:llen("l"))
  end)

  it("lists keys, up to max (default 1024, 0: all)", function()
    for i = 1, 1100 do d:set("k" .. i, i) end
    assert.equal(1024, #d:keys())
    assert.equal(10, #d:keys(10))
    assert.equal(1100, #d:keys(0))
  end)

  it("stays in its budget: a value over it is refused, LRU entries are evicted and set says so", function()
    assert.same({ nil, "no memory", false }, { d:set("huge", ("x"):rep(300 * 1024)) })
    local evicted = false
    local v = ("v"):rep(1024)
    for i = 1, 1000 do
      local ok, err, forcible = d:set("k" .. i, v)
      assert.is_true(ok, err)
      evicted = evicted or forcible
    end
    assert.is_true(evicted)
    assert.equal(v, d:get("k1000")) -- the newest stays
    assert.is_nil(d:get("k1"))      -- the oldest went
    assert.is_true(d:freeSpace() < 2048)
    d:flushAll()
    assert.equal(d:capacity(), d:freeSpace())
  end)

  describe("across launcher workers", function()
    local p, port
    before_each(function()
      p = proc.start("-w 2 -p 0 spec/apps/shared_app.lua")
      port = p:port()
    end)
    after_each(function() p:cleanup() end)

    it("counts in one dictionary from both workers", function()
      local clients, workers = {}, {}
      for i = 1, 4 do
        local c = test.client(port)
        clients[i] = c
        c:send("who\n")
        workers[c:receiveLine()] = true
      end
      assert.same({ ["worker 1"] = true, ["worker 2"] = true }, workers)
      for round = 1, 25 do
        for _, c in ipairs(clients) do c:send("incr hits\n") end
        for _, c in ipairs(clients) do c:receiveLine() end
      end
      clients[1]:send("get hits\n")
      assert.equal("100", clients[1]:receiveLine())
      clients[2]:send("set name lupine\n")
      assert.equal("true", clients[2]:receiveLine())
      clients[3]:send("get name\n")
      assert.equal("lupine", clients[3]:receiveLine())
      for _, c in ipairs(clients) do c:close() end
    end)
  end)
end)
