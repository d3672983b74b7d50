-- An HTTP app whose handler raises on /boom and after starting a stream on /late.
local http = require "lupine.http"
return http.server {
  name = "http_raises",
  handler = function(req, res)
    if req.path == "/boom" then error("secret detail 42") end
    if req.path == "/late" then
      res:write("partial")
      error("late failure")
    end
    res:send(200, "fine\n")
  end,
}
