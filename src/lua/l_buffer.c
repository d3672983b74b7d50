// l_buffer.c: lupine.Buffer, a box around an lp_buf (see STYLE.md).
//
// The box owns one reference; NULL in the box means released or handed off
// (written to a channel, which now owns the bytes). Indexes are 0-based byte
// offsets, as in Netty. Integers: U/I 8, 16, 24, 32, 64, big-endian unless the
// name ends in LE; U64 values above 2^63-1 read back as negative integers
// (Lua integers are signed 64-bit); writes truncate to the width, as Netty's.
#include "lbind.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef l_buffer_box l_buffer;

#define DEFAULT_CAPACITY 256

static const char *const used_msg = "lupine.Buffer used after release or hand-off";

lp_buf *l_buffer_test(lua_State *L, int i) {
  l_buffer *box = l_testudata(L, i, &l_key_buffer);
  return box ? box->buf : NULL;
}

lp_buf *l_buffer_check(lua_State *L, int i) {
  l_buffer *box = l_checkudata(L, i, &l_key_buffer, "lupine.Buffer");
  if (!box->buf) luaL_error(L, "%s", used_msg);
  return box->buf;
}

lp_buf *l_buffer_take(lua_State *L, int i) {
  l_buffer *box = l_checkudata(L, i, &l_key_buffer, "lupine.Buffer");
  if (!box->buf) luaL_error(L, "%s", used_msg);
  lp_buf *b = box->buf;
  box->buf = NULL;
  return b;
}

// A buffer lent to a handler: its box has no finalizer (a finalizer costs a
// few hundred instructions per read), so the dispatch settles it when the
// handler returns: a box that still holds its buffer (kept, not handed on)
// gets the finalizer then; a box handed on is left for the GC to drop cheaply.
void l_buffer_push_lent(lua_State *L, lp_buf *b) {
  l_buffer *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->l_tag = &l_key_buffer;
  box->buf = b;
  l_setmetatable(L, &l_key_buffer_lent);
}

void l_buffer_settle(lua_State *L, int idx) {
  l_buffer *box = lua_touserdata(L, idx);
  if (box && box->buf) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &l_key_buffer);
    lua_setmetatable(L, idx < 0 ? idx - 1 : idx);
  }
}

void l_buffer_push(lua_State *L, lp_buf *b) {
  l_buffer *box = l_newudata(L, sizeof *box, 0, &l_key_buffer);
  box->buf = b;
}

static void push_new(lua_State *L, lp_buf *b) {
  if (!b) luaL_error(L, "lupine.Buffer: out of memory");
  l_buffer_push(L, b);
}

int l_buffer_new(lua_State *L) {
  lp_pool *pool = l_pool(L);
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, 1, &n);
    push_new(L, lp_buf_from(pool, s, n));
    return 1;
  }
  lua_Integer cap = l_optinteger(L, 1, DEFAULT_CAPACITY);
  if (cap < 0 || (lua_Unsigned)cap > LP_BUF_MAX)
    return luaL_error(L, "lupine.buffer: capacity %I out of range (0 to %I)", cap, (lua_Integer)LP_BUF_MAX);
  push_new(L, lp_buf_new(pool, (size_t)cap));
  return 1;
}

// ---- argument helpers ---------------------------------------------------------

// A count or index argument: a non-negative integer.
static size_t check_size(lua_State *L, int i, const char *what) {
  lua_Integer v = l_checkinteger(L, i);
  if (v < 0) luaL_error(L, "lupine.Buffer: %s must not be negative (got %I)", what, v);
  return (size_t)v;
}

static size_t opt_size(lua_State *L, int i, size_t def, const char *what) {
  return lua_isnoneornil(L, i) ? def : check_size(L, i, what);
}

static void need_readable(lua_State *L, const lp_buf *b, size_t n, const char *op) {
  if (n > lp_buf_readable(b))
    luaL_error(L, "lupine.Buffer: %s needs %I readable bytes, %I left", op, (lua_Integer)n,
               (lua_Integer)lp_buf_readable(b));
}

// index .. index+n must lie below limit (writerIndex for gets, capacity for sets).
static void need_range(lua_State *L, size_t index, size_t n, size_t limit, const char *limit_name) {
  if (index > limit || n > limit - index)
    luaL_error(L, "lupine.Buffer: index %I + %I out of range (%s %I)", (lua_Integer)index, (lua_Integer)n,
               limit_name, (lua_Integer)limit);
}

