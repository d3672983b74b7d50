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
end)
