// l_lupine.c: luaopen_lupine_core, the per-state host, error objects, option
// parsing and logging from Lua.
//
// The host is malloc'd; a full userdata in the registry (key: &host_key) holds
// its address. Its __gc runs when the state closes: it marks the host closing
// (no more calls into Lua), then frees the inline loop (which closes every
// channel still open) and the host. A worker's host (l_host_attach) belongs to
// the launcher instead, which frees it with l_host_free once its loop has
// ended: native objects that outlive the state (a future, a blocking job, a
// listener) may still look at `closing`, and several states share one loop
// after a reload.
#include "lbind.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char host_key = 'h';

const char l_key_buffer, l_key_buffer_lent, l_key_context, l_key_context_box, l_key_pipeline, l_key_future, l_key_channel, l_key_config, l_key_server,
    l_key_loop, l_key_timer, l_key_native, l_key_error;

void l_newmetatable(lua_State *L, const char *tname, const void *key) {
  luaL_newmetatable(L, tname); // keeps __name, which error messages show
  lua_pushstring(L, tname);    // getmetatable() shows the name, not the table
  lua_setfield(L, -2, "__metatable");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void *l_newudata(lua_State *L, size_t size, int nuv, const void *key) {
  void *p = lua_newuserdatauv(L, size, nuv);
  memset(p, 0, size);
  *(const void **)p = key;
  l_setmetatable(L, key);
  return p;
}

static int host_gc(lua_State *L) {
  l_host **box = lua_touserdata(L, 1);
  l_host *h = *box;
  if (!h) return 0;
  *box = NULL;
  h->closing = true; // no more calls into this state from here on
  if (h->loop && h->owns_loop) {
    lp_loop_free(h->loop);
    free(h);
    return 0;
  }
  if (h->loop) l_host_detach(h);
  h->loop = NULL;
  return 0;
}

l_host *l_host_find(lua_State *L) {
  l_host *h = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &host_key) == LUA_TUSERDATA) h = *(l_host **)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return h;
}

// Raises only when out of memory, before anything is attached.
static l_host *host_new(lua_State *L, lp_loop *loop, bool owns) {
  l_host **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  l_host *h = calloc(1, sizeof *h);
  if (!h) luaL_error(L, "lupine: out of memory");
  *box = h;
  // The main thread, even when a coroutine is the first to use lupine: it never dies.
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  h->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  h->owns_loop = owns;
  for (int e = 0; e < LP_EV_COUNT; e++) { // interned before the host is set: a failure leaves no trace
    lua_pushstring(L, lp_event_name[e]);
    h->ev_name_ref[e] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_newtable(L); // metatable
  lua_pushcfunction(L, host_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &host_key);
  h->loop = loop;
  loop->host = h; // the newest state on the loop
  loop->host_ops = &l_host_ops;
  return h;
}

l_host *l_host_get(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &host_key) == LUA_TUSERDATA) {
    l_host *h = *(l_host **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!h || !h->loop) luaL_error(L, "lupine: the event loop of this Lua state is gone");
    return h;
  }
  lua_pop(L, 1);
  lp_loop *loop = lp_loop_new(0);
  if (!loop) luaL_error(L, "lupine: cannot create an event loop (out of memory or descriptors)");
  return host_new(L, loop, true);
}

l_host *l_host_attach(lua_State *L, lp_loop *loop) { return host_new(L, loop, false); }

void l_host_free(l_host *h) { free(h); }

void l_channel_adopt(l_host *h, lp_channel *ch) {
  ch->host = h;
  if (!(ch->flags & LP_CH_UNCOUNTED)) {
    h->nchannels++;
    ch->flags |= LP_CH_HOST_COUNTED;
  }
}

// A worker's state closes while its loop goes on (a reload) or before the loop
// is freed: close its channels and run what is queued (it sees `closing` and
// leaves Lua alone), so that no task or hook reaches this state afterwards.
// Other states' channels on the same loop are left alone.
void l_host_detach(l_host *h) {
  lp_loop *loop = h->loop;
  for (lp_list *n = loop->channels.next; n != &loop->channels;) {
    lp_channel *ch = lp_container_of(n, lp_channel, link);
    n = n->next; // closing never unlinks at once (teardown is deferred)
    if (ch->host == h) lp_channel_close_now(ch);
  }
  for (int i = 0; i < 64 && (loop->deferred || loop->posted); i++) lp_loop_run_tasks(loop);
  if (loop->host == h) { // the last state on this loop
    loop->host = NULL;
    loop->host_ops = NULL;
  }
}

