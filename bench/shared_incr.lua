-- bench/shared_incr.lua: lupine.shared contention. Each worker, in its
-- workerInit, runs incr on one shared key (every worker the same key: the
-- worst case for lock striping) as fast as it can for SHARED_SECS seconds,
-- and prints `worker N: OPS ops` on stdout; then the app just serves nothing.
-- bench/redis.sh runs it with -w 1 and -w 2 and compares the totals.
local lupine = require "lupine"

local SECS = tonumber(os.getenv("SHARED_SECS")) or 3
local KEY = os.getenv("SHARED_KEY") or "same" -- "own": a key per worker (no contention on the stripe)

return lupine.app {
  name = "shared_incr",
  shared = { bench = "1m" },
  init = function(ch) ch:close() end,
  workerInit = function(worker)
    local d = lupine.shared.bench
    local key = KEY == "own" and ("k" .. worker.id) or "k"
    -- The dictionary's own expiry is the clock (monotonic, milliseconds):
    -- the run ends when this worker's deadline key has expired.
    local deadline = "deadline" .. worker.id
    d:set(deadline, true, SECS)
    local n = 0
    while d:get(deadline) do
      for _ = 1, 1000 do d:incr(key, 1, 0) end
      n = n + 1000
    end
    io.stdout:write(("worker %d: %d ops in %.1f s\n"):format(worker.id, n, SECS))
    io.stdout:flush()
  end,
}
