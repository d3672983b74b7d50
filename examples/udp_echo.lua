-- examples/udp_echo.lua: the echo service over UDP: each datagram goes back
-- to its sender (and, like the classic echo service, TCP on the same port
-- echoes streams).
--   lua5.4 examples/udp_echo.lua          serve inline (one loop in this thread)
--   lupine -w 2 examples/udp_echo.lua     two workers, a UDP socket each (SO_REUSEPORT)
--   nc -u 127.0.0.1 9007                  each line typed comes back
local lupine = require "lupine"

local port = tonumber(os.getenv("PORT")) or 9007

-- A received datagram is a lupine.Datagram { data = Buffer, sender = "ip:port" }.
-- lupine.datagram(data, msg) answers msg's sender; the Buffer is handed on.
local Echo = { name = "udp echo" }

function Echo:channelRead(ctx, msg)
  ctx:write(lupine.datagram(msg.data, msg))
end

function Echo:channelReadComplete(ctx)
  ctx:flush() -- one sendmmsg for every datagram read in this batch
end

-- One bad datagram (over maxDatagramSize) or an unreachable sender never
-- closes a UDP channel: note it and go on.
function Echo:exceptionCaught(ctx, err)
  lupine.log("debug", ctx.channel, tostring(err))
end

local TcpEcho = {}
function TcpEcho:channelRead(ctx, buf) ctx:write(buf) end
function TcpEcho:channelReadComplete(ctx) ctx:flush() end

return lupine.app {
  name = "udp_echo",
  port = port,
  init = function(ch) ch.pipeline:addLast("echo", TcpEcho) end,
  udp = {
    port = port,
    init = function(ch) ch.pipeline:addLast("echo", Echo) end,
  },
}