// ---- errors ------------------------------------------------------------------

int l_fail(lua_State *L, int rc, const char *what) {
  lp_error e;
  if (rc < 0 && rc > -10000) lp_error_sys(&e, -rc, what);
  else lp_error_named(&e, rc, "%s", what ? what : "failed");
  lua_pushnil(L);
  lua_pushstring(L, e.message);
  lua_pushstring(L, e.kind);
  return 3;
}

// tostring(err): [handler 'name' event: ]message[\ntraceback]. Fields are
// read raw and kept only when they are strings, so a table changed by hand
// still prints.
static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  static const char *const fields[] = {"handler", "event", "message", "traceback"}; // slots 2..5
  for (int i = 0; i < 4; i++) {
    lua_pushstring(L, fields[i]);
    if (lua_rawget(L, 1) != LUA_TSTRING) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
  }
  int n = 0;
  if (lua_isstring(L, 2) && lua_isstring(L, 3)) {
    lua_pushfstring(L, "handler '%s' %s: ", lua_tostring(L, 2), lua_tostring(L, 3));
    n++;
  }
  if (lua_isstring(L, 4)) lua_pushvalue(L, 4);
  else lua_pushliteral(L, "lupine.Error");
  n++;
  if (lua_isstring(L, 5)) {
    lua_pushliteral(L, "\n");
    lua_pushvalue(L, 5);
    n += 2;
  }
  lua_concat(L, n);
  return 1;
}

bool l_is_error(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return false;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &l_key_error);
  bool yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return yes;
}

// Tracebacks of raised values that are not lupine.Errors (a table the user
// raised travels as itself): a table with weak keys, so that it keeps no
// error alive.
static const char tracebacks_key = 't';

void l_push_weak_table(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

static void push_tracebacks(lua_State *L) { l_push_weak_table(L, &tracebacks_key, "k"); }

void l_push_traceback_of(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (l_is_error(L, idx)) {
    lua_pushliteral(L, "traceback");
    if (lua_rawget(L, idx) != LUA_TSTRING) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    return;
  }
  int t = lua_type(L, idx);
  if (t != LUA_TTABLE && t != LUA_TUSERDATA) {
    lua_pushnil(L);
    return;
  }
  push_tracebacks(L);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  lua_remove(L, -2);
}

void l_error_decorate(lua_State *L, int idx, const char *handler, const char *event) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) { // the message handler did not run (it failed itself)
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "LuaError");
    lua_setfield(L, -2, "kind");
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "message");
    l_setmetatable(L, &l_key_error);
    lua_replace(L, idx);
  }
  if (!l_is_error(L, idx)) return;
  lua_pushliteral(L, "handler");
  bool named = lua_rawget(L, idx) != LUA_TNIL;
  lua_pop(L, 1);
  if (named) return; // passed on from another handler: keeps where it was raised
  lua_pushstring(L, handler);
  lua_setfield(L, idx, "handler");
  lua_pushstring(L, event);
  lua_setfield(L, idx, "event");
}

void l_push_error(lua_State *L, const lp_error *e) {
  lua_createtable(L, 0, 5);
  lua_pushstring(L, e->kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, e->message);
  lua_setfield(L, -2, "message");
  lua_pushinteger(L, e->code);
  lua_setfield(L, -2, "code");
  if (e->limit >= 0) {
    lua_pushinteger(L, e->limit);
    lua_setfield(L, -2, "limit");
  }
  if (e->length >= 0) {
    lua_pushinteger(L, e->length);
    lua_setfield(L, -2, "length");
  }
  l_setmetatable(L, &l_key_error);
}

