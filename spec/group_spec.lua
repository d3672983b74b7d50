-- lupine.channelGroup (lua/lupine/group.lua) over real sockets: membership,
-- channels leaving as they close, writes to all with one future, buffers
-- handed off, failures collected, close, and the errors.
local lupine = require "lupine"
local test = require "lupine.test"

describe("lupine.channelGroup", function()
  local leaks = leak_check()
  local loop = lupine.loop()
  local server, accepted, clients

  before_each(function()
    leaks.before()
    accepted, clients = {}, {}
    server = test.server(function() end, { channels = accepted })
  end)
  after_each(function()
    for _, c in ipairs(clients) do c:close() end
    server:close()
    leaks.after()
  end)

  -- n clients, and the server's side of each (in the same order).
  local function connect(n)
    local first = #accepted
    for i = 1, n do clients[#clients + 1] = test.client(server.port) end
    test.eventually(function() return #accepted == first + n end, 5, n .. " accepted channels")
    local list = {}
    for i = first + 1, first + n do list[#list + 1] = accepted[i] end
    return list
  end

  local function done(f)
    loop:runUntil(f, 5, "the group's future")
    return f
  end

  it("holds channels: add, contains, size, #, iter, pairs, remove", function()
    local ch = connect(3)
    local g = lupine.channelGroup("room")
    assert.equal(0, g:size())
    assert.is_true(g:isEmpty())
    assert.is_true(g:add(ch[1]))
    assert.is_true(g:add(ch[2]))
    assert.is_false(g:add(ch[1])) -- already a member
    assert.equal(2, g:size())
    assert.equal(2, #g)
    assert.is_true(g:contains(ch[1]))
    assert.is_false(g:contains(ch[3]))
    assert.equal("lupine.ChannelGroup(room, 2 channels)", tostring(g))
    g:add(ch[3])
    local seen = {}
    for c in g:iter() do seen[#seen + 1] = c.id end
    assert.same({ ch[1].id, ch[2].id, ch[3].id }, seen) -- in the order the channels were made
    seen = {}
    for c, v in pairs(g) do
      assert.is_true(v)
      seen[#seen + 1] = c.id
    end
    assert.same({ ch[1].id, ch[2].id, ch[3].id }, seen)
    assert.is_true(g:remove(ch[2]))
    assert.is_false(g:remove(ch[2]))
    assert.is_false(g:contains(ch[2]))
    assert.equal(2, #g)
    -- removing while iterating is safe: iter walks a snapshot
    local n = 0
    for c in g:iter() do
      g:remove(c)
      n = n + 1
    end
    assert.equal(2, n)
    assert.equal(0, #g)
  end)

  it("drops a channel when it closes, from either side", function()
    local ch = connect(3)
    local g = lupine.channelGroup()
    for _, c in ipairs(ch) do g:add(c) end
    clients[1]:close() -- the peer closes: the server's channel closes on EOF
    test.eventually(function() return not g:contains(ch[1]) end, 5, "the closed channel to leave")
    assert.equal(2, #g)
    ch[2]:close() -- closed here: gone at once, before the closeFuture's listener ran
    assert.equal(1, #g)
    assert.is_false(g:contains(ch[2]))
    test.eventually(function() return clients[2].eof end, 5, "the client to see the close")
    loop:runFor(0.05) -- the closeFuture listeners have run: still one member
    assert.equal(1, #g)
    assert.is_false(g:add(ch[1])) -- a closed channel is not added
    assert.equal(1, #g)
  end)

  it("writes and flushes a string to every member, with one future of the whole", function()
    local ch = connect(3)
    local g = lupine.channelGroup()
    for _, c in ipairs(ch) do g:add(c) end
    local f = done(g:writeAndFlush("hello\n"))
    assert.is_true(f:isSuccess())
    for _, c in ipairs(clients) do assert.equal("hello", c:receiveLine()) end
    -- write, then flush: nothing goes out before the flush
    local w = g:write("two\n")
    assert.equal(g, g:flush())
    done(w)
    for _, c in ipairs(clients) do assert.equal("two", c:receiveLine()) end
    -- a long string is shared, not copied per channel; all get the same bytes
    local big = ("0123456789"):rep(10000) .. "\n"
    done(g:writeAndFlush(big))
    for _, c in ipairs(clients) do assert.equal(#big, #(c:receiveLine() .. "\n")) end
  end)

  it("writes only to the members a matcher accepts", function()
    local ch = connect(3)
    local g = lupine.channelGroup()
    for _, c in ipairs(ch) do g:add(c) end
    done(g:writeAndFlush("not you\n", function(c) return c ~= ch[2] end))
    assert.equal("not you", clients[1]:receiveLine())
    assert.equal("not you", clients[3]:receiveLine())
    done(g:writeAndFlush("you\n", function(c) return c == ch[2] end))
    assert.equal("you", clients[2]:receiveLine())
    assert.equal("", clients[1]:received())
    assert.has_error(function() g:write("x", "everyone") end,
      "lupine.ChannelGroup:write: the matcher must be a function(ch) -> boolean")
  end)

  it("takes a Buffer as a hand-off: each member gets the bytes, the buffer is gone", function()
    local ch = connect(3)
    local g = lupine.channelGroup()
    for _, c in ipairs(ch) do g:add(c) end
    local buf = lupine.buffer():writeString("bytes\n")
    done(g:writeAndFlush(buf))
    for _, c in ipairs(clients) do assert.equal("bytes", c:receiveLine()) end
    assert.has_error(function() buf:readableBytes() end, "lupine.Buffer used after release or hand-off")
    assert.has_error(function() g:writeAndFlush(buf) end, "lupine.Buffer used after release or hand-off")
    -- with no member, the buffer is released
    local empty = lupine.channelGroup()
    local b2 = lupine.buffer("x")
    assert.is_true(done(empty:writeAndFlush(b2)):isSuccess())
    assert.has_error(function() b2:readableBytes() end, "lupine.Buffer used after release or hand-off")
  end)

  it("fails the whole future when a member's write fails, naming the channel and cause", function()
    local ch = connect(3)
    local g = lupine.channelGroup("room")
    for _, c in ipairs(ch) do g:add(c) end
    -- ch[2] holds a write already as large as its cap: the next one is refused
    ch[2]:config():setOption("maxPendingBytes", 4)
    ch[2]:write("")
    local caught = {}
    ch[2].pipeline:addLast("catch", { exceptionCaught = function(_, _, e) caught[#caught + 1] = e end })
    local f = done(g:writeAndFlush("more than four bytes\n"))
    assert.is_false(f:isSuccess())
    local err = f:cause()
    assert.equal("ChannelGroupFailure", err.kind)
    assert.equal(1, #err.failures)
    assert.equal(ch[2], err.failures[1].channel)
    assert.equal("WriteBufferFull", err.failures[1].cause.kind)
    assert.equal(("ChannelGroupFailure: writeAndFlush failed on 1 of 3 channels of group 'room': #%d %s")
      :format(ch[2].id, err.failures[1].cause.message), err.message)
    assert.equal(err.message, tostring(err))
    -- the member's own pipeline hears of it too, once: a failure is never lost
    assert.equal(1, #caught)
    assert.equal(err.failures[1].cause.message, caught[1].message)
    -- the others got the line
    assert.equal("more than four bytes", clients[1]:receiveLine())
    assert.equal("more than four bytes", clients[3]:receiveLine())
  end)

  it("closes every member with one future; they leave the group", function()
    local ch = connect(3)
    local g = lupine.channelGroup()
    for _, c in ipairs(ch) do g:add(c) end
    local f = done(g:close())
    assert.is_true(f:isSuccess())
    for _, c in ipairs(ch) do assert.is_false(c:isOpen()) end
    assert.equal(0, #g)
    for _, c in ipairs(clients) do assert.equal("", c:receiveAll()) end
    assert.is_true(done(g:close()):isSuccess()) -- an empty group: done at once
  end)

  it("refuses what is not a channel of its loop", function()
    local ch = connect(1)
    local g = lupine.channelGroup()
    assert.has_error(function() g:add("ch") end, "lupine.ChannelGroup:add: expected a lupine.Channel, got string")
    assert.has_error(function() g:contains(nil) end, "lupine.ChannelGroup:contains: expected a lupine.Channel, got nil")
    assert.has_error(function() g:writeAndFlush(nil) end, "lupine.ChannelGroup:writeAndFlush: nothing to write (nil)")
    assert.has_error(function() g.size() end, "lupine.ChannelGroup:size: call it as group:size(...)")
    assert.has_error(function() lupine.channelGroup(42) end, "lupine.channelGroup: the name must be a string")
    -- Each Lua state has one loop, so a channel of another loop can only be
    -- shown by giving the group a stand-in for another loop.
    g._loop = {}
    assert.has_error(function() g:add(ch[1]) end,
      ("lupine.ChannelGroup:add: channel #%d belongs to another loop (worker %d); a group holds the channels of the loop it was made on")
        :format(ch[1].id, ch[1].worker))
  end)
end)
