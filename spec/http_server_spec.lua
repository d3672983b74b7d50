-- lupine.http.server end to end: examples/http_hello.lua answering curl,
-- Python's http.client and raw pipelined bytes; the request and response
-- objects; streaming; asynchronous answers; faults (a raising handler,
-- slowloris, a client gone mid-body); the router.
local lupine = require "lupine"
local test = require "lupine.test"
local http = lupine.http

local build = os.getenv("LUPINE_BUILD") or "build"
local function nodate(s) return (s:gsub("Date: [^\r]*\r\n", "")) end

-- Run a program to its end while the loop serves; returns its output.
local run = require("proc").output

local function python(script, port)
  return run { "python3", "-c", script, tostring(port) }
end

-- An app's server, without serving it as a script (that is for `lua5.4 file`).
local function serve(spec)
  local app = http.server(spec)
  return test.server(app)
end

-- Start the launcher on app (one worker, port 0) with its stdout (and its
-- stderr too when with_stderr) in a temporary file; waits for the start-up
-- line. Returns the process, the port and the file's path (the caller stops
-- the one and removes the other).
local function launch(app, with_stderr)
  local out = os.tmpname()
  local p = test.spawn({ build .. "/lupine", "-w", "1", "-p", "0", app },
    { stdout = out, stderr = with_stderr and out or nil, env = { LD_PRELOAD = "" } })
  local port
  test.eventually(function()
    local f = io.open(out)
    local s = f and f:read("a") or ""
    if f then f:close() end
    port = tonumber(s:match("listening on 127%.0%.0%.1:(%d+)"))
    return port ~= nil
  end, 10, "the start-up line")
  return p, port, out
end

describe("examples/http_hello.lua", function()
  local leaks = leak_check()
  local app = dofile("examples/http_hello.lua")
  local server
  before_each(function() leaks.before() server = test.server(app) end)
  after_each(function() server:close() leaks.after() end)

  it("answers curl", function()
    local out, code = run { "curl", "-sS", "-i", ("http://127.0.0.1:%d/anything?x=1"):format(server.port) }
    assert.equal(0, code, out)
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n", nodate(out))
    assert.matches("\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n", out)
  end)

  it("answers Python's http.client, five requests on one kept-alive connection", function()
    local out, code = python([[
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for i in range(5):
    c.request("GET", "/%d" % i)
    r = c.getresponse()
    print(r.status, r.getheader("Content-Length"), repr(r.read()), r.will_close)
c.request("HEAD", "/")
r = c.getresponse()
print(r.status, r.getheader("Content-Length"), repr(r.read()))
c.close()
]], server.port)
    assert.equal(0, code, out)
    assert.equal(("200 6 b'hello\\n' False\n"):rep(5) .. "200 6 b''\n", out)
    assert.equal(1, server.accepted)
  end)

  it("answers 16 pipelined requests in order, in one batch", function()
    local c = test.client(server.port)
    c:send(("GET / HTTP/1.1\r\nHost: a\r\n\r\n"):rep(16))
    local one = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"
    local want = #nodate(c:received()) -- nothing yet, or part
    local got = ""
    test.eventually(function()
      local r = c:received() -- take what arrived (received() only looks)
      if #r > 0 then got = got .. c:receive(#r) end
      return #nodate(got) >= #one * 16
    end, 5, "16 responses")
    assert.equal(one:rep(16), nodate(got))
    assert.is_true(want >= 0)
    c:close()
  end)

  it("serves under the launcher", function()
    local p, port, out = launch("examples/http_hello.lua")
    local body, code = run { "curl", "-sS", ("http://127.0.0.1:%d/"):format(port) }
    assert.equal(0, code)
    assert.equal("hello\n", body)
    p:stop()
    os.remove(out)
  end)
end)

