-- lupine.broadcast and lupine.subscribe: messages between the states of a
-- process, here within this state (delivered later, from its loop) and
-- across the launcher's workers (examples/line_chat.lua, spec/line_chat_spec.lua).
local lupine = require "lupine"

describe("lupine.broadcast", function()
  local loop = lupine.loop()
  local topics = {}
  local function subscribe(topic, fn)
    topics[#topics + 1] = topic
    lupine.subscribe(topic, fn)
  end
  after_each(function()
    for _, t in ipairs(topics) do lupine.unsubscribe(t) end
    topics = {}
    lupine.setBroadcastLimit(10000)
  end)

  it("delivers copies later, from the loop, in order, to every subscriber", function()
    local got, other = {}, {}
    subscribe("t1", function(v, topic) got[#got + 1] = { v, topic } end)
    subscribe("t1", function(v) other[#other + 1] = v end)
    assert.equal(2, lupine.broadcast("t1", "a"))
    local t = { n = 1, "x", ok = true }
    lupine.broadcast("t1", t)
    lupine.broadcast("t1", 3.5)
    assert.equal(0, lupine.broadcast("nobody listens", 1))
    assert.same({}, got) -- never inside broadcast
    loop:runUntil(function() return #got == 3 end, 5, "the messages")
    assert.same({ { "a", "t1" }, { { n = 1, "x", ok = true }, "t1" }, { 3.5, "t1" } }, got)
    assert.are_not.equal(t, got[2][1]) -- a copy
    assert.same({ "a", { n = 1, "x", ok = true }, 3.5 }, other)
  end)

  it("stops delivering after unsubscribe", function()
    local got = 0
    local function fn() got = got + 1 end
    subscribe("t2", fn)
    lupine.broadcast("t2", 1)
    loop:runUntil(function() return got == 1 end, 5, "the first")
    assert.equal(1, lupine.unsubscribe("t2", fn))
    assert.equal(0, lupine.unsubscribe("t2", fn))
    assert.equal(0, lupine.broadcast("t2", 2))
    loop:runFor(0.05)
    assert.equal(1, got)
  end)

  it("refuses values that cannot be copied, by their position", function()
    assert.has_error(function() lupine.broadcast("t", function() end) end,
      "lupine.broadcast: argument #2 is a function: only nil, booleans, numbers, strings and flat tables of those cross to other workers")
    assert.has_error(function() lupine.broadcast("t", { {} }) end,
      "lupine.broadcast: argument #2 is a table inside a table: only flat tables of strings, numbers and booleans cross to other workers")
    assert.has_error(function() lupine.subscribe("t", 1) end,
      "bad argument #2 to 'subscribe' (function expected, got number)")
  end)

  it("bounds what a subscriber that falls behind holds: the broadcast says BroadcastQueueFull", function()
    lupine.setBroadcastLimit(5)
    local got = {}
    subscribe("t3", function(v) got[#got + 1] = v end)
    for i = 1, 5 do assert.same({ 1 }, { lupine.broadcast("t3", i) }) end
    local n, err = lupine.broadcast("t3", 6) -- this loop has not run: 5 wait
    assert.equal(0, n)
    assert.equal("BroadcastQueueFull: 1 subscribing worker fell behind (its queue of undelivered messages is full) and misses this message", err)
    loop:runUntil(function() return #got == 5 end, 5, "the five queued")
    assert.same({ 1, 2, 3, 4, 5 }, got)
    assert.equal(1, lupine.broadcast("t3", 7)) -- room again
    loop:runUntil(function() return #got == 6 end, 5, "the next")
  end)

  it("logs a subscriber that raises, and goes on with the others", function()
    local got = 0
    subscribe("t4", function() error("boom") end)
    subscribe("t4", function() got = got + 1 end)
    lupine.broadcast("t4", true)
    loop:runUntil(function() return got == 1 end, 5, "the second subscriber")
  end)
end)
