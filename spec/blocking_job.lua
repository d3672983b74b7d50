-- spec/blocking_job.lua: functions blocking_spec runs on lupine.blocking's
-- pool threads (and inline, to compare). Loaded once per pool state.
local M = {}

-- How many times this module was loaded in this state (a global of the state).
rawset(_G, "blocking_job_loads", (rawget(_G, "blocking_job_loads") or 0) + 1)

-- Read a file and checksum it in pure Lua (Adler-32): { sum, size }.
function M.checksum(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  local a, b = 1, 0
  for i = 1, #s, 4096 do
    local bytes = { s:byte(i, i + 4095) }
    for j = 1, #bytes do
      a = (a + bytes[j]) % 65521
      b = (b + a) % 65521
    end
  end
  return { sum = b * 65536 + a, size = #s }
end

function M.loads() return rawget(_G, "blocking_job_loads") end

-- Something that tells this state from the others.
local id = tostring(M):match("0x%x+") or tostring(M)
function M.stateId() return id end

-- Wait until someone writes a line into the named pipe at path; return it.
function M.waitOn(path)
  local f = assert(io.open(path, "r")) -- blocks until a writer opens it
  local line = f:read("l")
  f:close()
  return line
end

function M.notAFunction() end
M.value = 42

return M
