-- spec/apps/init_fails.lua: init raises for every second connection of a worker.
local lupine = require "lupine"

local n = 0
local Echo = { name = "echo" }
function Echo:channelRead(ctx, buf) ctx:writeAndFlush(buf) end

return lupine.app {
  name = "init_fails",
  init = function(ch)
    n = n + 1
    if n % 2 == 0 then error("init refuses connection " .. n) end
    ch.pipeline:addLast("echo", Echo)
  end,
}
