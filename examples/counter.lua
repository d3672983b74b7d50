-- examples/counter.lua: one counter for many instances behind a load balancer.
--   redis-server --port 6379 &
--   COUNTER_NAME=a lupine -w 1 -p 9001 examples/counter.lua
--   COUNTER_NAME=b lupine -w 1 -p 9002 examples/counter.lua
--   haproxy -f counter.cfg        (mode tcp, send-proxy-v2 / send-proxy: see docs/scale-out.md)
--   printf 'hit\n' | nc -q1 127.0.0.1 9000       -> "7 a 127.0.0.1:51234"
--
-- Each line a client sends increments one counter kept in redis-server
-- (INCR through lupine.redis, one connection per worker, commands
-- pipelined), and is answered "<new value> <instance> <client address>".
-- The counter lives in Redis, not in any instance, so it is exact however
-- the balancer spreads the connections.
--
-- The PROXY protocol handler comes first in the pipeline: the balancer tells
-- who the client is in a header at the start of each connection, and
-- ch.remoteAddress is that client, not the balancer. Without a header the
-- connection is refused (ProxyProtocolError), unless COUNTER_PROXY=optional
-- (then direct clients are served too) or off (no handler: no balancer).
--
-- Environment: COUNTER_NAME (default "counter"), REDIS_HOST (127.0.0.1),
-- REDIS_PORT (6379), COUNTER_KEY (counter), COUNTER_PROXY (required,
-- optional, off).
local lupine = require "lupine"
local redis = require "lupine.redis"
local codec = lupine.codec

local NAME = os.getenv("COUNTER_NAME") or "counter"
local REDIS_HOST = os.getenv("REDIS_HOST") or "127.0.0.1"
local REDIS_PORT = math.tointeger(tonumber(os.getenv("REDIS_PORT") or "6379"))
local KEY = os.getenv("COUNTER_KEY") or "counter"
local PROXY = os.getenv("COUNTER_PROXY") or "required"
if PROXY ~= "required" and PROXY ~= "optional" and PROXY ~= "off" then
  error("COUNTER_PROXY must be required, optional or off, not " .. PROXY)
end

-- This worker's connection to Redis (a Future of the client), made when the
-- first request needs it and again after it was lost.
local conn
local function client()
  if conn and (not conn:isDone() or (conn:isSuccess() and conn:get():isOpen())) then return conn end
  conn = redis.connect { host = REDIS_HOST, port = REDIS_PORT, timeout = 5 }
  return conn
end

local Counter = { name = "counter" }

function Counter:userEventTriggered(ctx, evt)
  if evt.kind == "proxyProtocol" then
    lupine.log("info", ctx.channel, ("PROXY v%d: client %s"):format(evt.version, evt.source or "(the balancer itself)"))
  end
  ctx:fireUserEventTriggered(evt)
end

function Counter:channelRead(ctx, line)
  local ch = ctx.channel
  local c = client()
  c:addListener(function()
    if not c:isSuccess() then
      if ch:isOpen() then ctx:writeAndFlush("-ERR redis: " .. tostring(c:cause()) .. "\n") end
      return
    end
    local n = c:get():call("INCR", KEY)
    n:addListener(function()
      if not ch:isOpen() then return end
      if n:isSuccess() then
        ctx:writeAndFlush(("%d %s %s\n"):format(n:get(), NAME, ch.remoteAddress))
      else
        ctx:writeAndFlush("-ERR redis: " .. tostring(n:cause()) .. "\n")
      end
    end)
  end)
end

function Counter:exceptionCaught(ctx, err)
  -- haproxy ends its health checks with a reset: not worth a warning.
  local kind = type(err) == "table" and err.kind
  lupine.log(kind == "ECONNRESET" and "debug" or "warn", ctx.channel, tostring(err))
  ctx:close()
end

return lupine.app {
  name = "counter " .. NAME,
  port = 9001,
  init = function(ch)
    if PROXY ~= "off" then ch.pipeline:addLast("proxy", codec.proxyProtocol { optional = PROXY == "optional" }) end
    ch.pipeline:addLast("lines", codec.lineFrame { maxLength = 1024, asString = true })
    ch.pipeline:addLast(Counter)
  end,
}
