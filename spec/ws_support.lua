-- spec/ws_support.lua: what the WebSocket specs share: Debian's python3 with
-- its websockets package as a real peer, and examples/ws_chat.lua served
-- inline with a teardown that leaves no broadcast behind.
local lupine = require "lupine"
local test = require "lupine.test"

local M = {}

-- Start script (Python source) with Debian's python3 (a pyenv shim on PATH
-- may lack websockets); returns the process (test.spawn). The script file is
-- removed once the process has read it, when the caller is done.
function M.spawn_python(script, ...)
  local ok = os.execute("/usr/bin/python3 -c 'import websockets' 2>/dev/null")
  assert(ok, "Debian's python3-websockets is not installed (make test installs it)")
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  return test.spawn { "/usr/bin/python3", path, ... }, path
end

-- Run script to its end (30 s at most); returns its exit status and output.
function M.python(script, ...)
  local p, path = M.spawn_python(script, ...)
  local status = p:wait(30)
  local out = p:output()
  p:stop()
  os.remove(path)
  return status, out
end

-- examples/ws_chat.lua on a test server, and its teardown: close, wait for
-- the channels, let the room's broadcasts drain, then unsubscribe (as
-- spec/line_chat_spec.lua does), so no later spec receives them.
function M.chat_server() return test.server(dofile("examples/ws_chat.lua")) end

function M.chat_teardown(server)
  server:close()
  local loop = lupine.loop()
  loop:runUntil(function() return loop:channelCount() == 0 end, 5, "the channels to close")
  local drained = false
  lupine.subscribe("ws_chat", function(msg) if msg == "last" then drained = true end end)
  lupine.broadcast("ws_chat", "last")
  loop:runUntil(function() return drained end, 5, "the broadcasts to be delivered")
  lupine.unsubscribe("ws_chat")
end

return M
