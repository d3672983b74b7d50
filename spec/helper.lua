-- spec/helper.lua: loaded by busted before every spec file (see .busted).
local lupine = require "lupine"

-- Specs provoke errors on purpose: the log is off unless asked for
-- (LUPINE_LOG_LEVEL=debug|info|warn|error).
lupine.setLogLevel(os.getenv("LUPINE_LOG_LEVEL") or "off")

-- Open descriptors of this process, to check that nothing leaks.
local pid = assert(io.open("/proc/self/stat")):read("n")
function _G.open_fds()
  local n = 0
  local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end
