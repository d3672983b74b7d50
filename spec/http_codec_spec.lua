-- lupine.http.serverCodec, the aggregator and the response encoder: through
-- an embedded channel (exact bytes both ways) and over real sockets.
local lupine = require "lupine"
local test = require "lupine.test"
local http = lupine.http

local function drain(ch)
  local parts = {}
  for _ = 1, 1000 do
    local m = ch:readOutbound()
    if m == nil then break end
    parts[#parts + 1] = type(m) == "string" and m or m:readString()
  end
  return table.concat(parts)
end

local function nodate(s) return (s:gsub("Date: [^\r]*\r\n", "")) end

describe("lupine.http.serverCodec", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  it("fires a head table, body Buffers and END per request", function()
    local ch = test.embedded(http.serverCodec())
    ch:writeInbound("POST /up?x=1&y=2 HTTP/1.1\r\nHost: a\r\nX-Two: 1\r\nx-two: 2\r\nContent-Length: 5\r\n\r\nhel", "lo")
    local head = ch:readInbound()
    assert.same({ method = "POST", target = "/up?x=1&y=2", path = "/up", query = "x=1&y=2", version = "1.1",
      headers = { host = "a", ["x-two"] = "1, 2", ["content-length"] = "5" }, keepAlive = true }, head)
    assert.equal("a", head:header("HOST"))
    assert.is_nil(head:header("nope"))
    local body = {}
    local m = ch:readInbound()
    while m ~= http.END do
      assert.equal("lupine.Buffer", getmetatable(m))
      body[#body + 1] = m:readString()
      m = ch:readInbound()
    end
    assert.equal("hello", table.concat(body))
    assert.is_nil(ch:readInbound())
    ch:finish()
  end)

  it("decodes chunked bodies", function()
    local ch = test.embedded(http.serverCodec())
    ch:writeInbound("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert.equal("PUT", ch:readInbound().method)
    assert.equal("abc", ch:readInbound():readString())
    assert.equal("de", ch:readInbound():readString())
    assert.equal(http.END, ch:readInbound())
    ch:finish()
  end)

  it("encodes a response table with Content-Length and Date", function()
    local ch = test.embedded(http.serverCodec())
    ch:writeInbound("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    ch:writeOutbound { status = 201, headers = { ["Content-Type"] = "text/plain" }, body = "made\n" }
    local out = drain(ch)
    assert.truthy(out:match("\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n"))
    assert.equal("HTTP/1.1 201 Created\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nmade\n", nodate(out))
    ch:finish()
  end)

  it("sends no body to HEAD, keeps Content-Length", function()
    local ch = test.embedded(http.serverCodec())
    ch:writeInbound("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    ch:writeOutbound { status = 200, body = "hello\n" }
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", nodate(drain(ch)))
    ch:finish()
  end)

  it("streams chunks when stream = true, ended by http.END", function()
    local ch = test.embedded(http.serverCodec())
    ch:writeInbound("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    ch:writeOutbound({ status = 200, stream = true }, "ab", lupine.buffer("cde"), http.END)
    assert.equal("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n",
      nodate(drain(ch)))
    ch:finish()
  end)

  it("answers HTTP/1.0 by its rules: keep-alive said, streaming until close", function()
    local ch = test.embedded(http.serverCodec())
    ch:writeInbound("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n")
    ch:writeOutbound { status = 200, body = "a" }
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\na", nodate(drain(ch)))
    ch:writeOutbound({ status = 200, stream = true }, "xyz", http.END)
    assert.equal("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nxyz", nodate(drain(ch)))
    ch:finish()
  end)

  it("refuses header values that would split the response", function()
    local ch = test.embedded(http.serverCodec())
    ch:writeInbound("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    local f = ch.channel:writeAndFlush({ status = 200, headers = { ["X-A"] = "1\r\nSet-Cookie: evil=1" } }, lupine.promise())
    lupine._runPendingTasks()
    assert.is_false(f:isSuccess())
    assert.truthy(tostring(f:cause()):find("bad header 'X-A' (names are tokens; values hold no CR, LF or NUL)", 1, true))
    assert.equal("", drain(ch))
    ch:finish()
  end)

  it("refuses Content-Length set by hand", function()
    local ch = test.embedded(http.serverCodec())
    ch:writeInbound("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    local f = ch.channel:writeAndFlush({ status = 200, headers = { ["content-length"] = "3" }, body = "abc" }, lupine.promise())
    lupine._runPendingTasks()
    assert.truthy(tostring(f:cause()):find("'content-length' is set by the server from the body", 1, true))
    ch:finish()
  end)

  it("answers a refused request after the requests before it, answered later", function()
    local pending = {}
    local ch = test.embedded(http.serverCodec(), http.aggregator(), {
      channelRead = function(_, ctx, req) pending[#pending + 1] = { ctx, req.path } end,
    })
    ch:writeInbound("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost : a\r\n\r\n")
    assert.equal(2, #pending)
    assert.equal("", drain(ch)) -- the 400 waits for /a and /b
    for _, p in ipairs(pending) do p[1]:writeAndFlush { status = 200, body = p[2] } end
    ch:runPendingTasks()
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/aHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/b"
      .. "HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBad Request\n",
      nodate(drain(ch)))
    ch:finish()
  end)

  it("hands the bytes after an accepted upgrade to the next handler when removed", function()
    local Echo = { channelRead = function(_, ctx, buf) ctx:writeAndFlush(buf) end }
    local server = test.server(function(ch)
      ch.pipeline:addLast("http", http.serverCodec())
      ch.pipeline:addLast("agg", http.aggregator())
      ch.pipeline:addLast("app", { channelRead = function(_, ctx, req)
        if req:header("upgrade") == "echo" then
          ctx:writeAndFlush { status = 101, headers = { Upgrade = "echo", Connection = "Upgrade" } }
          ctx.pipeline:remove("agg")
          ctx.pipeline:remove("http")
          ctx.pipeline:replace("app", "echo", Echo)
        else
          ctx:writeAndFlush { status = 200, body = "plain" }
        end
      end })
    end)
    local c = test.client(server.port)
    -- declined (no upgrade asked for on the second): the stream goes on as HTTP
    c:send("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nafter the head")
    local want = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain"
      .. "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nafter the head"
    local got = ""
    test.eventually(function()
      local r = c:received() -- take what arrived (received() only looks)
      if #r > 0 then got = got .. c:receive(#r) end
      return #nodate(got) >= #want
    end)
    -- the fields of a table come in pairs() order
    got = nodate(got):gsub("Connection: Upgrade\r\nUpgrade: echo\r\n", "Upgrade: echo\r\nConnection: Upgrade\r\n")
    assert.equal(want, got)
    c:send("more")
    assert.equal("more", c:receive(4))
    c:close()
    server:close()
  end)

  it("parses on as HTTP when an upgrade is declined", function()
    local ch = test.embedded(http.serverCodec(), http.aggregator(), {
      channelRead = function(_, ctx, req) ctx:write { status = 200, body = req.path } end,
    })
    ch:writeInbound("GET /u HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nGET /n HTTP/1.1\r\nHost: a\r\n\r\n")
    ch:runPendingTasks()
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/uHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/n", nodate(drain(ch)))
    ch:finish()
  end)

  it("rejects unknown options", function()
    assert.has_error(function() http.serverCodec { maxbody = 1 } end, "http.serverCodec: unknown option 'maxbody'")
    assert.has_error(function() http.serverCodec { headerTimeout = -1 } end,
      "http.serverCodec: option 'headerTimeout' must be 0 (none) to 1e6 seconds")
  end)
end)

describe("lupine.http.aggregator", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  it("turns head, chunks and END into one request with body", function()
    local ch = test.embedded(http.serverCodec(), http.aggregator { maxBody = 10 })
    ch:writeInbound("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab", "cd")
    local req = ch:readInbound()
    assert.equal("/x", req.path)
    assert.equal("abcd", req.body)
    ch:finish()
  end)

  it("answers 413 with Connection: close past maxBody", function()
    local ch = test.embedded(http.serverCodec(), http.aggregator { maxBody = 3 })
    ch:writeInbound("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n")
    assert.is_nil(ch:readInbound())
    assert.equal("HTTP/1.1 413 Content Too Large\r\nContent-Length: 18\r\nConnection: close\r\n\r\nContent Too Large\n",
      nodate(drain(ch)))
    ch:finish()
  end)
end)

describe("lupine.http.serverCodec with autoRead off", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("delivers one request per read() demand, holding the rest", function()
    local loop = lupine.loop()
    local got, chans = {}, {}
    local server = test.server(function(ch)
      ch.pipeline:addLast("http", http.serverCodec())
      ch.pipeline:addLast("agg", http.aggregator())
      ch.pipeline:addLast("app", { channelRead = function(_, ctx, req)
        got[#got + 1] = req.path
        ctx:writeAndFlush { status = 200, body = req.path }
      end })
    end, { channels = chans, options = { autoRead = false } })
    local c = test.client(server.port)
    c:send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
    test.eventually(function() return chans[1] ~= nil end)
    for i = 1, 3 do
      chans[1]:read()
      test.eventually(function() return #got == i end, 5, "request " .. i)
      loop:runFor(0.1) -- and no more than that one
      assert.equal(i, #got)
    end
    assert.same({ "/1", "/2", "/3" }, got)
    local one = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/"
    local all = ""
    test.eventually(function()
      local r = c:received() -- take what arrived (received() only looks)
      if #r > 0 then all = all .. c:receive(#r) end
      return #nodate(all) >= 3 * (#one + 1)
    end)
    assert.equal(one .. "1" .. one .. "2" .. one .. "3", nodate(all))
    c:close()
    chans[1]:close() -- it reads nothing more on its own: it would not see the client's FIN
    loop:runUntil(function() return loop:channelCount() == 0 end, 5)
    server:close()
  end)
end)

-- The exact bytes of each bad request over a real socket: the status, then
-- Connection: close, then the close.
describe("lupine.http server: bad input over a socket", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  local server
  local handled
  setup(function()
    handled = 0
    server = test.server(function(ch)
      ch.pipeline:addLast("http", http.serverCodec { maxInitialLineLength = 64, maxHeaderSize = 256, maxBody = 100 })
      ch.pipeline:addLast("agg", http.aggregator())
      ch.pipeline:addLast("app", { channelRead = function(_, ctx, req)
        handled = handled + 1
        ctx:writeAndFlush { status = 200, body = "ok " .. req.body }
      end })
    end)
  end)
  teardown(function() server:close() end)

  local function exchange(bytes)
    local c = test.client(server.port)
    c:send(bytes)
    local all = c:receiveAll()
    c:close()
    return nodate(all)
  end

  local function refused(status, reason)
    local body = reason .. "\n"
    return ("HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s")
      :format(status, reason, #body, body)
  end

  local cases = {
    { "Content-Length with Transfer-Encoding (smuggling)",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Bad Request" },
    { "two Content-Length fields",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400, "Bad Request" },
    { "Transfer-Encoding not ending in chunked",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400, "Bad Request" },
    { "space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "Bad Request" },
    { "obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400, "Bad Request" },
    { "bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400, "Bad Request" },
    { "no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400, "Bad Request" },
    { "a chunk size too large", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
      400, "Bad Request" },
    { "a request line over maxInitialLineLength", "GET /" .. ("a"):rep(100) .. " HTTP/1.1\r\nHost: a\r\n\r\n",
      414, "URI Too Long" },
    { "headers over maxHeaderSize", "GET / HTTP/1.1\r\nHost: a\r\nX: " .. ("b"):rep(300) .. "\r\n\r\n",
      431, "Request Header Fields Too Large" },
    { "a body over maxBody", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 413, "Content Too Large" },
    { "HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HTTP Version Not Supported" },
    { "an unknown coding before chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      501, "Not Implemented" },
    { "a NUL in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400, "Bad Request" },
    { "a control character in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\1b\r\n\r\n", 400, "Bad Request" },
    { "whitespace before the first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "Bad Request" },
    { "two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Bad Request" },
    { "chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400, "Bad Request" },
    { "Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Bad Request" },
    { "a Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx", 400, "Bad Request" },
    { "a target with a control character", "GET /a\1b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "Bad Request" },
    { "absolute-form without an authority", "GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "Bad Request" },
    { "a bare CR in a chunk line", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\rx\r\n", 400, "Bad Request" },
    { "an Expect other than 100-continue", "GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417, "Expectation Failed" },
  }
  for _, case in ipairs(cases) do
    it(("answers %d to %s, then closes"):format(case[3], case[1]), function()
      local before = handled
      assert.equal(refused(case[3], case[4]), exchange(case[2]))
      assert.equal(before, handled)
    end)
  end

  it("answers the good requests before a bad one, in order", function()
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok " .. refused(400, "Bad Request"),
      exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost : a\r\n\r\n"))
  end)
end)
