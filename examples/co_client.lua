-- examples/co_client.lua: a client script written as a coroutine: connects,
-- talks to a line-echoing server (examples/co_echo.lua), and exits.
--   lua5.4 examples/co_echo.lua &
--   lua5.4 examples/co_client.lua [host] [port] [count]
--
-- Loaded with dofile it returns { run = run }: run{ host, port, count } returns
-- a future (lupine.spawn's) of the number of lines that came back intact.
local lupine = require "lupine"

local function talk(host, port, count)
  local sock, err = lupine.tcp.connect(host, port, { timeout = 5 })
  if not sock then error(("cannot connect to %s:%d: %s"):format(host, port, err), 0) end
  for i = 1, count do
    local line = ("line %d of %d"):format(i, count)
    assert(sock:send(line .. "\n"))
    local back, rerr = sock:receiveLine()
    if back ~= line then error(("line %d came back as %s (%s)"):format(i, tostring(back), tostring(rerr)), 0) end
  end
  sock:close()
  return count
end

local function run(opts)
  opts = opts or {}
  return lupine.spawn(talk, opts.host or "127.0.0.1", opts.port or 8007, opts.count or 10)
end

if arg and arg[0] and arg[0]:find("co_client%.lua$") and debug.getinfo(3) == nil then
  local f = run { host = arg[1], port = tonumber(arg[2]), count = tonumber(arg[3]) }
  lupine.loop():runUntil(f, 60, "the conversation")
  if not f:isSuccess() then
    io.stderr:write("co_client: ", tostring(f:cause()), "\n")
    os.exit(1)
  end
  print(("co_client: %d lines echoed"):format(f:get()))
  return
end

return { run = run }
