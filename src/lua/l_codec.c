// l_codec.c: the codec factories Lua sees as lupine.codec (core._codec):
// lineFrame, delimiterFrame, lengthFieldFrame, fixedLengthFrame,
// lengthFieldPrepender (native handlers over codec.c), proxyProtocol
// (proxy_handler.c), and luaDecoder, the
// cumulating decoder whose step is a Lua function.
//
// Each factory is a lupine.NativeHandler: adding it to a pipeline makes a
// fresh context with its own state, so one factory serves every channel.
//
// A Lua decoder keeps, per context, one registry reference to a table
// { [1] = self (per channel; __index is the spec), [2] = the Buffer box lent
// to decode (its buffer set only during the call), [3] = the out table,
// [4] = the values decoded and not yet fired (a FIFO, qhead..qtail) }. The
// core holds one token per value in that FIFO, in the same order, and calls
// fire_host/drop_host to take the oldest. The reference goes when the context
// is freed.
#include "lbind.h"

#include "codec.h"
#include "log.h"
#include "proxy_protocol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LINE_MAX 8192
#define DEFAULT_DELIMITER_MAX 8192
#define DEFAULT_LENGTH_FIELD_MAX (1 << 20)
#define DEFAULT_MAX_CUMULATION (1 << 20)
#define TYPE_NAME_MAX 64

// Raise on an option name not in known: a typo must not pass silently.
static void check_options(lua_State *L, int t, const char *fn, const char *const *known) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    bool ok = false;
    if (lua_type(L, -2) == LUA_TSTRING && !l_is_cstring(L, -2)) luaL_error(L, "%s: option names " L_NUL_MESSAGE, fn);
    if (lua_type(L, -2) == LUA_TSTRING)
      for (int i = 0; known[i]; i++)
        if (strcmp(lua_tostring(L, -2), known[i]) == 0) ok = true;
    if (!ok) {
      const char *key = luaL_tolstring(L, -2, NULL);
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; known[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, known[i]);
      }
      luaL_pushresult(&b);
      luaL_error(L, "%s: unknown option '%s' (known: %s)", fn, key, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
  }
}

// The options table at index 1 (absent or nil: {}), checked against known.
static int options(lua_State *L, const char *fn, const char *const *known) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  l_checktype(L, 1, LUA_TTABLE);
  check_options(L, 1, fn, known);
  return 1;
}

// The option readers of l_lupine.c, with the factory's name in front of
// their errors ("lineFrame: option 'maxLength' must be ..."): the type and
// range are checked here first, the reading is theirs.
static lua_Integer opt_int(lua_State *L, int t, const char *fn, const char *field, lua_Integer def, lua_Integer min,
                           lua_Integer max) {
  if (lua_getfield(L, t, field) != LUA_TNIL) {
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < min || v > max)
      luaL_error(L, "%s: option '%s' must be an integer from %I to %I", fn, field, min, max);
  }
  lua_pop(L, 1);
  return l_opt_int(L, t, field, def, min, max);
}

static bool opt_bool(lua_State *L, int t, const char *fn, const char *field, bool def) {
  int ty = lua_getfield(L, t, field);
  if (ty != LUA_TNIL && ty != LUA_TBOOLEAN) luaL_error(L, "%s: option '%s' must be a boolean", fn, field);
  lua_pop(L, 1);
  return l_opt_bool(L, t, field, def);
}

static const char *opt_string(lua_State *L, int t, const char *fn, const char *field, const char *def) {
  int ty = lua_getfield(L, t, field);
  if (ty != LUA_TNIL && ty != LUA_TSTRING) luaL_error(L, "%s: option '%s' must be a string", fn, field);
  if (ty == LUA_TSTRING && !l_is_cstring(L, -1)) luaL_error(L, "%s: option '%s' " L_NUL_MESSAGE, fn, field);
  lua_pop(L, 1);
  return l_opt_string(L, t, field, def);
}

static bool byte_order(lua_State *L, int t, const char *fn) {
  const char *o = opt_string(L, t, fn, "byteOrder", "big");
  if (strcmp(o, "big") == 0) return true;
  if (strcmp(o, "little") == 0) return false;
  luaL_error(L, "%s: option 'byteOrder' must be \"big\" or \"little\"", fn);
  return true;
}

