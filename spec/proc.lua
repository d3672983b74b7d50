-- spec/proc.lua: run the lupine launcher (or any command) as a subprocess for
-- specs: its stdout and stderr go to temporary files, its exit status is
-- caught by a small shell wrapper, and waits run this state's loop so that
-- clients made with lupine.test keep working meanwhile. Every wait is bounded.
local lupine = require "lupine"

local proc = {}
local build = os.getenv("LUPINE_BUILD") or "build"
proc.launcher = build .. "/lupine"
proc.loadgen = build .. "/bench/loadgen"

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- Run the loop for up to timeout seconds until pred() is true; returns whether it became true.
function proc.waitFor(pred, timeout)
  local loop = lupine.loop()
  local deadline = loop:now() + (timeout or 10)
  while true do
    if pred() then return true end
    if loop:now() >= deadline then return false end
    loop:runFor(0.02)
  end
end

local Proc = {}
Proc.__index = Proc

-- proc.start("-w 2 -p 0 examples/echo.lua", { ulimit = 64, env = "PORT=0", cmd = "lua5.4" })
-- starts `cmd args` (cmd defaults to the launcher) in the background.
function proc.start(args, opts)
  opts = opts or {}
  local asan = os.getenv("ASAN_OPTIONS")
  if asan and not opts.cmd then
    -- The sanitized launcher is instrumented through and through: check it
    -- for leaks too (a leak makes its exit status 23, which specs catch).
    local env = "ASAN_OPTIONS=" .. asan:gsub("detect_leaks=0", "detect_leaks=1")
    opts = setmetatable({ env = opts.env and (opts.env .. " " .. env) or env }, { __index = opts })
  end
  local base = os.tmpname()
  local self = setmetatable({ base = base, out = base .. ".out", err = base .. ".err", statusFile = base .. ".status" }, Proc)
  local script = ("%s%s%s %s >%s 2>%s & echo $!; wait $!; echo $? >%s"):format(
    opts.ulimit and ("ulimit -n %d && "):format(opts.ulimit) or "", opts.env and (opts.env .. " ") or "",
    opts.cmd or proc.launcher, args, self.out, self.err, self.statusFile)
  local p = assert(io.popen("sh -c " .. quote(script) .. " &"))
  self.pid = tonumber(p:read("l"))
  p:close()
  assert(self.pid, "proc.start: no pid from the shell")
  self.started = lupine.loop():now()
  return self
end

function Proc:stdout() return slurp(self.out) end
function Proc:stderr() return slurp(self.err) end

-- The exit status once the process has ended, else nil.
function Proc:status()
  if self.code then return self.code end
  local s = slurp(self.statusFile):match("^(%d+)")
  if s then self.code = tonumber(s) end
  return self.code
end

-- The port of the start-up line (`listening on HOST:PORT (...)`); raises with
-- the process's stderr when it exits or says nothing in time.
function Proc:port(timeout)
  local port
  local ok = proc.waitFor(function()
    port = tonumber(self:stdout():match("listening on .-:(%d+) %("))
    return port ~= nil or self:status() ~= nil
  end, timeout or 15)
  if not port then
    error(("no start-up line (%s); stderr: %s"):format(ok and "the process exited" or "timed out", self:stderr()), 2)
  end
  self.startupLine = self:stdout():match("[^\n]*listening on[^\n]*")
  return port
end

function Proc:kill(sig) os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", self.pid)) end

-- Wait for the exit; returns the status, or raises after timeout (killing it).
function Proc:wait(timeout)
  if proc.waitFor(function() return self:status() ~= nil end, timeout or 20) then
    self.ended = lupine.loop():now()
    return self.code
  end
  self:kill("KILL")
  error(("the process did not exit within %gs; stderr: %s"):format(timeout or 20, self:stderr()), 2)
end

-- Descriptors the process has open (Linux /proc).
function Proc:fds()
  local n = 0
  local p = io.popen("ls /proc/" .. self.pid .. "/fd 2>/dev/null")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

-- Stop the process if it still runs (SIGTERM, then SIGKILL), and remove its files.
function Proc:cleanup()
  if not self:status() then
    self:kill("TERM")
    if not proc.waitFor(function() return self:status() ~= nil end, 15) then
      self:kill("KILL")
      proc.waitFor(function() return self:status() ~= nil end, 5)
    end
  end
  for _, f in ipairs { self.out, self.err, self.statusFile, self.base } do os.remove(f) end
end

-- Run to the end: status, stdout, stderr.
function proc.run(args, opts)
  local p = proc.start(args, opts)
  local code = p:wait(opts and opts.timeout or 20)
  local out, err = p:stdout(), p:stderr()
  p:cleanup()
  return code, out, err
end

return proc
