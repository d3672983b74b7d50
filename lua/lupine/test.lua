-- lupine.test: helpers for scripted tests (busted specs or plain scripts).
-- Everything runs on this state's inline loop and real sockets; a wait that
-- runs out of time raises an error saying what it waited for and what it got.
--
--   local server = test.server(app)              -- 127.0.0.1, a free port
--   local c = test.client(server.port)           -- a lupine.co socket
--   c:send("PING\r\n")
--   assert.equal("+PONG", c:receiveLine())      -- or receive(n), receiveUntil, expect
--   c:close()
--
-- The client is the socket lupine.tcp.connect returns (lua/lupine/co.lua): a
-- real client channel whose pipeline ends in the socket. Outside a coroutine
-- its waits run the loop, so servers in the same loop keep serving while a
-- spec waits; inside test.run(function() ... end) they park the coroutine.
local lupine = require "lupine"

local test = {}

test.timeout = 5 -- seconds, the default for every wait below

local function loop() return lupine.loop() end

-- Run the loop until pred() holds or timeout seconds pass (false then). A
-- ticker wakes the loop every 10 ms, so that conditions outside the loop (a
-- file, a process) are seen too, not only those that events change.
local function poll(pred, timeout)
  local ticker = loop():scheduleAtFixedRate(0.01, 0.01, function() end)
  local held = false
  local ok, err = pcall(loop().runUntil, loop(), function()
    held = pred() and true or false
    return held
  end, timeout)
  ticker:cancel()
  if ok or (not held and type(err) == "string" and err:find("^runUntil: timed out")) then return held end
  error(err, 0) -- the predicate raised: its own error
end

-- Run the loop until pred() is true; raises after timeout seconds, naming what
-- it waited for (what, or "the condition").
-- The predicate must not wait itself (test.client, runUntil): that nested run
-- is refused, and raised here even when the predicate caught it.
function test.eventually(pred, timeout, what)
  timeout = timeout or test.timeout
  local ok, held = pcall(poll, pred, timeout)
  if not ok then
    if type(held) == "string" and held:find("called from inside the running loop", 1, true) then
      held = "test.eventually: its predicate ran the loop: " .. held
        .. "; to wait for a server to listen, use test.waitForPort(port)"
    end
    error(held, 0)
  end
  if held then return true end
  error(("test.eventually: %s did not hold within %g s"):format(what or "the condition", timeout), 2)
end

-- test.waitForPort([host,] port [, timeout]): wait until a TCP connect to
-- host:port (127.0.0.1) succeeds, for a server started as a process; the
-- connection is closed at once. Raises after timeout seconds (test.timeout),
-- with the last failure.
function test.waitForPort(host, port, timeout)
  if type(host) ~= "string" then host, port, timeout = "127.0.0.1", host, port end
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    error("test.waitForPort: expected a port number (1-65535), got " .. tostring(port), 2)
  end
  timeout = timeout or test.timeout
  local deadline = loop():now() + timeout
  local last
  repeat
    local left = math.max(deadline - loop():now(), 0.05)
    local f = lupine.connect { host = host, port = port, timeout = left }
    loop():runUntil(f, left + 1, ("a connect to %s:%d"):format(host, port))
    if f:isSuccess() then
      loop():runUntil(f:get():close(), test.timeout, "the probe connection to close")
      return true
    end
    last = tostring(f:cause())
    local pause = math.min(0.05, deadline - loop():now())
    if pause > 0 then loop():runFor(pause) end
  until loop():now() >= deadline
  error(("test.waitForPort: nothing accepted a connection on %s:%d within %g s (last: %s)"):format(host, port,
    timeout, last), 2)
end

