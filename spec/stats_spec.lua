-- Statistics (lupine.stats), the admin listener (lupine.admin, --admin) and
-- JSON logs (--log-format json): counters exact for scripted sequences, close
-- causes, /metrics through a strict parser of Prometheus' text format, /stats
-- and /channels through lua-cjson, the admin's answers to bad requests, the
-- close log's rate limit, and scrapes while the workers shut down.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"
local cjson = require "cjson"
local admin = require "lupine.admin"

local loop = lupine.loop()

local Echo = {}
function Echo:channelRead(ctx, buf) ctx:write(buf) end
function Echo:channelReadComplete(ctx) ctx:flush() end

-- The counters of lupine.stats().total that a spec compares, as numbers.
local function counters()
  local t = lupine.stats().total
  return {
    accepted = t.accepted, connected = t.connected, active = t.active, bytesIn = t.bytesIn, bytesOut = t.bytesOut,
    reads = t.reads, writes = t.writes, closed = t.closed,
  }
end

local function delta(before, after, k) return after[k] - before[k] end
local function closed_delta(before, after, cause) return after.closed[cause] - before.closed[cause] end

-- ---- a strict parser of Prometheus' text exposition format 0.0.4 ------------------------------

local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
local LABEL = "^[a-zA-Z_][a-zA-Z0-9_]*$"
local TYPES = { counter = true, gauge = true, summary = true, histogram = true, untyped = true }

