-- The lupine launcher as users run it: a subprocess on port 0 (its port read
-- from the start-up line), driven by lupine's own client channels. Boss and
-- worker threads, graceful shutdown, bad input, descriptor exhaustion,
-- maxConnections and a per-state memory limit.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"

local loop = lupine.loop()

-- What a test started: processes and client channels, stopped and closed
-- after each test whether it passed or not (a failed assertion must not leave
-- a channel open for the specs that follow).
local started, channels = {}, {}

-- Start the launcher; returns the process and its port.
local function launch(args, opts)
  local p = proc.start(args, opts)
  started[#started + 1] = p
  return p, p:port()
end

local function client(port, opts)
  local c = test.client(port, opts)
  channels[#channels + 1] = c.channel
  return c
end

local function connect(opts)
  local f = lupine.connect(opts)
  f:addListener(function() if f:isSuccess() then channels[#channels + 1] = f:get() end end)
  return f
end

-- One line on stderr, non-zero status, and nothing on stdout (no start-up line: nothing listened).
local function refuses(args, status, message)
  local code, out, err = proc.run(args)
  assert.equal(status, code)
  assert.equal("", out)
  assert.equal(message .. "\n", err)
end

local function who(port)
  local c = client(port)
  c:send("who\n")
  local line = c:receiveLine()
  return tonumber(line:match("^worker=(%d+)")), line, c
end

describe("the lupine launcher", function()
  after_each(function()
    for _, ch in ipairs(channels) do if ch:isOpen() then ch:close() end end
    for _, p in ipairs(started) do p:cleanup() end
    started, channels = {}, {}
    loop:runUntil(function() return loop:channelCount() == 0 end, 10, "the spec's client channels to close")
  end)

  it("prints its version and its usage", function()
    local code, out = proc.run("--version")
    assert.equal(0, code)
    assert.matches("^lupine %d+%.%d+%.%d+ %(Lua 5%.4", out)
    code, out = proc.run("--help")
    assert.equal(0, code)
    assert.matches("usage: lupine %[options%] app.lua|module", out)
    assert.matches("%-%-shutdown%-timeout", out)
  end)

  describe("with 2 workers", function()
    local p, port
    before_each(function() p, port = launch("-w 2 -p 0 spec/apps/whoami.lua") end)

    it("prints one start-up line with the address, the port, the worker count and one Lua state each", function()
      assert.equal(("lupine: whoami listening on 127.0.0.1:%d (2 workers, one Lua state each)\n"):format(port), p:stdout())
    end)

    it("spreads connections over both workers, round robin, each in its own state", function()
      local seen, clients = {}, {}
      for i = 1, 6 do
        local id, line, c = who(port)
        clients[i] = c
        seen[#seen + 1] = id
        assert.matches(("^worker=%d state=%d executor=lupine%%.Loop%%(worker %d, %%d+ channels%%)$"):format(id, id, id), line)
      end
      assert.same({ 1, 2, 1, 2, 1, 2 }, seen)
      for _, c in ipairs(clients) do c:close() end
    end)

    it("gives handlers their worker's executor: execute, schedule, scheduleAtFixedRate, cancel", function()
      for _ = 1, 2 do
        local c = client(port)
        c:send("timers\n")
        assert.matches("^executed;scheduled;ticked 3 on worker [12]$", c:receiveLine())
        c:close()
      end
    end)

    it("reloads on SIGHUP (workerInit again, the old states' workerExit) and keeps serving, then shuts down on SIGTERM", function()
      p:kill("HUP")
      assert.is_true(proc.waitFor(function()
        local _, exits = p:stderr():gsub("workerExit", "")
        return exits == 2 or p:status()
      end, 10))
      assert.is_nil(p:status())
      local err = p:stderr()
      assert.matches(" info  w0 SIGHUP: reloading the app\n", err)
      assert.matches(" info  w0 reload 1: new connections get the new code; open ones finish on the old\n", err)
      for id = 1, 2 do
        local _, n = err:gsub("w" .. id .. " workerInit " .. id .. " of 2\n", "")
        assert.equal(2, n)
      end
      local id, _, c = who(port)
      assert.is_not_nil(id)
      c:close()
      p:kill("TERM")
      assert.equal(0, p:wait(10))
    end)

    it("runs workerInit and workerExit once in each worker, and exits 0 on SIGTERM", function()
      p:kill("TERM")
      assert.equal(0, p:wait(10))
      local err = p:stderr()
      for id = 1, 2 do
        local _, n = err:gsub("w" .. id .. " workerInit " .. id .. " of 2\n", "")
        assert.equal(1, n)
        _, n = err:gsub("w" .. id .. " workerExit " .. id .. "\n", "")
        assert.equal(1, n)
      end
      assert.matches("w0 SIGTERM: shutting down", err)
    end)
  end)

  it("echoes for 200 concurrent clients across 2 workers, every byte checked", function()
    local p, port = launch("-w 2 -p 0 examples/echo.lua")
    local n, done, failed = 200, 0, {}
    local expected, received = {}, {}
    for i = 1, n do
      local msg = ("client %03d|"):format(i):rep(50 + i)
      expected[i], received[i] = msg, {}
      local Client = {}
      function Client:channelActive(ctx) ctx:writeAndFlush(msg) end
      function Client:channelRead(ctx, buf)
        local r = received[i]
        r[#r + 1] = buf:readString()
        if #table.concat(r) >= #msg then
          done = done + 1
          ctx:close()
        end
      end
      function Client:exceptionCaught(ctx, err) failed[#failed + 1] = tostring(err) end
      connect { port = port, init = function(ch) ch.pipeline:addLast(Client) end }
    end
    loop:runUntil(function() return done == n or #failed > 0 end, 30, "200 echoes")
    assert.same({}, failed)
    for i = 1, n do assert.equal(expected[i], table.concat(received[i])) end
    p:kill("TERM")
    assert.equal(0, p:wait(10))
  end)

  describe("shutdown", function()
    local pattern = dofile("spec/apps/bulk.lua").pattern

    it("on SIGTERM delivers every byte written before it, closes cleanly and exits 0 in time", function()
      local p, port = launch("-w 2 -p 0 --shutdown-timeout 8 spec/apps/bulk.lua")
      -- Four clients asked for 4 MiB each and read nothing yet: most of it is
      -- still queued in the server when the signal comes.
      local size = 4 * 1024 * 1024
      local bulk = {}
      for i = 1, 4 do
        bulk[i] = client(port, { timeout = 15, options = { autoRead = false } })
        bulk[i]:send(("bulk %d\n"):format(size))
      end
      -- Four clients stream echo traffic, and keep sending after the signal.
      local streams = {}
      for i = 1, 4 do
        local s = { sent = {}, got = {}, closed = false }
        streams[i] = s
        local Stream = {}
        function Stream:channelActive(ctx)
          s.ctx = ctx
          s.timer = ctx.executor:scheduleAtFixedRate(0, 0.002, function()
            if not ctx.channel:isActive() then return end
            local chunk = ("stream %d chunk %05d;"):format(i, #s.sent)
            s.sent[#s.sent + 1] = chunk
            ctx:writeAndFlush(chunk)
          end)
        end
        function Stream:channelRead(ctx, buf) s.got[#s.got + 1] = buf:readString() end
        function Stream:channelInactive(ctx)
          s.closed = true
          s.timer:cancel()
        end
        function Stream:exceptionCaught(ctx, err) s.error = tostring(err) end
        connect { port = port, init = function(ch) ch.pipeline:addLast(Stream) end }
      end
      loop:runUntil(function()
        for _, s in ipairs(streams) do if #table.concat(s.got) < 200 then return false end end
        return true
      end, 10, "the streams to flow")
      local t0 = loop:now()
      p:kill("TERM")
      for _, c in ipairs(bulk) do c.channel:config():setAutoRead(true) end
      for i, c in ipairs(bulk) do
        local got = c:receiveAll(15)
        assert.equal(size, #got)
        assert.is_true(got == pattern(size), "bulk client " .. i .. " got other bytes")
      end
      loop:runUntil(function()
        for _, s in ipairs(streams) do if not s.closed then return false end end
        return true
      end, 15, "the streams to be closed by the server")
      for i, s in ipairs(streams) do
        assert.is_nil(s.error) -- a clean FIN, no reset
        local got, sent = table.concat(s.got), table.concat(s.sent)
        assert.is_true(#got >= 200)
        assert.equal(sent:sub(1, #got), got, "stream " .. i .. " got back other bytes than it sent")
      end
      assert.equal(0, p:wait(15))
      assert.is_true(p.ended - t0 < 8, "the shutdown took until the deadline")
      assert.not_matches("deadline", p:stderr())
    end)

    it("on SIGTERM with a peer that never reads, closes it at the deadline and exits 0", function()
      local p, port = launch("-w 2 -p 0 --shutdown-timeout 1 spec/apps/bulk.lua")
      local stuck = client(port, { options = { autoRead = false, rcvBuf = 4096 } })
      stuck:send(("bulk %d\n"):format(64 * 1024 * 1024))
      loop:runFor(0.2)
      local t0 = loop:now()
      p:kill("TERM")
      assert.equal(0, p:wait(10))
      local took = p.ended - t0
      assert.is_true(took >= 0.9 and took < 5, ("exited after %.2f s"):format(took))
      assert.matches("shutdown deadline %(1 s%) reached: closing 1 channel%(s%)", p:stderr())
      stuck.channel:close()
    end)

    it("closes every connection at once on a second SIGTERM", function()
      local p, port = launch("-w 1 -p 0 --shutdown-timeout 60 spec/apps/bulk.lua")
      local stuck = client(port, { options = { autoRead = false, rcvBuf = 4096 } })
      stuck:send(("bulk %d\n"):format(64 * 1024 * 1024))
      loop:runFor(0.2)
      p:kill("TERM")
      loop:runFor(0.3)
      assert.is_nil(p:status()) -- still draining
      p:kill("TERM")
      assert.equal(0, p:wait(5))
      assert.matches("SIGTERM again: closing every connection now", p:stderr())
      stuck.channel:close()
    end)

    it("with no connection, exits at once on SIGINT", function()
      local p = launch("-w 2 -p 0 spec/apps/whoami.lua")
      local t0 = loop:now()
      p:kill("INT")
      assert.equal(0, p:wait(5))
      assert.is_true(p.ended - t0 < 5)
    end)
  end)

  for _, w in ipairs { 0, 2 } do
    it(("shuts down gracefully when a handler stops its loop (-w %d)"):format(w), function()
      local p, port = launch(("-w %d -p 0 spec/apps/whoami.lua"):format(w))
      local idle = client(port)
      idle:send("idle\n")
      assert.equal("idle", idle:receiveLine())
      local c = client(port)
      c:send("stop\n")
      assert.equal("stopping", c:receiveLine())
      assert.equal("", c:receiveAll(10))
      assert.equal("", idle:receiveAll(10))
      assert.equal(0, p:wait(10))
      assert.matches(w == 0 and "w0 stopped" or "a worker stopped its loop: shutting down", p:stderr())
    end)
  end

  describe("inline (-w 0)", function()
    it("serves from the launcher's own loop and state, as worker 0", function()
      local p, port = launch("-w 0 -p 0 spec/apps/whoami.lua")
      assert.equal(("lupine: whoami listening on 127.0.0.1:%d (inline: 1 loop)\n"):format(port), p:stdout())
      local id, line, c = who(port)
      assert.equal(0, id)
      assert.matches("executor=lupine%.Loop%(worker 0, 1 channels%)", line)
      c:close()
      p:kill("TERM")
      assert.equal(0, p:wait(10))
      assert.matches("w0 workerInit 0 of 0\n.*w0 workerExit 0\n", p:stderr())
    end)

    it("is what `lua5.4 examples/echo.lua` runs, shutting down on SIGTERM", function()
      local p, port = launch("examples/echo.lua", {
        cmd = "lua5.4", env = ("PORT=0 LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./%s/lib/?.so;;'"):format(
          os.getenv("LUPINE_BUILD") or "build"),
      })
      assert.equal(("lupine: echo listening on 127.0.0.1:%d (inline: 1 loop)\n"):format(port), p:stdout())
      local c = client(port)
      c:send("inline\n")
      assert.equal("inline", c:receiveLine())
      p:kill("TERM")
      assert.equal("", c:receiveAll(10))
      assert.equal(0, p:wait(10))
    end)
  end)

  it("says when it listens on every interface", function()
    local p, port = launch("-b 0.0.0.0 -w 1 -p 0 spec/apps/whoami.lua")
    assert.equal(("lupine: whoami listening on 0.0.0.0:%d (all interfaces, 1 worker, one Lua state)\n"):format(port), p:stdout())
    local id, _, c = who(port) -- reached over loopback only
    assert.equal(1, id)
    c:close()
  end)

  it("logs to stderr with time, level, worker and channel; an init that raises closes only its channel", function()
    local p, port = launch("-w 1 -p 0 spec/apps/init_fails.lua")
    local ok1 = client(port)
    local bad = client(port)
    assert.equal("", bad:receiveAll(5)) -- closed by the server
    ok1:send("still here\n")
    assert.equal("still here", ok1:receiveLine())
    local ok2 = client(port)
    ok2:send("new\n")
    assert.equal("new", ok2:receiveLine())
    assert.is_true(proc.waitFor(function() return p:stderr():find("init refuses") ~= nil end, 5))
    assert.matches("%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ error w1 #%d+ init%(ch%) raised: " ..
      "spec/apps/init_fails%.lua:%d+: init refuses connection 2", p:stderr())
    ok1:close()
    ok2:close()
  end)

  it("logs an init that raises a table with its tostring and a traceback", function()
    local p, port = launch("-w 1 -p 0 spec/apps/init_raises_table.lua")
    local c = client(port)
    assert.equal("", c:receiveAll(5)) -- closed by the server
    assert.is_true(proc.waitFor(function() return p:stderr():find("traceback") ~= nil end, 5), p:stderr())
    assert.matches("Z error w1 #%d+ init%(ch%) raised: refused by policy\nstack traceback:\n\t%[C%]: in function 'error'" ..
      "\n\tspec/apps/init_raises_table%.lua:8: in ", p:stderr())
  end)

  for _, relay in ipairs { "0", "1" } do
    it("logs a peer's reset reaching the tail at debug, not warn" .. (relay == "1" and " (passed on from Lua)" or ""),
      function()
        local p, port = launch("-w 1 -p 0 --log-level debug spec/apps/resets.lua", { env = "RELAY=" .. relay })
        -- A client that never reads what it was sent, then closes: its kernel
        -- answers the unread bytes with a reset (RST), not a FIN.
        local f = connect { port = port, options = { autoRead = false } }
        local ch = f:sync(5)
        ch:writeAndFlush("x")
        assert.is_true(proc.waitFor(function() return p:stderr():find("answered") ~= nil end, 5))
        ch:close()
        assert.is_true(proc.waitFor(function() return p:stderr():find("ECONNRESET") ~= nil end, 5), p:stderr())
        local line = p:stderr():match("[^\n]*ECONNRESET[^\n]*")
        assert.matches("Z debug w1 #%d+ 127%.0%.0%.1:%d+ <%- 127%.0%.0%.1:%d+: unhandled exception reached the tail of " ..
          "the pipeline %(closing the channel%): read: ECONNRESET: Connection reset by peer$", line)
        assert.not_matches("Z warn ", p:stderr())
      end)
  end

  describe("refuses bad input with one line and a non-zero status", function()
    it("an app with a syntax error (file and line)", function()
      refuses("-w 2 spec/apps/syntax_error.lua", 1,
        "lupine: spec/apps/syntax_error.lua:4: '}' expected (to close '{' at line 2) near 'port'")
    end)
    it("an app that raises while loading", function()
      refuses("-w 2 spec/apps/raises.lua", 1, "lupine: spec/apps/raises.lua:2: attempt to index a nil value (local 'x')")
    end)
    it("an app that raises a table while loading (the file is named)", function()
      refuses("-w 1 spec/apps/raises_table.lua", 1, "lupine: spec/apps/raises_table.lua: (error object is a table value)")
      refuses("-w 0 spec/apps/raises_table.lua", 1, "lupine: spec/apps/raises_table.lua: (error object is a table value)")
    end)
    it("an app without init", function()
      refuses("spec/apps/no_init.lua", 1, "lupine: spec/apps/no_init.lua: the app has no init(ch) function")
    end)
    it("an app that is not a table", function()
      refuses("spec/apps/not_table.lua", 1,
        "lupine: spec/apps/not_table.lua did not return an app table (end it with: return lupine.app { init = ... })")
    end)
    it("a missing file or module", function()
      refuses("nope.lua", 1, "lupine: cannot open app 'nope.lua': No such file or directory")
      refuses("no_such_module", 1, "lupine: cannot find app 'no_such_module': no such file, and no module of that name")
    end)
    it("a bad channel option in the app", function()
      local code, _, err = proc.run("-w 2 spec/apps/bad_options.lua")
      assert.equal(1, code)
      assert.matches("^lupine: unknown channel option 'highWaterMrk' %(known: [^\n]*%)\n$", err)
    end)
    it("a workerInit that raises (the other workers stop too)", function()
      refuses("-w 2 -p 0 spec/apps/worker_init_fails.lua", 1,
        "lupine: worker 2: workerInit raised: spec/apps/worker_init_fails.lua:5: no database for worker 2")
    end)
    it("a port in use", function()
      local taken = test.server(function() end)
      finally(function() taken:close() end)
      -- (--log-level warn: the app's workers log at info as they start and stop)
      refuses("-w 2 --log-level warn -p " .. taken.port .. " spec/apps/whoami.lua", 1,
        ("lupine: listen on 127.0.0.1:%d: EADDRINUSE: Address already in use"):format(taken.port))
    end)
    it("a bind address that is not numeric", function()
      refuses("-b example.com spec/apps/whoami.lua", 1,
        "lupine: host 'example.com' is not a numeric IPv4/IPv6 address or localhost")
    end)
    it("invalid options", function()
      refuses("-w -1 examples/echo.lua", 2, "lupine: invalid worker count '-1' (0..1024)")
      refuses("-w two examples/echo.lua", 2, "lupine: invalid worker count 'two' (0..1024)")
      refuses("-p 70000 examples/echo.lua", 2, "lupine: invalid port '70000' (0..65535)")
      refuses("--log-level loud examples/echo.lua", 2, "lupine: invalid log level 'loud' (debug, info, warn, error, off)")
      refuses("--frobnicate examples/echo.lua", 2, "lupine: unknown option '--frobnicate' (see lupine --help)")
      refuses("--shutdown-timeout soon examples/echo.lua", 2, "lupine: invalid shutdown timeout 'soon' (seconds, 0..86400)")
      refuses("--memory-limit 12Q examples/echo.lua", 2, "lupine: invalid memory limit '12Q' (0: none, else at least 1M; e.g. 512M)")
      refuses("examples/echo.lua -w", 2, "lupine: one app only; unexpected '-w'")
      refuses("-w", 2, "lupine: option -w needs a value")
      refuses("", 2, "lupine: no app given (usage: lupine [options] app.lua|module; see lupine --help)")
    end)
  end)

  it("keeps serving and accepts again after running out of descriptors (EMFILE)", function()
    -- Find how many descriptors the launcher needs with no connection, then
    -- give it room for a few connections only.
    local probe = launch("-w 2 -p 0 examples/echo.lua")
    local base = probe:fds()
    probe:cleanup()
    local p, port = launch("-w 2 -p 0 examples/echo.lua", { ulimit = base + 6 })
    local served, shed = {}, 0
    for _ = 1, 20 do
      local c = client(port, { timeout = 2 })
      local ok = pcall(function()
        c:send("x\n")
        assert(c:receiveLine() == "x")
      end)
      if ok then served[#served + 1] = c else shed = shed + 1; c:close() end
    end
    assert.is_true(#served >= 3 and #served <= 7, #served .. " connections served")
    assert.is_true(shed >= 13, shed .. " connections shed")
    for i, c in ipairs(served) do -- the old connections still work
      c:send("old " .. i .. "\n")
      assert.equal("old " .. i, c:receiveLine())
    end
    for _, c in ipairs(served) do c:close() end
    local again = false
    proc.waitFor(function()
      local c = client(port, { timeout = 1 })
      again = pcall(function()
        c:send("again\n")
        assert(c:receiveLine() == "again")
      end)
      c:close()
      return again
    end, 5)
    assert.is_true(again, "no connection accepted after descriptors freed up")
    local err = p:stderr()
    local _, bursts = err:gsub("accept: EMFILE %(Too many open files%); closing new connections until descriptors free up", "")
    assert.equal(1, bursts)
    assert.matches("accepting again; %d+ connection%(s%) were closed for want of descriptors", err)
    assert.matches("connection closed: EMFILE cause=EMFILE", err) -- each one, rate-limited (production.md)
  end)

  it("closes connections over maxConnections at once, with a log line", function()
    local p, port = launch("-w 2 -p 0 --max-connections 2 spec/apps/whoami.lua")
    local a, b = client(port), client(port)
    a:send("a\n")
    b:send("b\n")
    assert.equal("a", a:receiveLine())
    assert.equal("b", b:receiveLine())
    local over = client(port)
    assert.equal("", over:receiveAll(5))
    a:close()
    local ok = proc.waitFor(function()
      local c = client(port, { timeout = 1 })
      local served = pcall(function()
        c:send("c\n")
        assert(c:receiveLine() == "c")
      end)
      c:close()
      return served
    end, 5)
    assert.is_true(ok)
    b:close()
    assert.matches("maxConnections %(2%) reached: closing new connections until some close", p:stderr())
    assert.matches("connection closed: maxConnections cause=maxConnections", p:stderr())
  end)

  it("fails only the channel whose Lua state ran out of memory", function()
    local p, port = launch("-w 1 -p 0 --memory-limit 32M spec/apps/hog.lua")
    local calm = client(port)
    calm:send("before\n")
    assert.equal("before", calm:receiveLine())
    local hog = client(port)
    hog:send("hog\n")
    assert.equal("", hog:receiveAll(10)) -- its channel closed
    calm:send("after\n")
    assert.equal("after", calm:receiveLine())
    local late = client(port)
    late:send("late\n")
    assert.equal("late", late:receiveLine())
    assert.matches("handler 'hog' channelRead: not enough memory", p:stderr())
    calm:close()
    late:close()
    p:kill("TERM")
    assert.equal(0, p:wait(10))
  end)

  it("survives a worker state that stays out of memory: its new channels fail, the process goes on", function()
    local p, port = launch("-w 1 -p 0 --memory-limit 16M spec/apps/hog.lua")
    local leak = client(port)
    leak:send("leak\n")
    assert.equal("", leak:receiveAll(10))
    for _ = 1, 3 do
      local c = client(port)
      assert.equal("", c:receiveAll(10)) -- init could not run: closed at once
    end
    assert.matches("init%(ch%) raised: not enough memory", p:stderr())
    p:kill("TERM")
    assert.equal(0, p:wait(10))
  end)

  it("serves ping-pong load from bench/loadgen with 2 workers, every echo checked", function()
    local p, port = launch("-w 2 -p 0 examples/echo.lua")
    local out = io.popen(("%s -p %d -c 20 -s 64 -d 1 -w 0.1 2>&1; echo status=$?"):format(proc.loadgen, port)):read("a")
    assert.matches("status=0", out)
    local rate = tonumber(out:match("rt_per_s=([%d.]+)"))
    assert.is_true(rate and rate > 0, out)
  end)
end)
