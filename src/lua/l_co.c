// l_co.c: the little native help lua/lupine/co.lua (coroutines) needs: a
// failed future that nobody observed reported through a Lua function (the
// core's unobserved hook), log lines with a channel id, and the native handler
// in front of a socket that turns byte buffers into Lua strings on the way in
// (what a socket returns is strings, and a string made from the read buffer
// by the dispatch costs less than a Buffer box and readString/release).
//
// Ownership: _onUnobserved's record (host, registry reference to the function)
// belongs to the future's hook: the core calls drop() exactly once, after the
// report or when the future goes unreported, and drop frees it.
#include "lbind.h"

#include "log.h"

#include <stdlib.h>

typedef struct {
  l_host *h;
  int fn_ref;
} unobserved_rec;

// Under pcall: fn(future), with [1] fn and [2] the future as light userdata.
static int call_report(lua_State *L) {
  l_future_push(L, lua_touserdata(L, 2));
  lua_replace(L, 2);
  lua_call(L, 1, 0);
  return 0;
}

static void report(lp_future *f, void *ud) {
  unobserved_rec *r = ud;
  l_host *h = r->h;
  if (h->closing || r->fn_ref < 0) return;
  lua_State *L = h->L; // the main thread: never a coroutine that may be gone or running
  if (!lua_checkstack(L, 4)) return;
  lua_pushcfunction(L, call_report);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
  lua_pushlightuserdata(L, f);
  l_pcall_log(L, 2, "an unobserved-failure report", 0);
}

static void drop(void *ud) {
  unobserved_rec *r = ud;
  if (!r->h->closing && r->fn_ref >= 0) luaL_unref(r->h->L, LUA_REGISTRYINDEX, r->fn_ref);
  free(r);
}

// core._onUnobserved(future, fn): when future fails and nobody listened to it
// or asked for its result by the time it notifies, fn(future) runs (once).
static int on_unobserved(lua_State *L) {
  lp_future *f = l_future_check(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  unobserved_rec *r = malloc(sizeof *r);
  if (!r) return luaL_error(L, "_onUnobserved: out of memory");
  r->h = l_host_get(L);
  lua_pushvalue(L, 2);
  r->fn_ref = l_ref(L);
  lp_future_on_unobserved(f, report, drop, r);
  return 0;
}

// core._logChannel(level, channelId, text): one log line about a channel.
static int log_channel(lua_State *L) {
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  int lvl = luaL_checkoption(L, 1, NULL, levels);
  lua_Integer id = luaL_checkinteger(L, 2);
  const char *text = luaL_checkstring(L, 3);
  if (LP_LOG_ENABLED(lvl)) lp_log(lvl, (uint64_t)(id < 0 ? 0 : id), "%s", text);
  return 0;
}

// ---- co.strings: Buffers become strings ------------------------------------------------

// A Buffer passing inbound is marked LP_MSGF_STRING: the Lua handler after it
// (the socket's) receives it as a string, and the buffer goes back to the pool.
static void strings_inbound(lp_ctx *c, int ev, lp_msg *m) {
  if (m && m->kind == LP_MSG_BUF) m->flags |= LP_MSGF_STRING;
  lp_ctx_fire(c, ev, m);
}

static const lp_handler_ops strings_ops = {"strings", LP_MASK(LP_EV_READ), NULL, NULL, strings_inbound, NULL, NULL};

static lp_ctx *make_strings(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  LP_UNUSED(self), LP_UNUSED(L);
  return lp_ctx_new(p, &strings_ops, NULL, name);
}

// core._stringFrames(): the factory (one is enough for every pipeline).
static int string_frames(lua_State *L) {
  l_native *n = l_native_new(L, sizeof *n, "strings");
  n->make = make_strings;
  return 1;
}

static const luaL_Reg funcs[] = {
    {"_onUnobserved", on_unobserved}, {"_logChannel", log_channel}, {"_stringFrames", string_frames}, {NULL, NULL}};

void l_co_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
