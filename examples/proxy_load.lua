-- examples/proxy_load.lua: push data through examples/proxy.lua (run as its
-- own process, as a user would) into a reader throttled to a fixed rate, and
-- measure the proxy's memory. A proxy without back-pressure would hold what
-- the reader has not taken yet (tens of MiB); this one holds a few water marks.
--
--   lua5.4 examples/proxy_load.lua [MiB = 64] [rate MiB/s = 32]
--
-- In this process: a source server that writes the data as fast as its
-- channel stays writable, then closes; a sink that connects through the proxy
-- and reads with autoRead off, one read() at a time, within a token bucket of
-- `rate` MiB/s, checking every byte. The proxy's VmRSS is sampled every 20 ms;
-- VmHWM (its peak) is read at the end.
--
-- Loaded with dofile it returns { run = run }: run{ mib, rate } returns a
-- table of figures (see the end of run), raising when a byte is wrong.
local lupine = require "lupine"
local test = require "lupine.test"

local BLOCK = 1024 * 1024

-- The data: 1 MiB blocks, each byte a function of its position.
local function make_block()
  local parts = {}
  for i = 0, 1023 do parts[#parts + 1] = string.char(i % 256, (i * 7 + i // 256) % 256):rep(512) end
  return table.concat(parts)
end

local function proc_kib(pid, field)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s+(%d+) kB"))
end

local function run(opts)
  opts = opts or {}
  local mib, rate = opts.mib or 64, opts.rate or 32
  local total = mib * BLOCK
  local loop = lupine.loop()
  local block = make_block()
  assert(#block == BLOCK)

  -- The source: write while writable, continue when writable again.
  local source = test.server(function(ch)
    local sent = 0
    local function pump(c)
      while c:isWritable() and sent < total do
        c:write(block)
        sent = sent + BLOCK
      end
      c:flush()
      if sent >= total then c:writeAndFlush("", function() c:close() end) end
    end
    ch.pipeline:addLast("source", {
      channelActive = function(_, ctx) pump(ctx.channel) end,
      channelWritabilityChanged = function(_, ctx) if ctx.channel:isWritable() then pump(ctx.channel) end end,
    })
  end)

  -- The proxy, in its own process.
  local proxy = test.spawn({ "lua5.4", "examples/proxy.lua" }, {
    env = { PORT = 0, BACKEND_PORT = source.port, LUA_PATH = package.path, LUA_CPATH = package.cpath },
  })
  local port
  local ok = pcall(test.eventually, function()
    port = tonumber(proxy:output():match("listening on 127%.0%.0%.1:(%d+)"))
    return port ~= nil or not proxy:isRunning()
  end, 10)
  if not (ok and port) then
    local out = proxy:output()
    proxy:stop()
    source:close()
    error("proxy_load: the proxy did not start: " .. out, 0)
  end
  -- Whatever happens from here, the proxy process stops and the source closes.
  local sink, timers = nil, {}
  local ok_run, result = pcall(function()
    local rss_start = proc_kib(proxy.pid, "VmRSS")
    -- The sink: a token bucket of `rate` MiB/s feeding read() demands.
    local got, eof, bad = 0, false, nil
    local tokens, reading = 0, false
    local function demand()
      if not reading and tokens > 0 and not eof then
        reading = true
        sink:read()
      end
    end
    local connecting = lupine.connect {
      port = port, options = { autoRead = false },
      init = function(ch)
        ch.pipeline:addLast("sink", {
          channelRead = function(_, _, buf)
            local s = buf:readString()
            local at = got % BLOCK
            if not bad then
              local want = block:sub(at + 1, at + #s)
              if #want < #s then want = want .. block:sub(1, #s - #want) end
              if s ~= want then bad = ("byte mismatch in the %d bytes at offset %d"):format(#s, got) end
            end
            got = got + #s
            tokens = tokens - #s
          end,
          channelReadComplete = function()
            reading = false
            demand()
          end,
          channelInactive = function() eof = true end,
        })
      end,
    }
    loop:runUntil(connecting, 10, "the connection to the proxy")
    sink = connecting:get()
    if not sink then error("proxy_load: cannot connect to the proxy: " .. tostring((connecting:cause())), 0) end
    local tick = 0.005
    local started = loop:now()
    local rss_max = rss_start
    timers[1] = loop:scheduleAtFixedRate(tick, tick, function()
      tokens = math.min(tokens + rate * BLOCK * tick, 2 * rate * BLOCK * tick)
      demand()
    end)
    timers[2] = loop:scheduleAtFixedRate(0.02, 0.02, function()
      local r = proc_kib(proxy.pid, "VmRSS")
      if r and r > rss_max then rss_max = r end
    end)
    local done = pcall(test.eventually, function() return eof end, mib / rate * 4 + 30)
    local seconds = loop:now() - started
    local hwm = proc_kib(proxy.pid, "VmHWM")
    if not done then error(("proxy_load: not done: %d of %d bytes arrived"):format(got, total), 0) end
    if bad then error("proxy_load: " .. bad, 0) end
    if got ~= total then error(("proxy_load: %d of %d bytes arrived before the end"):format(got, total), 0) end
    return {
      mib = mib, rate = rate, seconds = seconds, throughput = got / BLOCK / seconds,
      rss_start_kib = rss_start, rss_max_kib = rss_max, hwm_kib = hwm,
    }
  end)
  for _, t in ipairs(timers) do t:cancel() end
  if sink and sink:isOpen() then sink:close() end
  proxy:stop()
  source:close()
  if not ok_run then error(result, 0) end
  return result
end

if not pcall(debug.getlocal, 4, 1) then -- run as a script
  local r = run { mib = tonumber(arg[1]) or 64, rate = tonumber(arg[2]) or 32 }
  print(("proxy_load: %d MiB through examples/proxy.lua into a reader throttled to %g MiB/s: %.2f s, %.1f MiB/s; "
    .. "proxy RSS %.1f MiB at start, %.1f MiB at most while sampled, peak (VmHWM) %.1f MiB"):format(
    r.mib, r.rate, r.seconds, r.throughput, r.rss_start_kib / 1024, r.rss_max_kib / 1024, r.hwm_kib / 1024))
end

return { run = run }
