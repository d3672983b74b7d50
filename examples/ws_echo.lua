-- examples/ws_echo.lua: a WebSocket echo server.
--   lua5.4 examples/ws_echo.lua          serve inline on port 8010 (PORT=...)
--   lupine -w 2 examples/ws_echo.lua     serve with the launcher
--   python3 -m websockets ws://127.0.0.1:8010/   talk to it
--
-- ws.server answers the handshake on the HTTP codec, then hands the
-- connection to the native frame codec: onMessage sees whole messages, a text
-- message as a string and a binary one as a lupine.Buffer, and sending either
-- back keeps its kind. Compression (permessage-deflate) is taken when the
-- client offers it; an idle client is pinged every 30 seconds.
local ws = require("lupine").ws

return ws.server {
  name = "ws_echo",
  port = tonumber(os.getenv("PORT")) or 8010,
  path = "/",
  deflate = true,
  pingInterval = 30,
  maxMessageSize = 1 << 20,
  onMessage = function(conn, msg) conn:send(msg) end,
}
