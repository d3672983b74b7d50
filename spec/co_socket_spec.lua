-- lupine.tcp.connect sockets and an app's handle(sock): the cosocket methods,
-- their errors, full duplex, back-pressure both ways, cancellation at close.
local lupine = require "lupine"
local test = require "lupine.test"
local codec = lupine.codec

local loop = lupine.loop()

-- Run body as a coroutine until it ends (raising its error), within limit seconds.
local function run(body, limit)
  local f = lupine.spawn(body)
  loop:runUntil(f, limit or 10, "the coroutine")
  if not f:isSuccess() then error(tostring(f:cause()), 0) end
  return f:get()
end

-- A server whose connections run handle(sock) (app fields in extra).
local function serve(handle, extra)
  local app = { handle = handle }
  for k, v in pairs(extra or {}) do app[k] = v end
  return test.server(app)
end

local function echo(sock)
  while true do
    local data = sock:receiveAny(65536)
    if not data then return end
    sock:send(data)
  end
end

-- A server that sends pieces with a pause between them, then (close) closes.
local function dripping(pieces, close)
  return serve(function(sock)
    for _, p in ipairs(pieces) do
      sock:send(p)
      lupine.sleep(0.01)
    end
    if not close then sock:receiveAll() end
  end)
end

describe("lupine.tcp.connect", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("connects, sends and receives; refused connects return nil and the named error", function()
    local server = serve(echo)
    local port = test.freePort()
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port))
      assert.equal(6, s:send("hello\n"))
      assert.equal("hello", s:receive())
      local host, p = s:getpeername()
      assert.same({ "127.0.0.1", server.port }, { host, p })
      assert.equal(1, s:close())
      assert.same({ nil, "closed" }, { s:close() })
      assert.same({ nil, "closed" }, { s:send("x") })
      assert.same({ nil, "closed", "" }, { s:receive(1) })
      assert.same({ nil, "closed" }, { s:getpeername() })
      local none, err = lupine.tcp.connect("127.0.0.1", port)
      assert.is_nil(none)
      assert.equal(("ECONNREFUSED: Connection refused (connect to 127.0.0.1:%d)"):format(port), err)
    end)
    server:close()
  end)

  it("receive(n), receive('*l'), receiveLine, receiveUntil, receiveAny, receive('*a') across reads", function()
    local server = dripping({ "HEL", "LO\r", "\nsecond li", "ne\nkey=", "value;", "12345", "6789", "tail" }, true)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port))
      assert.equal("HELLO", s:receive("*l"))
      assert.equal("second line", s:receiveLine())
      assert.equal("key=value", s:receiveUntil(";"))
      assert.equal("123", s:receiveAny(3))
      assert.equal("45", s:receive(2))
      assert.equal("6789tail", s:receive("*a"))
      assert.same({ nil, "closed", "" }, { s:receiveLine() })
      s:close()
    end)
    server:close()
  end)

  it("times out each wait with nil, \"timeout\" and what is buffered, keeping it; settimeout and per-call", function()
    local server = serve(function(sock)
      sock:send("abc")
      sock:receiveAll()
    end)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port, { timeout = 0.05 }))
      local t0 = loop:now()
      assert.same({ nil, "timeout", "abc" }, { s:receive(10) })
      assert.is_true(loop:now() - t0 >= 0.045)
      assert.same({ nil, "timeout", "abc" }, { s:receiveUntil("x", 0.02) })
      assert.same({ nil, "timeout", "abc" }, { s:receiveLine() })
      assert.equal(1, s:settimeout(0.01))
      assert.same({ nil, "timeout", "abc" }, { s:receive(4) })
      assert.equal("abc", s:receive(3)) -- nothing was lost by the failed waits
      assert.same({ nil, "timeout" }, { s:receiveMessage() })
      s:settimeout(nil)
      lupine.spawn(function() lupine.sleep(0.05); s:close() end)
      assert.same({ nil, "closed", "" }, { s:receive(1) }) -- no timeout: only the close ends it
    end)
    server:close()
  end)

  it("receiveAny takes at most max, keeps the rest, times out on an empty queue, and stops at a message", function()
    local server = serve(function(sock)
      sock:receiveLine()
      sock:send("abcdefgh")
      sock:receiveLine()
      sock:send("k=v\n")
      sock:receiveAll()
    end)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port, {
        init = function(ch)
          ch.pipeline:addLast("kv", {
            channelRead = function(_, ctx, buf)
              local text = buf:readString()
              local k, v = text:match("^(%w+)=(%w+)\n$")
              if k then ctx:fireChannelRead { [k] = v } else ctx:fireChannelRead(text) end
            end,
          })
        end,
      }))
      local t0 = loop:now()
      assert.same({ nil, "timeout", "" }, { s:receiveAny(4, 0.05) }) -- parked on an empty queue, then the timer
      assert.is_true(loop:now() - t0 >= 0.045)
      s:send("go\n")
      assert.equal("abcd", s:receiveAny(4)) -- handed over whole, the rest kept
      assert.equal("efgh", s:receiveAny(100))
      s:send("more\n")
      assert.same({ nil, "NotBytes: the next message is a table (receiveMessage() takes it)", "" }, { s:receiveAny(10) })
      assert.same({ k = "v" }, s:receiveMessage())
      assert.has_error(function() s:receiveAny(0) end, "receiveAny: expected a maximum size >= 1")
      s:close()
    end)
    server:close()
  end)

  it("hands bytes to a parked receiveAny; what the coroutine does next (ends, raises, waits, returns) is settled", function()
    local seen = {}
    local server = serve(function(sock)
      local what = sock:receiveAny(100) -- parked first: the read resumes it natively
      seen[#seen + 1] = what
      if what == "end" then return end -- returning closes
      if what == "raise" then error("raised after receiveAny") end
      lupine.sleep(0.01) -- a wait of another kind after the hand-over
      sock:send("slept " .. what)
      local rest = sock:receiveAny(2) -- longer than max: the rest stays queued
      sock:send(rest .. "|" .. sock:receiveAny(100))
      sock:receiveAll()
    end)
    run(function()
      for _, word in ipairs { "end", "raise" } do
        local s = assert(lupine.tcp.connect("127.0.0.1", server.port))
        lupine.sleep(0.02) -- the handle parks first
        s:send(word)
        assert.equal("", s:receiveAll()) -- the server closed: nothing came
        s:close()
      end
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port))
      -- A spawned coroutine parked in receiveAny: its future gets the bytes.
      local f = lupine.spawn(function() return s:receiveAny(100) end)
      lupine.sleep(0.02)
      s:send("zz")
      assert.equal("slept zz", lupine.await(f))
      lupine.sleep(0.02)
      s:send("abcd")
      assert.equal("ab|cd", s:receiveAny(100))
      s:close()
    end)
    assert.same({ "end", "raise", "zz" }, seen)
    server:close()
  end)

  it("send gives a handler that writes what it was given: the string, or the message", function()
    local seen = {}
    local server = serve(echo, {
      init = function(ch)
        ch.pipeline:addLast("shout", {
          write = function(_, ctx, msg, promise)
            seen[#seen + 1] = type(msg)
            if type(msg) == "table" then msg = table.concat(msg, ",") end
            ctx:write(msg:upper(), promise)
          end,
        })
      end,
    })
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port))
      s:send("abc")
      assert.equal("ABC", s:receive(3))
      s:send(("x"):rep(2000)) -- longer than what the head copies
      assert.equal(("X"):rep(2000), s:receive(2000))
      s:close()
    end)
    server:close()
    assert.same({ "string", "string" }, seen)
    -- and a message for an encoder on the client's side: send returns 1
    server = serve(echo)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port, {
        init = function(ch)
          ch.pipeline:addLast("join", {
            write = function(_, ctx, msg, promise) ctx:write(table.concat(msg, ","), promise) end,
          })
        end,
      }))
      assert.equal(1, s:send { "a", "b" })
      assert.equal("a,b", s:receive(3))
      s:close()
    end)
    server:close()
  end)

  it("a peer that closes ends receives with nil, \"closed\" and the partial data", function()
    local server = dripping({ "part" }, true)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port))
      assert.same({ nil, "closed", "part" }, { s:receive(10) })
      assert.same({ nil, "closed", "" }, { s:receiveAny(10) })
      assert.same({ nil, "closed" }, { s:receiveMessage() })
      s:close()
    end)
    server:close()
  end)

  it("receiveUntil and receiveLine fail with TooLongFrame at receiveLimit, not buffering without bound", function()
    local server = serve(function(sock)
      for _ = 1, 100 do
        if not sock:send(("x"):rep(1000)) then return end
      end
      sock:receiveAll()
    end)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port, { receiveLimit = 4096 }))
      local v, err, part = s:receiveUntil("\r\n")
      assert.is_nil(v)
      assert.equal("TooLongFrame: receiveUntil: nothing within receiveLimit (4096 bytes)", err)
      assert.is_true(#part >= 4096 and #part <= 4096 + 65536, #part)
      v, err = s:receiveLine()
      assert.is_nil(v)
      assert.equal("TooLongFrame: receiveLine: nothing within receiveLimit (4096 bytes)", err)
      assert.same({ nil, "TooLongFrame: receive(5000): more than receiveLimit (4096 bytes)", "" }, { s:receive(5000) })
      s:close()
    end)
    server:close()
  end)

  it("receiveMessage returns what the pipeline produced: frames, decoded objects, then errors in order", function()
    local server = dripping({ "one\ntwo\n", ("z"):rep(40) .. "\n", "three\n" }, true)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port, {
        init = function(ch) ch.pipeline:addLast("lines", codec.lineFrame { maxLength = 16, asString = true }) end,
      }))
      assert.equal("one", s:receiveMessage())
      assert.equal("two", s:receiveMessage())
      local v, err = s:receiveMessage()
      assert.is_nil(v)
      assert.matches("^TooLongFrame: ", err)
      assert.equal("three", s:receiveMessage())
      assert.same({ nil, "closed" }, { s:receiveMessage() })
      s:close()
    end)
    server:close()
  end)

  it("byte reads stop at a message that is not bytes, naming it", function()
    local server = dripping({ "a=1\n" }, false)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port, {
        init = function(ch)
          ch.pipeline:addLast("kv", {
            channelRead = function(_, ctx, buf)
              local k, val = buf:readString():match("(%w+)=(%w+)")
              ctx:fireChannelRead { key = k, value = val }
            end,
          })
        end,
      }))
      assert.same({ nil, "NotBytes: the next message is a table (receiveMessage() takes it)", "" }, { s:receive(1) })
      assert.same({ key = "a", value = "1" }, s:receiveMessage())
      s:close()
    end)
    server:close()
  end)

  it("shutdownOutput sends a FIN after what was written; the socket still receives", function()
    local server = serve(function(sock)
      local all = sock:receiveAll()
      sock:send("got " .. all)
    end, { options = { allowHalfClosure = true } })
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port))
      s:send("abc")
      assert.equal(1, s:shutdownOutput())
      assert.equal("got abc", s:receive("*a"))
      s:close()
    end)
    server:close()
  end)

  it("is full duplex: one coroutine blocks in receive while another sends; a second reader is refused", function()
    local server = serve(echo)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port))
      local reader = lupine.spawn(function() return s:receive(10) end)
      local ok, err = pcall(s.receive, s, 1)
      assert.is_false(ok)
      assert.matches("receive: another coroutine is already receiving on this socket %(one reader and one writer at a time%)",
        err)
      for i = 0, 9 do
        s:send(tostring(i))
        lupine.sleep(0.001)
      end
      assert.equal("0123456789", lupine.await(reader))
      -- the same with receiveAny, which parks another way on an empty socket
      local any = lupine.spawn(function() return s:receiveAny(10) end)
      ok, err = pcall(s.receiveAny, s, 10)
      assert.is_false(ok)
      assert.matches("receiveAny: another coroutine is already receiving on this socket", err)
      s:send("x")
      assert.equal("x", lupine.await(any))
      s:close()
    end)
    server:close()
  end)

  it("send waits while the channel is over its high water mark, and times out when the peer never reads", function()
    local chans = {}
    local server = test.server(function(ch) chans[#chans + 1] = ch end, { options = { autoRead = false, rcvBuf = 4096 } })
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port, {
        timeout = 0.2, options = { sndBuf = 4096, highWaterMark = 65536, lowWaterMark = 16384 },
      }))
      local chunk = ("s"):rep(16384)
      local sent, err, most = 0, nil, 0
      for _ = 1, 1000 do
        local n
        n, err = s:send(chunk)
        if not n then break end
        sent = sent + n
        most = math.max(most, s.ch:pendingBytes())
      end
      assert.equal("timeout", err)
      -- never more than the high water mark and one chunk waits in the channel
      assert.is_true(most <= 65536 + 16384, most)
      assert.is_true(sent >= 65536, sent)
      -- a second writer while one waits is refused
      local w = lupine.spawn(function() return s:send(chunk, 1) end)
      local ok, e2 = pcall(s.send, s, "x")
      assert.is_false(ok)
      assert.matches("send: another coroutine is already sending on this socket", e2)
      s:close()
      assert.same({ nil, "closed" }, { select(1, lupine.await(w)), select(2, lupine.await(w)) })
    end)
    chans[1]:close()
    server:close()
  end)

  it("ends every wait with nil, \"closed\" when the channel closes: the blocked coroutines are resumed", function()
    local server = serve(function(sock) sock:receiveAll() end)
    run(function()
      local s = assert(lupine.tcp.connect("127.0.0.1", server.port, { timeout = false }))
      local blocked = {
        lupine.spawn(function() return table.pack(s:receiveLine()) end),
      }
      lupine.sleep(0.01)
      s.ch:close() -- as if the peer or a handler closed it
      local r = lupine.await(blocked[1], 2)
      assert.same({ n = 3, nil, "closed", "" }, r)
      assert.is_false(s:isOpen())
    end)
    server:close()
  end)

  it("checks its arguments", function()
    run(function()
      assert.has_error(function() lupine.tcp.connect("127.0.0.1", 1, { bogus = 1 }) end,
        "lupine.tcp.connect: unknown option 'bogus' (known: timeout, connectTimeout, bufferSize, receiveLimit, options, init)")
      assert.has_error(function() lupine.tcp.connect("127.0.0.1", 1, { timeout = -1 }) end,
        "lupine.tcp.connect: timeout: expected a number of seconds >= 0, got -1")
      assert.has_error(function() lupine.tcp.connect("127.0.0.1", 1, { bufferSize = 0 }) end,
        "lupine.tcp.connect: bufferSize: expected a number of bytes >= 1, got 0")
    end)
  end)
