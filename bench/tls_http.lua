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

function Http:channelRead(ctx, buf)
  local attr = ctx.channel.attr
  local data = (attr.rest or "") .. buf:readString()
  local pos = 1
  while true do
    local e = data:find("\r\n\r\n", pos, true)
    if not e then break end
    local head = data:sub(pos, e)
    pos = e + 4
    local close = head:find("\n[Cc]onnection: *close") ~= nil
    local path = head:match("^GET (%S+)")
    ctx:write(answers[close][path == "/16k" and "big" or "hello"])
    if close then
      ctx:flush()
      ctx:close()
      return
    end
  end
  attr.rest = pos <= #data and data:sub(pos) or nil
end

function Http:channelReadComplete(ctx) ctx:flush() end

function Http:exceptionCaught(ctx) ctx:close() end

return lupine.app {
  name = "tls_http",
  port = tonumber(os.getenv("PORT")) or 8443,
  tls = { cert = os.getenv("TLS_CERT"), key = os.getenv("TLS_KEY"), minVersion = "1.3" },
  init = function(ch) ch.pipeline:addLast("http", Http) end,
}
