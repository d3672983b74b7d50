-- lupine.codec: the native frame decoders, the prepender, Lua decoders and
-- encoders, over the embedded channel and over real sockets.
local lupine = require "lupine"
local test = require "lupine.test"
local codec = lupine.codec

local loop = lupine.loop()

-- A handler that records, in order, the frames (as strings) and the errors
-- ("!Kind") that reach it.
local function recorder(trace)
  return {
    name = "recorder",
    channelRead = function(_, _, msg)
      trace[#trace + 1] = type(msg) == "string" and msg or type(msg) == "userdata" and msg:readString() or msg
    end,
    exceptionCaught = function(_, _, err)
      trace[#trace + 1] = "!" .. (type(err) == "table" and err.kind or tostring(err))
    end,
  }
end

local function show(trace)
  local parts = {}
  for i, v in ipairs(trace) do parts[i] = ("%q"):format(v) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- The trace of factory() fed these chunks through an embedded channel, then finished.
local function decode(factory, chunks)
  local trace = {}
  local ch = test.embedded(factory(), recorder(trace))
  for _, c in ipairs(chunks) do ch:writeInbound(c) end
  ch:finish()
  return show(trace)
end

-- Ways to split s into reads: whole, byte by byte, at every boundary, and
-- 100 random splits (a fixed seed: a failure reproduces).
local function splits(s)
  local out = { { s } }
  local bytes = {}
  for i = 1, #s do bytes[i] = s:sub(i, i) end
  out[#out + 1] = bytes
  for i = 1, #s - 1 do out[#out + 1] = { s:sub(1, i), s:sub(i + 1) } end
  math.randomseed(20240611)
  for _ = 1, 100 do
    local chunks, at = {}, 1
    while at <= #s do
      local n = math.random(1, 9)
      chunks[#chunks + 1] = s:sub(at, at + n - 1)
      at = at + n
    end
    out[#out + 1] = chunks
  end
  return out
end

-- A length-prefixed (1 byte) decoder written in Lua.
local function lua_length_decoder()
  return codec.decoder {
    name = "lualen",
    decode = function(_, _, buf, out)
      if buf:readableBytes() < 1 then return end
      local n = buf:getU8(buf:readerIndex())
      if buf:readableBytes() < 1 + n then return end
      buf:skip(1)
      out[#out + 1] = buf:readString(n)
    end,
  }
end

local cases = {
  { "lineFrame, \\n and \\r\\n",
    function() return codec.lineFrame { maxLength = 8, asString = true } end,
    "abc\r\ndef\n\nxyz\r\r\n12345678\r\nrest", { "abc", "def", "", "xyz\r", "12345678" } },
  { "lineFrame keeping the delimiter, frames as Buffers",
    function() return codec.lineFrame { maxLength = 8, stripDelimiter = false } end,
    "a\r\nb\n", { "a\r\n", "b\n" } },
  { "lineFrame over the limit, not fail-fast",
    function() return codec.lineFrame { maxLength = 4, asString = true } end,
    "ok\n123456789\r\nnext\n", { "ok", "!TooLongFrame", "next" } },
  { "lineFrame over the limit, fail-fast",
    function() return codec.lineFrame { maxLength = 4, failFast = true, asString = true } end,
    "ok\n123456789\r\nnext\n1234\r\n", { "ok", "!TooLongFrame", "next", "1234" } },
  { "delimiterFrame with \\r\\n and \\n",
    function() return codec.delimiterFrame { delimiters = { "\r\n", "\n" }, asString = true } end,
    "one\r\ntwo\nthree\r\n", { "one", "two", "three" } },
  { "delimiterFrame with overlapping delimiters",
    function() return codec.delimiterFrame { delimiters = { "abc", "ab" }, asString = true } end,
    "xabcdabe", { "x", "d" } },
  { "delimiterFrame over the limit, not fail-fast",
    function() return codec.delimiterFrame { delimiters = { "--", "==" }, maxFrameLength = 4, failFast = false, asString = true } end,
    "ab--123456==cd==-", { "ab", "!TooLongFrame", "cd" } },
  { "lengthFieldFrame, 2-byte length stripped",
    function() return codec.lengthFieldFrame { lengthFieldLength = 2, initialBytesToStrip = 2, asString = true } end,
    "\0\5hello\0\0\0\3abc\0", { "hello", "", "abc" } },
  { "lengthFieldFrame over the limit",
    function() return codec.lengthFieldFrame { lengthFieldLength = 1, initialBytesToStrip = 1, maxFrameLength = 6, asString = true } end,
    "\2ok\9" .. "123456789\2hi", { "ok", "!TooLongFrame", "hi" } },
  { "fixedLengthFrame",
    function() return codec.fixedLengthFrame(3) end,
    "abcdefgh", { "abc", "def" } },
  { "a Lua decoder", lua_length_decoder, "\5hello\0\3abc\9", { "hello", "", "abc" } },
}

describe("frame decoders", function()
  for _, case in ipairs(cases) do
    local name, factory, input, want = case[1], case[2], case[3], case[4]
    it(name .. ": the same frames for every split of the input", function()
      local expected = show(want)
      assert.equal(expected, decode(factory, { input }))
      for _, chunks in ipairs(splits(input)) do
        local got = decode(factory, chunks)
        if got ~= expected then
          error(("reads %s gave %s, expected %s"):format(show(chunks), got, expected))
        end
      end
    end)
  end

  it("give Buffers (slices of the input) unless asked for strings", function()
    local ch = test.embedded(codec.lineFrame())
    ch:writeInbound("one\ntwo\n")
    local a, b = ch:readInbound(), ch:readInbound()
    assert.equal("lupine.Buffer", getmetatable(a))
    assert.equal("one", a:readString())
    assert.equal("two", b:toString())
    assert.is_false(ch:finish())
    ch = test.embedded(codec.lineFrame { asString = true })
    ch:writeInbound("three\n")
    assert.equal("three", ch:readInbound())
  end)

  it("pass messages that are not bytes on untouched", function()
    local ch = test.embedded(codec.lineFrame { asString = true })
    local t = { hello = true }
    ch:writeInbound(t, "x\n", lupine.buffer("y\n"))
    assert.equal(t, ch:readInbound())
    assert.equal("x", ch:readInbound())
    assert.equal("y", ch:readInbound())
  end)

  it("reject unknown options and impossible values, with the reason", function()
    assert.has_error(function() codec.lineFrame { maxLenght = 10 } end,
      "lineFrame: unknown option 'maxLenght' (known: maxLength, stripDelimiter, failFast, asString)")
    assert.has_error(function() codec.lengthFieldFrame { lengthFieldLength = 5 } end,
      "lengthFieldFrame: lengthFieldLength must be 1, 2, 3, 4 or 8")
    assert.has_error(function() codec.lengthFieldFrame { lengthFieldOffset = 10, maxFrameLength = 12 } end,
      "lengthFieldFrame: maxFrameLength (12) must be at least lengthFieldOffset + lengthFieldLength (14)")
    assert.has_error(function() codec.lengthFieldFrame { byteOrder = "middle" } end,
      "lengthFieldFrame: option 'byteOrder' must be \"big\" or \"little\"")
    assert.has_error(function() codec.delimiterFrame {} end,
      "delimiterFrame: give 'delimiters' (a list of strings) or 'delimiter' (a string)")
    assert.has_error(function() codec.delimiterFrame { delimiters = { "" } } end,
      "delimiterFrame: delimiter 1 must be 1 to 32 bytes")
    assert.has_error(function() codec.fixedLengthFrame {} end,
      "fixedLengthFrame: 'frameLength' (from 1 to 1073741824) is required")
    assert.has_error(function() codec.lineFrame { maxLength = 0 } end,
      "lineFrame: option 'maxLength' must be an integer from 1 to 1073741824")
    assert.has_error(function() codec.fixedLengthFrame(-5) end,
      "fixedLengthFrame: option 'frameLength' must be an integer from 1 to 1073741824")
    assert.has_error(function() codec.fixedLengthFrame { frameLength = 0 } end,
      "fixedLengthFrame: option 'frameLength' must be an integer from 1 to 1073741824")
    assert.has_error(function() codec.delimiterFrame { delimiter = "\0", failFast = "yes" } end,
      "delimiterFrame: option 'failFast' must be a boolean")
    assert.has_error(function() codec.lengthFieldFrame { lengthFieldOffset = -1 } end,
      "lengthFieldFrame: option 'lengthFieldOffset' must be an integer from 0 to 1073741824")
    assert.has_error(function() codec.lengthFieldPrepender { byteOrder = 1 } end,
      "lengthFieldPrepender: option 'byteOrder' must be a string")
    assert.has_error(function() codec.decoder { decode = function() end, maxCumulation = 0 } end,
      "lupine.codec.decoder: option 'maxCumulation' must be an integer from 1 to 1073741824")
    assert.has_error(function() codec.decoder { decode = function() end, name = true } end,
      "lupine.codec.decoder: option 'name' must be a string")
    assert.has_error(function() codec.decoder { decode = function() end, name = "a\0b" } end,
      "lupine.codec.decoder: option 'name' must not contain NUL bytes")
  end)

  it("have safe default limits: lines 8192 bytes, length fields 1 MiB", function()
    local ch = test.embedded(codec.lineFrame { asString = true })
    ch:writeInbound(("x"):rep(8192) .. "\n")
    assert.equal(8192, #ch:readInbound())
    local ok, err = pcall(ch.writeInbound, ch, ("x"):rep(8193) .. "\n")
    assert.is_false(ok)
    assert.equal("TooLongFrame", err.kind)
    assert.equal(8192, err.limit)
    assert.equal(8193, err.length)
    ch = test.embedded(codec.lengthFieldFrame())
    ok, err = pcall(ch.writeInbound, ch, "\0\15\255\253") -- 1048573 + the 4-byte header
    assert.is_false(ok)
    assert.equal("TooLongFrame: frame of 1048577 bytes exceeds maxFrameLength 1048576, discarding it", tostring(err))
    assert.equal(1048576, err.limit)
  end)
end)

-- Netty's LengthFieldBasedFrameDecoder documentation, one layout each:
-- the bytes before, the options, the frame after.
describe("lengthFieldFrame (Netty's documented layouts)", function()
  local content = "HELLO, WORLD"
  local layouts = {
    { "2-byte length at offset 0, header kept", {}, "\0\12" .. content, "\0\12" .. content },
    { "2-byte length at offset 0, header stripped", { initialBytesToStrip = 2 }, "\0\12" .. content, content },
    { "the length counts the whole message", { lengthAdjustment = -2 }, "\0\14" .. content, "\0\14" .. content },
    { "3-byte length at the end of a 5-byte header",
      { lengthFieldOffset = 2, lengthFieldLength = 3 }, "\202\254\0\0\12" .. content, "\202\254\0\0\12" .. content },
    { "3-byte length at the start of a 5-byte header",
      { lengthFieldLength = 3, lengthAdjustment = 2 }, "\0\0\12\202\254" .. content, "\0\0\12\202\254" .. content },
    { "2-byte length at offset 1 of a 4-byte header, first field and length stripped",
      { lengthFieldOffset = 1, lengthAdjustment = 1, initialBytesToStrip = 3 }, "\202\0\12\254" .. content, "\254" .. content },
    { "the same, the length counting the whole message",
      { lengthFieldOffset = 1, lengthAdjustment = -3, initialBytesToStrip = 3 }, "\202\0\16\254" .. content, "\254" .. content },
  }
  for _, l in ipairs(layouts) do
    local name, opts, before, after = l[1], l[2], l[3], l[4]
    it(name, function()
      opts.lengthFieldLength = opts.lengthFieldLength or 2
      opts.asString = true
      for _, chunks in ipairs(splits(before .. before)) do
        local ch = test.embedded(codec.lengthFieldFrame(opts))
        for _, c in ipairs(chunks) do ch:writeInbound(c) end
        assert.equal(after, ch:readInbound())
        assert.equal(after, ch:readInbound())
        assert.is_false(ch:finish())
      end
    end)
  end

  it("reads 1, 2, 3, 4 and 8-byte lengths in either byte order", function()
    for _, w in ipairs { 1, 2, 3, 4, 8 } do
      for _, order in ipairs { "big", "little" } do
        local len = ("\0"):rep(w - 1) .. "\3"
        if order == "little" then len = len:reverse() end
        local ch = test.embedded(codec.lengthFieldFrame {
          lengthFieldLength = w, byteOrder = order, initialBytesToStrip = w, asString = true })
        ch:writeInbound(len .. "abc" .. len .. "xyz")
        assert.equal("abc", ch:readInbound(), w .. " " .. order)
        assert.equal("xyz", ch:readInbound())
      end
    end
  end)

  it("fails a negative or impossible length with CorruptedFrame and goes on after the header", function()
    local ch = test.embedded(codec.lengthFieldFrame { lengthFieldLength = 8, initialBytesToStrip = 8, asString = true })
    local ok, err = pcall(ch.writeInbound, ch, "\255\255\255\255\255\255\255\254" .. "\0\0\0\0\0\0\0\2ok")
    assert.is_false(ok)
    assert.equal("CorruptedFrame", err.kind)
    assert.equal("CorruptedFrame: negative length field -2 (at lengthFieldOffset 0)", err.message)
    assert.equal("ok", ch:readInbound())
    ch = test.embedded(codec.lengthFieldFrame { lengthFieldLength = 2, lengthAdjustment = -3 })
    ok, err = pcall(ch.writeInbound, ch, "\0\1")
    assert.equal("CorruptedFrame: adjusted frame length 0 is less than lengthFieldOffset + lengthFieldLength (2)",
      tostring(err))
  end)
end)

describe("frames over the limit", function()
  it("line, fail-fast: the error as soon as the limit is passed, then the next line decodes", function()
    local ch = test.embedded(codec.lineFrame { maxLength = 1024, failFast = true, asString = true })
    local ok, err = pcall(ch.writeInbound, ch, ("x"):rep(5000))
    assert.is_false(ok)
    assert.equal("TooLongFrame", err.kind)
    assert.equal(1024, err.limit)
    assert.equal(5000, err.length)
    assert.equal("TooLongFrame: line exceeds maxLength 1024 (5000 bytes so far), discarding to the next end of line",
      err.message)
    assert.is_false(ch:writeInbound(("x"):rep(5000))) -- still discarding, no second error
    assert.is_true(ch:writeInbound("yyy\nhello\n"))
    assert.equal("hello", ch:readInbound())
    assert.is_false(ch:finish())
  end)

  it("line, not fail-fast: the error at the end of the line, with its length; the next line decodes", function()
    local ch = test.embedded(codec.lineFrame { maxLength = 1024, asString = true })
    assert.is_false(ch:writeInbound(("x"):rep(5000)))
    local ok, err = pcall(ch.writeInbound, ch, "yyy\r\nhello\n")
    assert.is_false(ok)
    assert.equal("TooLongFrame: line of 5003 bytes exceeds maxLength 1024", tostring(err))
    assert.equal(5003, err.length)
    assert.equal("hello", ch:readInbound())
  end)

  it("delimiter, both ways", function()
    for _, ff in ipairs { true, false } do
      local ch = test.embedded(codec.delimiterFrame { delimiter = "\0", maxFrameLength = 10, failFast = ff, asString = true })
      local ok, err = pcall(ch.writeInbound, ch, ("z"):rep(30))
      assert.equal(not ff, ok)
      if ff then
        assert.equal("TooLongFrame: frame exceeds maxFrameLength 10 (30 bytes so far), discarding to the next delimiter",
          err.message)
      end
      ok, err = pcall(ch.writeInbound, ch, "zz\0good\0")
      assert.equal(ff, ok)
      if not ff then assert.equal("TooLongFrame: frame of 32 bytes exceeds maxFrameLength 10", err.message) end
      assert.equal("good", ch:readInbound())
    end
  end)

  it("length field, both ways: the frame is skipped without being buffered", function()
    for _, ff in ipairs { true, false } do
      local ch = test.embedded(codec.lengthFieldFrame {
        lengthFieldLength = 4, initialBytesToStrip = 4, maxFrameLength = 100, failFast = ff, asString = true })
      local ok, err = pcall(ch.writeInbound, ch, "\0\0\3\232" .. ("q"):rep(500)) -- 1000 bytes announced
      assert.equal(not ff, ok)
      if ff then assert.equal("TooLongFrame: frame of 1004 bytes exceeds maxFrameLength 100, discarding it", err.message) end
      ok, err = pcall(ch.writeInbound, ch, ("q"):rep(500) .. "\0\0\0\2ok")
      assert.equal(ff, ok)
      if not ff then
        assert.equal("TooLongFrame: frame of 1004 bytes exceeds maxFrameLength 100", err.message)
        assert.equal(1004, err.length)
        assert.equal(100, err.limit)
      end
      assert.equal("ok", ch:readInbound())
    end
  end)
end)

describe("Lua decoders", function()
  it("are called while they make progress and wait when they neither read nor emit", function()
    local calls = 0
    local ch = test.embedded(codec.decoder {
      decode = function(_, _, buf, out)
        calls = calls + 1
        if buf:readableBytes() >= 2 then out[#out + 1] = buf:readString(2) end
      end,
    })
    ch:writeInbound("abcde")
    assert.equal(3, calls) -- "ab", "cd", then "e" alone: nothing, so it waits
    assert.equal("ab", ch:readInbound())
    assert.equal("cd", ch:readInbound())
    assert.is_nil(ch:readInbound())
    ch:writeInbound("f")
    assert.equal("ef", ch:readInbound())
  end)

  it("may consume without emitting (a header) and emit any Lua value", function()
    local ch = test.embedded(codec.decoder {
      decode = function(self, _, buf, out)
        if not self.header then
          if buf:readableBytes() < 2 then return end
          self.header = buf:readString(2)
        elseif buf:readableBytes() >= 1 then
          out[#out + 1] = { header = self.header, body = buf:readString(1) }
          self.header = nil
        end
      end,
    })
    ch:writeInbound("h1")
    assert.is_nil(ch:readInbound())
    ch:writeInbound("Xh2Y")
    assert.same({ header = "h1", body = "X" }, ch:readInbound())
    assert.same({ header = "h2", body = "Y" }, ch:readInbound())
  end)

  it("keep per-channel state in self, which falls back to the spec", function()
    local spec = {
      prefix = ">",
      decode = function(self, _, buf, out)
        if buf:readableBytes() == 0 then return end
        self.count = (self.count or 0) + 1
        out[#out + 1] = self.prefix .. self.count .. buf:readString(1)
      end,
    }
    local factory = codec.decoder(spec)
    local a, b = test.embedded(factory), test.embedded(factory)
    a:writeInbound("xy")
    b:writeInbound("z")
    assert.equal(">1x", a:readInbound())
    assert.equal(">2y", a:readInbound())
    assert.equal(">1z", b:readInbound())
    assert.is_nil(rawget(spec, "count"))
  end)

  it("fail with DecoderError when they emit without consuming", function()
    local ch = test.embedded(codec.decoder {
      name = "stuck",
      decode = function(_, _, _, out) out[#out + 1] = "again" end,
    })
    local ok, err = pcall(ch.writeInbound, ch, "x")
    assert.is_false(ok)
    assert.equal("DecoderError", err.kind)
    assert.equal("DecoderError: handler 'stuck#0': decode produced a message without consuming any bytes", err.message)
    assert.equal("again", ch:readInbound()) -- what it emitted still went on, as in Netty
    assert.is_nil(ch:readInbound())
  end)

  it("report a raising decode through exceptionCaught, drop what it emitted in that call, and go on", function()
    local ch = test.embedded(codec.decoder {
      name = "fragile",
      decode = function(_, _, buf, out)
        local s = buf:readString(1)
        out[#out + 1] = s
        if s == "!" then error("boom") end
      end,
    })
    local ok, err = pcall(ch.writeInbound, ch, "a!b")
    assert.is_false(ok)
    assert.matches("^handler 'fragile#0' decode: .*codec_spec.lua:%d+: boom", err)
    assert.matches("^spec/codec_spec.lua:%d+: boom$", err.message)
    assert.equal("fragile#0", err.handler)
    assert.equal("decode", err.event)
    assert.equal("a", ch:readInbound())
    assert.is_nil(ch:readInbound()) -- "!" raised: the bytes it left ("b") are dropped with it
    ch:writeInbound("c")
    assert.equal("c", ch:readInbound())
    assert.is_nil(ch:readInbound())
  end)

  it("never decode again the bytes that made decode raise: one bad input, one exceptionCaught", function()
    local calls, trace = 0, {}
    local ch = test.embedded(codec.decoder {
      name = "picky",
      decode = function(_, _, buf)
        calls = calls + 1
        if buf:getU8(buf:readerIndex()) == 33 then error("bad header", 0) end -- "!": raises, consumes nothing
      end,
    }, recorder(trace))
    ch:writeInbound("!xyz")
    assert.is_false(ch:finish()) -- no decodeLast on "!xyz": it would raise on it again
    assert.equal(1, calls)
    assert.equal(1, #trace)
  end)

  it("get their input lent for the call only", function()
    local kept
    local ch = test.embedded(codec.decoder {
      decode = function(_, _, buf, out)
        kept = buf
        out[#out + 1] = buf:readString()
      end,
    })
    ch:writeInbound("abc")
    assert.equal("abc", ch:readInbound())
    assert.has_error(function() kept:readableBytes() end, "lupine.Buffer used after release or hand-off")
    ch = test.embedded(codec.decoder { decode = function(_, _, buf, out) out[1] = buf end })
    local ok, err = pcall(ch.writeInbound, ch, "abc")
    assert.is_false(ok)
    assert.matches("decode put its input buffer in out", err)
    ch = test.embedded(codec.decoder {
      name = "rude",
      decode = function(self, _, buf)
        if not self.done then buf:release() end
        self.done = true
      end,
    })
    ok, err = pcall(ch.writeInbound, ch, "abc")
    assert.equal("DecoderError: handler 'rude#0': decode released or handed on its input buffer", tostring(err))
    assert.is_false(ch:writeInbound("more")) -- a new cumulation starts; nothing crashed
  end)

  it("bound what they leave undecoded (maxCumulation)", function()
    local ch = test.embedded(codec.decoder { name = "lazy", maxCumulation = 100, decode = function() end })
    ch:writeInbound(("a"):rep(100))
    local ok, err = pcall(ch.writeInbound, ch, "b")
    assert.is_false(ok)
    assert.equal("TooLongFrame: 101 bytes not decoded exceed maxCumulation 100 of handler 'lazy#0', discarding them",
      err.message)
    assert.equal(101, err.length)
    assert.equal(100, err.limit)
  end)

  it("run decodeLast once when the input ends (default: decode, if bytes are left)", function()
    local ch = test.embedded(codec.decoder {
      decode = function(_, _, buf, out)
        if buf:readableBytes() >= 3 then out[#out + 1] = buf:readString(3) end
      end,
      decodeLast = function(_, _, buf, out) out[#out + 1] = "last:" .. buf:readString() end,
    })
    ch:writeInbound("abcde")
    assert.equal("abc", ch:readInbound())
    assert.is_true(ch:finish())
    assert.equal("last:de", ch:readInbound())
    local calls = {}
    ch = test.embedded(codec.decoder {
      decode = function(_, _, buf, out)
        calls[#calls + 1] = buf:readableBytes()
        if buf:readableBytes() >= 3 then out[#out + 1] = buf:readString(3) end
      end,
    })
    ch:writeInbound("ab")
    assert.is_false(ch:finish()) -- one more decode with "ab": still nothing
    assert.same({ 2, 2 }, calls)
  end)
end)

describe("encoders", function()
  it("lengthFieldPrepender writes the length before each message", function()
    local ch = test.embedded(codec.lengthFieldPrepender { lengthFieldLength = 2 })
    assert.is_true(ch:writeOutbound("hello", lupine.buffer("!")))
    assert.equal("\0\5hello", ch:readOutbound():toString())
    assert.equal("\0\1!", ch:readOutbound():toString())
    ch = test.embedded(codec.lengthFieldPrepender {
      lengthFieldLength = 4, byteOrder = "little", lengthAdjustment = 1, lengthIncludesLengthFieldLength = true })
    ch:writeOutbound("abc")
    assert.equal("\8\0\0\0abc", ch:readOutbound():toString())
  end)

  it("lengthFieldPrepender fails the write of a message its field cannot hold", function()
    local ch = test.embedded(codec.lengthFieldPrepender { lengthFieldLength = 1 })
    local f = ch:write(("x"):rep(256), lupine.promise())
    ch:flush()
    assert.is_true(f:isDone())
    assert.equal("TooLongFrame: frame length 256 does not fit a 1-byte length field (at most 255)", tostring(f:cause()))
    assert.is_nil(ch:readOutbound())
  end)

  it("lengthFieldPrepender and lengthFieldFrame make a round trip", function()
    local out = test.embedded(codec.lengthFieldPrepender { lengthFieldLength = 3 })
    out:writeOutbound("one", "", ("x"):rep(70000))
    local wire = {}
    for _, b in ipairs(out:outboundMessages()) do wire[#wire + 1] = b:toString() end
    local inb = test.embedded(codec.lengthFieldFrame { lengthFieldLength = 3, initialBytesToStrip = 3, asString = true })
    inb:writeInbound(table.concat(wire))
    assert.equal("one", inb:readInbound())
    assert.equal("", inb:readInbound())
    assert.equal(70000, #inb:readInbound())
  end)

  it("a Lua encoder turns accepted messages into bytes and passes the others", function()
    local enc = codec.encoder {
      accept = function(_, msg) return type(msg) == "table" end,
      encode = function(_, _, msg, out) out:writeString(msg.k .. "=" .. msg.v .. "\n") end,
    }
    local ch = test.embedded(enc)
    ch:writeOutbound({ k = "a", v = "1" }, "raw")
    assert.equal("a=1\n", ch:readOutbound():toString())
    assert.equal("raw", ch:readOutbound())
  end)

  it("a raising encode fails that write", function()
    local ch = test.embedded(codec.encoder { encode = function() error("cannot encode") end })
    local f = ch:write({}, lupine.promise())
    ch:flush()
    assert.is_false(f:isSuccess())
    assert.matches("cannot encode", tostring(f:cause()))
  end)
end)

-- ---- over real sockets ------------------------------------------------------------------

describe("decoders over real sockets", function()
  local servers = {}
  after_each(function()
    for _, s in ipairs(servers) do s:close() end
    servers = {}
  end)

  local function serve(init, options)
    local s = test.server(init, { options = options })
    servers[#servers + 1] = s
    return s
  end

  it("give the same frames when the input arrives one byte per read", function()
    local trace, nread = {}, 0
    local counter = { channelRead = function(_, ctx, buf)
      nread = nread + buf:readableBytes()
      ctx:fireChannelRead(buf)
    end }
    local s = serve(function(ch)
      ch.pipeline:addLast(counter)
      ch.pipeline:addLast(codec.lineFrame { maxLength = 4, asString = true })
      ch.pipeline:addLast(recorder(trace))
    end)
    local input = "ab\r\ncd\n123456\nxy\r\n"
    local c = test.client(s.port)
    for i = 1, #input do
      c:send(input:sub(i, i))
      test.eventually(function() return nread == i end) -- each byte its own read
    end
    test.eventually(function() return #trace == 4 end)
    assert.equal(show { "ab", "cd", "!TooLongFrame", "xy" }, show(trace))
    c:close()
  end)

  it("keep the cumulation bounded when a peer sends an endless line", function()
    local errors, lines = {}, {}
    local s = serve(function(ch)
      ch.pipeline:addLast(codec.lineFrame { maxLength = 1024, failFast = true, asString = true })
      ch.pipeline:addLast {
        channelRead = function(_, _, line) lines[#lines + 1] = line end,
        exceptionCaught = function(_, _, err) errors[#errors + 1] = err end,
      }
    end)
    local c = test.client(s.port)
    local chunk = ("x"):rep(64 * 1024)
    local peak = 0
    local before = loop:stats().poolLive
    for _ = 1, 64 do -- 4 MiB without an end of line
      c:send(chunk)
      lupine.loop():runFor(0.002)
      peak = math.max(peak, loop:stats().poolLive - before)
    end
    test.eventually(function() return #errors == 1 end)
    c:send("tail\nhello\n")
    test.eventually(function() return #lines == 1 end)
    assert.equal("hello", lines[1])
    assert.equal(1, #errors)
    assert.equal("TooLongFrame", errors[1].kind)
    -- Buffers held at any time: a few reads' worth, not 4 MiB of cumulation.
    assert.is_true(peak <= 16, "pool blocks held at the peak: " .. peak)
    c:close()
  end)

  it("run decodeLast when the peer closes", function()
    local got = {}
    local s = serve(function(ch)
      ch.pipeline:addLast(codec.decoder {
        decode = function(_, _, buf, out)
          local i = buf:indexOf(";")
          if i then
            out[#out + 1] = buf:readString(i - buf:readerIndex())
            buf:skip(1)
          end
        end,
        decodeLast = function(_, _, buf, out)
          if buf:isReadable() then out[#out + 1] = "last:" .. buf:readString() end
        end,
      })
      ch.pipeline:addLast { channelRead = function(_, _, m) got[#got + 1] = m end }
    end)
    local c = test.client(s.port)
    c:send("a;b;tail")
    test.eventually(function() return #got == 2 end)
    c:close()
    test.eventually(function() return #got == 3 end)
    assert.same({ "a", "b", "last:tail" }, got)
  end)

  it("with half-closure, run decodeLast at the input shutdown, and only then", function()
    local got, lasts, closed = {}, 0, false
    local s = serve(function(ch)
      ch.pipeline:addLast(codec.decoder {
        decode = function(_, _, buf, out)
          if buf:readableBytes() >= 2 then out[#out + 1] = buf:readString(2) end
        end,
        decodeLast = function(_, _, buf, out)
          lasts = lasts + 1
          out[#out + 1] = "last:" .. buf:readString()
        end,
      })
      ch.pipeline:addLast {
        channelRead = function(_, _, m) got[#got + 1] = m end,
        userEventTriggered = function(_, ctx, ev)
          if ev.kind == "inputShutdown" then ctx:writeAndFlush("bye", function() ctx:close() end) end
        end,
        channelInactive = function() closed = true end,
      }
    end, { allowHalfClosure = true })
    local c = test.client(s.port)
    c:send("abc")
    c.channel:shutdownOutput()
    assert.equal("bye", c:receive(3))
    test.eventually(function() return closed end)
    assert.same({ "ab", "last:c" }, got)
    assert.equal(1, lasts)
    c:close()
  end)

  it("hand the cumulation to the next handler when the decoder is removed mid-stream", function()
    local lines, raw = {}, {}
    local s = serve(function(ch)
      ch.pipeline:addLast("lines", codec.lineFrame { asString = true })
      ch.pipeline:addLast("upgrade", {
        channelRead = function(_, ctx, msg)
          if type(msg) == "string" then
            lines[#lines + 1] = msg
            if msg == "STARTRAW" then ctx.pipeline:remove("lines") end
          else
            raw[#raw + 1] = msg:readString()
          end
        end,
      })
    end)
    local c = test.client(s.port)
    c:send("hello\nSTARTRAW\nraw bytes\nno line end")
    test.eventually(function() return #raw >= 1 end)
    c:send(" and more")
    test.eventually(function() return table.concat(raw) == "raw bytes\nno line end and more" end)
    assert.same({ "hello", "STARTRAW" }, lines)
    c:close()
  end)

  it("replaced by another decoder, give it the bytes left (a protocol switch)", function()
    local got = {}
    local s = serve(function(ch)
      ch.pipeline:addLast("frames", codec.lineFrame { asString = true })
      ch.pipeline:addLast("app", {
        channelRead = function(_, ctx, msg)
          got[#got + 1] = msg
          if msg == "BINARY" then
            ctx.pipeline:replace("frames", "frames",
              codec.lengthFieldFrame { lengthFieldLength = 1, initialBytesToStrip = 1, asString = true })
          end
        end,
      })
    end)
    local c = test.client(s.port)
    c:send("text\nBINARY\n\3abc\2d")
    test.eventually(function() return #got == 3 end)
    c:send("e")
    test.eventually(function() return #got == 4 end)
    assert.same({ "text", "BINARY", "abc", "de" }, got)
    c:close()
  end)

  it("with autoRead off, deliver one frame per read() demand and hold the rest", function()
    local got, ctxs = {}, {}
    local s = serve(function(ch)
      ch.pipeline:addLast(codec.lineFrame { asString = true })
      ch.pipeline:addLast {
        channelActive = function(_, ctx)
          ctxs[1] = ctx
          ctx:read()
        end,
        channelRead = function(_, _, line) got[#got + 1] = line end,
      }
    end, { autoRead = false })
    local c = test.client(s.port)
    c:send("1\n2\n3\n")
    test.eventually(function() return #got == 1 end)
    loop:runFor(0.1)
    assert.same({ "1" }, got) -- the other two are held
    ctxs[1]:read()
    test.eventually(function() return #got == 2 end)
    loop:runFor(0.05)
    assert.same({ "1", "2" }, got)
    ctxs[1]:read()
    ctxs[1]:read() -- one frame held, one read from the socket
    c:send("4\n")
    test.eventually(function() return #got == 4 end)
    assert.same({ "1", "2", "3", "4" }, got)
    c:close()
    ctxs[1]:close() -- reading is off: this side would not notice the peer's close
  end)
end)
