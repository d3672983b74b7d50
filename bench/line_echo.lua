-- bench/line_echo.lua: the line-frame benchmark's server. The native line
-- decoder frames the input; a Lua handler writes each line back.
--   LINES=buffer (default): frames are Buffers with their "\n" (stripDelimiter
--                           = false), written back as they are (no copy)
--   LINES=string:           frames are strings without "\n" (asString), written
--                           back as line .. "\n"
local lupine = require "lupine"
local codec = lupine.codec

local as_string = os.getenv("LINES") == "string"

local Lines = { name = "lines" }
if as_string then
  function Lines:channelRead(ctx, line) ctx:write(line .. "\n") end
else
  function Lines:channelRead(ctx, line) ctx:write(line) end
end
function Lines:channelReadComplete(ctx) ctx:flush() end
function Lines:exceptionCaught(ctx) ctx:close() end

return lupine.app {
  name = "line_echo",
  port = tonumber(os.getenv("PORT")) or 8010,
  init = function(ch)
    ch.pipeline:addLast("frames", codec.lineFrame { stripDelimiter = as_string, asString = as_string })
    ch.pipeline:addLast("lines", Lines)
  end,
}
