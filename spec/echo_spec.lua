-- Echo end to end over real sockets: the example's handler, small and large
-- messages, and many concurrent pipelining clients with every byte checked.
local lupine = require "lupine"
local test = require "lupine.test"

describe("echo server (examples/echo.lua)", function()
  local loop = lupine.loop()
  local app = dofile("examples/echo.lua")
  local server

  before_each(function() server = test.server(app) end)
  after_each(function() server:close() end)

  it("listens on 127.0.0.1 with the port it was given (0: any)", function()
    assert.equal("127.0.0.1", server.host)
    assert.is_true(server.port > 0)
    assert.equal("127.0.0.1:" .. server.port, server.localAddress)
  end)

  it("echoes one byte", function()
    local c = test.client(server.port)
    c:send("x")
    assert.equal("x", c:receive(1))
    c:close()
  end)

  it("echoes 1 MiB (partial writes and EV_WRITE on both sides)", function()
    local c = test.client(server.port)
    local parts = {}
    for i = 0, 255 do parts[#parts + 1] = string.char(i):rep(4096) end
    local big = table.concat(parts)
    assert.equal(1024 * 1024, #big)
    c:send(big)
    local got = c:receive(#big, 20)
    assert.equal(#big, #got)
    assert.is_true(got == big, "the echoed bytes differ")
    c:close()
  end)

  it("echoes pipelined messages from 100 concurrent clients, every byte checked", function()
    local nclients, nmsgs = 100, 20
    local clients, expected, received, done = {}, {}, {}, 0
    for i = 1, nclients do
      local parts = {}
      for j = 1, nmsgs do parts[j] = ("client %03d message %02d %s|"):format(i, j, ("z"):rep((i * j) % 97)) end
      expected[i] = table.concat(parts)
      received[i] = {}
      local Client = {}
      function Client:channelActive(ctx)
        for j = 1, nmsgs do ctx:write(parts[j]) end -- pipelined: all before any answer
        ctx:flush()
      end
      function Client:channelRead(ctx, buf)
        local r = received[i]
        r[#r + 1] = buf:readString()
        if #table.concat(r) >= #expected[i] then
          done = done + 1
          ctx:close()
        end
      end
      clients[i] = lupine.connect { port = server.port, init = function(ch) ch.pipeline:addLast(Client) end }
    end
    loop:runUntil(function() return done == nclients end, 30, "100 clients to get their echoes")
    for i = 1, nclients do
      assert.is_true(clients[i]:isSuccess())
      assert.equal(expected[i], table.concat(received[i]))
    end
  end)
end)
