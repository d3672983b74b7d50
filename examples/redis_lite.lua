-- examples/redis_lite.lua: a Redis-compatible server on lupine.shared.
--   lupine -w 4 -p 6380 examples/redis_lite.lua    any number of workers, one keyspace
--   redis-cli -p 6380                              then PING, SET k v, GET k, ...
--   REDIS_LITE_MEMORY=256m                         the keyspace's budget (default 64m)
--
-- Every worker serves connections with its own Lua state; the keys live in
-- one shared dictionary (lupine.shared.redis: LRU eviction past its budget,
-- expiry in milliseconds), and PUBLISH reaches subscribers on every worker
-- through lupine.broadcast. The native RESP codec (lupine.redis.codec)
-- decodes each request, multibulk or inline (what telnet users type), with
-- Redis's limits; a violation is answered "-ERR Protocol error: ..." and the
-- connection closed, as Redis does.
--
-- The hot path is native: given the dictionary (store = db), the codec
-- answers PING, ECHO, GET, SET k v, INCR, DECR, INCRBY and DECRBY itself,
-- exactly as the functions below would, and passes on the rest (and SET
-- with options, a float value...) to the handler, in order. The handler
-- switches that off on a connection whose state changes the answers
-- (SUBSCRIBE in RESP2, QUIT): redis.nativeCommands(ch, false).
--
-- Commands: PING ECHO SET(EX PX NX XX GET) GET GETDEL DEL EXISTS INCR INCRBY
-- DECR DECRBY MGET MSET EXPIRE PEXPIRE TTL PTTL PERSIST DBSIZE FLUSHALL
-- FLUSHDB KEYS SCAN LPUSH RPUSH LPOP RPOP LLEN LRANGE SUBSCRIBE UNSUBSCRIBE
-- PUBLISH SELECT CLIENT(SETNAME GETNAME ID SETINFO) HELLO INFO COMMAND
-- CONFIG(GET) QUIT. Not Redis: one database, no persistence, no
-- transactions; SET ... GET and the multi-key commands are atomic per key only.
local lupine = require "lupine"
local redis = require "lupine.redis"

local MEMORY = os.getenv("REDIS_LITE_MEMORY") or "64m"
local db = lupine.shared.declare("redis", MEMORY) -- the app's `shared` field declares it too
local started = os.time()
local next_id = lupine.shared.declare("redis_lite_ids", "16k")

local FLUSH_AT = 16 * 1024 -- reply bytes gathered before they are written within one read
local OK, PONG, NULL, EMPTY = "+OK\r\n", "+PONG\r\n", "$-1\r\n", "*0\r\n"
local WRONGTYPE = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
local NOTINT = "-ERR value is not an integer or out of range\r\n"
local SYNTAX = "-ERR syntax error\r\n"
local OOM = "-OOM command not allowed when used memory > 'maxmemory'.\r\n"

local function bulk(s)
  if s == nil then return NULL end
  if type(s) ~= "string" then s = tostring(s) end
  return "$" .. #s .. "\r\n" .. s .. "\r\n"
end
local function int(n) return ":" .. n .. "\r\n" end
local function err(msg) return "-" .. msg .. "\r\n" end
local function arity(name) return err("ERR wrong number of arguments for '" .. name:lower() .. "' command") end

-- A decimal integer as Redis accepts one (no spaces, no leading '+').
local function toint(s)
  if type(s) ~= "string" or not s:match("^%-?%d+$") or #s > 20 then return nil end
  local n = math.tointeger(tonumber(s))
  if n == nil or tostring(n) ~= s then return nil end
  return n
end

