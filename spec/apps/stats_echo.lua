-- spec/stats_spec.lua's server: an echo with one handler named "echo"; the
-- message "stats?" is answered with what lupine.stats() says in this worker.
local lupine = require "lupine"

local Echo = {}
function Echo:channelRead(ctx, buf)
  if buf:readableBytes() == 6 and buf:getString(buf:readerIndex(), 6) == "stats?" then
    buf:release()
    local s = lupine.stats()
    ctx:write(("worker=%d workers=%d accepted=%d boss=%s\n"):format(lupine.workerId(), #s.workers, s.total.accepted,
      tostring(s.boss ~= nil)))
    return
  end
  ctx:write(buf)
end
function Echo:channelReadComplete(ctx) ctx:flush() end

return lupine.app { init = function(ch) ch.pipeline:addLast("echo", Echo) end }
