-- examples/length_rpc.lua over real sockets: its own Lua client, pipelined
-- calls matched by id, errors, raw frames split across writes, and a frame
-- over the limit.
local lupine = require "lupine"
local test = require "lupine.test"

describe("length-prefixed RPC (examples/length_rpc.lua)", function()
  local app = dofile("examples/length_rpc.lua")
  local server
  before_each(function() server = test.server(app) end)
  after_each(function() server:close() end)

  local function frame(s) return string.pack(">s4", s) end

  it("answers calls from its Lua client", function()
    local c = app.client { port = server.port }
    local results = {}
    c:call("upper", "hello", function(ok, r) results.upper = { ok, r } end)
    c:call("add", "40 2", function(ok, r) results.add = { ok, r } end)
    c:call("len", ("z"):rep(1000), function(ok, r) results.len = { ok, r } end)
    c:call("echo", "", function(ok, r) results.echo = { ok, r } end)
    test.eventually(function() return results.echo end)
    assert.same({ true, "HELLO" }, results.upper)
    assert.same({ true, "42" }, results.add)
    assert.same({ true, "1000" }, results.len)
    assert.same({ true, "" }, results.echo)
    c:close()
  end)

  it("matches 500 pipelined calls to their responses", function()
    local c = app.client { port = server.port }
    local got, n = {}, 500
    for i = 1, n do
      c:call("add", i .. " " .. i, function(ok, r) got[i] = ok and tonumber(r) end)
    end
    test.eventually(function() return #got == n end)
    for i = 1, n do assert.equal(2 * i, got[i]) end
    c:close()
  end)

  it("reports errors as responses", function()
    local c = app.client { port = server.port }
    local r = {}
    c:call("nope", "x", function(ok, m) r.nope = { ok, m } end)
    c:call("add", "two three", function(ok, m) r.add = { ok, m } end)
    test.eventually(function() return r.nope and r.add end)
    assert.same({ false, "unknown method 'nope'" }, r.nope)
    assert.same({ false, "add: expected two integers" }, r.add)
    c:close()
  end)

  it("frames raw bytes whatever the writes: one byte at a time, or many frames at once", function()
    local c = test.client(server.port)
    local req = frame("7 upper abc")
    for i = 1, #req do c:send(req:sub(i, i)) end
    assert.equal(frame("7 ok ABC"), c:receive(4 + #"7 ok ABC"))
    c:send(frame("1 echo a") .. frame("2 echo b") .. frame("garbage"))
    assert.equal(frame("1 ok a") .. frame("2 ok b") .. frame("0 err malformed request"), c:receive(3 * 4 + 6 + 6 + 23))
    c:close()
  end)

  it("answers a frame over 64 KiB with an error and goes on with the next", function()
    local c = test.client(server.port)
    c:send(frame("1 echo " .. ("x"):rep(70000)) .. frame("2 echo small"))
    local len = string.unpack(">I4", c:receive(4))
    assert.equal("0 err TooLongFrame: frame of 70011 bytes exceeds maxFrameLength 65540, discarding it", c:receive(len))
    assert.equal(frame("2 ok small"), c:receive(4 + 10))
    c:close()
  end)
end)