describe("lupine.http.server", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  it("gives the handler method, path, query, headers and body", function()
    local seen
    local server = serve { handler = function(req, res)
      seen = { req.method, req.path, req.query, req.target, req.version, req.headers["x-thing"], req:header("X-THING"),
        req.body }
      res:status(201):header("X-Reply", "yes"):header("Content-Type", "text/plain")
      res:send("got " .. #req.body)
    end }
    local out, code = run { "curl", "-sS", "-i", "-X", "POST", "-H", "X-Thing: abc", "--data-binary", "a\1b",
      ("http://127.0.0.1:%d/p/q?r=s&t"):format(server.port) }
    assert.equal(0, code, out)
    assert.same({ "POST", "/p/q", "r=s&t", "/p/q?r=s&t", "1.1", "abc", "abc", "a\1b" }, seen)
    assert.equal("HTTP/1.1 201 Created\r\nContent-Length: 5\r\ncontent-type: text/plain\r\nx-reply: yes\r\n\r\ngot 3",
      nodate(out):gsub("content%-type: text/plain\r\nx%-reply: yes", "content-type: text/plain\r\nx-reply: yes")
        :gsub("x%-reply: yes\r\ncontent%-type: text/plain", "content-type: text/plain\r\nx-reply: yes"))
    server:close()
  end)

  it("streams with res:write and res:finish (chunked), read by curl", function()
    local server = serve { handler = function(_, res)
      res:header("Content-Type", "text/plain")
      for i = 1, 3 do res:write(("part %d\n"):format(i)) end
      res:finish("end\n")
    end }
    local c = test.client(server.port)
    c:send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert.equal("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-type: text/plain\r\n\r\n"
      .. "7\r\npart 1\n\r\n7\r\npart 2\n\r\n7\r\npart 3\n\r\n4\r\nend\n\r\n0\r\n\r\n",
      nodate(c:receiveUntil("0\r\n\r\n") .. "0\r\n\r\n"))
    c:close()
    local out, code = run { "curl", "-sS", ("http://127.0.0.1:%d/"):format(server.port) }
    assert.equal(0, code)
    assert.equal("part 1\npart 2\npart 3\nend\n", out)
    server:close()
  end)

  it("answers later (from a timer) and keeps pipelined responses in order", function()
    local loop = lupine.loop()
    local server = serve { handler = function(req, res)
      local delay = req.path == "/slow" and 0.2 or 0
      loop:schedule(delay, function() res:send(200, req.path) end)
    end }
    local c = test.client(server.port)
    c:send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
    local got = nodate(c:receiveUntil("/fast") .. "/fast")
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n/slowHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n/fast", got)
    c:close()
    server:close()
  end)

  it("stops reading while pipelined input waits behind an unanswered request, then serves it all", function()
    local loop = lupine.loop()
    local chans, slow = {}, nil
    local server = test.server(http.server { handler = function(req, res)
      if req.path == "/slow" then slow = res return end
      res:send("k")
    end }, { channels = chans })
    local n = 4000
    local c = test.client(server.port)
    c:send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" .. ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"):rep(n))
    test.eventually(function() return slow ~= nil and not chans[1]:config():isAutoRead() end, 5, "reading to pause")
    slow:send("s")
    local one = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk"
    local got = ""
    test.eventually(function()
      local r = c:received() -- take what arrived (received() only looks)
      if #r > 0 then got = got .. c:receive(#r) end
      return #nodate(got) >= #one * (n + 1)
    end, 10, "every answer")
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ns" .. one:rep(n), nodate(got))
    assert.is_true(chans[1]:config():isAutoRead())
    c:close()
    loop:runUntil(function() return loop:channelCount() == 0 end, 5)
    server:close()
  end)

  it("lets a coroutine answer, after it yielded", function()
    local loop = lupine.loop()
    local server = serve { handler = function(req, res)
      local co = coroutine.create(function()
        res:header("X-Co", "yes")
        coroutine.yield()
        res:write("from ")
        coroutine.yield()
        res:finish("a coroutine " .. req.path)
      end)
      assert(coroutine.resume(co))
      local tick
      tick = loop:scheduleAtFixedRate(0.01, 0.01, function()
        assert(coroutine.resume(co))
        if coroutine.status(co) == "dead" then tick:cancel() end
      end)
    end }
    local out, code = run { "curl", "-sS", "-i", ("http://127.0.0.1:%d/p"):format(server.port) }
    assert.equal(0, code, out)
    assert.equal("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-co: yes\r\n\r\nfrom a coroutine /p", nodate(out))
    server:close()
  end)

  it("refuses a finished response, and says so", function()
    local err
    local server = serve { handler = function(_, res)
      res:send("once")
      err = select(2, pcall(res.send, res, "twice"))
    end }
    local c = test.client(server.port)
    c:send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    c:receiveUntil("once")
    assert.equal("res:send: the response is already finished", err)
    c:close()
    server:close()
  end)

  it("refuses bad response fields with a clear error", function()
    local errs = {}
    local server = serve { handler = function(_, res)
      errs[1] = select(2, pcall(res.header, res, "X-A", "a\r\nSet-Cookie: x=1"))
      errs[2] = select(2, pcall(res.header, res, "Content-Length", "3"))
      errs[3] = select(2, pcall(res.send, res, 200, {}))
      res:send(204)
    end }
    local c = test.client(server.port)
    c:send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert.equal("HTTP/1.1 204 No Content\r\n\r\n", nodate(c:receiveUntil("\r\n\r\n") .. "\r\n\r\n"))
    assert.same({ "res:header: bad header 'X-A' (names are tokens; values hold no CR, LF or NUL)",
      "res:header: 'Content-Length' is set by the server from the body",
      "res:send: the body must be a string or a lupine.Buffer, not a table" }, errs)
    c:close()
    server:close()
  end)

  it("answers 100 Continue to Expect: 100-continue before the body", function()
    local server = serve { handler = function(req, res) res:send(200, req.body) end }
    local c = test.client(server.port)
    c:send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert.equal("HTTP/1.1 100 Continue", c:receiveUntil("\r\n\r\n"))
    c:send("abc")
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", nodate(c:receive(#"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" + 37)))
    c:close()
    server:close()
  end)

  it("closes after answering HTTP/1.0 without keep-alive, and Connection: close", function()
    local server = serve { handler = function(_, res) res:send("x") end }
    local c = test.client(server.port)
    c:send("GET / HTTP/1.0\r\n\r\n")
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", nodate(c:receiveAll()))
    c:close()
    c = test.client(server.port)
    c:send("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\nHost: a\r\n\r\n")
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", nodate(c:receiveAll()))
    c:close()
    server:close()
  end)

  it("rejects bad options", function()
    assert.has_error(function() http.server { port = 0 } end,
      "http.server: option 'handler' must be a function(req, res) (or callable)")
    assert.has_error(function() http.server { handler = print, maxBody = 0 } end,
      "http.server: option 'maxBody' must be at least 1 (the body is aggregated)")
  end)
