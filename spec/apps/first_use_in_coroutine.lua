-- Run by spec/entry_spec.lua in a child lua5.4: the first use of lupine
-- happens in a coroutine that is dead and collected before any event; the
-- handlers must still run (on the main thread). Prints "ok" at the end.
local lupine
coroutine.wrap(function()
  lupine = require "lupine"
  lupine.loop() -- the first use: makes this state's loop
end)()
collectgarbage()
collectgarbage()
local test = require "lupine.test"
local on_main = {}
local Echo = {}
function Echo:channelRead(ctx, buf)
  on_main[#on_main + 1] = select(2, coroutine.running())
  ctx:writeAndFlush(buf)
end
local server = test.server(function(ch) ch.pipeline:addLast(Echo) end)
local c = test.client(server.port)
c:send("hi")
assert(c:receive(2) == "hi")
c:close()
server:close()
assert(on_main[1] == true, "a handler ran on a coroutine")
print("ok")