// ---- frame decoders ------------------------------------------------------------------------

typedef struct {
  l_native n;
  lp_frame_config cfg;
  bool as_string;
} frame_factory;

static lp_ctx *frame_make(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  LP_UNUSED(L);
  frame_factory *f = (frame_factory *)self;
  return lp_frame_decoder_ctx_new(p, name, &f->cfg, f->as_string);
}

static int new_frame(lua_State *L, const char *fn, const char *type_name, const lp_frame_config *cfg, bool as_string) {
  char why[200];
  if (lp_frame_config_check(cfg, why, sizeof why) != 0) return luaL_error(L, "%s: %s", fn, why);
  frame_factory *f = (frame_factory *)l_native_new(L, sizeof *f, type_name);
  f->n.make = frame_make;
  f->cfg = *cfg;
  f->as_string = as_string;
  return 1;
}

static const lua_Integer limit_max = (lua_Integer)LP_FRAME_LIMIT_MAX;

// lineFrame{ maxLength = 8192, stripDelimiter = true, failFast = false, asString = false }
static int codec_line_frame(lua_State *L) {
  static const char *const known[] = {"maxLength", "stripDelimiter", "failFast", "asString", NULL};
  int t = options(L, "lineFrame", known);
  lp_frame_config c = {.kind = LP_FRAME_LINE};
  c.max = (size_t)opt_int(L, t, "lineFrame", "maxLength", DEFAULT_LINE_MAX, 1, limit_max);
  c.strip_delimiter = opt_bool(L, t, "lineFrame", "stripDelimiter", true);
  c.fail_fast = opt_bool(L, t, "lineFrame", "failFast", false);
  return new_frame(L, "lineFrame", "lineFrame", &c, opt_bool(L, t, "lineFrame", "asString", false));
}

// delimiterFrame{ delimiters = {"\0"} or delimiter = "\0", maxFrameLength = 8192,
//                 stripDelimiter = true, failFast = true, asString = false }
static int codec_delimiter_frame(lua_State *L) {
  static const char *const known[] = {"delimiters", "delimiter", "maxFrameLength", "stripDelimiter", "failFast",
                                      "asString", NULL};
  int t = options(L, "delimiterFrame", known);
  lp_frame_config c = {.kind = LP_FRAME_DELIMITER};
  c.max = (size_t)opt_int(L, t, "delimiterFrame", "maxFrameLength", DEFAULT_DELIMITER_MAX, 1, limit_max);
  c.strip_delimiter = opt_bool(L, t, "delimiterFrame", "stripDelimiter", true);
  c.fail_fast = opt_bool(L, t, "delimiterFrame", "failFast", true);
  int ty = lua_getfield(L, t, "delimiters");
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    if (lua_getfield(L, t, "delimiter") != LUA_TSTRING)
      return luaL_error(L, "delimiterFrame: give 'delimiters' (a list of strings) or 'delimiter' (a string)");
    lua_rawseti(L, -2, 1);
  } else if (ty != LUA_TTABLE) {
    return luaL_error(L, "delimiterFrame: option 'delimiters' must be a list of strings");
  }
  int n = (int)lua_rawlen(L, -1);
  if (n < 1 || n > LP_FRAME_MAX_DELIMITERS)
    return luaL_error(L, "delimiterFrame: give 1 to %d delimiters", LP_FRAME_MAX_DELIMITERS);
  for (int i = 1; i <= n; i++) {
    size_t len;
    if (lua_rawgeti(L, -1, i) != LUA_TSTRING) return luaL_error(L, "delimiterFrame: delimiter %d is not a string", i);
    const char *s = lua_tolstring(L, -1, &len);
    if (len < 1 || len > LP_FRAME_MAX_DELIMITER_LEN)
      return luaL_error(L, "delimiterFrame: delimiter %d must be 1 to %d bytes", i, LP_FRAME_MAX_DELIMITER_LEN);
    memcpy(c.delims[i - 1], s, len);
    c.delim_len[i - 1] = (uint8_t)len;
    lua_pop(L, 1);
  }
  c.ndelims = n;
  return new_frame(L, "delimiterFrame", "delimiterFrame", &c, opt_bool(L, t, "delimiterFrame", "asString", false));
}

