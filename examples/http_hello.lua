-- examples/http_hello.lua: the smallest HTTP server, answering "hello" to everything.
--   lua5.4 examples/http_hello.lua         serve inline on 127.0.0.1:8080
--   lupine -w 2 examples/http_hello.lua    serve with the launcher
--   curl -i http://127.0.0.1:8080/         then: wrk -t1 -c50 -d5s http://127.0.0.1:8080/
-- Parsing and the response's encoding are native: one Lua call per request.
local http = require "lupine.http"

return http.server {
  name = "http_hello",
  port = tonumber(os.getenv("PORT")) or 8080,
  handler = function(req, res) res:send(200, "hello\n") end,
}
