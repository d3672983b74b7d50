-- lupine.tls: the TLS handler against OpenSSL's own tools (s_client,
-- s_server), curl and Python's ssl module, and lupine against itself:
-- protocol, ALPN, SNI, verification failures, mutual TLS, STARTTLS, the
-- named errors, and no descriptor left behind. Certificates come from a
-- throw-away CA made with the openssl command (spec/tls_certs.lua).
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()
local certs = require("tls_certs").make()

local function has(program) return os.execute("command -v " .. program .. " >/dev/null 2>&1") end

-- A lupine TLS server: tls options, the handler table after it. Returns the
-- server and a record of what happened { events, errors, channels }.
local function tls_server(opts, handler)
  local seen = { events = {}, errors = {}, channels = {}, reads = {} }
  local factory = lupine.tls.server(opts)
  local server = test.server(function(ch)
    seen.channels[#seen.channels + 1] = ch
    ch.pipeline:addFirst("tls", factory)
    ch.pipeline:addLast("record", {
      userEventTriggered = function(_, ctx, ev)
        seen.events[#seen.events + 1] = ev
        ctx:fireUserEventTriggered(ev)
      end,
      exceptionCaught = function(_, ctx, err)
        seen.errors[#seen.errors + 1] = err
        ctx:close()
      end,
      channelRead = function(_, ctx, msg) ctx:fireChannelRead(msg) end,
    })
    if handler then ch.pipeline:addLast("app", handler) end
  end)
  return server, seen
end

-- Echo each read back, prefixed.
local Echo = {
  channelRead = function(_, ctx, buf) ctx:writeAndFlush("echo:" .. tostring(buf:readString())) end,
}

-- Echo one read back, then close (s_client -ign_eof ends when the server closes).
local EchoClose = {
  channelRead = function(_, ctx, buf)
    ctx:writeAndFlush("echo:" .. tostring(buf:readString()))
    ctx:close()
  end,
}

-- Run a shell command in the background (test.spawn), wait for its end;
-- returns its output. Without LD_PRELOAD: the ASan runs preload the sanitizer
-- runtime, under which curl hangs at start.
local function run(cmd, timeout)
  local p <close> = test.spawn { "sh", "-c", "unset LD_PRELOAD; " .. cmd }
  p:wait(timeout or 15)
  return p:output(), p:status()
end

local function s_client(port, args, input)
  return run(("printf '%s' | openssl s_client -connect 127.0.0.1:%d -CAfile %s -brief -ign_eof %s 2>&1"):format(
    input or "hello", port, certs.ca, args or ""))
end

local function handshake_event(seen)
  for _, ev in ipairs(seen.events) do
    if ev.kind == "tlsHandshake" then return ev end
  end
end

-- A lupine client: connect with tls options; returns the channel's future,
-- and a record { reads = "...", events, errors, inactive }.
local function tls_connect(port, tlsopts, init)
  local rec = { reads = "", events = {}, errors = {} }
  local f = lupine.connect {
    port = port, tls = tlsopts,
    init = function(ch)
      ch.pipeline:addLast("rec", {
        channelRead = function(_, _, buf) rec.reads = rec.reads .. buf:readString() end,
        userEventTriggered = function(_, _, ev) rec.events[#rec.events + 1] = ev end,
        exceptionCaught = function(_, ctx, err)
          rec.errors[#rec.errors + 1] = err
          ctx:close()
        end,
        channelInactive = function() rec.inactive = true end,
      })
      if init then init(ch) end
    end,
  }
  loop:runUntil(f, 10, "the TCP connect")
  assert(f:isSuccess(), "the connect failed")
  return f:get(), rec
end

describe("lupine.tls", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  teardown(function() certs.remove() end)

  describe("server, against openssl s_client", function()
    it("negotiates TLS 1.3 and ALPN, echoes, and fires tlsHandshake", function()
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey, alpn = { "h2", "http/1.1" } }, EchoClose)
      local out = s_client(server.port, "-alpn http/1.1,h2 -servername localhost -verify_return_error")
      server:close()
      assert.matches("Protocol version: TLSv1.3", out, 1, true)
      assert.matches("Verification: OK", out, 1, true)
      assert.matches("echo:hello", out, 1, true)
      local ev = handshake_event(seen)
      assert.same({ kind = "tlsHandshake", success = true, protocol = "TLSv1.3", cipher = ev.cipher, alpn = "h2",
        serverName = "localhost" }, ev)
      assert.is_string(ev.cipher)
    end)

    it("speaks TLS 1.2 when the client asks, and refuses it with minVersion 1.3", function()
      local server = tls_server({ cert = certs.server, key = certs.serverKey }, EchoClose)
      local out = s_client(server.port, "-tls1_2")
      server:close()
      assert.matches("Protocol version: TLSv1.2", out, 1, true)
      assert.matches("echo:hello", out, 1, true)

      local seen
      server, seen = tls_server({ cert = certs.server, key = certs.serverKey, minVersion = "1.3" }, EchoClose)
      out = s_client(server.port, "-tls1_2")
      test.eventually(function() return #seen.errors > 0 end, 5, "the server's handshake failure")
      server:close()
      assert.not_matches("echo:hello", out, 1, true)
      assert.equal("TlsHandshakeFailed", seen.errors[1].kind)
      assert.equal("TlsHandshakeFailed: unsupported protocol", tostring(seen.errors[1]))
      local ev = handshake_event(seen)
      assert.is_false(ev.success)
      assert.equal("TlsHandshakeFailed: unsupported protocol", ev.error)
    end)

    it("picks the certificate by SNI name", function()
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey,
        sni = { ["other.test"] = { cert = certs.other, key = certs.otherKey } } }, EchoClose)
      local other = s_client(server.port, "-servername other.test")
      local default = s_client(server.port, "-servername localhost")
      server:close()
      assert.matches("Peer certificate: CN = other.test", other, 1, true)
      assert.matches("Peer certificate: CN = localhost", default, 1, true)
      assert.equal("other.test", handshake_event(seen).serverName)
    end)

    it("picks the certificate through an sni function; a failing one falls back to the default", function()
      local other = lupine.tls.server { cert = certs.other, key = certs.otherKey }
      local asked = {}
      local server = tls_server({ cert = certs.server, key = certs.serverKey, sni = function(name)
        asked[#asked + 1] = name
        if name == "boom.test" then error("no such tenant") end
        if name == "other.test" then return other end
      end }, EchoClose)
      local picked = s_client(server.port, "-servername other.test")
      local boom = s_client(server.port, "-servername boom.test")
      local none = s_client(server.port, "-servername unknown.test")
      server:close()
      assert.matches("Peer certificate: CN = other.test", picked, 1, true)
      assert.matches("Peer certificate: CN = localhost", boom, 1, true)
      assert.matches("echo:hello", boom, 1, true)
      assert.matches("Peer certificate: CN = localhost", none, 1, true)
      assert.same({ "other.test", "boom.test", "unknown.test" }, asked)
      assert.has_error(function() lupine.tls.server { cert = certs.server, key = certs.serverKey, sni = 42 } end,
        "lupine.tls.server: option 'sni' must be a table { [name] = { cert = ..., key = ... } } or a function(name)")
    end)

    it("names a ClientHello cut short by the peer's close", function()
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey }, EchoClose)
      local c = test.client(server.port)
      c:send("\22\3\1\0\200\1\0\0") -- a record header promising 128 bytes, and 4 of them
      c:close()
      test.eventually(function() return #seen.errors > 0 end, 5, "the server's error")
      server:close()
      assert.equal("TlsHandshakeFailed: the connection closed during the handshake", tostring(seen.errors[1]))
    end)

    it("answers garbage instead of a ClientHello with TlsHandshakeFailed, and closes", function()
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey }, EchoClose)
      local c = test.client(server.port)
      c:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      test.eventually(function() return not c:isOpen() end, 5, "the server to close")
      server:close()
      assert.equal(1, #seen.errors)
      assert.equal("TlsHandshakeFailed", seen.errors[1].kind)
      assert.equal("TlsHandshakeFailed: http request", tostring(seen.errors[1]))
    end)

    it("times a stalled handshake out: TlsHandshakeTimeout, then close", function()
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey, handshakeTimeout = 0.2 }, EchoClose)
      local c = test.client(server.port)
      c:send("\22\3\1") -- the first bytes of a record, then nothing
      test.eventually(function() return not c:isOpen() end, 5, "the server to time out")
      server:close()
      assert.equal("TlsHandshakeTimeout: no handshake within 0.2 s", tostring(seen.errors[1]))
    end)
  end)

  describe("client, against openssl s_server", function()
    local function s_server(args)
      local port = test.freePort()
      local p = test.spawn { "sh", "-c", ("exec openssl s_server -accept 127.0.0.1:%d -cert %s -key %s -rev %s"):format(
        port, certs.server, certs.serverKey, args or "") }
      test.waitForPort("127.0.0.1", port, 10)
      return p, port
    end

    it("verifies the server, sends SNI and ALPN, and exchanges data", function()
      local p <close>, port = s_server("-alpn h2")
      local ch, rec = tls_connect(port, { ca = certs.ca, serverName = "localhost", alpn = { "h2" } })
      ch:writeAndFlush("lupine\n") -- before the handshake: queued, then sent
      local hs = lupine.tls.handshake(ch)
      loop:runUntil(hs, 10, "the handshake")
      assert(hs:isSuccess(), hs:isDone() and tostring((hs:cause())))
      test.eventually(function() return rec.reads:find("enipul", 1, true) end, 10, "the reversed line")
      local info = ch:tls()
      assert.equal("TLSv1.3", info.protocol)
      assert.equal("h2", info.alpn)
      assert.equal("localhost", info.serverName)
      assert.equal("/CN=localhost", info.peerSubject)
      assert.equal("/CN=lupine-test-ca", info.peerIssuer)
      assert.is_true(info.verified)
      ch:close()
      test.eventually(function() return rec.inactive end, 5, "the close")
    end)
  end)

  describe("transfers", function()
    it("echoes 1 MiB intact, and completes a write's future when its records are written", function()
      local server = tls_server({ cert = certs.server, key = certs.serverKey }, {
        channelRead = function(_, ctx, buf) ctx:write(buf) end,
        channelReadComplete = function(_, ctx) ctx:flush() end,
      })
      local ch, rec = tls_connect(server.port, { ca = certs.ca, serverName = "localhost" })
      local parts = {}
      for i = 1, 1024 do parts[i] = string.pack(">I4", i):rep(256) end
      local data = table.concat(parts)
      local written = ch:writeAndFlush(data, lupine.promise())
      loop:runUntil(written, 10, "the write")
      assert.is_true(written:isSuccess())
      test.eventually(function() return #rec.reads >= #data end, 20, "the echo of 1 MiB")
      assert.is_true(rec.reads == data, "the echo differs")
      ch:close()
      server:close()
    end)

    it("resumes the session on the next connect with the same options (a TLS 1.3 ticket)", function()
      local server = tls_server({ cert = certs.server, key = certs.serverKey }, Echo)
      local opts = { ca = certs.ca, serverName = "localhost" }
      local resumed = {}
      for i = 1, 2 do
        local ch, rec = tls_connect(server.port, opts)
        ch:writeAndFlush("r" .. i) -- the ticket comes before the echo
        test.eventually(function() return rec.reads == "echo:r" .. i end, 10, "echo " .. i)
        resumed[i] = ch:tls().resumed
        loop:runUntil(ch:close(), 5)
      end
      server:close()
      assert.same({ false, true }, resumed)
    end)

    it("refuses renegotiation (TLS 1.2) and goes on", function()
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey }, Echo)
      -- s_client renegotiates on a line "R"; then sends "after" and ends.
      local out = run(("(printf 'R\\n'; sleep 0.5; printf 'after'; sleep 0.5) | openssl s_client -connect 127.0.0.1:%d -tls1_2 -CAfile %s 2>&1")
        :format(server.port, certs.ca))
      server:close()
      assert.matches("RENEGOTIATING", out, 1, true)
      assert.matches("no renegotiation", out, 1, true)
    end)

    it("opens and closes 100 connections without leaving a descriptor (leak_check)", function()
      local server = tls_server({ cert = certs.server, key = certs.serverKey }, Echo)
      local opts = { ca = certs.ca, serverName = "localhost" } -- one client context for all
      for i = 1, 100 do
        local ch, rec = tls_connect(server.port, opts)
        ch:writeAndFlush("n" .. i)
        test.eventually(function() return rec.reads == "echo:n" .. i end, 10, "echo " .. i)
        loop:runUntil(ch:close(), 5)
      end
      server:close()
    end)
  end)

  describe("verification", function()
    local function expect_failure(servercert, serverkey, clientopts, message)
      local server = tls_server({ cert = servercert, key = serverkey }, Echo)
      local ch, rec = tls_connect(server.port, clientopts)
      local hs = lupine.tls.handshake(ch)
      loop:runUntil(hs, 10, "the handshake")
      test.eventually(function() return rec.inactive end, 5, "the close")
      server:close()
      assert.is_false(hs:isSuccess())
      assert.equal(message, tostring(hs:cause()))
      assert.equal(message, tostring(rec.errors[1]))
    end

    it("fails on an unknown CA", function()
      expect_failure(certs.rogue, certs.rogueKey, { ca = certs.ca, serverName = "localhost" },
        "TlsHandshakeFailed: certificate verify failed: unable to get local issuer certificate")
    end)

    it("fails on an expired certificate", function()
      expect_failure(certs.expired, certs.expiredKey, { ca = certs.ca, serverName = "localhost" },
        "TlsHandshakeFailed: certificate verify failed: certificate has expired")
    end)

    it("fails on the wrong host name", function()
      expect_failure(certs.server, certs.serverKey, { ca = certs.ca, serverName = "wrong.test" },
        "TlsHandshakeFailed: certificate verify failed: hostname mismatch")
    end)

    it("checks the connect host by default (an IP address against the certificate's IP SAN)", function()
      local server = tls_server({ cert = certs.server, key = certs.serverKey }, Echo)
      local ch = tls_connect(server.port, { ca = certs.ca })
      local hs = lupine.tls.handshake(ch)
      loop:runUntil(hs, 10, "the handshake")
      assert(hs:isSuccess(), hs:isDone() and tostring((hs:cause())))
      ch:close()
      server:close()
    end)
  end)

  describe("mutual TLS", function()
    it("requires a client certificate signed by the CA, and shows its subject", function()
      local subject
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey, ca = certs.ca, verifyClient = "require" }, {
        userEventTriggered = function(_, ctx, ev)
          if ev.kind == "tlsHandshake" and ev.success then subject = ctx.channel:tls().peerSubject end
        end,
      })
      -- without a certificate: refused
      local ch = tls_connect(server.port, { ca = certs.ca, serverName = "localhost" })
      test.eventually(function() return #seen.errors > 0 end, 10, "the server to refuse")
      ch:close()
      assert.equal("TlsHandshakeFailed: peer did not return a certificate", tostring(seen.errors[1]))
      -- with one
      ch = tls_connect(server.port, { ca = certs.ca, serverName = "localhost", cert = certs.client, key = certs.clientKey })
      test.eventually(function() return subject end, 10, "the server's handshake")
      assert.equal("/CN=lupine-client", subject)
      ch:close()
      server:close()
    end)
  end)

  describe("closing", function()
    it("sends close_notify on close, and the peer sees tlsClosed", function()
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey }, Echo)
      local ch = tls_connect(server.port, { ca = certs.ca, serverName = "localhost" })
      loop:runUntil(lupine.tls.handshake(ch), 10, "the handshake")
      ch:close()
      test.eventually(function()
        for _, ev in ipairs(seen.events) do if ev.kind == "tlsClosed" then return true end end
      end, 5, "tlsClosed on the server")
      server:close()
      assert.same({}, seen.errors)
    end)

    it("reports a peer that closes without close_notify: TlsTruncated", function()
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey }, Echo)
      local ch = tls_connect(server.port, { ca = certs.ca, serverName = "localhost" })
      loop:runUntil(lupine.tls.handshake(ch), 10, "the handshake")
      ch.pipeline:remove("tls") -- the close below goes out without close_notify
      ch:close()
      test.eventually(function() return #seen.errors > 0 end, 5, "the server's error")
      server:close()
      assert.equal("TlsTruncated: the peer closed the connection without close_notify", tostring(seen.errors[1]))
    end)
  end)

  describe("other clients", function()
    it("serves HTTPS to curl --cacert", function()
      if not has("curl") then return pending("needs curl") end
      local server = tls_server({ cert = certs.server, key = certs.serverKey, alpn = { "http/1.1" } }, {
        channelRead = function(_, ctx, buf)
          if buf:readString():find("\r\n\r\n", 1, true) then
            ctx:writeAndFlush("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n")
            ctx:close()
          end
        end,
      })
      local out = run(("curl -sS --max-time 10 --cacert %s https://127.0.0.1:%d/ 2>&1"):format(certs.ca, server.port))
      local bad = run(("curl -sS --max-time 10 https://127.0.0.1:%d/ 2>&1"):format(server.port)) -- no --cacert
      server:close()
      assert.equal("hello\n", out)
      assert.matches("curl: (60)", bad, 1, true)
    end)

    it("talks to Python's ssl module: TLS 1.3, ALPN, close_notify both ways, resumption with a ticket", function()
      if not has("python3") then return pending("needs python3") end
      local resumed = {}
      local server, seen = tls_server({ cert = certs.server, key = certs.serverKey, alpn = { "h2", "http/1.1" } }, {
        channelRead = function(_, ctx, buf)
          resumed[#resumed + 1] = ctx.channel:tls().resumed
          ctx:writeAndFlush("echo:" .. buf:readString())
        end,
      })
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(([[
import socket, ssl
ctx = ssl.create_default_context(cafile=%q)
ctx.set_alpn_protocols(["http/1.1"])
session = None
for i in range(2):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", %d), timeout=10), server_hostname="localhost", session=session)
    s.sendall(b"py%%d" %% i)
    data = s.recv(100)
    print(data.decode(), s.version(), s.selected_alpn_protocol(), s.session_reused)
    session = s.session
    s.unwrap()
    s.close()
]]):format(certs.ca, server.port))
      f:close()
      local out = run("python3 " .. script .. " 2>&1")
      os.remove(script)
      test.eventually(function() return #seen.channels == 2 and not seen.channels[2]:isOpen() end, 5, "both closes")
      server:close()
      assert.equal("echo:py0 TLSv1.3 http/1.1 False\necho:py1 TLSv1.3 http/1.1 True\n", out)
      assert.same({ false, true }, resumed)
      assert.same({}, seen.errors) -- close_notify came before the FIN: no TlsTruncated
    end)
  end)

  describe("STARTTLS", function()
    -- The client's "STARTTLS\n" and its ClientHello arrive in one write, so
    -- the server's line decoder holds the ClientHello when the app adds TLS:
    -- the handler must take those bytes over (LESSONS #8), or the handshake
    -- stalls until it times out.
    it("hands bytes a decoder already holds to TLS, in order", function()
      local factory = lupine.tls.server { cert = certs.server, key = certs.serverKey, handshakeTimeout = 3 }
      local lines, errors = {}, {}
      local server = test.server(function(ch)
        ch.pipeline:addLast("lines", lupine.codec.lineFrame { maxLength = 1024, asString = true })
        ch.pipeline:addLast("app", {
          channelRead = function(_, ctx, line)
            lines[#lines + 1] = line
            if line == "STARTTLS" then
              ctx:writeAndFlush("OK\n") -- still in clear
              ctx.pipeline:addFirst("tls", factory)
            else
              ctx:writeAndFlush("got " .. line .. "\n")
            end
          end,
          exceptionCaught = function(_, ctx, err)
            errors[#errors + 1] = err
            ctx:close()
          end,
        })
      end)
      local first, ok_seen = true, false
      local ch, rec = tls_connect(server.port, nil, function(ch)
        ch.pipeline:addFirst("tls", lupine.tls.client { ca = certs.ca, serverName = "localhost" })
        ch.pipeline:addFirst("starttls", {
          write = function(_, ctx, msg, promise)
            if first then
              first = false
              msg = "STARTTLS\n" .. msg:readString()
            end
            return ctx:write(msg, promise)
          end,
          channelRead = function(_, ctx, buf)
            if not ok_seen then
              assert(buf:readString(3) == "OK\n")
              ok_seen = true
            end
            if buf:readableBytes() > 0 then ctx:fireChannelRead(buf) end
          end,
        })
      end)
      local hs = lupine.tls.handshake(ch)
      loop:runUntil(hs, 10, "the handshake")
      assert(hs:isSuccess(), hs:isDone() and tostring((hs:cause())))
      ch:writeAndFlush("secret\n")
      test.eventually(function() return rec.reads == "got secret\n" end, 10, "the answer through TLS")
      assert.same({ "STARTTLS", "secret" }, lines)
      assert.same({}, errors)
      ch:close()
      server:close()
    end)
  end)

  describe("apps and the launcher", function()
    local proc = require "proc"

    it("serves examples/tls_echo.lua with --tls-cert/--tls-key on a worker", function()
      local p = proc.start(("-w 1 -p 0 --tls-cert %s --tls-key %s examples/tls_echo.lua"):format(certs.server,
        certs.serverKey))
      local ok, err = pcall(function()
        local port = p:port()
        local ch, rec = tls_connect(port, { ca = certs.ca, serverName = "localhost", alpn = { "echo" } })
        ch:writeAndFlush("through the launcher")
        test.eventually(function() return rec.reads == "through the launcher" end, 10, "the echo")
        assert.equal("echo", ch:tls().alpn)
        ch:close()
        test.eventually(function() return rec.inactive end, 5, "the close")
      end)
      p:cleanup()
      assert(ok, err)
    end)

    it("refuses to start, in one line naming the file, on a missing or mismatched certificate", function()
      local code, out, err = proc.run(("-w 1 -p 0 --tls-cert %s/none.pem --tls-key %s examples/tls_echo.lua"):format(
        certs.dir, certs.serverKey))
      assert.equal(1, code)
      assert.equal("", out)
      assert.equal(("lupine: worker 1: lupine.tls.server: cannot load certificate '%s/none.pem': No such file or directory\n")
        :format(certs.dir), err)
      code, out, err = proc.run(("-w 0 -p 0 --tls-cert %s --tls-key %s examples/tls_echo.lua"):format(certs.server,
        certs.otherKey))
      assert.equal(1, code)
      assert.equal(("lupine: lupine.tls.server: key '%s' does not match certificate '%s'\n"):format(certs.otherKey,
        certs.server), err)
      code, out, err = proc.run("--tls-cert x.pem examples/tls_echo.lua")
      assert.equal(2, code)
      assert.equal("lupine: --tls-cert and --tls-key go together\n", err)
    end)

    it("puts the app's tls handler first in every accepted pipeline (lupine.serve inline)", function()
      local first
      local app = {
        tls = { cert = certs.server, key = certs.serverKey },
        init = function(ch)
          first = ch.pipeline:names()[1]
          ch.pipeline:addLast(Echo)
        end,
      }
      -- What lupine.serve does for each worker (src/lua/l_group.c), on a plain server.
      local srv = assert(lupine.server { port = 0, init = require("lupine.tls")._appInit(app) })
      local ch, rec = tls_connect(srv.port, { ca = certs.ca, serverName = "localhost" })
      ch:writeAndFlush("app")
      test.eventually(function() return rec.reads == "echo:app" end, 10, "the echo")
      assert.equal("tls", first)
      ch:close()
      srv:close()
    end)
  end)

  describe("options", function()
    it("names the file when a certificate or key is missing or does not match", function()
      assert.has_error(function() lupine.tls.server { cert = certs.dir .. "/none.pem", key = certs.serverKey } end,
        ("lupine.tls.server: cannot load certificate '%s/none.pem': No such file or directory"):format(certs.dir))
      assert.has_error(function() lupine.tls.server { cert = certs.server, key = certs.otherKey } end,
        ("lupine.tls.server: key '%s' does not match certificate '%s'"):format(certs.otherKey, certs.server))
      assert.has_error(function() lupine.tls.server { cert = certs.server } end,
        "lupine.tls.server: a certificate needs its key (option 'key')")
      assert.has_error(function() lupine.tls.server { cert = certs.server, key = certs.serverKey, colour = 1 } end,
        "lupine.tls.server: unknown option 'colour'")
      assert.has_error(function() lupine.tls.client { minVersion = "1.1" } end,
        "lupine.tls.client: option 'minVersion' must be \"1.2\" or \"1.3\"")
    end)

    it("takes PEM text as well as file names", function()
      local function slurp(path)
        local f = assert(io.open(path))
        local s = f:read("a")
        f:close()
        return s
      end
      local server = tls_server({ cert = slurp(certs.server), key = slurp(certs.serverKey) }, Echo)
      local ch, rec = tls_connect(server.port, { ca = slurp(certs.ca), serverName = "localhost" })
      ch:writeAndFlush("pem")
      test.eventually(function() return rec.reads == "echo:pem" end, 10, "the echo")
      ch:close()
      server:close()
    end)
  end)
end)
