-- spec/apps/whoami.lua: answers "who\n" with the worker and executor that
-- serve the connection; echoes anything else. Logs its worker hooks.
local lupine = require "lupine"

local Who = { name = "who" }

function Who:channelRead(ctx, buf)
  local s = buf:readString()
  if s == "who\n" then
    ctx:writeAndFlush(("worker=%d state=%d executor=%s\n"):format(ctx.channel.worker, lupine.workerId(),
      tostring(ctx.executor)))
  else
    ctx:writeAndFlush(s)
  end
end

return lupine.app {
  name = "whoami",
  init = function(ch) ch.pipeline:addLast("who", Who) end,
  workerInit = function(worker) lupine.log("info", "workerInit", worker.id, "of", worker.workers) end,
  workerExit = function(worker) lupine.log("info", "workerExit", worker.id) end,
}
