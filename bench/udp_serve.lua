-- bench/udp_serve.lua: examples/udp_echo.lua's UDP side, served inline on a
-- free port for bench/udp.sh (the example itself binds a fixed port and TCP
-- beside it). Prints `listening on 127.0.0.1:PORT`; SIGTERM ends it.
local lupine = require "lupine"

local opts = {}
for k, v in pairs(dofile("examples/udp_echo.lua").udp) do opts[k] = v end
opts.port = 0
local ch = assert(lupine.udp(opts))
print("listening on 127.0.0.1:" .. ch.localPort)
io.stdout:flush()
lupine.loop():run()
