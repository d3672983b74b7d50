-- examples/co_memcached.lua: a subset of memcached's text protocol, written as
-- a coroutine per connection behind a native line decoder: get (several keys),
-- set, add, replace, delete, incr, decr, touch (with exptime), flush_all, version, quit.
--   lua5.4 examples/co_memcached.lua              serve inline on 11211 (PORT=...)
--   lupine -w 1 examples/co_memcached.lua         with the launcher: one worker,
--                                                 since the store is a Lua table
--   memccp --servers=127.0.0.1:11211 FILE; memccat --servers=127.0.0.1:11211 FILE
--
-- The decoder (lineFrame, delimiters kept) hands the coroutine whole lines;
-- a data block (set) is the next lines joined until it has its length and
-- "\r\n", so a value may hold any bytes, newlines included.
local lupine = require "lupine"
local codec = lupine.codec

local MAX_ITEM = 1024 * 1024      -- the largest value (memcached's default item size)
local MAX_RELATIVE = 60 * 60 * 24 * 30 -- exptime up to 30 days is relative, beyond: a Unix time

-- key -> { value, flags, expires (Unix time, 0: never) }. One per Lua state.
local store = {}

local function now() return os.time() end

local function expires_at(exptime)
  if exptime == 0 then return 0 end
  if exptime < 0 then return -1 end -- already expired
  if exptime > MAX_RELATIVE then return exptime end
  return now() + exptime
end

local function lookup(key)
  local e = store[key]
  if e and e.expires ~= 0 and e.expires <= now() then
    store[key] = nil
    return nil
  end
  return e
end

local function is_key(k) return k ~= nil and #k <= 250 and not k:find("[%c ]") end

-- The data block of a set: n bytes and "\r\n", from the next line frames.
local function read_block(sock, n)
  local parts, have = {}, 0
  while have < n + 2 do
    local frame, err = sock:receiveMessage()
    if not frame then return nil, err end
    parts[#parts + 1] = frame
    have = have + #frame
  end
  local data = table.concat(parts)
  if #data ~= n + 2 or data:sub(-2) ~= "\r\n" then return nil, "bad data chunk" end
  return data:sub(1, n)
end

local commands = {}

function commands.get(sock, args)
  if #args == 0 then return "ERROR\r\n" end
  local out = {}
  for _, key in ipairs(args) do
    local e = lookup(key)
    if e then out[#out + 1] = ("VALUE %s %d %d\r\n%s\r\n"):format(key, e.flags, #e.value, e.value) end
  end
  out[#out + 1] = "END\r\n"
  return table.concat(out)
end

-- set, add (only when absent), replace (only when present)
local function storage(when)
  return function(sock, args)
    local key, flags, exptime, bytes = args[1], math.tointeger(tonumber(args[2])), math.tointeger(tonumber(args[3])),
      math.tointeger(tonumber(args[4]))
    local noreply = args[5] == "noreply"
    if not (is_key(key) and flags and exptime and bytes and bytes >= 0) then
      return "CLIENT_ERROR bad command line format\r\n"
    end
    if bytes > MAX_ITEM then
      read_block(sock, bytes) -- swallowed, as memcached does
      return "SERVER_ERROR object too large for cache\r\n"
    end
    local value, err = read_block(sock, bytes)
    if not value then
      if err == "bad data chunk" then return "CLIENT_ERROR bad data chunk\r\n" end
      return nil, err
    end
    local stored = when == nil or (when == "absent") == (lookup(key) == nil)
    if stored then store[key] = { value = value, flags = flags, expires = expires_at(exptime) } end
    if noreply then return "" end
    return stored and "STORED\r\n" or "NOT_STORED\r\n"
  end
end
commands.set = storage(nil)
commands.add = storage("absent")
commands.replace = storage("present")

function commands.delete(_, args)
  local key = args[1]
  if not is_key(key) then return "CLIENT_ERROR bad command line format\r\n" end
  local found = lookup(key) ~= nil
  store[key] = nil
  if args[#args] == "noreply" then return "" end
  return found and "DELETED\r\n" or "NOT_FOUND\r\n"
end

local function arith(sign)
  return function(_, args)
    local key, delta = args[1], args[2] and args[2]:match("^%d+$") and math.tointeger(tonumber(args[2]))
    if not (is_key(key) and delta) then return "CLIENT_ERROR invalid numeric delta argument\r\n" end
    local e = lookup(key)
    local reply
    if not e then
      reply = "NOT_FOUND\r\n"
    else
      local v = e.value:match("^%d+$") and math.tointeger(tonumber(e.value))
      if not v then return "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n" end
      v = v + sign * delta
      if v < 0 then v = 0 end -- decr stops at 0, as memcached's does
      e.value = tostring(v)
      reply = e.value .. "\r\n"
    end
    if args[3] == "noreply" then return "" end
    return reply
  end
end
commands.incr = arith(1)
commands.decr = arith(-1)

function commands.touch(_, args)
  local key, exptime = args[1], math.tointeger(tonumber(args[2]))
  if not (is_key(key) and exptime) then return "CLIENT_ERROR bad command line format\r\n" end
  local e = lookup(key)
  if e then e.expires = expires_at(exptime) end
  if args[3] == "noreply" then return "" end
  return e and "TOUCHED\r\n" or "NOT_FOUND\r\n"
end

function commands.flush_all(_, args)
  store = {}
  if args[#args] == "noreply" then return "" end
  return "OK\r\n"
end

function commands.version() return "VERSION 1.6.0-lupine\r\n" end

local function serve(sock)
  while true do
    local line, err = sock:receiveMessage()
    if not line then
      if err == "closed" then return end
      -- a line over the decoder's limit: the decoder skipped it
      if err:find("^TooLongFrame") then
        if not sock:send("CLIENT_ERROR line too long\r\n") then return end
      else
        return
      end
    else
      local words = {}
      for w in line:gmatch("[^ \r\n]+") do words[#words + 1] = w end
      local name = table.remove(words, 1)
      if name == "quit" then return end
      local command = name and commands[name]
      local reply, rerr
      if command then reply, rerr = command(sock, words)
      else reply = "ERROR\r\n" end
      if not reply then return end -- the connection closed inside a data block
      if reply ~= "" and not sock:send(reply) then return end
      local _ = rerr
    end
  end
end

return lupine.app {
  name = "co_memcached",
  port = tonumber(os.getenv("PORT")) or 11211,
  workers = 1, -- one store: see the header
  socket = { timeout = false }, -- clients may stay idle
  init = function(ch)
    -- Lines keep their "\r\n" (a data block is rebuilt from them); one line
    -- may be as long as a value.
    ch.pipeline:addLast("lines", codec.lineFrame { maxLength = MAX_ITEM + 2, stripDelimiter = false, asString = true })
  end,
  handle = serve,
}
