-- Time in the pipeline: lupine.handler.idleState, readTimeout, writeTimeout.
-- Times are asserted with wide margins (the machine is shared): an event must
-- not come before its period, and must come well within a few periods.
local lupine = require "lupine"
local test = require "lupine.test"
local handler = require "lupine.handler"

local loop = lupine.loop()

-- A server whose channels get `first` (a native handler) then a recorder of
-- user events and exceptions. Returns the server and a table of what it saw.
local function serve(first, extra)
  local seen = { events = {}, errors = {}, chans = {} }
  local server = test.server(function(ch)
    seen.chans[#seen.chans + 1] = ch
    seen.t0 = loop:now()
    ch.pipeline:addLast("timer", first)
    ch.pipeline:addLast("rec", {
      userEventTriggered = function(_, _, evt)
        seen.events[#seen.events + 1] = { state = evt.state, first = evt.first, kind = evt.kind, at = loop:now() - seen.t0 }
      end,
      exceptionCaught = function(_, _, err) seen.errors[#seen.errors + 1] = err end,
      channelRead = function(_, ctx, buf) buf:release() end,
    })
    if extra then extra(ch) end
  end)
  return server, seen
end

local leaks = leak_check()
before_each(leaks.before)
after_each(leaks.after)

describe("lupine.handler.idleState", function()
  it("fires reader idle after the period of silence, first = true, then once per period with first = false", function()
    local server, seen = serve(handler.idleState { readerIdle = 0.2 }, function(ch)
      ch.pipeline:addLast(handler.idleState { allIdle = 60 }) -- unnamed: a generated name
    end)
    local c = test.client(server.port)
    test.eventually(function() return #seen.events >= 2 end, 5, "two idle events")
    local e1, e2 = seen.events[1], seen.events[2]
    assert.same({ "idle", "reader", true }, { e1.kind, e1.state, e1.first })
    assert.same({ "idle", "reader", false }, { e2.kind, e2.state, e2.first })
    assert.is_true(e1.at >= 0.19 and e1.at < 1.5, ("first event at %.3f s"):format(e1.at))
    assert.is_true(e2.at - e1.at >= 0.19 and e2.at - e1.at < 1.5, ("second after %.3f s"):format(e2.at - e1.at))
    assert.matches("^idleState#%d+$", seen.chans[1].pipeline:names()[3])
    c:close()
    server:close()
  end)

  it("does not fire while data flows, and fires with first = true once it stops", function()
    local server, seen = serve(handler.idleState { readerIdle = 0.25, allIdle = 0.25 })
    local c = test.client(server.port)
    local stop = loop:now() + 0.8
    while loop:now() < stop do
      c:send("x")
      loop:runFor(0.05)
    end
    assert.same({}, seen.events, "an idle event while data flowed")
    local quiet = loop:now()
    test.eventually(function() return #seen.events >= 2 end, 5, "reader and all idle")
    local states = {}
    for _, e in ipairs(seen.events) do
      states[#states + 1] = e.state
      assert.is_true(e.first)
      assert.is_true(e.at - (quiet - seen.t0) > 0.15, ("%s idle %.3f s after the last byte"):format(e.state, e.at - (quiet - seen.t0)))
    end
    table.sort(states)
    assert.same({ "all", "reader" }, states)
    c:close()
    server:close()
  end)

  it("fires writer idle when nothing is written, and not while writes complete", function()
    local server, seen = serve(handler.idleState { writerIdle = 0.25 })
    local c = test.client(server.port)
    test.eventually(function() return seen.chans[1] ~= nil end)
    local ch = seen.chans[1]
    local stop = loop:now() + 0.8
    while loop:now() < stop do
      ch:writeAndFlush("tick")
      loop:runFor(0.05)
    end
    assert.same({}, seen.events, "writer idle while writes completed")
    test.eventually(function() return #seen.events >= 1 end, 5, "writer idle")
    assert.same({ "writer", true }, { seen.events[1].state, seen.events[1].first })
    -- Reading is not writing: a client that talks does not stop writer idle.
    c:send("talk")
    test.eventually(function() return #seen.events >= 2 end, 5, "more writer idle")
    assert.same({ "writer", false }, { seen.events[2].state, seen.events[2].first })
    c:close()
    server:close()
  end)

  it("starts when added to an active channel, stops when removed or closed", function()
    local chans = {}
    local server = test.server(function(ch) chans[#chans + 1] = ch end)
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    local ch = chans[1]
    local events = {}
    ch.pipeline:addLast("idle", handler.idleState { readerIdle = 0.1 })
    ch.pipeline:addLast("rec", { userEventTriggered = function(_, _, e) events[#events + 1] = e end })
    test.eventually(function() return #events >= 1 end, 5, "idle after a late add")
    ch.pipeline:remove("idle")
    local n = #events
    loop:runFor(0.35)
    assert.equal(n, #events, "events after the handler was removed")
    -- On a channel that closes, nothing fires afterwards.
    ch.pipeline:addFirst("idle2", handler.idleState { readerIdle = 0.1, writerIdle = 0.1, allIdle = 0.1 })
    test.eventually(function() return #events > n end, 5, "idle from the second handler")
    c:close()
    test.eventually(function() return not ch:isOpen() end)
    n = #events
    loop:runFor(0.35)
    assert.equal(n, #events, "events after close")
    server:close()
  end)

  it("hands write outcomes on: the caller's promise completes, unobserved failures still reach exceptionCaught", function()
    local server, seen = serve(handler.idleState { writerIdle = 5 })
    local c = test.client(server.port)
    test.eventually(function() return seen.chans[1] ~= nil end)
    local ch = seen.chans[1]
    local f = ch:writeAndFlush("ok", lupine.promise())
    assert.equal("ok", c:receive(2))
    test.eventually(function() return f:isDone() end)
    assert.is_true(f:isSuccess())
    ch:writeAndFlush({ "not bytes" }) -- no promise: the failure is reported
    test.eventually(function() return #seen.errors == 1 end, 5, "the unobserved failure")
    assert.equal("UnsupportedMessage: cannot write a table: add an encoder to turn it into bytes", seen.errors[1].message)
    local g = ch:writeAndFlush({ "not bytes" }, lupine.promise())
    test.eventually(function() return g:isDone() end)
    assert.equal("UnsupportedMessage", g:cause().kind)
    loop:runFor(0.05)
    assert.equal(1, #seen.errors) -- observed through its promise: not reported again
    c:close()
    server:close()
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() handler.idleState {} end,
      "idleState: give at least one of readerIdle, writerIdle, allIdle (seconds > 0)")
    assert.has_error(function() handler.idleState { readerIdle = -1 } end,
      "idleState: readerIdle must be a number of seconds >= 0, got -1")
    assert.has_error(function() handler.idleState { readIdle = 1 } end,
      "idleState: unknown field 'readIdle' (known: readerIdle, writerIdle, allIdle)")
    assert.has_error(function() handler.idleState(5) end, "idleState: expected { readerIdle = s, writerIdle = s, allIdle = s }")
    assert.has_error(function() handler.readTimeout(0) end, "readTimeout: expected a number of seconds > 0, got 0")
    assert.has_error(function() handler.writeTimeout("1") end, "writeTimeout: expected a number of seconds > 0, got 1")
    assert.equal("lupine.NativeHandler(idleState)", tostring(handler.idleState { allIdle = 1 }))
  end)
end)

describe("lupine.handler.readTimeout", function()
  it("raises ReadTimeout and closes the channel when nothing is read in time", function()
    local server, seen = serve(handler.readTimeout(0.2))
    local c = test.client(server.port)
    test.eventually(function() return #seen.errors == 1 end, 5, "ReadTimeout")
    local err = seen.errors[1]
    assert.equal("ReadTimeout", err.kind)
    assert.equal("ReadTimeout: nothing read for 0.2 s", err.message)
    assert.equal("", c:receiveAll()) -- the server closed the connection
    loop:runFor(0.3)
    assert.equal(1, #seen.errors) -- once
    server:close()
  end)

  it("does not fire while the peer keeps talking", function()
    local server, seen = serve(handler.readTimeout(0.25))
    local c = test.client(server.port)
    local stop = loop:now() + 0.8
    while loop:now() < stop do
      c:send("x")
      loop:runFor(0.05)
    end
    assert.same({}, seen.errors)
    assert.is_true(c:isOpen())
    c:close()
    server:close()
  end)
end)

describe("lupine.handler.writeTimeout", function()
  it("raises WriteTimeout and closes when a write does not complete in time", function()
    local server, seen = serve(handler.writeTimeout(0.3))
    -- A client that never reads: the server's big write cannot complete.
    local stuck = lupine.connect { port = server.port, options = { autoRead = false, rcvBuf = 4096 } }
    test.eventually(function() return stuck:isDone() and seen.chans[1] ~= nil end)
    local ch = seen.chans[1]
    local quick = ch:writeAndFlush("small", lupine.promise())
    test.eventually(function() return quick:isDone() end)
    assert.is_true(quick:isSuccess()) -- into the kernel at once
    local t0 = loop:now()
    local big = ch:writeAndFlush(("b"):rep(16 * 1024 * 1024 - 10), lupine.promise())
    test.eventually(function() return #seen.errors == 1 end, 5, "WriteTimeout")
    local took = loop:now() - t0
    assert.equal("WriteTimeout: a write did not complete within 0.3 s", seen.errors[1].message)
    assert.is_true(took >= 0.29 and took < 3, ("after %.3f s"):format(took))
    test.eventually(function() return big:isDone() end)
    assert.equal("ClosedChannel", big:cause().kind) -- the close failed the write
    assert.is_false(ch:isOpen())
    stuck:get():close()
    server:close()
  end)
end)
