-- spec/half_close.lua: the half-closing slow reader that spec/eof_spec.lua
-- and spec/proxy_spec.lua drive servers with (LESSONS #6: the peer's FIN
-- never discards data already written to it).
local lupine = require "lupine"

local M = {}

-- Start a client of port with a small receive buffer: it sends data, shuts
-- its write side down, then reads slowly (one read() every 2 ms) until the
-- server closes. maxPendingBytes (optional) is its write cap. Returns its
-- state: got() is what came back, done whether the server closed (or the
-- connect failed: err says why); cleanup() closes it.
function M.client(port, data, maxPendingBytes)
  local loop = lupine.loop()
  local st = { chunks = {}, done = false }
  local f = lupine.connect {
    port = port, timeout = 5,
    options = { autoRead = false, rcvBuf = 16384, allowHalfClosure = true, maxPendingBytes = maxPendingBytes },
    init = function(ch)
      ch.pipeline:addLast("slow", {
        channelRead = function(_, _, buf) st.chunks[#st.chunks + 1] = buf:readString() end,
        userEventTriggered = function(_, _, evt) if evt.kind == "inputShutdown" then st.done = true end end,
        channelInactive = function() st.done = true end,
      })
    end,
  }
  f:addListener(function()
    if not f:isSuccess() then st.done, st.err = true, tostring(f:cause()) return end
    local ch = f:get()
    st.ch = ch
    ch:writeAndFlush(data)
    ch:shutdownOutput()
    st.reader = loop:scheduleAtFixedRate(0.002, 0.002, function() if ch:isOpen() then ch:read() end end)
  end)
  function st.got() return table.concat(st.chunks) end
  function st.cleanup()
    if st.reader then st.reader:cancel() end
    if st.ch then st.ch:close() end
  end
  return st
end

return M
