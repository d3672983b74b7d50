// l_future.c: lupine.Future, a box around an lp_future.
//
// Lua listeners: each addListener takes a registry reference to the function,
// released right after it runs (or when the future is freed unrun).
//
// A future's Lua value (what setSuccess or setFailure got, the error a failed
// handler left on its promise, a lookup's answer) is one registry reference,
// f->host_ref: taken by l_future_keep and dropped by l_future_drop (the
// host's future_free hook), both here, and read only here.
#include "lbind.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
  L_BOX_HEAD;
  lp_future *f;
} l_future;

typedef struct {
  l_host *host;
  int fn_ref;
} l_listener;

bool l_future_keep(lua_State *L, lp_future *f) {
  if (f->host_ref >= 0) { // the first value stays: a future completes once
    lua_pop(L, 1);
    return true;
  }
  l_host *h = l_host_find(L);
  if (!h) { // a future's state always has a host; never raise here
    lua_pop(L, 1);
    return false;
  }
  int ref = l_ref(L);
  if (ref == LUA_NOREF) return false;
  f->host_ref = ref;
  f->host = h; // whose registry holds the reference
  return true;
}

void l_future_drop(lp_future *f) {
  l_host *h = f->host;
  if (h && !h->closing && f->host_ref >= 0) luaL_unref(h->L, LUA_REGISTRYINDEX, f->host_ref);
  f->host_ref = -1;
}

lp_future *l_future_test(lua_State *L, int i) {
  l_future *box = l_testudata(L, i, &l_key_future);
  return box ? box->f : NULL;
}

lp_future *l_future_check(lua_State *L, int i) { return ((l_future *)l_checkudata(L, i, &l_key_future, "lupine.Future"))->f; }

void l_future_push(lua_State *L, lp_future *f) {
  l_future *box = l_newudata(L, sizeof *box, 0, &l_key_future);
  box->f = lp_future_ref(f);
}

int l_future_new(lua_State *L) {
  lp_future *f = lp_future_new(l_host_get(L)->loop);
  if (!f) return luaL_error(L, "lupine.promise: out of memory");
  l_future_push(L, f);
  lp_future_unref(f);
  return 1;
}

static int future_gc(lua_State *L) {
  l_future *box = l_checkudata(L, 1, &l_key_future, "lupine.Future");
  if (box->f) lp_future_unref(box->f);
  box->f = NULL;
  return 0;
}

static int future_is_done(lua_State *L) {
  lp_future *f = l_future_check(L, 1);
  f->observed = true;
  lua_pushboolean(L, lp_future_done(f));
  return 1;
}

static int future_is_success(lua_State *L) {
  lp_future *f = l_future_check(L, 1);
  f->observed = true;
  lua_pushboolean(L, lp_future_ok(f));
  return 1;
}

static int future_cause(lua_State *L) {
  lp_future *f = l_future_check(L, 1);
  f->observed = true;
  if (f->state != LP_FUTURE_FAILED) return 0;
  if (f->host_ref >= 0 && f->cause && f->cause->code == LP_EHOST) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->host_ref);
    return 1;
  }
  if (f->cause) l_push_error(L, f->cause);
  else lua_pushliteral(L, "failed (no detail: out of memory)");
  return 1;
}

// The value of a successful future: a channel (connect) or what setSuccess got.
static int push_value(lua_State *L, lp_future *f) {
  if (f->state != LP_FUTURE_SUCCESS) return 0;
  if (f->value) l_channel_push(L, f->value);
  else if (f->host_ref >= 0) lua_rawgeti(L, LUA_REGISTRYINDEX, f->host_ref);
  else return 0;
  return 1;
}

static int future_get(lua_State *L) {
  lp_future *f = l_future_check(L, 1);
  f->observed = true;
  return push_value(L, f);
}

// Under pcall: fn(future), with [1] fn and [2] the future as light userdata.
static int call_listener(lua_State *L) {
  l_future_push(L, lua_touserdata(L, 2));
  lua_replace(L, 2);
  lua_call(L, 1, 0);
  return 0;
}

static void run_listener(lp_future *f, void *ud) {
  l_listener *l = ud;
  l_host *h = l->host;
  if (!h->closing) {
    lua_State *L = h->L;
    lua_checkstack(L, 4);
    lua_pushcfunction(L, call_listener);
    lua_rawgeti(L, LUA_REGISTRYINDEX, l->fn_ref);
    lua_pushlightuserdata(L, f);
    l_pcall_log(L, 2, "a future listener", 0);
    luaL_unref(L, LUA_REGISTRYINDEX, l->fn_ref);
  }
  free(l);
}

void l_future_listen(lua_State *L, lp_future *f, int fn) {
  l_checktype(L, fn, LUA_TFUNCTION);
  l_listener *l = malloc(sizeof *l);
  if (!l) luaL_error(L, "addListener: out of memory");
  l->host = l_host_get(L);
  lua_pushvalue(L, fn);
  l->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (lp_future_add_listener(f, run_listener, l) != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, l->fn_ref);
    free(l);
    luaL_error(L, "addListener: out of memory");
  }
}

