-- The loop as Lua sees it: runUntil, timers, execute; and futures made in Lua.
local lupine = require "lupine"

local loop = lupine.loop()

describe("lupine.Loop", function()
  it("is one loop per Lua state", function()
    assert.equal(tostring(loop), tostring(lupine.loop()))
    assert.matches("^lupine.Loop%(worker 0, %d+ channels%)$", tostring(loop))
  end)

  it("runUntil returns once the predicate holds, and raises when time runs out", function()
    local n = 0
    loop:schedule(0.01, function() n = 1 end)
    assert.is_true(loop:runUntil(function() return n == 1 end, 2))
    local t0 = loop:now()
    assert.has_error(function() loop:runUntil(function() return false end, 0.05, "nothing") end,
      "runUntil: timed out after 0.05 s waiting for nothing")
    assert.is_true(loop:now() - t0 >= 0.04)
    assert.has_error(function() loop:runUntil(function() error("pred broke") end, 1) end)
  end)

  it("runs a one-shot timer once and a periodic one until cancelled", function()
    local once, ticks = 0, 0
    local t1 = loop:schedule(0.01, function() once = once + 1 end)
    local t2
    t2 = loop:scheduleAtFixedRate(0.005, 0.005, function()
      ticks = ticks + 1
      if ticks == 3 then t2:cancel() end
    end)
    assert.is_true(t1:isActive())
    loop:runFor(0.1)
    assert.equal(1, once)
    assert.equal(3, ticks)
    assert.is_false(t1:isActive())
    assert.is_false(t2:isActive())
    assert.is_false(t2:cancel()) -- already stopped
  end)

  it("cancels a timer before it fires", function()
    local fired = false
    local t = loop:schedule(0.02, function() fired = true end)
    assert.is_true(t:cancel())
    loop:runFor(0.05)
    assert.is_false(fired)
  end)

  it("keeps going when a timer callback raises, and stops a periodic task that raised", function()
    local after, periodic = false, 0
    loop:schedule(0, function() error("timer fails") end)
    loop:scheduleAtFixedRate(0, 0.005, function()
      periodic = periodic + 1
      error("periodic fails")
    end)
    loop:schedule(0.01, function() after = true end)
    loop:runFor(0.05)
    assert.is_true(after)
    assert.equal(1, periodic)
  end)

  it("runs execute() tasks later, in order", function()
    local order = {}
    loop:execute(function() order[#order + 1] = 1 end)
    loop:execute(function() order[#order + 1] = 2 end)
    assert.same({}, order)
    loop:runUntil(function() return #order == 2 end, 1)
    assert.same({ 1, 2 }, order)
  end)

  it("refuses to be run again from inside itself, and the outer run raises it even when it was caught", function()
    local nested = "runUntil called from inside the running loop (a handler, timer or listener): use a listener or "
      .. "schedule() instead of waiting"
    local again = nested .. " (raised again by the outer run: the first error was caught)"
    local err
    loop:schedule(0, function() err = select(2, pcall(loop.runUntil, loop, function() return true end)) end)
    local ok, outer = pcall(loop.runFor, loop, 5)
    assert.equal(nested, err)
    assert.is_false(ok)
    assert.equal(again, outer)
    -- In a runUntil predicate, and in loop:run().
    ok, outer = pcall(loop.runUntil, loop, function() return pcall(loop.runFor, loop, 0.1) end, 5)
    assert.is_false(ok)
    assert.equal(again:gsub("^runUntil", "runFor"), outer)
    loop:schedule(0, function()
      pcall(loop.run, loop)
      loop:stop()
    end)
    ok, outer = pcall(loop.run, loop)
    assert.is_false(ok)
    assert.equal(again:gsub("^runUntil", "run"), outer)
    loop:runFor(0.01) -- a run after that starts clean
  end)

  it("rejects bad timer arguments", function()
    assert.has_error(function() loop:schedule(-1, print) end, "schedule: delays must be non-negative numbers")
    assert.has_error(function() loop:scheduleAtFixedRate(0, 0, print) end)
    assert.has_error(function() loop:schedule(1, "not a function") end)
  end)
end)

describe("lupine.Future", function()
  it("completes once, with a value or a cause", function()
    local p = lupine.promise()
    assert.is_false(p:isDone())
    assert.is_true(p:setSuccess(42))
    -- Completing it again is a mistake (Netty's IllegalStateException); try* says whether it did.
    assert.has_error(function() p:setSuccess(43) end,
      "setSuccess: the promise is already complete (trySuccess returns false instead)")
    assert.has_error(function() p:setFailure("late") end,
      "setFailure: the promise is already complete (tryFailure returns false instead)")
    assert.is_false(p:trySuccess(43))
    assert.is_false(p:tryFailure("late"))
    assert.is_true(p:isSuccess())
    assert.equal(42, p:get())
    local q = lupine.promise()
    assert.is_true(q:setFailure("it broke"))
    assert.is_false(q:isSuccess())
    assert.equal("it broke", q:cause())
    assert.is_nil(q:get())
    assert.matches("^lupine.Future%(failed: it broke%)$", tostring(q))
  end)

  it("serves one operation: reusing a promise or completing an operation's promise by hand raises", function()
    local test = require "lupine.test"
    local ch = test.embedded()
    local p = lupine.promise()
    ch:write("a", p)
    local reused = "write: the promise already belongs to a write (a promise serves one operation: make another " ..
      "with ctx:newPromise())"
    assert.has_error(function() ch:write("b", p) end, reused)
    assert.has_error(function() p:setSuccess() end, "setSuccess: the promise belongs to a write, which completes it")
    assert.has_error(function() p:tryFailure("no") end, "tryFailure: the promise belongs to a write, which completes it")
    ch:flush()
    assert.is_true(p:isSuccess())
    assert.equal("a", ch:readOutbound())
    assert.is_nil(ch:readOutbound())
    local done = "the promise is already complete (a promise serves one operation: make another with ctx:newPromise())"
    assert.has_error(function() ch:write("c", p) end, "write: " .. done)
    assert.has_error(function() ch.channel:close(p) end, "close: " .. done)
    assert.is_nil(ch:readOutbound())
    -- A handler the operation reached holds the promise: it passes it on, or completes it itself.
    ch = test.embedded { write = function(_, ctx, msg, promise)
      if msg == "drop" then promise:setSuccess() else ctx:write(msg, promise) end
    end }
    local q, r = lupine.promise(), lupine.promise()
    ch:write("drop", q)
    ch:write("keep", r)
    ch:flush()
    assert.is_true(q:isSuccess())
    assert.is_true(r:isSuccess())
    assert.equal("keep", ch:readOutbound())
    assert.is_nil(ch:readOutbound())
  end)

  it("notifies listeners later and in order, also those added after completion", function()
    local p = lupine.promise()
    local seen = {}
    p:addListener(function(f) seen[#seen + 1] = "a" .. tostring(f:get()) end)
    p:setSuccess("!")
    p:addListener(function(f) seen[#seen + 1] = "b" .. tostring(f:get()) end)
    assert.same({}, seen)
    loop:runUntil(function() return #seen == 2 end, 1)
    assert.same({ "a!", "b!" }, seen)
  end)

  it("sync() waits for the result or raises the cause", function()
    local p = lupine.promise()
    loop:schedule(0.01, function() p:setSuccess("done") end)
    assert.equal("done", p:sync(1))
    local q = lupine.promise()
    loop:schedule(0.01, function() q:setFailure("nope") end)
    assert.has_error(function() q:sync(1) end, "nope")
    assert.has_error(function() lupine.promise():sync(0.02) end)
  end)
end)
