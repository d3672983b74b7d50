-- examples/statsd.lua: a statsd-style metrics receiver. Each datagram on UDP
-- port 8125 holds lines `name:value|type`: c a counter (with an optional
-- sample rate, `hits:1|c|@0.1` counts 10), g a gauge (`+n`/`-n` move it,
-- a plain value sets it), ms a timer. Every second the totals are closed:
-- printed (one line per metric) and kept; a TCP connection to port 8125 gets
-- the last second's totals and is closed.
--   lua5.4 examples/statsd.lua
--   echo "hits:1|c" | nc -u -w0 127.0.0.1 8125;  nc 127.0.0.1 8125
-- One worker: the totals of a second are one table (with workers, each would
-- total only the datagrams its own socket received).
local lupine = require "lupine"

local port = tonumber(os.getenv("PORT")) or 8125

local counters, timers, gauges = {}, {}, {}
local last = {} -- the last closed second: sorted lines
local bad = 0   -- lines that did not parse, in all

local function record(line)
  local name, value, kind, rest = line:match("^([^:|]+):([^|]+)|(%a+)(.*)$")
  local v = tonumber(value)
  if not v then
    bad = bad + 1
    return
  end
  if kind == "c" then
    local rate = tonumber(rest:match("^|@([%d.]+)$") or 1)
    if not rate or rate <= 0 or rate > 1 then
      bad = bad + 1
      return
    end
    counters[name] = (counters[name] or 0) + v / rate
  elseif kind == "g" then
    if value:find("^[+-]") then gauges[name] = (gauges[name] or 0) + v else gauges[name] = v end
  elseif kind == "ms" then
    local t = timers[name]
    if not t then
      t = { count = 0, sum = 0, min = v, max = v }
      timers[name] = t
    end
    t.count, t.sum = t.count + 1, t.sum + v
    t.min, t.max = math.min(t.min, v), math.max(t.max, v)
  else
    bad = bad + 1
  end
end

local function num(v) return math.type(v) == "float" and v == math.floor(v) and ("%d"):format(v) or tostring(v) end

-- Close the current second: its totals become the last second's (returned).
-- Counters and timers start again from nothing; gauges keep their value.
local function flush()
  local lines = {}
  for name, v in pairs(counters) do lines[#lines + 1] = ("%s:%s|c"):format(name, num(v)) end
  for name, v in pairs(gauges) do lines[#lines + 1] = ("%s:%s|g"):format(name, num(v)) end
  for name, t in pairs(timers) do
    lines[#lines + 1] = ("%s:count=%d,min=%s,max=%s,mean=%s|ms"):format(name, t.count, num(t.min), num(t.max),
      num(t.sum / t.count))
  end
  table.sort(lines)
  counters, timers, last = {}, {}, lines
  return lines
end

local Statsd = { name = "statsd" }
function Statsd:channelRead(ctx, msg)
  for line in msg.data:gmatch("[^\r\n]+") do record(line) end
end
function Statsd:exceptionCaught(ctx, err) lupine.log("warn", ctx.channel, tostring(err)) end

-- TCP: the last second's totals, then close.
local Report = {}
function Report:channelActive(ctx)
  local text = table.concat(last, "\n")
  ctx:writeAndFlush(text == "" and "" or text .. "\n", function() ctx:close() end)
end

local ticker
return lupine.app {
  name = "statsd",
  port = port,
  workers = 1,
  flush = flush,
  bad = function() return bad end,
  init = function(ch) ch.pipeline:addLast("report", Report) end,
  udp = {
    port = port,
    asString = true,
    init = function(ch) ch.pipeline:addLast("statsd", Statsd) end,
  },
  workerInit = function(worker)
    ticker = worker.loop:scheduleAtFixedRate(1, 1, function()
      local lines = flush()
      if #lines > 0 then print(os.date("!%H:%M:%S ") .. table.concat(lines, " ")) end
    end)
  end,
  workerExit = function() ticker:cancel() end,
}
