-- examples/unix_echo.lua: a line echo on a Unix domain socket, which also tells each
-- peer who the kernel says it is (SO_PEERCRED).
--   lua5.4 examples/unix_echo.lua            serve inline on unix:/tmp/lupine-echo.sock (SOCKET=...)
--   lupine -w 2 examples/unix_echo.lua       serve with the launcher
--   socat - UNIX-CONNECT:/tmp/lupine-echo.sock    or: nc -U /tmp/lupine-echo.sock
-- Type a line: it comes back; type "whoami": "pid=... uid=... gid=..." comes back.
-- The socket file is made with mode 0660 (owner and group only), replaced when a
-- crashed server left it behind, refused when a live server answers on it, and
-- removed on shutdown.
local lupine = require "lupine"
local codec = lupine.codec

local Echo = { name = "unix_echo" }

function Echo:channelRead(ctx, line)
  if line == "whoami" then
    local who = ctx.channel:peerCredentials()
    ctx:write(("pid=%d uid=%d gid=%d\n"):format(who.pid, who.uid, who.gid))
  else
    ctx:write(line .. "\n")
  end
end

function Echo:channelReadComplete(ctx) ctx:flush() end

function Echo:exceptionCaught(ctx, err)
  lupine.log("debug", ctx.channel, tostring(err))
  ctx:close()
end

return lupine.app {
  name = "unix_echo",
  host = "unix:" .. (os.getenv("SOCKET") or "/tmp/lupine-echo.sock"),
  mode = "0660",
  init = function(ch)
    ch.pipeline:addLast("lines", codec.lineFrame { maxLength = 4096, asString = true })
    ch.pipeline:addLast("echo", Echo)
  end,
}