local function array(items, proto)
  local out = { "*" .. #items .. "\r\n" }
  for i = 1, #items do out[i + 1] = items[i] end
  return table.concat(out)
end

-- A stored value as a reply: strings and numbers as bulk strings; a list is the wrong type.
local function value_reply(v, e)
  if e == "value is a list" then return WRONGTYPE end
  return bulk(v)
end

local function store_error(e)
  if e == "no memory" then return OOM end
  if e == "value not a list" or e == "value is a list" then return WRONGTYPE end
  if e == "not a number" then return NOTINT end
  if e == "increment would overflow" then return err("ERR increment or decrement would overflow") end
  return err("ERR " .. tostring(e))
end

-- Redis's glob (KEYS, SCAN MATCH) as a Lua pattern: * ? [abc] [^a] [a-z] \x.
local function glob(p)
  local out, i, n = { "^" }, 1, #p
  while i <= n do
    local c = p:sub(i, i)
    if c == "*" then out[#out + 1] = ".*"
    elseif c == "?" then out[#out + 1] = "."
    elseif c == "\\" and i < n then
      i = i + 1
      local e = p:sub(i, i)
      out[#out + 1] = e:match("%w") and e or "%" .. e
    elseif c == "[" then
      local j = p:find("]", i + 1, true)
      if not j then out[#out + 1] = "%[" else
        local set = p:sub(i + 1, j - 1):gsub("%%", "%%%%")
        if set:sub(1, 1) == "^" then set = "^" .. set:sub(2) end
        out[#out + 1] = "[" .. set .. "]"
        i = j
      end
    elseif c:match("%W") then out[#out + 1] = "%" .. c
    else out[#out + 1] = c end
    i = i + 1
  end
  out[#out + 1] = "$"
  return table.concat(out)
end

local function ttl_of(key, unit_ms)
  local t, e = db:ttl(key)
  if t == nil then return int(-2) end
  if t == 0 then return int(-1) end
  if unit_ms then return int(math.floor(t * 1000 + 0.5)) end
  return int(math.floor(t + 0.5))
end

local cmd = {} -- name (upper case) -> function(conn, argv, n) -> reply string

function cmd.PING(c, a, n)
  if n > 2 then return arity("ping") end
  if c.subscribed > 0 and c.proto == 2 then return array({ bulk("pong"), bulk(a[2] or "") }) end
  if n == 2 then return bulk(a[2]) end
  return PONG
end

function cmd.ECHO(c, a, n)
  if n ~= 2 then return arity("echo") end
  return bulk(a[2])
end

function cmd.GET(c, a, n)
  if n ~= 2 then return arity("get") end
  local v, e = db:get(a[2])
  if v == nil then return e and WRONGTYPE or NULL end
  if type(v) ~= "string" then v = tostring(v) end
  return "$" .. #v .. "\r\n" .. v .. "\r\n"
end

function cmd.GETDEL(c, a, n)
  if n ~= 2 then return arity("getdel") end
  return value_reply(db:getDel(a[2]))
end

function cmd.SET(c, a, n)
  if n < 3 then return arity("set") end
  local key, val = a[2], a[3]
  local ttl, mode, get = 0, "set", false
  local i = 4
  while i <= n do
    local o = a[i]:upper()
    if (o == "EX" or o == "PX") and i < n and ttl == 0 then
      local t = toint(a[i + 1])
      if not t then return NOTINT end
      if t <= 0 or t > 1e15 then return err("ERR invalid expire time in 'set' command") end
      ttl = o == "EX" and t or t / 1000
      i = i + 2
    elseif o == "NX" and mode == "set" then mode = "add"; i = i + 1
    elseif o == "XX" and mode == "set" then mode = "replace"; i = i + 1
    elseif o == "GET" then get = true; i = i + 1
    else return SYNTAX end
  end
  local old, oe
  if get then
    old, oe = db:get(key)
    if oe then return WRONGTYPE end
  end
  local ok, e = db[mode](db, key, val, ttl)
  if not ok then
    if e == "exists" or e == "not found" then return get and bulk(old) or NULL end
    return store_error(e)
  end
  if get then return bulk(old) end
  return OK
end

function cmd.DEL(c, a, n)
  if n < 2 then return arity("del") end
  local count = 0
  for i = 2, n do if db:delete(a[i]) then count = count + 1 end end
  return int(count)
end
cmd.UNLINK = cmd.DEL

function cmd.EXISTS(c, a, n)
  if n < 2 then return arity("exists") end
  local count = 0
  for i = 2, n do if db:ttl(a[i]) then count = count + 1 end end
  return int(count)
end

local mtype = math.type
local function incr(key, delta)
  local v, e = db:incr(key, delta, 0)
  if v == nil then return store_error(e) end
  if mtype(v) ~= "integer" then return NOTINT end
  return ":" .. v .. "\r\n"
end

function cmd.INCR(c, a, n)
  if n ~= 2 then return arity("incr") end
  return incr(a[2], 1)
end

function cmd.DECR(c, a, n)
  if n ~= 2 then return arity("decr") end
  return incr(a[2], -1)
end

function cmd.INCRBY(c, a, n)
  if n ~= 3 then return arity("incrby") end
  local d = toint(a[3])
  if not d then return NOTINT end
  return incr(a[2], d)
end

function cmd.DECRBY(c, a, n)
  if n ~= 3 then return arity("decrby") end
  local d = toint(a[3])
  if not d or d == math.mininteger then return NOTINT end
  return incr(a[2], -d)
end

function cmd.MGET(c, a, n)
  if n < 2 then return arity("mget") end
  local out = {}
  for i = 2, n do
    local v, e = db:get(a[i])
    out[#out + 1] = e and NULL or bulk(v)
  end
  return array(out)
end

function cmd.MSET(c, a, n)
  if n < 3 or n % 2 == 0 then return arity("mset") end
  for i = 2, n, 2 do
    local ok, e = db:set(a[i], a[i + 1])
    if not ok then return store_error(e) end
  end
  return OK
end

local function expire(a, n, name, scale)
  if n ~= 3 then return arity(name) end
  local t = toint(a[3])
  if not t then return NOTINT end
  if not db:ttl(a[2]) then return int(0) end
  if t <= 0 then -- already past: the key goes, as in Redis
    db:delete(a[2])
    return int(1)
  end
  db:expire(a[2], t * scale)
  return int(1)
end

function cmd.EXPIRE(c, a, n) return expire(a, n, "expire", 1) end
function cmd.PEXPIRE(c, a, n) return expire(a, n, "pexpire", 0.001) end

function cmd.TTL(c, a, n)
  if n ~= 2 then return arity("ttl") end
  return ttl_of(a[2], false)
end

function cmd.PTTL(c, a, n)
  if n ~= 2 then return arity("pttl") end
  return ttl_of(a[2], true)
end

function cmd.PERSIST(c, a, n)
  if n ~= 2 then return arity("persist") end
  local t = db:ttl(a[2])
  if not t or t == 0 then return int(0) end
  db:expire(a[2], 0)
  return int(1)
end

function cmd.DBSIZE(c, a, n) return int(db:count()) end

function cmd.FLUSHALL(c, a, n)
  db:flushAll()
  return OK
end
cmd.FLUSHDB = cmd.FLUSHALL

function cmd.KEYS(c, a, n)
  if n ~= 2 then return arity("keys") end
  local pat, out = glob(a[2]), {}
  for _, k in ipairs(db:keys(0)) do
    if k:find(pat) then out[#out + 1] = bulk(k) end
  end
  return array(out)
end

-- SCAN cursor [MATCH p] [COUNT n]: the cursor is a position in the sorted key
-- list (a key added meanwhile may be missed or seen twice, which Redis allows too).
function cmd.SCAN(c, a, n)
  if n < 2 then return arity("scan") end
  local cursor = toint(a[2])
  if not cursor or cursor < 0 then return err("ERR invalid cursor") end
  local pat, count, i = nil, 10, 3
  while i <= n do
    local o = a[i]:upper()
    if o == "MATCH" and i < n then pat = glob(a[i + 1])
    elseif o == "COUNT" and i < n then
      count = toint(a[i + 1])
      if not count or count < 1 then return SYNTAX end
    else return SYNTAX end
    i = i + 2
  end
  local keys = db:keys(0)
  table.sort(keys)
  local out, last = {}, math.min(cursor + count, #keys)
  for j = cursor + 1, last do
    if not pat or keys[j]:find(pat) then out[#out + 1] = bulk(keys[j]) end
  end
  local nextc = last >= #keys and 0 or last
  return "*2\r\n" .. bulk(tostring(nextc)) .. array(out)
end

local function push(a, n, name, fn)
  if n < 3 then return arity(name) end
  local len, e
  for i = 3, n do
    len, e = fn(db, a[2], a[i])
    if not len then return store_error(e) end
  end
  return int(len)
end

function cmd.LPUSH(c, a, n) return push(a, n, "lpush", db.lpush) end
function cmd.RPUSH(c, a, n) return push(a, n, "rpush", db.rpush) end

local function pop(a, n, name, fn)
  if n ~= 2 and n ~= 3 then return arity(name) end
  if n == 3 then
    local count = toint(a[3])
    if not count or count < 0 then return err("ERR value is out of range, must be positive") end
    local _, le = db:llen(a[2])
    if le then return WRONGTYPE end
    local out = {}
    for _ = 1, count do
      local v = fn(db, a[2])
      if v == nil then break end
      out[#out + 1] = bulk(v)
    end
    if #out == 0 then return "*-1\r\n" end
    return array(out)
  end
  local v, e = fn(db, a[2])
  if e then return WRONGTYPE end
  return bulk(v)
end

function cmd.LPOP(c, a, n) return pop(a, n, "lpop", db.lpop) end
function cmd.RPOP(c, a, n) return pop(a, n, "rpop", db.rpop) end

function cmd.LLEN(c, a, n)
  if n ~= 2 then return arity("llen") end
  local len, e = db:llen(a[2])
  if not len then return store_error(e) end
  return int(len)
end

function cmd.LRANGE(c, a, n)
  if n ~= 4 then return arity("lrange") end
  local s, e = toint(a[3]), toint(a[4])
  if not s or not e then return NOTINT end
  local items, er = db:lrange(a[2], s, e)
  if not items then return store_error(er) end
  local out = {}
  for i = 1, #items do out[i] = bulk(items[i]) end
  return array(out)
end

-- ---- pub/sub: each connection's subscriptions are lupine.subscribe functions ----

-- While subscribed in RESP2 a connection answers PING differently and
-- refuses GET..., and after QUIT it answers nothing: the codec's native
-- commands are for the plain state only.
local function plain_state(c)
  redis.nativeCommands(c.ctx.channel, not c.quit and not (c.subscribed > 0 and c.proto == 2))
end

local function push_reply(c, items)
  return (c.proto == 3 and ">" or "*") .. #items .. "\r\n" .. table.concat(items)
end

function cmd.SUBSCRIBE(c, a, n)
  if n < 2 then return arity("subscribe") end
  local out = {}
  for i = 2, n do
    local ch = a[i]
    if not c.subs[ch] then
      local ctx = c.ctx
      local fn = function(msg)
        if ctx.channel:isOpen() then ctx:writeAndFlush(push_reply(c, { bulk("message"), bulk(ch), bulk(msg) })) end
      end
      c.subs[ch] = fn
      c.subscribed = c.subscribed + 1
      lupine.subscribe("redis:" .. ch, fn)
    end
    out[#out + 1] = push_reply(c, { bulk("subscribe"), bulk(ch), int(c.subscribed) })
  end
  plain_state(c)
  return table.concat(out)
end

local function unsubscribe(c, ch)
  local fn = c.subs[ch]
  if fn then
    lupine.unsubscribe("redis:" .. ch, fn)
    c.subs[ch] = nil
    c.subscribed = c.subscribed - 1
  end
end

function cmd.UNSUBSCRIBE(c, a, n)
  local names = {}
  if n == 1 then
    for ch in pairs(c.subs) do names[#names + 1] = ch end
    table.sort(names)
    if #names == 0 then return push_reply(c, { bulk("unsubscribe"), NULL, int(0) }) end
  else
    for i = 2, n do names[#names + 1] = a[i] end
  end
  local out = {}
  for _, ch in ipairs(names) do
    unsubscribe(c, ch)
    out[#out + 1] = push_reply(c, { bulk("unsubscribe"), bulk(ch), int(c.subscribed) })
  end
  plain_state(c)
  return table.concat(out)
end

function cmd.PUBLISH(c, a, n)
  if n ~= 3 then return arity("publish") end
  local receivers = lupine.broadcast("redis:" .. a[2], a[3])
  return int(receivers)
end

-- ---- connection and server ----

function cmd.SELECT(c, a, n)
  if n ~= 2 then return arity("select") end
  if a[2] ~= "0" then return err("ERR DB index is out of range") end
  return OK
end

function cmd.CLIENT(c, a, n)
  local sub = (a[2] or ""):upper()
  if sub == "SETNAME" and n == 3 then
    if a[3]:find("[%s%c]") then return err("ERR Client names cannot contain spaces, newlines or special characters.") end
    c.name = a[3] ~= "" and a[3] or nil
    return OK
  elseif sub == "GETNAME" and n == 2 then return bulk(c.name)
  elseif sub == "ID" and n == 2 then return int(c.id)
  elseif sub == "SETINFO" then return OK
  end
  return err("ERR unknown subcommand '" .. (a[2] or "") .. "'. Try CLIENT HELP.")
end

local function hello_map(c)
  return redis.encode({ map = { "server", "redis", "version", "7.0.0", "proto", c.proto, "id", c.id,
    "mode", "standalone", "role", "master", "modules", {} } }, c.proto)
end

function cmd.HELLO(c, a, n)
  if n >= 2 then
    local v = toint(a[2])
    if not v then return err("ERR Protocol version is not an integer or out of range") end
    if v ~= 2 and v ~= 3 then return err("NOPROTO unsupported protocol version") end
    local i = 3
    while i <= n do
      local o = a[i]:upper()
      if o == "SETNAME" and i < n then c.name = a[i + 1]; i = i + 2
      elseif o == "AUTH" and i + 1 < n then i = i + 3 -- no users here: any credentials pass
      else return SYNTAX end
    end
    c.proto = v
    plain_state(c)
  end
  return hello_map(c)
end

function cmd.INFO(c, a, n)
  local lines = {
    "# Server", "redis_version:7.0.0", "redis_mode:standalone", "lupine_version:" .. lupine.version,
    "multiplexing_api:libev", "worker:" .. lupine.workerId(),
    "uptime_in_seconds:" .. (os.time() - started), "", "# Clients",
    "connected_clients_on_this_worker:" .. c.server.clients, "", "# Memory",
    "used_memory:" .. (db:capacity() - db:freeSpace()), "maxmemory:" .. db:capacity(),
    "maxmemory_policy:allkeys-lru", "", "# Keyspace",
  }
  local count = db:count()
  if count > 0 then lines[#lines + 1] = "db0:keys=" .. count .. ",expires=0,avg_ttl=0" end
  return bulk(table.concat(lines, "\r\n") .. "\r\n")
end

local arities = {
  PING = -1, ECHO = 2, SET = -3, GET = 2, GETDEL = 2, DEL = -2, UNLINK = -2, EXISTS = -2, INCR = 2, INCRBY = 3,
  DECR = 2, DECRBY = 3, MGET = -2, MSET = -3, EXPIRE = 3, PEXPIRE = 3, TTL = 2, PTTL = 2, PERSIST = 2, DBSIZE = 1,
  FLUSHALL = -1, FLUSHDB = -1, KEYS = 2, SCAN = -2, LPUSH = -3, RPUSH = -3, LPOP = -2, RPOP = -2, LLEN = 2,
  LRANGE = 4, SUBSCRIBE = -2, UNSUBSCRIBE = -1, PUBLISH = 3, SELECT = 2, CLIENT = -2, HELLO = -1, INFO = -1,
  COMMAND = -1, CONFIG = -2, QUIT = 1,
}

-- COMMAND: enough for redis-cli (name, arity, flags, first key, last key, step).
function cmd.COMMAND(c, a, n)
  local sub = (a[2] or ""):upper()
  if sub == "COUNT" then
    local k = 0
    for _ in pairs(arities) do k = k + 1 end
    return int(k)
  elseif sub == "DOCS" then
    return c.proto == 3 and "%0\r\n" or EMPTY
  elseif sub ~= "" and sub ~= "INFO" then
    return err("ERR unknown subcommand '" .. a[2] .. "'. Try COMMAND HELP.")
  end
  local names = {}
  if sub == "INFO" then for i = 3, n do names[#names + 1] = a[i]:upper() end
  else for k in pairs(arities) do names[#names + 1] = k end; table.sort(names) end
  local out = {}
  for _, k in ipairs(names) do
    if arities[k] then
      local keyed = not (k == "PING" or k == "ECHO" or k:match("^[A-Z]*SUB") or k == "PUBLISH" or k == "SELECT"
        or k == "CLIENT" or k == "HELLO" or k == "INFO" or k == "COMMAND" or k == "CONFIG" or k == "QUIT"
        or k == "DBSIZE" or k == "FLUSHALL" or k == "FLUSHDB" or k == "KEYS" or k == "SCAN")
      local multi = k == "DEL" or k == "UNLINK" or k == "EXISTS" or k == "MGET" or k == "MSET"
      out[#out + 1] = array({ bulk(k:lower()), int(arities[k]), EMPTY, int(keyed and 1 or 0),
        int(keyed and (multi and -1 or 1) or 0), int(keyed and (k == "MSET" and 2 or 1) or 0) })
    else
      out[#out + 1] = NULL
    end
  end
  return array(out)
end

function cmd.CONFIG(c, a, n)
  if (a[2] or ""):upper() ~= "GET" or n ~= 3 then return err("ERR CONFIG supports GET only here") end
  local known = { save = "", appendonly = "no", databases = "1", maxmemory = tostring(db:capacity()),
    ["proto-max-bulk-len"] = tostring(512 * 1024 * 1024) }
  local pat, out = glob(a[3]), {}
  for k, v in pairs(known) do
    if k:find(pat) then out[#out + 1] = bulk(k); out[#out + 1] = bulk(v) end
  end
  return c.proto == 3 and ("%" .. (#out // 2) .. "\r\n" .. table.concat(out)) or array(out)
end

function cmd.QUIT(c, a, n)
  c.quit = true
  plain_state(c)
  return OK
end

-- Commands a subscribed RESP2 connection may send, as in Redis.
local while_subscribed = { SUBSCRIBE = true, UNSUBSCRIBE = true, PING = true, QUIT = true, PSUBSCRIBE = true,
  PUNSUBSCRIBE = true, RESET = true }

-- Lower-case names find the same functions: one lookup for the common spellings.
local lower = {}
for k, fn in pairs(cmd) do lower[k:lower()] = fn end
for k, fn in pairs(lower) do cmd[k] = fn end

-- ---- the handler ----------------------------------------------------------------------------

local Conn = setmetatable({}, { __index = redis.Server })
Conn.__index = Conn

local server = { clients = 0 }

function Conn:channelActive(ctx)
  self.ctx = ctx
  server.clients = server.clients + 1
end

-- One command's reply.
function Conn:run(argv)
  local n = #argv
  local name = argv[1]
  local fn = cmd[name] or cmd[name:upper()]
  if not fn then
    local args = {}
    for i = 2, math.min(n, 21) do args[#args + 1] = "'" .. argv[i]:sub(1, 128) .. "' " end
    return err("ERR unknown command '" .. name:sub(1, 128) .. "', with args beginning with: " .. table.concat(args))
  elseif self.subscribed > 0 and self.proto == 2 and not while_subscribed[name:upper()] then
    return err("ERR Can't execute '" .. name:lower() .. "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
  end
  return fn(self, argv, n)
end

-- The decoder batches: the commands that arrived together (and that it did
-- not answer itself), in one event. Their replies are written before this
-- returns, in one write: the codec's own replies to the commands after them
-- go out after these.
function Conn:channelRead(ctx, commands)
  local out, bytes = {}, 0
  for i = 1, #commands do
    if self.quit then break end -- nothing after QUIT
    local reply = self:run(commands[i])
    out[#out + 1] = reply
    bytes = bytes + #reply
    if bytes >= FLUSH_AT and not self.quit then
      -- A client that pipelines without reading: once the replies reach the high
      -- water mark, stop taking commands (the decoder holds what it has read)
      -- until the client has read them.
      ctx:writeAndFlush(table.concat(out))
      out, bytes = {}, 0
      if not ctx.channel:isWritable() then
        ctx.channel:config():setAutoRead(false)
        self.paused = true
      end
    end
  end
  if #out == 0 then return end
  local done = ctx:writeAndFlush(#out == 1 and out[1] or table.concat(out))
  if self.quit then done:addListener(function() ctx:close() end) end
end

function Conn:channelWritabilityChanged(ctx)
  if self.paused and ctx.channel:isWritable() then
    self.paused = false
    ctx.channel:config():setAutoRead(true)
  end
end

function Conn:channelInactive(ctx)
  server.clients = server.clients - 1
  for ch in pairs(self.subs) do unsubscribe(self, ch) end
end

return lupine.app {
  name = "redis_lite",
  port = tonumber(os.getenv("PORT")) or 6380,
  shared = { redis = MEMORY, redis_lite_ids = "16k" },
  init = function(ch)
    local conn = setmetatable({ subs = {}, subscribed = 0, proto = 2, server = server,
      id = next_id:incr("id", 1, 0) }, Conn)
    ch.pipeline:addLast("resp", redis.codec { mode = "server", batch = true, store = db })
    ch.pipeline:addLast("redis", conn)
  end,
}
