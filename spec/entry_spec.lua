-- Entering the binding from Lua: arguments are checked before anything is
-- entered (a bad call leaves no state behind), and handlers always run on the
-- state's main thread, whichever coroutine made the call that led to them.
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

local function on_main()
  local _, main = coroutine.running()
  return main
end

describe("entering lupine from Lua", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("runs handlers on the main thread when a coroutine writes or fires", function()
    local seen = {}
    local Out = {}
    function Out:write(ctx, msg, promise)
      seen[#seen + 1] = "write " .. tostring(on_main())
      ctx:write(msg, promise)
    end
    local In = {}
    function In:channelRead(ctx, msg)
      seen[#seen + 1] = "read " .. tostring(on_main())
      coroutine.wrap(function() ctx:writeAndFlush(msg) end)()
    end
    function In:channelReadComplete(ctx) seen[#seen + 1] = "complete " .. tostring(on_main()) end
    local server = test.server(function(ch) ch.pipeline:addLast("out", Out):addLast("in", In) end)
    local c = test.client(server.port)
    c:send("one")
    assert.equal("one", c:receive(3))
    -- the channel's own pipeline, fired from a coroutine of the test
    coroutine.wrap(function()
      c.channel.pipeline:fireUserEventTriggered("x")
    end)()
    assert.same({ "read true", "write true", "complete true" }, seen)
    c:close()
    server:close()
  end)

  it("checks ctx:fire* arguments before entering: later events still run on the main thread", function()
    local seen, errors = {}, {}
    local Probe = {}
    function Probe:channelRead(ctx, msg)
      seen[#seen + 1] = "read " .. tostring(on_main())
      -- a bad call from a coroutine that is dead by the next event
      coroutine.wrap(function()
        local ok, err = pcall(function() ctx:fireChannelRead() end)
        errors[#errors + 1] = not ok and err:match("bad argument.*") or "no error"
      end)()
      collectgarbage()
      ctx:write(msg)
    end
    function Probe:channelReadComplete(ctx)
      seen[#seen + 1] = "complete " .. tostring(on_main())
      ctx:flush()
    end
    local server = test.server(function(ch) ch.pipeline:addLast("probe", Probe) end)
    local c = test.client(server.port)
    c:send("a")
    assert.equal("a", c:receive(1))
    c:send("b")
    assert.equal("b", c:receive(1))
    assert.same({ "read true", "complete true", "read true", "complete true" }, seen)
    assert.same({ "bad argument #1 to 'fireChannelRead' (value expected)",
      "bad argument #1 to 'fireChannelRead' (value expected)" }, errors)
    c:close()
    server:close()
  end)

  it("checks pipeline:fire* arguments before entering: a removed handler is still freed", function()
    local codec = require "lupine.codec"
    -- A Lua decoder's per-channel self lives until its context is freed; a
    -- pipeline left entered by a bad call would keep it forever.
    local selves = setmetatable({}, { __mode = "k" })
    local decoder = codec.decoder {
      decode = function(self, _, buf, out)
        selves[self] = true
        if buf:readableBytes() > 0 then out[#out + 1] = buf:readString() end
      end,
    }
    local ch = test.embedded(decoder)
    local p = ch.channel.pipeline
    assert.is_true(ch:writeInbound("x"))
    assert.equal("x", ch:readInbound())
    assert.has_error(function() p:fireChannelRead() end, "bad argument #1 to 'fireChannelRead' (value expected)")
    assert.has_error(function() p:fireUserEventTriggered() end,
      "bad argument #1 to 'fireUserEventTriggered' (value expected)")
    assert.has_error(function() p:fireExceptionCaught() end, "bad argument #1 to 'fireExceptionCaught' (value expected)")
    p:remove(decoder)
    assert.is_true(ch:writeInbound("y")) -- passes through now
    assert.equal("y", ch:readInbound())
    ch:finish()
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(selves), "the removed decoder's state was never freed")
  end)

  it("refuses a light userdata where a native object is expected, without reading through it", function()
    -- A registry key is a light userdata whose address is a one-byte global:
    -- a tag check that read through it went out of bounds (ASan).
    local b = lupine.buffer("abc")
    local key
    for k, v in pairs(debug.getregistry()) do
      if v == debug.getmetatable(b) and type(k) == "userdata" then key = k end
    end
    assert.is_not_nil(key)
    assert.has_error(function() b:writeBytes(key) end, "bad argument #1 to 'writeBytes' (lupine.Buffer expected, got light userdata)")
    assert.has_error(function() b.readableBytes(key) end,
      "bad argument #1 to 'readableBytes' (lupine.Buffer expected, got light userdata)")
    assert.has_error(function() loop.now(key) end, "bad argument #1 to 'now' (lupine.Loop expected, got light userdata)")
    local server = test.server(function() end)
    local c = test.client(server.port)
    local cause
    c.channel:writeAndFlush(key, function(f) cause = tostring(f:cause()) end)
    test.eventually(function() return cause end)
    assert.equal("UnsupportedMessage: cannot write a userdata: add an encoder to turn it into bytes", cause)
    c:close()
    server:close()
  end)

  it("releases a future's Lua value with the future", function()
    local values = setmetatable({}, { __mode = "k" })
    for _ = 1, 3 do
      local ok, failed = lupine.promise(), lupine.promise()
      local v, e = {}, setmetatable({}, { __tostring = function() return "e" end })
      values[v], values[e] = true, true
      ok:setSuccess(v)
      failed:setFailure(e)
      assert.equal(v, ok:get())
      assert.equal(e, failed:cause())
    end
    -- a handler that raises on an outbound operation: its error stays on the promise
    local raised = {}
    values[raised] = true
    local Out = {}
    function Out:write() error(raised) end
    local ch = test.embedded(Out)
    local p = lupine.promise()
    ch.channel:write("x", p)
    assert.equal(raised, p:cause())
    p, raised = nil, nil
    ch:finish()
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(values), "a future's value outlived it")
  end)
end)