end)

describe("an app's handle(sock)", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)

  it("runs a coroutine per connection after init's codecs: receiveMessage gets whole frames", function()
    local server = serve(function(sock)
      while true do
        local line = sock:receiveMessage()
        if not line then return end
        sock:send(("%d:%s\n"):format(#line, line))
      end
    end, { init = function(ch) ch.pipeline:addLast("lines", codec.lineFrame { asString = true }) end })
    local c = test.client(server.port)
    c:send("ab\r\nc")
    c:send("de\n")
    assert.equal("2:ab", c:receiveLine())
    assert.equal("3:cde", c:receiveLine())
    c:close()
    server:close()
  end)

  it("closes the connection when handle returns, after what it wrote went out", function()
    local server = serve(function(sock)
      sock:send(("b"):rep(300000))
      sock:send("end\n")
    end)
    local c = test.client(server.port)
    local all = c:receiveAll()
    assert.equal(300004, #all)
    assert.equal("end\n", all:sub(-4))
    c:close()
    server:close()
  end)

  it("logs an error in handle with its traceback and closes the connection", function()
    local out = {}
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write [[
      local lupine = require "lupine"
      local test = require "lupine.test"
      lupine.setLogLevel("error")
      local server = test.server { handle = function(sock)
        sock:receiveLine()
        local t = nil
        return t.field
      end }
      local c = test.client(server.port)
      c:send("go\n")
      print(pcall(c.receive, c, 1))
      server:close()
    ]]
    f:close()
    local build = os.getenv("LUPINE_BUILD") or "build"
    local p = io.popen(("LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./%s/lib/?.so;;' timeout 20 lua5.4 %s 2>&1")
      :format(build, path))
    out = p:read("a")
    p:close()
    os.remove(path)
    assert.matches(" error w0 #%d+ handle raised %(closing the connection%): [^\n]*attempt to index a nil value %(local 't'%)\n"
      .. "stack traceback:\n", out)
    assert.matches("false\t[^\n]*receive%(1%): the connection closed", out)
  end)

  it("reads on demand: with nobody receiving, at most bufferSize and one read wait in the socket", function()
    local sock
    local go = false
    local total = 0
    local server = serve(function(s)
      sock = s
      while not go do lupine.sleep(0.01) end
      while true do
        local d = s:receiveAny(65536)
        if not d then return end
        total = total + #d
      end
    end, { socket = { bufferSize = 16384 } })
    local f = lupine.connect { port = server.port, options = { sndBuf = 8192 } }
    loop:runUntil(f, 5)
    local ch = f:get()
    local chunk = ("f"):rep(65536)
    local written = 0
    -- a fast sender: write whenever the channel is writable, up to 16 MiB
    local function pump()
      while ch:isOpen() and ch:isWritable() and written < 16 * 1048576 do
        ch:writeAndFlush(chunk)
        written = written + #chunk
      end
    end
    ch.pipeline:addLast("pump", { channelWritabilityChanged = function() pump() end })
    pump()
    local most = 0
    local t_end = loop:now() + 0.5
    loop:runUntil(function()
      if sock then most = math.max(most, sock:bufferedBytes()) end
      return loop:now() >= t_end
    end, 5)
    assert.is_true(most > 0)
    assert.is_true(most <= 16384 + 65536, "buffered " .. most)
    assert.is_true(written < 16 * 1048576, "the sender was never stopped")
    assert.is_true(ch:pendingBytes() > 0) -- the sender is held back by TCP
    go = true
    loop:runUntil(function() return written >= 16 * 1048576 and ch:pendingBytes() == 0 end, 30, "the rest to flow")
    loop:runUntil(function() return total == written end, 10, "everything to arrive")
    ch:close()
    server:close()
  end)

  it("leaves nothing behind: 10,000 connect/serve/close cycles keep memory and descriptors flat", function()
    local server = serve(echo)
    local function cycles(n)
      run(function()
        for i = 1, n do
          local s = assert(lupine.tcp.connect("127.0.0.1", server.port))
          s:send("ping")
          assert.equal("ping", s:receive(4))
          s:close()
          if i % 500 == 0 then lupine.sleep(0) end
        end
      end, 120)
      loop:runUntil(function() return loop:channelCount() == 0 end, 5)
      collectgarbage()
      collectgarbage()
      return collectgarbage("count"), open_fds()
    end
    local m1, f1 = cycles(1000)
    local m2, f2 = cycles(9000)
    assert.equal(f1, f2)
    assert.is_true(m2 < m1 + 200, ("Lua memory grew from %.0f KiB to %.0f KiB"):format(m1, m2))
    server:close()
  end)
end)
