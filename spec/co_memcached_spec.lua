-- examples/co_memcached.lua: a coroutine-style line protocol server behind a
-- native decoder, driven by Debian's memcached client tools and by the test kit.
local lupine = require "lupine"
local test = require "lupine.test"

local loop = lupine.loop()

local function installed(prog)
  local p = io.popen("command -v " .. prog .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  return out ~= ""
end

-- examples/co_memcached.lua on a test server, a client to it, and cmd(line,
-- reply): send line and assert that the next bytes are exactly reply.
local function session()
  local server = test.server(dofile("examples/co_memcached.lua"))
  local c = test.client(server.port)
  local function cmd(line, reply)
    c:send(line)
    assert.equal(reply, c:receive(#reply))
  end
  return server, c, cmd
end

describe("examples/co_memcached.lua", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("serves Debian's memcached tools (libmemcached-tools): memccp, memccat, memcexist, memcrm", function()
    if not installed("memccp") then
      pending("needs libmemcached-tools (memccp, memccat)")
      return
    end
    local server = test.server(dofile("examples/co_memcached.lua"))
    local servers = "--servers=127.0.0.1:" .. server.port
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local file = dir .. "/greeting"
    local value = "hello\nworld\r\n\0binary " .. ("v"):rep(5000)
    local f = assert(io.open(file, "wb"))
    f:write(value)
    f:close()
    local function tool(...)
      local p = test.spawn({ ... })
      local code = p:wait(20) -- runs the loop: the server in this process keeps serving
      local out = p:output()
      p:stop()
      return code, out
    end
    assert.equal(0, (tool("memccp", servers, file)))
    local code, out = tool("memccat", servers, "greeting")
    assert.equal(0, code)
    assert.equal(value, out:sub(1, #value))
    assert.equal(0, (tool("memcexist", servers, "greeting")))
    assert.equal(0, (tool("memcrm", servers, "greeting")))
    assert.are_not.equal(0, (tool("memcexist", servers, "greeting")))
    os.remove(file)
    os.remove(dir)
    server:close()
  end)

  it("get, set, add, replace, delete, incr, decr, touch, with replies as memcached's", function()
    local server, c, cmd = session()
    cmd("set a 5 0 3\r\nabc\r\n", "STORED\r\n")
    cmd("get a\r\n", "VALUE a 5 3\r\nabc\r\nEND\r\n")
    cmd("get a missing a\r\n", "VALUE a 5 3\r\nabc\r\nVALUE a 5 3\r\nabc\r\nEND\r\n")
    cmd("add a 0 0 1\r\nx\r\n", "NOT_STORED\r\n")
    cmd("replace b 0 0 1\r\nx\r\n", "NOT_STORED\r\n")
    cmd("add b 0 0 2\r\n\r\n\r\n", "STORED\r\n") -- a value that is a line break
    cmd("get b\r\n", "VALUE b 0 2\r\n\r\n\r\nEND\r\n")
    cmd("set n 0 0 2\r\n41\r\n", "STORED\r\n")
    cmd("incr n 1\r\n", "42\r\n")
    cmd("decr n 50\r\n", "0\r\n")
    cmd("incr a 1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    cmd("incr nope 1\r\n", "NOT_FOUND\r\n")
    cmd("incr n x\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n")
    cmd("delete a\r\n", "DELETED\r\n")
    cmd("delete a\r\n", "NOT_FOUND\r\n")
    cmd("touch n 100\r\n", "TOUCHED\r\n")
    cmd("bogus\r\n", "ERROR\r\n")
    cmd("set a x 0 1\r\n", "CLIENT_ERROR bad command line format\r\n")
    -- pipelined, with noreply
    cmd("set p 0 0 1 noreply\r\n1\r\nincr p 2 noreply\r\nget p\r\n", "VALUE p 0 1\r\n3\r\nEND\r\n")
    cmd("version\r\n", "VERSION 1.6.0-lupine\r\n")
    c:send("quit\r\n")
    assert.equal("", c:receiveAll())
    c:close()
    server:close()
  end)

  it("expires items: exptime in seconds, negative at once, a Unix time in the past", function()
    local server, c, cmd = session()
    cmd("set gone 0 -1 1\r\nx\r\n", "STORED\r\n")
    cmd("get gone\r\n", "END\r\n")
    cmd(("set old 0 %d 1\r\nx\r\n"):format(os.time() - 10), "STORED\r\n") -- past 30 days: a Unix time
    cmd("get old\r\n", "END\r\n")
    cmd("set soon 0 1 1\r\nx\r\n", "STORED\r\n")
    cmd("set later 0 100 1\r\ny\r\n", "STORED\r\n")
    cmd("set kept 0 100 1\r\nz\r\n", "STORED\r\n")
    cmd("touch later 1\r\n", "TOUCHED\r\n")
    cmd("get soon later kept\r\n", "VALUE soon 0 1\r\nx\r\nVALUE later 0 1\r\ny\r\nVALUE kept 0 1\r\nz\r\nEND\r\n")
    loop:runFor(2.05) -- os.time() has whole seconds: "in 1 s" ends within 2
    cmd("get soon later kept\r\n", "VALUE kept 0 1\r\nz\r\nEND\r\n")
    c:close()
    server:close()
  end)
end)
