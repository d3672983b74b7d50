-- lupine.ws: WebSocket (RFC 6455) framing. The frames are decoded and encoded
-- natively (src/ws_codec.c, src/lua/l_ws.c); only whole messages reach Lua.
--
--   frameCodec{ server = true, maxMessageSize = 1048576, autoPong = true,
--               fragments = false, deflate = false }
--       a handler factory for a connection that speaks WebSocket (after the
--       handshake). Inbound: a text message is a string, a binary message a
--       lupine.Buffer; userEvents { kind = "wsPing"|"wsPong", data = s } and
--       { kind = "wsClose", code = n, reason = s }. Outbound: a string is a
--       text frame, a Buffer a binary frame, or one of the tables below.
--       Pings are answered, a close frame is answered and the channel closed,
--       ctx:close() sends a close frame first; a protocol violation closes
--       with its code (1002, 1007, 1009) and fires exceptionCaught.
--       fragments = true: a fragmented message arrives frame by frame as
--       { type = "text"|"binary", data = s or buf, fin = bool } tables.
--       deflate = true or { serverNoContextTakeover, clientNoContextTakeover,
--       serverMaxWindowBits, clientMaxWindowBits }: permessage-deflate.
--   text(s)                s itself, checked to be UTF-8
--   binary(s or buf)       a lupine.Buffer
--   close([code [, reason]])  { type = "close", code = 1000, reason = "" }
--   ping([data]), pong([data])  { type = "ping"|"pong", data = data }
local core = require "lupine.core"

local native = core._ws
return {
  frameCodec = native.frameCodec,
  text = native.text,
  binary = native.binary,
  close = native.close,
  ping = native.ping,
  pong = native.pong,
}
