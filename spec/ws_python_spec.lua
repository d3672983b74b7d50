-- lupine.ws.frameCodec against an independent implementation: Debian's
-- python3-websockets as the client. lupine has no WebSocket handshake of its
-- own yet (it comes with the HTTP server), so this spec performs a minimal
-- one in Lua (SHA-1 and base64 below, test-only) and then hands the
-- connection to the frame codec, with permessage-deflate when the client
-- offers it.
local lupine = require "lupine"
local test = require "lupine.test"
local ws, codec = lupine.ws, lupine.codec

local function sha1(msg)
  local function rol(x, n) return ((x << n) | (x >> (32 - n))) & 0xffffffff end
  local h = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 }
  local len = #msg
  msg = msg .. "\x80" .. string.rep("\0", (55 - len) % 64) .. string.pack(">I8", len * 8)
  for at = 1, #msg, 64 do
    local w = {}
    for i = 0, 15 do w[i] = string.unpack(">I4", msg, at + 4 * i) end
    for i = 16, 79 do w[i] = rol(w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16], 1) end
    local a, b, c, d, e = h[1], h[2], h[3], h[4], h[5]
    for i = 0, 79 do
      local f, k
      if i < 20 then f, k = (b & c) | (~b & d), 0x5A827999
      elseif i < 40 then f, k = b ~ c ~ d, 0x6ED9EBA1
      elseif i < 60 then f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
      else f, k = b ~ c ~ d, 0xCA62C1D6 end
      a, b, c, d, e = (rol(a, 5) + (f & 0xffffffff) + e + k + w[i]) & 0xffffffff, a, rol(b, 30), c, d
    end
    h[1], h[2], h[3], h[4], h[5] = (h[1] + a) & 0xffffffff, (h[2] + b) & 0xffffffff, (h[3] + c) & 0xffffffff,
      (h[4] + d) & 0xffffffff, (h[5] + e) & 0xffffffff
  end
  return string.pack(">I4I4I4I4I4", table.unpack(h))
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a << 16 | (b or 0) << 8 | (c or 0)
    local q = {}
    for j = 1, 4 do
      local v = (n >> (6 * (4 - j))) & 63
      q[j] = B64:sub(v + 1, v + 1)
    end
    if not b then q[3] = "=" end
    if not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

local function accept(key) return base64(sha1(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) end

-- init(ch): the handshake over lines, then the frame codec and app in its place.
local function ws_server_init(app, seen)
  return function(ch)
    ch.pipeline:addLast("lines", codec.lineFrame { asString = true })
    local fields = {}
    ch.pipeline:addLast("handshake", { channelRead = function(_, ctx, line)
      if line ~= "" then
        local k, v = line:match("^([^:]+):%s*(.-)%s*$")
        if k then fields[k:lower()] = v end
        return
      end
      local deflate = (fields["sec-websocket-extensions"] or ""):find("permessage-deflate", 1, true) ~= nil
      seen.deflate = deflate
      ctx:writeAndFlush("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Accept: " .. accept(fields["sec-websocket-key"]) .. "\r\n"
        .. (deflate and "Sec-WebSocket-Extensions: permessage-deflate\r\n" or "") .. "\r\n")
      local p = ch.pipeline
      p:addAfter("handshake", "ws", ws.frameCodec { deflate = deflate })
      p:addAfter("ws", "app", app)
      p:remove("handshake")
      p:remove("lines") -- what it holds (frames already sent) goes on to the codec
    end })
  end
end

local CLIENT = [[
import asyncio, sys, websockets
async def main(port, compression):
    async with websockets.connect("ws://127.0.0.1:%d/" % port, compression=compression, max_size=None) as c:
        await c.send("hello")
        assert await c.recv() == "hello"
        await c.send(b"\x00\x01\xff")
        assert await c.recv() == b"\x00\x01\xff"
        big = "\u263a" * 50000
        await c.send(big)
        assert await c.recv() == big
        await c.send(["frag", "men", "ted"])
        assert await c.recv() == "fragmented"
        await asyncio.wait_for(await c.ping(b"pp"), 5)
        await c.send("quit")
        try:
            await c.recv()
        except websockets.ConnectionClosed:
            pass
        print("closed", c.close_code, c.close_reason)
asyncio.run(main(int(sys.argv[1]), None if sys.argv[2] == "none" else "deflate"))
]]

describe("lupine.ws.frameCodec with Python's websockets client", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("computes the handshake's accept key (RFC 6455's example)", function()
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  for _, compression in ipairs { "none", "deflate" } do
    it("talks to it, compression " .. compression, function()
      local ok = os.execute("/usr/bin/python3 -c 'import websockets' 2>/dev/null") -- Debian's python, not a pyenv shim
      -- make test installs python3-websockets: missing, it is a failure, not a skip
      assert(ok, "Debian's python3-websockets is not installed (make test installs it)")
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(CLIENT)
      f:close()
      local seen = { messages = {} }
      local App = {}
      function App:channelRead(ctx, msg)
        seen.messages[#seen.messages + 1] = type(msg) == "string" and msg or "binary"
        if msg == "quit" then ctx:writeAndFlush(ws.close(4001, "done")) else ctx:writeAndFlush(msg) end
      end
      local server = test.server(ws_server_init(App, seen))
      local p = test.spawn { "/usr/bin/python3", script, server.port, compression }
      local status = p:wait(30)
      local out = p:output()
      p:stop()
      os.remove(script)
      server:close()
      assert.equal(0, status, out)
      assert.equal("closed 4001 done\n", out)
      assert.equal(compression == "deflate", seen.deflate)
      assert.same({ "hello", "binary", string.rep("\u{263a}", 50000), "fragmented", "quit" }, seen.messages)
    end)
  end
end)
