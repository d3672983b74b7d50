-- spec/tls_certs.lua: a throw-away CA and certificates for the TLS specs,
-- made with the openssl command in a temporary directory (ECDSA P-256).
--   local certs = require("tls_certs").make()
--   certs.dir, certs.ca, certs.server / certs.serverKey (localhost, 127.0.0.1),
--   certs.other / certs.otherKey (other.test), certs.client / certs.clientKey,
--   certs.expired / certs.expiredKey, certs.rogue / certs.rogueKey (another CA's),
--   certs:remove()
local M = {}

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  if not ok then error("tls_certs: failed: " .. cmd, 2) end
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

function M.make()
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  local function p(name) return dir .. "/" .. name end
  local key = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "
  -- The CA (and a second, unknown one)
  for _, ca in ipairs { "ca", "rogueca" } do
    sh(key .. p(ca .. ".key"))
    sh(("openssl req -x509 -new -key %s -subj /CN=lupine-test-%s -days 30 -out %s -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign")
      :format(p(ca .. ".key"), ca, p(ca .. ".pem")))
  end
  write(p("ca.cnf"), ([[
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = %s
database = %s/index.txt
new_certs_dir = %s
serial = %s/serial
default_md = sha256
policy = policy_any
copy_extensions = copy
unique_subject = no
[ policy_any ]
commonName = supplied
]]):format(dir, dir, dir, dir))
  write(p("index.txt"), "")
  write(p("serial"), "1000\n")
  local function leaf(name, cn, san, ca, dates)
    sh(key .. p(name .. ".key"))
    sh(("openssl req -new -key %s -subj /CN=%s -addext subjectAltName=%s -out %s"):format(p(name .. ".key"), cn, san,
      p(name .. ".csr")))
    sh(("openssl ca -batch -notext -config %s -cert %s -keyfile %s -in %s -out %s %s"):format(p("ca.cnf"),
      p(ca .. ".pem"), p(ca .. ".key"), p(name .. ".csr"), p(name .. ".pem"),
      dates or "-days 30"))
  end
  leaf("server", "localhost", "DNS:localhost,IP:127.0.0.1", "ca")
  leaf("other", "other.test", "DNS:other.test", "ca")
  leaf("client", "lupine-client", "DNS:lupine-client", "ca")
  leaf("expired", "localhost", "DNS:localhost,IP:127.0.0.1", "ca", "-startdate 20200101000000Z -enddate 20200102000000Z")
  leaf("rogue", "localhost", "DNS:localhost,IP:127.0.0.1", "rogueca")
  local c = { dir = dir }
  for _, n in ipairs { "server", "other", "client", "expired", "rogue" } do
    c[n] = p(n .. ".pem")
    c[n .. "Key"] = p(n .. ".key")
  end
  c.ca = p("ca.pem")
  c.rogueCa = p("rogueca.pem")
  function c.remove() os.execute("rm -rf " .. dir) end
  return c
end

return M
