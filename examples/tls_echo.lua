-- examples/tls_echo.lua: the echo server (examples/echo.lua) over TLS.
--   lupine --tls-cert server.pem --tls-key server.key examples/tls_echo.lua
--   TLS_CERT=server.pem TLS_KEY=server.key lua5.4 examples/tls_echo.lua
-- then: openssl s_client -connect 127.0.0.1:8443 -CAfile ca.pem
-- The app's `tls` field puts a TLS handler first in every accepted pipeline;
-- its OpenSSL context is built once per worker. The launcher's --tls-cert and
-- --tls-key override cert and key.
local lupine = require "lupine"

local Echo = { name = "echo" }

function Echo:channelRead(ctx, buf)
  ctx:write(buf) -- plaintext: the TLS handler before this one encrypts it
end

function Echo:channelReadComplete(ctx)
  ctx:flush()
end

function Echo:userEventTriggered(ctx, ev)
  if ev.kind == "tlsHandshake" and ev.success then
    lupine.log("debug", ctx.channel, ("%s %s alpn=%s sni=%s"):format(ev.protocol, ev.cipher, ev.alpn, ev.serverName))
  end
end

-- Peers that reset, vanish or fail the handshake are routine for a server.
local routine = { ECONNRESET = true, EPIPE = true, ETIMEDOUT = true, TlsHandshakeFailed = true,
  TlsHandshakeTimeout = true, TlsTruncated = true }

function Echo:exceptionCaught(ctx, err)
  local kind = type(err) == "table" and err.kind
  lupine.log(routine[kind] and "debug" or "warn", ctx.channel, tostring(err))
  ctx:close()
end

return lupine.app {
  name = "tls_echo",
  port = tonumber(os.getenv("PORT")) or 8443,
  tls = {
    cert = os.getenv("TLS_CERT") or "server.pem",
    key = os.getenv("TLS_KEY") or "server.key",
    alpn = { "echo" },
  },
  init = function(ch)
    ch.pipeline:addLast("echo", Echo)
  end,
}
