-- bench/tls_http.lua: the lupine side of bench/tls.sh: lupine's own HTTP
-- server (lupine.http.server, the native codec) behind its TLS handler, the
-- HTTPS a user would run. /16k answers 16 KiB, anything else "hello\n";
-- "Connection: close" is honoured by the codec (full handshakes per second).
--   TLS_CERT=... TLS_KEY=... lupine -w 1 -p 0 bench/tls_http.lua
local http = require "lupine.http"

local big, hello = ("x"):rep(16384), "hello\n"

return http.server {
  name = "tls_http",
  port = tonumber(os.getenv("PORT")) or 8443,
  tls = { cert = os.getenv("TLS_CERT"), key = os.getenv("TLS_KEY"), minVersion = "1.3" },
  handler = function(req, res) res:send(200, req.path == "/16k" and big or hello) end,
}