static void grow(lua_State *L, lp_buf *b, size_t n) {
  int rc = lp_buf_reserve(b, n);
  if (rc == -ENOSPC)
    luaL_error(L, "lupine.Buffer: cannot grow by %I bytes: %s", (lua_Integer)n,
               (b->flags & LP_BUF_SLICE) ? "a slice has a fixed capacity" : "past the 1 GiB limit");
  if (rc) luaL_error(L, "lupine.Buffer: cannot grow by %I bytes: out of memory", (lua_Integer)n);
}

// ---- integers -------------------------------------------------------------------

// Upvalues: 1 width, 2 signed, 3 big-endian, 4 name.
typedef struct {
  int width;
  bool is_signed, be;
  const char *name;
} int_kind;

static int_kind kind_of(lua_State *L) {
  int_kind k;
  k.width = (int)lua_tointeger(L, lua_upvalueindex(1));
  k.is_signed = lua_toboolean(L, lua_upvalueindex(2));
  k.be = lua_toboolean(L, lua_upvalueindex(3));
  k.name = lua_tostring(L, lua_upvalueindex(4));
  return k;
}

static lua_Integer to_lua(uint64_t v, const int_kind *k) {
  if (k->is_signed && k->width < 8) {
    uint64_t sign = (uint64_t)1 << (k->width * 8 - 1);
    if (v & sign) v |= ~((sign << 1) - 1);
  }
  return (lua_Integer)v; // U64 above 2^63-1 wraps to negative: documented above
}

static int int_read(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  int_kind k = kind_of(L);
  need_readable(L, b, (size_t)k.width, k.name);
  uint64_t v;
  lp_buf_read_uint(b, k.width, k.be, &v);
  lua_pushinteger(L, to_lua(v, &k));
  return 1;
}

static int int_get(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  int_kind k = kind_of(L);
  size_t index = check_size(L, 2, "index");
  need_range(L, index, (size_t)k.width, b->wr, "writerIndex");
  uint64_t v;
  lp_buf_get_uint(b, index, k.width, k.be, &v);
  lua_pushinteger(L, to_lua(v, &k));
  return 1;
}

static int int_write(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  int_kind k = kind_of(L);
  lua_Integer v = l_checkinteger(L, 2);
  grow(L, b, (size_t)k.width);
  lp_buf_write_uint(b, k.width, k.be, (uint64_t)v);
  lua_settop(L, 1);
  return 1;
}

static int int_set(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  int_kind k = kind_of(L);
  size_t index = check_size(L, 2, "index");
  lua_Integer v = l_checkinteger(L, 3);
  need_range(L, index, (size_t)k.width, b->cap, "capacity");
  lp_buf_set_uint(b, index, k.width, k.be, (uint64_t)v);
  lua_settop(L, 1);
  return 1;
}

static void add_int_methods(lua_State *L) {
  static const struct {
    const char *suffix;
    int width;
    bool is_signed;
  } kinds[] = {{"U8", 1, false},  {"I8", 1, true},  {"U16", 2, false}, {"I16", 2, true}, {"U24", 3, false},
               {"I24", 3, true},  {"U32", 4, false}, {"I32", 4, true}, {"U64", 8, false}, {"I64", 8, true}};
  static const struct {
    const char *prefix;
    lua_CFunction fn;
  } ops[] = {{"read", int_read}, {"get", int_get}, {"write", int_write}, {"set", int_set}};
  for (size_t i = 0; i < LP_ARRAY_LEN(kinds); i++) {
    for (int le = 0; le <= (kinds[i].width > 1); le++) {
      for (size_t o = 0; o < LP_ARRAY_LEN(ops); o++) {
        char name[32];
        snprintf(name, sizeof name, "%s%s%s", ops[o].prefix, kinds[i].suffix, le ? "LE" : "");
        lua_pushinteger(L, kinds[i].width);
        lua_pushboolean(L, kinds[i].is_signed);
        lua_pushboolean(L, !le);
        lua_pushstring(L, name);
        lua_pushcclosure(L, ops[o].fn, 4);
        lua_setfield(L, -2, name);
      }
    }
  }
}

