-- lupine.ws.server: the handshake on the HTTP codec and the app, driven by
-- Debian's python3-websockets as a real client, and by raw bytes where the
-- handshake must refuse or where bytes follow the upgrade request.
local lupine = require "lupine"
local test = require "lupine.test"
local ws = lupine.ws

local support = require "ws_support"
local python = support.python

local CLIENT = [[
import asyncio, sys, websockets
async def main(port, compression):
    async with websockets.connect("ws://127.0.0.1:%d/ws" % port, compression=compression, max_size=None,
                                  subprotocols=["nope", "chat"], origin="http://good.example") as c:
        print("protocol", c.subprotocol)
        headers = c.response.headers if hasattr(c, "response") else c.response_headers  # websockets >= 13 or older
        print("ext", headers.get("Sec-WebSocket-Extensions"))
        print(await c.recv())
        await c.send("hello")
        print(await c.recv())
        await c.send(b"\x00\x01\xff")
        print(await c.recv())
        await c.send(["frag", "men", "ted"])
        print(await c.recv())
        big = "x" * 200000
        await c.send(big)
        print(len(await c.recv()))
        await asyncio.wait_for(await c.ping(b"pp"), 5)
        await c.send("quit")
        try:
            await c.recv()
        except websockets.ConnectionClosed:
            pass
        print("closed", c.close_code, c.close_reason)
asyncio.run(main(int(sys.argv[1]), None if sys.argv[2] == "none" else "deflate"))
]]

local REFUSED = [[
import asyncio, sys, websockets
async def main(port, path, origin):
    try:
        async with websockets.connect("ws://127.0.0.1:%s%s" % (port, path), origin=origin) as c:
            print("open")
    except (getattr(websockets.exceptions, "InvalidStatus", websockets.exceptions.InvalidStatusCode),
            websockets.exceptions.InvalidStatusCode) as e:
        print("refused", e.response.status_code if hasattr(e, "response") else e.status_code)
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
]]

