-- examples/ws_chat.lua in a real browser: headless Chromium (Debian's
-- `chromium`) loads the chat page, whose script opens the WebSocket and sends
-- a message; a second client (lupine.ws.connect) must receive it.
local lupine = require "lupine"
local test = require "lupine.test"
local support = require "ws_support"
local ws = lupine.ws

describe("examples/ws_chat.lua in headless Chromium", function()
  local server
  before_each(function() server = support.chat_server() end)
  after_each(function() support.chat_teardown(server) end)

  it("relays what the page sends to another client", function()
    -- make test installs chromium: missing, it is a failure, not a skip
    assert(os.execute("command -v chromium >/dev/null"), "Debian's chromium is not installed (make test installs it)")
    local got = {}
    local watcher = ws.connect(("ws://127.0.0.1:%d/chat?name=watcher"):format(server.port), {
      onMessage = function(_, msg) got[#got + 1] = msg end,
    }):sync(10)
    local profile = os.tmpname()
    os.remove(profile)
    assert(os.execute("mkdir -m 700 " .. profile))
    local dom = os.tmpname()
    local p = test.spawn({ "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--user-data-dir=" .. profile, "--virtual-time-budget=3000", "--dump-dom",
      ("http://127.0.0.1:%d/?name=chromium&send=hello%%20from%%20the%%20page"):format(server.port) },
      -- not the ASan run's LD_PRELOAD: Chromium is not built for it
      { stdout = dom, stderr = "/dev/null", env = { LD_PRELOAD = "" } })
    local ok = pcall(test.eventually, function()
      return got[#got] == "<chromium> hello from the page"
    end, 30, "the page's message")
    local status = p:wait(30)
    p:stop()
    local f = assert(io.open(dom))
    local html = f:read("a")
    f:close()
    os.remove(dom)
    os.execute("rm -rf " .. profile)
    watcher:close()
    assert.is_true(ok, table.concat(got, "\n"))
    assert.equal(0, status)
    assert.truthy(html:find("<h1>lupine chat</h1>", 1, true), html)
    assert.same({ "* watcher joined", "* chromium joined", "<chromium> hello from the page" }, { got[1], got[2], got[3] })
  end)
end)
