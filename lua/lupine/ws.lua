-- lupine.ws: WebSocket (RFC 6455) framing. The frames are decoded and encoded
-- natively (src/codec/ws_codec.c, src/lua/l_ws.c); only whole messages reach Lua.
--
--   frameCodec{ server = true, maxMessageSize = 1048576, autoPong = true,
--               fragments = false, deflate = false }
--       a handler factory for a connection that speaks WebSocket (after the
--       handshake). Inbound: a text message is a string, a binary message a
--       lupine.Buffer; userEvents { kind = "wsPing"|"wsPong", data = s } and
--       { kind = "wsClose", code = n, reason = s }. Outbound: a string is a
--       text frame, a Buffer a binary frame, or one of the tables below.
--       Pings are answered, a close frame is answered and the channel closed,
--       ctx:close() sends a close frame first; a protocol violation closes
--       with its code (1002, 1007, 1009) and fires exceptionCaught.
--       fragments = true: a fragmented message arrives frame by frame as
--       { type = "text"|"binary", data = s or buf, fin = bool } tables.
--       deflate = true or { serverNoContextTakeover, clientNoContextTakeover,
--       serverMaxWindowBits, clientMaxWindowBits }: permessage-deflate.
--   text(s)                s itself, checked to be UTF-8
--   binary(s or buf)       a lupine.Buffer
--   close([code [, reason]])  { type = "close", code = 1000, reason = "" }
--   ping([data]), pong([data])  { type = "ping"|"pong", data = data }
--   server{ path, onOpen, onMessage, onClose, subprotocols | selectProtocol,
--           checkOrigin, maxMessageSize, deflate, pingInterval, http, ... }
--       an app: the handshake on http.serverCodec, then frameCodec (below)
--   connect(url, { protocols, deflate, origin, headers, timeout, onMessage,
--           onClose }) -> a Future of a client connection (below)
local core = require "lupine.core"

local native = core._ws
local M = {
  frameCodec = native.frameCodec,
  text = native.text,
  binary = native.binary,
  close = native.close,
  ping = native.ping,
  pong = native.pong,
}

-- ---- the handshake and the server app ------------------------------------------------------------

local lupine = require "lupine"
local handler = require "lupine.handler"

M._accept = native._accept

local function lower(v) return v and v:lower() or "" end

-- Whether a header's comma-separated list holds token tok (case-insensitive).
local function has_token(v, tok)
  for t in lower(v):gmatch("[^,%s]+") do if t == tok then return true end end
  return false
end

