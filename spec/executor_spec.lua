-- ctx.executor from inside handlers: the channel's own loop, with execute,
-- schedule and scheduleAtFixedRate returning cancellable handles; and
-- ctx.channel.worker. (The same from worker threads: launcher_spec.)
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

describe("ctx.executor", function()
  local server, seen

  -- Commands, one per read: "execute", "later", "cancelled", "ticks".
  local Handler = {}
  function Handler:channelRead(ctx, buf)
    local cmd = buf:readString():gsub("\n$", "")
    local ex = ctx.executor
    seen.executor, seen.channelExecutor, seen.worker = tostring(ex), tostring(ctx.channel.executor), ctx.channel.worker
    if cmd == "execute" then
      local order = {}
      ex:execute(function()
        order[#order + 1] = "task"
        ctx:writeAndFlush(table.concat(order, ",") .. "\n")
      end)
      order[#order + 1] = "handler" -- runs first: execute() never runs the task inline
    elseif cmd == "later" then
      local t0 = ex:now()
      seen.timer = ex:schedule(0.05, function() ctx:writeAndFlush(("later after %.3f\n"):format(ex:now() - t0)) end)
    elseif cmd == "cancelled" then
      local t = ex:schedule(0.02, function() ctx:writeAndFlush("should not be sent\n") end)
      seen.wasActive = t:isActive()
      seen.cancelled = t:cancel()
      seen.activeAfter = t:isActive()
      ex:schedule(0.05, function() ctx:writeAndFlush("done\n") end)
    elseif cmd == "ticks" then
      local n = 0
      local t
      t = ex:scheduleAtFixedRate(0.01, 0.01, function()
        n = n + 1
        ctx:writeAndFlush("tick" .. n .. "\n")
        if n == 3 then t:cancel() end
      end)
      ctx.channel.attr.ticker = t
    end
  end
  function Handler:channelInactive(ctx) -- timers are the handler's to cancel
    local t = ctx.channel.attr.ticker
    if t then t:cancel() end
  end

  before_each(function()
    seen = {}
    server = test.server(function(ch) ch.pipeline:addLast("h", Handler) end)
  end)
  after_each(function() server:close() end)

  it("is the channel's loop (worker 0 inline)", function()
    local c <close> = test.client(server.port)
    c:send("execute\n")
    c:receiveLine()
    assert.equal(tostring(loop), seen.executor)
    assert.equal(tostring(loop), seen.channelExecutor)
    assert.equal(0, seen.worker)
  end)

  it("execute runs the task after the handler returns", function()
    local c <close> = test.client(server.port)
    c:send("execute\n")
    assert.equal("handler,task", c:receiveLine())
  end)

  it("schedule runs once after the delay", function()
    local c <close> = test.client(server.port)
    c:send("later\n")
    local after = tonumber(c:receiveLine():match("^later after ([%d.]+)$"))
    assert.is_true(after >= 0.04, "ran after " .. after)
    assert.is_false(seen.timer:isActive())
    assert.is_false(seen.timer:cancel()) -- nothing left to cancel
  end)

  it("a cancelled schedule never runs", function()
    local c <close> = test.client(server.port)
    c:send("cancelled\n")
    assert.equal("done", c:receiveLine())
    assert.is_true(seen.wasActive)
    assert.is_true(seen.cancelled)
    assert.is_false(seen.activeAfter)
    loop:runFor(0.05)
    assert.equal("", c.inbox)
  end)

  it("scheduleAtFixedRate repeats until cancelled", function()
    local c <close> = test.client(server.port)
    c:send("ticks\n")
    assert.equal("tick1", c:receiveLine())
    assert.equal("tick2", c:receiveLine())
    assert.equal("tick3", c:receiveLine())
    loop:runFor(0.05)
    assert.equal("", c.inbox) -- cancelled from inside after the third
  end)
end)