end)

describe("lupine.http.server faults", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  it("answers 500 to a handler that raises; the message goes to the log only; the connection stays", function()
    local p, port, out = launch("spec/apps/http_raises.lua", true)
    local c = test.client(port)
    c:send("GET /boom HTTP/1.1\r\nHost: a\r\n\r\n")
    local want = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 22\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nInternal Server Error\n"
    assert.equal(want, nodate(c:receive(#want + 37)))
    c:send("GET / HTTP/1.1\r\nHost: a\r\n\r\n") -- the same connection serves on
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfine\n", nodate(c:receive(37 + 43)))
    c:send("GET /late HTTP/1.1\r\nHost: a\r\n\r\n") -- failed after the head went: the connection closes
    assert.matches("^HTTP/1.1 200 OK\r\nTransfer%-Encoding: chunked\r\n\r\n7\r\npartial\r\n$", nodate(c:receiveAll()))
    c:close()
    local f = io.open(out)
    local log = f:read("a")
    f:close()
    assert.matches("http handler raised: spec/apps/http_raises.lua:6: secret detail 42", log, 1, true)
    assert.matches("http handler raised: spec/apps/http_raises.lua:9: late failure", log, 1, true)
    p:stop()
    os.remove(out)
  end)

  it("answers 408 and closes when a head trickles in a byte at a time (slowloris)", function()
    local called = false
    local server = serve { headerTimeout = 0.5, handler = function(_, res) called = true res:send("x") end }
    local c = test.client(server.port)
    local loop = lupine.loop()
    local head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    local i = 0
    local ticker = loop:scheduleAtFixedRate(0.1, 0.1, function()
      i = i + 1
      if i <= #head - 2 and c:isOpen() then c.channel:writeAndFlush(head:sub(i, i)) end
    end)
    local got = c:receiveAll(5)
    ticker:cancel()
    assert.equal("HTTP/1.1 408 Request Timeout\r\nContent-Length: 16\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nRequest Timeout\n", nodate(got))
    assert.is_false(called)
    assert.is_true(i >= 3 and i <= 20, "bytes sent before the 408: " .. i)
    c:close()
    server:close()
  end)

  it("closes an idle kept-alive connection after headerTimeout, silently", function()
    local server = serve { headerTimeout = 0.3, handler = function(_, res) res:send("x") end }
    local c = test.client(server.port)
    c:send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    local got = c:receiveAll(5)
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", nodate(got))
    c:close()
    server:close()
  end)

  it("answers 408 when a request body stalls for bodyTimeout, but not while it keeps coming", function()
    local calls = 0
    local server = serve { bodyTimeout = 0.4, headerTimeout = 0.4,
      handler = function(req, res) calls = calls + 1 res:send(#req.body .. "") end }
    -- a body that keeps coming, a piece every 0.15 s for 1.2 s: longer than either timeout in all
    local c = test.client(server.port)
    c:send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\n")
    for _ = 1, 8 do
      lupine.loop():runFor(0.15)
      c:send("x")
    end
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n8", nodate(c:receive(#"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n8" + 37)))
    -- then a body that stops
    c:send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf")
    local t0 = lupine.loop():now()
    local got = c:receiveAll(5)
    local took = lupine.loop():now() - t0
    assert.truthy(nodate(got):find("^HTTP/1.1 408 Request Timeout\r\n"), got)
    assert.truthy(took >= 0.3 and took < 3, took)
    assert.equal(1, calls)
    c:close()
    assert.has_error(function() http.server { handler = print, bodyTimeout = -1 } end,
      "http.server: option 'bodyTimeout' must be 0 (none) to 1e6 seconds")
    server:close()
  end)

  it("forgets a request whose client left mid-body, and serves on", function()
    local calls = 0
    local server = serve { handler = function(req, res) calls = calls + 1 res:send(req.body) end }
    local c = test.client(server.port)
    c:send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly part")
    c:close()
    local loop = lupine.loop()
    loop:runUntil(function() return loop:channelCount() == 0 end, 5)
    assert.equal(0, calls)
    local out, code = run { "curl", "-sS", "--data-binary", "next", ("http://127.0.0.1:%d/"):format(server.port) }
    assert.equal(0, code)
    assert.equal("next", out)
    assert.equal(1, calls)
    server:close()
  end)
end)

describe("lupine.http.router", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  local seen
  local router = http.router()
  router:get("/users/:id", function(req, res) seen = req.params res:send("user " .. req.params.id) end)
  router:delete("/users/:id", function(req, res) res:send(204) end)
  router:get("/files/*", function(req, res) res:send(req.params["*"]) end)
  local args
  router:get("/search", function(req, res) args = req:args() res:send("ok") end)
  local server
  setup(function() server = serve { handler = router } end)
  teardown(function() server:close() end)

  local function get(method, path)
    local c = test.client(server.port)
    c:send(("%s %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"):format(method, path))
    local got = nodate(c:receiveAll())
    c:close()
    return got
  end

  it("routes with parameters", function()
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nuser 7", get("GET", "/users/7"))
    assert.same({ id = "7" }, seen)
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\na/b/c", get("GET", "/files/a/b/c"))
    assert.equal("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", get("DELETE", "/users/7"))
  end)

  it("percent-decodes captures after splitting the path at '/'", function()
    get("GET", "/users/J%C3%BCrgen%20B")
    assert.same({ id = "J\u{fc}rgen B" }, seen)
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\na/b",
      get("GET", "/files/a%2Fb"))
    assert.equal("HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nNot Found\n",
      get("GET", "/users/a%2Fb/x"))
  end)

  it("parses the query with req:args()", function()
    get("GET", "/search?q=lua+pipes&tag=a&tag=b%26c&debug")
    assert.same({ q = "lua pipes", tag = { "a", "b&c" }, debug = true }, args)
    get("GET", "/search")
    assert.same({}, args)
  end)

  it("answers 404 and 405 with Allow", function()
    assert.equal("HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nNot Found\n", get("GET", "/nope"))
    assert.equal("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 19\r\nConnection: close\r\nallow: GET, DELETE\r\n\r\nMethod Not Allowed\n",
      get("POST", "/users/7"))
  end)
end)

describe("examples/http_hello.lua under wrk", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  it("serves a short load run without errors", function()
    local server = test.server(dofile("examples/http_hello.lua"))
    local out, code = run({ "wrk", "-t1", "-c10", "-d1s", "--timeout", "2s", ("http://127.0.0.1:%d/"):format(server.port) }, 20)
    assert.equal(0, code, out)
    local rps = tonumber(out:match("Requests/sec:%s+([%d%.]+)"))
    assert.is_true(rps ~= nil and rps > 100, out)
    assert.is_nil(out:find("Non-2xx", 1, true), out)
    assert.is_nil(out:find("Socket errors", 1, true), out)
    server:close()
  end)
end)