-- permessage-deflate: the first offer in Sec-WebSocket-Extensions that we can
-- take, as (frameCodec's deflate table, the response's extension value), or nil.
local function negotiate_deflate(value, want)
  if not value then return nil end
  for offer in value:gmatch("[^,]+") do
    local parts = {}
    for p in offer:gmatch("[^;]+") do parts[#parts + 1] = p:match("^%s*(.-)%s*$") end
    if lower(parts[1]) == "permessage-deflate" then
      local d, resp, ok, seen = {}, { "permessage-deflate" }, true, {}
      for i = 2, #parts do
        local k, v = parts[i]:match("^([%w_]+)%s*=?%s*\"?([^\"]*)\"?$")
        k = lower(k)
        if not k or seen[k] then ok = false break end
        seen[k] = true
        local bits = tonumber(v)
        if k == "server_no_context_takeover" and v == "" then
          d.serverNoContextTakeover = true
          resp[#resp + 1] = k
        elseif k == "client_no_context_takeover" and v == "" then
          d.clientNoContextTakeover = true
          resp[#resp + 1] = k
        elseif k == "server_max_window_bits" and bits and bits >= 8 and bits <= 15 then
          d.serverMaxWindowBits = math.tointeger(bits)
          resp[#resp + 1] = k .. "=" .. v
        elseif k == "client_max_window_bits" and (v == "" or (bits and bits >= 8 and bits <= 15)) then
          if bits then
            d.clientMaxWindowBits = math.tointeger(bits)
            resp[#resp + 1] = k .. "=" .. v
          end
        else
          ok = false
          break
        end
      end
      if ok then
        if type(want) == "table" then -- the server's own wishes
          if want.serverNoContextTakeover and not d.serverNoContextTakeover then
            d.serverNoContextTakeover = true
            resp[#resp + 1] = "server_no_context_takeover"
          end
          if want.serverMaxWindowBits and not d.serverMaxWindowBits then
            d.serverMaxWindowBits = want.serverMaxWindowBits
            resp[#resp + 1] = "server_max_window_bits=" .. want.serverMaxWindowBits
          end
        end
        if next(d) == nil then d = true end
        return d, table.concat(resp, "; ")
      end
    end
  end
  return nil
end

local function is_key(k)
  return type(k) == "string" and #k == 24 and k:match("^[A-Za-z0-9+/]+[AQgw]==$") ~= nil
end

-- A minimal response object for the plain HTTP requests of ws.server (its
-- `http` handler): res:status, res:header, res:send as in lupine.http.
local Res = {}
Res.__index = Res
function Res:status(code)
  if code == nil then return self._status end
  self._status = code
  return self
end
function Res:header(name, ...)
  if select("#", ...) == 0 then -- a getter, by any case of the name
    for k, v in pairs(self._headers) do if k:lower() == name:lower() then return v end end
    return nil
  end
  self._headers[name] = ...
  return self
end
function Res:send(status, body, headers)
  if self._done then error("res:send: the response is already finished", 2) end
  if type(status) ~= "number" then status, body, headers = self._status, status, body end
  for k, v in pairs(headers or {}) do self._headers[k] = v end
  self._done = true
  if self.ctx.channel:isOpen() then
    self.ctx:writeAndFlush { status = status, headers = self._headers, body = body or "" }
  end
end
function Res:finished() return self._done == true end

-- The connection object handed to onOpen, onMessage and onClose.
local Conn = {}
Conn.__index = Conn
-- conn:send(msg): a string (text), a Buffer (binary) or a ws.* table; a Future.
function Conn:send(msg) return self.channel:writeAndFlush(msg) end
-- conn:close([code [, reason]]): the close handshake with that code (1000).
function Conn:close(code, reason)
  if not self.channel:isOpen() then return end
  if self._sent == nil then self._sent = { code or 1000, reason or "" } end
  if code then return self.channel:writeAndFlush(native.close(code, reason)) end
  return self.channel:close()
end

local server_fields = {
  path = true, onOpen = true, onMessage = true, onClose = true, subprotocols = true, selectProtocol = true,
  checkOrigin = true, maxMessageSize = true, deflate = true, pingInterval = true, http = true,
  maxBody = true, headerTimeout = true, maxHeaderSize = true, maxHeaders = true, maxInitialLineLength = true,
}

-- ws.server{ path = "/", onOpen(ws), onMessage(ws, msg), onClose(ws, code, reason),
--   subprotocols = { ... } or selectProtocol(offered, req), checkOrigin(origin, req),
--   maxMessageSize, deflate = false, pingInterval = 0, http = fn(req, res), app fields }
function M.server(spec)
  if type(spec) ~= "table" then error("ws.server: expected a table { onMessage = fn, ... }", 2) end
  local app, o = {}, {}
  for k, v in pairs(spec) do
    if server_fields[k] then o[k] = v else app[k] = v end
  end
  for _, k in ipairs { "onOpen", "onMessage", "onClose", "selectProtocol", "checkOrigin" } do
    if o[k] ~= nil and type(o[k]) ~= "function" then error(("ws.server: '%s' must be a function"):format(k), 2) end
  end
  if o.http ~= nil and type(o.http) ~= "function" and not (getmetatable(o.http) or {}).__call then
    error("ws.server: 'http' must be a function(req, res) or a router", 2)
  end
  if o.subprotocols ~= nil and type(o.subprotocols) ~= "table" then
    error("ws.server: 'subprotocols' must be a list of names", 2)
  end
  local path = o.path or "/"
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then error("ws.server: 'path' must start with '/'", 2) end
  local ping = o.pingInterval or 0
  if type(ping) ~= "number" or ping < 0 then error("ws.server: 'pingInterval' must be seconds >= 0", 2) end
  local codec_opts = { maxBody = o.maxBody or 65536, headerTimeout = o.headerTimeout, maxHeaderSize = o.maxHeaderSize,
    maxHeaders = o.maxHeaders, maxInitialLineLength = o.maxInitialLineLength }
  local http_codec = core._http.serverCodec(codec_opts)
  native.frameCodec { maxMessageSize = o.maxMessageSize } -- checks the option now, not per connection
  local agg = require("lupine.http").aggregator { maxBody = codec_opts.maxBody }

  local function refuse(ctx, status, text, headers)
    headers = headers or {}
    headers["Content-Type"] = "text/plain"
    ctx:writeAndFlush { status = status, headers = headers, body = text .. "\n" }
  end

  local function plain(ctx, req)
    local res = setmetatable({ ctx = ctx, _status = 200, _headers = {} }, Res)
    if o.http then
      local ok, err = pcall(o.http, req, res)
      if not ok then
        lupine.log("error", ctx.channel, "ws.server: http handler raised: " .. tostring(err))
        if not res._done then res:send(500, "Internal Server Error\n") end
      end
    else
      res:send(404, "Not Found\n")
    end
  end

  -- The WebSocket side of one connection once the handshake is done.
  local function open(ch, req, protocol, deflate)
    local conn = setmetatable({ channel = ch, request = req, protocol = protocol, extensions = deflate }, Conn)
    local opened, code, reason = false, nil, nil
    local function start()
      if opened then return end
      opened = true
      if o.onOpen then o.onOpen(conn) end
    end
    local App = { name = "wsServer" }
    function App:channelRead(_, msg)
      start()
      if o.onMessage then o.onMessage(conn, msg)
      elseif getmetatable(msg) == "lupine.Buffer" then msg:release() end
    end
    function App:userEventTriggered(ctx, ev)
      if type(ev) == "table" and ev.kind == "wsClose" then
        code, reason = ev.code, ev.reason
      elseif type(ev) == "table" and ev.kind == "idle" then
        -- silent for pingInterval: ping; silent for another one: the peer is gone
        if ev.first then ctx:writeAndFlush(native.ping("")) else ch:writeAndFlush(native.close(1001, "no pong")) end
      else
        ctx:fireUserEventTriggered(ev)
      end
    end
    function App:exceptionCaught(ctx, err)
      local text = tostring(type(err) == "table" and err.message or err)
      local c = type(err) == "table" and tostring(err.kind):find("^Ws") and text:match("%((%d+)%)$")
      if c then -- the codec sent its close frame already
        code, reason = tonumber(c), text
        return ctx:close()
      end
      -- a handler raised: the error goes to the log, the peer gets 1011 without details
      lupine.log("error", ch, "ws.server: " .. text)
      if not conn._sent and ch:isOpen() then
        conn._sent = { 1011, "internal error" }
        ch:writeAndFlush(native.close(1011, "internal error"))
      end
    end
    function App:channelInactive()
      -- the peer's close frame, else our own (the channel closes once it is written), else 1006
      local sent = conn._sent or {}
      if opened and o.onClose then o.onClose(conn, code or sent[1] or 1006, reason or sent[2] or "") end
    end
    return App, start
  end

  local Upgrade = { name = "wsUpgrade" }
  function Upgrade:channelRead(ctx, req)
    if type(req) ~= "table" or not req.method then return ctx:fireChannelRead(req) end
    local h = req.headers
    if not has_token(h.upgrade, "websocket") then return plain(ctx, req) end
    if req.path ~= path then return refuse(ctx, 404, "Not Found") end
    if req.method ~= "GET" or req.version ~= "1.1" or not has_token(h.connection, "upgrade") then
      return refuse(ctx, 400, "Bad Request: a WebSocket handshake is a GET over HTTP/1.1 with Connection: Upgrade")
    end
    if h["sec-websocket-version"] ~= "13" then
      return refuse(ctx, 426, "Upgrade Required: WebSocket version 13", { ["Sec-WebSocket-Version"] = "13" })
    end
    local key = h["sec-websocket-key"]
    if not is_key(key) then return refuse(ctx, 400, "Bad Request: Sec-WebSocket-Key is not 16 bytes of base64") end
    if o.checkOrigin and not o.checkOrigin(h.origin, req) then return refuse(ctx, 403, "Forbidden: origin not allowed") end
    local offered = {}
    for p in (h["sec-websocket-protocol"] or ""):gmatch("[^,%s]+") do offered[#offered + 1] = p end
    local protocol
    if o.selectProtocol then
      protocol = o.selectProtocol(offered, req)
    elseif o.subprotocols then
      for _, mine in ipairs(o.subprotocols) do
        for _, p in ipairs(offered) do if p == mine and not protocol then protocol = p end end
      end
    end
    if protocol ~= nil then
      local found = false
      for _, p in ipairs(offered) do if p == protocol then found = true end end
      if not found then error(("ws.server: the selected subprotocol '%s' was not offered"):format(tostring(protocol))) end
    end
    local deflate, ext
    if o.deflate then deflate, ext = negotiate_deflate(h["sec-websocket-extensions"], o.deflate) end
    local ch = ctx.channel
    ctx:writeAndFlush { status = 101, headers = { Upgrade = "websocket", Connection = "Upgrade",
      ["Sec-WebSocket-Accept"] = native._accept(key), ["Sec-WebSocket-Protocol"] = protocol,
      ["Sec-WebSocket-Extensions"] = ext } }
    local p = ch.pipeline
    local App, start = open(ch, req, protocol, deflate)
    p:addAfter("wsUpgrade", "ws", native.frameCodec { maxMessageSize = o.maxMessageSize, deflate = deflate or false })
    p:addAfter("ws", "wsServer", App)
    if ping > 0 then p:addBefore("ws", "wsIdle", handler.idleState { readerIdle = ping }) end
    p:remove("wsUpgrade")
    p:remove("httpAggregator")
    p:remove("http") -- the bytes after the request go on to the frame codec, untouched
    if ch:isOpen() then start() end
  end

  app.name = app.name or "ws"
  app.init = function(ch)
    ch.pipeline:addLast("http", http_codec)
    ch.pipeline:addLast("httpAggregator", agg)
    ch.pipeline:addLast("wsUpgrade", Upgrade)
  end
  return lupine.app(app)
end


-- ---- the client ----------------------------------------------------------------------------------

local function failure(kind, message) return { kind = kind, message = kind .. ": " .. message } end

-- A client connection: conn:send(msg), conn:close([code, reason]),
-- conn:receive() (a Future of the next message, when no onMessage was given),
-- conn.protocol, conn.channel, conn.closeFuture (a Future of { code, reason }).
local Client = {}
Client.__index = Client
Client.send = Conn.send
Client.close = Conn.close
function Client:receive()
  local p = lupine.promise()
  if #self._queue > 0 then
    p:setSuccess(table.remove(self._queue, 1))
  elseif self._ended then
    p:setFailure(failure("ClosedChannel", "the WebSocket connection is closed"))
  else
    self._waiting[#self._waiting + 1] = p
  end
  return p
end

local connect_fields = { tls = true, protocols = true, headers = true, origin = true, maxMessageSize = true, deflate = true,
  timeout = true, onMessage = true, onClose = true }
local MAX_HEAD = 16384

-- ws.connect(url, { protocols, headers, origin, maxMessageSize, deflate, timeout = 30,
--   onMessage(conn, msg), onClose(conn, code, reason) }) -> a Future of the connection.
local ws_schemes = { ws = 80, wss = 443 }
-- wss:// without a tls table: verification against the system's CAs (one table: one factory).
local default_tls = {}

function M.connect(url, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("ws.connect: options must be a table", 2) end
  for k in pairs(opts) do
    if not connect_fields[k] then error(("ws.connect: unknown option '%s'"):format(tostring(k)), 2) end
  end
  local host, port, target, authority, scheme = require("lupine.http")._parseUrl(url, ws_schemes)
  if not host then error("ws.connect: " .. port, 2) end
  local tls = opts.tls
  if tls ~= nil and type(tls) ~= "table" then error("ws.connect: 'tls' must be a table of lupine.tls.client options", 2) end
  if tls and scheme ~= "wss" then error("ws.connect: option 'tls' needs a wss:// url", 2) end
  if scheme == "wss" then tls = tls or default_tls end
  local timeout = opts.timeout or 30
  if type(timeout) ~= "number" or timeout <= 0 then error("ws.connect: 'timeout' must be seconds > 0", 2) end
  for _, k in ipairs { "onMessage", "onClose" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then error(("ws.connect: '%s' must be a function"):format(k), 2) end
  end
  native.frameCodec { server = false, maxMessageSize = opts.maxMessageSize } -- checks the option now
  local key = native._key()
  local lines = { ("GET %s HTTP/1.1"):format(target), "Host: " .. authority, "Upgrade: websocket",
    "Connection: Upgrade", "Sec-WebSocket-Key: " .. key, "Sec-WebSocket-Version: 13" }
  local offered = {}
  if opts.protocols then
    for _, p in ipairs(opts.protocols) do offered[p] = true end
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. table.concat(opts.protocols, ", ")
  end
  if opts.deflate then lines[#lines + 1] = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits" end
  if opts.origin then lines[#lines + 1] = "Origin: " .. opts.origin end
  for k, v in pairs(opts.headers or {}) do
    if not tostring(k):match("^[%w!#$%%&'*+.^_`|~-]+$") or tostring(v):find("[\r\n%z]") then
      error(("ws.connect: bad header '%s'"):format(tostring(k)), 2)
    end
    lines[#lines + 1] = k .. ": " .. tostring(v)
  end
  local request = table.concat(lines, "\r\n") .. "\r\n\r\n"

  local promise = lupine.promise()
  local conn = setmetatable({ url = url, _queue = {}, _waiting = {}, closeFuture = lupine.promise() }, Client)
  local code, reason
  local timer = lupine.loop():schedule(timeout, function()
    if promise:isDone() then return end
    promise:setFailure(failure("Timeout", ("no WebSocket handshake within %g s"):format(timeout)))
    if conn.channel then conn.channel:close() end
  end)
  local function fail(err)
    if promise:isDone() then return end
    timer:cancel()
    promise:setFailure(err)
    if conn.channel then conn.channel:close() end
  end

  local App = { name = "wsClient" }
  function App:channelRead(_, msg)
    if opts.onMessage then return opts.onMessage(conn, msg) end
    local w = table.remove(conn._waiting, 1)
    if w then w:setSuccess(msg) else conn._queue[#conn._queue + 1] = msg end
  end
  function App:userEventTriggered(ctx, ev)
    if type(ev) == "table" and ev.kind == "wsClose" then code, reason = ev.code, ev.reason
    else ctx:fireUserEventTriggered(ev) end
  end
  function App:exceptionCaught(ctx, err)
    local c = tostring(type(err) == "table" and err.message or err):match("%((%d+)%)$")
    code, reason = tonumber(c) or 1011, tostring(type(err) == "table" and err.message or err)
    ctx:close()
  end
  function App:channelInactive()
    conn._ended = true
    local sent = conn._sent or {}
    code, reason = code or sent[1] or 1006, reason or sent[2] or ""
    for _, w in ipairs(conn._waiting) do
      w:setFailure(failure("ClosedChannel", "the WebSocket connection is closed"))
    end
    conn._waiting = {}
    if opts.onClose then opts.onClose(conn, code, reason) end
    conn.closeFuture:setSuccess({ code = code, reason = reason })
  end

  local acc = ""
  local Handshake = { name = "wsHandshake" }
  function Handshake:channelRead(ctx, buf)
    acc = acc .. buf:readString()
    local stop = acc:find("\r\n\r\n", 1, true)
    if not stop then
      if #acc > MAX_HEAD then fail(failure("WsHandshakeFailed", ("response head over %d bytes"):format(MAX_HEAD))) end
      return
    end
    local head, rest = acc:sub(1, stop - 1), acc:sub(stop + 4)
    local status, text = head:match("^HTTP/1%.1 (%d%d%d) ?([^\r]*)")
    local h = {}
    for line in (head .. "\r\n"):gmatch("([^\r\n]*)\r\n") do
      local k, v = line:match("^([^:]+):%s*(.-)%s*$")
      if k then
        k = k:lower()
        h[k] = h[k] and (h[k] .. ", " .. v) or v
      end
    end
    if status ~= "101" then
      return fail(failure("WsHandshakeFailed", ("the server answered %s %s"):format(status or "?", text or "")))
    end
    if not has_token(h.upgrade, "websocket") or not has_token(h.connection, "upgrade") then
      return fail(failure("WsHandshakeFailed", "101 without Upgrade: websocket and Connection: Upgrade"))
    end
    if h["sec-websocket-accept"] ~= native._accept(key) then
      return fail(failure("WsHandshakeFailed", "Sec-WebSocket-Accept does not match the key"))
    end
    local protocol = h["sec-websocket-protocol"]
    if protocol and not offered[protocol] then
      return fail(failure("WsHandshakeFailed", ("the server chose subprotocol '%s', not offered"):format(protocol)))
    end
    local deflate = false
    if h["sec-websocket-extensions"] then
      deflate = opts.deflate and negotiate_deflate(h["sec-websocket-extensions"])
      if not deflate then
        return fail(failure("WsHandshakeFailed", "the server chose an extension not offered: " .. h["sec-websocket-extensions"]))
      end
    end
    conn.protocol, conn.extensions, conn.response = protocol, deflate or nil, { status = 101, headers = h }
    local p = ctx.channel.pipeline
    p:addAfter("wsHandshake", "ws", native.frameCodec { server = false, maxMessageSize = opts.maxMessageSize,
      deflate = deflate })
    p:addAfter("ws", "wsClient", App)
    timer:cancel()
    promise:setSuccess(conn)
    if #rest > 0 then ctx:fireChannelRead(native.binary(rest)) end -- frames in the same packet as the 101
    p:remove("wsHandshake")
  end
  function Handshake:channelInactive()
    fail(failure("ClosedChannel", "the connection closed during the WebSocket handshake"))
  end
  function Handshake:exceptionCaught(ctx, err)
    fail(err)
    ctx:close()
  end

  lupine.connect {
    host = host, port = port, timeout = math.min(timeout, 30), tls = tls,
    init = function(ch)
      conn.channel = ch
      ch.pipeline:addLast("wsHandshake", Handshake)
    end,
  }:addListener(function(f)
    if not f:isSuccess() then return fail(f:cause()) end
    if promise:isDone() then return f:get():close() end
    f:get():writeAndFlush(request)
  end)
  return promise
end

return M
