-- lupine.test.embedded: a channel without a socket that runs the real
-- pipeline (the same C code as socket channels; only the head's I/O and the
-- tail's handling differ).
local lupine = require "lupine"
local test = require "lupine.test"
local codec = lupine.codec

describe("test.embedded", function()
  it("runs a handler's lifecycle as a socket channel does", function()
    local events = {}
    local function note(name) return function() events[#events + 1] = name end end
    local h = {
      handlerAdded = note("added"), channelRegistered = note("registered"), channelActive = note("active"),
      channelInactive = note("inactive"), channelUnregistered = note("unregistered"), handlerRemoved = note("removed"),
    }
    local ch = test.embedded(h)
    assert.same({ "added", "registered", "active" }, events)
    assert.is_true(ch:isActive())
    assert.matches("^lupine.Channel#%d+ embedded active$", tostring(ch))
    assert.is_false(ch:finish())
    assert.same({ "added", "registered", "active", "inactive", "unregistered", "removed" }, events)
    assert.is_false(ch:isOpen())
  end)

  it("writeInbound runs messages through the pipeline; readInbound pops what reached the tail", function()
    local upper = { channelRead = function(_, ctx, s) ctx:fireChannelRead(s:upper()) end }
    local seen = 0
    local swallow = { channelRead = function(_, ctx, s)
      seen = seen + 1
      if s ~= "DROP" then ctx:fireChannelRead(s) end
    end }
    local ch = test.embedded(upper, swallow)
    assert.is_true(ch:writeInbound("a", "drop", "b"))
    assert.equal(3, seen)
    assert.equal("A", ch:readInbound())
    assert.equal("B", ch:readInbound())
    assert.is_nil(ch:readInbound())
    assert.is_false(ch:writeInbound("drop"))
  end)

  it("keeps writes until flushed, then readOutbound pops them and their promises succeed", function()
    local ch = test.embedded({ write = function(_, ctx, msg, promise) ctx:write("<" .. msg .. ">", promise) end })
    local f = ch:write("x", lupine.promise())
    assert.is_nil(ch:readOutbound())
    assert.is_false(f:isDone())
    ch:flush()
    assert.is_true(f:isSuccess())
    assert.equal("<x>", ch:readOutbound())
    assert.is_true(ch:writeOutbound("y", "z"))
    assert.equal("<y>", ch:readOutbound())
    assert.equal("<z>", ch:readOutbound())
  end)

  it("hands Buffers that reach either end over as Buffers", function()
    local ch = test.embedded()
    ch:writeInbound(lupine.buffer("in"))
    ch:writeOutbound(lupine.buffer("out"))
    assert.equal("in", ch:readInbound():toString())
    assert.equal("out", ch:readOutbound():toString())
  end)

  it("takes a written Buffer as a socket does: the writer's box is empty, a second write fails", function()
    local after, second
    local H = {}
    function H:channelRead(ctx, buf)
      ctx:write(buf)
      after = select(2, pcall(buf.readableBytes, buf))
      ctx:write(buf, function(f) second = f:cause() end)
      ctx:flush()
    end
    local ch = test.embedded(H)
    ch:writeInbound(lupine.buffer("abc"))
    assert.equal("lupine.Buffer used after release or hand-off", after)
    assert.equal("UnsupportedMessage: lupine.Buffer used after release or hand-off", tostring(second))
    assert.equal("abc", ch:readOutbound():toString())
    assert.is_nil(ch:readOutbound())
  end)

  it("reports a written Buffer written again, with no listener, as a socket does: checkException raises it", function()
    local H = {}
    function H:channelRead(ctx, buf)
      ctx:write(buf)
      ctx:writeAndFlush(buf)
    end
    local ch = test.embedded(H)
    local ok, err = pcall(ch.writeInbound, ch, lupine.buffer("abc"))
    assert.is_false(ok)
    assert.equal("UnsupportedMessage: lupine.Buffer used after release or hand-off", tostring(err))
    assert.equal("abc", ch:readOutbound():toString())
  end)

  it("refuses writeOutbound of a Buffer already handed to the channel", function()
    local ch = test.embedded()
    local buf = lupine.buffer("x")
    ch:writeOutbound(buf)
    assert.has_error(function() buf:readableBytes() end, "lupine.Buffer used after release or hand-off")
    local ok, err = pcall(ch.writeOutbound, ch, buf)
    assert.is_false(ok)
    assert.equal("UnsupportedMessage: lupine.Buffer used after release or hand-off", tostring(err))
    assert.equal("x", ch:readOutbound():toString())
    assert.is_nil(ch:readOutbound())
  end)

  it("takes an app: its options are set and its init builds the pipeline", function()
    local ch = test.embedded(dofile("examples/echo.lua"))
    ch:writeInbound(lupine.buffer("hi"))
    assert.equal("hi", ch:readOutbound():toString())
    assert.is_false(ch:finish())
    local inits = 0
    local app = lupine.app {
      options = { autoRead = false, highWaterMark = 100000 },
      init = function(c)
        inits = inits + 1
        c.pipeline:addLast("lines", codec.lineFrame { asString = true })
      end,
    }
    ch = test.embedded(app)
    assert.equal(1, inits)
    assert.is_false(ch:config():isAutoRead())
    assert.equal(100000, ch:config():getOption("highWaterMark"))
    ch:writeInbound("a\nb\n")
    assert.equal("a", ch:readInbound())
    assert.is_nil(ch:readInbound())
    ch = test.embedded(function(c) c.pipeline:addLast("lines", codec.lineFrame { asString = true }) end)
    ch:writeInbound("c\n")
    assert.equal("c", ch:readInbound())
    assert.has_error(function() test.embedded(app, {}) end,
      "test.embedded: give an app (or its init function) alone, or handlers")
    assert.has_error(function() test.embedded { init = function() error("no", 0) end } end, "no")
  end)

  it("records an exception that reaches the tail: checkException raises it once; the channel stays open", function()
    local ch = test.embedded({ channelRead = function(_, _, msg) if msg == "bad" then error({ kind = "Mine" }) end end })
    local ok, err = pcall(ch.writeInbound, ch, "bad")
    assert.is_false(ok)
    assert.equal("Mine", err.kind)
    ch:checkException() -- nothing left
    assert.is_true(ch:isActive())
    ch:writeInbound("good")
  end)

  it("fails writes after close with ClosedChannel", function()
    local ch = test.embedded()
    local pending = ch:write("never flushed", lupine.promise())
    ch:close()
    assert.equal("ClosedChannel", pending:cause().kind)
    local f = ch:write("late", lupine.promise())
    ch:runPendingTasks()
    assert.is_true(f:isDone())
    assert.matches("^ClosedChannel: channel #%d+ is closed$", tostring(f:cause()))
    assert.is_nil(ch:readOutbound())
  end)

  it("runs tasks and timers: runPendingTasks, advanceTime", function()
    local ran = {}
    local ch = test.embedded({
      channelRead = function(_, ctx, msg)
        ctx.executor:execute(function() ran[#ran + 1] = "task " .. msg end)
        ctx.executor:schedule(0.05, function() ran[#ran + 1] = "timer " .. msg end)
      end,
    })
    ch.pipeline:fireChannelRead("a")
    assert.same({}, ran)
    ch:runPendingTasks()
    assert.same({ "task a" }, ran)
    ch:advanceTime(0.1)
    assert.same({ "task a", "timer a" }, ran)
  end)

  it("finish says whether messages were left unread", function()
    local ch = test.embedded()
    ch:writeInbound("left")
    assert.is_true(ch:finish())
    assert.equal("left", ch:readInbound())
  end)

  it("drives a decoder with autoRead off: one frame per read()", function()
    local ch = test.embedded(codec.lineFrame { asString = true })
    ch:config():setAutoRead(false)
    ch:writeInbound("1\n2\n3\n")
    assert.equal("1", ch:readInbound())
    assert.is_nil(ch:readInbound())
    ch:read()
    ch:runPendingTasks()
    assert.equal("2", ch:readInbound())
    assert.is_nil(ch:readInbound())
    ch:writeInbound("4\n5\n")
    assert.equal("3", ch:readInbound()) -- bytes that came: one frame (the oldest)
    assert.is_nil(ch:readInbound())
    ch:config():setAutoRead(true) -- reading on again: everything held goes out
    ch:runPendingTasks()
    assert.equal("4", ch:readInbound())
    assert.equal("5", ch:readInbound())
    ch:writeInbound("6\n")
    assert.equal("6", ch:readInbound())
  end)

  it("tests a whole protocol handler without sockets", function()
    local Ping = { channelRead = function(_, ctx, line) ctx:writeAndFlush(line == "ping" and "pong\n" or "?\n") end }
    local ch = test.embedded(codec.lineFrame { asString = true }, Ping)
    ch:writeInbound("pi", "ng\nxx\n")
    assert.equal("pong\n", ch:readOutbound())
    assert.equal("?\n", ch:readOutbound())
    assert.is_false(ch:finish())
  end)

  it("is not counted among the loop's connections", function()
    local before = lupine.loop():channelCount()
    local ch = test.embedded()
    assert.equal(before, lupine.loop():channelCount())
    ch:finish()
  end)

  it("closes a channel nobody refers to any more", function()
    local inactive = 0
    for _ = 1, 50 do test.embedded({ channelInactive = function() inactive = inactive + 1 end }) end
    collectgarbage()
    collectgarbage()
    test.embedded():finish() -- runs the tasks
    test.eventually(function() return inactive == 50 end)
  end)
end)
