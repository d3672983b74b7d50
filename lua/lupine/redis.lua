-- lupine.redis: the Redis protocol (RESP2 and RESP3) on lupine's pipelines.
--
--   redis.codec{ mode = "server" | "client", batch, store, maxBulkLength,
--                maxMultibulkLength, maxInlineLength, maxQueryBuffer }   the native RESP decoder
--   redis.nativeCommands(ch, on)                      a server codec's store commands on/off
--   redis.encode(value [, protocol])                  a reply as a string
--   redis.command(name, ...)                          a request as a string
--   redis.null                                        RESP's null
--   redis.Server                                      a handler prototype for servers
--   redis.connect{ host, port, password, db, timeout, protocol } -> Future of a Client
--
-- The codec and the encoders are native (src/codec/resp.c, src/lua/l_resp.c).
local core = require "lupine.core"
local lupine = require "lupine"

local resp = core._resp
local redis = {}

redis.null = resp.null
redis.encode = resp.encode
redis.command = resp.command
redis.codec = resp.decoder
redis.nativeCommands = resp.nativeCommands

-- ---- servers -------------------------------------------------------------------------------

-- A base for server handlers: a protocol violation (kind "ProtocolError") is
-- answered with Redis's "-ERR Protocol error: ..." and the connection closed
-- once that is written, as Redis does; anything else closes at once.
redis.Server = {}
function redis.Server:exceptionCaught(ctx, err)
  if type(err) == "table" and err.kind == "ProtocolError" then
    ctx:writeAndFlush("-ERR " .. err.message .. "\r\n"):addListener(function() ctx:close() end)
    return
  end
  lupine.log("debug", ctx.channel, tostring(err))
  ctx:close()
end

-- ---- the client ------------------------------------------------------------------------------

local Client = {}
Client.__index = Client

local function failure(reply)
  return type(reply) == "table" and getmetatable(reply) == "lupine.RedisError"
end

-- The pipeline's handler: replies complete the oldest pending promise (FIFO);
-- pub/sub messages go to their subscribers.
local Replies = {}
Replies.__index = Replies

function Replies:channelRead(ctx, reply)
  local c = self.client
  if type(reply) == "table" and not failure(reply) and (reply.push or c.subscribed > 0 or c.subscribing > 0) then
    local kind = reply[1]
    if kind == "message" then
      local fn = c.subs[reply[2]]
      if fn then fn(reply[3], reply[2]) end
      return
    elseif kind == "pmessage" then
      local fn = c.subs[reply[2]]
      if fn then fn(reply[4], reply[3]) end
      return
    elseif kind == "subscribe" or kind == "psubscribe" or kind == "unsubscribe" or kind == "punsubscribe" then
      c.subscribed = reply[3]
      if c.subscribing > 0 then c.subscribing = c.subscribing - 1 end
    elseif reply.push then
      return -- another push (invalidation...): nobody asked for it
    end
  end
  local head = c.head
  local p = c.pending[head]
  if not p then
    ctx:fireExceptionCaught("lupine.redis: a reply nobody asked for")
    return
  end
  c.pending[head] = nil
  c.head = head + 1
  if failure(reply) then p:setFailure(reply.err) else p:setSuccess(reply) end
end

function Replies:channelInactive(ctx)
  local c = self.client
  c.open = false
  for i = c.head, c.tail - 1 do
    local p = c.pending[i]
    c.pending[i] = nil
    if p then p:tryFailure("lupine.redis: the connection closed before the reply") end
  end
  c.head = c.tail
  if c.onClose then c.onClose() end
end

function Replies:exceptionCaught(ctx, err)
  self.client.lastError = err
  ctx:close()
end

-- Send one command; a Future of its reply (an error reply fails it with the
-- error's text, "ERR unknown command ..."). Many may be in flight: replies
-- come back in order.
function Client:call(...)
  local p = lupine.promise()
  if not self.open then
    p:setFailure("lupine.redis: the connection is closed")
    return p
  end
  self.pending[self.tail] = p
  self.tail = self.tail + 1
  self.ch:write(resp.command(...))
  if not self.flushing then -- one flush for every command issued in this turn of the loop
    self.flushing = true
    self.ch.executor:execute(function()
      self.flushing = false
      if self.ch:isOpen() then self.ch:flush() end
    end)
  end
  return p
end

-- Pub/sub: fn(message, channel) for each message on channel; a Future of the
-- subscription's confirmation. While subscribed (RESP2) only (un)subscribe
-- and PING may be sent on the connection, as with Redis.
function Client:subscribe(channel, fn)
  self.subs[channel] = fn
  self.subscribing = self.subscribing + 1
  return self:call("SUBSCRIBE", channel)
end

function Client:unsubscribe(channel)
  self.subs[channel] = nil
  self.subscribing = self.subscribing + 1
  return self:call("UNSUBSCRIBE", channel)
end

function Client:close()
  if self.ch:isOpen() then self.ch:close() end
end

function Client:isOpen() return self.open end

-- In flight: commands sent, replies not yet come.
function Client:pendingCount() return self.tail - self.head end

-- redis.connect{ host = "127.0.0.1", port = 6379, password, db, timeout, protocol = 2 }:
-- a Future of the Client, complete once the connection is up (and AUTH,
-- SELECT and HELLO answered, when asked for).
function redis.connect(opts)
  opts = opts or {}
  local ready = lupine.promise()
  local client = setmetatable({ pending = {}, head = 1, tail = 1, subs = {}, subscribed = 0, subscribing = 0, open = false }, Client)
  local f = lupine.connect {
    host = opts.host, port = opts.port or 6379, timeout = opts.timeout,
    init = function(ch)
      ch.pipeline:addLast("resp", resp.decoder { mode = "client" })
      ch.pipeline:addLast("replies", setmetatable({ client = client }, Replies))
    end,
  }
  f:addListener(function()
    if not f:isSuccess() then
      ready:setFailure(tostring(f:cause()))
      return
    end
    client.ch = f:get()
    client.open = true
    local steps = {}
    if opts.protocol == 3 then
      steps[#steps + 1] = opts.password and client:call("HELLO", 3, "AUTH", opts.user or "default", opts.password)
        or client:call("HELLO", 3)
    elseif opts.password then
      steps[#steps + 1] = opts.user and client:call("AUTH", opts.user, opts.password) or client:call("AUTH", opts.password)
    end
    if opts.db and opts.db ~= 0 then steps[#steps + 1] = client:call("SELECT", opts.db) end
    if #steps == 0 then
      ready:setSuccess(client)
      return
    end
    local last = steps[#steps]
    last:addListener(function()
      for _, s in ipairs(steps) do
        if not s:isSuccess() then
          ready:setFailure(tostring(s:cause()))
          client:close()
          return
        end
      end
      ready:setSuccess(client)
    end)
  end)
  return ready
end

return redis