// lengthFieldFrame{ maxFrameLength = 1 MiB, lengthFieldOffset = 0, lengthFieldLength = 4,
//   lengthAdjustment = 0, initialBytesToStrip = 0, byteOrder = "big", failFast = true, asString = false }
static int codec_length_field_frame(lua_State *L) {
  static const char *const known[] = {"maxFrameLength", "lengthFieldOffset", "lengthFieldLength", "lengthAdjustment",
                                      "initialBytesToStrip", "byteOrder", "failFast", "asString", NULL};
  int t = options(L, "lengthFieldFrame", known);
  lp_frame_config c = {.kind = LP_FRAME_LENGTH_FIELD};
  c.max = (size_t)opt_int(L, t, "lengthFieldFrame", "maxFrameLength", DEFAULT_LENGTH_FIELD_MAX, 1, limit_max);
  c.length_offset = (size_t)opt_int(L, t, "lengthFieldFrame", "lengthFieldOffset", 0, 0, limit_max);
  c.length_size = (int)opt_int(L, t, "lengthFieldFrame", "lengthFieldLength", 4, 1, 8);
  c.length_adjustment = opt_int(L, t, "lengthFieldFrame", "lengthAdjustment", 0, -limit_max, limit_max);
  c.initial_strip = (size_t)opt_int(L, t, "lengthFieldFrame", "initialBytesToStrip", 0, 0, limit_max);
  c.big_endian = byte_order(L, t, "lengthFieldFrame");
  c.fail_fast = opt_bool(L, t, "lengthFieldFrame", "failFast", true);
  return new_frame(L, "lengthFieldFrame", "lengthFieldFrame", &c, opt_bool(L, t, "lengthFieldFrame", "asString", false));
}

// fixedLengthFrame(n) or fixedLengthFrame{ frameLength = n, asString = false }
static int codec_fixed_length_frame(lua_State *L) {
  static const char *const known[] = {"frameLength", "asString", NULL};
  if (lua_type(L, 1) == LUA_TNUMBER) {
    lua_Integer n = l_checkinteger(L, 1);
    lua_settop(L, 0);
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, n);
    lua_setfield(L, 1, "frameLength");
  }
  int t = options(L, "fixedLengthFrame", known);
  lp_frame_config c = {.kind = LP_FRAME_FIXED};
  lua_getfield(L, t, "frameLength");
  bool given = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!given) return luaL_error(L, "fixedLengthFrame: 'frameLength' (from 1 to %I) is required", limit_max);
  lua_Integer n = opt_int(L, t, "fixedLengthFrame", "frameLength", 1, 1, limit_max);
  c.max = (size_t)n;
  return new_frame(L, "fixedLengthFrame", "fixedLengthFrame", &c, opt_bool(L, t, "fixedLengthFrame", "asString", false));
}

// ---- the prepender -------------------------------------------------------------------------

typedef struct {
  l_native n;
  lp_prepender_config cfg;
} prepender_factory;

static lp_ctx *prepender_make(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  LP_UNUSED(L);
  return lp_prepender_ctx_new(p, name, &((prepender_factory *)self)->cfg);
}

// lengthFieldPrepender{ lengthFieldLength = 4, lengthAdjustment = 0,
//   lengthIncludesLengthFieldLength = false, byteOrder = "big" }
static int codec_length_field_prepender(lua_State *L) {
  static const char *const known[] = {"lengthFieldLength", "lengthAdjustment", "lengthIncludesLengthFieldLength",
                                      "byteOrder", NULL};
  int t = options(L, "lengthFieldPrepender", known);
  lp_prepender_config c;
  c.length_size = (int)opt_int(L, t, "lengthFieldPrepender", "lengthFieldLength", 4, 1, 8);
  c.adjustment = opt_int(L, t, "lengthFieldPrepender", "lengthAdjustment", 0, -limit_max, limit_max);
  c.includes_length = opt_bool(L, t, "lengthFieldPrepender", "lengthIncludesLengthFieldLength", false);
  c.big_endian = byte_order(L, t, "lengthFieldPrepender");
  char why[200];
  if (lp_prepender_config_check(&c, why, sizeof why) != 0) return luaL_error(L, "lengthFieldPrepender: %s", why);
  prepender_factory *f = (prepender_factory *)l_native_new(L, sizeof *f, "lengthFieldPrepender");
  f->n.make = prepender_make;
  f->cfg = c;
  return 1;
}

