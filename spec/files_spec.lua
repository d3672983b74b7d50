-- lupine.file: file regions queued in the outbound buffer and sent with
-- sendfile(2) (src/core/outbound.c, src/lua/l_file.c); through TLS read into
-- buffers; served over HTTP by examples/http_static.lua to curl.
local lupine = require "lupine"
local test = require "lupine.test"
local proc = require "proc"

local loop = lupine.loop()

-- A file of n bytes that are not all alike ("000000001\n000000002\n..."), and its contents.
local function make_file(n)
  local path = os.tmpname()
  local parts, size, i = {}, 0, 0
  while size < n do
    i = i + 1
    parts[i] = ("%09d\n"):format(i)
    size = size + 10
  end
  local content = table.concat(parts):sub(1, n)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path, content
end

-- A server whose channelActive runs fn(ctx); returns the server.
local function server_with(fn)
  return test.server(function(ch) ch.pipeline:addLast("w", { channelActive = function(_, ctx) fn(ctx) end }) end)
end

describe("lupine.file", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  local path, content
  setup(function() path, content = make_file(3 * 1048576 + 17) end)
  teardown(function() os.remove(path) end)

  it("sends a region between the writes around it, and completes its promise on the last byte", function()
    local outcome
    local server = server_with(function(ctx)
      ctx:write("before\n")
      ctx:write(assert(lupine.file(path)), function(f) outcome = { f:isSuccess(), f:cause() } end)
      ctx:writeAndFlush("after\n")
    end)
    local c = test.client(server.port)
    local got = c:receive(7 + #content + 6, 20)
    assert.equal("before\n" .. content .. "after\n", got) -- (equal strings: not printed whole)
    test.eventually(function() return outcome ~= nil end)
    assert.same({ true }, outcome)
    c:close()
    server:close()
  end)

  it("takes an offset and a length, and a descriptor (duplicated: the caller's stays open)", function()
    local fh = assert(io.open(path, "rb"))
    local fd -- fh's descriptor, found by its target in /proc
    local stat = assert(io.open("/proc/self/stat"))
    local pid = stat:read("n")
    stat:close()
    for line in io.popen("ls -l /proc/" .. pid .. "/fd"):lines() do
      local n, target = line:match(" (%d+) %-> (.*)$")
      if target == path then fd = tonumber(n) end
    end
    assert.is_number(fd)
    local f1 = assert(lupine.file(path, 10, 25))
    assert.equal(25, f1.length)
    assert.equal(10, f1.offset)
    assert.equal("lupine.File(25 bytes from offset 10)", tostring(f1))
    local f2 = assert(lupine.file(fd, 100, 5))
    local f3 = assert(lupine.file(path, #content - 7)) -- to the end
    assert.equal(7, f3.length)
    local server = server_with(function(ctx)
      ctx:write(f1)
      ctx:write("|")
      ctx:write(f2)
      ctx:writeAndFlush(f3)
    end)
    local c = test.client(server.port)
    assert.equal(content:sub(11, 35) .. "|" .. content:sub(101, 105) .. content:sub(-7), c:receive(38))
    assert.equal("lupine.File(25 bytes, written or closed)", tostring(f1))
    assert.equal(content:sub(1, 4), fh:read(4)) -- still open
    c:close()
    server:close()
    fh:close()
  end)

  it("counts a region toward the water marks until it is sent", function()
    local seen = {}
    local server = server_with(function(ctx)
      seen.before = ctx.channel:isWritable()
      ctx:write(assert(lupine.file(path))) -- 3 MiB, not flushed: over the 64 KiB high water mark
      seen.after = ctx.channel:isWritable()
      ctx:flush()
    end)
    local c = test.client(server.port)
    assert.equal(#content, #c:receive(#content, 20))
    assert.same({ before = true, after = false }, seen)
    c:close()
    server:close()
  end)

  it("does not count regions against maxPendingBytes, which bounds memory (a region holds a descriptor)", function()
    local results = {}
    local server = test.server({
      options = { maxPendingBytes = 65536 },
      init = function(ch)
        ch.pipeline:addLast("w", { channelActive = function(_, ctx)
          for i = 1, 3 do
            ctx:write(assert(lupine.file(path)), function(f) results[i] = f:isSuccess() or tostring(f:cause()) end)
          end
          ctx:flush()
        end })
      end,
    })
    local c = test.client(server.port)
    assert.equal(3 * #content, #c:receive(3 * #content, 30))
    test.eventually(function() return #results == 3 end)
    assert.same({ true, true, true }, results)
    c:close()
    server:close()
  end)

  it("fails the promise and closes the file when the channel closes before it is sent", function()
    local outcome
    local server = server_with(function(ctx)
      ctx:write(assert(lupine.file(path)), function(f) outcome = tostring(f:cause()) end) -- never flushed
      ctx:close()
    end)
    local c = test.client(server.port)
    test.eventually(function() return outcome ~= nil end)
    assert.matches("^ClosedChannel: channel #%d+ closed before the write completed$", outcome)
    c:close()
    server:close()
    -- leak_check (after_each): the region's descriptor is closed
  end)

  it("fails with FileTooShort when the file shrank below the region before it was sent", function()
    local short = os.tmpname()
    local fh = assert(io.open(short, "wb"))
    fh:write(("x"):rep(100000))
    fh:close()
    local outcome, closed
    local server = server_with(function(ctx)
      local file = assert(lupine.file(short))
      assert(io.open(short, "wb")):close() -- truncated to 0 bytes, after lupine.file measured it
      ctx:writeAndFlush("head|")
      ctx:writeAndFlush(file, function(f) outcome = tostring(f:cause()) end)
      ctx.channel.closeFuture:addListener(function() closed = true end)
    end)
    local c = test.client(server.port)
    test.eventually(function() return outcome ~= nil and closed end)
    assert.matches("^FileTooShort: the file ended with 100000 bytes of the region still to send %(channel #%d+%)$",
      outcome)
    assert.equal("head|", c:receiveAll())
    c:close()
    server:close()
    os.remove(short)
  end)

  it("says why it cannot open a file, and refuses a region used twice", function()
    assert.same({ nil, "open /nonexistent/x: ENOENT: No such file or directory", "ENOENT" },
      { lupine.file("/nonexistent/x") })
    assert.same({ nil, "lupine.file: /tmp is not a regular file", "EINVAL" }, { lupine.file("/tmp") })
    assert.same({ nil, ("lupine.file: offset %d is past the end of %s (%d bytes)"):format(#content + 1, path, #content),
      "EINVAL" }, { lupine.file(path, #content + 1) })
    assert.has_error(function() lupine.file(path, -1) end, "bad argument #2 to 'file' (offset must be >= 0)")
    local f = assert(lupine.file(path))
    f:close()
    f:close() -- idempotent
    local cause
    local server = server_with(function(ctx)
      ctx:writeAndFlush(f, function(fu) cause = tostring(fu:cause()) end)
    end)
    local c = test.client(server.port)
    test.eventually(function() return cause ~= nil end)
    assert.equal("UnsupportedMessage: lupine.File used after it was written or closed", cause)
    c:close()
    server:close()
  end)

  it("goes through TLS as bytes read from the file (an encoder cannot take a region)", function()
    local certs = require("tls_certs").make()
    local server = test.server {
      tls = { cert = certs.server, key = certs.serverKey },
      init = function(ch)
        ch.pipeline:addLast("w", { channelActive = function(_, ctx)
          ctx:write(assert(lupine.file(path, 0, 300000)))
          ctx:writeAndFlush("|end")
        end })
      end,
    }
    local parts, n = {}, 0
    local f = lupine.connect {
      port = server.port, tls = { ca = certs.ca, serverName = "localhost" },
      init = function(ch)
        ch.pipeline:addLast("rec", { channelRead = function(_, _, buf)
          local s = buf:readString()
          parts[#parts + 1] = s
          n = n + #s
        end })
      end,
    }
    loop:runUntil(f, 10, "the connect")
    test.eventually(function() return n >= 300004 end, 20, "the file through TLS")
    assert.equal(content:sub(1, 300000) .. "|end", table.concat(parts))
    f:get():close()
    server:close()
    certs:remove()
  end)
end)

describe("examples/http_static.lua", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("serves a multi-megabyte file to curl with sendfile, byte for byte (sha256)", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local path, content = make_file(5 * 1048576 + 3)
    assert(os.rename(path, dir .. "/big.bin"))
    local app = dofile("examples/http_static.lua")
    app.static.root = dir
    local server = test.server(app)
    local base = ("http://127.0.0.1:%d/files/"):format(server.port)
    local out = dir .. "/copy.bin"
    local got, code = proc.output({ "curl", "-sS", "-o", out, "-w", "%{http_code} %{size_download} %{content_type}",
      base .. "big.bin" }, 30)
    assert.equal(0, code, got)
    assert.equal("200 " .. #content .. " application/octet-stream", got)
    local sums = io.popen("sha256sum " .. dir .. "/big.bin " .. out):read("a")
    local a, b = sums:match("^(%x+) .-\n(%x+) ")
    assert.truthy(a and a == b, sums)
    got, code = proc.output({ "curl", "-sS", "-I", base .. "big.bin" }, 30) -- HEAD: the length, no body
    assert.equal(0, code, got)
    assert.matches("\r\nContent%-Length: " .. #content .. "\r\n", got)
    for _, bad in ipairs { "none.bin", ".hidden", "%2e%2e" } do
      got, code = proc.output({ "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", base .. bad }, 30)
      assert.equal(0, code, got)
      assert.equal("404", got, bad)
    end
    server:close()
    os.execute("rm -r " .. dir)
  end)
end)
