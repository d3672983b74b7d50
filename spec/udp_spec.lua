-- lupine.udp: datagram channels. Round trips with the test kit, socat, nc -u
-- (netcat-openbsd) and Python's socket module; every error a datagram can
-- meet (over maxDatagramSize both ways, a port in use, a vanished peer, no
-- recipient); the water marks; bursts read in bounded batches; close with
-- writes queued; the examples (udp_echo, statsd) inline and under the
-- launcher with two workers.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"

local loop = lupine.loop()

local Echo = {}
function Echo:channelRead(ctx, msg) ctx:write(lupine.datagram(msg.data, msg)) end
function Echo:channelReadComplete(ctx) ctx:flush() end

local function echo_server(opts)
  opts = opts or {}
  opts.init = function(ch) ch.pipeline:addLast("echo", Echo) end
  return test.udpServer(opts)
end

-- Run a shell command (a real client), waiting for it; returns its output.
local function run(script, timeout)
  local p = test.spawn({ "sh", "-c", script })
  local code = p:wait(timeout or 10)
  local out = p:output()
  p:stop()
  assert.equal(0, code, out)
  return out
end

local function has_ipv6_loopback()
  local s = lupine.udp { host = "::1", port = 0, init = function() end }
  if s then s:close() end
  return s ~= nil
end

