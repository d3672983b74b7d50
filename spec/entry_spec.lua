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

  it("runs handlers on the main thread while a coroutine drives the loop", function()
    local seen = {}
    local Echo = {}
    function Echo:channelRead(ctx, buf)
      seen[#seen + 1] = on_main()
      ctx:writeAndFlush(buf)
    end
    local server = test.server(function(ch) ch.pipeline:addLast(Echo) end)
    for i = 1, 3 do
      local got = coroutine.wrap(function() -- each client's waits run the loop from its coroutine
        local c = test.client(server.port)
        c:send("hello" .. i)
        local s = c:receive(6)
        c:close()
        return s
      end)()
      assert.equal("hello" .. i, got)
      collectgarbage() -- the coroutine is gone before the next one starts
    end
    assert.same({ true, true, true }, seen)
    server:close()
  end)

  it("runs handlers on the main thread when lupine was first used in a coroutine, now dead", function()
    local build = os.getenv("LUPINE_BUILD") or "build"
    local cmd = ("LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./%s/lib/?.so;;' timeout 30 lua5.4 "
      .. "spec/apps/first_use_in_coroutine.lua 2>&1"):format(build)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    assert.equal("ok\n", out)
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

describe("argument errors", function()
  -- The error of f(...) called from C (pcall), where Lua has no name for f.
  local function err_of(f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok)
    return err
  end

  it("name the method also when it is called from C (pcall(ctx.write, ctx))", function()
    local b = lupine.buffer("abc")
    assert.has_error(function() b:writeU8() end, "bad argument #1 to 'writeU8' (number expected, got no value)")
    assert.equal("bad argument #2 to 'writeU8' (number expected, got no value)", err_of(b.writeU8, b))
    assert.equal("bad argument #3 to 'slice' (number expected, got no value)", err_of(b.slice, b, 1))
    assert.equal("bad argument #1 to 'readableBytes' (lupine.Buffer expected, got number)", err_of(b.readableBytes, 42))
    assert.equal("bad argument #2 to 'schedule' (number expected, got string)", err_of(loop.schedule, loop, "soon"))
    local ch = test.embedded()
    local p = ch.channel.pipeline
    assert.has_error(function() p:addLast(42) end, "bad argument #1 to 'addLast' (handler table expected, got number)")
    assert.equal("bad argument #2 to 'addLast' (handler table expected, got number)", err_of(p.addLast, p, 42))
    assert.equal("bad argument #2 to 'write' (value expected)", err_of(ch.channel.write, ch.channel))
    ch:finish()
    local errors = {}
    local H = {}
    function H:channelRead(ctx)
      errors[1] = select(2, pcall(ctx.write, ctx))
      errors[2] = select(2, pcall(function() ctx:write() end)):match("bad argument.*")
      errors[3] = select(2, pcall(ctx.fireUserEventTriggered, ctx))
    end
    local e = test.embedded(H)
    e:writeInbound("x")
    assert.same({ "bad argument #2 to 'write' (value expected)", "bad argument #1 to 'write' (value expected)",
      "bad argument #2 to 'fireUserEventTriggered' (value expected)" }, errors)
    e:finish()
  end)
end)

describe("Lua strings that become C strings", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  local NUL = "must not contain NUL bytes"

  it("refuse NUL bytes in hosts", function()
    -- A Lua allow-list that checks the suffix must not be bypassed by a prefix C would see.
    local host = "127.0.0.1\0.allowed.example.com"
    assert.has_error(function() lupine.connect { host = host, port = 1 } end, "option 'host' " .. NUL)
    assert.has_error(function() lupine.server { host = host, init = function() end } end, "option 'host' " .. NUL)
    assert.has_error(function() lupine.resolve(host) end, "bad argument #1 to 'resolve' (" .. NUL .. ")")
    assert.has_error(function() lupine.setResolver { servers = "127.0.0.1:53\0x" } end, "setResolver: 'servers' " .. NUL)
    assert.has_error(function() lupine.setResolver { servers = { "127.0.0.1:53\0x" } } end, "setResolver: 'servers' " .. NUL)
    lupine.setResolver(nil) -- the system's settings, whatever happened above
    -- serve would listen on the prefix until stopped: a timer stops it if it starts
    local stop = loop:schedule(0.5, function() loop:stop() end)
    assert.has_error(function() lupine.serve({ init = function() end }, { host = host, workers = 0 }) end,
      "lupine: option 'host' " .. NUL)
    assert.has_error(function() lupine.serve({ init = function() end }, { source = "app\0.lua", workers = 0 }) end,
      "lupine: option 'source' " .. NUL)
    stop:cancel()
  end)

  it("refuse NUL bytes in option names", function()
    assert.has_error(function()
      lupine.server { init = function() end, options = { ["autoRead\0x"] = false } }
    end, "channel option names " .. NUL)
    local codec = require "lupine.codec"
    assert.has_error(function() codec.lineFrame { ["maxLength\0x"] = 1 } end, "lineFrame: option names " .. NUL)
    local ch = test.embedded()
    local cfg = ch.channel:config()
    assert.has_error(function() cfg:setOption("autoRead\0x", false) end, "bad argument #1 to 'setOption' (" .. NUL .. ")")
    assert.has_error(function() cfg:getOption("autoRead\0x") end, "bad argument #1 to 'getOption' (" .. NUL .. ")")
    assert.is_true(cfg:getOption("autoRead"))
    ch:finish()
  end)

  it("refuse NUL bytes in handler names", function()
    local H = {}
    local ch = test.embedded()
    local p = ch.channel.pipeline
    p:addLast("a", H)
    assert.has_error(function() p:addLast("a\0b", {}) end, "bad argument #1 to 'addLast' (" .. NUL .. ")")
    assert.has_error(function() p:addBefore("a\0b", "c", {}) end, "bad argument #1 to 'addBefore' (" .. NUL .. ")")
    assert.has_error(function() p:addAfter("a", "c\0d", {}) end, "bad argument #2 to 'addAfter' (" .. NUL .. ")")
    assert.has_error(function() p:replace("a", "b\0c", {}) end, "bad argument #2 to 'replace' (" .. NUL .. ")")
    assert.has_error(function() p:get("a\0b") end, "bad argument #1 to 'get' (" .. NUL .. ")")
    assert.has_error(function() p:remove("a\0b") end, "bad argument #1 to 'remove' (" .. NUL .. ")")
    assert.has_error(function() p:addLast({ name = "x\0y" }) end, "pipeline: a handler's name " .. NUL)
    assert.same({ "a" }, p:names())
    ch:finish()
  end)

  it("refuse NUL bytes in log text, log levels and addresses", function()
    assert.has_error(function() lupine.log("error", "ok", "a\0b") end, "bad argument #3 to 'log' (" .. NUL .. ")")
    assert.has_error(function() lupine.log("debug", "a\0b") end, "bad argument #2 to 'log' (" .. NUL .. ")")
    assert.has_error(function() lupine.log("error\0x", "a") end, "bad argument #1 to 'log' (" .. NUL .. ")")
    assert.has_error(function() lupine.setLogLevel("off\0x") end, "bad argument #1 to 'setLogLevel' (" .. NUL .. ")")
    assert.has_error(function() loop:runUntil(function() return true end, 1, "x\0y") end,
      "bad argument #3 to 'runUntil' (" .. NUL .. ")")
    local err
    local H = {}
    function H:channelRead(ctx)
      err = select(2, pcall(function() ctx:connect("127.0.0.1:1\0junk") end))
    end
    local ch = test.embedded(H)
    ch:writeInbound("go")
    assert.equal("bad argument #1 to 'connect' (" .. NUL .. ")", err:match("bad argument.*"))
    ch:finish()
  end)
end)
