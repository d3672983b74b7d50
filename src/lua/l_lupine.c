// l_lupine.c: luaopen_lupine_core, the per-state host, error objects, option
// parsing and logging from Lua.
//
// The host lives in a full userdata in the registry (key: &host_key). Its __gc
// runs when the state closes: it marks the host closing (no more calls into
// Lua), then frees the inline loop, which closes every channel still open.
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
  l_host *h = lua_touserdata(L, 1);
  h->closing = true; // no more calls into this state from here on
  if (h->loop && h->owns_loop) lp_loop_free(h->loop);
  else if (h->loop) l_host_detach(h);
  h->loop = NULL;
  return 0;
}

static l_host *host_new(lua_State *L, lp_loop *loop, bool owns) {
  l_host *h = lua_newuserdatauv(L, sizeof *h, 0);
  memset(h, 0, sizeof *h);
  lua_pushthread(L);
  h->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  h->cur = h->L;
  h->loop = loop;
  h->owns_loop = owns;
  loop->host = h;
  loop->host_ops = &l_host_ops;
  for (int e = 0; e < LP_EV_COUNT; e++) {
    lua_pushstring(L, lp_event_name[e]);
    h->ev_name_ref[e] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_newtable(L); // metatable
  lua_pushcfunction(L, host_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &host_key);
  return h;
}

l_host *l_host_get(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &host_key) == LUA_TUSERDATA) {
    l_host *h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!h->loop) luaL_error(L, "lupine: the event loop of this Lua state is gone");
    return h;
  }
  lua_pop(L, 1);
  lp_loop *loop = lp_loop_new(0);
  if (!loop) luaL_error(L, "lupine: cannot create an event loop (out of memory or descriptors)");
  return host_new(L, loop, true);
}

l_host *l_host_attach(lua_State *L, lp_loop *loop) { return host_new(L, loop, false); }

// A worker's state closes before its loop is freed: close what is still open
// and run what is queued (it sees `closing` and leaves Lua alone), so that no
// task or hook reaches this state afterwards.
void l_host_detach(l_host *h) {
  lp_loop *loop = h->loop;
  lp_channel_close_all(loop);
  for (int i = 0; i < 64 && (loop->deferred || loop->posted); i++) lp_loop_run_tasks(loop);
  loop->host = NULL;
  loop->host_ops = NULL;
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

static int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "message");
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "lupine.Error");
  }
  return 1;
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

int l_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg) luaL_traceback(L, L, msg, 1);
  else if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
  else lua_settop(L, 1); // a table error object travels as it is
  return 1;
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
    lp_log(LP_LOG_ERROR, channel_id, "%s raised: %s", what, l_tostring(L, -1, text, sizeof text));
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
    v = lua_tostring(L, -1); // kept alive by the table
  }
  lua_pop(L, 1);
  return v;
}

static const char *const channel_options[] = {
    "tcpNoDelay", "keepAlive", "rcvBuf", "sndBuf", "autoRead", "allowHalfClosure", "autoBackpressure",
    "closeOnException", "maxMessagesPerRead", "highWaterMark", "lowWaterMark", "maxPendingBytes", NULL,
};

void l_channel_config_read(lua_State *L, int t, lp_channel_config *c) {
  if (!t) return;
  t = lua_absindex(L, t);
  luaL_checktype(L, t, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, t)) { // reject names we do not know: a typo must not pass silently
    bool known = false;
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
  int lvl = lp_log_parse_level(luaL_checkstring(L, 1));
  if (lvl < 0) return luaL_argerror(L, 1, "one of debug, info, warn, error, off");
  lp_log_set_level(lvl);
  return 0;
}

static int lupine_log(lua_State *L) {
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  int lvl = luaL_checkoption(L, 1, NULL, levels);
  if (!LP_LOG_ENABLED(lvl)) return 0;
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 2; i <= n; i++) {
    if (i > 2) luaL_addchar(&b, ' ');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lp_log(lvl, 0, "%s", lua_tostring(L, -1));
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
    {"workerId", lupine_worker_id},
    {"serve", l_serve},
    {"cpuCount", l_cpu_count},
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
  l_co_open(L);       // _onUnobserved, _logChannel: lua/lupine/co.lua
  lua_pushliteral(L, LP_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
