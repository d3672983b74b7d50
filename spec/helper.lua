-- spec/helper.lua: loaded by busted before every spec file (see .busted).
local lupine = require "lupine"

-- Specs provoke errors on purpose: the log is off unless asked for
-- (LUPINE_LOG_LEVEL=debug|info|warn|error).
lupine.setLogLevel(os.getenv("LUPINE_LOG_LEVEL") or "off")

-- Open descriptors of this process, to check that nothing leaks. A full
-- collection comes first: a server or file nobody references any more closes
-- in its __gc, which would otherwise happen at a random later count. Pipes are
-- left out: io.popen's own pipe shows both of its ends for a moment (the
-- listing may run before this process closed the child's end).
local stat = assert(io.open("/proc/self/stat"))
local pid = stat:read("n")
stat:close()
function _G.open_fds()
  collectgarbage()
  collectgarbage()
  local n = 0
  local p = io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
  for line in p:lines() do
    if line:find(" -> ", 1, true) and not line:find("-> pipe:", 1, true) then n = n + 1 end
  end
  p:close()
  return n
end

-- Every test must leave no channel and no descriptor behind: in a spec file
-- or describe block, `local leaks = leak_check()`, then
-- `before_each(leaks.before)` and `after_each(leaks.after)` (the busted
-- functions live in the spec's own environment). Waits for late closes.
function _G.leak_check()
  local loop = lupine.loop()
  local function no_channels(what)
    loop:runUntil(function() return loop:channelCount() == 0 end, 5, what)
  end
  local fds
  return {
    before = function()
      no_channels("channels of earlier specs to close")
      fds = open_fds()
    end,
    after = function()
      no_channels("every channel to close")
      local now = open_fds()
      if now ~= fds then error(("descriptors leaked: %d open before, %d after"):format(fds, now), 2) end
    end,
  }
end
