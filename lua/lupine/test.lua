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

return test
