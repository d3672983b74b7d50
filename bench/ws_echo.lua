-- bench/ws_echo.lua: the WebSocket benchmark's server (bench/ws.sh). The native
-- frame codec speaks WebSocket from the first byte (no HTTP handshake: the
-- load generator's -W mode does not send one); a Lua handler writes each
-- message back, a text message as the string it arrived as. Compare with
-- examples/echo.lua: the difference is framing, masking and UTF-8 only.
local lupine = require "lupine"
local ws = lupine.ws

local Echo = { name = "ws_echo" }
function Echo:channelRead(ctx, msg) ctx:write(msg) end
function Echo:channelReadComplete(ctx) ctx:flush() end
function Echo:exceptionCaught(ctx) ctx:close() end

return lupine.app {
  name = "ws_echo",
  port = tonumber(os.getenv("PORT")) or 8011,
  init = function(ch)
    ch.pipeline:addLast("ws", ws.frameCodec {})
    ch.pipeline:addLast("echo", Echo)
  end,
}
