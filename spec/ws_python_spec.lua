-- lupine.ws.frameCodec against an independent implementation: Debian's
-- python3-websockets as the client, through lupine's own handshake
-- (ws.server on the HTTP codec), with permessage-deflate when the client
-- offers it.
local lupine = require "lupine"
local test = require "lupine.test"
local support = require "ws_support"
local ws = lupine.ws

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
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ws._accept("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  for _, compression in ipairs { "none", "deflate" } do
    it("talks to it, compression " .. compression, function()
      local seen = { messages = {} }
      local server = test.server(ws.server {
        deflate = true,
        onOpen = function(c) seen.deflate = c.extensions ~= nil end,
        onMessage = function(c, msg)
          seen.messages[#seen.messages + 1] = type(msg) == "string" and msg or "binary"
          if msg == "quit" then c:close(4001, "done") else c:send(msg) end
        end,
      })
      local status, out = support.python(CLIENT, server.port, compression)
      server:close()
      assert.equal(0, status, out)
      assert.equal("closed 4001 done\n", out)
      assert.equal(compression == "deflate", seen.deflate)
      assert.same({ "hello", "binary", string.rep("\u{263a}", 50000), "fragmented", "quit" }, seen.messages)
    end)
  end
end)
