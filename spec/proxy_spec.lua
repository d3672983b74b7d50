-- examples/proxy.lua and examples/client_echo.lua: relaying both ways, a
-- backend that is down or dies mid-transfer, closing one side closes the
-- other after flushing, and 64 MiB through a throttled reader with the proxy's
-- memory measured (the proxy runs as its own process there).
local lupine = require "lupine"
local test = require "lupine.test"
local half_close = require "half_close"

local loop = lupine.loop()

local function start_proxy(backend_port)
  local app = dofile("examples/proxy.lua")
  app.backend = { host = "127.0.0.1", port = backend_port }
  return test.server(app)
end

local function pattern(n)
  local parts = {}
  for i = 0, n // 1024 - 1 do parts[#parts + 1] = string.char(i % 256):rep(1024) end
  return table.concat(parts)
end

describe("examples/proxy.lua", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("relays both ways: an echo server behind the proxy echoes, every byte intact", function()
    local echo = test.server(dofile("examples/echo.lua"))
    local proxy = start_proxy(echo.port)
    local c = test.client(proxy.port)
    c:send("hello through the proxy\n")
    assert.equal("hello through the proxy", c:receiveLine())
    local big = pattern(4 * 1024 * 1024)
    c:send(big)
    assert.is_true(c:receive(#big, 20) == big, "4 MiB came back different")
    c:close()
    proxy:close()
    echo:close()
  end)

  it("carries examples/client_echo.lua's conversation", function()
    local echo = test.server(dofile("examples/echo.lua"))
    local proxy = start_proxy(echo.port)
    local client_echo = dofile("examples/client_echo.lua")
    local direct = client_echo.run { port = echo.port, count = 200, size = 1000 }
    local proxied = client_echo.run { port = proxy.port, count = 200, size = 5000 }
    loop:runUntil(function() return direct:isDone() and proxied:isDone() end, 20)
    assert.is_true(direct:isSuccess(), tostring((direct:cause())))
    assert.is_true(proxied:isSuccess(), tostring((proxied:cause())))
    assert.same({ 200, 1000000 }, { proxied:get().messages, proxied:get().bytes })
    proxy:close()
    echo:close()
  end)

  it("relays a half-close each way: 20 clients that send, shut their output down and read slowly get every byte back", function()
    local echo = test.server(dofile("examples/echo.lua"))
    local proxy = start_proxy(echo.port)
    local clients = {}
    for i = 1, 20 do
      local data = pattern(i == 1 and 4 * 1024 * 1024 or 256 * 1024)
      local st = half_close.client(proxy.port, data)
      st.data = data
      clients[i] = st
    end
    local ok = pcall(loop.runUntil, loop, function()
      for _, st in ipairs(clients) do if not st.done then return false end end
      return true
    end, 90)
    local short = {}
    for i, st in ipairs(clients) do
      st.cleanup()
      local got = st.got()
      if got ~= st.data then short[#short + 1] = ("client %d: %d of %d bytes"):format(i, #got, #st.data) end
    end
    assert.is_true(ok, "not every client saw the end of its echo")
    assert.same({}, short)
    proxy:close()
    echo:close()
  end)

  it("closes the client's connection when the backend is down", function()
    local backend_port = test.freePort()
    local proxy = start_proxy(backend_port)
    local c = test.client(proxy.port)
    local ok, err = pcall(c.receive, c, 1)
    assert.is_false(ok)
    assert.matches('receive%(1%): the connection closed; received so far: ""$', err)
    proxy:close()
  end)

  it("delivers what the backend sent before it died, then closes the client's side", function()
    local payload = pattern(2 * 1024 * 1024)
    local backend = test.server(function(ch)
      ch.pipeline:addLast("dying", {
        channelActive = function(_, ctx)
          ctx:writeAndFlush(payload, function() ctx:close() end) -- all of it, then gone
        end,
      })
    end)
    local proxy = start_proxy(backend.port)
    local c = test.client(proxy.port)
    local got = c:receiveAll(10)
    assert.equal(#payload, #got)
    assert.is_true(got == payload)
    proxy:close()
    backend:close()
  end)

  it("closes the backend connection when the client leaves, and survives a backend reset mid-stream", function()
    local backend_inactive = false
    local resets = 0
    local backend = test.server(function(ch)
      ch.pipeline:addLast("b", {
        channelRead = function(_, ctx, buf)
          if buf:toString():find("reset", 1, true) then
            resets = resets + 1
            ctx.channel:close() -- with unread input: the kernel answers with RST
          end
          buf:release()
        end,
        channelInactive = function() backend_inactive = true end,
      })
    end)
    local proxy = start_proxy(backend.port)
    local c = test.client(proxy.port)
    c:send("just passing")
    c:close()
    test.eventually(function() return backend_inactive end, 5, "the backend channel to close")
    -- A backend that resets while data flows: the client sees its connection end.
    local c2 = test.client(proxy.port)
    c2:send("please reset")
    for _ = 1, 20 do
      if not c2:isOpen() then break end
      pcall(c2.send, c2, pattern(64 * 1024))
    end
    test.eventually(function() return not c2:isOpen() end, 5, "the client's connection to end")
    assert.equal(1, resets)
    proxy:close()
    backend:close()
  end)

  it("moves 64 MiB into a reader throttled to 32 MiB/s with its memory bounded (proxy in its own process)", function()
    local load = dofile("examples/proxy_load.lua")
    local r = load.run { mib = 64, rate = 32 }
    -- Back-pressure holds the proxy to a few water marks (64 KiB each) of
    -- buffers: without it the proxy would hold what the reader has not taken
    -- yet (over 8 MiB of growth for 12 MiB, and a WriteBufferFull at 16 MiB).
    local growth_kib = r.hwm_kib - r.rss_start_kib
    assert.is_true(growth_kib < 4 * 1024, ("the proxy's RSS grew by %d KiB (%d -> peak %d)"):format(growth_kib,
      r.rss_start_kib, r.hwm_kib))
    -- The reader sets the pace: about 2 s; generous bounds, the machine is shared.
    assert.is_true(r.seconds > 1.5 and r.seconds < 30, ("took %.2f s"):format(r.seconds))
  end)
end)