local function echo_server(log)
  return test.server(ws.server {
    path = "/ws",
    subprotocols = { "chat", "superchat" },
    checkOrigin = function(origin) return origin == "http://good.example" end,
    deflate = true,
    maxMessageSize = 1 << 20,
    http = function(req, res)
      res:header("X-Kind", "plain")
      res:send(200, "plain " .. req.path .. " " .. res:header("x-kind"))
    end,
    onOpen = function(c) log[#log + 1] = "open " .. tostring(c.protocol); c:send("welcome") end,
    onMessage = function(c, msg)
      log[#log + 1] = type(msg) == "string" and #msg < 20 and msg or type(msg)
      if msg == "quit" then c:close(4001, "done") else c:send(msg) end
    end,
    onClose = function(_, code, reason) log[#log + 1] = ("close %d %s"):format(code, reason) end,
  })
end

describe("lupine.ws.server", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("computes Sec-WebSocket-Accept (RFC 6455's example) natively", function()
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ws._accept("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  for _, compression in ipairs { "none", "deflate" } do
    it("talks to python3-websockets, compression " .. compression, function()
      local log = {}
      local server = echo_server(log)
      local status, out = python(CLIENT, server.port, compression)
      lupine.loop():runUntil(function() return log[#log] and log[#log]:find("^close") end, 5)
      server:close()
      assert.equal(0, status, out)
      local ext = compression == "deflate" and "permessage-deflate; client_max_window_bits=12" or "None"
      if compression == "deflate" then ext = out:match("ext ([^\n]*)") end
      assert.equal("protocol chat\next " .. ext .. "\nwelcome\nhello\nb'\\x00\\x01\\xff'\nfragmented\n200000\n"
        .. "closed 4001 done\n", out)
      if compression == "deflate" then assert.truthy(ext:find("^permessage%-deflate")) end
      assert.same({ "open chat", "hello", "userdata", "fragmented", "string", "quit", "close 4001 done" }, log)
    end)
  end

  it("refuses a bad origin (403) and an unknown path (404), serves plain HTTP", function()
    local server = echo_server({})
    local s1, o1 = python(REFUSED, server.port, "/ws", "http://evil.example")
    local s2, o2 = python(REFUSED, server.port, "/other", "http://good.example")
    local r = test.http.get(("http://127.0.0.1:%d/page"):format(server.port))
    require("lupine.http").closeIdle()
    server:close()
    assert.equal(0, s1, o1)
    assert.equal("refused 403\n", o1)
    assert.equal(0, s2, o2)
    assert.equal("refused 404\n", o2)
    assert.equal(200, r.status)
    assert.equal("plain /page plain", r.body)
    assert.equal("plain", r.headers["x-kind"])
  end)

  local function handshake(extra)
    return "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" .. (extra or "Sec-WebSocket-Version: 13\r\n") .. "\r\n"
  end
  local function masked(b0, payload)
    local key, out = "\1\2\3\4", {}
    for i = 1, #payload do out[i] = string.char(payload:byte(i) ~ key:byte((i - 1) % 4 + 1)) end
    return string.char(b0, 0x80 | #payload) .. key .. table.concat(out)
  end

  it("keeps the frames sent in the same packet as the upgrade request", function()
    local got = lupine.promise()
    local server = test.server(ws.server { path = "/ws",
      onMessage = function(c, msg) c:send(msg); if msg == "two" then got:setSuccess(true) end end })
    local client = test.client(server.port)
    client:send(handshake() .. masked(0x81, "one") .. masked(0x81, "two"))
    local head = client:receiveUntil("\r\n\r\n")
    assert.truthy(head:find("HTTP/1.1 101 Switching Protocols\r\n", 1, true), head)
    assert.truthy(head:find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 1, true), head)
    assert.equal("\x81\x03one\x81\x03two", client:receive(10))
    assert.is_true(got:sync(5))
    client:close()
    server:close()
  end)

  it("answers a wrong version with 426 and a bad key with 400", function()
    local server = test.server(ws.server { path = "/ws", onMessage = function() end })
    local c1 = test.client(server.port)
    c1:send(handshake("Sec-WebSocket-Version: 8\r\n"))
    local r1 = c1:receiveUntil("\r\n\r\n")
    c1:close()
    local c2 = test.client(server.port)
    c2:send((handshake():gsub("dGhlIHNhbXBsZSBub25jZQ==", "short")))
    local r2 = c2:receiveUntil("\r\n\r\n")
    c2:close()
    server:close()
    assert.truthy(r1:find("^HTTP/1.1 426 "), r1)
    assert.truthy(r1:find("Sec-WebSocket-Version: 13", 1, true), r1)
    assert.truthy(r2:find("^HTTP/1.1 400 "), r2)
  end)

  it("pings an idle peer (pingInterval)", function()
    local server = test.server(ws.server { path = "/ws", pingInterval = 0.2, onMessage = function() end })
    local client = test.client(server.port)
    client:send(handshake())
    client:receiveUntil("\r\n\r\n")
    assert.equal("\x89\x00", client:receive(2)) -- a ping with no payload after 0.2 s of silence
    assert.equal("\x88\x09\x03\xe9no pong", client:receive(11)) -- silent for another period: 1001
    client:close()
    server:close()
  end)

  it("checks its options", function()
    assert.has_error(function() ws.server { onMessage = 1 } end, "ws.server: 'onMessage' must be a function")
    assert.has_error(function() ws.server { path = "x" } end, "ws.server: 'path' must start with '/'")
  end)
end)

describe("lupine.ws.server, more", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("lets selectProtocol choose among the offered subprotocols", function()
    local seen
    local server = test.server(ws.server {
      selectProtocol = function(offered, req) seen = table.concat(offered, ",") .. " " .. req.path; return offered[2] end,
      onOpen = function(c) c:send(c.protocol) end,
    })
    local conn = ws.connect("ws://127.0.0.1:" .. server.port .. "/", { protocols = { "a", "b", "c" } }):sync(10)
    assert.equal("b", conn.protocol)
    assert.equal("b", conn:receive():sync(10))
    conn:close()
    conn.closeFuture:sync(10)
    server:close()
    assert.equal("a,b,c /", seen)
  end)

  it("closes with 1011 when onMessage raises, and logs the error", function()
    local closed = lupine.promise()
    local server = test.server(ws.server {
      onMessage = function() error("boom") end,
      onClose = function(_, code, reason) closed:setSuccess(code .. " " .. reason) end,
    })
    local conn = ws.connect("ws://127.0.0.1:" .. server.port .. "/"):sync(10)
    conn:send("x")
    local got = conn.closeFuture:sync(10)
    assert.same({ code = 1011, reason = "internal error" }, got)
    assert.equal("1011 internal error", closed:sync(10))
    server:close()
  end)
end)
