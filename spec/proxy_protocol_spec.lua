-- lupine.codec.proxyProtocol: the PROXY protocol (v1 and v2) over real
-- sockets. A client writes the exact header bytes a load balancer would,
-- then a line; the server answers with what it saw (its channel's addresses).
local lupine = require "lupine"
local test = require "lupine.test"
local codec = lupine.codec

local leaks = leak_check()

local function v2(cmd, fam, addr)
  return "\r\n\r\n\0\r\nQUIT\n" .. string.char(0x20 | cmd, fam) .. string.pack(">I2", #addr) .. addr
end
local function v2_inet(src, dst, sport, dport, tlv)
  local function ip(s)
    local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    return string.char(tonumber(a), tonumber(b), tonumber(c), tonumber(d))
  end
  return v2(1, 0x11, ip(src) .. ip(dst) .. string.pack(">I2I2", sport, dport) .. (tlv or ""))
end

describe("lupine.codec.proxyProtocol", function()
  local servers, events, errors = {}, {}, {}
  before_each(leaks.before)
  after_each(function()
    for _, s in ipairs(servers) do s:close() end
    servers, events, errors = {}, {}, {}
    leaks.after()
  end)

  -- Answers each line with "remote local line".
  local function serve(opts)
    local s = test.server(function(ch)
      ch.pipeline:addLast(codec.proxyProtocol(opts))
      ch.pipeline:addLast(codec.lineFrame { asString = true })
      ch.pipeline:addLast {
        userEventTriggered = function(_, ctx, evt)
          if evt.kind == "proxyProtocol" then events[#events + 1] = evt end
          ctx:fireUserEventTriggered(evt)
        end,
        channelRead = function(_, ctx, line)
          ctx:writeAndFlush(("%s %s %s\n"):format(ctx.channel.remoteAddress, ctx.channel.localAddress, line))
        end,
        exceptionCaught = function(_, ctx, err)
          errors[#errors + 1] = err
          ctx:close()
        end,
      }
    end)
    servers[#servers + 1] = s
    return s
  end

  it("takes the addresses of a v1 TCP4 header, with the first line in the same write", function()
    local s = serve()
    local c = test.client(s.port)
    c:send("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nhello\n")
    assert.equal("192.0.2.7:56324 198.51.100.1:443 hello", c:receiveLine())
    c:send("again\n")
    assert.equal("192.0.2.7:56324 198.51.100.1:443 again", c:receiveLine())
    assert.equal(1, #events)
    assert.same({ kind = "proxyProtocol", version = 1, source = "192.0.2.7:56324",
                  destination = "198.51.100.1:443", ["local"] = false }, events[1])
    c:close()
  end)

  it("takes a v1 TCP6 header sent one byte per write", function()
    local s = serve()
    local c = test.client(s.port)
    local header = "PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n"
    for i = 1, #header do c:send(header:sub(i, i)); lupine.loop():runFor(0.001) end
    c:send("x\n")
    assert.equal("[2001:db8::1]:4000 [2001:db8::2]:80 x", c:receiveLine())
    c:close()
  end)

  it("keeps the socket's addresses for v1 UNKNOWN", function()
    local s = serve()
    local c = test.client(s.port)
    c:send("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nx\n")
    local line = c:receiveLine()
    assert.truthy(line:match("^127%.0%.0%.1:%d+ 127%.0%.0%.1:" .. s.port .. " x$"), line)
    assert.equal(1, events[1].version)
    assert.is_nil(events[1].source)
    c:close()
  end)

  it("takes the addresses of a v2 PROXY header and skips its TLVs", function()
    local s = serve()
    local c = test.client(s.port)
    c:send(v2_inet("203.0.113.9", "10.0.0.1", 40000, 8080, "\x04\0\3abc") .. "hi\n")
    assert.equal("203.0.113.9:40000 10.0.0.1:8080 hi", c:receiveLine())
    assert.same({ kind = "proxyProtocol", version = 2, source = "203.0.113.9:40000",
                  destination = "10.0.0.1:8080", ["local"] = false }, events[1])
    c:close()
  end)

  it("keeps the socket's addresses for a v2 LOCAL header (a health check)", function()
    local s = serve()
    local c = test.client(s.port)
    c:send(v2(0, 0, "") .. "ping\n")
    local line = c:receiveLine()
    assert.truthy(line:match("^127%.0%.0%.1:%d+ 127%.0%.0%.1:%d+ ping$"), line)
    assert.equal(true, events[1]["local"])
    assert.equal(2, events[1].version)
    c:close()
  end)

  it("closes a connection without a header, with a ProxyProtocolError", function()
    local s = serve()
    local c = test.client(s.port)
    c:send("GET / HTTP/1.1\r\n\r\n")
    test.eventually(function() return c.closed end)
    assert.equal(1, #errors)
    assert.equal("ProxyProtocolError", errors[1].kind)
    assert.equal("ProxyProtocolError: no PROXY protocol header at the start of the connection", errors[1].message)
    assert.equal("", c:received())
  end)

  it("closes a connection with a malformed header", function()
    local cases = {
      { "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "ProxyProtocolError: v1 header has a bad port" },
      { "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "ProxyProtocolError: v1 header has a bad IPv4 address" },
      { "PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n", "ProxyProtocolError: v1 protocol must be TCP4, TCP6 or UNKNOWN" },
      { "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "ProxyProtocolError: v1 header does not end with \\r\\n" },
      { "PROXY TCP4 " .. ("1"):rep(120), "ProxyProtocolError: v1 header longer than 107 bytes" },
      { v2(1, 0x11, "abc"), "ProxyProtocolError: v2 address block of 3 bytes is shorter than its family's 12" },
      { "\r\n\r\n\0\r\nQUIT\n\x31\x11\0\0", "ProxyProtocolError: v2 header has version 3" },
      { "\r\n\r\n\0\r\nQUIT\n\x21\x11\x20\0", "ProxyProtocolError: v2 header of 8192 bytes exceeds 4096" },
    }
    local s = serve()
    for i, case in ipairs(cases) do
      local c = test.client(s.port)
      c:send(case[1])
      test.eventually(function() return c.closed end, nil, "case " .. i .. " to close")
      assert.equal(case[2], errors[i] and errors[i].message)
    end
    assert.equal(#cases, #errors)
  end)

  it("reports a connection that ends inside the header", function()
    local s = serve()
    local c = test.client(s.port)
    c:send("PROXY TCP4 1.2")
    c:shutdownOutput()
    test.eventually(function() return #errors == 1 end)
    assert.equal("ProxyProtocolError: the connection ended inside the PROXY protocol header (14 bytes)", errors[1].message)
    c:close()
  end)

  it("lets a connection without a header through with optional = true", function()
    local s = serve { optional = true }
    local c = test.client(s.port)
    c:send("plain\n")
    local line = c:receiveLine()
    assert.truthy(line:match("^127%.0%.0%.1:%d+ 127%.0%.0%.1:%d+ plain$"), line)
    local c2 = test.client(s.port)
    c2:send("PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\nviaproxy\n")
    assert.equal("192.0.2.1:1000 192.0.2.2:2000 viaproxy", c2:receiveLine())
    assert.equal(0, #errors)
    c:close()
    c2:close()
  end)

  it("is quiet about a connection that closes before sending anything", function()
    local s = serve()
    local c = test.client(s.port)
    c:close()
    lupine.loop():runFor(0.05)
    assert.equal(0, #errors)
  end)

  it("refuses unknown options", function()
    assert.has_error(function() codec.proxyProtocol { optinal = true } end,
      "proxyProtocol: unknown option 'optinal' (known: optional)")
  end)
end)
