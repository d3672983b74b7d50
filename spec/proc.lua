-- spec/proc.lua: run the lupine launcher (or any command) as a subprocess for
-- specs, on lupine.test's one process mechanism (test.spawn: a child in its
-- own process group that dies with the spec run): its stdout and stderr go to
-- temporary files, and waits run this state's loop so that clients made with
-- lupine.test keep working meanwhile. Every wait is bounded.
local lupine = require "lupine"
local test = require "lupine.test"

local proc = {}
local build = os.getenv("LUPINE_BUILD") or "build"
proc.launcher = build .. "/lupine"
proc.loadgen = build .. "/bench/loadgen"

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
-- starts `cmd args` (cmd defaults to the launcher; args and env are shell
-- words) through test.spawn, so it dies with the spec run. The shell only sets
-- the limit and then execs the command: the process is the command itself.
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
  local self = setmetatable({ base = base, out = base .. ".out", err = base .. ".err" }, Proc)
  local script = ("%sexec %s%s %s"):format(opts.ulimit and ("ulimit -n %d && "):format(opts.ulimit) or "",
    opts.env and ("env " .. opts.env .. " ") or "", opts.cmd or proc.launcher, args)
  self.process = test.spawn({ "sh", "-c", script }, { stdout = self.out, stderr = self.err })
  self.pid = self.process.pid
  self.started = lupine.loop():now()
  return self
end

function Proc:stdout() return slurp(self.out) end
function Proc:stderr() return slurp(self.err) end

-- The exit status once the process has ended, else nil.
function Proc:status()
  self.code = self.process:status()
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

function Proc:kill(sig) self.process:kill(sig or "TERM") end

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
  self.process:stop(15)
  for _, f in ipairs { self.out, self.err, self.base } do os.remove(f) end
end

-- Run to the end: status, stdout, stderr.
function proc.run(args, opts)
  local p = proc.start(args, opts)
  local code = p:wait(opts and opts.timeout or 20)
  local out, err = p:stdout(), p:stderr()
  p:cleanup()
  return code, out, err
end

-- Run a program (argv, as test.spawn takes it) to its end, at most timeout
-- seconds (20): its output (stdout and stderr) and exit status. Without the
-- ASan runtime the sanitized spec run preloads: curl and others hang under it.
function proc.output(argv, timeout)
  local p = test.spawn(argv, { env = { LD_PRELOAD = "" } })
  local code = p:wait(timeout or 20)
  local out = p:output()
  p:stop()
  return out, code
end

return proc
