-- lupine.ws: the native WebSocket frame codec in a pipeline, over real
-- sockets. A raw client (the test kit's) writes exact frame bytes and reads
-- exact frame bytes back; lupine clients with the codec on the client side
-- talk to lupine servers.
local lupine = require "lupine"
local test = require "lupine.test"
local ws = lupine.ws

local KEY = "\x37\xfa\x21\x3d"

-- One frame: first byte b0, payload, masked with key (nil: unmasked).
local function frame(b0, payload, key)
  local n = #payload
  local m = key and 0x80 or 0
  local h
  if n < 126 then h = string.char(b0, m | n)
  elseif n < 65536 then h = string.char(b0, m | 126) .. string.pack(">I2", n)
  else h = string.char(b0, m | 127) .. string.pack(">I8", n) end
  if not key then return h .. payload end
  local out = {}
  for i = 1, n do out[i] = string.char(payload:byte(i) ~ key:byte((i - 1) % 4 + 1)) end
  return h .. key .. table.concat(out)
end
local function masked(b0, payload) return frame(b0, payload, KEY) end

-- A server: the codec, then a handler recording what it saw; on a text
-- message (or a fragment table) it runs on_text(ctx, msg) (default: echo),
-- on binary it echoes.
local function ws_server(opts, on_text)
  local seen = { messages = {}, events = {}, errors = {} }
  local H = {}
  function H:channelRead(ctx, msg)
    seen.messages[#seen.messages + 1] = msg
    if type(msg) ~= "userdata" and on_text then on_text(ctx, msg) else ctx:writeAndFlush(msg) end
  end
  function H:userEventTriggered(ctx, evt) seen.events[#seen.events + 1] = evt end
  function H:exceptionCaught(ctx, err) seen.errors[#seen.errors + 1] = tostring(err) end
  local server = test.server(function(ch)
    ch.pipeline:addLast("ws", ws.frameCodec(opts))
    ch.pipeline:addLast("app", H)
  end)
  return server, seen
end

describe("lupine.ws.frameCodec", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("delivers text as strings and binary as Buffers, and encodes them back", function()
    local server, seen = ws_server()
    local c <close> = test.client(server.port)
    c:send(masked(0x81, "hello") .. masked(0x82, "\0\1\2"))
    assert.equal("\x81\x05hello", c:receive(7))
    assert.equal("\x82\x03\0\1\2", c:receive(5))
    assert.equal("hello", seen.messages[1])
    assert.equal("lupine.Buffer", getmetatable(seen.messages[2]))
    -- 16-bit and 64-bit lengths, split across writes
    local big = string.rep("abcdefgh", 9000)
    local f = masked(0x82, big)
    c:send(f:sub(1, 3))
    c:send(f:sub(4, 40000))
    c:send(f:sub(40001))
    assert.equal("\x82\x7f" .. string.pack(">I8", #big) .. big, c:receive(10 + #big))
    server:close()
  end)

  it("reassembles fragments, answers a ping between them, and reports pongs", function()
    local server, seen = ws_server()
    local c <close> = test.client(server.port)
    c:send(masked(0x01, "hel") .. masked(0x89, "p1") .. masked(0x00, "lo \xe2\x82")
      .. masked(0x8a, "pong!") .. masked(0x80, "\xac"))
    assert.equal("\x8a\x02p1", c:receive(4))
    assert.equal("\x81\x09hello \xe2\x82\xac", c:receive(11))
    assert.same({ kind = "wsPong", data = "pong!" }, seen.events[1])
    server:close()
  end)

  it("with fragments = true delivers a fragmented message frame by frame", function()
    local server, seen = ws_server({ fragments = true, maxMessageSize = 10 }, function(ctx, msg) end)
    local c <close> = test.client(server.port)
    c:send(masked(0x01, "hel") .. masked(0x89, "p") .. masked(0x00, "lo \xe2") .. masked(0x80, "\x82\xac")
      .. masked(0x81, "whole") .. masked(0x02, "ab") .. masked(0x80, "c"))
    assert.equal("\x8a\x01p", c:receive(3))
    test.eventually(function() return #seen.messages == 6 end)
    assert.same({ type = "text", data = "hel", fin = false }, seen.messages[1])
    assert.same({ type = "text", data = "lo \xe2", fin = false }, seen.messages[2])
    assert.same({ type = "text", data = "\x82\xac", fin = true }, seen.messages[3])
    assert.equal("whole", seen.messages[4])
    assert.equal("binary", seen.messages[5].type)
    assert.equal("ab", seen.messages[5].data:readString())
    assert.equal("c", seen.messages[6].data:readString())
    assert.is_true(seen.messages[6].fin)
    -- the whole message still counts against maxMessageSize
    c:send(masked(0x02, "123456") .. masked(0x80, "78901"))
    assert.equal("\x88\x02\x03\xf1", c:receiveAll())
    assert.equal("WsMessageTooBig: message of at least 11 bytes exceeds maxMessageSize 10 (1009)", seen.errors[1])
    server:close()
  end)

  it("with autoPong = false fires wsPing and sends nothing", function()
    local server, seen = ws_server { autoPong = false }
    local c <close> = test.client(server.port)
    c:send(masked(0x89, "are you there") .. masked(0x81, "x"))
    assert.equal("\x81\x01x", c:receive(3)) -- no pong before the echo
    assert.same({ kind = "wsPing", data = "are you there" }, seen.events[1])
    server:close()
  end)

  it("answers a close frame with the same code and closes the connection", function()
    local server, seen = ws_server()
    local c <close> = test.client(server.port)
    c:send(masked(0x81, "last") .. masked(0x88, "\x03\xe8bye"))
    assert.equal("\x81\x04last\x88\x02\x03\xe8", c:receiveAll())
    assert.same({ kind = "wsClose", code = 1000, reason = "bye" }, seen.events[1])
    -- a close without a code is answered by one without a code
    local c2 <close> = test.client(server.port)
    c2:send(masked(0x88, ""))
    assert.equal("\x88\x00", c2:receiveAll())
    assert.same({ kind = "wsClose", code = 1005, reason = "" }, seen.events[2])
    server:close()
  end)

  it("lets a handler close in wsClose: one close frame, then the close", function()
    local server = test.server(function(ch)
      ch.pipeline:addLast("ws", ws.frameCodec {})
      ch.pipeline:addLast("app", { userEventTriggered = function(_, ctx, evt) ctx:close() end })
    end)
    local c <close> = test.client(server.port)
    c:send(masked(0x88, "\x0f\xa0")) -- 4000
    assert.equal("\x88\x02\x03\xe8", c:receiveAll())
    server:close()
  end)

  it("sends a close frame before ctx:close() closes the connection", function()
    local closed = lupine.promise()
    local server = ws_server(nil, function(ctx, msg)
      if msg == "quit" then ctx:close():addListener(function(f) closed:setSuccess(f:isSuccess()) end) end
    end)
    local c <close> = test.client(server.port)
    c:send(masked(0x81, "quit"))
    assert.equal("\x88\x02\x03\xe8", c:receiveAll())
    assert.is_true(closed:sync())
    server:close()
  end)

  it("writes close frames with a code and reason, then nothing more", function()
    local failure = lupine.promise()
    local server = ws_server(nil, function(ctx, msg)
      ctx:write(ws.close(4000, "done"))
      ctx:writeAndFlush("too late", function(f) failure:setSuccess(tostring(f:cause())) end)
    end)
    local c <close> = test.client(server.port)
    c:send(masked(0x81, "go"))
    assert.equal("\x88\x06\x0f\xa0done", c:receiveAll())
    assert.equal("ClosedChannel: a WebSocket close frame was sent: no frame may follow", failure:sync())
    server:close()
  end)

  it("writes message tables, pings and pongs", function()
    local server = ws_server(nil, function(ctx, msg)
      ctx:write(ws.ping("p"))
      ctx:write(ws.pong())
      ctx:write({ type = "binary", data = "b" })
      ctx:write({ type = "text", data = ws.text("t\u{e9}") })
      ctx:writeAndFlush(ws.binary("xy"))
    end)
    local c <close> = test.client(server.port)
    c:send(masked(0x81, "go"))
    assert.equal("\x89\x01p\x8a\x00\x82\x01b\x81\x03t\xc3\xa9\x82\x02xy", c:receive(17))
    server:close()
  end)

  -- Each violation: the close frame with its code, then the connection closes;
  -- the server's handler sees the named error.
  local violations = {
    { "an unmasked client frame", frame(0x81, "x"), 1002, "WsProtocolError: unmasked client frame (1002)" },
    { "text that is not UTF-8", masked(0x81, "ok\xff"), 1007, "WsInvalidPayload: text message is not UTF-8 (1007)" },
    { "UTF-8 broken across fragments", masked(0x01, "a\xe2") .. masked(0x80, "z"), 1007,
      "WsInvalidPayload: text message is not UTF-8 (1007)" },
    { "a message over maxMessageSize", masked(0x82, string.rep("x", 17)), 1009,
      "WsMessageTooBig: message of 17 bytes exceeds maxMessageSize 16 (1009)" },
    { "fragments over maxMessageSize", masked(0x02, string.rep("x", 10)) .. masked(0x80, string.rep("x", 7)), 1009,
      "WsMessageTooBig: message of at least 17 bytes exceeds maxMessageSize 16 (1009)" },
    { "a length with the high bit set", "\x82\xff\x80\0\0\0\0\0\0\0", 1002,
      "WsProtocolError: frame length with the high bit set (1002)" },
    { "a 2^63 - 1 length", "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff", 1009,
      "WsMessageTooBig: message of 9223372036854775807 bytes exceeds maxMessageSize 16 (1009)" },
    { "a close frame with a 1-byte payload", masked(0x88, "\3"), 1002,
      "WsProtocolError: close frame with a 1-byte payload (1002)" },
    { "a continuation with no start", masked(0x80, "x"), 1002,
      "WsProtocolError: continuation frame with no message to continue (1002)" },
    { "a fragmented ping", masked(0x09, "x"), 1002, "WsProtocolError: fragmented control frame (opcode 0x9) (1002)" },
    { "a ping over 125 bytes", masked(0x89, string.rep("x", 126)), 1002,
      "WsProtocolError: control frame (opcode 0x9) longer than 125 bytes (1002)" },
    { "a new message inside a fragmented one", masked(0x01, "a") .. masked(0x81, "b"), 1002,
      "WsProtocolError: text frame inside a fragmented text message (1002)" },
    { "reserved bits", masked(0xc1, "x"), 1002,
      "WsProtocolError: reserved bits set (0x40) with no extension negotiated (1002)" },
    { "an unknown opcode", masked(0x83, "x"), 1002, "WsProtocolError: unknown opcode 0x3 (1002)" },
    { "a close code that may not be sent", masked(0x88, "\x03\xee"), 1002,
      "WsProtocolError: close code 1006 may not be sent (1002)" },
  }
  for _, v in ipairs(violations) do
    it("closes with " .. v[3] .. " on " .. v[1], function()
      local server, seen = ws_server { maxMessageSize = 16 }
      local c <close> = test.client(server.port)
      c:send(masked(0x81, "before") .. v[2] .. masked(0x81, "after"))
      assert.equal("\x81\x06before\x88\x02" .. string.pack(">I2", v[3]), c:receiveAll())
      assert.equal(v[4], seen.errors[1])
      assert.same({ "before" }, seen.messages)
      server:close()
    end)
  end

  it("checks its options and the message constructors", function()
    assert.has_error(function() ws.frameCodec { maxMessageSize = 0 } end,
      "lupine.ws.frameCodec: option 'maxMessageSize' must be an integer from 1 to 1073741824")
    assert.has_error(function() ws.frameCodec { sever = true } end, "lupine.ws.frameCodec: unknown option 'sever'")
    assert.has_error(function() ws.frameCodec { autoPong = 1 } end,
      "lupine.ws.frameCodec: option 'autoPong' must be a boolean")
    assert.has_error(function() ws.close(1006) end,
      "lupine.ws.close: close code 1006 may not be sent (1000-1003, 1007-1014, 3000-4999)")
    assert.has_error(function() ws.close(1000, string.rep("r", 124)) end,
      "lupine.ws.close: close reason of 124 bytes is over 123")
    assert.has_error(function() ws.text("\xff") end, "bad argument #1 to 'text' (not UTF-8)")
    assert.has_error(function() ws.ping(string.rep("x", 126)) end, "bad argument #1 to 'ping' (at most 125 bytes)")
    assert.same({ type = "close", code = 1000, reason = "" }, ws.close())
    assert.same({ type = "ping", data = "x" }, ws.ping("x"))
    assert.equal("lupine.Buffer", getmetatable(ws.binary("x")))
  end)

  it("fails writes of text that is not UTF-8, and of unknown tables", function()
    local causes = {}
    local server = ws_server(nil, function(ctx, msg)
      ctx:write("\xff", function(f) causes[#causes + 1] = tostring(f:cause()) end)
      ctx:write({ type = "nope" }, function(f) causes[#causes + 1] = tostring(f:cause()) end)
      ctx:writeAndFlush("fine")
    end)
    local c <close> = test.client(server.port)
    c:send(masked(0x81, "go"))
    assert.equal("\x81\x04fine", c:receive(6))
    test.eventually(function() return #causes == 2 end)
    assert.equal("WsInvalidPayload: text message is not UTF-8", causes[1])
    assert.matches("^UnsupportedMessage: .*a message table's type must be", causes[2])
    server:close()
  end)
end)

describe("lupine.ws.frameCodec on the client side", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("masks with a fresh key per frame and talks to a lupine server", function()
    -- a raw server that records the bytes, then answers with an unmasked text frame
    local got = {}
    local raw = test.server(function(ch)
      ch.pipeline:addLast("rec", { channelRead = function(_, ctx, buf)
        got[#got + 1] = buf:readString()
        if #table.concat(got) >= 2 * (2 + 4 + 5) then ctx:writeAndFlush(frame(0x81, "reply")) end
      end })
    end)
    local replies = {}
    local f = lupine.connect { port = raw.port, init = function(ch)
      ch.pipeline:addLast("ws", ws.frameCodec { server = false })
      ch.pipeline:addLast("app", {
        channelActive = function(_, ctx) ctx:write("hello"); ctx:writeAndFlush("hello") end,
        channelRead = function(_, ctx, msg) replies[#replies + 1] = msg end,
      })
    end }
    test.eventually(function() return #replies == 1 end)
    assert.equal("reply", replies[1])
    local bytes = table.concat(got)
    assert.equal(22, #bytes)
    local k1, k2 = bytes:sub(3, 6), bytes:sub(14, 17)
    assert.equal("\x81\x85", bytes:sub(1, 2))
    assert.are_not.equal(k1, k2)
    local function unmask(key, p)
      local out = {}
      for i = 1, #p do out[i] = string.char(p:byte(i) ~ key:byte((i - 1) % 4 + 1)) end
      return table.concat(out)
    end
    assert.equal("hello", unmask(k1, bytes:sub(7, 11)))
    assert.equal("hello", unmask(k2, bytes:sub(18, 22)))
    f:get():close():sync()
    raw:close()
  end)

  it("refuses a masked frame from the server with 1002", function()
    local raw = test.server(function(ch)
      ch.pipeline:addLast("rec", { channelActive = function(_, ctx) ctx:writeAndFlush(masked(0x81, "x")) end,
        channelRead = function(_, _, buf) buf:release() end })
    end)
    local errors = {}
    local f = lupine.connect { port = raw.port, init = function(ch)
      ch.pipeline:addLast("ws", ws.frameCodec { server = false })
      ch.pipeline:addLast("app", { exceptionCaught = function(_, ctx, err) errors[#errors + 1] = tostring(err) end })
    end }
    test.eventually(function() return #errors == 1 end)
    assert.equal("WsProtocolError: masked server frame (1002)", errors[1])
    local ch = f:get()
    test.eventually(function() return not ch:isOpen() end)
    raw:close()
  end)

  it("echoes through a lupine server, both sides lupine", function()
    local server, seen = ws_server()
    local replies = {}
    local f = lupine.connect { port = server.port, init = function(ch)
      ch.pipeline:addLast("ws", ws.frameCodec { server = false })
      ch.pipeline:addLast("app", {
        channelActive = function(_, ctx)
          ctx:write("one")
          ctx:write(ws.binary("two"))
          ctx:writeAndFlush(string.rep("\u{263a}", 30000))
        end,
        channelRead = function(_, ctx, msg)
          replies[#replies + 1] = type(msg) == "string" and msg or msg:readString()
          if #replies == 3 then ctx:close() end -- a close frame first: the server sees it
        end,
      })
    end }
    test.eventually(function() return seen.events[1] ~= nil end)
    assert.same({ "one", "two", string.rep("\u{263a}", 30000) }, replies)
    assert.same({ kind = "wsClose", code = 1000, reason = "" }, seen.events[1])
    test.eventually(function() return not f:get():isOpen() end)
    server:close()
  end)
end)

describe("lupine.ws.frameCodec with permessage-deflate", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  -- a lupine client with the codec; returns the channel future and what it received
  local function ws_client(port, opts, on_active)
    local got = { messages = {}, events = {} }
    local f = lupine.connect { port = port, init = function(ch)
      ch.pipeline:addLast("ws", ws.frameCodec(opts))
      ch.pipeline:addLast("app", {
        channelActive = function(_, ctx) on_active(ctx) end,
        channelRead = function(_, _, msg) got.messages[#got.messages + 1] = type(msg) == "string" and msg or msg:readString() end,
        userEventTriggered = function(_, _, evt) got.events[#got.events + 1] = evt end,
        channelInactive = function() got.closed = true end,
      })
    end }
    return f, got
  end

  it("compresses both ways, with and without context takeover", function()
    for _, d in ipairs { true, { serverNoContextTakeover = true, clientNoContextTakeover = true,
      serverMaxWindowBits = 9, clientMaxWindowBits = 10 } } do
      local server, seen = ws_server { deflate = d }
      local big = string.rep("all work and no play ", 5000)
      local f, got = ws_client(server.port, { server = false, deflate = d }, function(ctx)
        ctx:write("hello")
        ctx:write(ws.binary(big))
        ctx:writeAndFlush("hello")
      end)
      test.eventually(function() return #got.messages == 3 end)
      assert.same({ "hello", big, "hello" }, got.messages)
      assert.equal("hello", seen.messages[1])
      f:get():close():sync()
      test.eventually(function() return seen.events[1] ~= nil end)
      assert.same({ kind = "wsClose", code = 1000, reason = "" }, seen.events[1])
      server:close()
    end
  end)

  it("sends compressed frames (RSV1) that are much smaller", function()
    local got = {}
    local raw = test.server(function(ch)
      ch.pipeline:addLast("rec", { channelRead = function(_, _, buf) got[#got + 1] = buf:readString() end })
    end)
    local f = ws_client(raw.port, { server = false, deflate = true }, function(ctx)
      ctx:writeAndFlush(string.rep("a", 10000))
    end)
    test.eventually(function() return #table.concat(got) >= 6 end)
    local bytes = table.concat(got)
    assert.equal(0xc1, bytes:byte(1)) -- FIN, RSV1, text
    local len = bytes:byte(2) & 0x7f
    assert.is_true(len < 126, "compressed to under 126 bytes")
    test.eventually(function() return #table.concat(got) == 2 + 4 + len end)
    f:get():close():sync()
    raw:close()
  end)

  it("ends a compressed bomb with 1009, not with memory growth", function()
    local server, seen = ws_server { deflate = true, maxMessageSize = 65536 }
    local _, got = ws_client(server.port, { server = false, deflate = true }, function(ctx)
      ctx:writeAndFlush(ws.binary(string.rep("\0", 16 << 20))) -- 16 MiB of zeros: about 16 KiB compressed
    end)
    test.eventually(function() return got.closed end, 20)
    assert.equal("WsMessageTooBig: inflated message exceeds maxMessageSize 65536 (1009)", seen.errors[1])
    assert.same({ kind = "wsClose", code = 1009, reason = "" }, got.events[1])
    assert.same({}, seen.messages)
    server:close()
  end)

  it("checks the deflate options", function()
    assert.has_error(function() ws.frameCodec { deflate = { serverMaxWindowBits = 16 } } end,
      "lupine.ws.frameCodec: option 'serverMaxWindowBits' must be an integer from 8 to 15")
    assert.has_error(function() ws.frameCodec { deflate = { windowBits = 9 } } end,
      "lupine.ws.frameCodec: deflate: unknown option 'windowBits'")
    assert.has_error(function() ws.frameCodec { deflate = "yes" } end,
      "lupine.ws.frameCodec: option 'deflate' must be a boolean or a table")
  end)
end)
