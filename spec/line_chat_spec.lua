-- examples/line_chat.lua over real sockets: joining, talking, /nick, /quit,
-- a line over the limit, and lines split across reads.
local lupine = require "lupine"
local test = require "lupine.test"

describe("line chat (examples/line_chat.lua)", function()
  local server
  before_each(function() server = test.server(dofile("examples/line_chat.lua")) end)
  -- Each dofile subscribed its own room to the topic: before the next test,
  -- every server channel closes and what they broadcast ("* x left") is
  -- delivered (a last message of ours comes after it: one sender, in order),
  -- then the room unsubscribes.
  after_each(function()
    server:close()
    local loop = lupine.loop()
    loop:runUntil(function() return loop:channelCount() == 0 end, 5, "the channels to close")
    local drained = false
    local function last(msg) if msg.last then drained = true end end
    lupine.subscribe("line_chat", last)
    lupine.broadcast("line_chat", { last = true, text = "" })
    loop:runUntil(function() return drained end, 5, "the broadcasts to be delivered")
    lupine.unsubscribe("line_chat")
  end)

  local function join()
    local c = test.client(server.port)
    local nick = c:expect("^%* welcome, you are (guest%d+) %(/nick NAME, /quit%)\n")
    return c, nick
  end

  it("welcomes each user, tells the others, and broadcasts what they say to everyone else", function()
    local a, na = join()
    local b, nb = join()
    assert.equal("* " .. nb .. " joined", a:receiveLine())
    local c, nc = join()
    assert.equal("* " .. nc .. " joined", a:receiveLine())
    assert.equal("* " .. nc .. " joined", b:receiveLine())
    a:send("hello ")
    a:send("all\r\n") -- one line in two writes, with CRLF
    assert.equal("<" .. na .. "> hello all", b:receiveLine())
    assert.equal("<" .. na .. "> hello all", c:receiveLine())
    b:send("one\ntwo\n")
    assert.equal("<" .. nb .. "> one", a:receiveLine())
    assert.equal("<" .. nb .. "> two", a:receiveLine())
    assert.equal("<" .. nb .. "> one", c:receiveLine())
    assert.equal("<" .. nb .. "> two", c:receiveLine())
    a:send("ping\n")
    assert.equal("<" .. na .. "> ping", c:receiveLine())
    assert.equal("", a.inbox) -- nobody hears themselves
    for _, x in ipairs { a, b, c } do x:close() end
  end)

  it("renames with /nick and rejects bad nicks and unknown commands", function()
    local a, na = join()
    local b = join()
    a:receiveLine()
    a:send("/nick alice\n")
    assert.equal("* you are now alice", a:receiveLine())
    assert.equal("* " .. na .. " is now alice", b:receiveLine())
    a:send("/nick no spaces\n")
    assert.equal("* a nick is 1 to 32 letters, digits, '_' or '-'", a:receiveLine())
    a:send("/dance\n")
    assert.equal("* unknown command /dance", a:receiveLine())
    a:send("hi\n")
    assert.equal("<alice> hi", b:receiveLine())
    a:close()
    b:close()
  end)

  it("says bye and closes on /quit; the others hear who left", function()
    local a = join()
    local b, nb = join()
    a:receiveLine()
    b:send("/nick bob\n")
    b:receiveLine()
    a:receiveLine()
    b:send("/quit\n")
    assert.equal("* bye", b:receiveLine())
    assert.equal("", b:receiveAll())
    assert.equal("* bob left", a:receiveLine())
    assert.truthy(nb)
    a:close()
  end)

  it("closes a member the room cannot write to, and tells the others it left", function()
    server:close()
    local accepted = {}
    server = test.server(dofile("examples/line_chat.lua"), { channels = accepted })
    local a, na = join()
    local b, nb = join()
    assert.equal("* " .. nb .. " joined", a:receiveLine())
    local c, nc = join()
    assert.equal("* " .. nc .. " joined", a:receiveLine())
    assert.equal("* " .. nc .. " joined", b:receiveLine())
    -- b's server side takes no more bytes: it holds a write (unflushed, empty) that already
    -- costs more than its cap, so the next broadcast fails there (WriteBufferFull)
    accepted[2]:config():setOption("maxPendingBytes", 1)
    accepted[2]:write("")
    a:send("hello\n")
    assert.equal("<" .. na .. "> hello", c:receiveLine())
    assert.equal("", b:receiveAll()) -- closed, without the line
    assert.equal("* " .. nb .. " left", a:receiveLine())
    assert.equal("* " .. nb .. " left", c:receiveLine())
    a:close()
    c:close()
  end)

  it("drops a line over 1 KiB with a notice and goes on", function()
    local a, na = join()
    local b = join()
    a:receiveLine()
    a:send(("x"):rep(5000) .. "\nafter\n")
    assert.equal("* line over 1024 bytes dropped", a:receiveLine())
    assert.equal("<" .. na .. "> after", b:receiveLine())
    a:close()
    b:close()
  end)

  describe("under the launcher with 2 workers", function()
    local proc = require "proc"
    it("is one room across the workers, with guest numbers unique across them", function()
      local p = proc.start("-w 2 -p 0 examples/line_chat.lua")
      local port = p:port()
      local clients, nicks = {}, {}
      for i = 1, 4 do -- round robin: two on each worker
        local c = test.client(port)
        nicks[i] = c:expect("^%* welcome, you are (guest%d+) %(/nick NAME, /quit%)\n")
        -- A join reaches the other worker a moment later: a client that
        -- connected meanwhile may hear of an earlier one too. Skip those.
        for j = 1, i - 1 do
          local line
          for _ = 1, 4 do
            line = clients[j]:receiveLine()
            if not line:match("^%* guest%d+ joined$") or line == "* " .. nicks[i] .. " joined" then break end
          end
          assert.equal("* " .. nicks[i] .. " joined", line)
        end
        clients[i] = c
      end
      local seen = {}
      for _, n in ipairs(nicks) do seen[n] = true end
      assert.same({ guest1 = true, guest2 = true, guest3 = true, guest4 = true }, seen)
      for i = 1, 20 do clients[1]:send("line " .. i .. "\n") end
      for j = 2, 4 do
        for i = 1, 20 do assert.equal("<" .. nicks[1] .. "> line " .. i, clients[j]:receiveLine()) end
      end
      clients[2]:send("/quit\n")
      assert.equal("* bye", clients[2]:receiveLine())
      for _, j in ipairs { 1, 3, 4 } do assert.equal("* " .. nicks[2] .. " left", clients[j]:receiveLine()) end
      assert.equal("", clients[1].inbox)
      for _, c in ipairs(clients) do c:close() end
      p:cleanup()
    end)
  end)
end)
