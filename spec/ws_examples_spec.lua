-- examples/ws_echo.lua and examples/ws_chat.lua driven by Debian's
-- python3-websockets and lupine's HTTP client.
local lupine = require "lupine"
local test = require "lupine.test"

local support = require "ws_support"
local python = support.python

local ECHO = [[
import asyncio, sys, websockets
async def main(port):
    async with websockets.connect("ws://127.0.0.1:%s/" % port) as c:
        for m in ["hi", b"\x00bin", "\u00e9t\u00e9" * 1000]:
            await c.send(m)
            r = await c.recv()
            assert r == m, r
        print("ok", c.response_headers.get("Sec-WebSocket-Extensions") if hasattr(c, "response_headers") else "")
asyncio.run(main(sys.argv[1]))
]]

local CHAT = [[
import asyncio, sys, websockets
async def main(port):
    url = "ws://127.0.0.1:%s/chat?name=" % port
    async with websockets.connect(url + "bob") as b:
        print(await asyncio.wait_for(b.recv(), 10))
        async with websockets.connect(url + "alice") as a:
            print(await asyncio.wait_for(b.recv(), 10))
            await a.send("hello bob")
            print(await asyncio.wait_for(b.recv(), 10))
            print(await asyncio.wait_for(a.recv(), 10))  # alice joined
            print(await asyncio.wait_for(a.recv(), 10))  # her own line
        print(await asyncio.wait_for(b.recv(), 10))
asyncio.run(main(sys.argv[1]))
]]

describe("examples/ws_echo.lua", function()
  it("echoes text and binary messages to python3-websockets, compressed", function()
    local server = test.server(dofile("examples/ws_echo.lua"))
    local status, out = python(ECHO, server.port)
    server:close()
    assert.equal(0, status, out)
    assert.truthy(out:find("^ok permessage%-deflate"), out)
  end)
end)

describe("examples/ws_chat.lua", function()
  local server
  before_each(function() server = support.chat_server() end)
  after_each(function() support.chat_teardown(server) end)

  it("serves its page over HTTP on the same port", function()
    local r = test.http.get(("http://127.0.0.1:%d/"):format(server.port))
    local missing = test.http.get(("http://127.0.0.1:%d/nope"):format(server.port))
    require("lupine.http").closeIdle()
    assert.equal(200, r.status)
    assert.equal("text/html; charset=utf-8", r.headers["content-type"])
    assert.truthy(r.body:find("new WebSocket", 1, true))
    assert.equal(404, missing.status)
  end)

  it("relays what one client says to every client", function()
    local status, out = python(CHAT, server.port)
    assert.equal(0, status, out)
    assert.equal("* bob joined\n* alice joined\n<alice> hello bob\n* alice joined\n<alice> hello bob\n* alice left\n", out)
  end)
end)
