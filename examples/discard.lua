-- examples/discard.lua: Netty's DiscardServer: read everything, answer nothing,
-- and count what was received (bytes per channel in ch.attr).
local lupine = require "lupine"

local Discard = { name = "discard" }

function Discard:channelRead(ctx, buf)
  local attr = ctx.channel.attr
  attr.bytes = (attr.bytes or 0) + #buf
  buf:release() -- optional: the GC would free it too
end

function Discard:channelInactive(ctx)
  lupine.log("info", ctx.channel, "discarded", ctx.channel.attr.bytes or 0, "bytes")
end

return lupine.app {
  name = "discard",
  port = tonumber(os.getenv("PORT")) or 8009,
  init = function(ch)
    ch.pipeline:addLast("discard", Discard)
  end,
}
