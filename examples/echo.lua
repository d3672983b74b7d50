-- examples/echo.lua: Netty's EchoServerHandler in lupine.
--   lua5.4 examples/echo.lua          serve inline (one loop in this thread)
--   lupine -w 2 examples/echo.lua     serve with the launcher
local lupine = require "lupine"

-- One table serves every channel: the handler keeps no per-channel state.
local Echo = { name = "echo" }

function Echo:channelRead(ctx, buf)
  ctx:write(buf) -- the buffer now belongs to the pipeline
end

function Echo:channelReadComplete(ctx)
  ctx:flush() -- one writev for everything read in this batch
end

-- A peer that resets or vanishes is routine for a server: note it quietly.
local routine = { ECONNRESET = true, EPIPE = true, ETIMEDOUT = true }

function Echo:exceptionCaught(ctx, err)
  local kind = type(err) == "table" and err.kind
  lupine.log(routine[kind] and "debug" or "warn", ctx.channel, tostring(err))
  ctx:close()
end

return lupine.app {
  name = "echo",
  port = tonumber(os.getenv("PORT")) or 8007,
  init = function(ch)
    ch.pipeline:addLast("echo", Echo)
  end,
}