// ---- indexes and sizes ----------------------------------------------------------

static int buffer_readable_bytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_buf_readable(l_buffer_check(L, 1)));
  return 1;
}

static int buffer_writable_bytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_buf_writable(l_buffer_check(L, 1)));
  return 1;
}

static int buffer_capacity(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)l_buffer_check(L, 1)->cap);
  return 1;
}

static int buffer_reader_index(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_pushinteger(L, (lua_Integer)b->rd);
    return 1;
  }
  size_t i = check_size(L, 2, "readerIndex");
  if (i > b->wr)
    return luaL_error(L, "lupine.Buffer: readerIndex %I beyond writerIndex %I", (lua_Integer)i, (lua_Integer)b->wr);
  b->rd = i;
  lua_settop(L, 1);
  return 1;
}

static int buffer_writer_index(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_pushinteger(L, (lua_Integer)b->wr);
    return 1;
  }
  size_t i = check_size(L, 2, "writerIndex");
  if (i < b->rd || i > b->cap)
    return luaL_error(L, "lupine.Buffer: writerIndex %I outside readerIndex %I .. capacity %I", (lua_Integer)i,
                      (lua_Integer)b->rd, (lua_Integer)b->cap);
  b->wr = i;
  lua_settop(L, 1);
  return 1;
}

static int buffer_is_readable(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  lua_pushboolean(L, lp_buf_readable(b) >= opt_size(L, 2, 1, "count"));
  return 1;
}

static int buffer_clear(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  b->rd = b->wr = 0;
  lua_settop(L, 1);
  return 1;
}

static int buffer_ensure_writable(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  grow(L, b, check_size(L, 2, "count"));
  lua_settop(L, 1);
  return 1;
}

static int buffer_skip(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  size_t n = check_size(L, 2, "count");
  need_readable(L, b, n, "skip");
  b->rd += n;
  lua_settop(L, 1);
  return 1;
}

static int buffer_discard_read_bytes(lua_State *L) {
  if (lp_buf_discard_read(l_buffer_check(L, 1)) != 0) return luaL_error(L, "lupine.Buffer: discardReadBytes: out of memory");
  lua_settop(L, 1);
  return 1;
}

// ---- bytes and strings -------------------------------------------------------------

static int buffer_read_string(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  size_t n = opt_size(L, 2, lp_buf_readable(b), "count");
  need_readable(L, b, n, "readString");
  lua_pushlstring(L, (const char *)lp_buf_rptr(b), n);
  b->rd += n;
  return 1;
}

static int buffer_get_string(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  size_t index = check_size(L, 2, "index"), n = check_size(L, 3, "count");
  need_range(L, index, n, b->wr, "writerIndex");
  lua_pushlstring(L, (const char *)b->data + index, n);
  return 1;
}

static int buffer_to_string(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  lua_pushlstring(L, (const char *)lp_buf_rptr(b), lp_buf_readable(b));
  return 1;
}

static int buffer_write_string(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  size_t n;
  const char *s = l_checklstring(L, 2, &n);
  grow(L, b, n);
  lp_buf_write(b, s, n);
  lua_settop(L, 1);
  return 1;
}

static int buffer_set_string(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  size_t index = check_size(L, 2, "index"), n;
  const char *s = l_checklstring(L, 3, &n);
  need_range(L, index, n, b->cap, "capacity");
  memcpy(b->data + index, s, n);
  lua_settop(L, 1);
  return 1;
}

// writeBytes(src): appends src's readable bytes; src itself is left as it was.
static int buffer_write_bytes(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  lp_buf *src = l_buffer_check(L, 2);
  size_t n = lp_buf_readable(src);
  grow(L, b, n);
  lp_buf_write(b, lp_buf_rptr(src), n); // src may be b itself: rptr stays valid, grow ran first
  lua_settop(L, 1);
  return 1;
}

static int buffer_read_bytes(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  size_t n = check_size(L, 2, "count");
  need_readable(L, b, n, "readBytes");
  push_new(L, lp_buf_copy(b, b->rd, n));
  b->rd += n;
  return 1;
}

static int buffer_read_slice(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  size_t n = check_size(L, 2, "count");
  need_readable(L, b, n, "readSlice");
  push_new(L, lp_buf_slice(b, b->rd, n));
  b->rd += n;
  return 1;
}

