-- lupine.test: helpers for scripted tests (busted specs or plain scripts).
-- Everything runs on this state's inline loop and real sockets; a wait that
-- runs out of time raises an error saying what it waited for and what it got.
local lupine = require "lupine"

local test = {}

test.timeout = 5 -- seconds, the default for every wait below

local function loop() return lupine.loop() end

-- Run the loop until pred() is true; raises after timeout seconds.
function test.eventually(pred, timeout, what)
  return loop():runUntil(pred, timeout or test.timeout, what)
end

-- Start a server on 127.0.0.1, port 0 (or opts.port). app_or_init is an app
-- table (with init) or an init(ch) function. Returns the lupine.Server; its
-- .host, .port and .localAddress say where it listens.
function test.server(app_or_init, opts)
  opts = opts or {}
  local init, options = app_or_init, opts.options
  if type(app_or_init) == "table" then
    init = app_or_init.init
    options = options or app_or_init.options
  end
  assert(type(init) == "function", "test.server: need an init(ch) function or an app table")
  local server, err = lupine.server {
    host = opts.host or "127.0.0.1", port = opts.port or 0, init = init, options = options,
  }
  if not server then error("test.server: " .. err, 2) end
  return server
end

-- A synchronous client over a real lupine client channel.
local Client = {}
Client.__index = Client

local function preview(s)
  if #s > 200 then s = s:sub(1, 200) .. ("... (%d bytes)"):format(#s) end
  return ("%q"):format(s)
end

-- test.client(host, port, opts) or test.client(port): connects at once.
-- opts.timeout: the default wait (test.timeout); opts.options: channel options.
function test.client(host, port, opts)
  if type(host) == "number" then host, port, opts = "127.0.0.1", host, port end
  opts = opts or {}
  local self = setmetatable({ timeout = opts.timeout or test.timeout, inbox = "", closed = false }, Client)
  local collector = { name = "test.client" }
  function collector.channelRead(_, _, msg)
    self.inbox = self.inbox .. (type(msg) == "string" and msg or msg:readString())
  end
  function collector.channelInactive() self.closed = true end
  function collector.exceptionCaught(_, _, err) self.error = err end
  local f = lupine.connect {
    host = host, port = port, timeout = self.timeout, options = opts.options,
    init = function(ch) ch.pipeline:addLast(collector) end,
  }
  loop():runUntil(f, self.timeout + 1, "the connection to " .. host .. ":" .. port)
  if not f:isSuccess() then
    error(("test.client: connect to %s:%s failed: %s"):format(host, port, tostring(f:cause())), 2)
  end
  self.channel = f:get()
  return self
end

function Client:send(data)
  local f = self.channel:writeAndFlush(data, lupine.promise())
  loop():runUntil(f, self.timeout, "a write to complete")
  if not f:isSuccess() then error("send: " .. tostring(f:cause()), 2) end
  return self
end

-- Wait until take(inbox) returns a value (and the rest); raise after the timeout.
function Client:_wait(what, take, timeout)
  local result
  local ok = pcall(loop().runUntil, loop(), function()
    local v, rest = take(self.inbox)
    if v ~= nil then
      result, self.inbox = v, rest
      return true
    end
    return self.closed
  end, timeout or self.timeout)
  if result ~= nil then return result end
  local why = self.closed and "the connection closed" or ("timed out after %gs"):format(timeout or self.timeout)
  error(("%s: %s; received so far: %s"):format(what, why, preview(self.inbox)), 3)
end

function Client:receive(n, timeout)
  return self:_wait(("receive(%d)"):format(n), function(s)
    if #s >= n then return s:sub(1, n), s:sub(n + 1) end
  end, timeout)
end

function Client:receiveUntil(delim, timeout)
  return self:_wait(("receiveUntil(%q)"):format(delim), function(s)
    local i, j = s:find(delim, 1, true)
    if i then return s:sub(1, i - 1), s:sub(j + 1) end
  end, timeout)
end

function Client:receiveLine(timeout)
  local line = self:receiveUntil("\n", timeout)
  return (line:gsub("\r$", ""))
end

-- Wait until the received data matches pattern; returns the match (or its captures).
function Client:expect(pattern, timeout)
  local caps
  self:_wait(("expect(%q)"):format(pattern), function(s)
    local r = { s:find(pattern) }
    if r[1] then
      caps = #r > 2 and { table.unpack(r, 3) } or { s:sub(r[1], r[2]) }
      return true, s:sub(r[2] + 1)
    end
  end, timeout)
  return table.unpack(caps)
