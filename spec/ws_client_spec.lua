-- lupine.ws.connect against an independent server: Debian's python3-websockets.
local lupine = require "lupine"
local test = require "lupine.test"
local ws = lupine.ws

-- Echoes every message; "close" closes with 4002 "bye"; the path and the
-- chosen subprotocol come back as the first message. Prints its port.
local SERVER = [[
import asyncio, sys, websockets
async def handler(c, path=None):
    p = c.path if hasattr(c, "path") else c.request.path  # websockets 10 (Debian 12) or newer
    await c.send("hello %s %s" % (p, c.subprotocol))
    async for m in c:
        if m == "close":
            await c.close(4002, "bye")
            return
        await c.send(m)
async def main(compression):
    ssl_context = None
    if len(sys.argv) > 2:  # wss: certificate and key
        import ssl
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(sys.argv[2], sys.argv[3])
    async with websockets.serve(handler, "127.0.0.1", 0, subprotocols=["chat"], max_size=None,
                                compression=compression, ssl=ssl_context) as s:
        print("port", s.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main(None if sys.argv[1] == "none" else "deflate"))
]]

local function python_server(compression, ...)
  local p, path = require("ws_support").spawn_python(SERVER, compression, ...)
  local port
  test.eventually(function()
    port = tonumber(p:output():match("port (%d+)"))
    return port ~= nil or not p:isRunning()
  end, 20, "the python server to listen")
  os.remove(path)
  assert(port, p:output())
  return p, port
end

describe("lupine.ws.connect", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  for _, compression in ipairs { "none", "deflate" } do
    it("talks to a python3-websockets server, compression " .. compression, function()
      local p, port = python_server(compression)
      local conn = ws.connect(("ws://127.0.0.1:%d/room?x=1"):format(port),
        { protocols = { "chat" }, deflate = compression == "deflate" }):sync(10)
      assert.equal("chat", conn.protocol)
      assert.equal(compression == "deflate", conn.extensions ~= nil)
      local okh, hello = pcall(function() return conn:receive():sync(10) end)
      assert(okh, p:output())
      assert.equal("hello /room?x=1 chat", hello)
      conn:send("text")
      assert.equal("text", conn:receive():sync(10))
      conn:send(ws.binary("\0\1\2"))
      local b = conn:receive():sync(10)
      assert.equal("\0\1\2", b:readString())
      local big = string.rep("abc", 100000)
      conn:send(big)
      assert.equal(big, conn:receive():sync(10))
      conn:send("close")
      local closed = conn.closeFuture:sync(10)
      p:stop()
      assert.same({ code = 4002, reason = "bye" }, closed)
      local ok, err = pcall(function() return conn:receive():sync(5) end)
      assert.is_false(ok)
      assert.equal("ClosedChannel: the WebSocket connection is closed", tostring(type(err) == "table" and err.message or err))
    end)
  end

  it("talks to lupine's own ws.server, with onMessage and onClose", function()
    local server = test.server(ws.server { onMessage = function(c, msg) c:send("re: " .. msg) end })
    local got, closed = {}, lupine.promise()
    local conn = ws.connect("ws://127.0.0.1:" .. server.port .. "/", {
      onMessage = function(c, msg)
        got[#got + 1] = msg
        if #got == 2 then c:close(1000, "enough") end
      end,
      onClose = function(_, code, reason) closed:setSuccess(code .. " " .. reason) end,
    }):sync(10)
    conn:send("a")
    conn:send("b")
    assert.equal("1000 enough", closed:sync(10))
    server:close()
    assert.same({ "re: a", "re: b" }, got)
  end)

  it("fails when the server refuses the upgrade", function()
    local server = test.server(ws.server { path = "/ws", onMessage = function() end })
    local ok, err = pcall(function() return ws.connect("ws://127.0.0.1:" .. server.port .. "/other"):sync(10) end)
    server:close()
    assert.is_false(ok)
    assert.equal("WsHandshakeFailed: the server answered 404 Not Found", type(err) == "table" and err.message or err)
  end)

  it("talks wss:// to a python3-websockets server over TLS, verifying its certificate", function()
    local certs = require("tls_certs").make()
    local p, port = python_server("none", certs.server, certs.serverKey)
    local ok, err = pcall(function()
      local conn = ws.connect(("wss://localhost:%d/secure"):format(port),
        { protocols = { "chat" }, tls = { ca = certs.ca } }):sync(10)
      assert.equal("hello /secure chat", conn:receive():sync(10))
      conn:send("over tls")
      assert.equal("over tls", conn:receive():sync(10))
      conn:close()
      conn.closeFuture:sync(10)
      -- the system's CAs do not know the throw-away CA: the handshake fails
      local okv, errv = pcall(function() return ws.connect(("wss://localhost:%d/"):format(port)):sync(10) end)
      assert.is_false(okv)
      local text = type(errv) == "table" and errv.message or tostring(errv)
      assert.truthy(text:find("certificate verify failed", 1, true), text)
    end)
    p:stop()
    certs:remove()
    assert(ok, err)
  end)

  it("checks its arguments", function()
    assert.has_error(function() ws.connect("http://x/") end, "ws.connect: scheme 'http' is not supported (ws and wss only)")
    assert.has_error(function() ws.connect("ws://x/", { tls = {} }) end, "ws.connect: option 'tls' needs a wss:// url")
    assert.has_error(function() ws.connect("ws://x/", { nope = 1 }) end, "ws.connect: unknown option 'nope'")
  end)
end)

describe("lupine.ws.connect against a server that answers badly", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("fails on a wrong Sec-WebSocket-Accept", function()
    local server = test.server(function(ch)
      ch.pipeline:addLast("bad", { channelRead = function(_, ctx, buf)
        buf:release()
        ctx:writeAndFlush("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          .. "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
      end })
    end)
    local ok, err = pcall(function() return ws.connect("ws://127.0.0.1:" .. server.port .. "/"):sync(10) end)
    server:close()
    assert.is_false(ok)
    assert.equal("WsHandshakeFailed: Sec-WebSocket-Accept does not match the key", type(err) == "table" and err.message or err)
  end)
end)
