-- Errors in handlers: exceptionCaught on the same handler with a traceback,
-- propagation, the tail's log-and-close, and handlers that fail on everything.
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

describe("handler errors", function()
  it("become exceptionCaught on the same handler: a lupine.Error with its message, handler, event and traceback apart",
    function()
    local caught
    local Boom = {}
    function Boom:channelRead(ctx, buf)
      buf:release()
      error("boom")
    end
    function Boom:exceptionCaught(ctx, err)
      caught = err
      ctx:writeAndFlush("caught\n")
    end
    local server = test.server(function(ch) ch.pipeline:addLast("boom", Boom) end)
    local c = test.client(server.port)
    c:send("x")
    assert.equal("caught", c:receiveLine())
    assert.equal("lupine.Error", getmetatable(caught))
    assert.equal("LuaError", caught.kind)
    assert.matches("^spec/exception_spec.lua:%d+: boom$", caught.message) -- as raised, nothing added
    assert.equal("boom", caught.handler)
    assert.equal("channelRead", caught.event)
    assert.matches("^stack traceback:\n\t%[C%]: in function 'error'\n\tspec/exception_spec.lua:%d+: in function",
      caught.traceback)
    assert.equal(("handler 'boom' channelRead: %s\n%s"):format(caught.message, caught.traceback), tostring(caught))
    assert.equal(caught.traceback, lupine.traceback(caught))
    c:close()
    server:close()
  end)

  it("go to the next handler's exceptionCaught when the failing one has none; error tables pass as they are", function()
    local caught
    local Fails = {}
    function Fails:channelRead(_, buf)
      buf:release()
      error({ code = 42 })
    end
    local Catcher = {}
    function Catcher:exceptionCaught(ctx, err)
      caught = err
      ctx:close()
    end
    local server = test.server(function(ch) ch.pipeline:addLast("fails", Fails):addLast("catcher", Catcher) end)
    local c = test.client(server.port)
    c:send("x")
    test.eventually(function() return caught ~= nil end)
    assert.same({ code = 42 }, caught)
    assert.is_nil(getmetatable(caught))
    -- its traceback waits beside it
    assert.matches("^stack traceback:\n\t%[C%]: in function 'error'\n\tspec/exception_spec.lua:%d+: in ",
      lupine.traceback(caught))
    test.eventually(function() return c.closed end)
    server:close()
  end)

  it("make a lupine.Error of any raised value that is not a table or userdata: error(42), error(false)", function()
    for _, case in ipairs { { 42, "42" }, { false, "(error object is a boolean value)" } } do
      local caught
      local ch = test.embedded { channelRead = function() error(case[1]) end,
        exceptionCaught = function(_, _, err) caught = err end }
      ch:writeInbound("x")
      assert.equal("LuaError", caught.kind)
      assert.equal(case[2], caught.message)
      assert.matches("^stack traceback:\n", caught.traceback)
      ch:finish()
    end
  end)

  it("arrive as the very table raised, also one whose __tostring raises or says something else", function()
    local Quiet = setmetatable({}, { __tostring = function() return "a quiet table" end })
    local Broken = setmetatable({}, { __tostring = function() error("tostring broke") end })
    for _, raised in ipairs { Quiet, Broken } do
      local caught
      local server = test.server(function(ch)
        ch.pipeline:addLast("fails", { channelRead = function(_, _, buf)
          buf:release()
          error(raised)
        end, exceptionCaught = function(_, ctx, err)
          caught = err
          ctx:close()
        end })
      end)
      local c = test.client(server.port)
      c:send("x")
      test.eventually(function() return caught ~= nil end)
      assert.equal(raised, caught)
      assert.is_string(lupine.traceback(caught))
      test.eventually(function() return c.closed end)
      server:close()
    end
  end)

  it("keep their message apart for a native error too: a native error has no traceback", function()
    local caught
    local server = test.server(function(ch)
      ch.pipeline:addLast("late", { channelRead = function(_, ctx, buf)
        buf:release()
        local f = ctx.channel:close()
        f:addListener(function() end)
        ctx.channel:write("after close", function(w) caught = w:cause() end)
      end })
    end)
    local c = test.client(server.port)
    c:send("x")
    test.eventually(function() return caught ~= nil end)
    assert.equal("ClosedChannel", caught.kind)
    assert.matches("^ClosedChannel: channel #%d+ is closed$", caught.message)
    assert.is_nil(caught.traceback)
    assert.is_nil(lupine.traceback(caught))
    assert.equal(caught.message, tostring(caught))
    server:close()
  end)

  it("close the channel when they reach the tail (closeOnException), and keep it open when told not to", function()
    local Fails = {}
    function Fails:channelRead(ctx, buf)
      ctx:writeAndFlush(buf:readString()) -- echo first, then fail
      error("unhandled on purpose")
    end
    local server = test.server(function(ch) ch.pipeline:addLast("fails", Fails) end)
    local c = test.client(server.port)
    c:send("a")
    assert.equal("a", c:receive(1))
    test.eventually(function() return c.closed end, 5, "the server to close the channel")
    server:close()

    server = test.server(function(ch) ch.pipeline:addLast("fails", Fails) end,
      { options = { closeOnException = false } })
    c = test.client(server.port)
    for i = 1, 3 do
      c:send(tostring(i))
      assert.equal(tostring(i), c:receive(1))
    end
    assert.is_false(c.closed)
    c:close()
    server:close()
  end)

  it("in exceptionCaught itself are logged, not looped; a handler failing on every event leaves others alone", function()
    local Hopeless = {}
    local calls = 0
    for _, e in ipairs { "channelRegistered", "channelActive", "channelRead", "channelReadComplete",
      "channelInactive", "channelUnregistered", "exceptionCaught" } do
      Hopeless[e] = function()
        calls = calls + 1
        error("fails in " .. e)
      end
    end
    local bad = test.server(function(ch) ch.pipeline:addLast("hopeless", Hopeless) end)
    local good = test.server(dofile("examples/echo.lua"))
    local g = test.client(good.port)
    local b = test.client(bad.port)
    b:send("x")
    g:send("still fine")
    assert.equal("still fine", g:receive(10))
    test.eventually(function() return b.closed end, 5, "the failing channel to close")
    assert.is_true(calls >= 4)
    g:send("again")
    assert.equal("again", g:receive(5))
    g:close()
    good:close()
    bad:close()
  end)

  it("in init(ch) close only that channel", function()
    local n = 0
    local server = test.server(function(ch)
      n = n + 1
      if n == 1 then error("init fails for the first") end
      ch.pipeline:addLast { channelRead = function(_, ctx, b) ctx:writeAndFlush(b) end }
    end)
    local first = test.client(server.port)
    test.eventually(function() return first.closed end, 5, "the first channel to close")
    local second = test.client(server.port)
    second:send("ok")
    assert.equal("ok", second:receive(2))
    second:close()
    server:close()
  end)

  it("fail the promise of an outbound operation, which then reaches exceptionCaught when nobody listens", function()
    local caught, future
    local BadWrite = {}
    function BadWrite:write() error("encoder broke") end
    local Front = {}
    function Front:channelRead(ctx, buf)
      buf:release()
      future = ctx:writeAndFlush("x", ctx:newPromise())
    end
    function Front:exceptionCaught(ctx, err)
      caught = err
      ctx:close()
    end
    local server = test.server(function(ch) ch.pipeline:addLast("bad", BadWrite):addLast("front", Front) end)
    local c = test.client(server.port)
    c:send("go")
    test.eventually(function() return caught ~= nil end)
    assert.matches("handler 'bad' write: .*encoder broke", tostring(caught))
    assert.is_false(future:isSuccess())
    assert.matches("encoder broke", tostring(future:cause()))
    c:close()
    server:close()
  end)
end)

