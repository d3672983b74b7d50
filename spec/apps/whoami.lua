-- spec/apps/whoami.lua: answers "who\n" with the worker and executor that
-- serve the connection; echoes anything else. Logs its worker hooks.
local lupine = require "lupine"

local Who = { name = "who" }

function Who:channelRead(ctx, buf)
  local s = buf:readString()
  if s == "timers\n" then -- the executor API from a worker thread
    local ex, n, t = ctx.executor, 0, nil
    ex:execute(function() ctx:write("executed;") end)
    ex:schedule(0.02, function() ctx:write("scheduled;") end)
    ex:schedule(0.01, function() ctx:write("never;") end):cancel()
    t = ex:scheduleAtFixedRate(0.03, 0.01, function()
      n = n + 1
      if n == 3 then
        t:cancel()
        ctx:writeAndFlush("ticked 3 on worker " .. ctx.channel.worker .. "\n")
      end
    end)
  elseif s == "stop\n" then -- stopping the loop from a handler shuts the server down
    ctx:writeAndFlush("stopping\n")
    ctx.executor:stop()
  elseif s == "who\n" then
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
