-- spec/https_spec.lua: HTTPS, where the HTTP and TLS work meet. The HTTP
-- examples serve TLS through the launcher's --tls-cert/--tls-key (or an app's
-- tls field), the TLS handler first in every pipeline and the HTTP codec
-- behind it; curl, a client nobody here wrote, checks the certificate
-- against the throw-away CA and gets the answers.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"

-- curl in the background (test.spawn), without the ASan preload (curl hangs under it).
local function curl(args)
  local p <close> = test.spawn { "sh", "-c", "unset LD_PRELOAD; curl -sS --max-time 10 " .. args .. " 2>&1" }
  p:wait(20)
  return p:output(), p:status()
end

describe("HTTPS (the HTTP examples over TLS)", function()
  local certs
  setup(function() certs = require("tls_certs").make() end)
  teardown(function() if certs then certs:remove() end end)
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("serves examples/http_hello.lua over TLS with the launcher's --tls-cert/--tls-key", function()
    local p = proc.start(("-w 1 -p 0 --tls-cert %s --tls-key %s examples/http_hello.lua"):format(certs.server,
      certs.serverKey))
    local ok, err = pcall(function()
      local port = p:port()
      local out, status = curl(("--cacert %s https://localhost:%d/ https://localhost:%d/again"):format(certs.ca,
        port, port))
      assert.equal(0, status, out)
      assert.equal("hello\nhello\n", out) -- two requests, one kept-alive TLS connection
      -- without the CA, curl refuses the certificate (exit 60): verification is real
      out, status = curl(("https://localhost:%d/"):format(port))
      assert.equal(60, status, out)
      -- plain HTTP to the TLS port is not answered as HTTP
      out, status = curl(("http://localhost:%d/"):format(port))
      assert.are_not.equal(0, status, out)
    end)
    p:cleanup()
    assert(ok, err)
  end)

  it("serves examples/http_api.lua's JSON over TLS from an app's tls field", function()
    local app = dofile("examples/http_api.lua")
    app.tls = { cert = certs.server, key = certs.serverKey }
    local server = test.server(app)
    local out, status = curl(("--cacert %s -X POST -H 'Content-Type: application/json' -d '{\"name\":\"tea\"}' https://localhost:%d/items"):format(
      certs.ca, server.port))
    assert.equal(0, status, out)
    assert.truthy(out:find('"name":"tea"', 1, true), out)
    out, status = curl(("--cacert %s https://localhost:%d/items"):format(certs.ca, server.port))
    assert.equal(0, status, out)
    assert.truthy(out:find('"tea"', 1, true), out)
    server:close()
  end)

  it("ends an error answer with close_notify before the FIN (Python's ssl sees a clean close, not a truncation)", function()
    local http = require "lupine.http"
    local server = test.server(http.server {
      tls = { cert = certs.server, key = certs.serverKey },
      handler = function(_, res) res:send(200, "ok") end,
    })
    local script = ([[
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=%q)
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost : bad\r\n\r\n")
        got = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    print("clean", got.split(b"\r\n")[0].decode())
                    break
                got += d
        except ssl.SSLEOFError:
            print("truncated", got.split(b"\r\n")[0].decode())
]]):format(certs.ca)
    local out = os.tmpname()
    local p <close> = test.spawn({ "sh", "-c", "unset LD_PRELOAD; exec python3 -c \"$0\" \"$1\"", script, tostring(server.port) },
      { stdout = out })
    test.eventually(function() return p:status() ~= nil end, 15, "python's TLS client to finish")
    local f = assert(io.open(out))
    local got = f:read("a")
    f:close()
    os.remove(out)
    assert.equal("clean HTTP/1.1 400 Bad Request\n", got)
    server:close()
  end)
end)

describe("lupine.http's client over https://", function()
  local certs
  setup(function() certs = require("tls_certs").make() end)
  teardown(function() if certs then certs:remove() end end)
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(function()
    require("lupine.http").closeIdle()
    test.eventually(function() return lupine.loop():channelCount() == 0 end, 5, "the client connections to close")
    leaks.after()
  end)
  local http = require "lupine.http"

  it("verifies the server against the given CA and keeps the TLS connection alive", function()
    local server = test.server(http.server {
      tls = { cert = certs.server, key = certs.serverKey },
      handler = function(req, res) res:send(200, req.method .. " " .. req.target) end,
    })
    local tls = { ca = certs.ca }
    local u = ("https://127.0.0.1:%d/a?b=1"):format(server.port)
    assert.equal("GET /a?b=1", test.http.get(u, { tls = tls }).body)
    assert.equal("POST /a?b=1", test.http.post(u, "x", { tls = tls }).body)
    assert.equal(1, server.accepted) -- one kept-alive TLS connection
    -- the system's CAs do not know the throw-away CA: verification is real
    local ok, err = pcall(test.http.get, u)
    assert.is_false(ok)
    assert.truthy(tostring(err.message or err):find("certificate verify failed", 1, true), tostring(err.message or err))
    server:close()
  end)

  it("talks to Python's https server (a server nobody here wrote)", function()
    local script = ([[
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("py " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(%q, %q)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.handle_request()
]]):format(certs.server, certs.serverKey)
    local out = os.tmpname()
    local p <close> = test.spawn({ "sh", "-c", "unset LD_PRELOAD; exec python3 -c \"$0\"", script }, { stdout = out })
    local port
    test.eventually(function()
      local f = io.open(out)
      port = f and tonumber(f:read("l"))
      if f then f:close() end
      return port ~= nil
    end, 10, "python's server to print its port")
    local r = test.http.get(("https://localhost:%d/x?y"):format(port), { tls = { ca = certs.ca } })
    assert.equal(200, r.status)
    assert.equal("py /x?y", r.body)
    os.remove(out)
  end)

  it("refuses a tls table without https", function()
    assert.has_error(function() http.request { url = "http://h/", tls = {} } end,
      "http.request: option 'tls' needs an https:// url")
    assert.has_error(function() http.request { url = "https://h/", tls = 1 } end,
      "http.request: 'tls' must be a table of lupine.tls.client options")
  end)
end)
