-- Accepting: the peer's address as accept() returned it (a peer that resets at
-- once still has one), and per-worker listeners (reusePort, --reuseport):
-- connections land on every worker, maxConnections holds over the process,
-- shutdown drains.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"

local loop = lupine.loop()

describe("accepting", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("gives a channel whose peer reset before it was made the address accept() returned", function()
    -- Accepting paused: the connections wait in the backlog while Python connects
    -- each with SO_LINGER 0 and closes at once (a RST), then accepting resumes.
    local seen = {}
    local server = test.server(function(ch)
      local rec = {}
      seen[#seen + 1] = rec
      ch.pipeline:addLast("rec", {
        channelActive = function(_, ctx) rec.active = ctx.channel.remoteAddress end,
        channelInactive = function(_, ctx) rec.gone, rec.inactive = true, ctx.channel.remoteAddress end,
      })
    end)
    server:setAutoRead(false)
    local out, code = proc.output({ "python3", "-c", [[
import socket, struct, sys
ports = []
for _ in range(20):
    s = socket.socket()
    s.connect(("127.0.0.1", int(sys.argv[1])))
    ports.append(str(s.getsockname()[1]))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
print(" ".join(ports))
]], tostring(server.port) })
    assert.equal(0, code, out)
    local ports = {}
    for port in out:gmatch("%d+") do ports[#ports + 1] = "127.0.0.1:" .. port end
    assert.equal(20, #ports)
    server:setAutoRead(true)
    test.eventually(function()
      for i = 1, 20 do if not (seen[i] and seen[i].gone) then return false end end
      return true
    end, 10, "20 channels to come and go")
    for i, s in ipairs(seen) do
      assert.equal(ports[i], s.active)
      assert.equal(ports[i], s.inactive)
    end
    server:close()
  end)
end)

describe("per-worker listeners (--reuseport)", function()
  local started, clients = {}, {}
  after_each(function()
    for _, c in ipairs(clients) do c:close() end
    for _, p in ipairs(started) do p:cleanup() end
    started, clients = {}, {}
    loop:runUntil(function() return loop:channelCount() == 0 end, 10, "the spec's clients to close")
  end)

  local function launch(args)
    local p = proc.start(args)
    started[#started + 1] = p
    return p, p:port()
  end

  local function client(port, opts)
    local c = test.client(port, opts)
    clients[#clients + 1] = c
    return c
  end

  it("listens once per worker, and connections land on every worker", function()
    local p, port = launch("-w 2 -p 0 --reuseport spec/apps/whoami.lua")
    assert.equal(("lupine: whoami listening on 127.0.0.1:%d (2 workers, one Lua state and one listener each)\n")
      :format(port), p:stdout())
    local listeners = 0
    for line in io.popen("ss -Hltn 'sport = :" .. port .. "'"):lines() do
      if line:find("LISTEN") then listeners = listeners + 1 end
    end
    assert.equal(2, listeners)
    -- The kernel picks the listener by a hash of the connection's addresses:
    -- 40 connections all on one of two workers would be a 1 in 2^39 chance.
    local per = { 0, 0 }
    for _ = 1, 40 do
      local c = client(port)
      c:send("who\n")
      local id = tonumber(c:receiveLine():match("^worker=(%d+)"))
      per[id] = per[id] + 1
      c:close()
    end
    assert.is_true(per[1] > 0 and per[2] > 0, ("worker 1: %d, worker 2: %d"):format(per[1], per[2]))
    assert.equal(40, per[1] + per[2])
  end)

  it("holds maxConnections over both workers", function()
    local p, port = launch("-w 2 -p 0 --reuseport --max-connections 3 spec/apps/whoami.lua")
    local open = {}
    for i = 1, 3 do
      open[i] = client(port)
      open[i]:send("x" .. i .. "\n")
      assert.equal("x" .. i, open[i]:receiveLine())
    end
    for _ = 1, 6 do -- whichever worker takes them: closed at once
      local over = client(port)
      assert.equal("", over:receiveAll(5))
    end
    open[1]:close()
    assert.is_true(proc.waitFor(function()
      local c = client(port, { timeout = 1 })
      return pcall(function()
        c:send("again\n")
        assert(c:receiveLine() == "again")
      end)
    end, 5))
    assert.matches("maxConnections %(3%) reached: closing new connections until some close", p:stderr())
  end)

  it("stops each worker's listener at shutdown, delivers every byte written before it, and exits 0", function()
    local p, port = launch("-w 2 -p 0 --reuseport --shutdown-timeout 8 spec/apps/bulk.lua")
    local pattern = dofile("spec/apps/bulk.lua").pattern
    -- Four clients asked for 2 MiB each and read nothing yet: most of it is
    -- still queued in the server (on whichever worker accepted) at the signal.
    local size = 2 * 1024 * 1024
    local bulk = {}
    local want = pattern(size)
    for i = 1, 4 do
      bulk[i] = client(port, { timeout = 15, options = { autoRead = false } })
      bulk[i]:send(("bulk %d\n"):format(size))
      local cfg = bulk[i].channel:config()
      cfg:setAutoRead(true) -- for a moment: the first byte says the server took the request
      assert.equal(want:sub(1, 1), bulk[i]:receive(1))
      cfg:setAutoRead(false)
    end
    p:kill("TERM")
    for i = 1, 4 do
      bulk[i].channel:config():setAutoRead(true)
      local got = bulk[i]:receiveAll(15) -- the rest, then the FIN
      assert.equal(size - 1, #got)
      assert.is_true(got == want:sub(2), "client " .. i .. " got other bytes")
    end
    assert.equal(0, p:wait(10))
    local err = p:stderr()
    for id = 1, 2 do assert.matches("w" .. id .. " workerExit " .. id .. "\n", err) end
    local f = lupine.connect { port = port, timeout = 2 } -- nothing listens any more
    loop:runUntil(f, 5)
    assert.matches("^ECONNREFUSED", tostring(f:cause()))
  end)

  it("inline (-w 0) listens once, as without it", function()
    local p, port = launch("-w 0 -p 0 --reuseport spec/apps/whoami.lua")
    assert.equal(("lupine: whoami listening on 127.0.0.1:%d (inline: 1 loop)\n"):format(port), p:stdout())
    local c = client(port)
    c:send("who\n")
    assert.matches("^worker=0", c:receiveLine())
  end)
end)