-- Start a server on 127.0.0.1, port 0 (or opts.host, opts.port; opts.host
-- "unix:/path" or "unix:@name" for a Unix domain socket, with opts.mode or the
-- app's mode). app_or_init is an app table (with init and maybe options and
-- tls) or an init(ch) function. Returns the lupine.Server, its host and its
-- port (for a Unix socket: host "unix:/path", which test.client takes, and no port).
function test.server(app_or_init, opts)
  opts = opts or {}
  local init, options = app_or_init, opts.options
  if type(app_or_init) == "table" and app_or_init.handle ~= nil then lupine._checkApp(app_or_init, 2) end
  if type(app_or_init) == "table" then
    init = app_or_init.init
    options = options or app_or_init.options
    -- An app's tls field, as lupine.serve applies it (lua/lupine/tls.lua).
    if app_or_init.tls ~= nil and type(init) == "function" then init = require("lupine.tls")._appInit(app_or_init) end
  end
  if type(init) ~= "function" then error("test.server: need an init(ch) function or an app table", 2) end
  local chans = opts.channels -- a table to collect the accepted channels in, in order
  if chans then
    local app_init = init
    init = function(ch)
      chans[#chans + 1] = ch
      return app_init(ch)
    end
  end
  local host = opts.host or "127.0.0.1"
  local mode = opts.mode
  if mode == nil and type(app_or_init) == "table" and host:find("^unix:/") then mode = app_or_init.mode end
  local server, err = lupine.server {
    host = host, port = opts.port or 0, init = init, options = options, backlog = opts.backlog, mode = mode,
  }
  if not server then error("test.server: " .. err, 2) end
  return server, server.host, server.port
end

-- Open a UDP channel on 127.0.0.1 (or its host), port 0 (or opts.host, opts.port). what:
-- an init(ch) function, lupine.udp's options (init, maxDatagramSize,
-- asString, options), or an app table with such a udp field. Returns the
-- channel, its host and its port.
function test.udpServer(what, opts)
  opts = opts or {}
  local udp = what
  if type(what) == "function" then udp = { init = what }
  elseif type(what) == "table" and what.udp ~= nil then udp = what.udp end
  if type(udp) ~= "table" or type(udp.init) ~= "function" then
    error("test.udpServer: need an init(ch) function, or options or an app's udp with one", 2)
  end
  local o = {}
  for k, v in pairs(udp) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  o.host, o.port = opts.host or udp.host or "127.0.0.1", opts.port or 0
  local ch, err = lupine.udp(o)
  if not ch then error("test.udpServer: " .. err, 2) end
  return ch, ch.localHost, ch.localPort
end

-- test.udpClient([host,] port [, opts]): a UDP socket connected to host:port
-- (127.0.0.1), whose datagrams arrive as strings. send(data) sends one
-- datagram (raises when it is refused); receive([timeout]) returns the next
-- datagram and its sender, raising after the timeout (test.timeout, or
-- opts.timeout); nextError([timeout]) the next error the socket reported (an
-- ICMP port unreachable: ECONNREFUSED). opts.maxDatagramSize, opts.options as
-- lupine.udp.open's.
local UdpClient = {}
UdpClient.__index = UdpClient

