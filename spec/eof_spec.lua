-- The peer's FIN never discards data already written to it (LESSONS #6): a
-- client that sends a lot, half-closes, and reads slowly gets every byte back
-- from examples/echo.lua (inline, through the launcher's workers, with
-- autoBackpressure off) and through examples/proxy.lua, which relays the
-- half-close each way. Without allowHalfClosure the server stops reading at
-- EOF, writes out what it was given, then closes, within drainTimeout.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"
local half_close = require "half_close"

local loop = lupine.loop()

local function pattern(n)
  local parts = {}
  for i = 0, n // 1024 - 1 do parts[#parts + 1] = string.char((i * 7) % 256):rep(1024) end
  return table.concat(parts)
end

local MiB = 1024 * 1024

local function half_close_roundtrip(port, data, timeout)
  local st = half_close.client(port, data, 64 * MiB)
  local ok = pcall(loop.runUntil, loop, function() return st.done end, timeout or 60)
  st.cleanup()
  assert.is_nil(st.err)
  return st.got(), ok
end

-- The server's send buffer is small so that its outbound buffer, not the
-- kernel's, holds what the slow client has not read when the FIN arrives.
local SERVER = { sndBuf = 16384 }

local function assert_all_back(data, got)
  assert.equal(#data, #got, ("%d of %d bytes came back"):format(#got, #data))
  assert.is_true(got == data, "the bytes came back different")
end

describe("the peer's FIN", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("examples/echo.lua inline: a half-closing client that reads slowly gets all 4 MiB back", function()
    local echo = test.server(dofile("examples/echo.lua"), { options = SERVER })
    local data = pattern(4 * MiB)
    local got, closed = half_close_roundtrip(echo.port, data)
    assert.is_true(closed, "the server did not close")
    assert_all_back(data, got)
    echo:close()
  end)

  it("with autoBackpressure off: all 5 MiB back", function()
    local app = dofile("examples/echo.lua")
    local echo = test.server(app, { options = { autoBackpressure = false, sndBuf = 16384 } })
    local data = pattern(5 * MiB)
    local got, closed = half_close_roundtrip(echo.port, data)
    assert.is_true(closed, "the server did not close")
    assert_all_back(data, got)
    echo:close()
  end)

  it("a FIN after shutdownOutput (allowHalfClosure on) still lets the queued bytes out before closing", function()
    local server_ch
    local data = pattern(2 * MiB)
    local server = test.server(function(ch)
      server_ch = ch
      ch.pipeline:addLast("h", {
        channelActive = function(_, ctx)
          ctx:writeAndFlush(data)
          ctx.channel:shutdownOutput() -- the FIN follows the last byte
        end,
        channelRead = function(_, _, buf) buf:release() end,
      })
    end, { options = { allowHalfClosure = true, sndBuf = 16384 } })
    local chunks, done = {}, false
    local f = lupine.connect {
      port = server.port, options = { autoRead = false, rcvBuf = 16384, allowHalfClosure = true },
      init = function(ch)
        ch.pipeline:addLast("r", {
          channelRead = function(_, _, buf) chunks[#chunks + 1] = buf:readString() end,
          userEventTriggered = function(_, _, evt) if evt.kind == "inputShutdown" then done = true end end,
          channelInactive = function() done = true end,
        })
      end,
    }
    loop:runUntil(f, 5)
    local ch = f:get()
    test.eventually(function() return server_ch ~= nil end)
    ch:shutdownOutput() -- our FIN reaches the server while it still has most of data to write
    local reader = loop:scheduleAtFixedRate(0.002, 0.002, function() if ch:isOpen() then ch:read() end end)
    loop:runUntil(function() return done end, 60, "the server's FIN")
    reader:cancel()
    ch:close()
    assert_all_back(data, table.concat(chunks))
    server:close()
  end)

  it("drainTimeout bounds the wait for a peer that half-closes and never reads", function()
    local closed_at, last_read_at
    local server = test.server(function(ch)
      ch.pipeline:addLast("clock", {
        channelRead = function(_, ctx, buf)
          last_read_at = loop:now()
          ctx:fireChannelRead(buf)
        end,
      })
      dofile("examples/echo.lua").init(ch)
      ch.closeFuture:addListener(function() closed_at = loop:now() end)
    end, { options = { drainTimeout = 0.3, autoBackpressure = false, sndBuf = 16384 } })
    local f = lupine.connect {
      port = server.port, options = { autoRead = false, rcvBuf = 16384, allowHalfClosure = true },
      init = function() end,
    }
    loop:runUntil(f, 5)
    local ch = f:get()
    ch:writeAndFlush(pattern(4 * MiB))
    ch:shutdownOutput()
    loop:runUntil(function() return closed_at ~= nil end, 20, "the server to give up")
    local waited = closed_at - last_read_at
    assert.is_true(waited >= 0.25 and waited < 10, ("closed %.3f s after the last read"):format(waited))
    ch:close()
    server:close()
  end)

  it("rejects a bad drainTimeout", function()
    assert.has_error(function() lupine.server { port = 0, init = function() end, options = { drainTimeout = -1 } } end,
      "option 'drainTimeout' must be seconds >= 0 (0: no limit)")
  end)
end)

describe("the peer's FIN, launcher with 2 workers", function()
  it("examples/echo.lua: 4 MiB back to each of two half-closing clients", function()
    local app = os.tmpname() -- examples/echo.lua with a small send buffer (see SERVER)
    local f = assert(io.open(app, "w"))
    f:write('local a = dofile("examples/echo.lua"); a.options = { sndBuf = 16384 }; return a\n')
    f:close()
    local p = proc.start("-w 2 -p 0 " .. app)
    local ok, err = pcall(function()
      local port = p:port()
      local data = pattern(4 * MiB)
      for _ = 1, 2 do -- one per worker
        local got, closed = half_close_roundtrip(port, data)
        assert.is_true(closed, "the server did not close")
        assert_all_back(data, got)
      end
    end)
    p:kill("TERM")
    local code = p:wait(20)
    p:cleanup()
    os.remove(app)
    assert(ok, err)
    assert.equal(0, code)
  end)

  it("logs the bytes left unsent when drainTimeout cuts the drain", function()
    local app = os.tmpname()
    local f = assert(io.open(app, "w"))
    f:write('local a = dofile("examples/echo.lua"); a.options = { drainTimeout = 0.2, autoBackpressure = false, sndBuf = 16384 }; return a\n')
    f:close()
    local p = proc.start("-w 1 -p 0 " .. app)
    local ok, err = pcall(function()
      local port = p:port()
      local c = lupine.connect {
        port = port, options = { autoRead = false, rcvBuf = 16384, allowHalfClosure = true }, init = function() end,
      }
      loop:runUntil(c, 5)
      local ch = c:get()
      ch:writeAndFlush(pattern(4 * MiB))
      ch:shutdownOutput()
      assert.is_true(proc.waitFor(function() return p:stderr():find("drainTimeout", 1, true) ~= nil end, 20),
        "no log line; stderr: " .. p:stderr())
      ch:close()
    end)
    p:kill("TERM")
    p:wait(20)
    local stderr = p:stderr()
    p:cleanup()
    os.remove(app)
    assert(ok, err)
    assert.matches("warn  w1 #%d+ closing with %d+ bytes unsent: the peer did not read them within 0.2 s %(drainTimeout%)",
      stderr)
  end)
end)
