-- lupine.blocking: jobs on a pool of threads with Lua states of their own,
-- their results as futures completed on the calling loop. Real sockets: the
-- loop keeps answering pings while a job reads and hashes a file.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"
local job = require "blocking_job" -- the same module, inline, to compare

local loop = lupine.loop()
local blocking = lupine.blocking

-- Wait for a future (bounded) and return it.
local function settle(f, timeout)
  loop:runUntil(f, timeout or 30, "a blocking job")
  return f
end

local function result(f, timeout)
  settle(f, timeout)
  if not f:isSuccess() then error("the job failed: " .. tostring(f:cause()), 2) end
  return f:get()
end

local function failure(f, timeout)
  settle(f, timeout)
  assert.is_false(f:isSuccess())
  return f:cause()
end

-- A named pipe: a job that opens it waits until the spec writes a line.
local pipes = {}
local function pipe()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkfifo " .. path))
  pipes[#pipes + 1] = path
  return path
end
-- Write a line to the pipe: returns once a job has it open (bounded: 20 s).
local function release(path, line)
  assert(os.execute(("timeout 20 sh -c 'echo %s > %s'"):format(line or "go", path)), "no job opened " .. path)
end

local ONLY = "only nil, booleans, numbers, strings and flat tables of those cross to the pool"

describe("lupine.blocking", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(function()
    for _, p in ipairs(pipes) do os.remove(p) end
    pipes = {}
    leaks.after()
  end)

  it("has one thread per core unless configured, and starts on the first job", function()
    local st = blocking.stats()
    assert.equal(lupine.cpuCount(), st.threads)
    assert.equal(10000, st.maxJobs)
    -- In a fresh process: this one may have started the pool in an earlier spec file.
    local script = [[
      local lupine = require "lupine"
      local b = lupine.blocking
      local before = b.stats().started
      local f = b.run("return function(a, b) return a * b end", 2, 3)
      lupine.loop():runUntil(f, 20, "the job")
      io.write(tostring(before), " ", tostring(f:get()), " ", tostring(b.stats().started))
    ]]
    local function q(v) return "'" .. v:gsub("'", "'\\''") .. "'" end
    local p = assert(io.popen(("LUA_PATH=%s LUA_CPATH=%s timeout 30 lua5.4 -e %s"):format(
      q(package.path), q(package.cpath), q(script))))
    local out = p:read("a")
    p:close()
    assert.equal("false 6 true", out)
  end)

  it("calls a module's function in a pool state: require(module)[fnName](...)", function()
    assert.equal("ababab", result(blocking("string", "rep", "ab", 3)))
    assert.same({ sum = 1, size = 0 }, result(blocking("blocking_job", "checksum", "/dev/null")))
  end)

  it("runs a chunk's source that returns a function, or a Lua function without upvalues", function()
    assert.equal(3, result(blocking.run("return function(a, b) return a + b end", 1, 2)))
    assert.equal("xy", result(blocking.run(function(a, b) return a .. b end, "x", "y")))
    -- Globals are the pool state's own (_ENV is the one upvalue allowed).
    assert.equal("table", result(blocking.run(function() return type(string) end)))
  end)

  it("copies nil, booleans, integers and floats (kept apart), strings and flat tables, both ways", function()
    local t = result(blocking.run(function(...)
      local n = select("#", ...)
      local a, b, c, d, e, f, g = ...
      return {
        n = n, a = math.type(a), b = math.type(b), c = c == nil, d = d, e = e, f = #f, g1 = g[1], g2 = g.k,
        g3 = g[-7], g4 = g[3.0] == false, h = "\0bytes\255",
      }
    end, 1, 1.0, nil, true, "s", ("z"):rep(100000), { "one", k = 2.5, [-7] = "neg", [3] = false }))
    assert.same({
      n = 7, a = "integer", b = "float", c = true, d = true, e = "s", f = 100000, g1 = "one", g2 = 2.5,
      g3 = "neg", g4 = true, h = "\0bytes\255",
    }, t)
    assert.equal("float", math.type(result(blocking.run(function() return 3.0 end))))
    assert.equal("integer", math.type(result(blocking.run(function() return 3 end))))
    assert.is_nil(result(blocking.run(function() end)))
    assert.same({ 1, 2, 3 }, result(blocking.run(function() return { 1, 2, 3 } end)))
  end)

  it("refuses what cannot cross to the pool, naming the argument", function()
    local f = function() end
    assert.has_error(function() blocking.run(f, 1, { {} }) end,
      "lupine.blocking.run: argument #3 is a table inside a table: only flat tables of strings, numbers and booleans cross to the pool")
    assert.has_error(function() blocking("m", "f", 1, { {} }) end,
      "lupine.blocking: argument #4 is a table inside a table: only flat tables of strings, numbers and booleans cross to the pool")
    assert.has_error(function() blocking.run(f, print) end, "lupine.blocking.run: argument #2 is a function: " .. ONLY)
    assert.has_error(function() blocking.run(f, lupine.buffer("x")) end, "lupine.blocking.run: argument #2 is a userdata: " .. ONLY)
    assert.has_error(function() blocking.run(f, coroutine.create(f)) end, "lupine.blocking.run: argument #2 is a thread: " .. ONLY)
    assert.has_error(function() blocking.run(f, setmetatable({}, {})) end,
      "lupine.blocking.run: argument #2 is a table with a metatable: " .. ONLY)
    assert.has_error(function() blocking.run(f, { [true] = 1 }) end,
      "lupine.blocking.run: argument #2 has a boolean key: only string and integer keys cross: " .. ONLY)
    assert.has_error(function() blocking.run(f, { [1.5] = 1 }) end,
      "lupine.blocking.run: argument #2 has a float key: only string and integer keys cross: " .. ONLY)
    assert.has_error(function() blocking.run(f, { print }) end, "lupine.blocking.run: argument #2 holds a function: " .. ONLY)
    assert.has_error(function() blocking(1, "f") end, "lupine.blocking: argument #1 (the module name) must be a string, not number")
    assert.has_error(function() blocking("m") end, "lupine.blocking: argument #2 (the function name) must be a string, not nil")
    assert.has_error(function() blocking("m\0x", "f") end, "lupine.blocking: argument #1 (the module name) contains a NUL byte")
    assert.has_error(function() blocking.run(42) end,
      "bad argument #1 to 'run' (a Lua function, or the source of a chunk that returns one)")
  end)

  it("refuses a function with upvalues, and C functions", function()
    local n = 1
    assert.has_error(function() blocking.run(function() return n end) end,
      "lupine.blocking.run: the function uses 'n', a local variable of an enclosing function (an upvalue): a job runs in another Lua state; pass it as an argument")
    assert.has_error(function() blocking.run(print) end,
      "lupine.blocking.run: a C function cannot cross to the pool (give a Lua function, or its source)")
  end)

  it("fails the future when a result cannot cross back, or there are several", function()
    assert.equal("lupine.blocking.run: result #1 is a function: only nil, booleans, numbers, strings and flat tables of those cross back from the pool",
      failure(blocking.run(function() return print end)))
    assert.equal("lupine.blocking.run: result #1 is a table inside a table: only flat tables of strings, numbers and booleans cross back from the pool",
      failure(blocking.run(function() return { {} } end)))
    assert.equal("lupine.blocking.run: the job returned 2 values: return one (a flat table holds several)",
      failure(blocking.run(function() return 1, 2 end)))
  end)

  it("fails the future with the message and the traceback when the job raises", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local f = blocking.run(function(x) if x then error("boom " .. x) end end, "now")
    local cause = failure(f)
    assert.equal("string", type(cause))
    assert.matches("^spec/blocking_spec.lua:" .. line .. ": boom now\nstack traceback:\n", cause)
    assert.matches("spec/blocking_spec.lua:" .. line .. ": in function", cause)
    assert.matches("^lupine.Future%(failed: spec/blocking_spec.lua:" .. line .. ": boom now", tostring(f))
    -- An error object that is not a string arrives as its tostring.
    assert.matches("^table: 0x", failure(blocking.run(function() error({}) end)))
  end)

  it("fails the future when the module, the function or the source is wrong", function()
    assert.matches("^module 'no.such.module' not found:", failure(blocking("no.such.module", "f")))
    assert.matches("^lupine.blocking: module 'blocking_job' has no function 'nope'\nstack traceback:",
      failure(blocking("blocking_job", "nope")))
    assert.matches("^lupine.blocking: module 'blocking_job' has no function 'value'", failure(blocking("blocking_job", "value")))
    assert.matches("^lupine.blocking.run: the source must return a function %(it returned number%)",
      failure(blocking.run("return 1")))
    assert.matches("^lupine.blocking.run: %(blocking source%):1: ", failure(blocking.run("return function(")))
  end)

  it("leaves a future completed by hand as it is when the job ends", function()
    local wait = pipe()
    local f = blocking("blocking_job", "waitOn", wait)
    assert.is_true(f:setSuccess("mine"))
    release(wait, "theirs")
    test.eventually(function() return blocking.stats().running == 0 and blocking.stats().queued == 0 end, 10,
      "the job to end")
    loop:runFor(0.05) -- its result reaches the loop
    assert.equal("mine", f:get())
  end)

  it("refuses a job started from a job", function()
    assert.matches("^spec/blocking_spec.lua:%d+: lupine.blocking.run: called from a blocking job: a job cannot start another\n",
      failure(blocking.run(function()
        return require("lupine").blocking.run("return function() end")
      end)))
  end)

  it("keeps the loop serving while a job reads and hashes a file of 4 MiB", function()
    local path = os.tmpname()
    local out = assert(io.open(path, "wb"))
    for i = 1, 4096 do out:write((string.char(i % 251, (i * 7) % 256)):rep(512)) end
    out:close()
    local t0 = os.clock()
    local expected = job.checksum(path) -- inline: nothing else runs meanwhile
    local inline = os.clock() - t0
    assert.equal(4 * 1024 * 1024, expected.size)

    local Echo = {}
    function Echo:channelRead(ctx, msg) ctx:writeAndFlush(msg) end
    local server, _, port = test.server(function(ch)
      ch.pipeline:addLast("lines", lupine.codec.lineFrame { asString = true, stripDelimiter = false })
      ch.pipeline:addLast("echo", Echo)
    end)
    local c = test.client(port)
    local started = loop:now()
    local f = blocking("blocking_job", "checksum", path)
    local pings, slowest = 0, 0
    while not f:isDone() and loop:now() - started < 60 do -- bounded: 60 s
      local sent = loop:now()
      c:send("ping " .. pings .. "\n")
      assert.equal("ping " .. pings, c:receiveLine())
      slowest = math.max(slowest, loop:now() - sent)
      pings = pings + 1
    end
    local took = loop:now() - started
    assert.same(expected, result(f))
    -- The loop answered pings the whole time the job ran (it takes about as
    -- long as the inline run; each ping is a round trip through the loop).
    assert.is_true(pings >= 10, ("only %d pings answered in %.3f s"):format(pings, took))
    if os.getenv("BLOCKING_FIGURES") then
      print(("\ninline hash %.3f s (no ping possible); in the pool %.3f s with %d pings answered meanwhile, the slowest in %.2f ms"):format(
        inline, took, pings, slowest * 1000))
    end
    c:close()
    server:close()
    os.remove(path)
  end)

  it("compiles each source once per pool state, and keeps only so many", function()
    -- More distinct sources than a pool state keeps compiled (256): the cache starts over.
    blocking.configure { threads = 1 }
    for i = 1, 300 do
      assert.equal(i, result(blocking.run("return function(x) return x + " .. (i - 1) .. " end", 1)))
    end
    assert.equal(5, result(blocking.run("return function(x) return x + 4 end", 1)))
    local f = function(x) return x * 2 end
    for i = 1, 3 do assert.equal(2 * i, result(blocking.run(f, i))) end
    blocking.configure { threads = 0 }
  end)

  it("requires a module once per pool state, and reuses the states", function()
    for _ = 1, 20 do assert.equal(1, result(blocking("blocking_job", "loads"))) end
  end)

  it("sizes the pool with configure{threads}: that many jobs run at once, in as many states", function()
    blocking.configure { threads = 3 }
    assert.equal(3, blocking.stats().threads)
    local waits, futures = {}, {}
    for i = 1, 3 do
      waits[i] = pipe()
      futures[i] = blocking.run(function(path)
        local m = require "blocking_job"
        return { line = m.waitOn(path), state = m.stateId() }
      end, waits[i])
    end
    test.eventually(function() return blocking.stats().running == 3 end, 20, "3 jobs running at once")
    local fourth = blocking("blocking_job", "stateId")
    local st = blocking.stats()
    assert.equal(3, st.running)
    assert.equal(1, st.queued)
    assert.has_error(function() blocking.configure { threads = 1 } end,
      "lupine.blocking.configure: jobs are queued or running; configure the pool while it is idle")
    local states = {}
    for i = 1, 3 do
      release(waits[i], "line" .. i)
      local r = result(futures[i])
      assert.equal("line" .. i, r.line)
      states[r.state] = true
    end
    local n = 0
    for _ in pairs(states) do n = n + 1 end
    assert.equal(3, n)
    assert.is_string(result(fourth))
    test.eventually(function() return blocking.stats().running == 0 end, 10, "the pool to be idle")
    blocking.configure { threads = 1 }
    assert.equal(1, blocking.stats().threads)
    blocking.configure { threads = 0 } -- back to one per core
    assert.equal(lupine.cpuCount(), blocking.stats().threads)
  end)

  it("refuses jobs past maxJobs (queued or running) with BlockingQueueFull", function()
    blocking.configure { threads = 1, maxJobs = 3 }
    local wait = pipe()
    local first = blocking("blocking_job", "waitOn", wait)
    local second, third = blocking("blocking_job", "loads"), blocking("string", "upper", "x")
    local refused = blocking("string", "upper", "y")
    assert.is_true(refused:isDone())
    local cause = refused:cause()
    assert.equal("BlockingQueueFull", cause.kind)
    assert.equal("BlockingQueueFull: 3 jobs are queued or running (maxJobs)", tostring(cause))
    release(wait)
    assert.equal("go", result(first))
    assert.equal(1, result(second))
    assert.equal("X", result(third))
    assert.equal("Y", result(blocking("string", "upper", "y"))) -- room again
    blocking.configure { threads = 0, maxJobs = 10000 }
  end)

  it("checks the app option blockingThreads", function()
    assert.has_error(function() lupine.serve({ init = function() end, blockingThreads = 1.5 }) end,
      "lupine: option 'blockingThreads' must be an integer from 0 (one per core) to 256")
  end)

  it("checks configure's options", function()
    assert.has_error(function() blocking.configure { thread = 2 } end,
      "lupine.blocking.configure: unknown option 'thread' (known: threads, maxJobs)")
    assert.has_error(function() blocking.configure { threads = -1 } end, "option 'threads' must be an integer from 0 to 256")
    assert.has_error(function() blocking.configure { maxJobs = 0 } end, "option 'maxJobs' must be an integer from 1 to 1073741824")
  end)

  it("serves jobs from launcher workers (blockingThreads), logs failures nobody heard, exits 0 with jobs running and queued", function()
    local p = proc.start("-w 2 -p 0 spec/apps/blocking_app.lua")
    local ok, err = pcall(function()
      local port = p:port()
      local c = test.client(port)
      c:send("stats\n")
      assert.equal("threads=1 running=0 queued=0", c:receiveLine())
      c:send("sum 1000\n")
      assert.equal("sum=500500", c:receiveLine())
      c:send("fail unheard\n")
      assert.equal("started", c:receiveLine())
      assert.is_true(proc.waitFor(function() return p:stderr():find("unheard", 1, true) ~= nil end, 20))
      assert.matches(" error w%d a blocking job failed and nobody listened to its future: spec/apps/blocking_app.lua:%d+: unheard\nstack traceback:\n",
        p:stderr())
      c:send("sleep 1\nsleep 1\n") -- one runs, one waits: the pool has one thread
      assert.is_true(proc.waitFor(function()
        c:send("stats\n")
        return c:receiveLine() == "threads=1 running=1 queued=1"
      end, 20))
      p:kill("TERM")
      c:close() -- the worker closes, its state too: the queued job is dropped, the running one abandoned
      assert.equal(0, p:wait(30))
      local _, errors = p:stderr():gsub(" error ", "")
      assert.equal(1, errors) -- the unheard failure, nothing else
    end)
    p:cleanup()
    assert(ok, err)
  end)
end)
