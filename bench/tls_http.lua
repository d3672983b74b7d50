-- bench/tls_http.lua: the TLS side of bench/tls.sh. A bench-only HTTP/1.1
-- responder (GET requests, no body, no pipelining limits), not an HTTP
-- server: it stands in for lupine's HTTP codec so that the TLS handler can be
-- measured against nginx under wrk. /16k answers 16 KiB, anything else
-- "hello\n"; "Connection: close" is honoured (full handshakes per second).
--   TLS_CERT=... TLS_KEY=... lupine -w 1 -p 0 bench/tls_http.lua
local lupine = require "lupine"

local function response(body, close)
  return ("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s"):format(#body,
    close and "Connection: close\r\n" or "", body)
end
local big, hello = ("x"):rep(16384), "hello\n"
local answers = {
  [true] = { big = response(big, true), hello = response(hello, true) },
  [false] = { big = response(big, false), hello = response(hello, false) },
}

local Http = { name = "http" }
local rests = setmetatable({}, { __mode = "k" }) -- ctx -> the start of a request not yet whole

-- Plain finds, no captures or substrings per request: the C HTTP codec this
-- stands in for would not make Lua strings for headers either.
function Http:channelRead(ctx, buf)
  local data = buf:readString()
  local rest = rests[ctx]
  if rest then
    data = rest .. data
    rests[ctx] = nil
  end
  local pos = 1
  while true do
    local e = data:find("\r\n\r\n", pos, true)
    if not e then break end
    local c = data:find("onnection: close", pos, true)
    local close = c ~= nil and c < e
    local big = data:find("GET /16k ", pos, true) == pos
    ctx:write(answers[close][big and "big" or "hello"])
    if close then
      ctx:flush()
      ctx:close()
      return
    end
    pos = e + 4
  end
  if pos <= #data then rests[ctx] = data:sub(pos) end
end

function Http:channelReadComplete(ctx) ctx:flush() end

function Http:exceptionCaught(ctx) ctx:close() end

return lupine.app {
  name = "tls_http",
  port = tonumber(os.getenv("PORT")) or 8443,
  tls = { cert = os.getenv("TLS_CERT"), key = os.getenv("TLS_KEY"), minVersion = "1.3" },
  init = function(ch) ch.pipeline:addLast("http", Http) end,
}
