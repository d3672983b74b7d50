-- lupine.http: HTTP/1.1 on lupine. Parsing and response encoding are native
-- (src/codec/http_parser.c, src/codec/http_codec.c, src/lua/l_http.c); this file adds the
-- app, the aggregator and the router.
--
--   http.server{ handler = function(req, res) ... end, port = 8080, ... }
--       an app (launcher or inline): one native handler per connection that
--       parses, aggregates the body and calls handler(req, res) per request
--   http.serverCodec{...}   the codec alone (Netty's HttpServerCodec): fires a
--       head table, body Buffers, then http.END per request; encodes response
--       tables written through it
--   http.aggregator{ maxBody }  after serverCodec: one request table with body
--   http.router()          router:get("/users/:id", fn) ...; 404 and 405
--   http.END               the end marker (requests, and streamed responses)
local core = require "lupine.core"
local lupine = require "lupine"

local native = core._http
local http = {}

http.END = native.END
http.serverCodec = native.serverCodec
http.reason = native.reason
http.date = native.date

-- ---- percent-encoding and query strings -----------------------------------------------------------

local function hexbyte(h) return string.char(tonumber(h, 16)) end

-- http.unescape(s [, plus]): %XX sequences decoded (a malformed one stays as it
-- is); with plus, '+' is a space too (as in query strings and form bodies).
function http.unescape(s, plus)
  if type(s) ~= "string" then error("http.unescape: expected a string", 2) end
  if plus then s = s:gsub("+", " ") end
  return (s:gsub("%%(%x%x)", hexbyte))
end

-- http.escape(s): every byte but A-Z a-z 0-9 - . _ ~ as %XX (RFC 3986 unreserved).
function http.escape(s)
  if type(s) ~= "string" then error("http.escape: expected a string", 2) end
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- http.parseQuery(q [, maxArgs = 100]): "a=1&b=x+y&a=2&flag" -> { a = { "1", "2" }, b = "x y",
-- flag = true }; names and values decoded ('+' is a space); a repeated name
-- collects its values in order; pairs past maxArgs are ignored (and counted
-- in the second result), so a hostile query costs a bounded table.
function http.parseQuery(q, maxArgs)
  if q == nil then return {}, 0 end
  if type(q) ~= "string" then error("http.parseQuery: expected a string", 2) end
  maxArgs = maxArgs or 100
  local args, n, dropped = {}, 0, 0
  for pair in q:gmatch("[^&;]+") do
    if n >= maxArgs then
      dropped = dropped + 1
    else
      n = n + 1
      local k, v = pair:match("^([^=]*)=(.*)$")
      if k then v = http.unescape(v, true) else k, v = pair, true end
      k = http.unescape(k, true)
      local old = args[k]
      if old == nil then args[k] = v
      elseif type(old) == "table" then old[#old + 1] = v
      else args[k] = { old, v } end
    end
  end
  return args, dropped
end

-- req:args([maxArgs]): the query string parsed by http.parseQuery.
function native.Request.args(req, maxArgs)
  return (http.parseQuery(req.query, maxArgs))
end

local server_options = {
  handler = true, maxInitialLineLength = true, maxHeaderSize = true, maxHeaders = true, maxBody = true,
  maxChunkLine = true, headerTimeout = true, bodyTimeout = true,
}

-- http.server{ handler = fn(req, res), port, host, workers, name, options, ...
--   maxInitialLineLength = 8192, maxHeaderSize = 16384, maxHeaders = 100,
--   maxBody = 1 MiB, maxChunkLine = 4096, headerTimeout = 30, bodyTimeout = 60 }
-- An app: `return http.server{...}` at the end of a file serves it when run
-- as a script and gives it to the launcher otherwise (as lupine.app).
function http.server(spec)
  if type(spec) ~= "table" then error("http.server: expected a table with a handler", 2) end
  local opts, app = {}, {}
  for k, v in pairs(spec) do
    if server_options[k] then opts[k] = v else app[k] = v end
  end
  local ok, factory = pcall(native.serverHandler, opts)
  if not ok then error(factory, 2) end
  app.name = app.name or "http"
  app.init = function(ch) ch.pipeline:addLast("http", factory) end
  app.handlerFactory = factory
  return lupine.app(app) -- a tail call: lupine.app sees this file's caller
end

-- ---- the aggregator --------------------------------------------------------------------------

-- http.aggregator{ maxBody = 1 MiB }: after serverCodec, turns head, chunks and
-- END into one request table (the head's fields plus body, a string). A body
-- over maxBody is answered 413 with Connection: close.
function http.aggregator(opts)
  opts = opts or {}
  local max = opts.maxBody or 1048576
  if type(max) ~= "number" or max < 0 then error("http.aggregator: option 'maxBody' must be a number >= 0", 2) end
  local states = setmetatable({}, { __mode = "k" }) -- per channel
  local Agg = { name = "httpAggregator" }
  function Agg:channelRead(ctx, msg)
    local ch = ctx.channel
    local st = states[ch]
    if msg == http.END then
      if st then
        states[ch] = nil
        if st.over then return end
        st.req.body = table.concat(st.parts)
        ctx:fireChannelRead(st.req)
      end
    elseif type(msg) == "table" and msg.method then
      states[ch] = { req = msg, parts = {}, size = 0 }
    elseif st and getmetatable(msg) == "lupine.Buffer" then
      if st.over then msg:release() return end
      st.size = st.size + msg:readableBytes()
      if st.size > max then
        st.over = true
        msg:release()
        ctx:writeAndFlush { status = 413, headers = { connection = "close" }, body = "Content Too Large\n" }
        return
      end
      st.parts[#st.parts + 1] = msg:readString()
    else
      ctx:fireChannelRead(msg)
    end
  end
  return Agg
end

-- ---- requests ----------------------------------------------------------------------------------

-- req:header(name) is native; req.params holds a route's captures.

-- ---- the router ---------------------------------------------------------------------------------

local Router = {}
Router.__index = Router

-- http.router(): routes by method and path pattern ("/users/:id", "/files/*"):
-- router:get(pattern, fn), :post, :put, :delete, :patch, :head, :options,
-- :route(method, pattern, fn). fn(req, res) with req.params. No route: 404;
-- a path with routes for other methods only: 405 with Allow. The router is a
-- handler: http.server{ handler = router }.
function http.router()
  return setmetatable({ routes = {} }, Router)
end

local function compile(pattern)
  if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
    error("router: a route pattern is a path starting with '/'", 3)
  end
  local segs = {}
  for seg in pattern:gmatch("[^/]+") do
    if seg:sub(1, 1) == ":" then segs[#segs + 1] = { param = seg:sub(2) }
    elseif seg == "*" then segs[#segs + 1] = { rest = true }
    else segs[#segs + 1] = { text = seg } end
  end
  return segs
end

function Router:route(method, pattern, fn)
  if type(fn) ~= "function" then error("router: the route's handler must be a function(req, res)", 2) end
  self.routes[#self.routes + 1] = { method = method:upper(), segs = compile(pattern), fn = fn, pattern = pattern }
  return self
end
for _, m in ipairs { "get", "post", "put", "delete", "patch", "head", "options" } do
  Router[m] = function(self, pattern, fn) return self:route(m, pattern, fn) end
end

local function match(segs, parts)
  local params = {}
  for i, s in ipairs(segs) do
    if s.rest then
      params["*"] = http.unescape(table.concat(parts, "/", i))
      return params
    end
    local p = parts[i]
    if p == nil then return nil end
    if s.param then params[s.param] = http.unescape(p)
    elseif s.text ~= p then return nil end
  end
  if #parts ~= #segs then return nil end
  return params
end

function Router:__call(req, res)
  local parts = {}
  for p in req.path:gmatch("[^/]+") do parts[#parts + 1] = p end
  local allowed
  for _, r in ipairs(self.routes) do
    local params = match(r.segs, parts)
    if params then
      if r.method == req.method or (r.method == "GET" and req.method == "HEAD") then
        req.params = params
        return r.fn(req, res)
      end
      allowed = allowed or {}
      allowed[#allowed + 1] = r.method
    end
  end
  if allowed then
    res:header("Allow", table.concat(allowed, ", "))
    return res:send(405, "Method Not Allowed\n")
  end
  return res:send(404, "Not Found\n")
end

-- ---- the client ----------------------------------------------------------------------------------

http.clientCodec = native.clientCodec

-- Idle kept-alive connections per "host:port/maxBody", most recent last. Per
-- Lua state (each worker has its own), at most MAX_IDLE per host; kept in the
-- registry, so that every copy of this module in a state (a test runner may
-- load it again) shares one pool.
local MAX_IDLE = 16
local registry = debug.getregistry()
local idle = registry["lupine.http.idle"] or {}
registry["lupine.http.idle"] = idle

-- http._parseUrl(url, schemes): host, port, target, authority, scheme, or nil and
-- an error; schemes = { http = 80, https = 443 }: the accepted schemes and
-- their default ports (lupine.ws parses ws:// and wss:// with it).
function http._parseUrl(url, schemes)
  local names = {}
  for k in pairs(schemes) do names[#names + 1] = k end
  table.sort(names)
  if type(url) ~= "string" then return nil, "the url must be a string" end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, ("the url must be %s://host[:port][/path]"):format(names[1]) end
  scheme = scheme:lower()
  if not schemes[scheme] then
    return nil, ("scheme '%s' is not supported (%s only)"):format(scheme, table.concat(names, " and "))
  end
  local authority, target = rest:match("^([^/?#]*)([^#]*)")
  local host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil, "the url has no host" end
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  port = tonumber(port ~= "" and port or schemes[scheme])
  if not port or port < 1 or port > 65535 then return nil, "the url has a bad port" end
  return host, port, target, authority, scheme
end
local http_schemes = { http = 80, https = 443 }

local function failure(kind, message) return { kind = kind, message = kind .. ": " .. message } end

-- The handler of one client connection: one exchange at a time.
local Conn = { name = "httpClient" }
Conn.__index = Conn

local send -- send(ex, fresh): on a kept-alive connection (unless fresh) or a new one

function Conn:start(ex, reused)
  self.ex = ex
  self.reused = reused
  ex.conn = self
  self.parts, self.size, self.head = {}, 0, nil
  self.ch:writeAndFlush(ex.req)
end

function Conn:finish(ok, value)
  local ex = self.ex
  if not ex then return end
  self.ex = nil
  if ex.timer then ex.timer:cancel() end
  if ok then ex.promise:setSuccess(value) else ex.promise:setFailure(value) end
end

function Conn:channelRead(ctx, msg)
  if not self.ex then -- nothing asked for: a server speaking out of turn
    if getmetatable(msg) == "lupine.Buffer" then msg:release() end
    ctx:close()
    return
  end
  if msg == http.END then
    local head = self.head
    head.body = table.concat(self.parts)
    local reuse = head.keepAlive and not self.ex.close
    self:finish(true, head)
    if reuse and ctx.channel:isOpen() then
      local list = idle[self.key] or {}
      idle[self.key] = list
      if #list < MAX_IDLE then list[#list + 1] = self else ctx:close() end
    else
      ctx:close()
    end
  elseif getmetatable(msg) == "lupine.Buffer" then
    self.parts[#self.parts + 1] = msg:readString()
  elseif type(msg) == "table" and msg.status then
    if msg.status >= 100 and msg.status < 200 then return end -- 100 Continue and the like
    self.head = msg
  end
end

function Conn:exceptionCaught(ctx, err)
  self:finish(false, err)
  ctx:close()
end

local idempotent = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }

function Conn:channelInactive()
  self.closed = true
  local ex = self.ex
  -- A kept-alive connection the server closed as we reused it: once more on a new one.
  if ex and self.reused and not self.head and idempotent[ex.req.method] then
    self.ex = nil
    return send(ex, true)
  end
  self:finish(false, failure("ClosedChannel", "the connection closed before the response ended"))
end

local request_options = {
  method = true, url = true, headers = true, body = true, timeout = true, maxBody = true, tls = true,
}
-- https:// without a tls table: verification against the system's CAs. One
-- table, so that lupine.connect's factory (and its session ticket) is reused.
local default_tls = {}

-- http.request{ method = "GET", url = "http://host:port/path?query", headers = {...},
--   body = string or Buffer, timeout = 30, maxBody = 1 MiB } -> a Future of the
-- response { status, reason, version, headers (lower-case names), body, keepAlive,
-- :header(name) }. Connections are kept alive and reused per host:port; a
-- response with chunked or close-delimited body is read whole, up to maxBody
-- (HttpBodyTooLarge past it). The future fails with ECONNREFUSED..., Timeout
-- ("Timeout: no response within 30 s"), HttpBadResponse..., ClosedChannel.
function http.request(opts)
  if type(opts) ~= "table" then error("http.request: expected a table { url = ..., ... }", 2) end
  for k in pairs(opts) do
    if not request_options[k] then error(("http.request: unknown option '%s'"):format(tostring(k)), 2) end
  end
  local host, port, target, authority, scheme = http._parseUrl(opts.url, http_schemes)
  if not host then error("http.request: " .. port, 2) end
  local secure = scheme == "https"
  local tls = opts.tls
  if tls ~= nil and type(tls) ~= "table" then error("http.request: 'tls' must be a table of lupine.tls.client options", 2) end
  if tls and not secure then error("http.request: option 'tls' needs an https:// url", 2) end
  if secure then tls = tls or default_tls end
  local method = opts.method or "GET"
  if type(method) ~= "string" or not method:match("^[%w!#$%%&'*+.^_`|~-]+$") then
    error("http.request: 'method' must be a token", 2)
  end
  local timeout = opts.timeout or 30
  if type(timeout) ~= "number" or timeout <= 0 then error("http.request: 'timeout' must be seconds > 0", 2) end
  local max_body = opts.maxBody or 1048576
  if math.type(max_body) ~= "integer" or max_body < 1 then error("http.request: 'maxBody' must be an integer >= 1", 2) end
  local headers = { Host = authority }
  local close = false
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then error("http.request: 'headers' must be a table", 2) end
    for k, v in pairs(opts.headers) do
      if type(k) ~= "string" then error("http.request: header names must be strings", 2) end
      if k:lower() == "host" then headers.Host = nil end
      if k:lower() == "connection" and tostring(v):lower() == "close" then close = true end
      headers[k] = v
    end
  end
  local body = opts.body
  if body ~= nil and type(body) ~= "string" and getmetatable(body) ~= "lupine.Buffer" then
    error("http.request: 'body' must be a string or a lupine.Buffer", 2)
  end
  local promise = lupine.promise()
  local ex = { promise = promise, close = close,
    req = { method = method, target = target, headers = headers, body = body } }
  local key = (tls and ("https:%s:%s/%s/%s"):format(host, port, max_body, tostring(tls)))
    or host .. ":" .. port .. "/" .. max_body
  ex.timer = lupine.loop():schedule(timeout, function()
    ex.timer = nil
    if promise:isDone() then return end
    local conn = ex.conn
    promise:setFailure(failure("Timeout", ("no response within %g s"):format(timeout)))
    if conn then
      conn.ex = nil
      conn.ch:close()
    end
  end)
  ex.key, ex.host, ex.port, ex.max_body, ex.timeout, ex.tls = key, host, port, max_body, timeout, tls
  send(ex, false)
  return promise
end

send = function(ex, fresh)
  local promise = ex.promise
  local list = not fresh and idle[ex.key]
  while list and #list > 0 do -- a kept-alive connection, if one is open
    local conn = table.remove(list)
    if not conn.closed and conn.ch:isOpen() then
      conn:start(ex, true)
      return
    end
  end
  local conn = setmetatable({ key = ex.key }, Conn)
  local codec = native.clientCodec { maxBody = ex.max_body }
  lupine.connect {
    host = ex.host, port = ex.port, timeout = math.min(ex.timeout, 30), tls = ex.tls,
    init = function(ch)
      conn.ch = ch
      ch.pipeline:addLast("http", codec)
      ch.pipeline:addLast("client", conn)
    end,
  }:addListener(function(f)
    if promise:isDone() then -- timed out meanwhile
      if f:isSuccess() then f:get():close() end
      return
    end
    if not f:isSuccess() then
      if ex.timer then ex.timer:cancel() end
      promise:setFailure(f:cause())
      return
    end
    conn:start(ex, false)
  end)
end

-- http.closeIdle(): close every kept-alive connection this state's client
-- holds (they close by themselves when their server closes them).
function http.closeIdle()
  for key, list in pairs(idle) do
    idle[key] = nil
    for _, conn in ipairs(list) do conn.ch:close() end
  end
end

-- http.get(url [, opts]) and friends: http.request with method and url set.
for _, m in ipairs { "get", "head", "delete" } do
  http[m] = function(url, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.method, o.url = m:upper(), url
    return http.request(o)
  end
end
for _, m in ipairs { "post", "put", "patch" } do
  http[m] = function(url, body, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.method, o.url, o.body = m:upper(), url, body
    return http.request(o)
  end
end

return http
