-- examples/line_chat.lua: a chat room over lines of text.
--   lua5.4 examples/line_chat.lua          serve inline on port 8008 (PORT=...)
--   lupine -w 2 examples/line_chat.lua     serve with the launcher (one room across the workers)
--   nc 127.0.0.1 8008                      join; /nick NAME, /quit
--
-- The native line decoder frames the input: the handler sees whole lines as
-- strings, never partial reads; a line over 1 KiB is dropped with a notice
-- (TooLongFrame) and the connection goes on. Every line said reaches everyone
-- else, on every worker: lupine.broadcast copies it to each worker's state
-- (workers share no Lua state), where the room's members on that worker are
-- a ChannelGroup, which each channel leaves by itself when it closes. Guest
-- numbers come from a shared dictionary, so they are unique across workers.
local lupine = require "lupine"
local codec = lupine.codec

local MAX_LINE = 1024

local TOPIC = "line_chat"
local room = lupine.channelGroup("room") -- who is connected to this worker
local counters = lupine.shared.declare("line_chat", "64k") -- the same one in every worker
local me = lupine.workerId()

-- A line said on any worker, here on this worker's loop: to everyone in this
-- worker's part of the room but the sender. A member the room cannot write to
-- (it stopped reading and its outbound bytes reached maxPendingBytes) hears of
-- it in its own exceptionCaught below, which closes it.
local function hear(msg)
  room:writeAndFlush(msg.text, function(ch) return not (msg.worker == me and ch.id == msg.from) end)
end
lupine.subscribe(TOPIC, hear)

local function broadcast(from, text)
  lupine.broadcast(TOPIC, { worker = me, from = from.id, text = text })
end

-- One table serves every channel; a user's nick lives in its channel's attr.
local Chat = { name = "chat" }

function Chat:channelActive(ctx)
  local ch = ctx.channel
  ch.attr.nick = "guest" .. counters:incr("guests", 1, 0)
  room:add(ch)
  ctx:writeAndFlush(("* welcome, you are %s (/nick NAME, /quit)\n"):format(ch.attr.nick))
  broadcast(ch, ("* %s joined\n"):format(ch.attr.nick))
end

local commands = {}

function commands.nick(ctx, name)
  local attr = ctx.channel.attr
  if not name:match("^[%w_%-]+$") or #name > 32 then
    ctx:writeAndFlush("* a nick is 1 to 32 letters, digits, '_' or '-'\n")
    return
  end
  local old = attr.nick
  attr.nick = name
  ctx:writeAndFlush(("* you are now %s\n"):format(name))
  broadcast(ctx.channel, ("* %s is now %s\n"):format(old, name))
end

function commands.quit(ctx)
  ctx:writeAndFlush("* bye\n", function() ctx:close() end)
end

function Chat:channelRead(ctx, line)
  local cmd, rest = line:match("^/(%S+)%s*(.-)%s*$")
  if cmd then
    local fn = commands[cmd]
    if fn then fn(ctx, rest)
    else ctx:writeAndFlush(("* unknown command /%s\n"):format(cmd)) end
    return
  end
  if line ~= "" then broadcast(ctx.channel, ("<%s> %s\n"):format(ctx.channel.attr.nick, line)) end
end

function Chat:channelInactive(ctx)
  -- The channel has left the room already (it is closed); tell the others.
  local ch = ctx.channel
  if ch.attr.nick then broadcast(ch, ("* %s left\n"):format(ch.attr.nick)) end
end

function Chat:exceptionCaught(ctx, err)
  if type(err) == "table" and err.kind == "TooLongFrame" then
    ctx:writeAndFlush(("* line over %d bytes dropped\n"):format(MAX_LINE))
    return
  end
  lupine.log("debug", ctx.channel, tostring(err))
  ctx:close()
end

return lupine.app {
  name = "line_chat",
  port = tonumber(os.getenv("PORT")) or 8008,
  init = function(ch)
    ch.pipeline:addLast("frames", codec.lineFrame { maxLength = MAX_LINE, asString = true })
    ch.pipeline:addLast("chat", Chat)
  end,
  workerExit = function() lupine.unsubscribe(TOPIC, hear) end,
}
