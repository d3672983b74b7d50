-- lupine: the public Lua API. The native core is lupine.core (src/lua/*.c);
-- this file adds what reads better in Lua: serving an app, lazy submodules.
local core = require "lupine.core"

local lupine = {}
for k, v in pairs(core) do lupine[k] = v end

-- Set by the launcher before it loads an app: lupine.app() then returns the
-- app for the launcher to serve instead of serving it inline.
lupine.launched = false

-- Apps with handle(sock) (a coroutine per connection, lupine.co) get an
-- init(ch) that runs theirs and then starts handle: made once per app table.
local with_handle = setmetatable({}, { __mode = "k" })

-- Apps with a udp field get a workerInit that opens it first: made once per app table.
local with_udp = setmetatable({}, { __mode = "k" })

-- app.udp = { host, port, init, ... } (lupine.udp's options): a UDP channel
-- in every worker, opened by the worker itself before the app's own
-- workerInit. With more than one worker each binds its own socket with
-- SO_REUSEPORT and the kernel spreads datagrams over them by the sender's
-- address (one sender's datagrams keep to one worker); UDP has no accept for
-- a boss to hand out. A fixed port is then required: port 0 would give each
-- worker a port of its own. Every worker binds with SO_REUSEPORT, even alone,
-- so that a reload's new state binds beside the old one (which closes its
-- socket when the new code takes over).
local function udp_worker_init(app, level)
  local udp, user = app.udp, app.workerInit
  if type(udp) ~= "table" or type(udp.init) ~= "function" then
    error("lupine: the app's udp must be a table with an init(ch) function", level + 1)
  end
  if user ~= nil and type(user) ~= "function" then error("lupine: the app's workerInit must be a function(worker)", level + 1) end
  return function(worker)
    local opts = {}
    for k, v in pairs(udp) do opts[k] = v end
    if worker.workers > 1 and (opts.port or 0) == 0 then
      error("the app's udp.port must be set with more than one worker (each binds it)", 0)
    end
    opts.reusePort = true
    local ch, err = lupine.udp(opts)
    if not ch then error(err, 0) end
    if user then return user(worker) end
  end
end

local function check_app(app, level)
  if type(app) ~= "table" then error("lupine: an app must be a table with an init(ch) function", level + 1) end
  if app.udp ~= nil and not with_udp[app] then
    local init = udp_worker_init(app, level + 1)
    app.workerInit = init
    with_udp[app] = init
  end
  if app.handle ~= nil and not with_handle[app] then
    local init = require("lupine.co").handleInit(app)
    app.init = init
    with_handle[app] = init
  end
  if type(app.init) ~= "function" then error("lupine: the app has no init(ch) or handle(sock) function", level + 1) end
end
lupine._checkApp = check_app

-- Where each app came from when run as a script, for worker states to load.
local sources = setmetatable({}, { __mode = "k" })

-- Serve app until SIGINT/SIGTERM (or the loop is stopped from inside), then
-- shut down gracefully and return. opts override the app's fields: host
-- (127.0.0.1; "unix:/path" or "unix:@name" for a Unix domain socket, with
-- mode "0660" for the file), port (0: any), reusePort (each worker listens
-- and accepts on its own socket: SO_REUSEPORT), workers (0: inline in this thread's loop and
-- state; the launcher's default is one per core), shutdownTimeout (10 s),
-- reloadDrainTimeout (0: after a reload, old states wait for their last connection),
-- maxConnections, memoryLimit, tlsCert and tlsKey (the launcher's --tls-cert and
-- --tls-key: serve TLS with them, over the app's tls.cert and tls.key),
-- shared (dictionaries: lupine.shared), blockingThreads (lupine.blocking's pool; default:
-- one thread per core), admin ("[HOST:]PORT": the admin listener, lupine.admin,
-- on this state's loop), logFormat ("text" or "json"), and source (the app's
-- file or module, which worker threads load into their own states). The
-- start-up lines go to stdout.
function lupine.serve(app, opts)
  check_app(app, 2)
  opts = opts or {}
  local function pick(k)
    if opts[k] ~= nil then return opts[k] end
    return app[k]
  end
  local blocking_threads = pick("blockingThreads") -- lupine.blocking's pool, for every state of the process
  if blocking_threads ~= nil then
    if math.type(blocking_threads) ~= "integer" or blocking_threads < 0 or blocking_threads > 256 then
      error("lupine: option 'blockingThreads' must be an integer from 0 (one per core) to 256", 0)
    end
    core.blocking.configure { threads = blocking_threads }
  end
  if app.shared ~= nil then -- shared = { cache = "64M" }: made once, before any worker starts
    if type(app.shared) ~= "table" then error("lupine: the app's shared must be a table of name = size", 0) end
    for name, size in pairs(app.shared) do
      if type(name) ~= "string" then error("lupine: the app's shared must be a table of name = size", 0) end
      core.shared.declare(name, size)
    end
  end
  local workers = pick("workers")
  if workers == nil then workers = lupine.launched and core.cpuCount() or 0 end
  local log_format = pick("logFormat")
  if log_format ~= nil then
    if log_format ~= "text" and log_format ~= "json" then
      error("lupine: option 'logFormat' must be \"text\" or \"json\"", 0)
    end
    core.setLogFormat(log_format)
  end
  local admin_spec, admin = pick("admin"), nil
  if admin_spec ~= nil then
    local err
    admin, err = require("lupine.admin").start(admin_spec)
    if not admin then error("lupine: admin: " .. tostring(err), 0) end
    io.stdout:write(("lupine: admin listening on %s:%d\n"):format(admin.host, admin.port))
    io.stdout:flush()
    -- POST /reload: as SIGHUP (this state serves the app once core.serve runs)
    require("lupine.admin").setReloadHook(function()
      local asked, why = pcall(lupine.reload)
      if asked then return true end
      return nil, tostring(why)
    end)
  end
  local ok, err = pcall(core.serve, {
    app = app, source = opts.source or sources[app], name = app.name,
    host = pick("host"), port = pick("port"), workers = workers, backlog = app.backlog,
    shutdownTimeout = pick("shutdownTimeout"), reloadDrainTimeout = pick("reloadDrainTimeout"),
    maxConnections = pick("maxConnections"),
    memoryLimit = pick("memoryLimit"), tlsCert = opts.tlsCert, tlsKey = opts.tlsKey,
    reusePort = pick("reusePort"), mode = pick("mode"),
  })
  if admin then
    admin.close()
    require("lupine.admin").setReloadHook(nil)
  end
  if not ok then -- start-up failed: one line, no position (it is about the app, not this file)
    err = tostring(err)
    error(err:find("^lupine: ") and err or "lupine: " .. err, 0)
  end
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
  if not lupine.launched and run_as_script() then
    sources[app] = arg[0]
    lupine.serve(app)
  end
  return app
end

-- lupine.channelGroup([name]): a ChannelGroup of this state's loop (lua/lupine/group.lua).
function lupine.channelGroup(name) return require("lupine.group").new(name) end

local submodules = { admin = true, codec = true, test = true, handler = true, group = true, ws = true, tls = true, redis = true, co = true, http = true }
-- Coroutines (lua/lupine/co.lua): loaded on first use.
local from_co = { spawn = true, sleep = true, await = true, tcp = true }
return setmetatable(lupine, {
  __index = function(t, k)
    if from_co[k] then
      local v = require("lupine.co")[k]
      rawset(t, k, v)
      return v
    end
    if submodules[k] then
      local m = require("lupine." .. k)
      rawset(t, k, m)
      return m
    end
  end,
})
