-- spec/apps/shared_app.lua: lines in, lines out, over lupine.shared from any
-- worker: "incr NAME" counts in the shared dictionary, "get NAME",
-- "set NAME VALUE", "who".
local lupine = require "lupine"
local codec = lupine.codec

local Cmd = {}
function Cmd:channelRead(ctx, line)
  local d = lupine.shared.counters
  local op, k, v = line:match("^(%S+)%s*(%S*)%s*(.*)$")
  local reply
  if op == "incr" then reply = d:incr(k, 1, 0)
  elseif op == "get" then reply = tostring(d:get(k))
  elseif op == "set" then reply = tostring(d:set(k, v))
  elseif op == "who" then reply = "worker " .. ctx.channel.worker
  else reply = "?" end
  ctx:writeAndFlush(reply .. "\n")
end

return lupine.app {
  name = "shared",
  shared = { counters = "1m" },
  init = function(ch)
    ch.pipeline:addLast("lines", codec.lineFrame { asString = true })
    ch.pipeline:addLast("cmd", Cmd)
  end,
}
