-- lupine.co: coroutines on the event loop, and sockets that block them.
-- (lupine.spawn, lupine.sleep, lupine.await, lupine.tcp.connect and an app's
-- handle(sock) are this module's; init.lua forwards them.)
--
-- There is no second event system: a coroutine that waits is parked, and the
-- loop's own events (a timer, a future's listener, a pipeline event reaching a
-- socket's handler) wake it by resuming it. Each wait has a number, kept in
-- the coroutine's record while it is parked (rec.parked) and given to its
-- wakers: a stale waker (a timer of a wait that ended, a listener of a future
-- nobody awaits any more) finds another number and does nothing, so a
-- coroutine is resumed only by what it waits for. Coroutines are resumed from handlers, timers and listeners, which
-- run on the state's main thread: a coroutine that failed or was abandoned is
-- never the thread a later event runs on.
--
-- A socket (Socket below) is the tail of a channel's pipeline: its handler
-- queues what reaches the tail (bytes, frames, decoded objects, errors) in
-- order, and the socket's methods take from that queue, parking the calling
-- coroutine while what they need has not arrived. The echo's path is native
-- both ways (l_co.c): a receiveAny on an empty queue parks in
-- core._coParkAny and the read resumes it with the bytes; send below the
-- high water mark is one call, core._coSend. Reading is demand-driven:
-- with nobody receiving and bufferSize queued, the channel's autoRead is
-- switched off (the peer is stopped by TCP, not buffered without bound), and
-- on again when a receive wants more. Every blocking call has a timeout (the
-- socket's, or one given per call); every wait ends with the channel's close.
local core = require "lupine.core"

-- One instance per Lua state, however often this file is loaded (a test
-- runner that unloads modules between files, a dofile): coroutines, sockets
-- and their handler live in this instance's tables.
local registry = debug.getregistry()
if registry["lupine.co"] then return registry["lupine.co"] end

local co = {}
registry["lupine.co"] = co

local running, resume, yield, status = coroutine.running, coroutine.resume, coroutine.yield, coroutine.status
local create, pack, unpack = coroutine.create, table.pack, table.unpack
local type, getmetatable, tostring, error, select = type, getmetatable, tostring, error, select
local huge, max, min, math_type = math.huge, math.max, math.min, math.type

local theloop
local function loop()
  local l = theloop
  if not l then
    l = core.loop()
    theloop = l
  end
  return l
end

-- ---- coroutines ---------------------------------------------------------------------

-- Coroutines this module started: co -> its record { parked, future,
-- onReturn, onError } (a handle's record is its socket). Weak keys: a
-- coroutine nobody can wake any more (every waker gone) is garbage.
local recs = setmetatable({}, { __mode = "k" })
-- Results of a spawn's future beyond the first value: future box -> pack(...).
local results = setmetatable({}, { __mode = "k" })

co.defaultTimeout = 60 -- seconds, for sockets that were given none

local function outside(what, instead)
  local _, main = running()
  if main then
    return ("%s: called outside a coroutine; run the code in lupine.spawn(function() ... end)%s"):format(what,
      instead or "")
  end
  return ("%s: called in a coroutine lupine did not start; start it with lupine.spawn(fn)%s"):format(what,
    instead or "")
end

-- The running lupine coroutine and its record; raises, saying what to use
-- instead, when there is none.
local function current(what, instead, level)
  local c, main = running()
  local rec = not main and recs[c]
  if not rec then error(outside(what, instead), (level or 2) + 1) end
  return c, rec
end

local wake, begin

local function describe(err)
  if type(err) == "table" and getmetatable(err) == nil and err.message then return tostring(err.message) end
  return tostring(err)
end

local function report_unobserved(f)
  core.log("error", "lupine.spawn: a coroutine failed and nobody awaited it: " .. tostring(f:cause()))
end

-- After resume(c): finish the coroutine when it ended, or let a bare
-- coroutine.yield() (not one of our waits) go on at the loop's next turn.
local function settle(c, rec, ok, ...)
  if ok and rec.parked then return end -- parked in one of our waits: the common case
  if status(c) ~= "dead" then
    if not rec.parked then
      local g = begin(rec)
      rec.parked = g
      loop():execute(function() wake(c, g) end)
    end
    return
  end
  recs[c] = nil
  if ok then
    local f = rec.future
    if f then
      local n = select("#", ...)
      if n > 1 then results[f] = pack(...) end
      f:setSuccess((...))
    end
    if rec.onReturn then rec.onReturn(rec) end
    return
  end
  local err = ...
  local text = debug.traceback(c, describe(err), 0)
  if rec.onError then rec.onError(rec, text, err) end
  local f = rec.future
  if f then
    core._onUnobserved(f, report_unobserved)
    f:setFailure(text)
  end
end

-- Resume c if it is parked in wait number g (with the values given).
function wake(c, g, ...)
  local rec = recs[c]
  if rec and rec.parked == g then
    rec.parked = false
    return settle(c, rec, resume(c, ...))
  end
end
co._wake = wake

-- Begin a wait: returns its number (give it to the waker), unique in this
-- state; then yield with park(rec, g). rec.parked holds the number of the
-- wait the coroutine is parked in (false while it runs; true in receiveAny's
-- fast path, whose wakers find it through the socket, not by number).
local waits = 0
function begin(_)
  waits = waits + 1
  return waits
end

local function park(rec, g)
  rec.parked = g
  return yield()
end

local function start(c, rec, ...)
  recs[c] = rec
  settle(c, rec, resume(c, ...))
end

-- lupine.spawn(fn, ...): run fn(...) in a coroutine on this state's loop, at
-- once until its first wait. Returns a future of its results (lupine.await
-- gives them all; future:get() the first). An error fails the future with the
-- message and a traceback, and is logged if nobody listened to the future or
-- asked for its result by the time it fails.
function co.spawn(fn, ...)
  if type(fn) ~= "function" then error("lupine.spawn: expected a function, got " .. type(fn), 2) end
  local c = create(fn)
  local f = core.promise()
  start(c, { parked = false, future = f }, ...)
  return f
end

-- Run fn(...) as a coroutine with hooks instead of a future (handle, test.run).
function co._start(fn, rec, ...)
  rec.parked = false
  local c = create(fn)
  start(c, rec, ...)
  return c
end

function co._running() -- the running lupine coroutine's record, or nil
  local c, main = running()
  return not main and recs[c] or nil
end

-- Abandon a parked coroutine: it is never resumed, its to-be-closed variables close.
function co._abandon(c)
  local rec = recs[c]
  if rec and rec.parked then
    recs[c] = nil
    rec.parked = false -- a socket's hand-off must not resume it
    coroutine.close(c)
  end
end

local function check_seconds(s, what, level)
  if type(s) ~= "number" or s ~= s or s < 0 then
    error(("%s: expected a number of seconds >= 0, got %s"):format(what, tostring(s)), level + 1)
  end
end

-- lupine.sleep(s): park the running coroutine for s seconds.
function co.sleep(s)
  check_seconds(s, "lupine.sleep", 2)
  local c, rec = current("lupine.sleep", " (in a handler: ctx.executor:schedule(s, fn))")
  local g = begin(rec)
  loop():schedule(s, function() wake(c, g) end)
  park(rec, g)
end

local function is_future(v) return type(v) == "userdata" and getmetatable(v) == "lupine.Future" end

function co._results(f)
  local r = results[f]
  if r then return unpack(r, 1, r.n) end
  return f:get()
end

local function future_values(f)
  local r = results[f]
  if r then return unpack(r, 1, r.n) end
  local v = f:get()
  if v == nil then return true end
  return v
end

-- lupine.await(future [, timeout]): park until the future is done; returns its
-- value(s) (true for a success without one), or nil and its cause; nil,
-- "timeout" after timeout seconds (the future goes on).
function co.await(f, timeout)
  if not is_future(f) then error("lupine.await: expected a lupine.Future, got " .. type(f), 2) end
  if timeout ~= nil then check_seconds(timeout, "lupine.await: timeout", 2) end
  if not f:isDone() then
    local c, rec = current("lupine.await", " (in a handler: future:addListener(fn))")
    local g = begin(rec)
    f:addListener(function() wake(c, g) end)
    local t = timeout and loop():schedule(timeout, function() wake(c, g, "timeout") end)
    local why = park(rec, g)
    if t then t:cancel() end
    if why == "timeout" then return nil, "timeout" end
  end
  if f:isSuccess() then return future_values(f) end
  return nil, f:cause()
end

-- ---- sockets --------------------------------------------------------------------------

local Socket = {
  bufferSize = 65536, receiveLimit = 1048576, -- defaults; a socket's own options shadow them
  -- the state the hot paths do not read, until first set
  cfg = false, timer = false, timerAt = 0, sync = false, lastError = false, rdl = false, rwoke = false,
  wgen = 0, wdl = false, wwoke = false, onActive = false, -- onActive: a handle app's class
  q = false, w = false, r = false, rgen = 0, -- set on first use
  qh = 1, qt = 0, bytes = 0, paused = false, closed = false, eof = false,
  rany = false, -- the coroutine parked in receiveAny's fast path (see receiveAny)
  st = 0, -- see restate
  timeout = false, -- a handle app's class has the app's
  -- a handle's socket is its coroutine's record too (parked; see co._start)
  parked = false, future = false, onError = false, onReturn = false,
}
Socket.__index = Socket
co.Socket = Socket

local MESSAGE_COST = 64 -- what a queued message that is not bytes counts toward bufferSize
local MAIN = {}         -- a waiting side's "coroutine" when the main thread waits (test kit)

local function is_buffer(v) return type(v) == "userdata" and getmetatable(v) == "lupine.Buffer" end

-- An error that reached the socket's handler, queued in order with the data.
local ErrorItem = {}
ErrorItem.__index = ErrorItem

local function size_of(v)
  local t = type(v)
  if t == "string" then return #v end
  if is_buffer(v) then return v:readableBytes() end
  return MESSAGE_COST
end

local function err_text(e)
  if type(e) == "string" then return (e:gsub("\n.*", "")) end
  return describe(e)
end

local restate
-- The socket a context (the handler's place in a pipeline) belongs to is
-- kept in the context's own table, as the private field _socket (set with
-- rawset: context tables are read-only to handlers). Its table has room for
-- it, and it goes with the context: no map per state to look it up in.
local adding -- the socket whose handler is being added

-- Resume the coroutine (or the main thread's run) waiting on side "r" or "w".
local function wake_side(self, side, why)
  if side == "r" then
    local c = self.rany -- receiveAny's fast path: the parked coroutine
    if c then
      local rec = recs[c]
      if rec and rec.parked then
        rec.parked = false
        return settle(c, rec, resume(c, nil, why))
      end
      return
    end
  end
  local c = self[side]
  if not c then return end
  if c == MAIN then
    self[side .. "woke"] = why or true
    return
  end
  wake(c, self[side .. "gen"], why)
end

-- st: 0 while nothing unusual holds (open, input not ended, reading not
-- paused, no waiter parked the general way): the fast paths look at st alone.
function restate(s)
  s.st = (s.closed or s.eof or s.paused or s.w or s.r) and 1 or 0
end

local function set_auto_read(self, on)
  local cfg = self.cfg
  if not cfg then
    cfg = self.ch:config()
    self.cfg = cfg
  end
  cfg:setAutoRead(on)
end

local function resume_reading(self)
  if self.paused and not self.closed then
    self.paused = false
    restate(self)
    set_auto_read(self, true)
  end
end

local function mark_closed(self)
  if self.closed then return end
  self.closed, self.eof, self.st = true, true, 1
  local t = self.timer
  if t then
    self.timer = false
    t:cancel()
  end
  wake_side(self, "r", "closed")
  wake_side(self, "w", "closed")
end

-- The handler at the tail, shared by every socket (methods as plain fields,
-- which the dispatch finds without a metatable lookup).
local Tail = { name = "co.socket" }

function Tail.handlerAdded(_, ctx)
  local s = adding
  if s then rawset(ctx, "_socket", s) end
end

function Tail.channelActive(_, ctx)
  local s = ctx._socket
  if s and s.onActive and s.parked == nil then s:onActive() end -- not started yet
  ctx:fireChannelActive()
end

function Tail.channelRead(_, ctx, msg)
  local s = ctx._socket
  if not s then return end
  -- A receiveAny parked on an empty queue (s.rany is its coroutine while it
  -- is parked there): hand the message over. (Bytes mostly do not come
  -- here: l_co.c resumes the coroutine with them.)
  local c = s.rany
  local rec = c and recs[c]
  if rec and rec.parked and s.qt == 0 then
    rec.parked = false
    return settle(c, rec, resume(c, nil, "data", msg))
  end
  local t = s.qt + 1
  s.qt = t
  local q = s.q
  if not q then
    q = {}
    s.q = q
  end
  q[t] = msg
  local n = s.bytes + size_of(msg)
  s.bytes = n
  if s.r or s.rany then
    wake_side(s, "r")
  elseif n >= s.bufferSize and not s.paused and not s.closed then
    s.paused, s.st = true, 1 -- nobody is receiving and the buffer is full: let TCP stop the peer
    set_auto_read(s, false)
  end
end

function Tail.userEventTriggered(_, ctx, evt)
  local s = ctx._socket
  if not s then return end
  if type(evt) == "table" and evt.kind == "inputShutdown" then
    s.eof, s.st = true, 1
    wake_side(s, "r")
  end
end

function Tail.channelWritabilityChanged(_, ctx)
  local s = ctx._socket
  if s and s.w and ctx.channel:isWritable() then wake_side(s, "w") end
end

function Tail.exceptionCaught(_, ctx, err)
  local s = ctx._socket
  if not s then return end
  s.lastError = s.lastError or err
  local t = s.qt + 1
  s.qt = t
  local q = s.q
  if not q then
    q = {}
    s.q = q
  end
  q[t] = setmetatable({ err = err }, ErrorItem)
  s.bytes = s.bytes + MESSAGE_COST
  wake_side(s, "r")
end

function Tail.channelInactive(_, ctx)
  local s = ctx._socket
  if s then mark_closed(s) end
end

co._Tail = Tail

-- What l_co.c's fast path does not finish itself after resuming a coroutine
-- (it ended, raised, or waits elsewhere) it leaves to settle.
local park_any = core._coParkAny
core._coSetup(Tail, function(c, ok, ...)
  local rec = recs[c]
  if rec then return settle(c, rec, ok, ...) end
end)

local function opt_seconds(v, what, level)
  if v == nil or v == false then return nil end
  check_seconds(v, what, level + 1)
  if v == huge then return nil end
  return v
end

local function opt_size(v, def, what, level)
  if v == nil then return def end
  if math.type(v) ~= "integer" or v < 1 then
    error(("%s: expected a number of bytes >= 1, got %s"):format(what, tostring(v)), level + 1)
  end
  return v
end

local socket_fields = { timeout = true, bufferSize = true, receiveLimit = true, connectTimeout = true,
  options = true, init = true }

-- A socket (not yet on a channel). opts: timeout (seconds for each blocking
-- call; default co.defaultTimeout; false: none), bufferSize (bytes read ahead
-- while nobody receives, 64 KiB), receiveLimit (the most one receive gathers,
-- 1 MiB).
function co._newSocket(opts, what, level)
  opts = opts or {}
  if type(opts) ~= "table" then error(what .. ": options must be a table", level + 1) end
  for k in pairs(opts) do
    if not socket_fields[k] then
      error(("%s: unknown option '%s' (known: timeout, connectTimeout, bufferSize, receiveLimit, options, init)")
        :format(what, tostring(k)), level + 1)
    end
  end
  local timeout = co.defaultTimeout
  if opts.timeout ~= nil then timeout = opt_seconds(opts.timeout, what .. ": timeout", level + 1) or false end
  local s = setmetatable({ ch = false, rany = false, timeout = timeout, st = 0, qt = 0 }, Socket)
  if opts.bufferSize ~= nil then s.bufferSize = opt_size(opts.bufferSize, 65536, what .. ": bufferSize", level + 1) end
  if opts.receiveLimit ~= nil then
    s.receiveLimit = opt_size(opts.receiveLimit, 1048576, what .. ": receiveLimit", level + 1)
  end
  return s
end

-- Put the socket's handler at the end of ch's pipeline (its context gets
-- l_co.c's operations: Buffers arrive as strings).
local ch_write_and_flush -- lupine.Channel's method, without its __index
local co_send = core._coSend

function co._attach(s, ch)
  s.ch = ch
  if not ch_write_and_flush then ch_write_and_flush = ch.writeAndFlush end
  adding = s
  local p = ch.pipeline
  local ok, err = pcall(p.addLast, p, "co.socket", Tail)
  adding = nil
  if not ok then error(err, 0) end
  if not ch:isOpen() then mark_closed(s) end
  return s
end

-- ---- waiting --------------------------------------------------------------------------

local function on_timer(self)
  self.timer = false
  local now = loop():now()
  local next_at = huge
  for _, side in ipairs { "r", "w" } do
    if self[side] or (side == "r" and self.rany) then
      local d = self[side .. "dl"]
      if d then
        if now >= d - 0.0005 then wake_side(self, side, "timeout")
        else next_at = min(next_at, d) end
      end
    end
  end
  if next_at < huge and not self.closed then
    self.timerAt = next_at
    self.timer = loop():schedule(max(0, next_at - now), function() on_timer(self) end)
  end
end

-- One timer per socket, started lazily: a wait that ends before its deadline
-- leaves it running, and the next wait reuses it (no timer per call).
local function arm(self, deadline)
  local t = self.timer
  if t then
    if self.timerAt <= deadline then return end
    t:cancel()
  end
  self.timerAt = deadline
  self.timer = loop():schedule(max(0, deadline - loop():now()), function() on_timer(self) end)
end

-- Park the caller until side ("r" or "w") is woken or the deadline passes.
-- Returns nil (woken: look again), "timeout" or "closed". Outside a lupine
-- coroutine only a test kit socket waits, by running the loop.
local function wait(self, side, deadline, what)
  local c, main = running()
  local rec = not main and recs[c]
  if not rec then
    if not self.sync then error(outside(what), 4) end
    local now = loop():now()
    if deadline and now >= deadline then return "timeout" end
    self[side] = MAIN
    self.st = 1
    self[side .. "woke"] = false
    local key = side .. "woke"
    local ok, err = pcall(loop().runUntil, loop(), function() return self[key] end, deadline and deadline - now or 1e9)
    self[side] = false
    restate(self)
    local why = self[key]
    if ok then return why ~= true and why or nil end
    if why then return why ~= true and why or nil end
    if type(err) == "string" and err:find("^runUntil: timed out") then return "timeout" end
    error(err, 0)
  end
  if deadline then
    self[side .. "dl"] = deadline
    arm(self, deadline)
  else
    self[side .. "dl"] = false
  end
  local g = begin(rec)
  self[side], self[side .. "gen"] = c, g
  self.st = 1
  local why = park(rec, g)
  self[side] = false
  restate(self)
  return why
end

local function deadline_of(self, timeout)
  local t = timeout
  if t == nil then t = self.timeout end
  if not t then return nil end
  return loop():now() + t
end

local function busy(self, side, what)
  if self[side] or (side == "r" and self.rany) then
    error(("%s: another coroutine is already %s on this socket (one reader and one writer at a time)")
      :format(what, side == "r" and "receiving" or "sending"), 3)
  end
end

-- ---- the receive queue ---------------------------------------------------------------

local function pop(self)
  local h = self.qh
  local v = self.q[h]
  self.q[h] = nil
  if h == self.qt then self.qh, self.qt = 1, 0 else self.qh = h + 1 end
  return v
end

local function consumed(self, n)
  local b = self.bytes - n
  self.bytes = b
  if self.paused and b < self.bufferSize then resume_reading(self) end
end

-- The bytes at the front of the queue as one string (merging consecutive
-- strings and Buffers into the first slot), or nil when the front is not bytes.
local function front_bytes(self)
  local q, h, t = self.q, self.qh, self.qt
  if h > t then return "" end
  local v = q[h]
  if is_buffer(v) then
    local s = v:readString()
    v:release()
    v = s
    q[h] = v
  end
  if type(v) ~= "string" then return nil end
  if h == t then return v end
  local nxt = q[h + 1]
  if type(nxt) ~= "string" and not is_buffer(nxt) then return v end
  local parts, n, i = { v }, 1, h + 1
  while i <= t do
    local w = q[i]
    if is_buffer(w) then
      local s = w:readString()
      w:release()
      w = s
    elseif type(w) ~= "string" then break end
    n = n + 1
    parts[n] = w
    q[i] = nil
    i = i + 1
  end
  local s = table.concat(parts)
  -- close the gap: move what follows down behind the merged slot
  local j = h + 1
  while i <= t do
    q[j] = q[i]
    q[i] = nil
    i, j = i + 1, j + 1
  end
  self.qt = j - 1
  q[h] = s
  return s
end

-- Take the first n bytes of s (the front slot).
local function take(self, s, n)
  if n == 0 then return "" end
  if n >= #s then pop(self)
  else self.q[self.qh] = s:sub(n + 1) end
  consumed(self, n)
  return n == #s and s or s:sub(1, n)
end

-- What stops a byte reader at the front of the queue: an error or a message.
local function blocker(self)
  local v = self.q[self.qh]
  if getmetatable(v) == ErrorItem then
    pop(self)
    consumed(self, MESSAGE_COST)
    return err_text(v.err)
  end
  return ("NotBytes: the next message is a %s (receiveMessage() takes it)"):format(type(v))
end

-- The loop shared by every byte reader: try(s) on the front bytes returns the
-- result and how many bytes it takes, or nil (and whether the limit is
-- reached); else wait for more. Returns the result, or nil, err, partial.
local function read_bytes(self, what, try, timeout)
  busy(self, "r", what)
  local deadline
  while true do
    local s = front_bytes(self)
    if s then
      local v, n = try(s)
      if v then
        local taken = take(self, s, n)
        if v == true then return taken end
        return v
      end
      if n == "limit" then
        local part = take(self, s, #s)
        return nil, ("TooLongFrame: %s: nothing within receiveLimit (%d bytes)"):format(what, self.receiveLimit), part
      end
    end
    if s == nil or self.qh < self.qt then -- the bytes end at an error or a message
      return nil, blocker(self), s or ""
    end
    if self.eof then return nil, "closed", take(self, s, #s) end
    if not deadline then deadline = deadline_of(self, timeout) or false end
    resume_reading(self)
    local why = wait(self, "r", deadline or nil, what)
    if why == "timeout" then return nil, "timeout", front_bytes(self) or "" end
  end
end

co._readBytes = read_bytes
-- What is queued as bytes at the front, without taking it.
function co._buffered(self) return front_bytes(self) or "" end

-- receive(n) | receive("*l") | receive("*a") [, timeout]: OpenResty's
-- receive: n bytes, a line without its "\n" (a "\r" before it dropped too), or
-- everything until the peer closes. The default is "*l".
function Socket:receive(pattern, timeout)
  if pattern == nil then pattern = "*l" end
  if math.type(pattern) == "integer" or (type(pattern) == "number" and pattern == math.floor(pattern)) then
    local n = math.tointeger(pattern)
    if n < 0 then error("receive: expected a size >= 0", 2) end
    if n == 0 then return "" end
    if n > self.receiveLimit then
      return nil, ("TooLongFrame: receive(%d): more than receiveLimit (%d bytes)"):format(n, self.receiveLimit), ""
    end
    return read_bytes(self, "receive", function(s)
      if #s >= n then return true, n end
    end, timeout)
  end
  if pattern == "*l" or pattern == "l" then return self:receiveLine(timeout) end
  if pattern == "*a" or pattern == "a" then return self:receiveAll(timeout) end
  error(("receive: expected a size, \"*l\" or \"*a\", got %s"):format(tostring(pattern)), 2)
end

-- receiveUntil(delim [, timeout]): the bytes before delim (plain text); delim
-- is taken too. Fails with TooLongFrame when receiveLimit bytes arrived
-- without it.
function Socket:receiveUntil(delim, timeout)
  if type(delim) ~= "string" or delim == "" then error("receiveUntil: expected a non-empty delimiter string", 2) end
  local limit = self.receiveLimit
  return read_bytes(self, "receiveUntil", function(s)
    local i, j = s:find(delim, 1, true)
    if i and i - 1 <= limit then return s:sub(1, i - 1), j end
    if #s >= limit + #delim then return nil, "limit" end
  end, timeout)
end

local function line_of(s, limit)
  local i = s:find("\n", 1, true)
  if i and i - 1 <= limit then
    local e = i - 1
    if e > 0 and s:byte(e) == 13 then e = e - 1 end
    return s:sub(1, e), i
  end
  if #s > limit then return nil, "limit" end
end

-- receiveLine([timeout]): one line, without its "\n" or "\r\n".
function Socket:receiveLine(timeout)
  local limit = self.receiveLimit
  return read_bytes(self, "receiveLine", function(s) return line_of(s, limit) end, timeout)
end

local function arm_read(self, t)
  if not t then return end -- timeout false: none
  local d = loop():now() + t
  self.rdl = d
  arm(self, d)
end

-- receiveAny's general case: bytes queued, a message or an error in the way,
-- the end of input, or not a lupine coroutine (the test kit's waits).
local function any_slow(self, maxn, timeout)
  if self.r or self.rany then busy(self, "r", "receiveAny") end
  if self.qt > 0 then -- one chunk waiting: take it
    local s = self.q[self.qh]
    if type(s) == "string" and #s <= maxn then
      pop(self)
      consumed(self, #s)
      return s
    end
  end
  return read_bytes(self, "receiveAny", function(str)
    local n = #str
    if n > 0 then return true, min(n, maxn) end
  end, timeout)
end

-- After the fast path's wait: what it was given is not a whole string (data:
-- bytes longer than maxn), or it was woken for another reason (closed, an
-- error queued, the timeout, a message that is not bytes).
local function any_after(self, maxn, data, why, msg, timeout)
  if data then why, msg = "data", data end
  if why == "data" then
    if type(msg) == "string" then -- longer than maxn: keep the rest
      if not self.q then self.q = {} end
      self.qh, self.qt, self.q[1] = 1, 1, msg:sub(maxn + 1)
      self.bytes = self.bytes + #msg - maxn
      return msg:sub(1, maxn)
    end
    if not self.q then self.q = {} end
    self.qh, self.qt, self.q[1] = 1, 1, msg -- not bytes: the general path
    self.bytes = self.bytes + size_of(msg)
  elseif why == "timeout" then
    return nil, "timeout", ""
  end
  return any_slow(self, maxn, timeout)
end

-- receiveAny(max [, timeout]): whatever bytes are there (at most max), as
-- soon as any are. The fast path parks on the empty queue, and the read
-- hands the bytes straight over.
local any_ok = 65536 -- the last size checked (a size is checked once, not per call)
function Socket:receiveAny(maxn, timeout)
  if maxn ~= any_ok then -- checked inline: a deeper call would keep one more CallInfo in every parked coroutine
    if math_type(maxn) ~= "integer" or maxn < 1 then error("receiveAny: expected a maximum size >= 1", 2) end
    any_ok = maxn
  end
  if self.st == 0 and self.qt == 0 and not self.rany then
    local c = running()
    local rec = recs[c]
    if rec then
      if timeout ~= nil or self.timeout then arm_read(self, timeout or self.timeout) end
      -- Parked in core._coParkAny: the read resumes it with the bytes as a
      -- string (l_co.c), co.lua's wakers with nil, why (and a message).
      rec.parked = true -- not a wait number: wake(c, g) never matches it; s.rany's wakers take it
      self.rany = c
      local data, why, msg = park_any(self.ch)
      self.rany, rec.parked = false, false
      if data and #data <= maxn then return data end
      return any_after(self, maxn, data, why, msg, timeout)
    end
  end
  return any_slow(self, maxn, timeout)
end

-- receiveAll([timeout]): everything until the peer closes or shuts its output down.
function Socket:receiveAll(timeout)
  local limit = self.receiveLimit
  local v, err, part = read_bytes(self, "receiveAll", function(s)
    if self.eof and self.qh >= self.qt then return true, #s end
    if #s > limit then return nil, "limit" end
  end, timeout)
  return v, err, part
end

-- receiveMessage([timeout]): the next thing the pipeline produced, whatever it
-- is: a frame (a Buffer, or a string with asString), a decoded object, or
-- bytes as they were read; an error queued there comes back as nil, err.
function Socket:receiveMessage(timeout)
  busy(self, "r", "receiveMessage")
  local deadline
  while true do
    if self.qh <= self.qt then
      local v = pop(self)
      if getmetatable(v) == ErrorItem then
        consumed(self, MESSAGE_COST)
        return nil, err_text(v.err)
      end
      consumed(self, size_of(v))
      return v
    end
    if self.eof then return nil, "closed" end
    if not deadline then deadline = deadline_of(self, timeout) or false end
    resume_reading(self)
    local why = wait(self, "r", deadline or nil, "receiveMessage")
    if why == "timeout" then return nil, "timeout" end
  end
end

-- send(data [, timeout]): write and flush data (a string, a Buffer, or any
-- message an encoder in the pipeline takes). While the channel is over its
-- high water mark the caller waits (back-pressure). Returns the bytes queued
-- (1 for a message that is not bytes), or nil, "closed" / "timeout" / the
-- error that failed an earlier write.
function Socket:send(data, timeout)
  if self.st ~= 0 then
    if self.w then busy(self, "w", "send") end
    if self.closed then return nil, "closed" end
  end
  if data == nil then error("send: expected data to send", 2) end
  local ch = self.ch
  if not ch then return nil, "closed" end
  local n = co_send(ch, data)
  if n then return n end
  -- over the high water mark: nothing written yet
  local deadline = deadline_of(self, timeout) or nil
  repeat
    local why = wait(self, "w", deadline, "send")
    if self.closed then return nil, "closed" end
    if why == "timeout" then return nil, "timeout" end
  until ch:isWritable()
  ch_write_and_flush(ch, data)
  if type(data) == "string" then return #data end
  return 1
end

-- shutdownOutput(): send a FIN after what was written; receiving goes on.
function Socket:shutdownOutput()
  if self.closed or not self.ch then return nil, "closed" end
  self.ch:shutdownOutput()
  return 1
end

-- close(): close the channel; the socket's waits end with "closed".
function Socket:close()
  local ch = self.ch
  local was = self.closed
  mark_closed(self)
  if ch and ch:isOpen() then ch:close() end
  if was then return nil, "closed" end
  return 1
end

Socket.__close = function(self) self:close() end

-- settimeout(s): seconds for each later blocking call (nil or false: none).
function Socket:settimeout(s)
  self.timeout = opt_seconds(s, "settimeout", 2) or false
  return 1
end

-- settimeouts(connect, send, read): OpenResty's, in seconds; one timeout here
-- covers sending and receiving: the larger of send and read.
function Socket:settimeouts(_, send, read)
  local s, r = opt_seconds(send, "settimeouts", 2), opt_seconds(read, "settimeouts", 2)
  if s == nil or r == nil then self.timeout = false else self.timeout = max(s, r) end
  return 1
end

function Socket:getpeername()
  local ch = self.ch
  if not ch or self.closed then return nil, "closed" end
  return ch.remoteHost, ch.remotePort
end

function Socket:isOpen() return not self.closed and self.ch and self.ch:isOpen() or false end

-- Bytes (and messages, counted as 64) queued and not yet received.
function Socket:bufferedBytes() return self.bytes end

function Socket:__tostring()
  return ("lupine.Socket(%s)"):format(self.ch and tostring(self.ch) or "unconnected")
end

co.tcp = {}

-- lupine.tcp.connect(host, port [, opts]) inside a coroutine: a connected
-- socket, or nil and why ("ECONNREFUSED: Connection refused (connect to
-- 127.0.0.1:1)", "ConnectTimeout: ..."). opts: timeout, connectTimeout
-- (default: timeout), bufferSize, receiveLimit (see the socket), options
-- (channel options), init(ch) (handlers before the socket: codecs).
function co.tcp.connect(host, port, opts)
  current("lupine.tcp.connect", " (in a handler: lupine.connect{...} and its future)")
  local s = co._newSocket(opts, "lupine.tcp.connect", 2)
  opts = opts or {}
  local ct = opts.connectTimeout
  if ct == nil then ct = s.timeout or 0 end
  local f = core.connect {
    host = host, port = port, timeout = ct, options = opts.options,
    init = function(ch)
      if opts.init then opts.init(ch) end
      co._attach(s, ch)
    end,
  }
  local ok, err = co.await(f)
  if not ok then return nil, err_text(err) end
  return s
end

-- ---- server side: handle(sock), a coroutine per connection ------------------------------
-- The socket is its handle coroutine's record (no table more per connection):
-- its class, HandleSocket, gives the record's hooks.

local function handle_failed(s, text)
  local ch = s.ch
  core._logChannel("error", ch and ch.id or 0, "handle raised (closing the connection): " .. text)
  s:close()
end

-- The handle returned: close the connection once what it wrote is out.
local function handle_returned(s)
  local ch = s.ch
  if s.closed or not ch or not ch:isOpen() then
    mark_closed(s)
    return
  end
  if ch:pendingBytes() == 0 then
    s:close()
    return
  end
  ch:writeAndFlush("", function() s:close() end)
end

local HandleSocket = { onError = handle_failed, onReturn = handle_returned }

-- init(ch) for an app with handle: the app's init first (it may add codecs),
-- then the socket at the end of the pipeline; handle(sock) starts as the
-- channel becomes active.
function co.handleInit(app)
  local init, handle = app.init, app.handle
  if type(handle) ~= "function" then error("lupine: the app's handle must be a function(sock)", 3) end
  if init ~= nil and type(init) ~= "function" then error("lupine: the app's init must be a function(ch)", 3) end
  local sopts = app.socket
  local proto = co._newSocket(sopts, "lupine: the app's socket options", 3) -- checked now, not per connection
  local function start(s) co._start(handle, s, s) end
  -- The app's socket class: handle starts when the channel becomes active
  -- (s.parked is set from then on).
  -- Flat (a copy of Socket's and HandleSocket's fields): a field a socket
  -- lacks is found in one lookup, not a chain of them.
  local AppSocket = {}
  for k, v in pairs(Socket) do AppSocket[k] = v end
  for k, v in pairs(HandleSocket) do AppSocket[k] = v end
  AppSocket.onActive = start
  AppSocket.__index = AppSocket
  -- The app's socket options are its class's fields: a socket's own table
  -- holds only what changes per connection. Memory first: an idle handle
  -- connection's socket holds four fields (a hash part of 96 bytes): ch,
  -- rany, st and parked (nil until handle starts: co._start sets it); qt
  -- and the rest, read less or not at all per message, cost an __index
  -- lookup each until set.
  AppSocket.timeout, AppSocket.bufferSize, AppSocket.receiveLimit = proto.timeout, proto.bufferSize, proto.receiveLimit
  AppSocket.parked = nil
  return function(ch)
    if init then init(ch) end
    local s = setmetatable({ ch = false, rany = false, st = 0 }, AppSocket)
    co._attach(s, ch)
    if ch:isActive() and s.parked == nil then start(s) end
  end
end

return co
