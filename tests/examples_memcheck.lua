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
test.eventually(function() return lupine.loop():channelCount() == 0 end)
echo:close()
discard:close()
print("memcheck: examples served and closed")
