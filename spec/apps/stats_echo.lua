-- spec/stats_spec.lua's server: an echo with one handler named "echo".
local lupine = require "lupine"

local Echo = {}
function Echo:channelRead(ctx, buf) ctx:write(buf) end
function Echo:channelReadComplete(ctx) ctx:flush() end

return lupine.app { init = function(ch) ch.pipeline:addLast("echo", Echo) end }
