-- lupine.group: ChannelGroup, a set of open channels of one loop that can be
-- written to, flushed or closed at once (Netty's ChannelGroup).
--
--   local room = lupine.channelGroup("room")
--   room:add(ch)                                  -- leaves by itself when ch closes
--   room:writeAndFlush("hi\n", function(c) return c ~= ch end):addListener(...)
--
-- Rules it keeps:
-- - Members are open channels of the loop the group was made on (this Lua
--   state's loop). A closed channel is never counted, iterated or written to:
--   its closeFuture removes it, and every call drops closed channels it finds
--   first (the closeFuture's listener runs a moment after the close).
-- - Channels are kept by id, not by their Lua box: a channel's box may be
--   replaced after it closed, its id never changes.
-- - A Buffer given to write is handed off to the group, as to a channel:
--   every member but the last gets a copy, the last gets the buffer itself
--   (with no member it is released). Strings are written as they are (long
--   strings are not copied per channel). Other values go to each pipeline as
--   the same Lua value: an encoder must not change them.
-- - write, writeAndFlush and close return one lupine.Future that completes
--   when every member's operation has; it fails when any failed, with a
--   lupine.ChannelGroupFailure: `failures` lists { channel = ch, cause = err }.
--   flush has no future (nor has a channel's flush): it returns the group.
-- - A failed write is never lost: besides the group's future, it reaches the
--   member's own exceptionCaught (fired from its pipeline's head), as a
--   write of its own that nobody listened to would; the group's future may be
--   dropped unread, as a broadcast's often is. A member that closed meanwhile
--   is not told (its writes fail with ClosedChannel as a matter of course).
local core = require "lupine.core"

local group = {}

local Group = { __name = "lupine.ChannelGroup" }
Group.__index = Group

local Failure = { __name = "lupine.ChannelGroupFailure" }
Failure.__index = Failure
function Failure:__tostring() return self.message end

local function is_channel(v) return getmetatable(v) == "lupine.Channel" end
local function is_buffer(v) return getmetatable(v) == "lupine.Buffer" end

local function check_self(self, what)
  if getmetatable(self) ~= Group then
    error(("lupine.ChannelGroup:%s: call it as group:%s(...)"):format(what, what), 3)
  end
end

local function check_channel(self, ch, what)
  check_self(self, what)
  if not is_channel(ch) then
    error(("lupine.ChannelGroup:%s: expected a lupine.Channel, got %s"):format(what, type(ch)), 3)
  end
end

-- lupine.channelGroup([name]): an empty group on this state's loop.
function group.new(name)
  if name ~= nil and type(name) ~= "string" then
    error("lupine.channelGroup: the name must be a string", 2)
  end
  return setmetatable({
    name = name or "group",
    _loop = core.loop(),
    _members = {}, -- id -> channel
    _count = 0,
    _watched = {}, -- id -> true once its closeFuture has our listener (until it closes)
  }, Group)
end

local function drop(self, id)
  if self._members[id] == nil then return false end
  self._members[id] = nil
  self._count = self._count - 1
  return true
end

-- Drop members that closed and whose closeFuture has not told us yet.
local function prune(self)
  for id, ch in pairs(self._members) do
    if not ch:isOpen() then drop(self, id) end
  end
end

-- The members as a list in the order of their ids (the order they were made),
-- those that a matcher(ch) accepts when one is given.
local function members(self, matcher, what)
  if matcher ~= nil and type(matcher) ~= "function" then
    error(("lupine.ChannelGroup:%s: the matcher must be a function(ch) -> boolean"):format(what), 3)
  end
  prune(self)
  local list = {}
  for _, ch in pairs(self._members) do
    if matcher == nil or matcher(ch) then list[#list + 1] = ch end
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

-- Add an open channel; true if it was added, false if it was already a member
-- or is closed. A channel of another loop is an error.
function Group:add(ch)
  check_channel(self, ch, "add")
  if ch.executor ~= self._loop then
    error(("lupine.ChannelGroup:add: channel #%d belongs to another loop (worker %d); a group holds the channels of the loop it was made on")
      :format(ch.id, ch.worker), 2)
  end
  local id = ch.id
  if self._members[id] ~= nil or not ch:isOpen() then return false end
  self._members[id] = ch
  self._count = self._count + 1
  if not self._watched[id] then
    self._watched[id] = true
    ch.closeFuture:addListener(function()
      self._watched[id] = nil
      drop(self, id)
    end)
  end
  return true
end

-- Remove a channel; true if it was a member.
function Group:remove(ch)
  check_channel(self, ch, "remove")
  return drop(self, ch.id)
end

function Group:contains(ch)
  check_channel(self, ch, "contains")
  local m = self._members[ch.id]
  if m == nil then return false end
  if m:isOpen() then return true end
  drop(self, ch.id)
  return false
end

function Group:size()
  check_self(self, "size")
  prune(self)
  return self._count
end

Group.__len = Group.size

function Group:isEmpty() return self:size() == 0 end

-- for ch in group:iter() do ... end: the members at the time of the call, in
-- the order they were made; adding or removing while iterating is safe.
function Group:iter(matcher)
  check_self(self, "iter")
  local list, i = members(self, matcher, "iter"), 0
  return function()
    i = i + 1
    return list[i]
  end
end

-- for ch in pairs(group) do ... end: the same as iter().
function Group:__pairs()
  local it = self:iter()
  return function()
    local ch = it()
    if ch ~= nil then return ch, true end
  end, self, nil
end

function Group:__tostring()
  local n = 0
  for _, ch in pairs(self._members) do
    if ch:isOpen() then n = n + 1 end
  end
  return ("lupine.ChannelGroup(%s, %d channel%s)"):format(self.name, n, n == 1 and "" or "s")
end

local function failure(self, op, failures, total)
  table.sort(failures, function(a, b) return a.channel.id < b.channel.id end)
  local parts = {}
  for i = 1, math.min(#failures, 3) do
    parts[i] = ("#%d %s"):format(failures[i].channel.id, tostring(failures[i].cause))
  end
  if #failures > 3 then parts[#parts + 1] = ("and %d more"):format(#failures - 3) end
  return setmetatable({
    kind = "ChannelGroupFailure",
    message = ("ChannelGroupFailure: %s failed on %d of %d channels of group '%s': %s")
      :format(op, #failures, total, self.name, table.concat(parts, "; ")),
    failures = failures,
  }, Failure)
end

-- Start op on every target: start(ch, listener) must arrange for listener(f)
-- to be called with the channel's future. Returns the group's future.
local function each(self, op, targets, start, report)
  local promise = core.promise()
  local pending, failures = #targets, {}
  if pending == 0 then
    promise:setSuccess()
    return promise
  end
  local function done(ch, ok, cause)
    if not ok then
      failures[#failures + 1] = { channel = ch, cause = cause }
      if report and ch:isOpen() then ch.pipeline:fireExceptionCaught(cause) end
    end
    pending = pending - 1
    if pending == 0 then
      if #failures == 0 then promise:setSuccess()
      else promise:setFailure(failure(self, op, failures, #targets)) end
    end
  end
  for _, ch in ipairs(targets) do
    local ok, err = pcall(start, ch, function(f) done(ch, f:isSuccess(), f:cause()) end)
    if not ok then done(ch, false, err) end -- it raised before it could complete
  end
  return promise
end

local function write(self, op, msg, matcher, flush)
  check_self(self, op)
  if msg == nil then error(("lupine.ChannelGroup:%s: nothing to write (nil)"):format(op), 3) end
  local buffer = is_buffer(msg)
  if buffer then msg:readableBytes() end -- raises at once if it was handed off already
  local targets = members(self, matcher, op)
  if buffer and #targets == 0 then msg:release() end
  local method = flush and "writeAndFlush" or "write"
  local n = #targets
  local i = 0
  return each(self, op, targets, function(ch, listener)
    i = i + 1
    local m = msg
    if buffer and i < n then m = msg:copy() end -- the last one takes the buffer itself
    ch[method](ch, m, listener)
  end, true)
end

-- group:write(msg [, matcher]) -> future: write msg to every member (or those
-- matcher(ch) accepts); nothing is flushed.
function Group:write(msg, matcher) return write(self, "write", msg, matcher, false) end

-- group:writeAndFlush(msg [, matcher]) -> future.
function Group:writeAndFlush(msg, matcher) return write(self, "writeAndFlush", msg, matcher, true) end

-- group:flush([matcher]) -> the group.
function Group:flush(matcher)
  check_self(self, "flush")
  for _, ch in ipairs(members(self, matcher, "flush")) do ch:flush() end
  return self
end

-- group:close([matcher]) -> future: close every member; each leaves the group
-- as it closes.
function Group:close(matcher)
  check_self(self, "close")
  return each(self, "close", members(self, matcher, "close"), function(ch, listener)
    ch:close():addListener(listener)
  end)
end

return group
