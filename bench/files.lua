-- bench/files.lua: one file over HTTP two ways, for bench/files.sh.
--   /sendfile  res:send(200, lupine.file(FILE)): the head, then sendfile(2) from the page cache
--   /buffer    the file read into a Lua string per request (io.open, read "a"), then
--              res:send(200, s): copied into a Buffer, then written from user space
local lupine = require "lupine"
local http = require "lupine.http"

local path = assert(os.getenv("FILE"), "bench/files.lua: set FILE")

return http.server {
  name = "files",
  port = tonumber(os.getenv("PORT")) or 0,
  handler = function(req, res)
    if req.target == "/sendfile" then return res:send(200, assert(lupine.file(path))) end
    if req.target == "/buffer" then
      local f = assert(io.open(path, "rb"))
      local s = f:read("a")
      f:close()
      return res:send(200, s)
    end
    res:send(404, "Not Found\n")
  end,
}
