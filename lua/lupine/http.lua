-- lupine.http: HTTP/1.1 on lupine. Parsing and response encoding are native
-- (src/http_parser.c, src/http_codec.c, src/lua/l_http.c); this file adds the
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

local server_options = {
  handler = true, maxInitialLineLength = true, maxHeaderSize = true, maxHeaders = true, maxBody = true,
  maxChunkLine = true, headerTimeout = true,
}

-- http.server{ handler = fn(req, res), port, host, workers, name, options, ...
--   maxInitialLineLength = 8192, maxHeaderSize = 16384, maxHeaders = 100,
--   maxBody = 1 MiB, maxChunkLine = 4096, headerTimeout = 30 }
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
      params["*"] = table.concat(parts, "/", i)
      return params
    end
    local p = parts[i]
    if p == nil then return nil end
    if s.param then params[s.param] = p
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

return http
