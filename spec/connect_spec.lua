-- lupine.connect: the client bootstrap. Success, refusal, timeouts, IPv6 and
-- localhost, names resolved by c-ares against a DNS server written on lupine
-- (spec/fake_dns.lua, same loop: a resolver that blocked would hang), and no
-- descriptor left behind by any of it.
local lupine = require "lupine"
local test = require "lupine.test"
local fake_dns = require "fake_dns"

local loop = lupine.loop()

local function has_ipv6_loopback()
  local s = lupine.server { host = "::1", port = 0, init = function() end }
  if s then s:close() end
  return s ~= nil
end

-- Run fn, then check that every descriptor it opened is closed again.
local function no_leak(fn)
  test.eventually(function() return loop:channelCount() == 0 end, 5, "channels of earlier specs to close")
  local before = open_fds()
  fn()
  test.eventually(function() return loop:channelCount() == 0 end, 5, "every channel to close")
  assert.equal(before, open_fds(), "descriptors leaked")
end

local function closed_port()
  local s = test.server(function() end)
  local port = s.port
  s:close()
  return port
end

describe("lupine.connect", function()
  after_each(function() lupine.setResolver(nil) end)

  it("connects: channelActive, then the future's value is the channel", function()
    no_leak(function()
      local server, chans = nil, {}
      server = test.server(function(ch) chans[#chans + 1] = ch end)
      local events = {}
      local f = lupine.connect {
        port = server.port,
        init = function(ch)
          events[#events + 1] = "init:" .. tostring(ch:isActive())
          ch.pipeline:addLast {
            channelRegistered = function() events[#events + 1] = "registered" end,
            channelActive = function(_, ctx)
              events[#events + 1] = "active"
              ctx:writeAndFlush("hello")
            end,
          }
        end,
      }
      assert.same({ "init:false", "registered" }, events) -- registered at once, connected later
      assert.is_false(f:isDone())
      loop:runUntil(f, 5)
      assert.is_true(f:isSuccess())
      local ch = f:get()
      assert.same({ "init:false", "registered", "active" }, events)
      assert.is_true(ch:isActive())
      assert.equal("127.0.0.1:" .. server.port, ch.remoteAddress)
      test.eventually(function() return chans[1] ~= nil end)
      assert.equal(ch.localAddress, chans[1].remoteAddress)
      ch:close()
      server:close()
    end)
  end)

  it("fails with the errno text when the port is closed, and closes the channel", function()
    no_leak(function()
      local port = closed_port()
      local inactive = false
      local f = lupine.connect {
        port = port,
        init = function(ch) ch.pipeline:addLast { channelInactive = function() inactive = true end } end,
      }
      loop:runUntil(f, 5)
      assert.is_false(f:isSuccess())
      local cause = f:cause()
      assert.equal("ECONNREFUSED", cause.kind)
      assert.equal(("ECONNREFUSED: Connection refused (connect to 127.0.0.1:%d)"):format(port), cause.message)
      assert.is_false(inactive) -- it never was active
      assert.is_nil(f:get())
    end)
  end)

  it("fails with ConnectTimeout when the address never answers, after the timeout", function()
    no_leak(function()
      local hole = test.blackhole()
      local t0 = loop:now()
      local f = lupine.connect { port = hole.port, timeout = 0.3 }
      loop:runUntil(f, 5)
      local took = loop:now() - t0
      assert.equal("ConnectTimeout", f:cause().kind)
      assert.equal(("ConnectTimeout: connect to 127.0.0.1:%d timed out after 0.3 s"):format(hole.port),
        f:cause().message)
      assert.is_true(took >= 0.25 and took < 3, ("took %.2f s"):format(took))
      hole.close()
    end)
  end)

  it("fails with ClosedChannel when the channel is closed while connecting (timeout 0: no limit)", function()
    no_leak(function()
      local hole = test.blackhole()
      local ch
      local f = lupine.connect { port = hole.port, timeout = 0, init = function(c) ch = c end }
      loop:runFor(0.3)
      assert.is_false(f:isDone())
      ch:close()
      loop:runUntil(f, 1)
      assert.equal(("ClosedChannel: channel #%d closed before it connected"):format(ch.id), f:cause().message)
      hole.close()
    end)
  end)

  it("connects over IPv6 and to localhost", function()
    if not has_ipv6_loopback() then return pending("needs IPv6 on the loopback interface") end
    no_leak(function()
      local v6 = test.server(function() end, { host = "::1" })
      for _, host in ipairs { "::1", "[::1]", "localhost" } do
        local f = lupine.connect { host = host, port = v6.port }
        loop:runUntil(f, 5)
        assert.is_true(f:isSuccess(), host .. ": " .. tostring((f:cause())))
        assert.equal(("[::1]:%d"):format(v6.port), f:get().remoteAddress)
        f:get():close()
      end
      v6:close()
      -- localhost tries 127.0.0.1 first
      local v4 = test.server(function() end)
      local f = lupine.connect { host = "localhost", port = v4.port }
      loop:runUntil(f, 5)
      assert.equal(("127.0.0.1:%d"):format(v4.port), f:get().remoteAddress)
      f:get():close()
      v4:close()
    end)
  end)

  it("resolves a name without blocking the loop: other channels go on while the DNS server is slow", function()
    no_leak(function()
      local echo = test.server(dofile("examples/echo.lua"))
      local dns = fake_dns.start { zone = { ["echo.lupine.test"] = { a = { "127.0.0.1" } } }, delay = 0.3 }
      lupine.setResolver { servers = "127.0.0.1:" .. dns.port, tcp = true }
      local c = test.client(echo.port)
      local f = lupine.connect { host = "echo.lupine.test", port = echo.port }
      local rounds = 0
      while not f:isDone() and rounds < 1000 do -- round trips while the name resolves
        c:send("ping" .. rounds)
        assert.equal("ping" .. rounds, c:receive(#("ping" .. rounds)))
        rounds = rounds + 1
      end
      loop:runUntil(f, 5)
      assert.is_true(f:isSuccess(), tostring((f:cause())))
      assert.is_true(rounds >= 5, ("only %d round trips while resolving"):format(rounds))
      assert.equal("127.0.0.1:" .. echo.port, f:get().remoteAddress)
      assert.is_true(#dns.queries >= 1)
      assert.equal("echo.lupine.test", dns.queries[1])
      f:get():close()
      c:close()
      lupine.setResolver(nil) -- closes the resolver's connection to the DNS server
      dns:close()
      echo:close()
    end)
  end)

  it("tries every address of a name in turn", function()
    no_leak(function()
      local dns = fake_dns.start { zone = { ["two.lupine.test"] = { a = { "127.0.0.2", "127.0.0.3" } } } }
      lupine.setResolver { servers = "127.0.0.1:" .. dns.port, tcp = true }
      local order = lupine.resolve("two.lupine.test")
      loop:runUntil(order, 5)
      local addrs = order:get()
      assert.equal(2, #addrs)
      -- Listen on the address tried last: the first is refused, the second answers.
      local server = test.server(function() end, { host = addrs[2] })
      local f = lupine.connect { host = "two.lupine.test", port = server.port }
      loop:runUntil(f, 5)
      assert.is_true(f:isSuccess(), tostring((f:cause())))
      assert.equal(addrs[2] .. ":" .. server.port, f:get().remoteAddress)
      f:get():close()
      server:close()
      -- Nobody on either: the last refusal is the cause.
      local g = lupine.connect { host = "two.lupine.test", port = server.port }
      loop:runUntil(g, 5)
      assert.equal(("ECONNREFUSED: Connection refused (connect to %s:%d)"):format(addrs[2], server.port),
        g:cause().message)
      lupine.setResolver(nil)
      dns:close()
    end)
  end)

  it("fails with UnknownHost for a name nobody knows, and ConnectTimeout for a lookup that takes too long", function()
    no_leak(function()
      local dns = fake_dns.start { zone = { ["silent.lupine.test"] = { silent = true },
        ["hole.lupine.test"] = { a = { "127.0.0.1" } } } }
      lupine.setResolver { servers = "127.0.0.1:" .. dns.port, tcp = true }
      local f = lupine.connect { host = "nosuch.lupine.test", port = 80 }
      loop:runUntil(f, 5)
      assert.equal("UnknownHost", f:cause().kind)
      assert.equal("UnknownHost: cannot resolve 'nosuch.lupine.test': Domain name not found", f:cause().message)
      local t0 = loop:now()
      local g = lupine.connect { host = "silent.lupine.test", port = 80, timeout = 0.3 }
      loop:runUntil(g, 5)
      assert.equal("ConnectTimeout: connect to silent.lupine.test:80 timed out after 0.3 s (resolving the name)",
        g:cause().message)
      assert.is_true(loop:now() - t0 < 3)
      -- A name that resolves to an address that never answers: one limit for both.
      local hole = test.blackhole()
      local h = lupine.connect { host = "hole.lupine.test", port = hole.port, timeout = 0.4 }
      loop:runUntil(h, 5)
      assert.equal(("ConnectTimeout: connect to 127.0.0.1:%d timed out after 0.4 s"):format(hole.port), h:cause().message)
      hole.close()
      lupine.setResolver(nil)
      dns:close()
    end)
  end)

  it("fails with ClosedChannel at once when the channel is closed while its name resolves", function()
    no_leak(function()
      local dns = fake_dns.start { zone = { ["slow.lupine.test"] = { a = { "127.0.0.1" } } }, delay = 2 }
      lupine.setResolver { servers = "127.0.0.1:" .. dns.port, tcp = true }
      local ch
      local f = lupine.connect { host = "slow.lupine.test", port = 80, init = function(c) ch = c end }
      loop:runFor(0.05)
      local t0 = loop:now()
      ch:close()
      loop:runUntil(f, 1)
      assert.is_true(loop:now() - t0 < 0.5)
      assert.equal(("ClosedChannel: channel #%d closed before it connected"):format(ch.id), f:cause().message)
      lupine.setResolver(nil)
      dns:close()
    end)
  end)

  it("passes the connect operation through outbound handlers, which may change the address", function()
    no_leak(function()
      local real = test.server(function() end)
      local seen = {}
      local Redirect = {}
      function Redirect:connect(ctx, address, promise)
        seen[#seen + 1] = address
        ctx:connect("127.0.0.1:" .. real.port, promise) -- wherever it was going, go here
      end
      local f = lupine.connect { port = closed_port(), init = function(ch) ch.pipeline:addLast("redirect", Redirect) end }
      loop:runUntil(f, 5)
      assert.is_true(f:isSuccess(), tostring((f:cause())))
      assert.equal(1, #seen)
      assert.matches("^127%.0%.0%.1:%d+$", seen[1])
      assert.equal("127.0.0.1:" .. real.port, f:get().remoteAddress)
      f:get():close()
      local bad_ok, bad_err
      local v6_port = closed_port()
      local g = lupine.connect {
        port = real.port,
        init = function(ch)
          ch.pipeline:addLast { connect = function(_, ctx, _, promise)
            bad_ok, bad_err = pcall(ctx.connect, ctx, "example.com:80", promise) -- names were resolved before
            ctx:connect("[::1]:" .. v6_port, promise)
          end }
        end,
      }
      loop:runUntil(g, 5)
      assert.is_false(bad_ok)
      assert.matches('expected a numeric address "host:port"', bad_err)
      assert.is_false(g:isSuccess())
      assert.matches("%(connect to %[::1%]:" .. v6_port .. "%)$", g:cause().message)
      real:close()
    end)
  end)

  it("fails the future with the error of an init that raises, and registers nothing", function()
    no_leak(function()
      local server = test.server(function() end)
      local f = lupine.connect { port = server.port, init = function() error("no handlers today") end }
      assert.is_true(f:isDone())
      assert.equal("HostError", f:cause().kind)
      assert.matches("^HostError: init%(ch%) raised: .*no handlers today", f:cause().message)
      server:close()
    end)
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() lupine.connect { host = "127.0.0.1" } end, "lupine.connect: 'port' is required")
    assert.has_error(function() lupine.connect { port = 70000 } end, "option 'port' must be an integer from 1 to 65535")
    for _, t in ipairs { -1, 1e300, math.huge, 0 / 0 } do
      assert.has_error(function() lupine.connect { port = 1, timeout = t } end,
        "lupine.connect: 'timeout' must be seconds from 0 to 1e9 (0: no limit)")
    end
    assert.has_error(function() lupine.connect { host = "", port = 1 } end,
      "lupine.connect: 'host' is empty (omit it for 127.0.0.1)")
    assert.has_error(function() lupine.connect { port = 1, init = 42 } end, "lupine.connect: 'init' must be a function(ch)")
    assert.has_error(function() lupine.connect { port = 1, options = { autoread = false } } end)
  end)
end)

describe("lupine.resolve", function()
  after_each(function() lupine.setResolver(nil) end)

  it("answers numeric addresses and localhost without a lookup", function()
    local dns = fake_dns.start { zone = {} }
    lupine.setResolver { servers = "127.0.0.1:" .. dns.port, tcp = true }
    for host, want in pairs { ["10.1.2.3"] = { "10.1.2.3" }, ["::1"] = { "::1" }, ["[::1]"] = { "::1" },
      localhost = { "127.0.0.1", "::1" }, LocalHost = { "127.0.0.1", "::1" } } do
      local f = lupine.resolve(host)
      assert.is_false(f:isDone()) -- results always come later, from the loop
      loop:runUntil(f, 1)
      assert.same(want, f:get())
    end
    assert.same({}, dns.queries)
    lupine.setResolver(nil)
    dns:close()
  end)

  it("looks names up (A and AAAA) and fails with UnknownHost", function()
    local dns = fake_dns.start { zone = { ["both.lupine.test"] = { a = { "127.0.0.7" }, aaaa = { "::1" } } } }
    lupine.setResolver { servers = { "127.0.0.1:" .. dns.port }, tcp = true, timeout = 1, tries = 1 }
    local f = lupine.resolve("both.lupine.test", 80)
    loop:runUntil(f, 5)
    local got = f:get()
    table.sort(got)
    assert.same({ "127.0.0.7", "::1" }, got)
    local g = lupine.resolve("nope.lupine.test")
    loop:runUntil(g, 5)
    assert.equal("UnknownHost: cannot resolve 'nope.lupine.test': Domain name not found", g:cause().message)
    local e = lupine.resolve("")
    loop:runUntil(e, 1)
    assert.equal("UnknownHost: cannot resolve '': empty name", e:cause().message)
    lupine.setResolver(nil)
    dns:close()
  end)

  it("fails lookups under way with Shutdown when the resolver is replaced", function()
    local dns = fake_dns.start { zone = { ["slow.lupine.test"] = { a = { "127.0.0.1" } } }, delay = 2 }
    lupine.setResolver { servers = "127.0.0.1:" .. dns.port, tcp = true }
    local f = lupine.resolve("slow.lupine.test")
    loop:runFor(0.05)
    lupine.setResolver(nil)
    loop:runUntil(f, 1)
    assert.equal("Shutdown: the resolver closed before 'slow.lupine.test' resolved", f:cause().message)
    dns:close()
  end)

  it("refuses resolver settings it cannot use", function()
    assert.has_error(function() lupine.setResolver { servers = "not an address" } end,
      "setResolver: servers 'not an address' not understood (want \"host:port,...\")")
    assert.has_error(function() lupine.setResolver { servers = 53 } end,
      "setResolver: 'servers' must be a string or a list of strings")
    assert.has_error(function() lupine.setResolver { timeout = -1 } end, "setResolver: 'timeout' must be 0..3600 seconds")
    assert.has_error(function() lupine.resolve("x", 70000) end)
  end)
end)
