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
test.eventually(function() return lupine.loop():channelCount() == 0 end)
proxy:close()
echo:close()
discard:close()
print("memcheck: examples served and closed")
