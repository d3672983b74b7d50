-- lupine.admin: the admin listener (`--admin [HOST:]PORT`, the app's `admin`
-- field): HTTP on the state that calls lupine.serve, which is the boss loop's
-- (with worker threads, no worker runs it: a busy worker does not hold it up;
-- inline, it shares the one loop). Routes:
--   GET  /stats     lupine.stats() as JSON
--   GET  /metrics   the same in Prometheus' text format 0.0.4
--   GET  /channels  every live channel of every worker, as JSON (asked of each
--                   worker's loop; a worker that does not answer within a
--                   second is left out: `answered` < `asked`)
--   POST /reload    the reload hook (admin.setReloadHook); 501 without one
-- Anything else: 404, or 405 with Allow. Requests are held to small limits
-- (a long request line 414, big headers 431, a body over 4 KiB 413, malformed
-- 400: the HTTP codec's answers, each with Connection: close).
local core = require "lupine.core"
local lupine = require "lupine"
local http = require "lupine.http"

local admin = {}

admin.CHANNELS_TIMEOUT = 1.0   -- seconds /channels waits for the workers
admin.CHANNELS_MAX = 10000     -- channels listed per worker (then truncated = true)

-- ---- JSON --------------------------------------------------------------------------------

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function escape_char(c) return escapes[c] or ("\\u%04x"):format(c:byte()) end

-- The shortest of %.15g .. %.17g that reads back as the same number.
local function float(v)
  local s = ("%.15g"):format(v)
  if tonumber(s) ~= v then s = ("%.17g"):format(v) end
  return s
end

-- A table made with admin.array(t) is a JSON array even when empty.
local array_mt = { __name = "lupine.admin.array" }
function admin.array(t) return setmetatable(t or {}, array_mt) end

local function is_array(t)
  if getmetatable(t) == array_mt then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local function encode(v, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', escape_char) .. '"'
  elseif t == "number" then
    if math.type(v) == "integer" then out[#out + 1] = ("%d"):format(v)
    elseif v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    else out[#out + 1] = float(v) end
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "nil" then
    out[#out + 1] = "null"
  elseif t == "table" then
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then error("admin.json: object keys must be strings, got " .. type(k), 0) end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        encode(k, out)
        out[#out + 1] = ":"
        encode(v[k], out)
      end
      out[#out + 1] = "}"
    end
  else
    error("admin.json: cannot encode a " .. t, 0)
  end
end

-- admin.json(value): JSON text (objects with sorted keys; an empty table is {}).
function admin.json(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

-- ---- Prometheus ------------------------------------------------------------------------------

local function label_value(s) return (tostring(s):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" })) end

-- Each family: name, type, help, and how to get its samples from one loop's
-- table: a number, or a list of { labels, value }.
local families = {
  { "lupine_connections_accepted_total", "counter", "Connections accepted (including those closed at once).", "accepted" },
  { "lupine_connections_connected_total", "counter", "Client connections established.", "connected" },
  { "lupine_connections_active", "gauge", "Connections open now.", "active" },
  { "lupine_connections_closed_total", "counter", "Connections closed, by cause.", function(w)
    local list = {}
    for _, cause in ipairs { "eof", "reset", "timeout", "exception", "maxConnections", "EMFILE", "shutdown", "local", "error" } do
      list[#list + 1] = { ('cause="%s"'):format(cause), w.closed[cause] }
    end
    return list
  end },
  { "lupine_received_bytes_total", "counter", "Bytes read from connections.", "bytesIn" },
  { "lupine_sent_bytes_total", "counter", "Bytes written to connections.", "bytesOut" },
  { "lupine_reads_total", "counter", "read() calls that returned data.", "reads" },
  { "lupine_writes_total", "counter", "writev() calls that wrote data.", "writes" },
  { "lupine_pending_outbound_bytes", "gauge", "Bytes written by handlers and not yet sent.", "pending" },
  { "lupine_channels_unwritable", "gauge", "Channels over their high water mark.", "unwritable" },
  { "lupine_lua_memory_bytes", "gauge", "Memory of the loop's Lua state.", "luaMemory" },
  { "lupine_handler_errors_total", "counter", "Errors raised by handlers, by handler name.", function(w)
    local names, list = {}, {}
    for name in pairs(w.handlerErrors) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do list[#list + 1] = { ('handler="%s"'):format(label_value(name)), w.handlerErrors[name] } end
    return list
  end },
  { "lupine_event_loop_lag_seconds", "gauge", "How late the loop ran a timer that was due, over the last 10 s.", function(w)
    return { { 'quantile="0.5"', w.lag.p50 }, { 'quantile="0.99"', w.lag.p99 }, { 'quantile="1"', w.lag.max } }
  end },
}

local function number(v)
  if math.type(v) == "integer" then return ("%d"):format(v) end
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" elseif v == -math.huge then return "-Inf" end
  return float(v)
end

-- admin.metrics(stats): lupine.stats()'s table in Prometheus' text format.
-- One series per worker loop (label worker="N"; "0" is the boss loop, or the
-- only loop inline).
function admin.metrics(stats)
  local loops = {}
  for _, w in ipairs(stats.workers) do loops[#loops + 1] = w end
  if stats.boss then table.insert(loops, 1, stats.boss) end
  local out = {}
  for _, f in ipairs(families) do
    local name, kind, help, get = f[1], f[2], f[3], f[4]
    out[#out + 1] = ("# HELP %s %s\n# TYPE %s %s\n"):format(name, help, name, kind)
    for _, w in ipairs(loops) do
      local worker = ('worker="%d"'):format(w.id)
      if type(get) == "string" then
        out[#out + 1] = ("%s{%s} %s\n"):format(name, worker, number(w[get]))
      else
        for _, s in ipairs(get(w)) do
          out[#out + 1] = ("%s{%s,%s} %s\n"):format(name, s[1], worker, number(s[2]))
        end
      end
    end
  end
  return table.concat(out)
end

-- ---- reload ------------------------------------------------------------------------------------

local reload_hook

-- admin.setReloadHook(fn): POST /reload calls fn(); fn returns true, or nil
-- and a message (answered 500 with it). nil removes the hook.
function admin.setReloadHook(fn)
  if fn ~= nil and type(fn) ~= "function" then error("admin.setReloadHook: expected a function or nil", 2) end
  reload_hook = fn
end

-- What POST /reload answers: status and body.
function admin.reload()
  if not reload_hook then return 501, "reload not available\n" end
  local ok, done, err = pcall(reload_hook)
  if not ok then return 500, "reload failed: " .. tostring(done) .. "\n" end
  if not done then return 500, "reload failed: " .. tostring(err) .. "\n" end
  return 200, "reloading\n"
end

-- ---- the listener ------------------------------------------------------------------------------

-- "PORT", "HOST:PORT" or "[V6]:PORT" (a number: a port) -> host, port; or nil and a message.
function admin.parseAddress(spec)
  local host, port
  if math.type(spec) == "integer" then
    host, port = "127.0.0.1", spec
  elseif type(spec) == "string" then
    if spec:match("^%d+$") then host, port = "127.0.0.1", spec
    else
      host, port = spec:match("^%[([^%]]+)%]:(%d+)$")
      if not host then host, port = spec:match("^([^:]+):(%d+)$") end
    end
    port = tonumber(port)
  end
  if not host or not port or port > 65535 then
    return nil, ("'%s' is not [HOST:]PORT (e.g. 127.0.0.1:9100)"):format(tostring(spec))
  end
  return host, port
end

local function send_json(res, value)
  res:header("Content-Type", "application/json")
  res:send(200, admin.json(value) .. "\n")
end

local function router()
  local r = http.router()
  r:get("/stats", function(_, res) send_json(res, lupine.stats()) end)
  r:get("/metrics", function(_, res)
    res:header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
    res:send(200, admin.metrics(lupine.stats()))
  end)
  r:get("/channels", function(_, res)
    core._channels(admin.CHANNELS_TIMEOUT, admin.CHANNELS_MAX, function(result, err)
      if not result then return res:send(500, tostring(err) .. "\n") end
      admin.array(result.channels)
      for _, ch in ipairs(result.channels) do admin.array(ch.handlers) end
      send_json(res, result)
    end)
  end)
  r:post("/reload", function(_, res)
    local status, body = admin.reload()
    res:send(status, body)
  end)
  return r
end

-- admin.start(spec) -> a handle with :close() and .port, or nil, message.
-- spec: [HOST:]PORT. Its connections are kept out of the statistics.
function admin.start(spec)
  local host, port = admin.parseAddress(spec)
  if not host then return nil, port end
  local factory = core._http.serverHandler {
    handler = router(), maxInitialLineLength = 2048, maxHeaderSize = 8192, maxHeaders = 64, maxBody = 4096,
    headerTimeout = 10,
  }
  local channels = setmetatable({}, { __mode = "k" })
  local server, err = lupine.server {
    host = host, port = port,
    init = function(ch)
      core._statsOff(ch)
      channels[ch] = true
      ch.pipeline:addLast("admin", factory)
    end,
  }
  if not server then return nil, err end
  local handle = { port = server.port, host = host, server = server }
  -- Stop listening and close the admin's open connections.
  function handle.close()
    server:close()
    for ch in pairs(channels) do ch:close() end
  end
  return handle
end

return admin
