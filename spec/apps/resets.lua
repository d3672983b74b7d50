-- spec/apps/resets.lua: answers every read with a line and logs "answered"
-- once the answer is written; no exceptionCaught, so a peer's reset reaches
-- the tail. With RELAY=1 a handler first passes every exception on from Lua
-- (ctx:fireExceptionCaught), so the tail gets the error as a Lua value.
local lupine = require "lupine"

local Answer = {}
function Answer:channelRead(ctx, buf)
  buf:release()
  ctx:writeAndFlush("unread\n", function() lupine.log("info", "answered") end)
end

local Relay = {}
function Relay:exceptionCaught(ctx, err) ctx:fireExceptionCaught(err) end

return lupine.app {
  name = "resets",
  init = function(ch)
    if os.getenv("RELAY") == "1" then ch.pipeline:addLast("relay", Relay) end
    ch.pipeline:addLast("answer", Answer)
  end,
}
