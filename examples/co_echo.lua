-- examples/co_echo.lua: the echo server written as a loop, one coroutine per
-- connection (the handler style is examples/echo.lua).
--   lua5.4 examples/co_echo.lua          serve inline (one loop in this thread)
--   lupine -w 2 examples/co_echo.lua     serve with the launcher
local lupine = require "lupine"

return lupine.app {
  name = "co_echo",
  port = tonumber(os.getenv("PORT")) or 8007,
  -- An idle peer may stay connected: no timeout on its waits.
  socket = { timeout = false },
  handle = function(sock)
    while true do
      local data = sock:receiveAny(65536) -- whatever arrived, as soon as it did
      if not data then return end        -- the peer closed (returning closes our side)
      sock:send(data)                    -- waits while the peer is not reading
    end
  end,
}
