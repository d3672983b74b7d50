-- lupine.test: servers, synchronous clients whose waits report what arrived
-- when they fail, eventually, waitForPort, blackhole, freePort, spawn.
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

-- A server that runs script(ctx) when a client connects.
local function scripted(script, options)
  return test.server(function(ch)
    ch.pipeline:addLast("script", {
      channelActive = function(_, ctx) script(ctx) end,
      channelRead = function(_, _, buf) buf:release() end,
    })
  end, { options = options })
end

-- Send the pieces with a pause between them: the client sees them in separate reads.
local function drip(ctx, pieces, gap)
  local i = 0
  local function next_piece()
    i = i + 1
    if i > #pieces or not ctx.channel:isOpen() then return end
    ctx:writeAndFlush(pieces[i])
    ctx.executor:schedule(gap or 0.01, next_piece)
  end
  next_piece()
end

-- Whether a process runs (a zombie nobody reaped yet does not).
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a") -- nil when it ended between the open and the read
  f:close()
  local state = stat and stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local function err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("lupine.test", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("test.server listens on 127.0.0.1, a free port, and returns the server, its host and port", function()
    local server, host, port = test.server(dofile("examples/echo.lua"))
    assert.equal("127.0.0.1", host)
    assert.equal(server.port, port)
    assert.is_true(port > 0)
    assert.has_error(function() test.server(42) end, "test.server: need an init(ch) function or an app table")
    server:close()
  end)

  it("receives across reads: receive(n), receiveLine, receiveUntil, expect with captures", function()
    local server = scripted(function(ctx)
      drip(ctx, { "HEL", "LO\r", "\nsecond li", "ne\nkey=", "value;", "rest:", "123 tail" })
    end)
    local c = test.client(server.port)
    assert.equal("HELLO", c:receiveLine())
    assert.equal("second line", c:receiveLine())
    assert.equal("key=value", c:receiveUntil(";"))
    assert.equal("123", c:expect("rest:(%d+)"))
    assert.equal(" tai", c:receive(4))
    assert.equal("l", c:received())
    c:close()
    server:close()
  end)

  it("reports what was received when a wait times out", function()
    local server = scripted(function(ctx) ctx:writeAndFlush("abc") end)
    local c = test.client(server.port)
    local t0 = loop:now()
    local err = err_of(c.receive, c, 10, 0.2)
    assert.is_true(loop:now() - t0 >= 0.19)
    assert.matches('^spec/testkit_spec.lua:%d+: receive%(10%): timed out after 0.2 s; received so far: "abc"$', err)
    assert.matches('expect%("xyz"%): timed out after 0.1 s; received so far: "abc"$', err_of(c.expect, c, "xyz", 0.1))
    assert.equal("abc", c:receive(3)) -- nothing was lost by the failed waits
    c:close()
    server:close()
  end)

  it("reports a connection that closed, with what came before and the error that closed it", function()
    local server = scripted(function(ctx) ctx:writeAndFlush("partial", function() ctx:close() end) end)
    local c = test.client(server.port)
    assert.matches('receiveLine%(%): the connection closed; received so far: "partial"$', err_of(c.receiveLine, c))
    -- A peer that resets: it closes with our bytes unread (it never reads).
    local rst = scripted(function(ctx)
      ctx.executor:schedule(0.1, function() ctx.channel:close() end)
    end, { autoRead = false })
    local c2 = test.client(rst.port)
    c2:send("unread")
    local err = err_of(c2.receive, c2, 5)
    assert.matches("receive%(5%): the connection closed %(read: ECONNRESET: Connection reset by peer%); received so far: \"\"$",
      err)
    server:close()
    rst:close()
  end)

  it("times out a send the peer does not read", function()
    local chans = {}
    local server = test.server(function(ch) chans[#chans + 1] = ch end, { options = { autoRead = false, rcvBuf = 4096 } })
    local c = test.client(server.port, { timeout = 0.3, options = { sndBuf = 4096 } })
    local err = err_of(c.send, c, ("s"):rep(8 * 1024 * 1024))
    assert.matches("send: not written within 0.3 s %(is the peer reading%?%)$", err)
    c:close()
    chans[1]:close()
    server:close()
  end)

  it("hands messages that are not bytes to receiveMessage (a decoder added with opts.init)", function()
    local server = scripted(function(ctx) ctx:writeAndFlush("a=1\nb=2\n") end)
    local Lines = {}
    function Lines:channelRead(ctx, buf)
      self.pending = (self.pending or "") .. buf:readString()
      for k, v in self.pending:gmatch("(%w+)=(%w+)\n") do ctx:fireChannelRead { key = k, value = v } end
      self.pending = self.pending:gsub(".*\n", "")
    end
    local c = test.client(server.port, { init = function(ch) ch.pipeline:addLast("lines", setmetatable({}, { __index = Lines })) end })
    assert.same({ key = "a", value = "1" }, c:receiveMessage())
    assert.same({ key = "b", value = "2" }, c:receiveMessage())
    assert.matches('receiveMessage%(%): timed out after 0.1 s; bytes received so far: ""$', err_of(c.receiveMessage, c, 0.1))
    c:close()
    server:close()
  end)

  it("test.client is a lupine.co socket: inside test.run its waits park the coroutine, with the same failures", function()
    local server = scripted(function(ctx) drip(ctx, { "one\n", "two\n", "three\n" }, 0.02) end)
    local order = {}
    local got = test.run(function()
      local c = test.client(server.port)
      assert.equal("lupine.Socket", tostring(c):match("^lupine%.Socket"))
      -- another coroutine runs while this one waits in receiveLine
      local other = lupine.spawn(function()
        order[#order + 1] = "other"
        return "ran"
      end)
      local lines = { c:receiveLine(), c:receiveLine(), c:receiveLine() }
      order[#order + 1] = "lines"
      assert.equal("ran", lupine.await(other))
      local ok, err = pcall(c.receive, c, 3, 0.05)
      assert.is_false(ok)
      assert.matches('receive%(3%): timed out after 0.05 s; received so far: ""$', err)
      c:close()
      return lines
    end)
    assert.same({ "one", "two", "three" }, got)
    assert.same({ "other", "lines" }, order)
    server:close()
  end)

  it("test.run raises the body's error with its traceback, or that it did not finish in time", function()
    assert.matches("^spec/testkit_spec.lua:%d+: inside\nstack traceback:\n", err_of(test.run, function()
      lupine.sleep(0.001)
      error("inside")
    end))
    local closed = false
    local t0 = loop:now()
    assert.equal("test.run: the body did not finish within 0.1 s", err_of(test.run, function()
      local _ <close> = setmetatable({}, { __close = function() closed = true end })
      lupine.sleep(10)
    end, 0.1):gsub("^[^:]+:%d+: ", ""))
    assert.is_true(loop:now() - t0 < 1)
    assert.is_true(closed, "the abandoned body's to-be-closed variables were not closed")
    assert.equal("test.run: expected a function", err_of(test.run, 42):gsub("^[^:]+:%d+: ", ""))
  end)

  it("raises when it cannot connect, naming the cause", function()
    local port = test.freePort()
    assert.equal(("test.client: connect to 127.0.0.1:%d failed: ECONNREFUSED: Connection refused (connect to 127.0.0.1:%d)")
      :format(port, port), err_of(test.client, port):gsub("^[^:]+:%d+: ", ""))
  end)

  it("eventually waits for conditions outside the loop too, and names what did not happen", function()
    local flag = os.tmpname()
    os.remove(flag)
    os.execute(("(sleep 0.2; touch %s) &"):format(flag))
    local t0 = loop:now()
    test.eventually(function()
      local f = io.open(flag)
      if f then f:close() end
      return f ~= nil
    end, 5)
    assert.is_true(loop:now() - t0 < 2) -- seen soon after, not at the timeout
    os.remove(flag)
    assert.matches("test.eventually: the flag did not hold within 0.1 s$",
      err_of(test.eventually, function() return false end, 0.1, "the flag"))
    assert.matches("boom", err_of(test.eventually, function() error("boom") end, 1))
  end)

  it("eventually raises a nested loop run that its predicate swallowed, naming waitForPort", function()
    local server = test.server(dofile("examples/echo.lua"))
    local err = err_of(test.eventually, function() return pcall(test.client, server.port) end, 2)
    assert.equal("test.eventually: its predicate ran the loop: runUntil called from inside the running loop (a "
      .. "handler, timer or listener): use a listener or schedule() instead of waiting (raised again by the outer "
      .. "run: the first error was caught); to wait for a server to listen, use test.waitForPort(port)", err)
    server:close()
  end)

  it("waitForPort waits until a port accepts connections, or names the last failure", function()
    local port = test.freePort()
    local server
    loop:schedule(0.2, function() server = test.server(dofile("examples/echo.lua"), { port = port }) end)
    local t0 = loop:now()
    assert.is_true(test.waitForPort(port, 5))
    assert.is_true(loop:now() - t0 >= 0.15)
    assert.is_true(test.waitForPort("127.0.0.1", port))
    server:close()
    local free = test.freePort()
    assert.equal(("test.waitForPort: nothing accepted a connection on 127.0.0.1:%d within 0.2 s (last: "
      .. "ECONNREFUSED: Connection refused (connect to 127.0.0.1:%d))"):format(free, free),
      err_of(test.waitForPort, free, 0.2):gsub("^[^:]+:%d+: ", ""))
    assert.matches("test.waitForPort: expected a port number %(1%-65535%), got nil$", err_of(test.waitForPort))
  end)

  it("spawns programs and stops them; a missing program fails loudly", function()
    local p = test.spawn { "sleep", "30" }
    assert.is_true(p:isRunning())
    p:stop()
    assert.is_false(p:isRunning())
    assert.has_error(function() test.spawn { "no-such-program-lupine" } end,
      "test.spawn: 'no-such-program-lupine' is not installed (not on PATH)")
  end)

  it("spawn: stop() ends the program's whole process group", function()
    local p = test.spawn { "sh", "-c", "sleep 60 & echo $!; wait" }
    local child
    test.eventually(function()
      child = tonumber(p:output():match("^(%d+)\n"))
      return child ~= nil
    end, 10, "the shell to print its child's pid")
    assert.is_true(alive(child))
    assert.equal(128 + 15, p:stop()) -- SIGTERM
    assert.is_false(p:isRunning())
    test.eventually(function() return not alive(child) end, 5, "the program's own child to end too")
  end)

  it("spawn: a program dies with the process that spawned it, even one killed by SIGKILL", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local test = require "lupine.test"
      local p = test.spawn { "sleep", "60" }
      io.stdout:write(p.pid, "\n")
      io.stdout:flush()
      require("lupine").loop():runFor(60)
    ]])
    f:close()
    local parent = test.spawn({ "lua5.4", script }, { env = { LUA_PATH = package.path, LUA_CPATH = package.cpath } })
    local sleeper
    test.eventually(function()
      sleeper = tonumber(parent:output():match("^(%d+)\n"))
      return sleeper ~= nil or not parent:isRunning()
    end, 10, "the child lua5.4 to spawn a sleeper")
    os.remove(script)
    assert(sleeper, "no sleeper: " .. parent:output())
    assert.is_true(alive(sleeper))
    assert.is_true(os.execute("kill -KILL " .. parent.pid)) -- that process alone, not its group
    assert.equal(128 + 9, parent:wait(5))
    test.eventually(function() return not alive(sleeper) end, 5, "the sleeper to die with its parent")
    parent:stop()
  end)

  it("spawn: status, wait, kill, separate output files; the program's environment", function()
    local out, err = os.tmpname(), os.tmpname()
    local p = test.spawn({ "sh", "-c", 'echo "out $LUPINE_X"; echo err >&2; exit 3' },
      { env = { LUPINE_X = 42 }, stdout = out, stderr = err })
    assert.equal(3, p:wait(5))
    assert.equal(3, p:status())
    assert.is_false(p:isRunning())
    local function slurp(path)
      local fh = assert(io.open(path))
      local s = fh:read("a")
      fh:close()
      return s
    end
    assert.equal("out 42\n", slurp(out))
    assert.equal("err\n", slurp(err))
    assert.equal(3, p:stop())
    os.remove(out)
    os.remove(err)
    p = test.spawn { "sleep", "60" }
    assert.is_nil(p:status())
    p:kill("KILL")
    assert.equal(128 + 9, p:wait(5))
    p:stop()
    assert.matches("test.spawn: sleep %(pid %d+%) did not exit within 0.1 s$",
      err_of(function() local q <close> = test.spawn { "sleep", "60" }; q:wait(0.1) end))
  end)

  it("blackhole: connects to it neither complete nor fail until their timeout", function()
    local hole = test.blackhole()
    local f = lupine.connect { port = hole.port, timeout = 0.2 }
    loop:runFor(0.1)
    assert.is_false(f:isDone())
    loop:runUntil(f, 5)
    assert.equal("ConnectTimeout", f:cause().kind)
    hole.close()
  end)
end)