describe("lupine.udp", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("echoes datagrams to the test kit's client, each with its sender", function()
    local server, host, port = echo_server()
    assert.equal("127.0.0.1", host)
    local c = test.udpClient(port)
    c:send("hello"):send("")
    local data, sender = c:receive()
    assert.equal("hello", data)
    assert.equal("127.0.0.1:" .. port, sender)
    assert.equal("", (c:receive()))
    assert.matches("^lupine.Channel#%d+ udp 127.0.0.1:" .. port .. " active$", tostring(server))
    assert.matches("udp 127%.0%.0%.1:%d+ <%-> 127%.0%.0%.1:" .. port, tostring(c.channel))
    c:close()
    server:close()
  end)

  it("counts its bytes in lupine.stats(), and no connections", function()
    local before = lupine.stats().total
    local server, _, port = echo_server()
    local c = test.udpClient(port)
    for i = 1, 10 do assert.equal(("d"):rep(i * 10), c:send(("d"):rep(i * 10)):receive()) end
    local after = lupine.stats().total
    -- both ends are UDP channels of this loop: 550 bytes each way at each end
    assert.equal(2 * 550, after.bytesIn - before.bytesIn)
    assert.equal(2 * 550, after.bytesOut - before.bytesOut)
    assert.is_true(after.reads - before.reads >= 2 and after.writes - before.writes >= 2)
    assert.equal(before.active, after.active)
    assert.equal(before.accepted, after.accepted)
    c:close()
    server:close()
  end)

  it("serves IPv6", function()
    if not has_ipv6_loopback() then return pending("needs IPv6 on the loopback interface") end
    local server, _, port = echo_server { host = "::1" }
    local c = test.udpClient("::1", port)
    c:send("six")
    local data, sender = c:receive()
    assert.equal("six", data)
    assert.equal(("[::1]:%d"):format(port), sender)
    c:close()
    server:close()
  end)

  it("gives the data as a Buffer, or as a string with asString", function()
    local seen = {}
    local function keep(ch) ch.pipeline:addLast { channelRead = function(_, _, msg) seen[#seen + 1] = msg end } end
    local a = assert(lupine.udp { port = 0, init = keep })
    local b = assert(lupine.udp { port = 0, asString = true, init = keep })
    local c = assert(lupine.udp.open { init = function() end })
    c:write(lupine.datagram("to a", a.localAddress))
    c:writeAndFlush(lupine.datagram(lupine.buffer("to b"), "127.0.0.1:" .. b.localPort))
    test.eventually(function() return #seen == 2 end)
    collectgarbage() -- a Buffer kept past its dispatch stays valid (and is freed with its box)
    local by = {}
    for _, m in ipairs(seen) do by[type(m.data)] = m end
    assert.equal("to a", by.userdata.data:readString())
    assert.equal("to b", by.string.data)
    assert.equal(c.localPort, tonumber(by.string.sender:match(":(%d+)$")))
    assert.is_nil(by.string.recipient)
    assert.matches("^lupine.Datagram%(4 bytes from 127.0.0.1:%d+%)$", tostring(by.string))
    assert.equal("lupine.Datagram(2 bytes to 127.0.0.1:9)", tostring(lupine.datagram("hi", "127.0.0.1:9")))
    assert.equal("127.0.0.1:9", lupine.datagram("hi", "127.0.0.1:9").recipient)
    a:close(); b:close(); c:close()
  end)

  it("answers socat and nc -u (netcat-openbsd)", function()
    local server, _, port = echo_server()
    assert.equal("via socat", run(("printf 'via socat' | socat -T 2 - UDP:127.0.0.1:%d"):format(port)))
    assert.equal("via nc\n", run(("echo 'via nc' | nc -u -W 1 -w 5 127.0.0.1 %d"):format(port)))
    server:close()
  end)

  it("answers Python's socket module, IPv4 and dual-stack IPv6 sockets", function()
    local server, _, port = echo_server()
    local out = run(([[python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
for i in range(3): s.sendto(b"py%%d" %% i, ("127.0.0.1", %d))
print(sorted(s.recvfrom(100)[0].decode() for _ in range(3)))
']]):format(port))
    assert.equal("['py0', 'py1', 'py2']\n", out)
    server:close()
  end)

  it("drops a datagram over maxDatagramSize and reports it, then goes on", function()
    local errors = {}
    local server, _, port = test.udpServer {
      maxDatagramSize = 100,
      init = function(ch)
        ch.pipeline:addLast("echo", Echo)
        ch.pipeline:addLast { exceptionCaught = function(_, _, e) errors[#errors + 1] = e end }
      end,
    }
    local c = test.udpClient(port)
    c:send(("x"):rep(101))
    test.eventually(function() return #errors == 1 end)
    local e = errors[1]
    assert.equal("TooLongFrame", e.kind)
    assert.equal(("TooLongFrame: a datagram of 101 bytes from %s exceeds maxDatagramSize 100: dropped"):format(
      c.channel.localAddress), e.message)
    assert.equal(100, e.limit)
    assert.equal(101, e.length)
    assert.is_true(server:isActive()) -- one bad datagram never closes the channel
    c:send(("y"):rep(100))
    assert.equal(("y"):rep(100), (c:receive()))
    c:close()
    server:close()
  end)

  it("fails a write over maxDatagramSize with EMSGSIZE", function()
    local c = assert(lupine.udp.open { connect = "127.0.0.1:9", maxDatagramSize = 1000, init = function() end })
    local f = lupine.promise()
    c:writeAndFlush(("z"):rep(1001), f)
    loop:runUntil(f, 5)
    assert.equal("EMSGSIZE", f:cause().kind)
    assert.equal("EMSGSIZE: Message too long (a datagram of 1001 bytes, over maxDatagramSize 1000)", f:cause().message)
    local big = lupine.promise() -- the kernel's own limit, past IPv4's largest payload
    local k = assert(lupine.udp.open { connect = "127.0.0.1:9", maxDatagramSize = 65535, init = function() end })
    k:writeAndFlush(("z"):rep(65508), big)
    loop:runUntil(big, 5)
    assert.equal("EMSGSIZE: Message too long (send, peer 127.0.0.1:9)", big:cause().message)
    assert.is_true(c:isActive() and k:isActive())
    c:close(); k:close()
  end)

  it("says clearly when the port is in use", function()
    local server, _, port = echo_server()
    local ch, err, kind = lupine.udp { port = port, init = function() end }
    assert.is_nil(ch)
    assert.equal(("UDP bind 127.0.0.1:%d: EADDRINUSE: Address already in use"):format(port), err)
    assert.equal("EADDRINUSE", kind)
    server:close()
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() lupine.udp { port = 0 } end, "lupine.udp: 'init' must be a function(ch)")
    assert.has_error(function() lupine.udp { host = "example.com", init = print } end,
      "lupine.udp: host 'example.com' is not a numeric IPv4/IPv6 address or localhost")
    assert.has_error(function() lupine.udp.open { connect = "::1:5" } end,
      "lupine.udp.open: connect '::1:5' is not host:port with a numeric host ([::1]:5000 for IPv6)")
    assert.has_error(function() lupine.udp { maxDatagramSize = 0, init = print } end,
      "option 'maxDatagramSize' must be an integer from 1 to 65535")
    assert.has_error(function() lupine.datagram("x", "nowhere") end,
      "bad argument #2 to 'datagram' ('nowhere' is not host:port with a numeric host ([::1]:5000 for IPv6))")
    assert.has_error(function() lupine.datagram(42, "127.0.0.1:1") end,
      "bad argument #1 to 'datagram' (Buffer or string expected, got number)")
  end)

  it("reports a vanished peer (ICMP port unreachable) as ECONNREFUSED, and stays open", function()
    local gone = assert(lupine.udp { port = 0, init = function() end })
    local port = gone.localPort
    gone:close()
    local c = test.udpClient(port)
    c.channel:writeAndFlush("anyone?")
    local e = c:nextError()
    assert.equal("ECONNREFUSED", e.kind)
    assert.equal(("ECONNREFUSED: Connection refused (receive, peer 127.0.0.1:%d)"):format(port), e.message)
    assert.is_true(c.channel:isActive())
    c:close()
    -- Not reading, the error waits in the socket: the next write fails with it.
    local w = assert(lupine.udp.open { connect = "127.0.0.1:" .. port, options = { autoRead = false }, init = function() end })
    local failed
    for _ = 1, 100 do -- the ICMP answer to the first comes a moment later: bounded retries
      local f = lupine.promise()
      w:writeAndFlush("anyone?", f)
      loop:runUntil(f, 5)
      failed = not f:isSuccess() and f:cause()
      if failed then break end
      loop:runFor(0.01)
    end
    assert.equal(("ECONNREFUSED: Connection refused (send, peer 127.0.0.1:%d)"):format(port), failed.message)
    assert.is_true(w:isActive())
    w:close()
  end)

  it("refuses a write with no recipient on an unconnected channel, and writing a received datagram", function()
    local errors = {}
    local s = assert(lupine.udp { port = 0, init = function(ch)
      ch.pipeline:addLast {
        channelRead = function(_, ctx, msg) ctx:writeAndFlush(msg) end,
        exceptionCaught = function(_, _, e) errors[#errors + 1] = e end,
      }
    end })
    local f = lupine.promise()
    s:writeAndFlush("to whom?", f)
    loop:runUntil(f, 5)
    assert.equal(("EDESTADDRREQ: Destination address required (UDP channel #%d is not connected: "
      .. 'write lupine.datagram(data, "host:port"))'):format(s.id), f:cause().message)
    local c = test.udpClient(s.localPort)
    c:send("x")
    test.eventually(function() return #errors == 1 end)
    assert.equal("UnsupportedMessage: cannot write a received datagram: answer its sender with lupine.datagram(data, msg)",
      errors[1].message)
    c:close()
    s:close()
  end)

  it("queues writes under the water marks: unwritable past the high one, writable again once sent", function()
    local got = 0
    local server, _, port = test.udpServer(function(ch)
      ch.pipeline:addLast { channelRead = function() got = got + 1 end }
    end)
    local changes = {}
    local c = assert(lupine.udp.open {
      connect = "127.0.0.1:" .. port, options = { highWaterMark = 2000, lowWaterMark = 1000 },
      init = function(ch)
        ch.pipeline:addLast { channelWritabilityChanged = function(_, ctx) changes[#changes + 1] = ctx.channel:isWritable() end }
      end,
    })
    for _ = 1, 20 do c:write(("d"):rep(100)) end
    assert.same({ false }, changes)
    assert.is_false(c:isWritable())
    c:flush()
    assert.same({ false, true }, changes)
    test.eventually(function() return got == 20 end)
    c:close()
    server:close()
  end)

  it("reads bursts in batches of at most maxMessagesPerRead, and answers every datagram", function()
    local count, batch, largest, batches = 0, 0, 0, 0
    local server, _, port = test.udpServer {
      options = { maxMessagesPerRead = 16 },
      init = function(ch)
        ch.pipeline:addLast {
          channelRead = function(_, ctx, msg)
            count, batch = count + 1, batch + 1
            ctx:write(lupine.datagram(msg.data, msg))
          end,
          channelReadComplete = function(_, ctx)
            largest, batch, batches = math.max(largest, batch), 0, batches + 1
            ctx:flush()
          end,
        }
      end,
    }
    -- 1000 datagrams, 100 at a time: a window the socket buffers hold, so none is dropped.
    local p = test.spawn({ "python3", "-c", ([[
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)
got = 0
for w in range(10):
    for i in range(100): s.sendto(b"%%064d" %% (w * 100 + i), ("127.0.0.1", %d))
    for i in range(100): s.recvfrom(100); got += 1
print(got)
]]):format(port) })
    assert.equal(0, p:wait(30))
    assert.equal("1000\n", p:output())
    p:stop()
    assert.equal(1000, count)
    assert.is_true(largest <= 16, "a batch of " .. largest)
    assert.is_true(batches >= 1000 / 16)
    server:close()
  end)

  it("sends a burst of 1000 datagrams in bounded turns: the rest on EV_WRITE", function()
    -- A bound socket that never reads: no ICMP error, the kernel drops what does not fit.
    local sink = assert(lupine.udp { port = 0, options = { autoRead = false }, init = function() end })
    local c = assert(lupine.udp.open { connect = sink.localAddress,
      options = { highWaterMark = 8192, lowWaterMark = 4096 }, init = function() end })
    local fs = {}
    for i = 1, 1000 do
      fs[i] = lupine.promise()
      c:write("burst " .. i, fs[i])
    end
    c:flush()
    -- One flush sends 16 batches of 32 and yields to the loop; the rest waits for EV_WRITE.
    assert.is_false(c:isWritable())
    assert.is_false(fs[1000]:isDone())
    test.eventually(function() return fs[1000]:isDone() end)
    for i = 1, 1000 do assert.is_true(fs[i]:isSuccess(), "datagram " .. i) end
    assert.is_true(c:isWritable())
    c:close()
    sink:close()
  end)

  it("sends what init(ch) writes, before the channel is registered", function()
    local got
    local server, _, port = test.udpServer { asString = true, init = function(ch)
      ch.pipeline:addLast { channelRead = function(_, _, msg) got = msg.data end }
    end }
    local c = assert(lupine.udp.open { connect = "127.0.0.1:" .. port, init = function(ch) ch:writeAndFlush("early") end })
    test.eventually(function() return got == "early" end)
    c:close()
    server:close()
  end)

  it("fails queued writes when closed", function()
    local c = assert(lupine.udp.open { connect = "127.0.0.1:9", init = function() end })
    local fs = {}
    for i = 1, 5 do
      fs[i] = lupine.promise()
      c:write("queued", fs[i])
    end
    c:close()
    for i = 1, 5 do
      loop:runUntil(fs[i], 5)
      assert.equal(("ClosedChannel: channel #%d closed before the write completed"):format(c.id), fs[i]:cause().message)
    end
    local late = lupine.promise()
    c:writeAndFlush("late", late)
    loop:runUntil(late, 5)
    assert.equal(("ClosedChannel: channel #%d is closed"):format(c.id), late:cause().message)
  end)
end)

describe("UDP examples", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("udp_echo echoes over UDP and TCP", function()
    local app = dofile("examples/udp_echo.lua")
    local u, _, port = test.udpServer(app)
    local c = test.udpClient(port)
    c:send("datagram")
    assert.equal("datagram", (c:receive()))
    c:close()
    local t = test.server(app)
    local tc = test.client(t.port)
    tc:send("stream")
    assert.equal("stream", tc:receive(6))
    tc:close()
    t:close()
    u:close()
  end)

  it("udp_echo under the launcher with two workers: a socket each, every sender answered", function()
    local port = test.freePort()
    local p = proc.start("-w 2 examples/udp_echo.lua", { env = "PORT=" .. port })
    finally(function() p:cleanup() end)
    assert.equal(port, p:port()) -- the start-up line: every worker's workerInit (and UDP socket) is done
    -- Twenty senders (twenty source ports): the kernel spreads them over both sockets.
    local out = run(([[python3 -c '
import socket
ok = 0
for i in range(20):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    s.sendto(b"w%%d" %% i, ("127.0.0.1", %d))
    ok += s.recvfrom(100)[0] == b"w%%d" %% i
print(ok)
']]):format(port), 30)
    assert.equal("20\n", out)
    p:kill("TERM")
    assert.equal(0, p:wait())
  end)

  it("statsd totals counters, gauges and timers per second, from nc -u and Python", function()
    local app = dofile("examples/statsd.lua")
    local u, _, port = test.udpServer(app)
    run(("printf 'hits:1|c\\nhits:2|c|@0.5\\nload:5|g' | nc -u -w 1 127.0.0.1 %d"):format(port))
    run(([[python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for v in (10, 30, 20): s.sendto(b"req:%%d|ms" %% v, ("127.0.0.1", %d))
s.sendto(b"load:-2|g\nnot a metric", ("127.0.0.1", %d))
']]):format(port, port))
    test.eventually(function() return app.bad() == 1 end)
    assert.same({ "hits:5|c", "load:3|g", "req:count=3,min=10,max=30,mean=20|ms" }, app.flush())
    local t = test.server(app) -- the last second's totals over TCP
    local c = test.client(t.port)
    assert.equal("hits:5|c\nload:3|g\nreq:count=3,min=10,max=30,mean=20|ms\n", c:receiveAll())
    c:close()
    assert.same({ "load:3|g" }, app.flush()) -- a new second: gauges keep their value
    t:close()
    u:close()
  end)
end)
