-- examples/line_chat.lua over real sockets: joining, talking, /nick, /quit,
-- a line over the limit, and lines split across reads.
local lupine = require "lupine"
local test = require "lupine.test"

describe("line chat (examples/line_chat.lua)", function()
  local server
  before_each(function() server = test.server(dofile("examples/line_chat.lua")) end)
  after_each(function() server:close() end)

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
end)
