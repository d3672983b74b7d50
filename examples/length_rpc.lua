-- examples/length_rpc.lua: request/response over length-prefixed frames, with
-- its client in the same file.
--   lua5.4 examples/length_rpc.lua                        serve inline on port 8009 (PORT=...)
--   lupine -w 2 examples/length_rpc.lua                   serve with the launcher
--   lua5.4 examples/length_rpc.lua call 8009 upper hello  one call with the Lua client
--
-- A frame is a 4-byte big-endian length and that many bytes. A request is
-- "ID METHOD ARG", its response "ID ok RESULT" or "ID err MESSAGE"; a client
-- may send many requests before reading and matches responses by ID. The
-- native lengthFieldFrame decoder strips the length (the handler gets whole
-- requests as strings); the native lengthFieldPrepender adds it to every
-- response. A frame over 64 KiB is a TooLongFrame: the server answers
-- "0 err ..." and goes on with the next frame.
local lupine = require "lupine"
local codec = lupine.codec

local MAX_FRAME = 64 * 1024

-- The same framing on both sides.
local function add_framing(pipeline)
  pipeline:addLast("frames", codec.lengthFieldFrame {
    lengthFieldLength = 4, initialBytesToStrip = 4, maxFrameLength = MAX_FRAME + 4, asString = true,
  })
  pipeline:addLast("length", codec.lengthFieldPrepender { lengthFieldLength = 4 })
end

local methods = {}
function methods.echo(arg) return arg end
function methods.upper(arg) return arg:upper() end
function methods.len(arg) return tostring(#arg) end
function methods.add(arg)
  local a, b = arg:match("^(%-?%d+)%s+(%-?%d+)$")
  if not a then error("add: expected two integers", 0) end
  return tostring(math.tointeger(a) + math.tointeger(b))
end

local Rpc = { name = "rpc" }

function Rpc:channelRead(ctx, request)
  local id, method, arg = request:match("^(%d+) (%S+) ?(.*)$")
  if not id then
    ctx:write("0 err malformed request")
    return
  end
  local fn = methods[method]
  if not fn then
    ctx:write(("%s err unknown method '%s'"):format(id, method))
    return
  end
  local ok, result = pcall(fn, arg)
  ctx:write(("%s %s %s"):format(id, ok and "ok" or "err", tostring(result)))
end

function Rpc:channelReadComplete(ctx)
  ctx:flush() -- one write for all the responses to one read
end

function Rpc:exceptionCaught(ctx, err)
  if type(err) == "table" and err.kind == "TooLongFrame" then
    ctx:writeAndFlush("0 err " .. err.message)
    return
  end
  lupine.log("debug", ctx.channel, tostring(err))
  ctx:close()
end

-- ---- the client ------------------------------------------------------------------
-- local c = client{ host = "127.0.0.1", port = 8009 }
-- c:call("upper", "hi", function(ok, result) ... end)   -- ok false: result is the error
-- c.connected is the connect future; c:close() closes.
local Client = {}
Client.__index = Client

local function client(opts)
  local self = setmetatable({ pending = {}, next_id = 1 }, Client)
  local Responses = { name = "responses" }
  function Responses.channelRead(_, _, response)
    local id, status, result = response:match("^(%d+) (%S+) ?(.*)$")
    local cb = id and self.pending[tonumber(id)]
    if cb then
      self.pending[tonumber(id)] = nil
      cb(status == "ok", result)
    end
  end
  function Responses.channelInactive()
    for id, cb in pairs(self.pending) do
      self.pending[id] = nil
      cb(false, "connection closed")
    end
  end
  self.connected = lupine.connect {
    host = opts.host or "127.0.0.1", port = opts.port, timeout = opts.timeout,
    init = function(ch)
      add_framing(ch.pipeline)
      ch.pipeline:addLast("responses", Responses)
      self.channel = ch
    end,
  }
  return self
end

function Client:call(method, arg, callback)
  local id = self.next_id
  self.next_id = id + 1
  self.pending[id] = callback
  self.channel:writeAndFlush(("%d %s %s"):format(id, method, arg or ""))
  return id
end

function Client:close() return self.channel:close() end

-- `lua5.4 examples/length_rpc.lua call PORT METHOD ARG`
if arg and arg[0] and arg[0]:match("length_rpc%.lua$") and arg[1] == "call" then
  local c = client { port = tonumber(arg[2]) or 8009 }
  local done
  c:call(arg[3] or "echo", table.concat(arg, " ", 4), function(ok, result)
    print(ok and result or ("error: " .. result))
    done = ok
  end)
  lupine.loop():runUntil(function() return done ~= nil end, 5, "the response")
  c:close()
  os.exit(done and 0 or 1)
end

return lupine.app {
  name = "length_rpc",
  port = tonumber(os.getenv("PORT")) or 8009,
  client = client,
  init = function(ch)
    add_framing(ch.pipeline)
    ch.pipeline:addLast("rpc", Rpc)
  end,
}
