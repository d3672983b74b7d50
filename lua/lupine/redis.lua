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
--                                                     (in a coroutine: the Client, or nil, err)
--
-- The codec and the encoders are native (src/codec/resp.c, src/lua/l_resp.c).
--
-- The client is futures underneath; in a lupine coroutine (lupine.spawn, an
-- app's handle(sock), test.run) each call awaits its future instead, so that
-- red:get("k") returns the value (or nil and the error's text), as
-- lua-resty-redis does. Any lower-case method name not defined here is a
-- command: red:hset(k, f, v) is red:call("HSET", k, f, v).
local core = require "lupine.core"
local lupine = require "lupine"
local co = require "lupine.co"

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
-- Methods, then commands by name (cached): red:get(k) sends GET.
Client.__index = function(_, k)
  local m = Client[k]
  if m ~= nil or type(k) ~= "string" or not k:match("^[a-z][a-z_]*$") then return m end
  local name = k:upper()
  m = function(self, ...) return self:call(name, ...) end
  Client[k] = m
  return m
end

local in_coroutine = co._running
local await = co.await

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
  local w = c.waiter
  if w then
    c.waiter = false
    w:trySuccess(false)
  end
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
local function send(self, ...)
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

-- A future's outcome as a coroutine's call returns it: the reply, or nil and the error's text.
local function outcome(f)
  local v, e = await(f)
  if v == nil then return nil, tostring(e) end
  return v
end

-- call(name, ...): a Future of the reply; in a coroutine, the reply (or nil, err).
function Client:call(...)
  local f = send(self, ...)
  if in_coroutine() then return outcome(f) end
  return f
end

-- Pipelining: fn(p) calls commands on p (p:set(k, v), p:call(...)), which are
-- sent together; the replies come as one array, in order, an error reply as a
-- lupine.RedisError ({ err = "ERR ..." }). In a coroutine the array (or nil,
-- err when the connection failed); outside, a Future of it.
local Batch = {}
Batch.__index = function(_, k)
  if type(k) ~= "string" then return nil end
  local name = k:upper()
  return function(self, ...)
    if k == "call" then self.fs[#self.fs + 1] = send(self.client, ...)
    else self.fs[#self.fs + 1] = send(self.client, name, ...) end
  end
end

function Client:pipeline(fn)
  local b = setmetatable({ client = self, fs = {} }, Batch)
  fn(b)
  local fs, done = b.fs, lupine.promise()
  local left = #fs
  local function finish()
    local out = {}
    for i, f in ipairs(fs) do
      if f:isSuccess() then out[i] = f:get()
      else
        local cause = tostring(f:cause())
        if cause:match("^lupine%.redis: ") then -- not an error reply: the connection failed
          done:tryFailure(cause)
          return
        end
        out[i] = resp.errorReply(cause)
      end
    end
    done:trySuccess(out)
  end
  if left == 0 then finish() end
  for _, f in ipairs(fs) do
    f:addListener(function()
      left = left - 1
      if left == 0 then finish() end
    end)
  end
  if in_coroutine() then return outcome(done) end
  return done
end

-- A message for a coroutine's receiveMessage: queued (at most maxMessages;
-- past that the connection is closed, as Redis closes a subscriber that does
-- not keep up) or handed to the one waiting.
local function queue_message(c, msg, chan)
  local w = c.waiter
  if w then
    c.waiter = false
    w:trySuccess({ msg, chan })
    return
  end
  local q = c.mq
  if q.tail - q.head >= c.maxMessages then
    c.lastError = ("lupine.redis: more than %d messages not received; the connection was closed"):format(c.maxMessages)
    c:close()
    return
  end
  q[q.tail] = { msg, chan }
  q.tail = q.tail + 1
end

-- Pub/sub: fn(message, channel) for each message on channel; a Future of the
-- subscription's confirmation. Without fn, in a coroutine: the messages wait
-- for receiveMessage, and the confirmation is returned. While subscribed
-- (RESP2) only (un)subscribe and PING may be sent on the connection, as with
-- Redis.
function Client:subscribe(channel, fn)
  if fn == nil then
    if not in_coroutine() then error("lupine.redis: subscribe(channel) without a function is for coroutines; outside one give fn(message, channel)", 2) end
    fn = function(msg, chan) queue_message(self, msg, chan) end
  end
  self.subs[channel] = fn
  self.subscribing = self.subscribing + 1
  return self:call("SUBSCRIBE", channel)
end

function Client:unsubscribe(channel)
  self.subs[channel] = nil
  self.subscribing = self.subscribing + 1
  return self:call("UNSUBSCRIBE", channel)
end

-- In a coroutine: the next message of a channel subscribed without a
-- function, as message, channel; nil, "timeout" after timeout seconds; nil
-- and why once the connection is closed.
function Client:receiveMessage(timeout)
  if not in_coroutine() then error("lupine.redis: receiveMessage is for coroutines (lupine.spawn, handle, test.run)", 2) end
  local q = self.mq
  if q.tail > q.head then
    local m = q[q.head]
    q[q.head] = nil
    q.head = q.head + 1
    return m[1], m[2]
  end
  if not self.open then return nil, self.lastError or "lupine.redis: the connection is closed" end
  if self.waiter then error("lupine.redis: receiveMessage: another coroutine is receiving on this client", 2) end
  local w = lupine.promise()
  self.waiter = w
  local m, e = await(w, timeout)
  if self.waiter == w then self.waiter = false end
  if not m then
    if e == "timeout" then return nil, "timeout" end
    return nil, self.lastError or "lupine.redis: the connection is closed"
  end
  return m[1], m[2]
end

-- In a coroutine: for message, channel in red:messages(timeout) do ... end,
-- until the connection closes or a receive times out.
function Client:messages(timeout)
  return function()
    local msg, chan = self:receiveMessage(timeout)
    return msg, chan
  end
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
  local client = setmetatable({ pending = {}, head = 1, tail = 1, subs = {}, subscribed = 0, subscribing = 0, open = false,
    ch = false, flushing = false, onClose = false, lastError = false, waiter = false,
    mq = { head = 1, tail = 1 }, maxMessages = opts.maxMessages or 65536 }, Client)
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
      steps[#steps + 1] = opts.password and send(client, "HELLO", 3, "AUTH", opts.user or "default", opts.password)
        or send(client, "HELLO", 3)
    elseif opts.password then
      steps[#steps + 1] = opts.user and send(client, "AUTH", opts.user, opts.password) or send(client, "AUTH", opts.password)
    end
    if opts.db and opts.db ~= 0 then steps[#steps + 1] = send(client, "SELECT", opts.db) end
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
  if in_coroutine() then return outcome(ready) end
  return ready
end

return redis
