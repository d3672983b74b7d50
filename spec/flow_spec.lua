-- Flow control and half-closure: autoRead and read() demands, autoBackpressure
-- (on by default: a channel stops reading while it cannot write), the
-- maxPendingBytes cap (WriteBufferFull), writability under a throttled reader,
-- shutdownOutput and allowHalfClosure.
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

-- Serve with init(ch); return the server and a table of server-side channels.
local function serve(init, options)
  local chans = {}
  return test.server(init, { options = options, channels = chans }), chans
end

local function pattern(n)
  local parts = {}
  for i = 0, n // 4096 - 1 do parts[#parts + 1] = string.char(i % 256):rep(4096) end
  return table.concat(parts)
end

-- Every spec here leaves no channel behind (some server channels do not read,
-- so they would not notice their peer leaving: the specs close them).
local leaks = leak_check()
before_each(leaks.before)
after_each(leaks.after)

describe("autoRead", function()
  it("off: one channelRead per read() demand, however much is waiting", function()
    local reads, completes, bytes = 0, 0, 0
    local server, chans = serve(function(ch)
      ch.pipeline:addLast("h", {
        channelRead = function(_, _, buf)
          reads = reads + 1
          bytes = bytes + #buf
          buf:release()
        end,
        channelReadComplete = function() completes = completes + 1 end,
      })
    end, { autoRead = false })
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    c:send(("d"):rep(256 * 1024))
    loop:runFor(0.1)
    assert.equal(0, reads) -- nothing asked, nothing read
    local ctx = chans[1].pipeline:context("h")
    for i = 1, 5 do
      ctx:read()
      loop:runFor(0.05)
      assert.equal(i, reads, "reads after " .. i .. " demands")
      assert.equal(i, completes)
    end
    assert.is_true(bytes > 0 and bytes < 256 * 1024)
    -- Turned on at run time, the rest arrives; off again, reading stops.
    chans[1]:config():setAutoRead(true)
    test.eventually(function() return bytes == 256 * 1024 end, 5, "all the bytes")
    chans[1]:config():setAutoRead(false)
    local before = reads
    c:send("more")
    loop:runFor(0.1)
    assert.equal(before, reads)
    assert.is_false(chans[1]:config():isAutoRead())
    chans[1]:read() -- ch:read() asks too
    test.eventually(function() return reads == before + 1 end)
    c:close()
    chans[1]:close() -- not reading: it would not notice the client left
    server:close()
  end)
end)

