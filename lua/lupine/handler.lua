-- lupine.handler: ready-made handlers (native, one context per channel).
--
--   ch.pipeline:addLast("idle", handler.idleState { readerIdle = 30, writerIdle = 10 })
--   ch.pipeline:addLast("rt", handler.readTimeout(60))
--   ch.pipeline:addLast("wt", handler.writeTimeout(10))
--
-- idleState fires userEventTriggered(ctx, { kind = "idle", state = "reader" |
-- "writer" | "all", first = bool }) after that many seconds without a read,
-- a completed write, or either; first is true for the first event after
-- activity and false for each further period of silence (Netty's
-- IdleStateHandler). readTimeout raises ReadTimeout through exceptionCaught
-- and closes the channel when nothing was read for that long; writeTimeout
-- raises WriteTimeout and closes when a write is not done in time. Their
-- timers run while the channel is active and stop when it closes.
local core = require "lupine.core"

local native = core._handler
local handler = {}

local function seconds(v, what, level)
  if v == nil then return 0 end
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
    error(("%s must be a number of seconds >= 0, got %s"):format(what, tostring(v)), level + 1)
  end
  return v
end

local idle_fields = { readerIdle = true, writerIdle = true, allIdle = true }

function handler.idleState(opts)
  if type(opts) ~= "table" then error("idleState: expected { readerIdle = s, writerIdle = s, allIdle = s }", 2) end
  for k in pairs(opts) do
    if not idle_fields[k] then
      error(("idleState: unknown field '%s' (known: readerIdle, writerIdle, allIdle)"):format(tostring(k)), 2)
    end
  end
  local r = seconds(opts.readerIdle, "idleState: readerIdle", 2)
  local w = seconds(opts.writerIdle, "idleState: writerIdle", 2)
  local a = seconds(opts.allIdle, "idleState: allIdle", 2)
  if r == 0 and w == 0 and a == 0 then
    error("idleState: give at least one of readerIdle, writerIdle, allIdle (seconds > 0)", 2)
  end
  return native.idleState(r, w, a)
end

local function positive(s, what)
  if type(s) ~= "number" or s ~= s or s <= 0 or s == math.huge then
    error(("%s: expected a number of seconds > 0, got %s"):format(what, tostring(s)), 3)
  end
  return s
end

function handler.readTimeout(s) return native.readTimeout(positive(s, "readTimeout")) end

function handler.writeTimeout(s) return native.writeTimeout(positive(s, "writeTimeout")) end

return handler