// ---- the PROXY protocol --------------------------------------------------------------------

typedef struct {
  l_native n;
  bool optional;
} proxy_factory;

static lp_ctx *proxy_make(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  LP_UNUSED(L);
  return lp_proxy_ctx_new(p, name, ((proxy_factory *)self)->optional);
}

// proxyProtocol{ optional = false }
static int codec_proxy_protocol(lua_State *L) {
  static const char *const known[] = {"optional", NULL};
  int t = options(L, "proxyProtocol", known);
  bool optional = opt_bool(L, t, "proxyProtocol", "optional", false);
  proxy_factory *f = (proxy_factory *)l_native_new(L, sizeof *f, "proxyProtocol");
  f->n.make = proxy_make;
  f->optional = optional;
  return 1;
}

// ---- Lua decoders ----------------------------------------------------------------------------

enum { T_SELF = 1, T_BOX, T_OUT, T_QUEUE };

typedef struct {
  lp_decoder d; // first: the core's callbacks get an lp_decoder *
  l_host *h;
  int state_ref;          // the table described at the top of the file
  l_buffer_box *box;      // T_BOX, kept alive by that table
  lua_Integer qhead, qtail; // T_QUEUE holds [qhead, qtail)
} lua_decoder;

typedef struct {
  l_native n;
  lua_State *L;           // the main thread, for __gc
  int mt_ref;             // { __index = spec }: the metatable of every channel's self
  size_t max_cumulation;
  char type_name[TYPE_NAME_MAX];
} lua_decoder_factory;

// Under pcall: [1] the decoder, [2] last. Calls decode (or decodeLast) and
// moves what it put in out to the queue; returns how many.
static int decode_call(lua_State *L) {
  lua_decoder *ld = lua_touserdata(L, 1);
  bool last = lua_toboolean(L, 2);
  lua_settop(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ld->state_ref); // 3: T
  lua_rawgeti(L, 3, T_SELF);                         // 4: self
  lua_rawgeti(L, 3, T_OUT);                          // 5: out
  lua_rawgeti(L, 3, T_QUEUE);                        // 6: queue
  lua_rawgeti(L, 3, T_BOX);                          // 7: buf
  if (!last || lua_getfield(L, 4, "decodeLast") != LUA_TFUNCTION) {
    if (last) lua_pop(L, 1);
    // Netty's default decodeLast: decode once more, when bytes are left.
    if (last && (!ld->box->buf || lp_buf_readable(ld->box->buf) == 0)) {
      lua_pushinteger(L, 0);
      return 1;
    }
    if (lua_getfield(L, 4, "decode") != LUA_TFUNCTION) return luaL_error(L, "the decoder's 'decode' is not a function");
  }
  lua_pushvalue(L, 4);
  l_context_push(L, ld->d.ctx);
  lua_pushvalue(L, 7);
  lua_pushvalue(L, 5);
  lua_call(L, 4, 0);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 5);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 5, i);
    bool own = lua_rawequal(L, -1, 7);
    lua_pop(L, 1);
    if (own)
      return luaL_error(L, "decode put its input buffer in out (emit buf:readSlice(n), buf:readString(n) or a copy)");
  }
  if (lp_decoder_reserve(&ld->d, (uint32_t)n) != 0) return luaL_error(L, "out of memory");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 5, i);
    lua_rawseti(L, 6, ld->qtail + i - 1);
    lua_pushnil(L);
    lua_rawseti(L, 5, i);
  }
  lua_pushinteger(L, n);
  return 1;
}

// Under pcall: [1] the error, [2] the context: the error says which handler
// raised it, in "decode" (l_error_decorate).
static int decorate(lua_State *L) {
  const lp_ctx *c = lua_touserdata(L, 2);
  l_error_decorate(L, 1, c->name, "decode");
  lua_settop(L, 1);
  return 1;
}

