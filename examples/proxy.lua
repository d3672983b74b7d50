-- examples/proxy.lua: a TCP proxy, Netty's HexDumpProxy in lupine. Each
-- accepted (inbound) channel is paired with one client (outbound) channel to
-- the backend:
--   - the inbound channel does not read (autoRead off) until the backend is
--     connected: nothing piles up meanwhile;
--   - back-pressure both ways, driven by writability: while one side cannot
--     write, the proxy stops reading from the other (autoBackpressure is off on
--     both: a proxy's reads feed the *other* channel, so each pauses its peer);
--   - a half-close is relayed: when one side sends its FIN (inputShutdown,
--     since allowHalfClosure is on for both), the proxy shuts the other side's
--     output down after what was written to it, and the reply still flows
--     back; a channel closes once both of its directions are done;
--   - when one side closes, the other closes once what was written to it is
--     flushed (an empty write whose listener closes).
--
--   BACKEND_PORT=8007 lua5.4 examples/proxy.lua     proxy 127.0.0.1:8008 -> 127.0.0.1:8007
--   PORT, BACKEND_HOST, BACKEND_PORT               environment overrides
local lupine = require "lupine"

local app = {
  name = "proxy",
  port = tonumber(os.getenv("PORT")) or 8008,
  -- Read at each connection: a spec can point the proxy elsewhere.
  backend = { host = os.getenv("BACKEND_HOST") or "127.0.0.1", port = tonumber(os.getenv("BACKEND_PORT")) or 8007 },
  options = { autoRead = false, autoBackpressure = false, allowHalfClosure = true },
}

-- Close ch after everything written to it so far has reached the kernel. A
-- channel whose output was shut down (a relayed FIN) is left alone: its FIN
-- follows the last byte, and it closes when its peer's FIN arrives.
local function close_on_flush(ch, output_shut)
  if output_shut then return end
  if ch:isActive() then
    ch:writeAndFlush("", function() ch:close() end)
  else
    ch:close()
  end
end

-- The outbound side: bytes from the backend go to the inbound channel.
local Backend = { name = "backend" }
Backend.__index = Backend

function Backend:channelRead(_, buf) self.inbound:write(buf) end

function Backend:channelReadComplete() self.inbound:flush() end

-- The backend cannot take more: stop reading from the client until it can.
function Backend:channelWritabilityChanged(ctx)
  self.inbound:config():setAutoRead(ctx.channel:isWritable())
end

-- The backend sent its FIN: pass it on to the client after the bytes before it.
function Backend:userEventTriggered(ctx, evt)
  if evt.kind ~= "inputShutdown" then return end
  if self.inbound:isActive() then
    self.inbound:shutdownOutput()
    self.relayed = true
  else
    ctx:close()
  end
end

function Backend:channelInactive() close_on_flush(self.inbound, self.relayed) end

function Backend:exceptionCaught(ctx, err)
  lupine.log("info", "proxy: backend", ctx.channel, tostring(err))
  close_on_flush(ctx.channel)
end

-- The inbound side: bytes from the client go to the backend.
local Frontend = { name = "frontend" }
Frontend.__index = Frontend

function Frontend:channelActive(ctx)
  local inbound = ctx.channel
  local target = app.backend
  local connecting = lupine.connect {
    host = target.host, port = target.port, timeout = 5,
    options = { autoBackpressure = false, allowHalfClosure = true },
    init = function(out)
      self.backend = setmetatable({ inbound = inbound }, Backend)
      out.pipeline:addLast("backend", self.backend)
    end,
  }
  connecting:addListener(function(f)
    if not f:isSuccess() then
      lupine.log("info", "proxy: backend", target.host .. ":" .. target.port, tostring(f:cause()))
      inbound:close()
      return
    end
    self.outbound = f:get()
    if not inbound:isActive() then -- the client left while we connected
      self.outbound:close()
      return
    end
    inbound:config():setAutoRead(self.outbound:isWritable()) -- now the client may talk
  end)
end

function Frontend:channelRead(_, buf) self.outbound:write(buf) end

function Frontend:channelReadComplete() self.outbound:flush() end

-- The client cannot take more: stop reading from the backend until it can.
function Frontend:channelWritabilityChanged(ctx)
  if self.outbound then self.outbound:config():setAutoRead(ctx.channel:isWritable()) end
end

-- The client sent its FIN: pass it on to the backend after the bytes before it.
function Frontend:userEventTriggered(ctx, evt)
  if evt.kind ~= "inputShutdown" then return end
  if self.outbound and self.outbound:isActive() then
    self.outbound:shutdownOutput()
    self.relayed = true
  else
    ctx:close()
  end
end

function Frontend:channelInactive()
  if self.outbound then close_on_flush(self.outbound, self.relayed) end
end

function Frontend:exceptionCaught(ctx, err)
  lupine.log("info", "proxy: client", ctx.channel, tostring(err))
  close_on_flush(ctx.channel)
end

function app.init(ch)
  ch.pipeline:addLast("frontend", setmetatable({}, Frontend)) -- per channel: it holds its outbound channel
end

return lupine.app(app)
