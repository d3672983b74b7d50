-- Channels: properties and options, writes and their futures, water marks,
-- closed channels, unwritable messages, buffers after hand-off, peers that
-- reset or leave mid-message.
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

-- A server whose channels get `handler`; returns the server and its channels.
local function serve(handler, options)
  local chans = {}
  local server = test.server(function(ch)
    chans[#chans + 1] = ch
    if handler then ch.pipeline:addLast("h", handler) end
  end, { options = options })
  return server, chans
end

describe("lupine.Channel", function()
  it("knows its id, addresses, state and options", function()
    local server, chans = serve()
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    local ch = chans[1]
    assert.equal("integer", math.type(ch.id))
    assert.equal("127.0.0.1:" .. server.port, ch.localAddress)
    assert.equal(server.port, ch.localPort)
    assert.equal("127.0.0.1", ch.remoteHost)
    assert.equal(c.channel.localPort, ch.remotePort)
    assert.equal(ch.remoteAddress, c.channel.localAddress)
    assert.is_true(ch:isActive())
    assert.is_true(ch:isOpen())
    assert.is_true(ch:isWritable())
    assert.equal(0, ch.worker)
    assert.equal(ch, ch.pipeline.channel)
    assert.matches("^lupine.Channel#%d+ 127.0.0.1:%d+ <%- 127.0.0.1:%d+ active$", tostring(ch))
    local cfg = ch:config()
    assert.is_true(cfg:getOption("tcpNoDelay"))
    assert.is_false(cfg:getOption("keepAlive"))
    assert.is_true(cfg:isAutoRead())
    assert.equal(65536, cfg:getOption("highWaterMark"))
    assert.equal(32768, cfg:getOption("lowWaterMark"))
    assert.equal(16 * 1024 * 1024, cfg:getOption("maxPendingBytes"))
    cfg:setOption("keepAlive", true)
    assert.is_true(cfg:getOption("keepAlive"))
    cfg:setOption("sndBuf", 65536)
    assert.is_true(cfg:getOption("sndBuf") >= 65536)
    assert.has_error(function() cfg:setOption("noSuchOption", 1) end)
    assert.has_error(function() cfg:setOption("tcpNoDelay", 1) end, "option 'tcpNoDelay' must be a boolean")
    c:close()
    test.eventually(function() return not ch:isOpen() end)
    assert.is_false(ch:isActive())
    server:close()
  end)

  it("rejects unknown options and bad values when a server is made", function()
    assert.has_error(function() lupine.server { port = 0, init = print, options = { tcpNodelay = true } } end,
      "unknown channel option 'tcpNodelay' (known: tcpNoDelay, keepAlive, rcvBuf, sndBuf, autoRead, "
        .. "allowHalfClosure, autoBackpressure, closeOnException, maxMessagesPerRead, highWaterMark, "
        .. "lowWaterMark, maxPendingBytes, drainTimeout)")
    assert.has_error(function() lupine.server { port = 0, init = print, options = { lowWaterMark = 10, highWaterMark = 5 } } end,
      "option 'lowWaterMark' (10) must not exceed 'highWaterMark' (5)")
    assert.has_error(function() lupine.server { port = 0 } end, "lupine.server: 'init' must be a function(ch)")
    assert.has_error(function() lupine.server { host = "example.com", init = print } end,
      "lupine.server: host 'example.com' is not a numeric IPv4/IPv6 address or localhost")
  end)

  it("reports a port in use as nil, message, kind", function()
    local first = test.server(function() end)
    local s, msg, kind = lupine.server { port = first.port, init = function() end }
    assert.is_nil(s)
    assert.equal("EADDRINUSE", kind)
    assert.equal(("listen on 127.0.0.1:%d: EADDRINUSE: Address already in use"):format(first.port), msg)
    first:close()
  end)

  it("completes write futures, and runs listeners later, never inside addListener", function()
    local server, chans = serve()
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    local ch = chans[1]
    assert.is_nil(ch:writeAndFlush("no future unless asked"))
    assert.equal("no future unless asked", c:receive(22))
    local f = ch:writeAndFlush("hello", lupine.promise())
    assert.equal("hello", c:receive(5))
    assert.is_true(f:isDone())
    assert.is_true(f:isSuccess())
    assert.is_nil(f:cause())
    local ran = false
    f:addListener(function(done)
      assert.equal(f:isSuccess(), done:isSuccess())
      ran = true
    end)
    assert.is_false(ran) -- not synchronously, though the future is done
    test.eventually(function() return ran end)
    -- Unflushed writes wait for flush; their futures complete after.
    local w1 = ch:write("a", lupine.promise())
    local w2
    ch:write(lupine.buffer("b"), function(done) w2 = done end) -- a listener instead of a promise
    assert.is_false(w1:isDone())
    ch:flush()
    assert.equal("ab", c:receive(2))
    test.eventually(function() return w2 ~= nil end)
    assert.is_true(w1:isSuccess() and w2:isSuccess())
    assert.has_error(function() ch:write("x", 42) end)
    c:close()
    server:close()
  end)

  it("fails writes to a closed channel with ClosedChannel, and reports them when nobody listens", function()
    local caught, unregistered = {}, false
    local H = {}
    function H:channelUnregistered() unregistered = true end
    function H:channelInactive(ctx)
      ctx:writeAndFlush("too late") -- nobody listens: reported
    end
    function H:exceptionCaught(_, err) caught[#caught + 1] = err end
    local server, chans = serve(H)
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    local ch = chans[1]
    local closed = ch:close()
    assert.is_true(closed:isSuccess())
    local f = ch:writeAndFlush("x", lupine.promise())
    assert.is_true(f:isDone())
    assert.is_false(f:isSuccess())
    local cause = f:cause()
    assert.equal("ClosedChannel", cause.kind)
    assert.equal(("ClosedChannel: channel #%d is closed"):format(ch.id), cause.message)
    assert.equal(cause.message, tostring(cause))
    test.eventually(function() return unregistered end)
    loop:runFor(0.02) -- the report of the write from channelInactive comes after
    -- The listener-less write from channelInactive failed after the pipeline
    -- was gone: it went to the log (info), not to a handler that already saw inactive.
    assert.same({}, caught)
    c:close()
    server:close()
  end)

  it("fails a message the head cannot write with UnsupportedMessage, through exceptionCaught when unobserved", function()
    local caught
    local H = {}
    function H:channelRead(ctx, buf)
      buf:release()
      ctx:writeAndFlush({ not_bytes = true })
    end
    function H:exceptionCaught(ctx, err)
      caught = err
      ctx:writeAndFlush("error\n")
    end
    local server = serve(H)
    local c = test.client(server.port)
    c:send("x")
    assert.equal("error", c:receiveLine())
    assert.equal("UnsupportedMessage", caught.kind)
    assert.equal("UnsupportedMessage: cannot write a table: add an encoder to turn it into bytes", caught.message)
    c:close()
    server:close()
  end)

  it("refuses a buffer after it was handed to write", function()
    local err
    local H = {}
    function H:channelRead(ctx, buf)
      ctx:writeAndFlush(buf)
      err = select(2, pcall(buf.readableBytes, buf))
    end
    local server = serve(H)
    local c = test.client(server.port)
    c:send("abc")
    assert.equal("abc", c:receive(3))
    assert.matches("lupine.Buffer used after release or hand%-off$", err)
    c:close()
    server:close()
  end)

  it("turns unwritable above the high water mark and writable below the low one", function()
    local events = {}
    local H = {}
    function H:channelWritabilityChanged(ctx) events[#events + 1] = ctx.channel:isWritable() end
    local server, chans = serve(H, { highWaterMark = 64 * 1024, lowWaterMark = 32 * 1024 })
    -- A client that does not read: autoRead off, small receive buffer.
    local received = 0
    local reader = lupine.connect {
      port = server.port, options = { autoRead = false },
      init = function(ch)
        ch.pipeline:addLast { channelRead = function(_, _, buf) received = received + #buf; buf:release() end }
      end,
    }
    test.eventually(function() return reader:isDone() and chans[1] ~= nil end)
    local ch = chans[1]
    local chunk = ("w"):rep(16 * 1024)
    local total = 0
    while ch:isWritable() and total < 8 * 1024 * 1024 do
      ch:writeAndFlush(chunk)
      total = total + #chunk
    end
    assert.is_false(ch:isWritable())
    assert.is_true(ch:pendingBytes() > 64 * 1024)
    assert.same({ false }, events)
    assert.equal(0, ch:bytesBeforeUnwritable())
    reader:get():config():setAutoRead(true) -- now drain
    test.eventually(function() return received == total end, 10, "the reader to get everything")
    assert.same({ false, true }, events)
    assert.is_true(ch:isWritable())
    assert.equal(0, ch:pendingBytes())
    reader:get():close()
    server:close()
  end)

  it("survives a peer that resets mid-write: the write fails with the errno, other channels go on", function()
    local caught
    local Flood = {}
    function Flood:channelActive(ctx)
      ctx:writeAndFlush(("r"):rep(8 * 1024 * 1024)) -- more than the socket buffers hold
    end
    function Flood:exceptionCaught(ctx, err) caught = err end
    local server, chans = serve(Flood)
    -- Connect, let some data arrive unread, then close: unread data makes the kernel send RST.
    local victim = lupine.connect { port = server.port, options = { autoRead = false } }
    test.eventually(function() return victim:isDone() and chans[1] ~= nil end)
    loop:runFor(0.05)
    victim:get():close()
    test.eventually(function() return caught ~= nil end, 5, "the failed write to be reported")
    assert.is_false(chans[1]:isOpen())
    assert.is_true(caught.kind == "ECONNRESET" or caught.kind == "EPIPE", tostring(caught.kind))
    -- The server still serves.
    local echo = test.server(dofile("examples/echo.lua"))
    local c = test.client(echo.port)
    c:send("alive")
    assert.equal("alive", c:receive(5))
    c:close()
    echo:close()
    server:close()
  end)

  it("delivers what arrived before an EOF in the middle of a message, then goes inactive", function()
    local got, inactive = "", false
    local H = {}
    function H:channelRead(_, buf) got = got .. buf:readString() end
    function H:channelInactive() inactive = true end
    local server = serve(H)
    local c = test.client(server.port)
    c:send("partial mess")
    c:close()
    test.eventually(function() return inactive end)
    assert.equal("partial mess", got)
    server:close()
  end)

  it("reads one message per read() when autoRead is off", function()
    local reads = 0
    local H = {}
    function H:channelRead(_, buf)
      reads = reads + 1
      buf:release()
    end
    local server, chans = serve(H, { autoRead = false })
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    c:send("first")
    loop:runFor(0.05)
    assert.equal(0, reads)
    chans[1]:read()
    test.eventually(function() return reads == 1 end)
    c:send("second")
    loop:runFor(0.05)
    assert.equal(1, reads)
    chans[1]:config():setAutoRead(true)
    test.eventually(function() return reads == 2 end)
    c:close()
    server:close()
  end)

  it("closes idempotently and completes closeFuture", function()
    local server, chans = serve()
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    local ch = chans[1]
    local cf = ch.closeFuture
    assert.is_false(cf:isDone())
    assert.is_true(ch:close():isSuccess())
    assert.is_true(ch:close():isSuccess())
    assert.is_true(cf:isSuccess())
    test.eventually(function() return c.closed end)
    server:close()
  end)

  it("leaves no descriptor behind after many connections", function()
    local server = test.server(dofile("examples/echo.lua"))
    local channels = loop:channelCount()
    local before = open_fds()
    for i = 1, 200 do
      local c = test.client(server.port)
      c:send("n" .. i)
      c:receive(#("n" .. i))
      c:close()
    end
    test.eventually(function() return loop:channelCount() == channels end)
    assert.equal(before, open_fds())
    server:close()
  end)

  it("keeps Lua memory and descriptors flat over thousands of connections (every reference released at close)", function()
    local server = test.server(function(ch)
      ch.attr.big = ("x"):rep(1000) -- per-channel state must go with the channel
      ch.pipeline:addLast("echo", { channelRead = function(_, ctx, b) ctx:writeAndFlush(b) end })
    end)
    local function cycle(n)
      for i = 1, n do
        local c = test.client(server.port)
        c:send("p")
        c:receive(1)
        c:close()
      end
      test.eventually(function() return loop:channelCount() == 0 end)
      collectgarbage()
      collectgarbage()
      return collectgarbage("count"), open_fds()
    end
    local kb1, fds1 = cycle(300)
    local kb2, fds2 = cycle(1500)
    assert.equal(fds1, fds2)
    assert.is_true(kb2 - kb1 < 64, ("Lua memory grew by %.1f KiB over 1500 connections"):format(kb2 - kb1))
    server:close()
  end)

  it("releases buffers a handler kept, once Lua lets go of them", function()
    local kept = {}
    local Keeper = {}
    function Keeper:channelRead(ctx, buf)
      kept[#kept + 1] = buf -- neither written nor released
      ctx:writeAndFlush("k")
    end
    local server = test.server(function(ch) ch.pipeline:addLast("keeper", Keeper) end)
    collectgarbage()
    collectgarbage()
    local before = loop:stats().poolLive
    local c = test.client(server.port)
    for i = 1, 50 do
      c:send("x" .. i)
      c:receive(1)
    end
    assert.is_true(#kept >= 1)
    assert.is_true(loop:stats().poolLive > before, "kept buffers hold pool storage")
    assert.equal("x1", kept[1]:toString():sub(1, 2)) -- still usable
    kept = {}
    collectgarbage()
    collectgarbage()
    assert.equal(before, loop:stats().poolLive)
    c:close()
    server:close()
  end)
end)
