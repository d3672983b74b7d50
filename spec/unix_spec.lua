-- Unix domain sockets: host = "unix:/path" and "unix:@name" for lupine.server,
-- lupine.connect, lupine.tcp.connect, the test kit and the launcher; stale
-- and live socket files, mode, removal on close, SO_PEERCRED; and
-- examples/unix_echo.lua driven by socat, nc -U and Python.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"

local loop = lupine.loop()

-- A fresh path in a fresh directory (removed by the caller's cleanup).
local dirs = {}
local function sock_path(name)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. dir))
  dirs[#dirs + 1] = dir
  return dir .. "/" .. (name or "s.sock")
end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

local function exists(path) return sh("test -e " .. path .. " && echo yes") == "yes\n" end

local Echo = {}
function Echo:channelRead(ctx, buf) ctx:write(buf) end
function Echo:channelReadComplete(ctx) ctx:flush() end
local function echo_init(ch) ch.pipeline:addLast("echo", Echo) end

local my = {}
do
  local stat = assert(io.open("/proc/self/stat"))
  my.pid = stat:read("n")
  stat:close()
  my.uid = tonumber(sh("id -u"))
  my.gid = tonumber(sh("id -g"))
end

describe("Unix domain sockets", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  teardown(function() for _, d in ipairs(dirs) do os.execute("rm -rf " .. d) end end)

  it("serve the test kit's client, with unix: addresses and the peer's credentials on both sides", function()
    local path = sock_path()
    local seen = {}
    local server, host, port = test.server(function(ch)
      seen.channel = ch
      seen.creds = ch:peerCredentials()
      echo_init(ch)
    end, { host = "unix:" .. path })
    assert.equal("unix:" .. path, host)
    assert.is_nil(port)
    assert.equal(path, server.path)
    assert.equal(("lupine.Server(unix:%s)"):format(path), tostring(server))
    local c = test.client(host)
    c:send("hello")
    assert.equal("hello", c:receive(5))
    local ch = seen.channel
    assert.equal("unix:" .. path, ch.localAddress)
    assert.equal("unix:", ch.remoteAddress) -- the client's socket is unnamed
    assert.is_nil(ch.remotePort)
    assert.matches("^lupine%.Channel#%d+ unix:" .. path:gsub("%p", "%%%0") .. " <%- unix: active$", tostring(ch))
    assert.same(my, seen.creds)
    assert.same(my, c.channel:peerCredentials())
    assert.equal("unix:" .. path, c.channel.remoteAddress)
    c:close()
    server:close()
  end)

  it("use Linux's abstract namespace with unix:@name (no file)", function()
    local name = ("lupine-spec-%d-%d"):format(my.pid, math.random(1e9))
    local server = test.server(echo_init, { host = "unix:@" .. name })
    assert.equal("unix:@" .. name, server.host)
    assert.equal("@" .. name, server.path)
    local c = test.client("unix:@" .. name)
    c:send("abstract")
    assert.equal("abstract", c:receive(8))
    assert.same({ nil, ("listen on unix:@%s (a server is listening on it): EADDRINUSE: Address already in use"):format(name),
      "EADDRINUSE" }, { lupine.server { host = "unix:@" .. name, init = echo_init } })
    c:close()
    server:close()
    local again = assert(lupine.server { host = "unix:@" .. name, init = echo_init }) -- the name went with the socket
    again:close()
  end)

  it("refuse a path a live server answers on, and keep that server serving", function()
    local path = sock_path()
    local server = test.server(echo_init, { host = "unix:" .. path })
    assert.same({ nil, ("listen on unix:%s (a server is listening on it): EADDRINUSE: Address already in use"):format(path),
      "EADDRINUSE" }, { lupine.server { host = "unix:" .. path, init = echo_init } })
    local c = test.client("unix:" .. path)
    c:send("still")
    assert.equal("still", c:receive(5))
    c:close()
    server:close()
  end)

  it("replace a stale socket file (no server answers on it), never a file that is not a socket", function()
    local path = sock_path()
    -- A socket file left behind by a process that exited without removing it.
    assert(os.execute(("python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' %s"):format(path)))
    assert.is_true(exists(path))
    local server = test.server(echo_init, { host = "unix:" .. path })
    local c = test.client("unix:" .. path)
    c:send("fresh")
    assert.equal("fresh", c:receive(5))
    c:close()
    server:close()
    assert.is_false(exists(path))
    local f = assert(io.open(path, "w"))
    f:write("precious")
    f:close()
    assert.same({ nil, ("listen on unix:%s (a file that is not a socket is in the way): EEXIST: File exists"):format(path),
      "EEXIST" }, { lupine.server { host = "unix:" .. path, init = echo_init } })
    f = assert(io.open(path))
    assert.equal("precious", f:read("a"))
    f:close()
  end)

  it("set the socket file's mode, and remove the file on close only while it is still ours", function()
    local path = sock_path()
    local server = test.server(echo_init, { host = "unix:" .. path, mode = "0660" })
    assert.equal("660\n", sh("stat -c %a " .. path))
    server:close()
    assert.is_false(exists(path))
    server = test.server(echo_init, { host = "unix:" .. path, mode = 384 }) -- 0600 as a number
    assert.equal("600\n", sh("stat -c %a " .. path))
    -- Someone else's file at the path now: closing leaves it alone.
    os.remove(path)
    local f = assert(io.open(path, "w"))
    f:close()
    server:close()
    assert.is_true(exists(path))
    os.remove(path)
  end)

  it("say what is wrong with a bad address or option", function()
    local function err(opts)
      opts.init = echo_init
      local ok, e = pcall(lupine.server, opts)
      assert.is_false(ok)
      return e
    end
    assert.equal("lupine.server: host 'unix:' needs a path or a name after unix: (unix:/path or unix:@name)",
      err { host = "unix:" })
    assert.equal("lupine.server: host 'unix:@' needs a path or a name after unix: (unix:/path or unix:@name)",
      err { host = "unix:@" })
    local long = "unix:/tmp/" .. ("x"):rep(110)
    assert.equal(("lupine.server: the socket path in '%s' is too long (at most 107 bytes)"):format(long), err { host = long })
    assert.equal("lupine.server: reusePort does not apply to Unix domain sockets",
      err { host = "unix:/tmp/x.sock", reusePort = true })
    assert.equal('lupine.server: option \'mode\' applies to Unix socket files (host = "unix:/path") only',
      err { host = "127.0.0.1", mode = "0600" })
    assert.equal('lupine.server: option \'mode\' applies to Unix socket files (host = "unix:/path") only',
      err { host = "unix:@name", mode = "0600" })
    assert.equal('lupine.server: option \'mode\' must be an octal string such as "0660" (or an integer up to 0777)',
      err { host = "unix:/tmp/x.sock", mode = "0999" })
    -- a TCP channel has no peer credentials
    local server = test.server(echo_init)
    local c = test.client(server.port)
    local creds, why = c.channel:peerCredentials()
    assert.is_nil(creds)
    assert.matches("^peerCredentials: channel #%d+ is not a Unix domain socket$", why)
    c:close()
    server:close()
  end)

  it("connect with lupine.connect and lupine.tcp.connect, and say why a connect failed", function()
    local path = sock_path()
    local server = test.server(echo_init, { host = "unix:" .. path })
    local done = lupine.spawn(function()
      local sock = assert(lupine.tcp.connect("unix:" .. path))
      sock:send("co\n")
      local line = sock:receiveLine()
      sock:close()
      local none, e = lupine.tcp.connect("unix:" .. path .. ".none")
      return { line, none, e }
    end)
    loop:runUntil(done, 10)
    local line, none, e = table.unpack(done:get(), 1, 3)
    assert.equal("co", line)
    assert.is_nil(none)
    assert.equal(("ENOENT: No such file or directory (connect to unix:%s.none)"):format(path), e)
    local f = lupine.connect { host = "unix:" .. ("x"):rep(200) }
    loop:runUntil(f, 5)
    assert.equal("connect: ENAMETOOLONG: File name too long", tostring(f:cause()))
    server:close()
  end)

  it("serve from the launcher (-b unix:PATH), and the file goes at shutdown", function()
    local path = sock_path()
    local p = proc.start("-w 2 -b unix:" .. path .. " examples/unix_echo.lua")
    assert.is_true(proc.waitFor(function() return p:stdout():find("\n") ~= nil or p:status() ~= nil end, 15), p:stderr())
    assert.equal(("lupine: unix_echo listening on unix:%s (2 workers, one Lua state each)\n"):format(path), p:stdout())
    assert.equal("660\n", sh("stat -c %a " .. path))
    local c = test.client("unix:" .. path)
    c:send("whoami\n")
    assert.equal(("pid=%d uid=%d gid=%d"):format(my.pid, my.uid, my.gid), c:receiveLine())
    c:close()
    local code, _, err = proc.run("-w 1 -b unix:" .. path .. " examples/unix_echo.lua")
    assert.equal(1, code)
    assert.equal(("lupine: listen on unix:%s (a server is listening on it): EADDRINUSE: Address already in use\n"):format(path),
      err:match("lupine: listen.*"))
    code, _, err = proc.run("-w 2 --reuseport -b unix:" .. path .. " examples/unix_echo.lua")
    assert.equal(1, code)
    assert.equal("lupine: reusePort (--reuseport) does not apply to Unix domain sockets\n", err)
    p:kill("TERM")
    assert.equal(0, p:wait(10))
    assert.is_false(exists(path))
    p:cleanup()
  end)
end)

describe("examples/unix_echo.lua", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  local server, path
  setup(function()
    path = sock_path()
    server = test.server(dofile("examples/unix_echo.lua"), { host = "unix:" .. path })
  end)
  teardown(function()
    server:close()
    for _, d in ipairs(dirs) do os.execute("rm -rf " .. d) end
  end)

  local run = proc.output

  it("echoes lines for socat and nc -U, and tells who they are", function()
    local out, code = run({ "sh", "-c", 'printf "one\\nwhoami\\n" | socat -t 5 - UNIX-CONNECT:"$0"', path })
    assert.equal(0, code, out)
    local pid = tonumber(out:match("pid=(%d+)"))
    assert.equal(("one\npid=%d uid=%d gid=%d\n"):format(pid, my.uid, my.gid), out)
    assert.is_not.equal(my.pid, pid) -- socat's own
    out, code = run({ "sh", "-c", 'printf "two\\n" | nc -U -q 5 -W 1 "$0"', path })
    assert.equal(0, code, out)
    assert.equal("two\n", out)
  end)

  it("answers Python's socket module", function()
    local out, code = run { "python3", "-c", [[
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(b"py\nwhoami\n")
data = b""
while data.count(b"\n") < 2:
    chunk = s.recv(4096)
    if not chunk: break
    data += chunk
s.close()
print(data.decode().replace("pid=%d " % os.getpid(), "pid=me "), end="")
]], path }
    assert.equal(0, code, out)
    assert.equal(("py\npid=me uid=%d gid=%d\n"):format(my.uid, my.gid), out)
  end)
end)