describe("autoBackpressure", function()
  it("(default) stops reading while the channel cannot write: an echo server holds bounded memory against a client that never reads", function()
    local got = 0
    local Count = {}
    function Count:channelRead(ctx, buf)
      got = got + #buf
      ctx:fireChannelRead(buf)
    end
    local server, chans = serve(function(ch)
      ch.pipeline:addLast("count", Count)
      dofile("examples/echo.lua").init(ch) -- the example's echo handler, which never looks at writability
    end)
    local received = {}
    -- More than the kernel's buffers both ways can hold (a few MiB each).
    local client = lupine.connect {
      port = server.port, options = { autoRead = false, maxPendingBytes = 64 * 1024 * 1024 },
      init = function(ch)
        ch.pipeline:addLast { channelRead = function(_, _, buf) received[#received + 1] = buf:readString() end }
      end,
    }
    loop:runUntil(client, 5)
    local ch = client:get()
    local data = pattern(32 * 1024 * 1024)
    local sent = ch:writeAndFlush(data, lupine.promise())
    -- Wait until the server stops reading: its count holds still.
    local last, still, deadline = -1, 0, loop:now() + 10
    while still < 10 and loop:now() < deadline do
      if got == last then still = still + 1 else still, last = 0, got end
      loop:runFor(0.02)
    end
    assert.equal(10, still, "the server never stopped reading")
    local server_ch = chans[1]
    -- On by default where reads make the writes (accepted channels), off on
    -- client channels, whose reads answer their writes: a client pausing its
    -- reads while it cannot write would deadlock against this very server.
    assert.is_true(server_ch:config():getOption("autoBackpressure"))
    assert.is_false(ch:config():getOption("autoBackpressure"))
    assert.is_true(got < #data, "the server read everything: nothing held it back")
    assert.is_false(server_ch:isWritable())
    -- Pending bytes: at most the high water mark plus one read's buffer.
    assert.is_true(server_ch:pendingBytes() <= 64 * 1024 + 64 * 1024,
      ("server holds %d bytes"):format(server_ch:pendingBytes()))
    assert.is_false(sent:isDone()) -- the client cannot get rid of its data either
    -- The client reads: everything comes back, in order.
    ch:config():setAutoRead(true)
    test.eventually(function()
      local n = 0
      for _, s in ipairs(received) do n = n + #s end
      return n == #data
    end, 60, "the whole echo")
    assert.is_true(table.concat(received) == data, "the echo differs")
    assert.is_true(sent:isSuccess())
    ch:close()
    server:close()
  end)

  it("off: the outbound buffer grows to maxPendingBytes, then writes fail with WriteBufferFull", function()
    local caught
    local server, chans = serve(function(ch)
      ch.pipeline:addLast("echo", {
        channelRead = function(_, ctx, buf) ctx:write(buf) end, -- no promise: failures reach exceptionCaught
        channelReadComplete = function(_, ctx) ctx:flush() end,
        exceptionCaught = function(_, ctx, err)
          caught = caught or err
        end,
      })
    end, { autoBackpressure = false, maxPendingBytes = 1024 * 1024 })
    local client = lupine.connect { port = server.port, options = { autoRead = false } }
    loop:runUntil(client, 5)
    client:get():writeAndFlush(pattern(12 * 1024 * 1024))
    test.eventually(function() return caught ~= nil end, 10, "WriteBufferFull")
    assert.equal("WriteBufferFull", caught.kind)
    assert.equal(1024 * 1024, caught.limit)
    assert.is_true(caught.length > caught.limit)
    assert.matches("^WriteBufferFull: %d+ bytes pending on channel #%d+, limit 1048576 %(maxPendingBytes%)$",
      caught.message)
    -- The write that crossed the cap was taken whole: one read's buffer (64 KiB) at most, and its overhead.
    assert.is_true(chans[1]:pendingBytes() <= 1024 * 1024 + 65 * 1024, ("%d bytes pending"):format(chans[1]:pendingBytes()))
    client:get():close()
    server:close()
  end)
end)

describe("maxPendingBytes", function()
  it("fails a write once the cap is reached, at once through its future, and every later write: the peer never sees a gap", function()
    local got = ""
    local server, chans = serve(function(ch)
      ch.pipeline:addLast("h", { channelRead = function(_, _, buf) got = got .. buf:readString() end })
    end)
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    local ch = chans[1]
    ch:config():setOption("maxPendingBytes", 4000)
    assert.equal(4000, ch:config():getOption("maxPendingBytes"))
    ch:write(("a"):rep(600)) -- queued, not flushed yet: below the cap
    -- Pending bytes count each write's overhead too (its entry, its buffer),
    -- and the write that crosses the cap is taken whole.
    local crossing = ch:write(("z"):rep(5000), lupine.promise())
    assert.is_false(crossing:isDone())
    local held = ch:pendingBytes()
    assert.is_true(held > 5600)
    local f = ch:writeAndFlush("y", lupine.promise())
    assert.is_true(f:isDone())
    assert.equal(("WriteBufferFull: %d bytes pending on channel #%d, limit 4000 (maxPendingBytes)"):format(held, ch.id),
      f:cause().message)
    assert.equal(4000, f:cause().limit)
    assert.is_true(f:cause().length > held)
    -- A write after that would fit once the rest is written, but the peer would have a hole in its stream.
    loop:runUntil(crossing, 5)
    assert.is_true(crossing:isSuccess())
    local g = ch:writeAndFlush("b", lupine.promise())
    assert.equal(("WriteBufferFull: channel #%d takes no more writes since an earlier one failed"):format(ch.id),
      g:cause().message)
    assert.equal(("a"):rep(600) .. ("z"):rep(5000), c:receive(5600)) -- what was queued before still arrives
    assert.matches("timed out", select(2, pcall(c.receive, c, 1, 0.1)))
    -- The channel is still open: it reads, and closes when told.
    assert.is_true(ch:isOpen())
    c:send("still reading")
    test.eventually(function() return got == "still reading" end)
    ch:close()
    assert.equal("", c:receiveAll())
    server:close()
  end)
end)

describe("writability", function()
  it("a reader throttled to a fixed rate makes the writer unwritable and writable again, and gets every byte", function()
    local changes = {}
    local total = 4 * 1024 * 1024
    local server, chans = serve(function(ch)
      ch.pipeline:addLast("w", {
        channelWritabilityChanged = function(_, ctx) changes[#changes + 1] = ctx.channel:isWritable() end,
      })
    end, { highWaterMark = 64 * 1024, lowWaterMark = 16 * 1024, sndBuf = 32 * 1024 })
    -- The reader: autoRead off, one read() every 5 ms (at most 64 KiB each).
    local got = 0
    local client = lupine.connect {
      port = server.port, options = { autoRead = false },
      init = function(ch)
        ch.pipeline:addLast { channelRead = function(_, _, buf) got = got + #buf; buf:release() end }
      end,
    }
    loop:runUntil(client, 5)
    local reader = client:get()
    local timer = loop:scheduleAtFixedRate(0.005, 0.005, function() reader:read() end)
    test.eventually(function() return chans[1] ~= nil end)
    local ch = chans[1]
    -- The writer writes only while writable (what a well-behaved producer does).
    local written = 0
    test.eventually(function()
      while ch:isWritable() and written < total do
        ch:writeAndFlush(pattern(16 * 1024))
        written = written + 16 * 1024
      end
      return got == total
    end, 30, "the reader to get everything")
    timer:cancel()
    assert.is_true(#changes >= 2, "writability never changed")
    assert.is_false(changes[1])
    assert.is_true(changes[2])
    for i = 2, #changes do assert.is_true(changes[i] ~= changes[i - 1]) end
    reader:close()
    server:close()
  end)
end)

describe("half-closure", function()
  it("without allowHalfClosure, the peer's FIN closes the channel", function()
    local events = {}
    local server = serve(function(ch)
      ch.pipeline:addLast {
        userEventTriggered = function(_, _, e) events[#events + 1] = e.kind end,
        channelInactive = function() events[#events + 1] = "inactive" end,
      }
    end)
    local c = test.client(server.port)
    c:shutdownOutput()
    test.eventually(function() return #events > 0 end)
    assert.same({ "inactive" }, events)
    assert.equal("", c:receiveAll())
    server:close()
  end)

  it("with allowHalfClosure, the FIN is an inputShutdown event: the channel still writes, and nothing written is lost", function()
    local events, got = {}, ""
    local answer = pattern(4 * 1024 * 1024)
    local server, chans = serve(function(ch)
      ch.pipeline:addLast {
        channelRead = function(_, _, buf) got = got .. buf:readString() end,
        userEventTriggered = function(_, ctx, e)
          events[#events + 1] = e.kind
          if e.kind == "inputShutdown" then
            ctx:writeAndFlush(answer) -- the reply to "everything the client said"
            ctx.channel:shutdownOutput() -- after the last byte: both sides shut, the channel closes
          end
        end,
        channelInactive = function() events[#events + 1] = "inactive" end,
      }
    end, { allowHalfClosure = true })
    local c = test.client(server.port)
    c:send("the whole request")
    c:shutdownOutput()
    local reply = c:receiveAll(10)
    assert.equal(#answer, #reply)
    assert.is_true(reply == answer)
    assert.equal("the whole request", got)
    test.eventually(function() return #events == 2 end)
    assert.same({ "inputShutdown", "inactive" }, events)
    assert.is_false(chans[1]:isOpen())
    server:close()
  end)

  it("shutdownOutput sends a FIN after what was written, and the channel still reads", function()
    local got = ""
    local server, chans = serve(function(ch)
      ch.pipeline:addLast { channelRead = function(_, _, buf) got = got .. buf:readString() end }
    end)
    local c = test.client(server.port, { options = { allowHalfClosure = true } })
    test.eventually(function() return chans[1] ~= nil end)
    local ch = chans[1]
    ch:write("last words")
    local f = ch:shutdownOutput()
    assert.equal("last words", c:receiveAll()) -- up to the FIN
    assert.is_true(f:isSuccess())
    assert.is_true(ch:isOpen())
    c:send("still listening?")
    test.eventually(function() return got == "still listening?" end)
    local w = ch:writeAndFlush("too late", lupine.promise())
    assert.equal("ClosedChannel", w:cause().kind)
    c:close()
    test.eventually(function() return not ch:isOpen() end) -- EOF after its own shutdown: closed
    server:close()
  end)

  it("with autoRead off, an input shutdown does not spin the loop and read() does nothing more", function()
    local events, reads = {}, 0
    local server, chans = serve(function(ch)
      ch.pipeline:addLast("h", {
        channelRead = function(_, _, buf) reads = reads + 1; buf:release() end,
        userEventTriggered = function(_, _, e) events[#events + 1] = e.kind end,
      })
    end, { allowHalfClosure = true, autoRead = false })
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    c:send("x")
    c:shutdownOutput()
    local ch = chans[1]
    ch:read()
    test.eventually(function() return reads == 1 end)
    ch:read()
    test.eventually(function() return #events == 1 end, 5, "inputShutdown")
    assert.same({ "inputShutdown" }, events)
    local cpu = os.clock()
    for _ = 1, 5 do
      ch:read()
      loop:runFor(0.06)
    end
    local used = os.clock() - cpu
    assert.is_true(used < 0.15, ("%.3f s of CPU in 0.3 s of waiting: the loop spins"):format(used))
    assert.equal(1, reads)
    assert.same({ "inputShutdown" }, events)
    assert.is_true(ch:isOpen())
    c:close()
    ch:close()
    server:close()
  end)
end)
