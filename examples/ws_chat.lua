-- examples/ws_chat.lua: a chat room in the browser.
--   lua5.4 examples/ws_chat.lua          serve inline on port 8011 (PORT=...)
--   lupine -w 2 examples/ws_chat.lua     serve with the launcher (one room across the workers)
--   open http://127.0.0.1:8011/          the page; ?name=NAME sets your name
--
-- One port serves both: a plain GET / gets the HTML page (ws.server's http
-- handler), and the page's script opens a WebSocket on /chat. Every message
-- said reaches every browser connected, on every worker: lupine.broadcast
-- copies it to each worker's Lua state, where that worker's members are a
-- ChannelGroup (a closed channel leaves it by itself).
local lupine = require "lupine"
local ws = lupine.ws

local TOPIC = "ws_chat"
local MAX_TEXT = 4096
local room = lupine.channelGroup("ws_chat") -- who is connected to this worker

local function hear(text) room:writeAndFlush(text) end
lupine.subscribe(TOPIC, hear)
local function say(text) lupine.broadcast(TOPIC, text) end

local PAGE = [[<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>lupine chat</title></head>
<body>
<h1>lupine chat</h1>
<p>Messages go to every browser connected to this server, on every worker (lupine.broadcast).</p>
<ul id="log"></ul>
<form id="form"><input id="text" autocomplete="off" maxlength="4000"><button>send</button></form>
<script>
const params = new URLSearchParams(location.search);
const name = params.get("name") || "guest";
const log = document.getElementById("log");
function show(text) {
  const li = document.createElement("li");
  li.textContent = text;
  log.appendChild(li);
}
const sock = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host +
  "/chat?name=" + encodeURIComponent(name));
sock.onopen = () => {
  document.body.dataset.state = "open";
  if (params.get("send")) sock.send(params.get("send"));
};
sock.onmessage = (e) => show(e.data);
sock.onclose = () => { document.body.dataset.state = "closed"; };
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  if (input.value) sock.send(input.value);
  input.value = "";
};
</script>
</body></html>
]]

-- A name from the query string: letters, digits, '_' and '-' only, at most 32.
local function name_of(req)
  local n = (req.query or ""):match("name=([%w_%-]+)")
  return n and n:sub(1, 32) or "guest"
end

return ws.server {
  name = "ws_chat",
  port = tonumber(os.getenv("PORT")) or 8011,
  path = "/chat",
  maxMessageSize = MAX_TEXT,
  pingInterval = 30,
  http = function(req, res)
    if req.path ~= "/" then return res:send(404, "Not Found\n") end
    res:header("Content-Type", "text/html; charset=utf-8")
    res:send(200, PAGE)
  end,
  onOpen = function(conn)
    conn.name = name_of(conn.request)
    room:add(conn.channel)
    say(("* %s joined"):format(conn.name))
  end,
  onMessage = function(conn, msg)
    if type(msg) ~= "string" then -- text only
      msg:release()
      return conn:close(1003, "text only")
    end
    say(("<%s> %s"):format(conn.name, msg))
  end,
  onClose = function(conn) say(("* %s left"):format(conn.name)) end,
  workerExit = function() lupine.unsubscribe(TOPIC, hear) end,
}