static void clear_out(lua_State *L, lua_decoder *ld) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ld->state_ref);
  lua_rawgeti(L, -1, T_OUT);
  for (lua_Integer i = (lua_Integer)lua_rawlen(L, -1); i >= 1; i--) {
    lua_pushnil(L);
    lua_rawseti(L, -2, i); // no allocation: the key exists
  }
  lua_pop(L, 2);
}

static int lua_decode(lp_decoder *d, lp_buf *in, bool last, lp_error *err) {
  lua_decoder *ld = (lua_decoder *)d;
  l_host *h = ld->h;
  if (h->closing) return LP_DECODE_OK;
  lua_State *L = h->L;
  if (!lua_checkstack(L, 20)) {
    lp_error_named(err, LP_EDECODER, "handler '%s': Lua stack overflow", d->ctx->name);
    return LP_DECODE_ERROR;
  }
  lp_buf *empty = NULL;
  if (!in && !(in = empty = lp_buf_new(lp_ctx_channel(d->ctx)->loop->pool, 0))) {
    lp_error_sys(err, ENOMEM, "decodeLast");
    return LP_DECODE_ERROR;
  }
  int top = lua_gettop(L);
  ld->box->buf = lp_buf_ref(in); // the box's own reference, for the call
  lua_pushcfunction(L, l_traceback);
  lua_pushcfunction(L, decode_call);
  lua_pushlightuserdata(L, ld);
  lua_pushboolean(L, last);
  int rc = lua_pcall(L, 2, 1, top + 1);
  if (ld->box->buf == in) {
    ld->box->buf = NULL;
    lp_buf_unref(in);
  } else if (!empty) {
    // Released or handed on (written) through the box: the cumulation is not
    // the decoder's any more.
    d->drop_cum = true;
  }
  if (empty) lp_buf_unref(empty);
  if (rc == LUA_OK) {
    lua_Integer n = lua_tointeger(L, -1);
    lua_settop(L, top);
    for (lua_Integer i = 0; i < n; i++) {
      lp_msg token = {.kind = LP_MSG_HOST};
      lp_decoder_add(d, &token); // reserved: cannot fail
    }
    ld->qtail += n;
    if (d->drop_cum) {
      lp_error_named(err, LP_EDECODER, "handler '%s': decode released or handed on its input buffer", d->ctx->name);
      return LP_DECODE_ERROR;
    }
    return LP_DECODE_OK;
  }
  // decode raised: what it put in out is dropped, its error goes on as exceptionCaught.
  int e = lua_gettop(L);
  lua_pushcfunction(L, decorate);
  lua_pushvalue(L, e);
  lua_pushlightuserdata(L, d->ctx);
  if (lua_pcall(L, 2, 1, 0) == LUA_OK) lua_replace(L, e);
  else lua_pop(L, 1);
  clear_out(L, ld);
  lp_msg m = {.kind = LP_MSG_HOST, .host = e};
  lp_ctx_fire(d->ctx, LP_EV_EXCEPTION, &m);
  lua_settop(L, top);
  return LP_DECODE_REPORTED;
}

// Push the oldest queued value (and forget it there); false when it cannot.
static bool take_oldest(lua_decoder *ld, lua_State *L) {
  lua_Integer i = ld->qhead++;
  if (ld->h->closing || !lua_checkstack(L, 4)) return false;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ld->state_ref);
  lua_rawgeti(L, -1, T_QUEUE);
  lua_rawgeti(L, -1, i);
  lua_pushnil(L);
  lua_rawseti(L, -3, i); // no allocation: the key exists
  lua_replace(L, -3);
  lua_pop(L, 1);
  return true;
}

static void lua_fire_host(lp_decoder *d) {
  lua_decoder *ld = (lua_decoder *)d;
  lua_State *L = ld->h->L;
  int top = lua_gettop(L);
  if (!take_oldest(ld, L)) return;
  lp_msg m = {.kind = LP_MSG_HOST, .host = lua_gettop(L)};
  lp_ctx_fire(d->ctx, LP_EV_READ, &m);
  lua_settop(L, top);
}

static void lua_drop_host(lp_decoder *d) {
  lua_decoder *ld = (lua_decoder *)d;
  lua_State *L = ld->h->L;
  int top = lua_gettop(L);
  take_oldest(ld, L);
  lua_settop(L, top);
}

