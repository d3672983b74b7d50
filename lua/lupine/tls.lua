-- lupine.tls: TLS handlers (src/tls.c, src/lua/l_tls.c).
--
--   lupine.tls.server { cert = "server.pem", key = "server.key", ... }  -> a handler factory
--   lupine.tls.client { ca = "ca.pem", serverName = "example.com", ... } -> a handler factory
--   ch:tls() / lupine.tls.info(ch)   -> what the channel negotiated, or nil
--   lupine.tls.handshake(ch)         -> the handshake's future
--
-- A factory holds one OpenSSL context, built when it is made: make it once
-- (per worker: at the top of the app file, or in workerInit) and add it to
-- every channel, first in the pipeline:
--   ch.pipeline:addFirst("tls", server)
local core = require "lupine.core"

local tls = {
  server = core._tls.server,
  client = core._tls.client,
  info = core._tls.info,
  handshake = core._tls.handshake,
}

-- An app's `tls = { cert = ..., key = ..., ... }` (lupine.tls.server's
-- options), with the launcher's --tls-cert/--tls-key over cert and key: the
-- app's init wrapped to put the TLS handler first in every accepted pipeline.
-- Called once per worker state (src/lua/l_group.c), so the context is built
-- once per worker; a bad certificate is a one-line start-up error.
function tls._appInit(app, cert, key)
  local opts = {}
  if app.tls ~= nil then
    if type(app.tls) ~= "table" then error("the app's tls must be a table of lupine.tls.server options", 0) end
    for k, v in pairs(app.tls) do opts[k] = v end
  end
  if cert then opts.cert, opts.key = cert, key end
  local ok, factory = pcall(core._tls.server, opts)
  if not ok then error(tostring(factory), 0) end
  local init = app.init
  return function(ch)
    ch.pipeline:addFirst("tls", factory)
    return init(ch)
  end
end

return tls