function test.udpClient(host, port, opts)
  if type(host) ~= "string" then host, port, opts = "127.0.0.1", host, port end
  opts = opts or {}
  local self = setmetatable({ inbox = {}, errors = {}, timeout = opts.timeout or test.timeout }, UdpClient)
  local peer = (host:find(":", 1, true) and "[%s]:%d" or "%s:%d"):format(host, port)
  local ch, err = lupine.udp.open {
    connect = peer, asString = true, maxDatagramSize = opts.maxDatagramSize, options = opts.options,
    init = function(ch)
      ch.pipeline:addLast("udpClient", {
        channelRead = function(_, _, msg) self.inbox[#self.inbox + 1] = msg end,
        exceptionCaught = function(_, _, e) self.errors[#self.errors + 1] = e end,
      })
    end,
  }
  if not ch then error("test.udpClient: " .. err, 2) end
  self.channel, self.peer = ch, peer
  return self
end

function UdpClient:send(data)
  local f = lupine.promise()
  self.channel:writeAndFlush(data, f)
  if not poll(function() return f:isDone() end, self.timeout) then
    error(("send: not sent within %g s"):format(self.timeout), 2)
  end
  if not f:isSuccess() then error("send: " .. tostring((f:cause())), 2) end
  return self
end

local function take(self, list, what, timeout)
  timeout = timeout or self.timeout
  if not poll(function() return #list > 0 end, timeout) then
    error(("%s: nothing from %s within %g s"):format(what, self.peer, timeout), 3)
  end
  return table.remove(list, 1)
end

function UdpClient:receive(timeout)
  local msg = take(self, self.inbox, "receive()", timeout)
  return msg.data, msg.sender
end

function UdpClient:nextError(timeout) return take(self, self.errors, "nextError()", timeout) end

function UdpClient:close()
  local f = self.channel:close()
  poll(function() return f:isDone() end, self.timeout)
end

-- A port on 127.0.0.1 that was free a moment ago (for servers we start as
-- processes: redis-server --port ...).
function test.freePort()
  local s = assert(lupine.server { port = 0, init = function(ch) ch:close() end })
  local port = s.port
  s:close()
  return port
end

-- An address whose connects never complete: a listener that does not accept,
-- its backlog filled. Returns { host, port, close = function }.
function test.blackhole()
  local server = assert(lupine.server { port = 0, backlog = 1, init = function(ch) ch:close() end })
  server:setAutoRead(false)
  local fillers = {}
  local function close()
    for _, ch in ipairs(fillers) do ch:close() end
    server:close()
  end
  for _ = 1, 16 do
    local f = lupine.connect { port = server.port, timeout = 0.25 }
    loop():runUntil(f, 5, "a connect to the backlog")
    if not f:isSuccess() then -- the backlog is full: SYNs are dropped from now on
      return { host = "127.0.0.1", port = server.port, close = close }
    end
    fillers[#fillers + 1] = f:get()
  end
  close()
  error("test.blackhole: the kernel kept completing connections to a listener that does not accept", 2)
end

-- ---- the test client: a lupine.co socket ----------------------------------------------
-- test.client returns the socket lupine.tcp.connect returns (lua/lupine/co.lua),
-- in the test kit's mode: outside a coroutine each wait runs the inline loop
-- until it is done (inside a lupine coroutine, test.run's or lupine.spawn's,
-- it parks the coroutine instead), and a wait that fails raises, saying what
-- arrived so far, instead of returning nil, err.

local co = require "lupine.co"
local Socket = co.Socket

local Client = setmetatable({}, { __index = Socket })
-- c.inbox: what received() returns; c.channel, c.error: the channel, its first exception.
local client_props = {
  inbox = function(self) return self:received() end,
  channel = function(self) return rawget(self, "ch") or nil end,
  error = function(self) return rawget(self, "lastError") or nil end,
}
function Client.__index(self, k) -- (its first upvalue is the method table: docs_spec reads it)
  local m = Client[k]
  if m ~= nil then return m end
  local p = client_props[k]
  if p then return p(self) end
end
Client.__close = function(self) self:close() end
Client.__tostring = Socket.__tostring

local function preview(s)
  if #s > 200 then s = s:sub(1, 200) .. ("... (%d bytes)"):format(#s) end
  return ("%q"):format(s)
end

-- Why a wait failed, in the test kit's words.
local function why(self, err, timeout)
  if err == "timeout" then return ("timed out after %g s"):format(timeout or self.timeout) end
  local ch = rawget(self, "ch")
  local closed = self.closed or (ch and not ch:isOpen())
  if self.eof or closed then
    local w = closed and "the connection closed" or "the peer shut its output down"
    local e = rawget(self, "lastError")
    if e then w = w .. " (" .. tostring(e):gsub("\n.*", "") .. ")" end
    return w
  end
  return tostring(err)
end

-- The level of the first Lua function outside the test kit and lupine.co:
-- the spec's line that called the failing method (also through a pcall).
local function caller_level()
  local level = 3
  while true do
    local info = debug.getinfo(level, "S")
    if not info then return 2 end
    if info.what ~= "C" and not info.short_src:find("lupine/test.lua", 1, true)
      and not info.short_src:find("lupine/co.lua", 1, true) then
      return level - 1
    end
    level = level + 1
  end
end

-- Raise for the caller of a Client method.
local function fail(self, what, err, partial, timeout)
  local so_far = partial or ""
  if err == "timeout" then so_far = self:received() end
  error(("%s: %s; received so far: %s"):format(what, why(self, err, timeout), preview(so_far)), caller_level())
end

-- test.client(host, port [, opts]) or test.client(port [, opts]) or
-- test.client("unix:/path" [, nil, opts]): connects at
-- once (raising when it cannot). opts.timeout: each wait's default
-- (test.timeout); opts.options: channel options; opts.init(ch): add handlers
-- (codecs) before the socket; opts.bufferSize, opts.receiveLimit (64 MiB each
-- here: a spec's client reads whatever the server sends).
function test.client(host, port, opts)
  if type(host) == "number" then host, port, opts = "127.0.0.1", host, port end
  opts = opts or {}
  local self = co._newSocket({
    timeout = opts.timeout or test.timeout,
    bufferSize = opts.bufferSize or 64 * 1048576,
    receiveLimit = opts.receiveLimit or 64 * 1048576,
  }, "test.client", 2)
  self.sync = true
  setmetatable(self, Client)
  local f = lupine.connect {
    host = host, port = port, timeout = self.timeout, options = opts.options,
    init = function(ch)
      if opts.init then opts.init(ch) end
      co._attach(self, ch)
    end,
  }
  local where = port and ("%s:%s"):format(host, port) or tostring(host)
  if co._running() then lupine.await(f, self.timeout + 1)
  else loop():runUntil(f, self.timeout + 1, "the connection to " .. where) end
  if not f:isSuccess() then
    error(("test.client: connect to %s failed: %s"):format(where, tostring(f:cause())), 2)
  end
  return self
end

-- Wait for a future: parked inside a lupine coroutine, running the loop outside. Returns done.
local function settle(self, f, timeout)
  if f:isDone() then return true end
  if co._running() then
    lupine.await(f, timeout)
    return f:isDone()
  end
  return (pcall(loop().runUntil, loop(), f, timeout))
end

-- The bytes received and not yet taken.
function Client:received() return co._buffered(self) end

-- Send data (a string, a Buffer, or a message for an encoder) and wait until it is written.
function Client:send(data)
  local f = self.ch:writeAndFlush(data, lupine.promise())
  if not settle(self, f, self.timeout) then
    error(("send: not written within %g s (is the peer reading?)"):format(self.timeout), 2)
  end
  if not f:isSuccess() then error("send: " .. tostring(f:cause()), 2) end
  return self
end

-- Half-close: the peer reads EOF, this client can still receive.
function Client:shutdownOutput()
  local f = self.ch:shutdownOutput()
  if not settle(self, f, self.timeout) then error("shutdownOutput: not done in time", 2) end
  return self
end

-- Exactly n bytes.
function Client:receive(n, timeout)
  local v, err, part = Socket.receive(self, n, timeout)
  if v == nil then fail(self, ("receive(%s)"):format(tostring(n)), err, part, timeout) end
  return v
end

-- The bytes before delim (plain text, not a pattern); delim is consumed.
function Client:receiveUntil(delim, timeout)
  local v, err, part = Socket.receiveUntil(self, delim, timeout)
  if v == nil then fail(self, ("receiveUntil(%q)"):format(delim), err, part, timeout) end
  return v
end

-- One line, without its "\n" or "\r\n".
function Client:receiveLine(timeout)
  local v, err, part = Socket.receiveLine(self, timeout)
  if v == nil then fail(self, "receiveLine()", err, part, timeout) end
  return v
end

function Client:receiveAny(max, timeout)
  local v, err, part = Socket.receiveAny(self, max, timeout)
  if v == nil then fail(self, ("receiveAny(%s)"):format(tostring(max)), err, part, timeout) end
  return v
end

-- Wait until the received bytes match pattern (a Lua pattern); everything up
-- to the end of the match is consumed. Returns the captures, or the match.
function Client:expect(pattern, timeout)
  local caps
  local v, err, part = co._readBytes(self, "expect", function(s)
    local r = { s:find(pattern) }
    if r[1] then
      caps = #r > 2 and { table.unpack(r, 3) } or { s:sub(r[1], r[2]) }
      return true, r[2]
    end
  end, timeout)
  if v == nil then fail(self, ("expect(%q)"):format(pattern), err, part, timeout) end
  return table.unpack(caps)
end

-- The next message the pipeline produced (a decoder's output).
function Client:receiveMessage(timeout)
  local v, err = Socket.receiveMessage(self, timeout)
  if v == nil then
    error(("receiveMessage(): %s; bytes received so far: %s"):format(why(self, err, timeout), preview(self:received())),
      caller_level())
  end
  return v
end

-- Everything until the peer closes (or shuts its output down).
function Client:receiveAll(timeout)
  local v, err = Socket.receiveAll(self, timeout)
  if v == nil then
    if err == "timeout" then
      error(("receiveAll(): the peer did not close within %g s; received so far: %s"):format(timeout or self.timeout,
        preview(self:received())), caller_level())
    end
    fail(self, "receiveAll()", err, "", timeout)
  end
  return v
end

-- Close and wait until the channel is closed.
function Client:close()
  local ch = self.ch
  Socket.close(self)
  if ch then settle(self, ch.closeFuture, self.timeout) end
end

-- test.run(body [, timeout]): run body() as a lupine coroutine (test.client's
-- waits, lupine.sleep, lupine.tcp.connect then park it) until it ends; raises
-- its error, or after timeout seconds (test.timeout * 2) that it did not end.
-- Returns what body returned.
function test.run(body, timeout)
  if type(body) ~= "function" then error("test.run: expected a function", 2) end
  if co._running() then error("test.run: called inside a coroutine; call body() directly", 2) end
  timeout = timeout or test.timeout * 2
  local f = lupine.promise()
  local c = co._start(function() return body() end, { future = f })
  local ok = pcall(loop().runUntil, loop(), f, timeout)
  if not ok or not f:isDone() then
    co._abandon(c)
    error(("test.run: the body did not finish within %g s"):format(timeout), 2)
  end
  if not f:isSuccess() then error(tostring(f:cause()), 0) end
  return co._results(f)
end

-- ---- processes -------------------------------------------------------------------------
-- A spawned program is a direct child of this process (core._spawn, in
-- src/lua/l_process.c), in a process group of its own, with a parent-death
-- signal: if this process dies, even by SIGKILL, the kernel kills the program.
-- stop() signals the whole group, so what the program started goes too.

local Process = {}
Process.__index = Process

-- test.spawn(argv [, opts]): start a program in the background, e.g.
-- test.spawn { "redis-server", "--port", 6400 }. argv: the program (looked up
-- on PATH) and its arguments (strings or numbers); opts.env = { NAME = value }
-- adds to the environment; opts.stdout, opts.stderr: files for its output (by
-- default both go to one temporary file, p:output()); opts.nofile: its
-- descriptor limit. Returns a Process: .pid, :isRunning(), :status(),
-- :wait(timeout), :kill(sig), :output(), :stop(timeout). A program that is not
-- installed raises here, loudly.
function test.spawn(argv, opts)
  opts = opts or {}
  if type(argv) ~= "table" or type(argv[1]) ~= "string" then error("test.spawn: expected { program, args... }", 2) end
  local log
  if not opts.stdout and not opts.stderr then log = os.tmpname() end
  local pid, why = lupine._spawn(argv, {
    env = opts.env, stdout = opts.stdout or log, stderr = opts.stderr or log, nofile = opts.nofile,
  })
  if not pid then
    if log then os.remove(log) end
    if why == "not found" then error(("test.spawn: '%s' is not installed (not on PATH)"):format(argv[1]), 2) end
    error(("test.spawn: cannot start %s: %s"):format(argv[1], why), 2)
  end
  return setmetatable({ pid = pid, log = log, name = argv[1] }, Process)
end

-- The exit status once the program has ended (its exit code, or 128 + the
-- signal that ended it), else nil. The child is reaped only by stop(): until
-- then its process group stays reserved for it.
function Process:status()
  if self.code == nil then self.code = lupine._wait(self.pid, true) end
  return self.code
end

function Process:isRunning() return self:status() == nil end

-- Wait for the end (running the loop) up to timeout seconds; returns the status, or raises.
function Process:wait(timeout)
  timeout = timeout or test.timeout
  if poll(function() return self:status() ~= nil end, timeout) then return self.code end
  error(("test.spawn: %s (pid %d) did not exit within %g s"):format(self.name, self.pid, timeout), 2)
end

-- Send a signal ("TERM", "KILL", "HUP", ... or a number) to its process group.
function Process:kill(sig)
  if self.reaped then return false end
  return lupine._kill(-self.pid, sig or "TERM") ~= nil
end

-- What the program wrote (stdout and stderr), when they went to the default file.
function Process:output()
  if not self.log then return "" end
  local f = io.open(self.log)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- SIGTERM to the group, wait (running the loop) up to timeout, then SIGKILL;
-- whatever is left of the group is killed, the child reaped, the output file
-- removed. Returns the status. Idempotent.
function Process:stop(timeout)
  if self.reaped then return self.code end
  if self:isRunning() then
    self:kill("TERM")
    if not poll(function() return not self:isRunning() end, timeout or test.timeout) then
      self:kill("KILL")
      poll(function() return not self:isRunning() end, 5)
    end
  end
  self:kill("KILL") -- the rest of its group (the zombie still holds the group id)
  if self:status() ~= nil then
    lupine._wait(self.pid) -- reap
    self.reaped = true
  end
  if self.log then os.remove(self.log) end
  return self.code
end

Process.__close = function(self) self:stop() end -- not stop(self, err): err is no timeout

-- A Process nobody refers to any more can never be stopped: kill it now.
function Process:__gc()
  if self.reaped then return end
  lupine._kill(-self.pid, "KILL")
  lupine._wait(self.pid)
  if self.log then os.remove(self.log) end
end

-- An embedded channel (Netty's EmbeddedChannel): a channel with no socket
-- whose pipeline is the real one. test.embedded(h1, h2, ...) adds the handlers
-- (tables or native factories) in order and makes the channel active;
-- test.embedded(app) (a table with init, or an init function) sets the app's
-- options and runs its init(ch) instead.
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

-- An app: a table with an init(ch) function (what lupine.app returns), or the
-- init function itself; handlers are tables with event methods, or userdata.
local function app_of(v)
  if type(v) == "function" then return { init = v } end
  if type(v) == "table" and type(rawget(v, "init")) == "function" then return v end
end

-- test.embedded(h1, h2, ...) or test.embedded(app): app.options are set on
-- the channel, then app.init(ch) builds its pipeline, as for an accepted channel.
function test.embedded(...)
  local app = app_of((...))
  if app and select("#", ...) > 1 then
    error("test.embedded: give an app (or its init function) alone, or handlers", 2)
  end
  local ch, q = lupine._embeddedChannel()
  local self = setmetatable({ channel = ch, queues = q }, Embedded)
  local ok, err = pcall(function(...)
    if app then
      if app.options ~= nil then
        if type(app.options) ~= "table" then error("test.embedded: the app's options must be a table", 0) end
        local config = ch:config()
        for k, v in pairs(app.options) do config:setOption(k, v) end
      end
      app.init(ch)
      return
    end
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


-- test.http: HTTP client calls that wait for their response (lupine.http.request,
-- then :sync): test.http.request{...}, test.http.get(url [, opts]),
-- test.http.post(url, body [, opts]), put, patch, delete, head. Each returns the
-- response table { status, headers, body, ... } or raises the failure. They run
-- the loop: not from inside a handler.
test.http = {}
function test.http.request(opts)
  if type(opts) ~= "table" then error("test.http.request: expected a table { url = ..., ... }", 2) end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.timeout = o.timeout or test.timeout
  return require("lupine.http").request(o):sync(o.timeout + 1)
end
for _, m in ipairs { "get", "head", "delete", "post", "put", "patch" } do
  local with_body = m == "post" or m == "put" or m == "patch"
  test.http[m] = function(url, a, b)
    local body, opts = nil, a
    if with_body then body, opts = a, b end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.method, o.url, o.body = m:upper(), url, body
    return test.http.request(o)
  end
end

return test
