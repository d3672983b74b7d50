-- lupine.codec: frame decoders and encoders. The framing runs natively
-- (src/codec*.c): only whole frames reach Lua. Each function returns a handler
-- factory for pipeline:addLast; one factory serves every channel (each
-- channel gets its own decoder state).
--
--   lineFrame{ maxLength = 8192, stripDelimiter = true, failFast = false, asString = false }
--   delimiterFrame{ delimiters = {"\0"} (or delimiter = "\0"), maxFrameLength = 8192,
--                   stripDelimiter = true, failFast = true, asString = false }
--   lengthFieldFrame{ maxFrameLength = 1048576, lengthFieldOffset = 0, lengthFieldLength = 4,
--                     lengthAdjustment = 0, initialBytesToStrip = 0, byteOrder = "big",
--                     failFast = true, asString = false }
--   fixedLengthFrame(n) or fixedLengthFrame{ frameLength = n, asString = false }
--   lengthFieldPrepender{ lengthFieldLength = 4, lengthAdjustment = 0,
--                         lengthIncludesLengthFieldLength = false, byteOrder = "big" }
--   proxyProtocol{ optional = false }
--   decoder{ decode = function(self, ctx, buf, out) end, decodeLast = ..., name = ...,
--            maxCumulation = 1048576 }
--   encoder{ encode = function(self, ctx, msg, out) end, accept = ..., name = ... }
--
-- Frames are lupine.Buffers (slices of the input, no copy), or strings with
-- asString = true. A frame over its limit fires exceptionCaught with a
-- lupine.Error of kind "TooLongFrame" (fields limit and length); the decoder
-- skips to the next frame boundary and goes on. An impossible length field
-- gives "CorruptedFrame".
local core = require "lupine.core"

local native = core._codec
local codec = {}

codec.lineFrame = native.lineFrame
codec.delimiterFrame = native.delimiterFrame
codec.lengthFieldFrame = native.lengthFieldFrame
codec.fixedLengthFrame = native.fixedLengthFrame
codec.lengthFieldPrepender = native.lengthFieldPrepender
-- The PROXY protocol (v1 and v2) at the start of a connection: the channel's
-- addresses become the client's (ch.remoteAddress), a user event
-- { kind = "proxyProtocol", version, source, destination, local } follows,
-- and the handler removes itself. A missing or malformed header is a
-- ProxyProtocolError and closes the channel, unless optional = true lets
-- connections without one through.
codec.proxyProtocol = native.proxyProtocol

-- A cumulating decoder written in Lua, with the semantics of the native ones
-- (Netty's ByteToMessageDecoder): bytes accumulate in `buf` across reads;
-- decode(self, ctx, buf, out) is called while it makes progress and appends
-- what it decoded to `out` (any Lua values; take bytes with buf:readSlice(n)
-- or buf:readString(n)); leaving buf untouched and out empty waits for more
-- bytes; filling out without reading is a DecoderError. When the input ends,
-- decodeLast (default: decode, if bytes are left) runs once. `buf` is lent
-- for the call only: do not keep or release it. `self` is per channel: a
-- table whose fields fall back to the spec, so state set on it stays with
-- its channel. More than maxCumulation bytes not decoded is a TooLongFrame
-- (the bytes are dropped).
function codec.decoder(spec)
  if type(spec) ~= "table" then error("lupine.codec.decoder: expected a table with a decode function", 2) end
  return native.luaDecoder(spec)
end

-- A Lua encoder (Netty's MessageToByteEncoder): each message written through
-- it for which accept(self, msg) is true (default: every message) is passed
-- to encode(self, ctx, msg, out), which writes bytes into out (a new
-- lupine.Buffer); out then goes on toward the head with the write's promise.
-- Other messages pass untouched. A raising encode fails that write. The
-- encoder is one plain handler table shared by every channel.
local Encoder = {}
Encoder.__index = function(self, k)
  local v = Encoder[k]
  if v ~= nil then return v end
  return rawget(self, "spec")[k]
end

function Encoder:write(ctx, msg, promise)
  if self.accept and not self:accept(msg) then return ctx:write(msg, promise) end
  local out = core.buffer()
  self:encode(ctx, msg, out)
  return ctx:write(out, promise)
end

function codec.encoder(spec)
  if type(spec) ~= "table" or type(spec.encode) ~= "function" then
    error("lupine.codec.encoder: 'encode' must be a function(self, ctx, msg, out)", 2)
  end
  if spec.accept ~= nil and type(spec.accept) ~= "function" then
    error("lupine.codec.encoder: 'accept' must be a function(self, msg)", 2)
  end
  return setmetatable({ spec = spec, name = spec.name or "encoder" }, Encoder)
end

return codec
