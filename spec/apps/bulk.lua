-- spec/apps/bulk.lua: "bulk N\n" answers N bytes of a known pattern (written
-- and flushed at once); anything else is echoed. For shutdown specs.
local lupine = require "lupine"

local block = {}
for i = 0, 255 do block[#block + 1] = string.char(i) end
block = table.concat(block):rep(256) -- 64 KiB

local function pattern(n) return block:rep(n // #block + 1):sub(1, n) end

local Bulk = { name = "bulk" }

function Bulk:channelRead(ctx, buf)
  local s = buf:readString()
  local n = s:match("^bulk (%d+)\n$")
  if n then
    ctx:writeAndFlush(pattern(tonumber(n)))
  else
    ctx:write(s)
  end
end

function Bulk:channelReadComplete(ctx) ctx:flush() end

function Bulk:exceptionCaught(ctx, err) ctx:close() end

return lupine.app {
  name = "bulk",
  pattern = pattern,
  options = { maxPendingBytes = 256 * 1024 * 1024 },
  init = function(ch) ch.pipeline:addLast("bulk", Bulk) end,
  workerExit = function(worker) lupine.log("info", "workerExit", worker.id) end,
}