static void lua_free(lp_decoder *d) {
  lua_decoder *ld = (lua_decoder *)d;
  if (!ld->h->closing && ld->state_ref != LUA_NOREF) luaL_unref(ld->h->L, LUA_REGISTRYINDEX, ld->state_ref);
  free(ld);
}

static const lp_decoder_ops lua_decoder_ops = {lua_decode, lua_fire_host, lua_drop_host, lua_free, NULL, 0};

static lp_ctx *lua_decoder_make(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  lua_decoder_factory *f = (lua_decoder_factory *)self;
  lua_createtable(L, 4, 0);
  lua_newtable(L); // self: per channel, the spec behind it
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->mt_ref);
  lua_setmetatable(L, -2);
  lua_rawseti(L, -2, T_SELF);
  l_buffer_push_lent(L, NULL); // a box without finalizer: the buffer is lent per call
  l_buffer_box *box = lua_touserdata(L, -1);
  lua_rawseti(L, -2, T_BOX);
  lua_newtable(L);
  lua_rawseti(L, -2, T_OUT);
  lua_newtable(L);
  lua_rawseti(L, -2, T_QUEUE);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_decoder *ld = calloc(1, sizeof *ld);
  if (!ld) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return NULL;
  }
  ld->d.ops = &lua_decoder_ops;
  ld->d.max_cumulation = f->max_cumulation;
  ld->h = l_host_get(L);
  ld->state_ref = ref;
  ld->box = box;
  ld->qhead = ld->qtail = 1;
  return lp_decoder_ctx_new(p, name, &ld->d); // on failure, lua_free releases ld
}

static void lua_decoder_factory_free(l_native *self) {
  lua_decoder_factory *f = (lua_decoder_factory *)self;
  if (f->mt_ref != LUA_NOREF) luaL_unref(f->L, LUA_REGISTRYINDEX, f->mt_ref);
  f->mt_ref = LUA_NOREF;
}

// luaDecoder(spec): spec.decode(self, ctx, buf, out) [, spec.decodeLast], spec.name,
// spec.maxCumulation (default 1 MiB).
static int codec_lua_decoder(lua_State *L) {
  l_checktype(L, 1, LUA_TTABLE);
  if (lua_getfield(L, 1, "decode") != LUA_TFUNCTION)
    return luaL_error(L, "lupine.codec.decoder: 'decode' must be a function(self, ctx, buf, out)");
  int t = lua_getfield(L, 1, "decodeLast");
  if (t != LUA_TNIL && t != LUA_TFUNCTION)
    return luaL_error(L, "lupine.codec.decoder: 'decodeLast' must be a function(self, ctx, buf, out)");
  lua_pop(L, 2);
  const char *name = opt_string(L, 1, "lupine.codec.decoder", "name", "decoder");
  lua_Integer maxcum = opt_int(L, 1, "lupine.codec.decoder", "maxCumulation", DEFAULT_MAX_CUMULATION, 1, limit_max);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "__index");
  int mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_decoder_factory *f = (lua_decoder_factory *)l_native_new(L, sizeof *f, NULL);
  snprintf(f->type_name, sizeof f->type_name, "%s", name);
  f->n.type_name = f->type_name;
  f->n.make = lua_decoder_make;
  f->n.free = lua_decoder_factory_free;
  f->L = l_host_get(L)->L;
  f->mt_ref = mt_ref;
  f->max_cumulation = (size_t)maxcum;
  return 1;
}

static const luaL_Reg codec_funcs[] = {
    {"lineFrame", codec_line_frame},
    {"delimiterFrame", codec_delimiter_frame},
    {"lengthFieldFrame", codec_length_field_frame},
    {"fixedLengthFrame", codec_fixed_length_frame},
    {"lengthFieldPrepender", codec_length_field_prepender},
    {"proxyProtocol", codec_proxy_protocol},
    {"luaDecoder", codec_lua_decoder},
    {NULL, NULL},
};

void l_codec_open(lua_State *L) {
  luaL_newlib(L, codec_funcs);
  lua_setfield(L, -2, "_codec"); // lupine.codec (codec.lua) is built on it
}
