-- lupine: the public Lua API. The native core is lupine.core (src/lua/*.c);
-- this file adds what reads better in Lua: serving an app, lazy submodules.
local core = require "lupine.core"

local lupine = {}
for k, v in pairs(core) do lupine[k] = v end

-- Set by the launcher before it loads an app: lupine.app() then returns the
-- app for the launcher to serve instead of serving it inline.
lupine.launched = false

local function check_app(app, level)
  if type(app) ~= "table" then error("lupine: an app must be a table with an init(ch) function", level + 1) end
  if type(app.init) ~= "function" then error("lupine: the app has no init(ch) function", level + 1) end
end

-- Serve app in this thread's loop (the inline mode) until the loop stops.
-- opts.host / opts.port override the app's; the start-up line goes to stdout.
function lupine.serve(app, opts)
  check_app(app, 2)
  opts = opts or {}
  local host = opts.host or app.host or "127.0.0.1"
  local port = opts.port or app.port or 0
  local server, err = lupine.server {
    host = host, port = port, init = app.init, options = app.options, backlog = app.backlog,
  }
  if not server then error("lupine: " .. err, 0) end
  io.stdout:write(("lupine: %s listening on %s (inline: 1 loop)\n"):format(app.name or "app", server.localAddress))
  io.stdout:flush()
  lupine.loop():run()
  return server
end

-- Whether the app file is the script the interpreter was started with: its
-- main chunk called lupine.app directly, or (after `return lupine.app {...}`,
-- a tail call that removes the chunk's frame) only the interpreter's own C
-- entry function is left above. dofile, require and the launcher all leave
-- more on the stack.
local function run_as_script()
  if not (arg and arg[0]) then return false end
  local caller = debug.getinfo(3, "S")
  if not caller then return false end
  if caller.what == "main" then return caller.source == "@" .. arg[0] end
  return caller.what == "C" and debug.getinfo(4, "S") == nil
end

-- The last line of an app file: `return lupine.app { ... }`. Run as a script
-- (`lua5.4 examples/echo.lua`), it serves the app inline; loaded by the
-- launcher, a spec or another script, it only returns the app.
function lupine.app(app)
  check_app(app, 2)
  if not lupine.launched and run_as_script() then lupine.serve(app) end
  return app
end

local submodules = { codec = true, test = true, handler = true }
return setmetatable(lupine, {
  __index = function(t, k)
    if submodules[k] then
      local m = require("lupine." .. k)
      rawset(t, k, m)
      return m
    end
  end,
})