-- Labels "{a="x",b="y"}" -> a canonical key (sorted) and a table; raises on bad syntax.
local function parse_labels(s, where)
  local labels, names, i = {}, {}, 1
  assert(s:sub(1, 1) == "{", where .. ": labels must start with {")
  i = 2
  if s:sub(i, i) == "}" then return "", labels, i end
  while true do
    local name, after = s:match("^([^=]*)=()", i)
    assert(name and name:match(LABEL), where .. ": bad label name " .. tostring(name))
    assert(s:sub(after, after) == '"', where .. ": label value must be quoted")
    local j, value = after + 1, {}
    while true do
      local c = s:sub(j, j)
      assert(c ~= "" and c ~= "\n", where .. ": unterminated label value")
      if c == "\\" then
        local e = s:sub(j + 1, j + 1)
        assert(e == "\\" or e == '"' or e == "n", where .. ": bad escape \\" .. e)
        value[#value + 1] = e == "n" and "\n" or e
        j = j + 2
      elseif c == '"' then
        j = j + 1
        break
      else
        value[#value + 1] = c
        j = j + 1
      end
    end
    assert(labels[name] == nil, where .. ": label " .. name .. " twice")
    labels[name] = table.concat(value)
    names[#names + 1] = name
    local sep = s:sub(j, j)
    if sep == "}" then
      table.sort(names)
      local key = {}
      for _, n in ipairs(names) do key[#key + 1] = n .. "=" .. labels[n] end
      return table.concat(key, ","), labels, j
    end
    assert(sep == ",", where .. ": expected , or } after a label")
    i = j + 1
  end
end

local function parse_value(v, where)
  if v == "NaN" then return 0 / 0 elseif v == "+Inf" then return math.huge elseif v == "-Inf" then return -math.huge end
  assert(v:match("^[-+]?%d+%.?%d*[eE]?[-+]?%d*$") or v:match("^[-+]?%.%d+"), where .. ": bad value " .. v)
  return assert(tonumber(v), where .. ": bad value " .. v)
end

-- Returns families[name] = { type, help, samples = { [labelkey] = { labels, value } } }.
local function parse_prometheus(text)
  assert(text:sub(-1) == "\n", "the exposition must end with a newline")
  local families, current, seen_done = {}, nil, {}
  local n = 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    local where = "line " .. n
    if line:sub(1, 1) == "#" then
      local kind, name, rest = line:match("^# (%u+) (%S+) (.*)$")
      assert(kind == "HELP" or kind == "TYPE", where .. ": a comment other than HELP/TYPE: " .. line)
      assert(name:match(NAME), where .. ": bad metric name " .. name)
      if current and current ~= name then seen_done[current] = true end
      assert(not seen_done[name], where .. ": family " .. name .. " is not contiguous")
      local f = families[name] or { samples = {}, nsamples = 0 }
      families[name] = f
      current = name
      if kind == "HELP" then
        assert(f.help == nil, where .. ": HELP twice for " .. name)
        f.help = rest
      else
        assert(f.type == nil, where .. ": TYPE twice for " .. name)
        assert(TYPES[rest], where .. ": bad type " .. rest)
        assert(f.nsamples == 0, where .. ": TYPE after samples of " .. name)
        f.type = rest
      end
    else
      local name, rest = line:match("^([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$")
      assert(name, where .. ": bad sample line: " .. line)
      local key, labels, value = "", {}, nil
      if rest:sub(1, 1) == "{" then
        local stop
        key, labels, stop = parse_labels(rest, where)
        rest = rest:sub(stop + 1)
      end
      value = rest:match("^ (%S+)$")
      assert(value, where .. ": expected one space and a value (no timestamp): " .. line)
      assert(name == current, where .. ": sample of " .. name .. " outside its family")
      local f = families[name]
      assert(f.type, where .. ": sample before TYPE of " .. name)
      assert(f.samples[key] == nil, where .. ": two samples of one series " .. name .. "{" .. key .. "}")
      if f.type == "counter" then assert(name:match("_total$"), where .. ": a counter not named *_total: " .. name) end
      f.samples[key] = { labels = labels, value = parse_value(value, where) }
      f.nsamples = f.nsamples + 1
    end
  end
  for name, f in pairs(families) do assert(f.type and f.help, name .. ": HELP and TYPE both needed") end
  return families
end

local function sample(families, name, key)
  local f = assert(families[name], "no family " .. name)
  local s = assert(f.samples[key], "no series " .. name .. "{" .. key .. "}")
  return s.value
end

describe("the strict Prometheus parser of this spec", function()
  it("refuses what the format does not allow", function()
    local bad = {
      "x 1\n",                                                     -- no TYPE
      "# TYPE x counter\n# HELP x h\nx 1\n",                       -- a counter not named _total
      "# HELP x h\n# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n",  -- one series twice
      "# HELP x h\n# TYPE x gauge\nx{a=1} 1\n",                    -- unquoted label value
      "# HELP x h\n# TYPE x gauge\nx{a=\"\\q\"} 1\n",              -- bad escape
      "# HELP x h\n# TYPE x gauge\nx 1",                           -- no final newline
      "# HELP x h\n# TYPE x gauge\nx  1\n",                        -- two spaces
      "# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\nx 2\n", -- not contiguous
    }
    for _, text in ipairs(bad) do
      assert.has_error(function() parse_prometheus(text) end)
    end
    local ok = parse_prometheus('# HELP x_total h\n# TYPE x_total counter\nx_total{a="q\\"\\\\\\n",b="2"} 3\n')
    assert.equal('q"\\\n', ok.x_total.samples['a=q"\\\n,b=2'].labels.a)
  end)
end)

describe("lupine.stats", function()
  it("counts connections, bytes, reads and writes exactly, inline (workers has one entry)", function()
    local server = test.server(function(ch) ch.pipeline:addLast("echo", Echo) end)
    local before = counters()
    local n, m = 4, 100
    for _ = 1, n do
      local c = test.client(server.port)
      c:send(("y"):rep(m))
      assert.equal(("y"):rep(m), c:receive(m))
      c:close()
    end
    loop:runUntil(function() return lupine.stats().total.active == before.active end, 5, "every channel to close")
    local after = counters()
    -- Both ends are on this loop: n accepted (they see the clients' FIN: eof),
    -- n connected (closed by the clients themselves: local).
    assert.equal(n, delta(before, after, "accepted"))
    assert.equal(n, delta(before, after, "connected"))
    assert.equal(n, closed_delta(before, after, "eof"))
    assert.equal(n, closed_delta(before, after, "local"))
    assert.equal(0, closed_delta(before, after, "reset"))
    assert.equal(2 * n * m, delta(before, after, "bytesIn"))  -- the server's reads and the echo read back
    assert.equal(2 * n * m, delta(before, after, "bytesOut"))
    assert.is_true(delta(before, after, "reads") >= 2 * n)
    assert.is_true(delta(before, after, "writes") >= 2 * n)
    local s = lupine.stats()
    assert.equal(1, #s.workers)
    assert.equal(0, s.workers[1].id)
    assert.is_nil(s.boss)
    assert.equal(s.total.accepted, s.workers[1].accepted)
    assert.is_true(s.total.luaMemory > 0)
    server:close()
  end)

  it("records why each connection ended: exception, timeout, the app's close, and names the handler that raised", function()
    local Boom = { channelRead = function(_, _, buf) buf:release() error("boom") end }
    local server = test.server(function(ch)
      ch.pipeline:addLast("boomer", Boom)
    end)
    local slow = test.server(function(ch)
      ch.pipeline:addLast("timeout", lupine.handler.readTimeout(0.1))
    end)
    local closer = test.server(function(ch)
      ch.pipeline:addLast("closer", { channelActive = function(_, ctx) ctx:close() end })
    end)
    local before = lupine.stats().total
    local c = test.client(server.port)
    c:send("x")
    c:receiveAll()                   -- the server closed it
    c = test.client(slow.port)
    c:receiveAll(5)                  -- closed after 0.1 s of silence
    c = test.client(closer.port)
    c:receiveAll()
    loop:runUntil(function() return lupine.stats().total.active == before.active end, 5, "every channel to close")
    local after = lupine.stats().total
    assert.equal(1, after.closed.exception - before.closed.exception)
    assert.equal(1, after.closed.timeout - before.closed.timeout)
    assert.equal(1, after.closed["local"] - before.closed["local"]) -- closer's
    assert.equal(3, after.closed.eof - before.closed.eof)          -- the three clients saw the servers' FIN
    assert.equal(1, after.handlerErrors.boomer - (before.handlerErrors.boomer or 0))
    server:close(); slow:close(); closer:close()
  end)

  it("counts resets from a client that closes with SO_LINGER 0", function()
    local server = test.server(function(ch) ch.pipeline:addLast("echo", Echo) end)
    local before = lupine.stats().total
    local p = test.spawn({ "python3", "spec/stats_client.py", server.port, 5, 2, 1000 }, { env = { LD_PRELOAD = "" } })
    assert.equal(0, p:wait(20), p:output())
    loop:runUntil(function()
      local t = lupine.stats().total
      return t.accepted - before.accepted == 5 and t.active == before.active
    end, 5, "five connections to come and go")
    local after = lupine.stats().total
    assert.equal(2, after.closed.reset - before.closed.reset)
    assert.equal(3, after.closed.eof - before.closed.eof)
    assert.equal(5000, after.bytesIn - before.bytesIn)
    assert.equal(5000, after.bytesOut - before.bytesOut)
    p:stop()
    server:close()
  end)

  it("sees pending outbound bytes and unwritable channels, and the loop's lag", function()
    local big = ("z"):rep(1024 * 1024)
    local server = test.server(function(ch)
      ch.pipeline:addLast("flood", { channelActive = function(_, ctx)
        for _ = 1, 12 do ctx:write(big) end -- more than loopback's socket buffers take
        ctx:flush()
      end })
    end)
    local c = lupine.connect { port = server.port, options = { autoRead = false }, init = function() end }:sync()
    loop:runUntil(function() return lupine.stats().total.unwritable >= 1 end, 5, "the server's channel to be unwritable")
    assert.is_true(lupine.stats().total.pending > 64 * 1024)
    c:close()
    -- A task that keeps the loop for 300 ms (of CPU time: at least that long)
    -- makes the sampler's timer, due within the next 100 ms, at least 200 ms late.
    loop:runFor(0.25)
    lupine.loop():schedule(0, function()
      local t0 = os.clock()
      while os.clock() - t0 < 0.3 do end
    end)
    loop:runFor(0.3)
    local lag = lupine.stats().workers[1].lag
    assert.is_true(lag.samples >= 2)
    assert.is_true(lag.max >= 0.19, "lag.max " .. lag.max)
    assert.is_true(lag.p50 <= lag.p99 and lag.p99 <= lag.max)
    server:close()
  end)
end)

describe("the admin listener, inline", function()
  local server, handle
  before_each(function()
    server = test.server(function(ch) ch.pipeline:addLast("echo", Echo) end)
    handle = assert(admin.start("127.0.0.1:0"))
  end)
  after_each(function()
    handle.close()
    server:close()
    admin.setReloadHook(nil)
  end)
  local function url(path) return ("http://127.0.0.1:%d%s"):format(handle.port, path) end

  it("serves /stats as JSON and /metrics in Prometheus' format, one sample per series", function()
    local res = test.http.get(url("/stats"))
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    local s = cjson.decode(res.body)
    assert.equal(1, #s.workers)
    assert.is_number(s.total.closed.reset)
    res = test.http.get(url("/metrics"))
    assert.equal(200, res.status)
    assert.equal("text/plain; version=0.0.4; charset=utf-8", res.headers["content-type"])
    local m = parse_prometheus(res.body)
    assert.equal("counter", m.lupine_connections_closed_total.type)
    assert.equal("gauge", m.lupine_connections_active.type)
    assert.is_number(sample(m, "lupine_connections_closed_total", "cause=reset,worker=0"))
    assert.is_number(sample(m, "lupine_event_loop_lag_seconds", "quantile=0.99,worker=0"))
    assert.is_number(sample(m, "lupine_lua_memory_bytes", "worker=0"))
  end)

  it("escapes handler names in labels, and renders every family of a made-up table", function()
    local s = lupine.stats()
    s.workers[1].handlerErrors = { ['we"ird\\name\n'] = 3 }
    local m = parse_prometheus(admin.metrics(s))
    assert.equal(3, sample(m, "lupine_handler_errors_total", 'handler=we"ird\\name\n,worker=0'))
  end)

  it("lists live channels on /channels, with their handlers", function()
    local c = test.client(server.port)
    c:send("abc")
    assert.equal("abc", c:receive(3))
    local res = test.http.get(url("/channels"))
    assert.equal(200, res.status)
    local r = cjson.decode(res.body)
    assert.equal(1, r.asked)
    assert.equal(1, r.answered)
    local mine
    for _, ch in ipairs(r.channels) do
      if ch.localAddress == "127.0.0.1:" .. server.port then mine = ch end
    end
    assert.is_table(mine, res.body)
    assert.same({ "echo" }, mine.handlers)
    assert.equal(3, mine.bytesIn)
    assert.equal(3, mine.bytesOut)
    assert.equal(0, mine.pending)
    assert.is_true(mine.age >= 0)
    assert.is_false(r.truncated)
    local max = admin.CHANNELS_MAX
    admin.CHANNELS_MAX = 0 -- the list is cut, and says so
    r = cjson.decode(test.http.get(url("/channels")).body)
    admin.CHANNELS_MAX = max
    assert.is_true(r.truncated)
    assert.equal(0, #r.channels)
    c:close()
  end)

  it("answers 404, 405, 501 for /reload without a hook, and calls the hook when there is one", function()
    assert.equal(404, test.http.get(url("/nope")).status)
    local res = test.http.post(url("/stats"), "")
    assert.equal(405, res.status)
    assert.equal("GET", res.headers.allow)
    res = test.http.post(url("/reload"), "")
    assert.equal(501, res.status)
    assert.equal("reload not available\n", res.body)
    local calls = 0
    admin.setReloadHook(function() calls = calls + 1 return true end)
    assert.equal(200, test.http.post(url("/reload"), "").status)
    assert.equal(1, calls)
    admin.setReloadHook(function() return nil, "app.lua:3: syntax error" end)
    res = test.http.post(url("/reload"), "")
    assert.equal(500, res.status)
    assert.equal("reload failed: app.lua:3: syntax error\n", res.body)
  end)

  it("answers malformed requests 400 and huge headers 431, and closes", function()
    local c = test.client(handle.port)
    c:send("GARBAGE\r\n\r\n")
    assert.matches("^HTTP/1.1 400 ", c:receiveAll())
    c = test.client(handle.port)
    c:send("GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("a"):rep(9000) .. "\r\n\r\n")
    assert.matches("^HTTP/1.1 431 ", c:receiveAll())
    c = test.client(handle.port)
    c:send("GET /" .. ("a"):rep(3000) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.matches("^HTTP/1.1 414 ", c:receiveAll())
  end)

  it("keeps its own connections out of the statistics", function()
    local before = lupine.stats().total
    for _ = 1, 3 do test.http.get(url("/stats")) end
    local after = lupine.stats().total
    -- The spec's HTTP client connections count (connected); the admin's side does not (accepted).
    assert.equal(0, after.accepted - before.accepted)
  end)

  it("refuses addresses that are not [HOST:]PORT", function()
    assert.same({ nil, "'x:y' is not [HOST:]PORT (e.g. 127.0.0.1:9100)" }, { admin.start("x:y") })
    assert.same({ "::1", 80 }, { admin.parseAddress("[::1]:80") })
    assert.same({ "127.0.0.1", 9100 }, { admin.parseAddress("9100") })
  end)
end)

describe("lupine.log with fields, lupine.setLogFormat", function()
  it("refuses fields it cannot write, at every level", function()
    assert.has_error(function() lupine.log("debug", "m", { x = {} }) end,
      "bad argument #3 to 'log' (field 'x' must be a string, number or boolean, got table)")
    local many = {}
    for i = 1, 33 do many["k" .. i] = i end
    assert.has_error(function() lupine.log("debug", "m", many) end, "bad argument #3 to 'log' (at most 32 fields)")
    assert.has_error(function() lupine.setLogFormat("xml") end, "bad argument #1 to 'setLogFormat' (one of text, json)")
    lupine.log("debug", "fine", { n = 1, s = "two words", b = false, f = 0.5 })
  end)

  -- Lines written by a Lua process of its own, whose stderr the spec reads.
  local function lines_of(script)
    local build = os.getenv("LUPINE_BUILD") or "build"
    local err = os.tmpname()
    local p = test.spawn({ "lua5.4", "-e", script }, {
      env = { LUA_PATH = "./lua/?.lua;./lua/?/init.lua;;", LUA_CPATH = "./" .. build .. "/lib/?.so;;" }, stderr = err,
      stdout = "/dev/null" })
    assert.equal(0, p:wait(10))
    p:stop()
    local f = assert(io.open(err))
    local out = {}
    for line in f:lines() do out[#out + 1] = line end
    f:close()
    os.remove(err)
    return out
  end

  it("writes fields as key=value in text lines, and cut JSON lines still parse", function()
    local text = lines_of([[local l = require "lupine"
      l.log("warn", "hello", { s = "two words", q = 'a"b' })]])
    assert.equal(1, #text)
    assert.matches('^%S+ warn  w0 hello ', text[1])
    assert.truthy(text[1]:find(' s="two words"', 1, true) and text[1]:find(' q="a\\"b"', 1, true), text[1])
    local json = lines_of([[local l = require "lupine"
      l.setLogFormat("json")
      l.log("warn", ("x"):rep(5000), { a = 1 })
      l.log("warn", ('"\\'):rep(3000))
      l.log("warn", ("y"):rep(3900), { k = ("z"):rep(300) })
      l.log("warn", ("y"):rep(3900), { a = 1, k = ("z"):rep(300), b = true })
      l.log("warn", "short", { a = 1, b = "\n" })]])
    assert.equal(5, #json)
    for i, line in ipairs(json) do
      assert.is_true(#line <= 4096, "line " .. i .. " is " .. #line .. " bytes")
      local ok, rec = pcall(cjson.decode, line)
      assert.is_true(ok, "line " .. i .. " is not JSON: " .. line:sub(-80))
      assert.equal("warn", rec.level)
    end
    assert.matches("^x+$", cjson.decode(json[1]).message)
    assert.same({ a = 1, b = "\n" }, cjson.decode(json[5]).fields)
  end)
end)

describe("lupine.admin.json", function()
  it("encodes strings, numbers, arrays and objects as JSON that lua-cjson reads back", function()
    local v = { s = 'a"b\\c\n\1', i = 42, f = 0.25, t = true, list = { 1, 2, 3 }, empty = {}, nested = { x = -1 } }
    assert.same(v, cjson.decode(admin.json(v)))
    assert.equal("[]", admin.json(admin.array {}))
    assert.equal('{"a":null}', admin.json { a = 0 / 0 })
  end)
end)

describe("the launcher's --admin and --log-format json", function()
  local started = {}
  after_each(function()
    for _, p in ipairs(started) do p:cleanup() end
    started = {}
  end)

  local function launch(args)
    local p = proc.start(args)
    started[#started + 1] = p
    local port = p:port()
    local aport
    assert.is_true(proc.waitFor(function()
      aport = tonumber(p:stdout():match("admin listening on [^\n]-:(%d+)\n"))
      return aport ~= nil
    end, 10), p:stderr())
    return p, port, aport
  end

  -- curl (a real client): body and status. Without the ASan run's LD_PRELOAD: curl hangs under it.
  local function curl(aport, path, extra)
    local f = io.popen(("env -u LD_PRELOAD curl -s -m 5 %s -w '\\n%%{http_code}' http://127.0.0.1:%d%s"):format(extra or "", aport, path))
    local out = f:read("a")
    f:close()
    local body, status = out:match("^(.*)\n(%d+)$")
    return body, tonumber(status)
  end

  it("counts N connects, M bytes and K resets exactly across workers, on /stats and /metrics (curl)", function()
    local p, port, aport = launch("-w 2 -p 0 --admin 0 --log-format json spec/apps/stats_echo.lua")
    local py = test.spawn({ "python3", "spec/stats_client.py", port, 6, 2, 1000 }, { env = { LD_PRELOAD = "" } })
    assert.equal(0, py:wait(20), py:output())
    py:stop()
    local s
    assert.is_true(proc.waitFor(function()
      local body, status = curl(aport, "/stats")
      assert.equal(200, status, body)
      s = cjson.decode(body)
      local c = s.total.closed
      return c.eof + c.reset == 6
    end, 10), "the six connections to close")
    assert.equal(2, #s.workers)
    assert.is_table(s.boss)
    assert.equal(6, s.total.accepted)
    assert.equal(0, s.total.active)
    assert.equal(2, s.total.closed.reset)
    assert.equal(4, s.total.closed.eof)
    assert.equal(6000, s.total.bytesIn)
    assert.equal(6000, s.total.bytesOut)
    assert.equal(3, s.workers[1].accepted) -- round robin
    assert.equal(3, s.workers[2].accepted)
    local body, status = curl(aport, "/metrics")
    assert.equal(200, status)
    local m = parse_prometheus(body)
    local resets = sample(m, "lupine_connections_closed_total", "cause=reset,worker=1")
      + sample(m, "lupine_connections_closed_total", "cause=reset,worker=2")
    assert.equal(2, resets)
    assert.equal(3, sample(m, "lupine_connections_accepted_total", "worker=1"))
    assert.equal(0, sample(m, "lupine_connections_accepted_total", "worker=0"))
    -- Wrong method and unknown route through curl too.
    assert.equal(405, select(2, curl(aport, "/metrics", "-X DELETE")))
    assert.equal(404, select(2, curl(aport, "/")))
    p:kill("TERM")
    assert.equal(0, p:wait(20))
    -- Every stderr line is one JSON object; the resets were logged with their cause.
    local resets_logged = 0
    for line in p:stderr():gmatch("[^\n]+") do
      local ok, rec = pcall(cjson.decode, line)
      assert.is_true(ok, "not JSON: " .. line)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", rec.time)
      assert.is_string(rec.level)
      assert.is_number(rec.worker)
      assert.is_string(rec.message)
      if rec.fields and rec.fields.cause == "reset" then
        resets_logged = resets_logged + 1
        assert.is_number(rec.channel)
        assert.equal("info", rec.level)
      end
    end
    assert.equal(2, resets_logged)
  end)

  it("gives lupine.stats() in a worker, and lists live channels of every worker on /channels", function()
    local _, port, aport = launch("-w 2 -p 0 --admin 127.0.0.1:0 spec/apps/stats_echo.lua")
    local clients = {}
    for i = 1, 3 do
      clients[i] = test.client(port)
      clients[i]:send("hi")
      assert.equal("hi", clients[i]:receive(2))
    end
    local body, status = curl(aport, "/channels")
    assert.equal(200, status, body)
    local r = cjson.decode(body)
    assert.equal(2, r.asked)
    assert.equal(2, r.answered)
    assert.equal(3, #r.channels)
    local workers = {}
    for _, ch in ipairs(r.channels) do
      assert.same({ "echo" }, ch.handlers)
      assert.equal("127.0.0.1:" .. port, ch.localAddress)
      assert.equal(2, ch.bytesIn)
      workers[ch.worker] = true
    end
    assert.is_true(workers[1] and workers[2])
    clients[1]:send("stats?") -- answered by lupine.stats() in that worker: it sees all of them
    assert.matches("^worker=[12] workers=2 accepted=3 boss=true$", clients[1]:receiveLine())
    for _, c in ipairs(clients) do c:close() end
  end)

  it("rate-limits close lines per cause, then says how many it suppressed", function()
    local p, port = launch("-w 1 -p 0 --admin 0 --log-format json spec/apps/stats_echo.lua")
    local t0 = loop:now()
    local py = test.spawn({ "python3", "spec/stats_client.py", port, 20, 20, 10 }, { env = { LD_PRELOAD = "" } })
    assert.equal(0, py:wait(20), py:output())
    local took = loop:now() - t0 -- the burst took at most this long
    py:stop()
    local lines, suppressed = 0, 0
    assert.is_true(proc.waitFor(function()
      lines, suppressed = 0, 0
      for line in p:stderr():gmatch("[^\n]+") do
        local rec = cjson.decode(line)
        if rec.fields and rec.fields.cause == "reset" then lines = lines + 1 end
        local k = rec.message:match("^suppressed (%d+) more 'reset' close line")
        if k then suppressed = suppressed + tonumber(k) end
      end
      return lines + suppressed == 20
    end, 10), ("%d lines, %d suppressed: %s"):format(lines, suppressed, p:stderr()))
    -- At most 5 per window of a second: a burst of `took` seconds spans at most ceil(took) + 1 of them.
    local most = 5 * (math.ceil(took) + 1)
    assert.is_true(lines <= most and suppressed >= 20 - most, ("%d lines, %d suppressed in %.2f s"):format(lines, suppressed, took))
  end)

  it("answers scrapes while the workers shut down, and exits cleanly", function()
    local p, port, aport = launch("-w 2 -p 0 --admin 0 --shutdown-timeout 1 spec/apps/stats_echo.lua")
    local c = test.client(port) -- keeps a worker draining until the deadline
    c:send("hi")
    assert.equal("hi", c:receive(2))
    p:kill("TERM")
    local ok, refused = 0, 0
    local deadline = loop:now() + 10
    while p:status() == nil and loop:now() < deadline do
      local body, status = curl(aport, "/metrics")
      if status == 200 then
        parse_prometheus(body)
        ok = ok + 1
      else
        refused = refused + 1
      end
      loop:runFor(0.05)
    end
    assert.equal(0, p:wait(20), p:stderr())
    assert.is_true(ok >= 1, "no scrape answered during the drain")
    assert.matches("connection closed: shutdown 127%.0%.0%.1:%d+ <%- 127%.0%.0%.1:%d+ cause=shutdown", p:stderr())
    c:close()
  end)

  it("refuses a bad --admin address or --log-format on the command line", function()
    local code, out, err = proc.run("--admin x:y spec/apps/stats_echo.lua")
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal("lupine: invalid admin address 'x:y' ([HOST:]PORT, e.g. 127.0.0.1:9100)\n", err)
    code, _, err = proc.run("--log-format xml spec/apps/stats_echo.lua")
    assert.equal(2, code)
    assert.equal("lupine: invalid log format 'xml' (text, json)\n", err)
  end)
end)