end

-- Everything until the peer closes.
function Client:receiveAll(timeout)
  loop():runUntil(function() return self.closed end, timeout or self.timeout, "the peer to close")
  local s = self.inbox
  self.inbox = ""
  return s
end

function Client:close()
  if not self.channel then return end
  local f = self.channel:close()
  loop():runUntil(f, self.timeout, "the close to complete")
  self.closed = true
end

Client.__close = Client.close

-- An embedded channel (Netty's EmbeddedChannel): a channel with no socket
-- whose pipeline is the real one. test.embedded(h1, h2, ...) adds the handlers
-- (tables or native factories) in order and makes the channel active.
--   ch:writeInbound(...)   each value as channelRead from the head, then channelReadComplete;
--                          true when something reached the tail
--   ch:readInbound()       the oldest message that reached the tail (nil: none)
--   ch:writeOutbound(...)  write each from the tail, flush; true when something reached the head
--   ch:readOutbound()      the oldest message written and flushed at the head
--   ch:flush(), ch:close() (a future), ch:finish() (close; true when messages are left unread)
--   ch:checkException()    raise the first exception that reached the tail, if any
--   ch:runPendingTasks()   run tasks and timers that are due, without waiting
--   ch:advanceTime(s)      run the loop for s seconds of real time (libev's clock
--                          cannot be faked), then the tasks due
-- writeInbound, writeOutbound, flush, close and finish run pending tasks and
-- then checkException, as Netty's do. Everything else a lupine.Channel has
-- (pipeline, attr, isActive, write, ...) works on it too.
local Embedded = {}
local embedded_methods = {}

Embedded.__index = function(self, k)
  local m = embedded_methods[k]
  if m then return m end
  local ch = rawget(self, "channel")
  local v = ch[k]
  if type(v) == "function" then
    return function(s, ...)
      if s == self then s = ch end
      return v(s, ...)
    end
  end
  return v
end

Embedded.__gc = function(self)
  -- Nobody can read this channel any more: close it (channelInactive follows as a task).
  local ch = rawget(self, "channel")
  if ch and ch:isOpen() then lupine._embeddedCloseNow(ch) end
end

Embedded.__tostring = function(self) return tostring(rawget(self, "channel")) end

function test.embedded(...)
  local ch, q = lupine._embeddedChannel()
  local self = setmetatable({ channel = ch, queues = q }, Embedded)
  local ok, err = pcall(function(...)
    for i = 1, select("#", ...) do ch.pipeline:addLast((select(i, ...))) end
  end, ...)
  if not ok then
    lupine._embeddedCloseNow(ch)
    error(err, 2)
  end
  lupine._embeddedRegister(ch)
  return self
end

function embedded_methods:runPendingTasks()
  lupine._runPendingTasks()
  return self
end

function embedded_methods:advanceTime(seconds)
  if seconds > 0 then loop():runFor(seconds) end
  lupine._runPendingTasks()
  return self
end

function embedded_methods:checkException()
  local ex = self.queues.exceptions
  local first = ex[1]
  if first == nil then return self end
  for i = #ex, 1, -1 do ex[i] = nil end
  error(first, 0) -- as it was raised: its own position and traceback
end

function embedded_methods:writeInbound(...)
  local p = self.channel.pipeline
  for i = 1, select("#", ...) do p:fireChannelRead((select(i, ...))) end
  p:fireChannelReadComplete()
  lupine._runPendingTasks()
  self:checkException()
  return #self.queues.inbound > 0
end

function embedded_methods:writeOutbound(...)
  local ch = self.channel
  for i = 1, select("#", ...) do ch:write((select(i, ...))) end
  ch:flush()
  lupine._runPendingTasks()
  self:checkException()
  return #self.queues.outbound > 0
end

function embedded_methods:flush()
  self.channel:flush()
  lupine._runPendingTasks()
  self:checkException()
  return self
end

function embedded_methods:readInbound() return table.remove(self.queues.inbound, 1) end
function embedded_methods:readOutbound() return table.remove(self.queues.outbound, 1) end
function embedded_methods:inboundMessages() return self.queues.inbound end
function embedded_methods:outboundMessages() return self.queues.outbound end

function embedded_methods:close()
  local f = self.channel:close()
  lupine._runPendingTasks()
  self:checkException()
  return f
end

function embedded_methods:finish()
  self:close()
  return #self.queues.inbound > 0 or #self.queues.outbound > 0
end

return test
