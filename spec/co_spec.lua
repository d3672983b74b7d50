-- lupine.co: spawn, sleep, await (coroutines on the loop).
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

-- Run a Lua script in a fresh interpreter (log on), returning its stderr and stdout.
local function run_script(src)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local build = os.getenv("LUPINE_BUILD") or "build"
  local p = io.popen(("LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./%s/lib/?.so;;' timeout 20 lua5.4 %s 2>&1")
    :format(build, path))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return out
end

local function wait(f, what) loop:runUntil(f, 5, what or "the coroutine") end

describe("lupine.spawn, sleep, await", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("spawn runs at once until the first wait and returns a future of every result", function()
    local steps = {}
    local f = lupine.spawn(function(a, b)
      steps[#steps + 1] = "started"
      lupine.sleep(0.01)
      steps[#steps + 1] = "woke"
      return a + b, "two", nil
    end, 1, 2)
    assert.same({ "started" }, steps)
    assert.is_false(f:isDone())
    wait(f)
    assert.same({ "started", "woke" }, steps)
    assert.equal(3, f:get())
    local g = lupine.spawn(function() return table.pack(lupine.await(f)) end)
    wait(g)
    assert.same({ n = 3, 3, "two", nil }, g:get())
  end)

  it("sleep parks for the time given, and other coroutines run meanwhile", function()
    local order = {}
    local t0 = loop:now()
    local a = lupine.spawn(function() lupine.sleep(0.15); order[#order + 1] = "slow" end)
    local b = lupine.spawn(function() lupine.sleep(0.02); order[#order + 1] = "fast" end)
    wait(a)
    wait(b)
    assert.same({ "fast", "slow" }, order)
    assert.is_true(loop:now() - t0 >= 0.14)
    assert.has_error(function() lupine.sleep(-1) end, "lupine.sleep: expected a number of seconds >= 0, got -1")
  end)

  it("await returns a future's value, true for a success without one, nil and the cause for a failure", function()
    local p1, p2, p3 = lupine.promise(), lupine.promise(), lupine.promise()
    local f = lupine.spawn(function()
      local r = { lupine.await(p1) }
      r[#r + 1] = lupine.await(p2)
      local v, err = lupine.await(p3)
      r[#r + 1] = tostring(v)
      r[#r + 1] = tostring(err)
      return r
    end)
    loop:execute(function() p1:setSuccess("one") end)
    loop:runFor(0.02)
    p2:setSuccess()
    p3:setFailure("nope")
    wait(f)
    assert.same({ "one", true, "nil", "nope" }, f:get())
  end)

  it("await gives up after its timeout with nil, \"timeout\"; the late future wakes nothing", function()
    local p = lupine.promise()
    local sleeping = false
    local f = lupine.spawn(function()
      local v, err = lupine.await(p, 0.05)
      sleeping = true
      local t1 = loop:now()
      lupine.sleep(0.1) -- p completes during this sleep: the stale listener must not end it early
      return v, err, loop:now() - t1
    end)
    loop:runUntil(function() return sleeping end, 5, "the await to time out")
    p:setSuccess("late")
    wait(f)
    local g = lupine.spawn(function() return table.pack(lupine.await(f)) end)
    wait(g)
    local r = g:get()
    assert.same({ nil, "timeout" }, { r[1], r[2] })
    assert.is_true(r[3] >= 0.095, "the sleep was cut short by the stale await: " .. r[3])
  end)

  it("an error fails the future with the message and a traceback", function()
    local f = lupine.spawn(function()
      lupine.sleep(0.01)
      error("boom")
    end)
    wait(f)
    assert.is_false(f:isSuccess())
    local cause = tostring(f:cause())
    assert.matches("^spec/co_spec.lua:%d+: boom\nstack traceback:\n", cause)
    local g = lupine.spawn(function() return table.pack(lupine.await(f)) end)
    wait(g)
    assert.equal(cause, g:get()[2])
  end)

  it("a failure nobody observes is logged once; an awaited one is not logged", function()
    local out = run_script [[
      local lupine = require "lupine"
      local loop = lupine.loop()
      lupine.spawn(function() lupine.sleep(0.01); error("nobody looks") end)
      local seen = lupine.spawn(function() lupine.sleep(0.01); error("somebody looks") end)
      lupine.spawn(function() lupine.await(seen) end)
      lupine.spawn(function() error("at once") end)
      loop:runFor(0.2)
      print("done")
    ]]
    local _, n = out:gsub("lupine.spawn: a coroutine failed and nobody awaited it: [^\n]*nobody looks\nstack traceback:", "")
    assert.equal(1, n, out)
    local _, m = out:gsub("nobody awaited it: [^\n]*at once", "")
    assert.equal(1, m, out)
    assert.not_matches("somebody looks", out)
    assert.matches("done\n$", out)
  end)

  it("outside a coroutine the waits raise, saying what to use instead", function()
    assert.has_error(function() lupine.sleep(1) end,
      "lupine.sleep: called outside a coroutine; run the code in lupine.spawn(function() ... end)"
        .. " (in a handler: ctx.executor:schedule(s, fn))")
    local p = lupine.promise()
    assert.has_error(function() lupine.await(p) end,
      "lupine.await: called outside a coroutine; run the code in lupine.spawn(function() ... end)"
        .. " (in a handler: future:addListener(fn))")
    local ok, err = coroutine.resume(coroutine.create(function() lupine.sleep(1) end))
    assert.is_false(ok)
    assert.matches("lupine.sleep: called in a coroutine lupine did not start; start it with lupine.spawn%(fn%)", err)
    assert.has_error(function() lupine.tcp.connect("127.0.0.1", 1) end,
      "lupine.tcp.connect: called outside a coroutine; run the code in lupine.spawn(function() ... end)"
        .. " (in a handler: lupine.connect{...} and its future)")
    assert.has_error(function() lupine.spawn(42) end, "lupine.spawn: expected a function, got number")
    assert.has_error(function() lupine.await(42) end, "lupine.await: expected a lupine.Future, got number")
  end)

  it("a bare coroutine.yield() gives the loop a turn and goes on", function()
    local turns = 0
    local ticker = loop:scheduleAtFixedRate(0.001, 0.001, function() turns = turns + 1 end)
    local f = lupine.spawn(function()
      local n = 0
      while turns < 3 do
        coroutine.yield()
        n = n + 1
      end
      return n
    end)
    wait(f)
    ticker:cancel()
    assert.is_true(f:get() >= 1)
  end)

  it("handler callbacks, timers, listeners and execute may spawn", function()
    local got = {}
    local function note(what) return function() lupine.sleep(0.001); got[#got + 1] = what end end
    local server = test.server(function(ch)
      ch.pipeline:addLast("h", {
        channelRead = function(_, ctx, buf)
          buf:release()
          lupine.spawn(note("handler"))
          lupine.spawn(function()
            lupine.sleep(0.001)
            ctx:writeAndFlush("ok\n")
          end)
        end,
      })
    end)
    loop:schedule(0, function() lupine.spawn(note("timer")) end)
    loop:execute(function() lupine.spawn(note("execute")) end)
    local p = lupine.promise()
    p:addListener(function() lupine.spawn(note("listener")) end)
    p:setSuccess()
    local c = test.client(server.port)
    c:send("x")
    assert.equal("ok", c:receiveLine())
    test.eventually(function() return #got == 4 end)
    table.sort(got)
    assert.same({ "execute", "handler", "listener", "timer" }, got)
    c:close()
    server:close()
  end)
end)