// The message handler: runs only when something raised, so the common case
// builds no traceback. What it raises itself becomes LUA_ERRERR.
int l_traceback(lua_State *L) {
  lua_settop(L, 1);
  int t = lua_type(L, 1);
  if (t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TNIL || t == LUA_TBOOLEAN) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &l_key_error) != LUA_TTABLE) {
      // A state without the module (a blocking pool thread's): no
      // lupine.Error to make, the message with its traceback appended.
      luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
      return 1;
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "LuaError");
    lua_setfield(L, -2, "kind");
    if (t == LUA_TSTRING || t == LUA_TNUMBER) lua_pushstring(L, lua_tostring(L, 1)); // error(42): "42"
    else lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    lua_setfield(L, -2, "message");
    luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, -2, "traceback");
    l_setmetatable(L, &l_key_error);
    return 1;
  }
  if (l_is_error(L, 1)) { // raised again, or a native error raised from Lua: keep the first traceback
    lua_pushliteral(L, "traceback");
    if (lua_rawget(L, 1) == LUA_TNIL) {
      luaL_traceback(L, L, NULL, 1);
      lua_setfield(L, 1, "traceback");
    }
    lua_settop(L, 1);
    return 1;
  }
  // Any other value travels as itself (never through its __tostring, which
  // may raise); its traceback waits beside it for lupine.traceback(err).
  if (t == LUA_TTABLE || t == LUA_TUSERDATA) {
    push_tracebacks(L);
    lua_pushvalue(L, 1);
    luaL_traceback(L, L, NULL, 1);
    lua_rawset(L, -3);
  }
  lua_settop(L, 1);
  return 1;
}

// lupine.traceback(err): the traceback of a raised value, or nil.
static int lupine_traceback(lua_State *L) {
  luaL_checkany(L, 1);
  l_push_traceback_of(L, 1);
  return 1;
}

// Under pcall: [1] the value -> its tostring, and its traceback on a new line
// when it is not part of it (a value other than a lupine.Error).
static int describe_protected(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  if (!l_is_error(L, 1)) {
    l_push_traceback_of(L, 1);
    if (lua_isstring(L, -1)) {
      lua_pushliteral(L, "\n");
      lua_insert(L, -2);
      lua_concat(L, 3);
      return 1;
    }
    lua_pop(L, 1);
  }
  return 1;
}

const char *l_describe_error(lua_State *L, int idx, char *buf, size_t len) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, describe_protected);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) snprintf(buf, len, "%s", lua_tostring(L, -1));
  else snprintf(buf, len, "(a %s whose tostring failed)", luaL_typename(L, idx));
  lua_pop(L, 1);
  return buf;
}

// Under pcall: [1] the value -> its text without a traceback: a lupine.Error's
// context and message, anything else's tostring.
static int message_protected(lua_State *L) {
  if (l_is_error(L, 1)) {
    lua_pushliteral(L, "traceback");
    if (lua_rawget(L, 1) == LUA_TSTRING) {
      lua_pop(L, 1);
      // tostring without the traceback: a copy of the fields that matter
      lua_createtable(L, 0, 3);
      static const char *const fields[] = {"handler", "event", "message"};
      for (int i = 0; i < 3; i++) {
        lua_pushstring(L, fields[i]);
        lua_rawget(L, 1);
        lua_setfield(L, -2, fields[i]);
      }
      l_setmetatable(L, &l_key_error);
      lua_replace(L, 1);
    }
  }
  luaL_tolstring(L, 1, NULL);
  return 1;
}

const char *l_error_message(lua_State *L, int idx, char *buf, size_t len) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, message_protected);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) snprintf(buf, len, "%s", lua_tostring(L, -1));
  else snprintf(buf, len, "(a %s whose tostring failed)", luaL_typename(L, idx));
  lua_pop(L, 1);
  return buf;
}

static int tostring_protected(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

const char *l_tostring(lua_State *L, int idx, char *buf, size_t len) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, tostring_protected);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) snprintf(buf, len, "%s", lua_tostring(L, -1));
  else snprintf(buf, len, "(a %s whose tostring failed)", luaL_typename(L, idx));
  lua_pop(L, 1);
  return buf;
}

static int ref_protected(lua_State *L) {
  lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
  return 1;
}

int l_ref(lua_State *L) {
  lua_pushcfunction(L, ref_protected);
  lua_insert(L, -2);
  int ref = LUA_NOREF;
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) ref = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return ref;
}