static int future_add_listener(lua_State *L) {
  l_future_listen(L, l_future_check(L, 1), 2);
  lua_settop(L, 1);
  return 1;
}

void l_future_take(lua_State *L, lp_future *f, const char *op, const lp_ctx *from) {
  if (lp_future_done(f))
    luaL_error(L, "%s: the promise is already complete (a promise serves one operation: make another with "
                  "ctx:newPromise())", op);
  if (f->taken_by && f->holder != from)
    luaL_error(L, "%s: the promise already belongs to a %s (a promise serves one operation: make another with "
                  "ctx:newPromise())", op, f->taken_by);
  if (!f->taken_by) f->taken_by = op;
  f->holder = NULL; // until the operation reaches a handler that takes it
}

// setSuccess/setFailure complete a promise once, and not one an operation
// owns (the operation completes it) unless a handler it reached holds it;
// trySuccess/tryFailure return false on a complete promise instead.
static bool may_complete(lua_State *L, lp_future *f, const char *what, bool try) {
  if (f->taken_by && !f->holder && !lp_future_done(f))
    luaL_error(L, "%s: the promise belongs to a %s, which completes it", what, f->taken_by);
  if (!lp_future_done(f)) return true;
  if (!try) luaL_error(L, "%s: the promise is already complete (try%s returns false instead)", what, what + 3);
  return false;
}

static int set_success(lua_State *L, bool try) {
  lp_future *f = l_future_check(L, 1);
  if (!may_complete(L, f, try ? "trySuccess" : "setSuccess", try)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!lua_isnoneornil(L, 2)) {
    lua_pushvalue(L, 2);
    if (!l_future_keep(L, f)) return luaL_error(L, "setSuccess: out of memory");
  }
  lua_pushboolean(L, lp_future_succeed(f) == 0);
  return 1;
}

static int future_set_success(lua_State *L) { return set_success(L, false); }
static int future_try_success(lua_State *L) { return set_success(L, true); }

static int set_failure(lua_State *L, bool try) {
  lp_future *f = l_future_check(L, 1);
  l_checkany(L, 2);
  if (!may_complete(L, f, try ? "tryFailure" : "setFailure", try)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lp_error e;
  lp_error_named(&e, LP_EHOST, "%s", luaL_tolstring(L, 2, NULL));
  lua_getfield(L, 2, "kind"); // keep a lupine error's kind
  if (lua_type(L, 2) == LUA_TTABLE && lua_type(L, -1) == LUA_TSTRING) {
    lua_getfield(L, 2, "message");
    if (lua_isstring(L, -1)) snprintf(e.message, sizeof e.message, "%s", lua_tostring(L, -1));
  }
  lua_pushvalue(L, 2);
  if (!l_future_keep(L, f)) return luaL_error(L, "setFailure: out of memory");
  lua_pushboolean(L, lp_future_fail(f, &e) == 0);
  return 1;
}

static int future_set_failure(lua_State *L) { return set_failure(L, false); }
static int future_try_failure(lua_State *L) { return set_failure(L, true); }

static bool is_done(lua_State *L, void *ud) {
  LP_UNUSED(L);
  return lp_future_done(ud);
}

// f:sync([timeout]): run the loop until f is done; return its value, or raise its cause.
static int future_sync(lua_State *L) {
  lp_future *f = l_future_check(L, 1);
  double timeout = l_optnumber(L, 2, 5.0);
  l_host *h = l_host_get(L);
  f->observed = true;
  if (!lp_future_done(f)) {
    if (h->running) return luaL_error(L, "sync() called from inside the event loop would block it: use addListener");
    if (!l_run_until(h, L, is_done, f, timeout)) return luaL_error(L, "sync: the future was not done within %f s", timeout);
  }
  if (lp_future_ok(f)) return push_value(L, f);
  future_cause(L);
  return lua_error(L);
}

static int future_tostring(lua_State *L) {
  lp_future *f = l_future_check(L, 1);
  const char *st = f->state == LP_FUTURE_PENDING ? "pending" : f->state == LP_FUTURE_SUCCESS ? "success" : "failed";
  if (f->state == LP_FUTURE_FAILED && f->host_ref >= 0 && f->cause && f->cause->code == LP_EHOST) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->host_ref);
    lua_pushfstring(L, "lupine.Future(failed: %s)", luaL_tolstring(L, -1, NULL));
  } else if (f->state == LP_FUTURE_FAILED && f->cause)
    lua_pushfstring(L, "lupine.Future(failed: %s)", f->cause->message);
  else lua_pushfstring(L, "lupine.Future(%s)", st);
  return 1;
}

static const luaL_Reg methods[] = {
    {"isDone", future_is_done},       {"isSuccess", future_is_success}, {"cause", future_cause},
    {"get", future_get},              {"addListener", future_add_listener},
    {"setSuccess", future_set_success}, {"setFailure", future_set_failure}, {"trySuccess", future_try_success},
    {"tryFailure", future_try_failure}, {"sync", future_sync},
    {NULL, NULL},
};

void l_future_open(lua_State *L) {
  l_newmetatable(L, "lupine.Future", &l_key_future);
  lua_pushcfunction(L, future_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, future_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