// slice([index, length]) / copy([index, length]): default the readable region.
// Only written bytes (below writerIndex): pooled storage past it may still hold
// another connection's data.
static int region(lua_State *L, lp_buf *(*make)(lp_buf *, size_t, size_t)) {
  lp_buf *b = l_buffer_check(L, 1);
  size_t index = b->rd, n = lp_buf_readable(b);
  if (!lua_isnoneornil(L, 2)) {
    index = check_size(L, 2, "index");
    n = check_size(L, 3, "length");
    need_range(L, index, n, b->wr, "writerIndex");
  }
  push_new(L, make(b, index, n));
  return 1;
}

static int buffer_slice(lua_State *L) { return region(L, lp_buf_slice); }
static int buffer_copy(lua_State *L) { return region(L, lp_buf_copy); }

static int buffer_index_of(lua_State *L) {
  lp_buf *b = l_buffer_check(L, 1);
  char byte;
  const char *needle;
  size_t n;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer v = l_checkinteger(L, 2);
    l_argcheck(L, v >= 0 && v <= 255, 2, "a byte is 0..255");
    byte = (char)v;
    needle = &byte;
    n = 1;
  } else {
    needle = l_checklstring(L, 2, &n);
  }
  size_t from = opt_size(L, 3, b->rd, "from"), to = opt_size(L, 4, b->wr, "to");
  ptrdiff_t at = lp_buf_index_of(b, from, to, needle, n);
  if (at < 0) return 0;
  lua_pushinteger(L, (lua_Integer)at);
  return 1;
}

// ---- lifetime and metamethods ---------------------------------------------------------

static int buffer_release(lua_State *L) { // __gc, __close and :release()
  l_buffer *box = l_checkudata(L, 1, &l_key_buffer, "lupine.Buffer");
  if (box->buf) {
    lp_buf_unref(box->buf);
    box->buf = NULL;
  }
  return 0;
}

static int buffer_len(lua_State *L) { return buffer_readable_bytes(L); }

static int buffer_tostring(lua_State *L) {
  l_buffer *box = l_checkudata(L, 1, &l_key_buffer, "lupine.Buffer");
  if (!box->buf) lua_pushliteral(L, "lupine.Buffer(released)");
  else
    lua_pushfstring(L, "lupine.Buffer(ridx=%I, widx=%I, cap=%I)", (lua_Integer)box->buf->rd,
                    (lua_Integer)box->buf->wr, (lua_Integer)box->buf->cap);
  return 1;
}

static const luaL_Reg meta[] = {
    {"__gc", buffer_release}, {"__close", buffer_release}, {"__len", buffer_len}, {"__tostring", buffer_tostring},
    {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"readableBytes", buffer_readable_bytes},
    {"writableBytes", buffer_writable_bytes},
    {"capacity", buffer_capacity},
    {"readerIndex", buffer_reader_index},
    {"writerIndex", buffer_writer_index},
    {"isReadable", buffer_is_readable},
    {"clear", buffer_clear},
    {"ensureWritable", buffer_ensure_writable},
    {"skip", buffer_skip},
    {"discardReadBytes", buffer_discard_read_bytes},
    {"readString", buffer_read_string},
    {"getString", buffer_get_string},
    {"toString", buffer_to_string},
    {"writeString", buffer_write_string},
    {"setString", buffer_set_string},
    {"writeBytes", buffer_write_bytes},
    {"readBytes", buffer_read_bytes},
    {"readSlice", buffer_read_slice},
    {"slice", buffer_slice},
    {"copy", buffer_copy},
    {"indexOf", buffer_index_of},
    {"release", buffer_release},
    {NULL, NULL},
};

void l_buffer_open(lua_State *L) {
  lua_newtable(L); // the methods, shared by both metatables
  luaL_setfuncs(L, methods, 0);
  add_int_methods(L);
  l_newmetatable(L, "lupine.Buffer", &l_key_buffer); // also sets __name
  luaL_setfuncs(L, meta, 0);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_newtable(L); // the same without __gc, registered under its key only
  luaL_setfuncs(L, meta, 0);
  lua_pushnil(L);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "lupine.Buffer");
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "lupine.Buffer");
  lua_setfield(L, -2, "__metatable");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "__index");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &l_key_buffer_lent);
  lua_pop(L, 1);
}