bool l_pcall_log(lua_State *L, int nargs, const char *what, uint64_t channel_id) {
  int base = lua_gettop(L) - nargs; // the function's slot
  lua_pushcfunction(L, l_traceback);
  lua_insert(L, base);
  bool ok = lua_pcall(L, nargs, 0, base) == LUA_OK;
  if (!ok) {
    char text[1024];
    lp_log(LP_LOG_ERROR, channel_id, "%s raised: %s", what, l_describe_error(L, -1, text, sizeof text));
  }
  lua_settop(L, base - 1);
  return ok;
}

// ---- options -------------------------------------------------------------------

static int opt_field(lua_State *L, int t, const char *field) {
  return t ? lua_getfield(L, t, field) : (lua_pushnil(L), LUA_TNIL);
}

lua_Integer l_opt_int(lua_State *L, int t, const char *field, lua_Integer def, lua_Integer min, lua_Integer max) {
  int ty = opt_field(L, t, field);
  lua_Integer v = def;
  if (ty != LUA_TNIL) {
    int isint;
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < min || v > max)
      luaL_error(L, "option '%s' must be an integer from %I to %I", field, min, max);
  }
  lua_pop(L, 1);
  return v;
}

bool l_opt_bool(lua_State *L, int t, const char *field, bool def) {
  int ty = opt_field(L, t, field);
  bool v = def;
  if (ty != LUA_TNIL) {
    if (ty != LUA_TBOOLEAN) luaL_error(L, "option '%s' must be a boolean", field);
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

double l_opt_number(lua_State *L, int t, const char *field, double def) {
  int ty = opt_field(L, t, field);
  double v = def;
  if (ty != LUA_TNIL) {
    if (ty != LUA_TNUMBER) luaL_error(L, "option '%s' must be a number", field);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

const char *l_opt_string(lua_State *L, int t, const char *field, const char *def) {
  int ty = opt_field(L, t, field);
  const char *v = def;
  if (ty != LUA_TNIL) {
    if (ty != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", field);
    if (!l_is_cstring(L, -1)) luaL_error(L, "option '%s' " L_NUL_MESSAGE, field);
    v = lua_tostring(L, -1); // kept alive by the table
  }
  lua_pop(L, 1);
  return v;
}

static const char *const channel_options[] = {
    "tcpNoDelay", "keepAlive", "rcvBuf", "sndBuf", "autoRead", "allowHalfClosure", "autoBackpressure",
    "closeOnException", "maxMessagesPerRead", "highWaterMark", "lowWaterMark", "maxPendingBytes",
    "drainTimeout", NULL,
};

void l_channel_config_read(lua_State *L, int t, lp_channel_config *c) {
  if (!t) return;
  t = lua_absindex(L, t);
  l_checktype(L, t, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, t)) { // reject names we do not know: a typo must not pass silently
    bool known = false;
    if (lua_type(L, -2) == LUA_TSTRING && !l_is_cstring(L, -2)) luaL_error(L, "channel option names " L_NUL_MESSAGE);
    if (lua_type(L, -2) == LUA_TSTRING)
      for (int i = 0; channel_options[i]; i++)
        if (strcmp(lua_tostring(L, -2), channel_options[i]) == 0) known = true;
    if (!known) {
      char list[512] = "";
      for (int i = 0; channel_options[i]; i++) {
        if (i) strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, channel_options[i], sizeof list - strlen(list) - 1);
      }
      luaL_error(L, "unknown channel option '%s' (known: %s)", luaL_tolstring(L, -2, NULL), list);
    }
    lua_pop(L, 1);
  }
  const lua_Integer big = (lua_Integer)1 << 40;
  c->tcp_nodelay = l_opt_bool(L, t, "tcpNoDelay", c->tcp_nodelay);
  c->keepalive = l_opt_bool(L, t, "keepAlive", c->keepalive);
  c->rcvbuf = (int)l_opt_int(L, t, "rcvBuf", c->rcvbuf, 0, 1 << 30);
  c->sndbuf = (int)l_opt_int(L, t, "sndBuf", c->sndbuf, 0, 1 << 30);
  c->auto_read = l_opt_bool(L, t, "autoRead", c->auto_read);
  c->allow_half_closure = l_opt_bool(L, t, "allowHalfClosure", c->allow_half_closure);
  c->auto_backpressure = l_opt_bool(L, t, "autoBackpressure", c->auto_backpressure);
  c->close_on_exception = l_opt_bool(L, t, "closeOnException", c->close_on_exception);
  c->max_messages_per_read = (uint32_t)l_opt_int(L, t, "maxMessagesPerRead", c->max_messages_per_read, 1, 1024);
  c->high_water = (size_t)l_opt_int(L, t, "highWaterMark", (lua_Integer)c->high_water, 0, big);
  c->low_water = (size_t)l_opt_int(L, t, "lowWaterMark", (lua_Integer)c->low_water, 0, big);
  c->max_pending = (size_t)l_opt_int(L, t, "maxPendingBytes", (lua_Integer)c->max_pending, 1, big);
  c->drain_timeout = l_opt_number(L, t, "drainTimeout", c->drain_timeout);
  if (!(c->drain_timeout >= 0) || c->drain_timeout > 1e9)
    luaL_error(L, "option 'drainTimeout' must be seconds >= 0 (0: no limit)");
  if (c->low_water > c->high_water)
    luaL_error(L, "option 'lowWaterMark' (%I) must not exceed 'highWaterMark' (%I)", (lua_Integer)c->low_water,
               (lua_Integer)c->high_water);
}

// ---- module functions ----------------------------------------------------------

static int lupine_loop(lua_State *L) {
  l_loop_push(L, l_host_get(L));
  return 1;
}

static int lupine_set_log_level(lua_State *L) {
  int lvl = lp_log_parse_level(l_checkcstring(L, 1));
  if (lvl < 0) return l_argerror(L, 1, "one of debug, info, warn, error, off");
  lp_log_set_level(lvl);
  return 0;
}

static int lupine_set_log_format(lua_State *L) {
  int f = lp_log_parse_format(l_checkcstring(L, 1));
  if (f < 0) return l_argerror(L, 1, "one of text, json");
  lp_log_set_format(f);
  return 0;
}

#define LOG_FIELDS_MAX 32

// The fields table at idx (flat: string keys; string, number or boolean
// values) into f: each key and its value's text are left on the stack, which
// keeps the pointers in f valid until the caller returns. Returns the count.
static size_t log_fields(lua_State *L, int idx, lp_log_field *f) {
  size_t n = 0;
  luaL_checkstack(L, 2 * LOG_FIELDS_MAX + 4, "lupine.log: too many fields");
  lua_pushnil(L);
  while (lua_next(L, idx)) { // ... key value
    if (lua_type(L, -2) != LUA_TSTRING || !l_is_cstring(L, -2))
      l_argerror(L, idx, "fields must have string keys without NUL bytes");
    if (n == LOG_FIELDS_MAX) l_argerror(L, idx, "at most 32 fields");
    int t = lua_type(L, -1);
    bool raw = t == LUA_TBOOLEAN;
    if (t == LUA_TNUMBER) { // JSON has no NaN or infinities: those stay strings
      lua_Number x = lua_tonumber(L, -1);
      raw = lua_isinteger(L, -1) || (x == x && x - x == 0);
    } else if (t != LUA_TSTRING && t != LUA_TBOOLEAN) {
      return (size_t)luaL_error(L, "bad argument #%d to 'log' (field '%s' must be a string, number or boolean, got %s)",
                                idx, lua_tostring(L, -2), luaL_typename(L, -1));
    }
    luaL_tolstring(L, -1, NULL);
    if (!l_is_cstring(L, -1)) l_argerror(L, idx, "field values must not contain NUL bytes");
    lua_replace(L, -2);   // ... key text
    lua_pushvalue(L, -2); // ... key text key: the pair stays, the copy drives lua_next
    f[n++] = (lp_log_field){lua_tostring(L, -3), lua_tostring(L, -2), raw};
  }
  return n;
}

static int lupine_log(lua_State *L) {
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  const char *name = l_checkcstring(L, 1);
  int lvl = -1;
  for (int i = 0; levels[i]; i++)
    if (strcmp(name, levels[i]) == 0) lvl = i;
  if (lvl < 0) return l_argerror(L, 1, lua_pushfstring(L, "invalid option '%s'", name));
  int n = lua_gettop(L);
  // A plain table last (no __tostring) holds the fields: lupine.log(level, msg, fields).
  int fields = 0;
  if (n >= 3 && lua_type(L, n) == LUA_TTABLE && luaL_getmetafield(L, n, "__tostring") == LUA_TNIL) fields = n--;
  else if (n >= 3 && lua_type(L, n) == LUA_TTABLE) lua_pop(L, 1);
  lp_log_field f[LOG_FIELDS_MAX];
  size_t nf = fields ? log_fields(L, fields, f) : 0; // keys and texts stay on the stack, above the arguments
  if (!LP_LOG_ENABLED(lvl)) { // string arguments are checked at every level: a test with logging off sees the error too
    for (int i = 2; i <= n; i++)
      if (lua_type(L, i) == LUA_TSTRING && !l_is_cstring(L, i)) l_argerror(L, i, L_NUL_MESSAGE);
    return 0;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 2; i <= n; i++) {
    if (i > 2) luaL_addchar(&b, ' ');
    luaL_tolstring(L, i, NULL);
    if (!l_is_cstring(L, -1)) l_argerror(L, i, L_NUL_MESSAGE); // the log line would end there
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lp_log_fields(lvl, 0, f, nf, "%s", lua_tostring(L, -1));
  return 0;
}

static int lupine_worker_id(lua_State *L) {
  lua_pushinteger(L, l_host_get(L)->loop->id);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"buffer", l_buffer_new},
    {"promise", l_future_new},
    {"loop", lupine_loop},
    {"server", l_server_new},
    {"connect", l_connect},
    {"setLogLevel", lupine_set_log_level},
    {"log", lupine_log},
    {"setLogFormat", lupine_set_log_format},
    {"workerId", lupine_worker_id},
    {"serve", l_serve},
    {"cpuCount", l_cpu_count},
    {"reload", l_reload},
    {"workerStates", l_worker_states},
    {"traceback", lupine_traceback},
    {NULL, NULL},
};

#ifdef LUPINE_LAUNCHER
int luaopen_lupine_core(lua_State *L);
#else
__attribute__((visibility("default"))) int luaopen_lupine_core(lua_State *L);
#endif

int luaopen_lupine_core(lua_State *L) {
  luaL_checkversion(L);
  l_newmetatable(L, "lupine.Error", &l_key_error);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  l_buffer_open(L);
  l_future_open(L);
  l_loop_open(L);
  l_channel_open(L);
  l_server_open(L);
  l_context_open(L);
  l_pipeline_open(L);
  l_native_open(L);
  luaL_newlib(L, funcs);
  l_codec_open(L);
  l_embedded_open(L);
  l_process_open(L);  // _spawn, _wait, _kill: lupine.test.spawn
  l_resolver_open(L); // resolve, setResolver
  l_idle_open(L);     // _handler: native handler factories (lua/lupine/handler.lua)
  l_file_open(L);     // file: regions of files to send (sendfile)
  l_blocking_open(L); // blocking: jobs on the pool of threads (l_blocking.c)
  l_ws_open(L);       // _ws: WebSocket framing (lua/lupine/ws.lua)
  l_tls_open(L);      // tls: server, client, info, handshake; ch:tls()
  l_shared_open(L);   // shared: dictionaries every worker sees (l_shared.c)
  l_broadcast_open(L); // broadcast, subscribe: messages between workers (l_broadcast.c)
  l_resp_open(L);      // _resp: RESP decoders and encoders (l_resp.c, lua/lupine/redis.lua)
  l_http_open(L);     // _http: the HTTP server codec and handler (lua/lupine/http.lua)
  l_co_open(L);       // _onUnobserved, _logChannel: lua/lupine/co.lua
  l_udp_open(L);      // udp, udp.open, datagram (l_udp.c)
  l_stats_open(L);    // stats, _statsOff, _channels (l_stats.c)
  lua_pushliteral(L, LP_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
