-- Memory bounded per message, not per payload byte (LESSONS #16): pending
-- bytes count what each outbound entry costs, so floods of one-byte or empty
-- writes reach the water marks and maxPendingBytes; a decoder stops decoding
-- while its channel cannot write (autoBackpressure); one message larger than
-- maxPendingBytes still goes out; and memory goes back to the system after
-- the connections close.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"

local loop = lupine.loop()
local codec = lupine.codec
local KiB, MiB = 1024, 1024 * 1024
local HWM = 64 * KiB
local asan = os.getenv("ASAN_OPTIONS") ~= nil

local function rss_kib(pid)
  local f = io.open(("/proc/%s/status"):format(pid or "self"))
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- A client that sends data and never reads: wait until the server stops
-- reading it (count() holds still for a while), then return the client's
-- channel and how much this process's RSS grew meanwhile (KiB). The specs
-- that measure RSS this way run first: memory freed by an earlier one would
-- be reused, and hide the growth.
local function flood_until_stalled(port, data, count)
  collectgarbage()
  local rss0 = rss_kib()
  local f = lupine.connect {
    port = port, options = { autoRead = false, rcvBuf = 4096, maxPendingBytes = 64 * MiB }, init = function() end,
  }
  loop:runUntil(f, 5, "the connection")
  local ch = f:get()
  ch:writeAndFlush(data)
  local last, still, deadline = -1, 0, loop:now() + 30
  while still < 15 and loop:now() < deadline do
    local n = count()
    if n == last then still = still + 1 else still, last = 0, n end
    loop:runFor(0.02)
  end
  return ch, rss_kib() - rss0
end

-- Small send buffers: the server's outbound buffer, not the kernel's, holds what the peer does not read.
local SERVER = { sndBuf = 16384 }

describe("outbound memory per message", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("an echo of empty lines against a peer that never reads stays within a few high water marks", function()
    local lines = 0
    local server, chans = nil, {}
    server = test.server(function(ch)
      ch.pipeline:addLast("lines", codec.lineFrame { stripDelimiter = false })
      ch.pipeline:addLast("echo", {
        channelRead = function(_, ctx, frame) lines = lines + 1; ctx:write(frame) end,
        channelReadComplete = function(_, ctx) ctx:flush() end,
      })
    end, { options = SERVER, channels = chans })
    local c, grew = flood_until_stalled(server.port, ("\n"):rep(2 * MiB), function() return lines end)
    local s = chans[1]
    -- What the server holds for those lines (its entries, buffers and strings) shows in this process's RSS.
    if not asan then assert.is_true(grew < 4 * 1024, ("RSS grew by %d KiB for %d lines"):format(grew, lines)) end
    assert.is_true(lines < 2 * MiB, "the server echoed every line: nothing held it back")
    assert.is_true(s:pendingBytes() <= 3 * HWM, ("%d bytes pending after %d lines"):format(s:pendingBytes(), lines))
    c:close()
    s:close()
    server:close()
  end)

  it("ctx:write('+') per line against a peer that never reads stays within a few high water marks", function()
    local lines = 0
    local server, chans = nil, {}
    server = test.server(function(ch)
      ch.pipeline:addLast("lines", codec.lineFrame { asString = true })
      ch.pipeline:addLast("plus", {
        channelRead = function(_, ctx) lines = lines + 1; ctx:write("+") end,
        channelReadComplete = function(_, ctx) ctx:flush() end,
      })
    end, { options = SERVER, channels = chans })
    local c, grew = flood_until_stalled(server.port, ("\n"):rep(2 * MiB), function() return lines end)
    local s = chans[1]
    -- What the server holds for those lines (its entries, buffers and strings) shows in this process's RSS.
    if not asan then assert.is_true(grew < 4 * 1024, ("RSS grew by %d KiB for %d lines"):format(grew, lines)) end
    assert.is_true(lines < 2 * MiB, "the server answered every line: nothing held it back")
    assert.is_false(s:isWritable())
    assert.is_true(s:pendingBytes() <= 3 * HWM, ("%d bytes pending after %d lines"):format(s:pendingBytes(), lines))
    c:close()
    s:close()
    server:close()
  end)

  it("empty writes count: 200 000 of them make the channel unwritable and stop at maxPendingBytes", function()
    local first
    local server, chans = nil, {}
    server = test.server(function(ch)
      ch.pipeline:addLast("h", {
        exceptionCaught = function(_, _, err) first = first or err end,
      })
    end, { options = { maxPendingBytes = MiB }, channels = chans })
    local c = test.client(server.port)
    test.eventually(function() return chans[1] ~= nil end)
    local s = chans[1]
    local unwritable_after
    for i = 1, 200000 do
      s:write("")
      if not unwritable_after and not s:isWritable() then unwritable_after = i end
    end
    assert.is_not_nil(unwritable_after, "200 000 empty writes never made the channel unwritable")
    assert.is_true(unwritable_after <= HWM // 64, ("unwritable after %d writes"):format(unwritable_after))
    local pending = s:pendingBytes()
    assert.is_true(pending >= MiB and pending < MiB + 1024, ("%d bytes pending"):format(pending))
    loop:runUntil(function() return first ~= nil end, 5, "the WriteBufferFull report")
    assert.matches("^WriteBufferFull: %d+ bytes pending on channel #%d+, limit 1048576 %(maxPendingBytes%)$", first.message)
    c:close()
    s:close()
    server:close()
  end)

  it("takes one write larger than maxPendingBytes whole when the buffer is below the cap; the next one fails", function()
    local big = ("x"):rep(20 * MiB) -- a 20 MB reply already in memory, default cap 16 MiB
    local results = {}
    local server = test.server(function(ch)
      ch.pipeline:addLast("reply", {
        channelRead = function(_, ctx, buf)
          buf:release()
          ctx:write("HTTP/1.1 200 OK\r\nContent-Length: 20971520\r\n\r\n") -- a header first: still below the cap
          ctx:writeAndFlush(big, function(f) results.big = f:isSuccess() or tostring(f:cause()) end)
          ctx:writeAndFlush("more", function(f) results.more = f:isSuccess() or f:cause().message end)
        end,
      })
    end, { options = SERVER })
    local c = test.client(server.port)
    c:send("GET / HTTP/1.1\r\n\r\n")
    c:expect("\r\n\r\n")
    local body = c:receive(#big, 30)
    assert.is_true(body == big)
    assert.is_true(results.big)
    assert.matches("^WriteBufferFull: %d+ bytes pending on channel #%d+, limit 16777216 %(maxPendingBytes%)$", results.more)
    c:close()
    server:close()
  end)
end)

describe("memory after the connections close (launcher, one worker)", function()
  it("returns near its baseline: ten never-reading peers of ctx:write('+') per line", function()
    if asan then
      pending("RSS is not meaningful under ASan (its quarantine keeps freed memory)")
      return
    end
    local app = os.tmpname()
    local f = assert(io.open(app, "w"))
    f:write([[
local lupine = require "lupine"
local Plus = {}
function Plus:channelRead(ctx) ctx:write("+") end
function Plus:channelReadComplete(ctx) ctx:flush() end
function Plus:exceptionCaught(ctx) ctx:close() end
return lupine.app { name = "plus", options = { sndBuf = 16384 }, init = function(ch)
  ch.pipeline:addLast("lines", lupine.codec.lineFrame { asString = true })
  ch.pipeline:addLast("plus", Plus)
end }
]])
    f:close()
    local p = proc.start("-w 1 -p 0 " .. app)
    local ok, err = pcall(function()
      local port = p:port()
      local base = rss_kib(p.pid)
      local clients = {}
      for i = 1, 10 do
        local cf = lupine.connect {
          port = port, options = { autoRead = false, rcvBuf = 4096, maxPendingBytes = 64 * MiB }, init = function() end,
        }
        loop:runUntil(cf, 5)
        clients[i] = cf:get()
        clients[i]:writeAndFlush(("\n"):rep(4 * MiB))
      end
      -- Let the server work through what it can take; sample its RSS meanwhile.
      local peak, deadline = base, loop:now() + 3
      while loop:now() < deadline do
        loop:runFor(0.05)
        peak = math.max(peak, rss_kib(p.pid) or 0)
      end
      for _, ch in ipairs(clients) do ch:close() end
      local after
      proc.waitFor(function()
        after = rss_kib(p.pid)
        return after - base < 4 * 1024
      end, 10)
      assert.is_true(peak - base < 32 * 1024, ("RSS grew from %d KiB to %d KiB"):format(base, peak))
      assert.is_true(after - base < 4 * 1024, ("RSS after the close: %d KiB (baseline %d KiB, peak %d KiB)"):format(
        after, base, peak))
    end)
    p:kill("TERM")
    p:wait(20)
    p:cleanup()
    os.remove(app)
    assert(ok, err)
  end)
end)
