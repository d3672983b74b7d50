-- lupine.http.request (the client) and the test kit's test.http, against
-- lupine's own server and against hand-written responses over a socket.
local lupine = require "lupine"
local test = require "lupine.test"
local http = lupine.http

-- A server that answers every request with the bytes answer(req_text) returns
-- (nil: stay silent), closing after when close is set.
local function raw_server(answer, close)
  return test.server(function(ch)
    local got = ""
    ch.pipeline:addLast("raw", { channelRead = function(_, ctx, buf)
      got = got .. buf:readString()
      local head = got:match("^(.-\r\n\r\n)")
      if not head then return end
      got = got:sub(#head + 1)
      local reply = answer(head)
      if reply then
        local f = ctx:writeAndFlush(reply, lupine.promise())
        if close then f:addListener(function() ctx:close() end) end
      end
    end })
  end)
end

describe("lupine.http.request", function()
  local server, calls
  setup(function()
    calls = 0
    server = test.server(http.server { handler = function(req, res)
      calls = calls + 1
      if req.path == "/stream" then
        for i = 1, 3 do res:write("chunk" .. i .. ";") end
        return res:finish()
      end
      if req.path == "/big" then return res:send(("x"):rep(5000)) end
      res:header("X-Method", req.method)
      res:send(200, req.method .. " " .. req.target .. " " .. req.body .. " " .. tostring(req:header("x-thing")))
    end })
  end)
  teardown(function()
    http.closeIdle()
    local loop = lupine.loop()
    loop:runUntil(function() return loop:channelCount() == 0 end, 5, "the client's connections to close")
    server:close()
  end)
  local function url(path) return ("http://127.0.0.1:%d%s"):format(server.port, path) end

  it("returns a future of the response, and reuses the kept-alive connection", function()
    local before = server.accepted
    local r = http.request { method = "POST", url = url("/a?b=c"), headers = { ["X-Thing"] = "t" }, body = "hi" }:sync()
    assert.equal(200, r.status)
    assert.equal("OK", r.reason)
    assert.equal("POST /a?b=c hi t", r.body)
    assert.equal("POST", r.headers["x-method"])
    assert.equal("POST", r:header("X-METHOD"))
    assert.is_true(r.keepAlive)
    for i = 1, 3 do
      assert.equal("GET /" .. i .. "  nil", http.get(url("/" .. i)):sync().body)
    end
    assert.equal(before + 1, server.accepted)
  end)

  it("reads chunked bodies whole", function()
    assert.equal("chunk1;chunk2;chunk3;", http.get(url("/stream")):sync().body)
  end)

  it("gets no body for HEAD", function()
    local r = http.head(url("/big")):sync()
    assert.equal("5000", r.headers["content-length"])
    assert.equal("", r.body)
    assert.equal(5000, #http.get(url("/big")):sync().body) -- the connection still frames right
  end)

  it("fails past maxBody with HttpBodyTooLarge", function()
    local ok, err = pcall(function() return http.get(url("/big"), { maxBody = 100 }):sync() end)
    assert.is_false(ok)
    assert.equal("HttpBodyTooLarge", err.kind)
  end)

  it("reads a body that runs to the close", function()
    local s = raw_server(function() return "HTTP/1.1 200 OK\r\n\r\nuntil the end" end, true)
    local r = test.http.get(("http://127.0.0.1:%d/"):format(s.port))
    assert.equal("until the end", r.body)
    assert.is_false(r.keepAlive)
    s:close()
  end)

  it("fails on a bad response with HttpBadResponse", function()
    local s = raw_server(function() return "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" end)
    local ok, err = pcall(test.http.get, ("http://127.0.0.1:%d/"):format(s.port))
    assert.is_false(ok)
    assert.equal("HttpBadResponse", err.kind)
    s:close()
  end)

  it("times out", function()
    local s = raw_server(function() return nil end)
    local ok, err = pcall(test.http.get, ("http://127.0.0.1:%d/"):format(s.port), { timeout = 0.2 })
    assert.is_false(ok)
    assert.equal("Timeout: no response within 0.2 s", tostring(err.message or err))
    s:close()
  end)

  it("fails when the connection is refused", function()
    local port = test.freePort()
    local ok, err = pcall(test.http.get, ("http://127.0.0.1:%d/"):format(port))
    assert.is_false(ok)
    assert.equal(("ECONNREFUSED: Connection refused (connect to 127.0.0.1:%d)"):format(port), tostring(err))
  end)

  it("reconnects when the server closed the kept-alive connection", function()
    local chans = {}
    local s = test.server(http.server { headerTimeout = 0.1, handler = function(_, res) res:send("ok") end },
      { channels = chans })
    local u = ("http://127.0.0.1:%d/"):format(s.port)
    assert.equal("ok", test.http.get(u).body)
    test.eventually(function() return not chans[1]:isOpen() end, 5, "the server to close the idle connection")
    assert.equal("ok", test.http.get(u).body)
    assert.equal(2, s.accepted)
    s:close()
  end)

  it("refuses bad arguments", function()
    assert.has_error(function() http.request { url = "ftp://x/" } end, "http.request: scheme 'ftp' is not supported (http and https only)")
    assert.has_error(function() http.request { url = "http://h/", bogus = 1 } end, "http.request: unknown option 'bogus'")
    assert.has_error(function() http.request { url = "http://h/", method = "G T" } end, "http.request: 'method' must be a token")
  end)


  it("closes its idle connections on closeIdle", function()
    test.http.get(url("/"))
    local loop = lupine.loop()
    assert.is_true(loop:channelCount() > 0)
    http.closeIdle()
    loop:runUntil(function() return loop:channelCount() == 0 end, 5, "the client's connections to close")
  end)

  it("is what test.http's helpers wait for", function()
    assert.equal("POST / body nil", test.http.post(url("/"), "body").body)
    assert.equal("PUT / x nil", test.http.put(url("/"), "x").body)
    assert.equal("DELETE /d  nil", test.http.delete(url("/d")).body)
    assert.equal("PATCH /p y z", test.http.request { method = "PATCH", url = url("/p"), body = "y",
      headers = { ["X-Thing"] = "z" } }.body)
  end)
end)