describe("an outbound close that raises", function()
  local BadClose = { close = function() error("close broke", 0) end }
  local Closer = { channelRead = function(_, ctx, buf)
    buf:release()
    ctx:close()
  end }

  it("reaches exceptionCaught when nobody listens to the close", function()
    local caught
    local server = test.server(function(ch)
      ch.pipeline:addLast("badClose", BadClose):addLast("closer", Closer)
      ch.pipeline:addLast("catcher", { exceptionCaught = function(_, ctx, err)
        caught = err
        ctx:writeAndFlush("caught\n")
      end })
    end)
    local c = test.client(server.port)
    c:send("x")
    assert.equal("caught", c:receiveLine())
    assert.matches("^handler 'badClose' close: close broke", tostring(caught))
    assert.is_false(c.closed) -- handled: the channel stays open
    c:close()
    server:close()
  end)

  it("unhandled, is logged at the tail, which closes the channel past the raising handler", function()
    local server = test.server(function(ch) ch.pipeline:addLast("badClose", BadClose):addLast("closer", Closer) end)
    local c = test.client(server.port)
    c:send("x")
    assert.equal("", c:receiveAll(5))
    server:close()
  end)
end)

describe("handlers with unusual tables", function()
  it("a strict handler refuses to be added with the error of its __index", function()
    local Strict = setmetatable({}, { __index = function(_, k) error("strict: no field " .. k) end })
    local err
    local server = test.server(function(ch)
      err = select(2, pcall(ch.pipeline.addLast, ch.pipeline, "strict", Strict))
    end)
    local c = test.client(server.port)
    test.eventually(function() return err ~= nil end)
    assert.matches("strict: no field channelRegistered", err)
    c:close()
    server:close()
  end)

  it("a handler whose handlerAdded raises is removed again, and addLast raises its error", function()
    local err, names, removed
    local Bad = { handlerAdded = function() error("not today") end, handlerRemoved = function() removed = true end }
    local server = test.server(function(ch)
      err = select(2, pcall(ch.pipeline.addLast, ch.pipeline, "bad", Bad))
      names = ch.pipeline:names()
    end)
    local c = test.client(server.port)
    test.eventually(function() return err ~= nil end)
    assert.matches("^pipeline: handler 'bad' was not added: its handlerAdded raised: .*not today", err)
    assert.same({}, names)
    assert.is_true(removed)
    c:close()
    server:close()
  end)

  it("a handler whose method lookup raises during an event gives exceptionCaught, not a crash", function()
    local lookups, caught = 0, nil
    local Flaky = setmetatable({}, {
      __index = function(_, k)
        if k ~= "channelRead" then return nil end
        lookups = lookups + 1
        if lookups > 1 then error("flaky lookup") end -- fine when added, raises when called
        return function() end
      end,
    })
    local server = test.server(function(ch)
      ch.pipeline:addLast("flaky", Flaky)
      ch.pipeline:addLast("catch", { exceptionCaught = function(_, ctx, err)
        caught = err
        ctx:writeAndFlush("recovered")
      end })
    end)
    local c = test.client(server.port)
    c:send("x")
    assert.equal("recovered", c:receive(9))
    assert.matches("^handler 'flaky' channelRead: .*flaky lookup", caught)
    c:close()
    server:close()
  end)
end)
