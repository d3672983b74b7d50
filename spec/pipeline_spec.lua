-- The pipeline from Lua: event order over a channel's life, propagation
-- order through several handlers, modification (also during an event),
-- names, and the mask that skips handlers without entering Lua.
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

-- Serve with init(ch); return the server and a table of server-side channels.
local function serve(init, options)
  local chans = {}
  return test.server(init, { options = options, channels = chans }), chans
end

describe("lupine.Pipeline", function()
  it("fires a channel's life in order: registered, active, read..., readComplete, inactive, unregistered", function()
    local events = {}
    local Recorder = {}
    for _, e in ipairs { "channelRegistered", "channelActive", "channelRead", "channelReadComplete",
      "channelInactive", "channelUnregistered" } do
      Recorder[e] = function(_, ctx, msg)
        events[#events + 1] = e
        if e == "channelRead" then msg:release() end
      end
    end
    local server = serve(function(ch) ch.pipeline:addLast("rec", Recorder) end)
    local c = test.client(server.port)
    c:send("hello")
    test.eventually(function() return events[#events] == "channelReadComplete" end)
    c:close()
    test.eventually(function() return events[#events] == "channelUnregistered" end)
    assert.same({ "channelRegistered", "channelActive", "channelRead", "channelReadComplete",
      "channelInactive", "channelUnregistered" }, events)
    server:close()
  end)

  it("passes inbound events head to tail and outbound operations tail to head", function()
    local trace = {}
    local function handler(tag)
      local h = {}
      function h:channelRead(ctx, msg)
        trace[#trace + 1] = "in:" .. tag
        ctx:fireChannelRead(msg .. tag)
      end
      function h:write(ctx, msg, promise)
        trace[#trace + 1] = "out:" .. tag
        ctx:write(msg .. tag, promise)
      end
      return h
    end
    local Last = {}
    function Last:channelRead(ctx, msg)
      trace[#trace + 1] = "last got " .. msg
      ctx:writeAndFlush("reply:")
    end
    local Decode = {}
    function Decode:channelRead(ctx, buf) ctx:fireChannelRead(buf:readString()) end
    local server = serve(function(ch)
      ch.pipeline:addLast("decode", Decode):addLast("a", handler("A")):addLast("b", handler("B"))
      ch.pipeline:addLast("c", handler("C")):addLast("last", Last)
    end)
    local c = test.client(server.port)
    c:send("x")
    assert.equal("reply:CBA", c:receive(#"reply:CBA"))
    assert.same({ "in:A", "in:B", "in:C", "last got xABC", "out:C", "out:B", "out:A" }, trace)
    c:close()
    server:close()
  end)

  it("skips a handler that lacks the event without entering Lua (the mask)", function()
    -- Every lookup of a method on this handler goes through __index and is
    -- counted: the pipeline looks methods up once, when the handler is added.
    local lookups = {}
    local Sparse = setmetatable({}, {
      __index = function(_, k)
        lookups[k] = (lookups[k] or 0) + 1
        if k == "channelActive" then return function(_, ctx) ctx:fireChannelActive() end end
      end,
    })
    local reads = 0
    local Sink = {}
    function Sink:channelRead(ctx, buf)
      reads = reads + 1
      buf:release()
    end
    local server = serve(function(ch) ch.pipeline:addLast("sparse", Sparse):addLast("sink", Sink) end)
    local c = test.client(server.port)
    for i = 1, 5 do
      c:send("ping" .. i)
      test.eventually(function() return reads >= i end)
    end
    c:close()
    test.eventually(function() return (lookups.channelUnregistered or 0) >= 1 and loop:channelCount() == 0 end)
    -- One lookup each, when added; none for the 5 reads, readCompletes and the rest.
    assert.equal(1, lookups.channelRead)
    assert.equal(1, lookups.channelReadComplete)
    assert.equal(1, lookups.channelInactive)
    assert.equal(2, lookups.channelActive) -- at add, and the one call it has
    server:close()
  end)

  it("adds, gets, names, replaces and removes handlers by name, handler or context", function()
    local seen
    local server = serve(function(ch)
      seen = ch
    end)
    local c = test.client(server.port)
    test.eventually(function() return seen ~= nil end)
    local p = seen.pipeline
    local A, B, C, D = { name = "A" }, { name = "B" }, {}, {}
    p:addLast("a", A):addFirst("b", B):addAfter("b", "c", C):addBefore("a", nil, D)
    assert.same({ "b", "c", "handler#0", "a" }, p:names())
    assert.equal(4, #p)
    assert.equal(A, p:get("a"))
    assert.is_nil(p:get("zzz"))
    assert.equal("a", p:context(A).name)
    assert.equal(A, p:context("a").handler)
    p:addLast(A) -- the same table may be added twice, under another name
    assert.same({ "b", "c", "handler#0", "a", "A#1" }, p:names())
    assert.has_error(function() p:addLast("a", {}) end, "pipeline: duplicate handler name 'a'")
    assert.has_error(function() p:addBefore("nope", "x", {}) end, "pipeline: no handler named 'nope'")
    assert.has_error(function() p:remove("nope") end, "pipeline: no handler named 'nope'")
    assert.has_error(function() p:addLast("x", 42) end)
    assert.equal(B, p:remove("b"))
    assert.equal(C, p:remove(C))
    assert.equal(D, p:remove(p:context("handler#0")))
    local E = {}
    assert.equal(A, p:replace("a", "e", E))
    assert.same({ "e", "A#1" }, p:names())
    assert.equal(A, p:replace("A#1", nil, {}))  -- keeps the name
    assert.same({ "e", "A#1" }, p:names())
    c:close()
    server:close()
  end)

  it("calls handlerAdded and handlerRemoved, also for handlers dropped at close", function()
    local log = {}
    local H = {}
    function H:handlerAdded(ctx) log[#log + 1] = "added " .. ctx.name end
    function H:handlerRemoved(ctx) log[#log + 1] = "removed " .. ctx.name end
    local server = serve(function(ch) ch.pipeline:addLast("one", H):addLast("two", H) end)
    local c = test.client(server.port)
    test.eventually(function() return #log == 2 end)
    c:close()
    test.eventually(function() return #log == 4 end)
    assert.same({ "added one", "added two", "removed two", "removed one" }, log)
    server:close()
  end)

  it("lets a handler remove itself while handling an event; the event goes on", function()
    local got = {}
    local Once = {}
    function Once:channelRead(ctx, buf)
      ctx.pipeline:remove(ctx)
      assert(ctx:isRemoved())
      ctx:fireChannelRead("once:" .. buf:readString())
    end
    local Tail = {}
    function Tail:channelRead(_, msg)
      got[#got + 1] = type(msg) == "string" and msg or msg:readString()
    end
    local server = serve(function(ch) ch.pipeline:addLast("once", Once):addLast("tail", Tail) end)
    local c = test.client(server.port)
    c:send("1")
    test.eventually(function() return #got == 1 end)
    c:send("2")
    test.eventually(function() return #got == 2 end)
    assert.same({ "once:1", "2" }, got)
    c:close()
    server:close()
  end)

  it("lets init replace itself and a handler add the next one mid-event", function()
    local got
    local Upper = {}
    function Upper:channelRead(ctx, msg)
      if type(msg) ~= "string" then msg = msg:readString() end -- later reads come as buffers
      ctx:writeAndFlush(msg:upper())
    end
    local Switch = {}
    function Switch:channelRead(ctx, buf)
      ctx.pipeline:replace(ctx, "upper", Upper) -- the rest of this event goes to Upper
      ctx:fireChannelRead(buf:readString())
    end
    local server = serve(function(ch) ch.pipeline:addLast("switch", Switch) end)
    local c = test.client(server.port)
    c:send("abc")
    assert.equal("ABC", c:receive(3))
    c:send("def")
    assert.equal("DEF", c:receive(3))
    got = true
    c:close()
    server:close()
    assert.is_true(got)
  end)

  it("refuses changes to the pipeline of a closed channel with a clear error", function()
    local ch
    local server = serve(function(c) ch = c end)
    local c = test.client(server.port)
    test.eventually(function() return ch ~= nil end)
    c:close()
    test.eventually(function() return loop:channelCount() == 0 end)
    assert.has_error(function() ch.pipeline:addLast("late", {}) end,
      ("pipeline of channel #%d is gone (the channel was closed)"):format(ch.id))
    server:close()
  end)

  it("gives each channel its own attr table and context state", function()
    local Count = {}
    function Count:channelRead(ctx, buf)
      local a = ctx.channel.attr
      a.n = (a.n or 0) + #buf
      ctx:writeAndFlush(tostring(a.n) .. ";")
      buf:release()
    end
    local server = serve(function(ch) ch.pipeline:addLast("count", Count) end)
    local c1, c2 = test.client(server.port), test.client(server.port)
    c1:send("aaa")
    assert.equal("3", c1:receiveUntil(";"))
    c2:send("b")
    assert.equal("1", c2:receiveUntil(";"))
    c1:send("aa")
    assert.equal("5", c1:receiveUntil(";"))
    c1:close()
    c2:close()
    server:close()
  end)
end)
