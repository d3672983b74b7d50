-- examples/client_echo.lua: Netty's EchoClient. Connects, sends `count`
-- messages of `size` bytes one after the other, checks that each comes back
-- exactly, then closes.
--
--   lua5.4 examples/echo.lua &                       an echo server on 8007
--   lua5.4 examples/client_echo.lua [host] [port] [count] [size]
--
-- Loaded with dofile it returns { run = run }: run{ host, port, count, size }
-- returns a future of { messages, bytes, seconds }, failed with the first
-- mismatch or the connection's error.
local lupine = require "lupine"

local function message(i, size)
  local head = ("message %d of lupine's echo client "):format(i)
  return (head:rep(size // #head + 1)):sub(1, size)
end

-- Per connection: which message is in flight and what came back of it.
local Client = { name = "echo-client" }
Client.__index = Client

function Client:channelActive(ctx)
  self.started = ctx.executor:now()
  self:send(ctx)
end

function Client:send(ctx)
  self.i = self.i + 1
  self.want = message(self.i, self.size)
  self.got = {}
  self.have = 0
  ctx:writeAndFlush(self.want)
end

function Client:channelRead(ctx, buf)
  -- TCP keeps no message boundaries: collect until a whole message is back.
  self.got[#self.got + 1] = buf:readString()
  self.have = self.have + #self.got[#self.got]
  if self.have < self.size then return end
  local echoed = table.concat(self.got)
  if echoed ~= self.want then
    self.done:setFailure(("message %d came back different (%d bytes)"):format(self.i, #echoed))
    ctx:close()
  elseif self.i == self.count then
    local secs = ctx.executor:now() - self.started
    self.done:setSuccess { messages = self.count, bytes = self.count * self.size, seconds = secs }
    ctx:close()
  else
    self:send(ctx)
  end
end

-- tryFailure: the run may be over already (a promise completes once).
function Client:exceptionCaught(ctx, err)
  self.done:tryFailure(err)
  ctx:close()
end

function Client:channelInactive()
  self.done:tryFailure("the server closed the connection after " .. self.i - 1 .. " messages")
end

local function run(opts)
  local done = lupine.promise()
  local state = setmetatable({ i = 0, count = opts.count or 1000, size = opts.size or 256, done = done }, Client)
  local connecting = lupine.connect {
    host = opts.host or "127.0.0.1", port = opts.port or 8007,
    init = function(ch) ch.pipeline:addLast("client", state) end,
  }
  connecting:addListener(function(f)
    if not f:isSuccess() then done:tryFailure(f:cause()) end
  end)
  return done
end

-- Run as a script: echo against host:port and report.
if not pcall(debug.getlocal, 4, 1) then
  local host, port = arg[1] or "127.0.0.1", tonumber(arg[2]) or 8007
  local count, size = tonumber(arg[3]) or 1000, tonumber(arg[4]) or 256
  local f = run { host = host, port = port, count = count, size = size }
  lupine.loop():runUntil(f, 600)
  if not f:isSuccess() then
    io.stderr:write("client_echo: ", tostring(f:cause()), "\n")
    os.exit(1)
  end
  local r = f:get()
  print(("client_echo: %d messages of %d bytes echoed by %s:%d in %.3f s (%.0f round trips/s)"):format(
    r.messages, size, host, port, r.seconds, r.messages / r.seconds))
end

return { run = run }
