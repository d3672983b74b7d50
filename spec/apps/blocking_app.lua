-- spec/apps/blocking_app.lua: handlers that run lupine.blocking jobs, served by
-- the launcher in blocking_spec. Lines: "sum N" (1 + ... + N, in the pool),
-- "sleep S" (a job that sleeps S seconds), "fail TEXT" (a job that raises
-- TEXT, with no listener), "stats" (the pool's counts).
local lupine = require "lupine"
local codec = lupine.codec

local Jobs = { name = "jobs" }

local function reply(ctx, f, fmt)
  if not ctx.channel:isOpen() then return end
  if f:isSuccess() then ctx:writeAndFlush(fmt:format(tostring((f:get()))))
  else ctx:writeAndFlush("failed: " .. tostring((f:cause())):gsub("\n.*", "") .. "\n") end
end

function Jobs:channelRead(ctx, line)
  local cmd, arg = line:match("^(%S+)%s*(.*)$")
  if cmd == "sum" then
    lupine.blocking.run(function(n)
      local s = 0
      for i = 1, n do s = s + i end
      return s
    end, tonumber(arg)):addListener(function(f) reply(ctx, f, "sum=%s\n") end)
  elseif cmd == "sleep" then
    lupine.blocking.run(function(s) return os.execute("sleep " .. s) and "slept" end, arg)
      :addListener(function(f) reply(ctx, f, "%s\n") end)
  elseif cmd == "fail" then -- a job that raises, and nobody listens: logged
    lupine.blocking.run(function(what) error(what) end, arg)
    ctx:writeAndFlush("started\n")
  elseif cmd == "stats" then
    local st = lupine.blocking.stats()
    ctx:writeAndFlush(("threads=%d running=%d queued=%d\n"):format(st.threads, st.running, st.queued))
  else
    ctx:writeAndFlush("?\n")
  end
end

return lupine.app {
  name = "blocking",
  blockingThreads = 1,
  init = function(ch)
    ch.pipeline:addLast("lines", codec.lineFrame { asString = true })
    ch.pipeline:addLast("jobs", Jobs)
  end,
}
