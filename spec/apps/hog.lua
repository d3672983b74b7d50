-- spec/apps/hog.lua: "hog\n" tries to build a 256 MiB string (over any
-- memoryLimit the spec sets); anything else is echoed.
local lupine = require "lupine"

local Hog = { name = "hog" }

function Hog:channelRead(ctx, buf)
  local s = buf:readString()
  if s == "hog\n" then
    local big = ("x"):rep(256 * 1024 * 1024)
    ctx:writeAndFlush(#big .. "\n")
  else
    ctx:writeAndFlush(s)
  end
end

return lupine.app { name = "hog", init = function(ch) ch.pipeline:addLast("hog", Hog) end }
