-- tests/examples_memcheck.lua: serve each example app in-process, drive it
-- with real clients, then exit; scripts/test runs this under valgrind, which
-- must find no error and no leak. Exits non-zero if an example misbehaves.
local lupine = require "lupine"
local test = require "lupine.test"

local function check(cond, what) if not cond then error("memcheck: " .. what, 2) end end

local echo = test.server(dofile("examples/echo.lua"))
for i = 1, 20 do
  local c = test.client(echo.port)
  local msg = ("m%d"):format(i):rep(i * 100)
  c:send(msg)
  check(c:receive(#msg) == msg, "echo returned other bytes")
  c:close()
end
local discard = test.server(dofile("examples/discard.lua"))
local d = test.client(discard.port)
d:send(("x"):rep(100000))
d:close()
-- The client example, directly and through the proxy example.
local client_echo = dofile("examples/client_echo.lua")
local proxy_app = dofile("examples/proxy.lua")
proxy_app.backend = { host = "127.0.0.1", port = echo.port }
local proxy = test.server(proxy_app)
for _, port in ipairs { echo.port, proxy.port } do
  local f = client_echo.run { port = port, count = 50, size = 3000 }
  lupine.loop():runUntil(f, 60)
  check(f:isSuccess(), "client_echo through port " .. port .. ": " .. tostring((f:cause())))
end
local chat = test.server(dofile("examples/line_chat.lua"))
local a, b = test.client(chat.port), test.client(chat.port)
a:receiveLine()
b:receiveLine()
a:receiveLine() -- b joined
a:send("hello\n" .. ("x"):rep(3000) .. "\n/nick al\n/quit\n")
check(b:receiveLine():match("> hello$"), "chat: the line was not broadcast")
check(a:receiveLine() == "* line over 1024 bytes dropped", "chat: no notice for the long line")
a:receiveAll()
b:close()
local rpc_app = dofile("examples/length_rpc.lua")
local rpc = test.server(rpc_app)
local client = rpc_app.client { port = rpc.port }
local answers = 0
for i = 1, 50 do client:call("add", i .. " 1", function(ok) if ok then answers = answers + 1 end end) end
test.eventually(function() return answers == 50 end)
client:close()
local raw = test.client(rpc.port)
raw:send(string.pack(">s4", "1 echo " .. ("y"):rep(70000)) .. string.pack(">s4", "2 len abc"))
raw:receive(4 + #"0 err TooLongFrame: frame of 70011 bytes exceeds maxFrameLength 65540, discarding it")
check(raw:receive(4 + 6) == string.pack(">s4", "2 ok 3"), "rpc: no answer after the long frame")
raw:close()
-- Jobs on lupine.blocking's pool threads (their Lua states close with this one).
local primes = test.server(dofile("examples/primes.lua"))
local pc = test.client(primes.port)
pc:send("primes 1000\n")
check(pc:receiveLine() == "168 primes below 1000", "primes: wrong count below 1000")
pc:send("primes 20000\n")
check(pc:receiveLine() == "2262 primes below 20000", "primes: wrong count below 20000")
pc:close()
primes:close()
-- TLS: the echo example over TLS, a throw-away CA from the openssl command.
local certs = dofile("spec/tls_certs.lua").make()
local tls_app = dofile("examples/tls_echo.lua")
tls_app.tls.cert, tls_app.tls.key = certs.server, certs.serverKey
local tls_echo = test.server(tls_app)
local tls_opts = { ca = certs.ca, serverName = "localhost", alpn = { "echo" } }
for i = 1, 10 do
  local got = ""
  local f = lupine.connect { port = tls_echo.port, tls = tls_opts, init = function(ch)
    ch.pipeline:addLast { channelRead = function(_, _, buf) got = got .. buf:readString() end }
  end }
  lupine.loop():runUntil(f, 10)
  local ch = f:get()
  local msg = ("t%d"):format(i):rep(i * 1000)
  ch:writeAndFlush(msg)
  test.eventually(function() return got == msg end, 10, "the TLS echo")
  ch:close()
end
local raw_tls = test.client(tls_echo.port) -- garbage instead of a ClientHello
raw_tls:send("not TLS\r\n\r\n")
test.eventually(function() return not raw_tls:isOpen() end, 10, "the TLS server to close")
tls_echo:close()
certs.remove()
-- Coroutine style: the echo as a loop, the client script, memcached's text protocol.
local co_echo = test.server(dofile("examples/co_echo.lua"))
local co_client = dofile("examples/co_client.lua")
local talked = co_client.run { port = co_echo.port, count = 30 }
lupine.loop():runUntil(talked, 60)
check(talked:isSuccess() and talked:get() == 30, "co_client: " .. tostring((talked:cause())))
local mc = test.server(dofile("examples/co_memcached.lua"))
test.run(function()
  local m = test.client(mc.port)
  m:send("set k 1 0 5\r\nab\ncd\r\nget k\r\nincr k 1\r\ndelete k\r\n")
  check(m:receive(#"STORED\r\nVALUE k 1 5\r\nab\ncd\r\nEND\r\n") == "STORED\r\nVALUE k 1 5\r\nab\ncd\r\nEND\r\n",
    "co_memcached: get after set")
  check(m:receiveLine() == "CLIENT_ERROR cannot increment or decrement non-numeric value", "co_memcached: incr")
  check(m:receiveLine() == "DELETED", "co_memcached: delete")
  m:send(("x"):rep(2 * 1024 * 1024)) -- a line over the decoder's limit, then the rest of the test ends
  m:close()
end)
-- The embedded channel and a Lua decoder, left unfinished on purpose: closed with the loop.
local emb = test.embedded(lupine.codec.decoder {
  decode = function(_, _, buf, out) if buf:readableBytes() >= 2 then out[#out + 1] = buf:readString(2) end end,
}, lupine.codec.lengthFieldPrepender { lengthFieldLength = 2 })
emb:writeInbound("abc")
emb:writeOutbound("x")
check(emb:readInbound() == "ab", "embedded: no frame")
-- HTTP: the hello and API examples, through lupine's own client and raw pipelined bytes.
local hello = test.server(dofile("examples/http_hello.lua"))
local api = test.server(dofile("examples/http_api.lua"))
for _ = 1, 5 do check(test.http.get(("http://127.0.0.1:%d/"):format(hello.port)).body == "hello\n", "http_hello") end
local created = test.http.post(("http://127.0.0.1:%d/items"):format(api.port), '{"name":"m"}')
check(created.status == 201, "http_api: POST")
check(test.http.delete(("http://127.0.0.1:%d/items/1"):format(api.port)).status == 204, "http_api: DELETE")
local pipe = test.client(hello.port)
pipe:send(("GET / HTTP/1.1\r\nHost: m\r\n\r\n"):rep(8) .. "GET / HTTP/1.1\r\nHost : bad\r\n\r\n")
check(pipe:receiveAll():find("400 Bad Request", 1, true), "http: no 400 after the pipelined requests")
pipe:close()
-- A file sent with sendfile (http_static) and the Unix socket echo (unix_echo).
local static = dofile("examples/http_static.lua")
static.static.root = "examples"
local files = test.server(static)
local echo_src = assert(io.open("examples/echo.lua")):read("a")
check(test.http.get(("http://127.0.0.1:%d/files/echo.lua"):format(files.port)).body == echo_src, "http_static")
check(test.http.get(("http://127.0.0.1:%d/files/none"):format(files.port)).status == 404, "http_static: 404")
local sock = os.tmpname()
os.remove(sock)
local unix_echo = test.server(dofile("examples/unix_echo.lua"), { host = "unix:" .. sock })
local uc = test.client(unix_echo.host)
uc:send("hi\nwhoami\n")
check(uc:receiveLine() == "hi", "unix_echo")
check(uc:receiveLine():find("^pid=%d+ uid=%d+ gid=%d+$"), "unix_echo: whoami")
uc:close()
-- UDP: the echo (a Buffer handed back to its sender, one over maxDatagramSize) and statsd's aggregation.
local udp_app = dofile("examples/udp_echo.lua")
local udp_echo = test.udpServer(udp_app, { maxDatagramSize = 2000 })
local udc = test.udpClient(udp_echo.localPort)
for i = 1, 50 do
  local msg = ("u%d"):format(i):rep(i * 10)
  check(udc:send(msg):receive() == msg, "udp_echo returned other bytes")
end
udc:send(("x"):rep(3000)) -- dropped and reported (TooLongFrame), not echoed
check(udc:send("after"):receive() == "after", "udp_echo: no answer after the long datagram")
udc:close()
local kept = {} -- received Buffers kept past their dispatch, then dropped: freed by the GC
local keeper = test.udpServer(function(ch) ch.pipeline:addLast { channelRead = function(_, _, m) kept[#kept + 1] = m end } end)
local kc = test.udpClient(keeper.localPort)
for i = 1, 20 do kc:send(("k"):rep(i * 100)) end
test.eventually(function() return #kept == 20 end)
check(kept[20].data:readableBytes() == 2000, "a kept datagram lost its data")
kept = nil
collectgarbage()
kc:close()
keeper:close()
local statsd_app = dofile("examples/statsd.lua")
local statsd = test.udpServer(statsd_app)
local sc = test.udpClient(statsd.localPort)
sc:send("a:1|c\nb:2|g\nc:3|ms\nbad")
test.eventually(function() return statsd_app.bad() == 1 end)
check(table.concat(statsd_app.flush(), " ") == "a:1|c b:2|g c:count=1,min=3,max=3,mean=3|ms", "statsd: wrong totals")
sc:close()
statsd:close()
udp_echo:close()
lupine.http.closeIdle()
test.eventually(function() return lupine.loop():channelCount() == 0 end)
files:close()
unix_echo:close()
hello:close()
api:close()
proxy:close()
co_echo:close()
mc:close()
echo:close()
discard:close()
chat:close()
rpc:close()
print("memcheck: examples served and closed")
