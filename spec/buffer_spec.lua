-- lupine.Buffer as Lua sees it: every method of src/lua/l_buffer.c, every
-- integer kind, and every error by its exact text.
local lupine = require "lupine"

local USED = "lupine.Buffer used after release or hand-off"
local SLICE_FIXED = "a slice has a fixed capacity"

-- Capacity-dependent texts: a pooled buffer's capacity is rounded up to its
-- block, so these are built from the buffer's own capacity().
local function cap_error(index, n, cap)
  return ("lupine.Buffer: index %d + %d out of range (capacity %d)"):format(index, n, cap)
end

-- name, width, min, max (as read back), signed
local KINDS = {
  { "U8", 1, 0, 255, false },
  { "I8", 1, -128, 127, true },
  { "U16", 2, 0, 65535, false },
  { "I16", 2, -32768, 32767, true },
  { "U24", 3, 0, 16777215, false },
  { "I24", 3, -8388608, 8388607, true },
  { "U32", 4, 0, 4294967295, false },
  { "I32", 4, -2147483648, 2147483647, true },
  { "U64", 8, 0, -1, false }, -- 2^64-1 reads back as -1 (Lua integers are signed)
  { "I64", 8, math.mininteger, math.maxinteger, true },
}

-- Every kind and byte order: { name = "U16LE", width = 2, min, max }.
local VARIANTS = {}
for _, k in ipairs(KINDS) do
  VARIANTS[#VARIANTS + 1] = { name = k[1], width = k[2], min = k[3], max = k[4] }
  if k[2] > 1 then
    VARIANTS[#VARIANTS + 1] = { name = k[1] .. "LE", width = k[2], min = k[3], max = k[4] }
  end
end

describe("lupine.Buffer", function()
  describe("the type", function()
    -- Every name in the method table; a method added to l_buffer.c fails here
    -- until this spec knows it (and so covers it below).
    local function expected_methods()
      local names = {}
      for _, n in ipairs { "readableBytes", "writableBytes", "capacity", "readerIndex", "writerIndex", "isReadable",
        "clear", "ensureWritable", "skip", "discardReadBytes", "readString", "getString", "toString", "writeString",
        "setString", "writeBytes", "readBytes", "readSlice", "slice", "copy", "indexOf", "release" } do
        names[n] = true
      end
      for _, v in ipairs(VARIANTS) do
        for _, op in ipairs { "read", "get", "write", "set" } do names[op .. v.name] = true end
      end
      return names
    end

    it("has a protected metatable named lupine.Buffer", function()
      local b = lupine.buffer("abc")
      assert.equals("lupine.Buffer", getmetatable(b))
      local mt = debug.getmetatable(b)
      assert.equals("lupine.Buffer", mt.__name)
      assert.is_function(mt.__gc)
      assert.is_function(mt.__close)
      assert.is_function(mt.__len)
      assert.is_function(mt.__tostring)
      assert.equals(getmetatable(b), getmetatable(b:slice()))
    end)

    it("has exactly the methods this spec covers", function()
      local have = {}
      for name, fn in pairs(debug.getmetatable(lupine.buffer()).__index) do
        assert.is_function(fn, name)
        have[name] = true
      end
      assert.same(expected_methods(), have)
    end)

    it("refuses what is not a live buffer as self or argument", function()
      local b = lupine.buffer("abc")
      assert.has_error(function() b.readableBytes({}) end,
        "bad argument #1 to 'readableBytes' (lupine.Buffer expected, got table)")
      assert.has_error(function() b.readU8(42) end, "bad argument #1 to 'readU8' (lupine.Buffer expected, got number)")
      assert.has_error(function() b.release("x") end, "bad argument #1 to 'release' (lupine.Buffer expected, got string)")
      assert.has_error(function() b.toString(io.stdout) end,
        "bad argument #1 to 'toString' (lupine.Buffer expected, got FILE*)")
      assert.has_error(function() b:writeBytes("x") end,
        "bad argument #1 to 'writeBytes' (lupine.Buffer expected, got string)")
      assert.has_error(function() b:writeString({}) end, "bad argument #1 to 'writeString' (string expected, got table)")
      assert.has_error(function() b:getString(0) end, "bad argument #2 to 'getString' (number expected, got no value)")
      assert.has_error(function() b:slice(1) end, "bad argument #2 to 'slice' (number expected, got no value)")
      assert.has_error(function() b:readBytes() end, "bad argument #1 to 'readBytes' (number expected, got no value)")
      assert.equals("abc", b:toString()) -- the failed calls changed nothing
    end)

    it("never wraps index arithmetic at the integer limits", function()
      local b = lupine.buffer("abc")
      local max = math.maxinteger
      for _, v in ipairs(VARIANTS) do
        assert.has_error(function() b["get" .. v.name](b, max) end,
          ("lupine.Buffer: index %d + %d out of range (writerIndex 3)"):format(max, v.width))
        assert.has_error(function() b["set" .. v.name](b, max, 0) end,
          ("lupine.Buffer: index %d + %d out of range (capacity %d)"):format(max, v.width, b:capacity()))
      end
      assert.has_error(function() b:getString(1, max) end,
        ("lupine.Buffer: index 1 + %d out of range (writerIndex 3)"):format(max))
      assert.has_error(function() b:slice(max, 1) end, ("lupine.Buffer: index %d + 1 out of range (writerIndex 3)"):format(max))
      assert.has_error(function() b:copy(1, max) end, ("lupine.Buffer: index 1 + %d out of range (writerIndex 3)"):format(max))
      assert.has_error(function() b:ensureWritable(max) end,
        ("lupine.Buffer: cannot grow by %d bytes: past the 1 GiB limit"):format(max))
      -- the limit counts what is already written: 3 + (2^30 - 2) > 2^30
      assert.has_error(function() b:ensureWritable((1 << 30) - 2) end,
        "lupine.Buffer: cannot grow by 1073741822 bytes: past the 1 GiB limit")
      assert.has_error(function() b:readerIndex(max) end, ("lupine.Buffer: readerIndex %d beyond writerIndex 3"):format(max))
      assert.has_error(function() b:skip(max) end, ("lupine.Buffer: skip needs %d readable bytes, 3 left"):format(max))
      assert.is_nil((b:indexOf("a", max)))
      assert.equals("abc", b:toString())
    end)
  end)

  describe("construction", function()
    it("defaults to 256 bytes", function()
      local b = lupine.buffer()
      assert.equals(256, b:capacity())
      assert.equals(256, b:writableBytes())
      assert.equals("lupine.Buffer(ridx=0, widx=0, cap=256)", tostring(b))
    end)

    it("makes an empty buffer from a capacity", function()
      local b = lupine.buffer(100)
      assert.equals(0, b:readableBytes())
      assert.equals(0, b:readerIndex())
      assert.equals(0, b:writerIndex())
      assert.is_true(b:capacity() >= 100)
      assert.equals(b:capacity(), b:writableBytes())
      local d = lupine.buffer()
      assert.equals(0, d:readableBytes())
      assert.is_true(d:writableBytes() > 0)
      local z = lupine.buffer(0)
      assert.equals(0, #z)
      z:writeString("grows from zero")
      assert.equals("grows from zero", z:toString())
    end)

    it("makes a buffer holding a copy of a string, binary-safe", function()
      local b = lupine.buffer("a\0b\255")
      assert.equals(4, b:readableBytes())
      assert.equals(0, b:readerIndex())
      assert.equals(4, b:writerIndex())
      assert.equals("a\0b\255", b:toString())
      assert.equals("", lupine.buffer(""):toString())
    end)

    it("keeps an exact capacity above 64 KiB", function()
      local b = lupine.buffer(70000)
      assert.equals(70000, b:capacity())
      assert.equals(70000, b:writableBytes())
    end)

    it("refuses a capacity out of range", function()
      assert.has_error(function() lupine.buffer(-1) end,
        "lupine.buffer: capacity -1 out of range (0 to 1073741824)")
      assert.has_error(function() lupine.buffer(1073741825) end,
        "lupine.buffer: capacity 1073741825 out of range (0 to 1073741824)")
      assert.has_error(function() lupine.buffer(math.mininteger) end,
        ("lupine.buffer: capacity %d out of range (0 to 1073741824)"):format(math.mininteger))
      assert.has_error(function() lupine.buffer(true) end, "bad argument #1 to 'buffer' (number expected, got boolean)")
      assert.has_error(function() lupine.buffer(1.5) end, "bad argument #1 to 'buffer' (number has no integer representation)")
    end)
  end)

  describe("indexes and sizes", function()
    it("tracks readableBytes, writableBytes, capacity and #buf", function()
      local b = lupine.buffer(64)
      local cap = b:capacity()
      b:writeString("hello")
      assert.equals(5, b:readableBytes())
      assert.equals(5, #b)
      assert.equals(cap - 5, b:writableBytes())
      b:skip(2)
      assert.equals(3, b:readableBytes())
      assert.equals(3, #b)
      assert.equals(cap - 5, b:writableBytes())
      assert.equals(cap, b:capacity())
    end)

    it("gets and sets readerIndex and writerIndex, returning self from setters", function()
      local b = lupine.buffer("abcdef")
      assert.equals(b, b:readerIndex(2))
      assert.equals(2, b:readerIndex())
      assert.equals("cdef", b:toString())
      assert.equals(b, b:writerIndex(4))
      assert.equals(4, b:writerIndex())
      assert.equals("cd", b:toString())
      b:readerIndex(4) -- equal to writerIndex: allowed
      assert.equals(0, #b)
      b:writerIndex(b:capacity()) -- up to the capacity: allowed
      assert.equals(b:capacity(), b:writerIndex())
      b:readerIndex(0):writerIndex(6)
      assert.equals("abcdef", b:toString())
    end)

    it("refuses readerIndex and writerIndex out of range", function()
      local b = lupine.buffer("abc")
      local cap = b:capacity()
      assert.has_error(function() b:readerIndex(4) end, "lupine.Buffer: readerIndex 4 beyond writerIndex 3")
      assert.has_error(function() b:readerIndex(-1) end, "lupine.Buffer: readerIndex must not be negative (got -1)")
      b:readerIndex(2)
      assert.has_error(function() b:writerIndex(1) end,
        ("lupine.Buffer: writerIndex 1 outside readerIndex 2 .. capacity %d"):format(cap))
      assert.has_error(function() b:writerIndex(cap + 1) end,
        ("lupine.Buffer: writerIndex %d outside readerIndex 2 .. capacity %d"):format(cap + 1, cap))
      assert.has_error(function() b:writerIndex(-1) end, "lupine.Buffer: writerIndex must not be negative (got -1)")
      assert.equals(2, b:readerIndex()) -- failed setters change nothing
      assert.equals(3, b:writerIndex())
    end)

    it("isReadable checks for at least count bytes (default 1)", function()
      local b = lupine.buffer("abc")
      assert.is_true(b:isReadable())
      assert.is_true(b:isReadable(3))
      assert.is_false(b:isReadable(4))
      assert.is_true(b:isReadable(0))
      b:skip(3)
      assert.is_false(b:isReadable())
      assert.has_error(function() b:isReadable(-1) end, "lupine.Buffer: count must not be negative (got -1)")
    end)

    it("clear resets both indexes and keeps the capacity", function()
      local b = lupine.buffer("abcdef")
      local cap = b:capacity()
      b:skip(2)
      assert.equals(b, b:clear())
      assert.equals(0, b:readerIndex())
      assert.equals(0, b:writerIndex())
      assert.equals(cap, b:capacity())
      assert.equals("", b:toString())
    end)

    it("ensureWritable makes room and keeps the bytes", function()
      local b = lupine.buffer("abc")
      b:skip(1)
      assert.equals(b, b:ensureWritable(1000))
      assert.is_true(b:writableBytes() >= 1000)
      assert.equals("bc", b:toString())
      assert.equals(b, b:ensureWritable(0))
      assert.has_error(function() b:ensureWritable(-5) end, "lupine.Buffer: count must not be negative (got -5)")
    end)

    it("ensureWritable past the 1 GiB limit fails without allocating", function()
      local b = lupine.buffer("x")
      assert.has_error(function() b:ensureWritable(1073741824) end,
        "lupine.Buffer: cannot grow by 1073741824 bytes: past the 1 GiB limit")
      assert.equals("x", b:toString())
    end)

    it("skip advances the reader index", function()
      local b = lupine.buffer("abcdef")
      assert.equals(b, b:skip(2))
      assert.equals(2, b:readerIndex())
      b:skip(0)
      assert.equals("cdef", b:toString())
      assert.has_error(function() b:skip(5) end, "lupine.Buffer: skip needs 5 readable bytes, 4 left")
      assert.has_error(function() b:skip(-1) end, "lupine.Buffer: count must not be negative (got -1)")
      b:skip(4)
      assert.equals(0, #b)
    end)

    it("discardReadBytes moves the readable bytes to index 0", function()
      local b = lupine.buffer("abcdef")
      local cap = b:capacity()
      b:skip(2)
      assert.equals(b, b:discardReadBytes())
      assert.equals(0, b:readerIndex())
      assert.equals(4, b:writerIndex())
      assert.equals("cdef", b:getString(0, 4))
      assert.equals(cap - 4, b:writableBytes())
      b:skip(4):discardReadBytes()
      assert.equals(0, b:writerIndex())
    end)

    it("discardReadBytes leaves the bytes under a live slice alone", function()
      local b = lupine.buffer("abcdef")
      local f = b:readSlice(3)
      b:discardReadBytes()
      assert.equals("abc", f:toString())
      assert.equals("def", b:toString())
      assert.equals(0, b:readerIndex())
    end)
  end)

  describe("strings", function()
    it("readString reads count bytes, or all by default", function()
      local b = lupine.buffer("hello world")
      assert.equals("hello", b:readString(5))
      assert.equals(5, b:readerIndex())
      assert.equals("", b:readString(0))
      assert.equals(" world", b:readString())
      assert.equals("", b:readString())
      assert.equals(11, b:readerIndex())
    end)

    it("readString refuses more than is readable, and negative counts", function()
      local b = lupine.buffer("abc")
      assert.has_error(function() b:readString(10) end, "lupine.Buffer: readString needs 10 readable bytes, 3 left")
      assert.has_error(function() b:readString(-1) end, "lupine.Buffer: count must not be negative (got -1)")
      assert.equals(0, b:readerIndex())
    end)

    it("getString reads at an absolute index up to writerIndex, moving nothing", function()
      local b = lupine.buffer("abcd")
      b:skip(3)
      assert.equals("ab", b:getString(0, 2)) -- below readerIndex is fine
      assert.equals("abcd", b:getString(0, 4))
      assert.equals("", b:getString(4, 0))
      assert.equals(3, b:readerIndex())
      assert.has_error(function() b:getString(2, 5) end, "lupine.Buffer: index 2 + 5 out of range (writerIndex 4)")
      assert.has_error(function() b:getString(5, 0) end, "lupine.Buffer: index 5 + 0 out of range (writerIndex 4)")
      assert.has_error(function() b:getString(-1, 1) end, "lupine.Buffer: index must not be negative (got -1)")
      assert.has_error(function() b:getString(0, -1) end, "lupine.Buffer: count must not be negative (got -1)")
    end)

    it("toString shows the readable bytes and moves nothing", function()
      local b = lupine.buffer("abcdef")
      b:skip(1):writerIndex(4)
      assert.equals("bcd", b:toString())
      assert.equals(1, b:readerIndex())
      assert.equals(4, b:writerIndex())
    end)

    it("writeString appends and returns self", function()
      local b = lupine.buffer(4)
      assert.equals(b, b:writeString("ab"))
      b:writeString(""):writeString("c\0d")
      assert.equals("abc\0d", b:toString())
      assert.equals(5, b:writerIndex())
    end)

    it("writeString of 1 MiB grows the buffer", function()
      local b = lupine.buffer(16)
      local cap0 = b:capacity()
      local s = string.rep("0123456789abcdef", 65536)
      assert.equals(1048576, #s)
      b:writeString("<"):writeString(s)
      assert.equals(1048577, #b)
      assert.is_true(b:capacity() >= 1048577)
      assert.is_true(b:capacity() > cap0)
      assert.equals("<", b:readString(1))
      assert.equals(s, b:toString())
    end)

    it("setString writes at an absolute index up to capacity, moving nothing", function()
      local b = lupine.buffer("abcdef")
      local cap = b:capacity()
      assert.equals(b, b:setString(1, "XY"))
      assert.equals("aXYdef", b:toString())
      b:setString(cap - 2, "zz") -- beyond writerIndex, within capacity
      assert.equals(6, b:writerIndex())
      b:writerIndex(cap)
      assert.equals("zz", b:getString(cap - 2, 2))
      assert.has_error(function() b:setString(cap - 1, "zz") end, cap_error(cap - 1, 2, cap))
      assert.has_error(function() b:setString(-1, "z") end, "lupine.Buffer: index must not be negative (got -1)")
    end)
  end)

  describe("integers", function()
    it("has read/get/write/set for every kind, LE only for widths above 1", function()
      local b = lupine.buffer(8)
      for _, v in ipairs(VARIANTS) do
        for _, op in ipairs { "read", "get", "write", "set" } do
          assert.is_function(b[op .. v.name], op .. v.name)
        end
      end
      assert.is_nil(b.readU8LE)
      assert.is_nil(b.writeI8LE)
    end)

    for _, v in ipairs(VARIANTS) do
      it(v.name .. " round-trips its min and max through write/read, get and set", function()
        for _, x in ipairs { v.min, v.max, 1, 0x5a } do
          local b = lupine.buffer(4)
          b:writeString("-")
          assert.equals(b, b["write" .. v.name](b, x))
          assert.equals(1 + v.width, b:writerIndex())
          assert.equals(x, b["get" .. v.name](b, 1))
          assert.equals(0, b:readerIndex())
          b:skip(1)
          assert.equals(x, b["read" .. v.name](b))
          assert.equals(1 + v.width, b:readerIndex())
          assert.equals(0, #b)
          -- set at the very end of the capacity, then read it back with get.
          local at = b:capacity() - v.width
          assert.equals(b, b["set" .. v.name](b, at, x))
          assert.equals(1 + v.width, b:writerIndex())
          b:writerIndex(b:capacity())
          assert.equals(x, b["get" .. v.name](b, at))
        end
      end)

      it(v.name .. " raises on short reads and out-of-range indexes", function()
        local w, name = v.width, v.name
        local b = lupine.buffer(("\0"):rep(w - 1))
        assert.has_error(function() b["read" .. name](b) end,
          ("lupine.Buffer: read%s needs %d readable bytes, %d left"):format(name, w, w - 1))
        assert.has_error(function() b["get" .. name](b, 0) end,
          ("lupine.Buffer: index 0 + %d out of range (writerIndex %d)"):format(w, w - 1))
        assert.has_error(function() b["get" .. name](b, -1) end, "lupine.Buffer: index must not be negative (got -1)")
        local cap = b:capacity()
        assert.has_error(function() b["set" .. name](b, cap - w + 1, 0) end, cap_error(cap - w + 1, w, cap))
        assert.has_error(function() b["set" .. name](b, -1, 0) end, "lupine.Buffer: index must not be negative (got -1)")
        assert.equals(0, b:readerIndex())
      end)
    end

    it("writes big-endian by default and little-endian for LE", function()
      local cases = {
        { "U16", 0x0102, "\1\2" }, { "U16LE", 0x0102, "\2\1" },
        { "I16", -2, "\255\254" }, { "I16LE", -2, "\254\255" },
        { "U24", 0x010203, "\1\2\3" }, { "U24LE", 0x010203, "\3\2\1" },
        { "I24", -2, "\255\255\254" }, { "I24LE", -2, "\254\255\255" },
        { "U32", 0x01020304, "\1\2\3\4" }, { "U32LE", 0x01020304, "\4\3\2\1" },
        { "I32", -2, "\255\255\255\254" }, { "I32LE", -2, "\254\255\255\255" },
        { "U64", 0x0102030405060708, "\1\2\3\4\5\6\7\8" }, { "U64LE", 0x0102030405060708, "\8\7\6\5\4\3\2\1" },
        { "I64", math.mininteger + 1, "\128\0\0\0\0\0\0\1" }, { "I64LE", math.mininteger + 1, "\1\0\0\0\0\0\0\128" },
        { "U8", 0xab, "\171" }, { "I8", -1, "\255" },
      }
      for _, c in ipairs(cases) do
        local b = lupine.buffer(1)
        b["write" .. c[1]](b, c[2])
        assert.equals(c[3], b:toString(), c[1])
        assert.equals(c[3], b:getString(0, #c[3]), c[1])
        -- set writes the same bytes at an index.
        local s = lupine.buffer(("."):rep(10))
        s["set" .. c[1]](s, 1, c[2])
        assert.equals("." .. c[3] .. ("."):rep(9 - #c[3]), s:toString(), c[1])
      end
    end)

    it("reads literal bytes in either order", function()
      local b = lupine.buffer("\1\2\3\4\5\6\7\8")
      assert.equals(0x01, b:getU8(0))
      assert.equals(0x0102, b:getU16(0))
      assert.equals(0x0201, b:getU16LE(0))
      assert.equals(0x020304, b:getU24(1))
      assert.equals(0x040302, b:getU24LE(1))
      assert.equals(0x05060708, b:getU32(4))
      assert.equals(0x08070605, b:getU32LE(4))
      assert.equals(0x0102030405060708, b:getU64(0))
      assert.equals(0x0807060504030201, b:getI64LE(0))
      assert.equals(0x0102, b:readU16())
      assert.equals(0x0403, b:readU16LE())
      assert.equals(0x05060708, b:readI32())
      assert.equals(0, #b)
    end)

    it("sign-extends the signed kinds and not the unsigned ones", function()
      local function both(bytes, kind)
        local b = lupine.buffer(bytes)
        return b["getI" .. kind](b, 0), b["getU" .. kind](b, 0)
      end
      local i, u = both("\128", "8")
      assert.equals(-128, i); assert.equals(128, u)
      i, u = both("\255", "8")
      assert.equals(-1, i); assert.equals(255, u)
      i, u = both("\255\254", "16")
      assert.equals(-2, i); assert.equals(65534, u)
      i, u = both("\254\255", "16LE")
      assert.equals(-2, i); assert.equals(65534, u)
      i, u = both("\127\255", "16")
      assert.equals(32767, i); assert.equals(32767, u)
      i, u = both("\128\0\0", "24")
      assert.equals(-8388608, i); assert.equals(8388608, u)
      i, u = both("\0\0\128", "24LE")
      assert.equals(-8388608, i); assert.equals(8388608, u)
      i, u = both("\255\255\255", "24")
      assert.equals(-1, i); assert.equals(16777215, u)
      i, u = both("\255\255\255\255", "32")
      assert.equals(-1, i); assert.equals(4294967295, u)
      i, u = both("\0\0\0\128", "32LE")
      assert.equals(-2147483648, i); assert.equals(2147483648, u)
      i, u = both("\255\255\255\255\255\255\255\255", "64")
      assert.equals(-1, i); assert.equals(-1, u) -- U64 above 2^63-1 wraps to negative
      i, u = both("\128\0\0\0\0\0\0\0", "64")
      assert.equals(math.mininteger, i); assert.equals(math.mininteger, u)
    end)

    it("truncates written values to the width", function()
      local function written(kind, v)
        local b = lupine.buffer(8)
        b["write" .. kind](b, v)
        return b:toString()
      end
      assert.equals("\255", written("U8", 0x1ff))
      assert.equals("\255", written("U8", -1))
      assert.equals("\0", written("U8", 256))
      assert.equals("\200", written("I8", 200))
      assert.equals("\35\69", written("U16", 0x12345))
      assert.equals("\69\35", written("U16LE", 0x12345))
      assert.equals("\255\255", written("U16LE", -1))
      assert.equals("\35\69\103", written("U24", 0x1234567))
      assert.equals("\103\69\35", written("I24LE", 0x1234567))
      assert.equals("\35\69\103\137", written("U32", 0x123456789))
      assert.equals("\128\0\0\0", written("I32", 2147483648))
      -- and read back in range
      local b = lupine.buffer(8)
      b:writeI8(200):writeI16(40000):writeU32(-1)
      assert.equals(-56, b:readI8())
      assert.equals(-25536, b:readI16())
      assert.equals(4294967295, b:readU32())
      local s = lupine.buffer("\0\0")
      s:setU16(0, 0x1ffff)
      assert.equals(0xffff, s:getU16(0))
    end)

    it("refuses a non-integer value", function()
      local b = lupine.buffer(8)
      assert.has_error(function() b:writeU8(1.5) end, "bad argument #1 to 'writeU8' (number has no integer representation)")
      assert.equals(0, b:writerIndex())
    end)
  end)

  describe("buffers from buffers", function()
    it("writeBytes appends another buffer's readable bytes", function()
      local b = lupine.buffer("ab")
      local src = lupine.buffer("xyz")
      src:skip(1)
      assert.equals(b, b:writeBytes(src))
      assert.equals("abyz", b:toString())
      local big = lupine.buffer(string.rep("q", 5000))
      b:writeBytes(big)
      assert.equals(4 + 5000, #b)
      assert.equals("abyz" .. string.rep("q", 5000), b:toString())
    end)

    it("writeBytes from itself doubles the readable bytes", function()
      local b = lupine.buffer("ab")
      b:writeBytes(b)
      assert.equals("abab", b:toString())
      local g = lupine.buffer(string.rep("0123456789", 10))
      g:skip(10):writeBytes(g) -- 90 readable bytes, and growth on the way
      assert.equals(string.rep("0123456789", 18), g:toString())
    end)

    it("writeBytes from a slice overlapping the bytes being written", function()
      local pat = {}
      for i = 0, 299 do pat[#pat + 1] = string.char((i * 7 + 1) % 256) end
      pat = table.concat(pat)
      local b = lupine.buffer(4096)
      b:writeString(pat)
      local s = b:slice(2, 200) -- bytes 2..201; the write goes to 10..209
      b:writerIndex(10)
      b:writeBytes(s)
      assert.equals(pat:sub(1, 10) .. pat:sub(3, 202), b:toString())
    end)

    it("readBytes returns an independent copy and advances", function()
      local b = lupine.buffer("abcdef")
      local c = b:readBytes(3)
      assert.equals("abc", c:toString())
      assert.equals(3, b:readerIndex())
      c:setU8(0, 0x58)
      assert.equals("a", b:getString(0, 1))
      b:setU8(1, 0x59)
      assert.equals("b", c:getString(1, 1))
      c:writeString("zz") -- a copy may grow
      assert.equals("Xbczz", c:toString())
      b:release()
      assert.equals("Xbczz", c:toString())
      local e = lupine.buffer("a"):readBytes(0)
      assert.equals(0, #e)
    end)

    it("readSlice shares the bytes and advances", function()
      local b = lupine.buffer("abcdef")
      b:skip(1)
      local s = b:readSlice(3)
      assert.equals("bcd", s:toString())
      assert.equals(4, b:readerIndex())
      assert.equals(3, s:capacity())
      s:setU8(0, 0x58)
      assert.equals("X", b:getString(1, 1))
      b:setU8(3, 0x59)
      assert.equals("XcY", s:toString())
    end)

    it("readBytes and readSlice refuse more than is readable, and negative counts", function()
      local b = lupine.buffer("abc")
      assert.has_error(function() b:readBytes(4) end, "lupine.Buffer: readBytes needs 4 readable bytes, 3 left")
      assert.has_error(function() b:readSlice(4) end, "lupine.Buffer: readSlice needs 4 readable bytes, 3 left")
      assert.has_error(function() b:readBytes(-1) end, "lupine.Buffer: count must not be negative (got -1)")
      assert.has_error(function() b:readSlice(-2) end, "lupine.Buffer: count must not be negative (got -2)")
      assert.equals(0, b:readerIndex())
    end)

    it("slice() views the readable bytes, with its own indexes", function()
      local b = lupine.buffer("abcdef")
      b:skip(1):writerIndex(5)
      local s = b:slice()
      assert.equals("bcde", s:toString())
      assert.equals(4, s:capacity())
      assert.equals(0, s:readerIndex())
      assert.equals(4, s:writerIndex())
      s:skip(2)
      assert.equals(1, b:readerIndex())
      s:setU8(0, 0x42)
      assert.equals("aBcde", b:getString(0, 5))
      b:setString(4, "E")
      assert.equals("dE", s:toString())
    end)

    it("slice(index, length) views any range of the written bytes, never past writerIndex", function()
      local b = lupine.buffer(64)
      b:writeString("0123456789"):skip(4)
      local s = b:slice(1, 3) -- below the reader index is fine: it was written
      assert.equals("123", s:toString())
      assert.equals(0, #b:slice(10, 0))
      b:setString(20, "secret") -- past writerIndex: not viewable
      local function wr_error(index, n)
        return ("lupine.Buffer: index %d + %d out of range (writerIndex 10)"):format(index, n)
      end
      assert.has_error(function() b:slice(20, 6) end, wr_error(20, 6))
      assert.has_error(function() b:slice(8, 3) end, wr_error(8, 3))
      assert.has_error(function() b:slice(11, 0) end, wr_error(11, 0))
      assert.has_error(function() b:slice(-1, 2) end, "lupine.Buffer: index must not be negative (got -1)")
      assert.has_error(function() b:slice(0, -1) end, "lupine.Buffer: length must not be negative (got -1)")
    end)

    it("a slice has a fixed capacity", function()
      local s = lupine.buffer("abcdef"):slice(1, 3)
      local msg = "lupine.Buffer: cannot grow by 1 bytes: " .. SLICE_FIXED
      assert.has_error(function() s:writeString("x") end, msg)
      assert.has_error(function() s:writeU8(1) end, msg)
      assert.has_error(function() s:ensureWritable(1) end, msg)
      assert.has_error(function() s:writeU32(1) end, "lupine.Buffer: cannot grow by 4 bytes: " .. SLICE_FIXED)
      assert.has_error(function() s:writeBytes(lupine.buffer("xy")) end,
        "lupine.Buffer: cannot grow by 2 bytes: " .. SLICE_FIXED)
      assert.equals("bcd", s:toString())
      -- within its capacity it writes
      s:clear():writeString("XYZ")
      assert.equals("XYZ", s:toString())
      assert.equals(3, s:capacity())
    end)

    it("a slice outlives its parent's growth and release", function()
      local b = lupine.buffer("abcdef")
      local s = b:slice(0, 3)
      b:writeString(string.rep("z", 10000)) -- moves b to new storage
      s:setU8(0, 0x41)
      assert.equals("a", b:getString(0, 1))
      b:setU8(1, 0x42)
      assert.equals("Abc", s:toString())
      b:release()
      assert.equals("Abc", s:toString())
      local ss = s:slice(1, 2)
      s:release()
      assert.equals("bc", ss:toString())
    end)

    it("a slice outlives its parent's garbage collection", function()
      local gone = setmetatable({}, { __mode = "v" })
      local function make()
        local b = lupine.buffer("hello")
        gone[1] = b
        return b:slice(1, 3)
      end
      local s = make()
      collectgarbage()
      collectgarbage() -- the second cycle runs the parent's finalizer
      assert.is_nil(gone[1])
      assert.equals("ell", s:toString())
      s:setU8(0, 0x45)
      assert.equals("Ell", s:toString())
    end)

    it("growth keeps read bytes in place while a slice still shows them", function()
      -- Most of b was read, so growing would rather discard the read part;
      -- the slice of that part must keep its bytes.
      local b = lupine.buffer(64)
      local cap = b:capacity()
      b:writeString("abcd" .. ("q"):rep(cap - 8) .. "wxyz")
      local s = b:slice(0, 4)
      b:skip(cap - 4)
      b:writeBytes(b)
      assert.equals("wxyzwxyz", b:toString())
      assert.equals("abcd", s:toString())
      -- without a slice the same writes discard instead, and the bytes still come out right
      local d = lupine.buffer(64)
      d:writeString("abcd" .. ("q"):rep(cap - 8) .. "wxyz"):skip(cap - 4)
      d:writeBytes(d)
      assert.equals("wxyzwxyz", d:toString())
      assert.equals(cap, d:capacity())
      assert.equals(0, d:readerIndex())
    end)

    it("copy() copies the readable bytes; copy(index, length) any range", function()
      local b = lupine.buffer("abcdef")
      b:skip(2)
      local c = b:copy()
      assert.equals("cdef", c:toString())
      assert.equals(2, b:readerIndex())
      c:setU8(0, 0x43)
      assert.equals("c", b:getString(2, 1))
      b:setU8(3, 0x44)
      assert.equals("Cdef", c:toString())
      local r = b:copy(0, 2)
      assert.equals("ab", r:toString())
      r:writeString("!") -- not a slice: may grow
      assert.equals("ab!", r:toString())
      assert.has_error(function() b:copy(6, 1) end, "lupine.Buffer: index 6 + 1 out of range (writerIndex 6)")
      assert.has_error(function() b:copy(-1, 1) end, "lupine.Buffer: index must not be negative (got -1)")
      assert.has_error(function() b:copy(0, -3) end, "lupine.Buffer: length must not be negative (got -3)")
    end)
  end)

  describe("indexOf", function()
    it("finds a string needle, searching from the reader index by default", function()
      local b = lupine.buffer("hello world")
      assert.equals(0, b:indexOf("h"))
      assert.equals(0, b:indexOf("hello"))
      assert.equals(4, b:indexOf("o w"))
      assert.equals(6, b:indexOf("world"))
      assert.equals(10, b:indexOf("d"))
      assert.is_nil((b:indexOf("xyz")))
      assert.equals(0, select("#", b:indexOf("xyz"))) -- not found: no value at all
      assert.is_nil((b:indexOf("world!")))
      assert.is_nil((b:indexOf("hello world!")))
      b:skip(5)
      assert.equals(7, b:indexOf("o")) -- absolute index, from readerIndex 5
      assert.is_nil((b:indexOf("hello")))
    end)

    it("finds a multi-byte needle after a partial match", function()
      assert.equals(2, lupine.buffer("abababc"):indexOf("ababc"))
      assert.equals(1, lupine.buffer("aaaab"):indexOf("aaab"))
      assert.equals(3, lupine.buffer("a\r\r\r\n"):indexOf("\r\n"))
    end)

    it("finds a byte needle, 0 and 255 included", function()
      local b = lupine.buffer("a\0b\255c")
      assert.equals(1, b:indexOf(0))
      assert.equals(3, b:indexOf(255))
      assert.equals(4, b:indexOf(99))
      assert.is_nil((b:indexOf(100)))
      assert.has_error(function() b:indexOf(256) end, "bad argument #1 to 'indexOf' (a byte is 0..255)")
      assert.has_error(function() b:indexOf(-1) end, "bad argument #1 to 'indexOf' (a byte is 0..255)")
      assert.has_error(function() b:indexOf(1.5) end, "bad argument #1 to 'indexOf' (number has no integer representation)")
      assert.has_error(function() b:indexOf({}) end, "bad argument #1 to 'indexOf' (string expected, got table)")
    end)

    it("honours from and to", function()
      local b = lupine.buffer("abcabc")
      assert.equals(0, b:indexOf("abc", 0, 6))
      assert.equals(3, b:indexOf("abc", 1))
      assert.is_nil((b:indexOf("abc", 1, 5))) -- the match at 3 ends past to
      assert.equals(4, b:indexOf("bc", 4, 6))
      assert.is_nil((b:indexOf("c", 0, 2)))
      assert.equals(2, b:indexOf("c", 0, 1000)) -- to stops at writerIndex
      assert.is_nil((b:indexOf("a", 3, 3)))
      assert.is_nil((b:indexOf("a", 100)))
      assert.equals(3, b:indexOf(97, 1, 4))
      assert.equals(2, b:indexOf("", 2)) -- an empty needle matches at from
      b:skip(3)
      assert.equals(0, b:indexOf("a", 0)) -- from may lie below readerIndex
      -- bytes past writerIndex are not searched
      b:setString(6, "z")
      assert.is_nil((b:indexOf("z", 0, b:capacity())))
      assert.has_error(function() b:indexOf("a", -1) end, "lupine.Buffer: from must not be negative (got -1)")
      assert.has_error(function() b:indexOf("a", 0, -1) end, "lupine.Buffer: to must not be negative (got -1)")
    end)
  end)

  describe("release", function()
    local function every_call(b)
      local other = lupine.buffer("x")
      local calls = {
        readableBytes = {}, writableBytes = {}, capacity = {}, readerIndex = { 0 }, writerIndex = { 0 },
        isReadable = {}, clear = {}, ensureWritable = { 1 }, skip = { 0 }, discardReadBytes = {},
        readString = {}, getString = { 0, 0 }, toString = {}, writeString = { "x" }, setString = { 0, "x" },
        writeBytes = { other }, readBytes = { 0 }, readSlice = { 0 }, slice = {}, copy = {}, indexOf = { "x" },
      }
      local n = 0
      for name, args in pairs(calls) do
        assert.has_error(function() b[name](b, table.unpack(args)) end, USED)
        n = n + 1
      end
      for _, v in ipairs(VARIANTS) do
        assert.has_error(function() b["read" .. v.name](b) end, USED)
        assert.has_error(function() b["get" .. v.name](b, 0) end, USED)
        assert.has_error(function() b["write" .. v.name](b, 0) end, USED)
        assert.has_error(function() b["set" .. v.name](b, 0, 0) end, USED)
        n = n + 4
      end
      assert.has_error(function() return #b end, USED)
      -- as the argument of another buffer's method
      assert.has_error(function() other:writeBytes(b) end, USED)
      assert.equals("x", other:toString())
      return n
    end

    it("makes every method raise after release()", function()
      local b = lupine.buffer("\0\0\1\2")
      assert.is_nil(b:release())
      assert.equals(21 + 4 * #VARIANTS, every_call(b))
      b:release() -- idempotent
      assert.has_error(function() b:readableBytes() end, USED)
    end)

    it("releases at the end of a <close> block", function()
      local kept
      do
        local b <close> = lupine.buffer("x")
        kept = b
        assert.equals("x", b:toString())
      end
      assert.has_error(function() kept:toString() end, USED)
      every_call(kept)
    end)

    it("releases a <close> buffer when the block raises", function()
      local kept
      local ok, err = pcall(function()
        local b <close> = lupine.buffer("x")
        kept = b
        error("boom", 0)
      end)
      assert.is_false(ok)
      assert.equals("boom", err)
      assert.has_error(function() kept:readU8() end, USED)
    end)

    it("tostring shows the indexes, then released", function()
      local b = lupine.buffer("abc")
      b:skip(1)
      assert.equals(("lupine.Buffer(ridx=1, widx=3, cap=%d)"):format(b:capacity()), tostring(b))
      assert.equals("lupine.Buffer(ridx=0, widx=0, cap=70000)", tostring(lupine.buffer(70000)))
      b:release()
      assert.equals("lupine.Buffer(released)", tostring(b))
    end)

    it("#buf is the readable byte count", function()
      local b = lupine.buffer("abcd")
      assert.equals(4, #b)
      b:skip(3)
      assert.equals(1, #b)
      b:writeString("ef")
      assert.equals(3, #b)
    end)
  end)
end)
