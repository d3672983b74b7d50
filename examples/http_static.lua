-- examples/http_static.lua: files from one directory over HTTP, sent with sendfile(2).
--   ROOT=/usr/share/doc lua5.4 examples/http_static.lua     serve inline on 127.0.0.1:8082 (PORT=...)
--   curl -s http://127.0.0.1:8082/files/README.md -o copy.md
-- res:send(200, lupine.file(path)) writes the head (Content-Length: the file's size)
-- and queues the file itself: its bytes go from the page cache to the socket in the
-- kernel, never through a Lua string or a Buffer. Names are one path segment (the
-- router's :name matches no "/"), and names starting with a dot are refused, so a
-- request cannot leave ROOT.
local lupine = require "lupine"
local http = require "lupine.http"

-- The directory served; the app's `static` field, so that a spec can point it elsewhere.
local static = { root = os.getenv("ROOT") or "." }

local types = { html = "text/html", txt = "text/plain", md = "text/plain", json = "application/json",
  css = "text/css", js = "text/javascript", png = "image/png", jpg = "image/jpeg" }

local router = http.router()

router:get("/files/:name", function(req, res)
  local name = req.params.name
  if name:find("^%.") or name:find("%z") or name:find("%%") then return res:send(404, "Not Found\n") end
  local file, err, kind = lupine.file(static.root .. "/" .. name)
  if not file then
    if kind == "ENOENT" or kind == "EINVAL" then return res:send(404, "Not Found\n") end -- absent, or a directory
    lupine.log("warn", "http_static: " .. err)
    return res:send(500, "Internal Server Error\n")
  end
  res:header("Content-Type", types[name:match("%.(%w+)$") or ""] or "application/octet-stream")
  res:send(200, file) -- Content-Length: file.length; the file closes once sent
end)

return http.server {
  name = "http_static",
  port = tonumber(os.getenv("PORT")) or 8082,
  static = static,
  handler = router,
}
