-- spec/apps/hog.lua: "hog\n" tries to build a 256 MiB string (over any
-- memoryLimit the spec sets); "leak\n" fills the state's memory for good
-- (small objects kept in a global); anything else is echoed.
local lupine = require "lupine"

local Hog = { name = "hog" }

function Hog:channelRead(ctx, buf)
  local s = buf:readString()
  if s == "hog\n" then
    local big = ("x"):rep(256 * 1024 * 1024)
    ctx:writeAndFlush(#big .. "\n")
  elseif s == "leak\n" then
    local n = 0
    while true do
      n = n + 1
      hoard = { next = hoard, "kept " .. n } -- luacheck: ignore (a global on purpose)
    end
  else
    ctx:writeAndFlush(s)
  end
end

return lupine.app { name = "hog", init = function(ch) ch.pipeline:addLast("hog", Hog) end }
