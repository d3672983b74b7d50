-- examples/primes.lua: CPU-heavy requests answered off the event loop.
--   lua5.4 examples/primes.lua             serve inline on port 8010 (PORT=...)
--   lupine -w 2 examples/primes.lua       serve with the launcher
--   echo 'primes 5000000' | nc -q 3 127.0.0.1 8010
--
-- A line "primes N" counts the primes below N (N up to 20 million) by trial
-- division in plain Lua: seconds of CPU for large N, and no memory to speak of. Run in a handler,
-- that would stall every connection of the loop; lupine.blocking runs it on
-- the pool's threads (each with its own Lua state) and the handler answers
-- when the job's future completes, while the loop goes on serving. The job is
-- a function without upvalues: it crosses to the pool as bytecode, with its
-- argument copied; its result (a number) is copied back.
local lupine = require "lupine"
local codec = lupine.codec

local MAX_N = 20000000

local function count_primes(n) -- runs in a pool state: no upvalues (globals are that state's)
  local count = n > 2 and 1 or 0 -- 2, then the odd numbers by trial division
  for i = 3, n - 1, 2 do
    local prime, d = true, 3
    while d * d <= i do
      if i % d == 0 then
        prime = false
        break
      end
      d = d + 2
    end
    if prime then count = count + 1 end
  end
  return count
end

local Primes = { name = "primes" }

function Primes:channelRead(ctx, line)
  local n = tonumber(line:match("^primes (%d+)$"))
  if not n or n > MAX_N then
    ctx:writeAndFlush("usage: primes N (N up to " .. MAX_N .. ")\n")
    return
  end
  lupine.blocking.run(count_primes, n):addListener(function(f)
    if not ctx.channel:isOpen() then return end -- the client left meanwhile
    if f:isSuccess() then ctx:writeAndFlush(("%d primes below %d\n"):format(f:get(), n))
    else ctx:writeAndFlush("failed: " .. tostring(f:cause()) .. "\n") end
  end)
end

function Primes:exceptionCaught(ctx, err)
  lupine.log("warn", "primes:", err)
  ctx:close()
end

return lupine.app {
  name = "primes",
  port = tonumber(os.getenv("PORT")) or 8010,
  blockingThreads = 2, -- lupine.blocking's pool: 2 threads for the whole process
  init = function(ch)
    ch.pipeline:addLast("lines", codec.lineFrame { maxLength = 64, asString = true })
    ch.pipeline:addLast("primes", Primes)
  end,
}
