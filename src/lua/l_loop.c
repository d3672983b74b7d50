// l_loop.c: lupine.Loop (the state's event loop, also ctx.executor) and
// lupine.Timer (schedule / scheduleAtFixedRate handles).
//
// A timer's userdata holds its ev_timer; while the timer is active a registry
// reference roots the userdata, so an unreferenced running timer is never
// collected, and a cancelled or finished one is.
#include "lbind.h"

#include "log.h"

#include <stdlib.h>

typedef struct {
  L_BOX_HEAD;
  l_host *h;
} l_loop;

typedef struct {
  L_BOX_HEAD;
  ev_timer w;
  l_host *h;
  int fn_ref;
  int self_ref;
  bool periodic;
} l_timer;

typedef struct {
  lp_task task;
  l_host *h;
  int fn_ref;
} l_exec;

static l_host *check_loop(lua_State *L) {
  l_host *h = ((l_loop *)l_checkudata(L, 1, &l_key_loop, "lupine.Loop"))->h;
  if (!h->loop) luaL_error(L, "lupine.Loop: the loop is gone");
  return h;
}

void l_loop_push(lua_State *L, l_host *h) {
  if (h->loop_ref) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->loop_ref);
    return;
  }
  l_loop *box = l_newudata(L, sizeof *box, 0, &l_key_loop);
  box->h = h;
  lua_pushvalue(L, -1);
  h->loop_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void on_deadline(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(w), LP_UNUSED(revents);
}

bool l_run_until(l_host *h, lua_State *L, bool (*done)(lua_State *L, void *ud), void *ud, double timeout) {
  struct ev_loop *ev = h->loop->ev;
  h->running++;
  ev_now_update(ev);
  double deadline = ev_now(ev) + timeout;
  ev_timer t; // wakes the poll at the deadline
  ev_timer_init(&t, on_deadline, timeout, 0.);
  ev_timer_start(ev, &t);
  bool ok;
  while (!(ok = done(L, ud)) && ev_now(ev) < deadline) lp_loop_run_once(h->loop, true);
  ev_timer_stop(ev, &t);
  h->running--;
  return ok;
}

typedef struct {
  int pred;       // stack index of the predicate (function or future)
  bool failed;    // the predicate raised; its error is on the stack top
} until_state;

// A nested run that was refused on this thread since the outermost run began
// ("runUntil", ...; NULL: none). A predicate or handler that calls runUntil
// under pcall would swallow the refusal and wait in vain (a spec timing out
// with no reason given); the outer run raises it again instead.
static _Thread_local const char *refused_nested;

#define NESTED_FMT                                                                                     \
  "%s called from inside the running loop (a handler, timer or listener): use a listener or schedule() " \
  "instead of waiting"

static void not_nested(lua_State *L, l_host *h, const char *what) {
  if (h->running) {
    refused_nested = what;
    luaL_error(L, NESTED_FMT, what);
  }
}

// Whether a nested run was refused (and swallowed) during this run: then its
// error is pushed, to be raised by the outer run.
static bool push_refused(lua_State *L) {
  if (!refused_nested) return false;
  lua_pushfstring(L, NESTED_FMT " (raised again by the outer run: the first error was caught)", refused_nested);
  refused_nested = NULL;
  return true;
}

static bool until_done(lua_State *L, void *ud) {
  until_state *st = ud;
  if (push_refused(L)) {
    st->failed = true;
    return true;
  }
  lp_future *f = l_future_test(L, st->pred);
  if (f) return lp_future_done(f);
  lua_pushcfunction(L, l_traceback);
  lua_pushvalue(L, st->pred);
  if (lua_pcall(L, 0, 1, -2) != LUA_OK) {
    st->failed = true;
    lua_remove(L, -2); // keep the error on top
    refused_nested = NULL; // the predicate's own error (perhaps that refusal) goes up as it is
    return true;
  }
  bool ok = lua_toboolean(L, -1);
  lua_pop(L, 2);
  if (push_refused(L)) {
    st->failed = true;
    return true;
  }
  return ok;
}

// loop:runUntil(pred, [timeout = 5]): run until pred() is true (or pred, a
// future, is done); raises when the time runs out, with what it waited for.

static int loop_run_until(lua_State *L) {
  l_host *h = check_loop(L);
  not_nested(L, h, "runUntil");
  refused_nested = NULL;
  if (!l_future_test(L, 2)) l_checktype(L, 2, LUA_TFUNCTION);
  double timeout = l_optnumber(L, 3, 5.0);
  const char *what = l_optcstring(L, 4, NULL);
  until_state st = {2, false};
  bool ok = l_run_until(h, L, until_done, &st, timeout);
  if (st.failed) {
    // The predicate runs in the caller's own flow: its string error goes
    // back as the string it was (with the traceback), not as a lupine.Error.
    if (l_is_error(L, -1)) luaL_tolstring(L, -1, NULL);
    return lua_error(L);
  }
  if (!ok) {
    if (what) return luaL_error(L, "runUntil: timed out after %f s waiting for %s", timeout, what);
    return luaL_error(L, "runUntil: timed out after %f s", timeout);
  }
  lua_pushboolean(L, 1);
  return 1;
}

// runFor's condition: only a refused nested run ends it early.
static bool refused(lua_State *L, void *ud) {
  LP_UNUSED(L), LP_UNUSED(ud);
  return refused_nested != NULL;
}

static int loop_run_for(lua_State *L) {
  l_host *h = check_loop(L);
  not_nested(L, h, "runFor");
  refused_nested = NULL;
  l_run_until(h, L, refused, NULL, l_checknumber(L, 2));
  if (push_refused(L)) return lua_error(L);
  return 0;
}

static int loop_run(lua_State *L) {
  l_host *h = check_loop(L);
  not_nested(L, h, "run");
  refused_nested = NULL;
  h->running++;
  lp_loop_run(h->loop);
  h->running--;
  if (push_refused(L)) return lua_error(L);
  return 0;
}

static int loop_stop(lua_State *L) {
  lp_loop_stop(check_loop(L)->loop);
  return 0;
}

static int loop_now(lua_State *L) {
  lua_pushnumber(L, lp_loop_now(check_loop(L)->loop));
  return 1;
}

// loop:stats(): counters for tests and monitoring.
static int loop_stats(lua_State *L) {
  lp_loop *loop = check_loop(L)->loop;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)loop->nchannels);
  lua_setfield(L, -2, "channels");
  lua_pushinteger(L, (lua_Integer)lp_pool_live(loop->pool));
  lua_setfield(L, -2, "poolLive");
  lua_pushinteger(L, (lua_Integer)lp_pool_cached_bytes(loop->pool));
  lua_setfield(L, -2, "poolCachedBytes");
  return 1;
}

static int loop_channel_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_loop(L)->loop->nchannels);
  return 1;
}

// ---- execute ----------------------------------------------------------------

static void run_exec(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  l_exec *x = lp_container_of(t, l_exec, task);
  l_host *h = x->h;
  if (!h->closing) {
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->fn_ref);
    l_pcall_log(L, 0, "a task given to execute()", 0);
    luaL_unref(L, LUA_REGISTRYINDEX, x->fn_ref);
  }
  free(x);
}

static int loop_execute(lua_State *L) {
  l_host *h = check_loop(L);
  l_checktype(L, 2, LUA_TFUNCTION);
  l_exec *x = malloc(sizeof *x);
  if (!x) return luaL_error(L, "execute: out of memory");
  x->h = h;
  x->task.run = run_exec;
  lua_pushvalue(L, 2);
  x->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lp_loop_defer(h->loop, &x->task);
  return 0;
}

// ---- timers -------------------------------------------------------------------

static void timer_release(lua_State *L, l_timer *t) {
  if (t->h->loop && ev_is_active(&t->w)) ev_timer_stop(t->h->loop->ev, &t->w);
  if (t->fn_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
  if (t->self_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
  t->fn_ref = t->self_ref = LUA_NOREF;
}

static void on_timer(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  l_timer *t = lp_container_of(w, l_timer, w);
  l_host *h = t->h;
  if (h->closing) return;
  lua_State *L = h->L;
  lua_checkstack(L, 4);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref); // keep t alive through the call
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
  bool ok = l_pcall_log(L, 0, t->periodic ? "a periodic task" : "a scheduled task", 0);
  // A periodic task that fails is not run again (as in Netty).
  if (!t->periodic || !ok) timer_release(L, t);
  lua_pop(L, 1);
}

static int schedule(lua_State *L, double after, double period, int fn) {
  l_host *h = check_loop(L);
  l_checktype(L, fn, LUA_TFUNCTION);
  if (!(after >= 0) || !(period >= 0)) return luaL_error(L, "schedule: delays must be non-negative numbers");
  l_timer *t = l_newudata(L, sizeof *t, 0, &l_key_timer);
  t->h = h;
  t->periodic = period > 0;
  t->fn_ref = t->self_ref = LUA_NOREF;
  ev_timer_init(&t->w, on_timer, after, period);
  lua_pushvalue(L, fn);
  t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ev_timer_start(h->loop->ev, &t->w);
  return 1;
}

static int loop_schedule(lua_State *L) { return schedule(L, l_checknumber(L, 2), 0, 3); }

static int loop_schedule_at_fixed_rate(lua_State *L) {
  double period = l_checknumber(L, 3);
  if (!(period > 0)) return l_argerror(L, 3, "period must be positive");
  return schedule(L, l_checknumber(L, 2), period, 4);
}

static int timer_cancel(lua_State *L) {
  l_timer *t = l_checkudata(L, 1, &l_key_timer, "lupine.Timer");
  bool was = t->h->loop && ev_is_active(&t->w);
  timer_release(L, t);
  lua_pushboolean(L, was);
  return 1;
}

static int timer_is_active(lua_State *L) {
  l_timer *t = l_checkudata(L, 1, &l_key_timer, "lupine.Timer");
  lua_pushboolean(L, t->h->loop && ev_is_active(&t->w));
  return 1;
}

static int timer_gc(lua_State *L) {
  l_timer *t = l_checkudata(L, 1, &l_key_timer, "lupine.Timer");
  if (t->h->loop && ev_is_active(&t->w)) ev_timer_stop(t->h->loop->ev, &t->w);
  return 0;
}

static int loop_tostring(lua_State *L) {
  l_host *h = check_loop(L);
  lua_pushfstring(L, "lupine.Loop(worker %d, %d channels)", h->loop->id, (int)h->loop->nchannels);
  return 1;
}

static const luaL_Reg loop_methods[] = {
    {"run", loop_run},
    {"runUntil", loop_run_until},
    {"runFor", loop_run_for},
    {"stop", loop_stop},
    {"now", loop_now},
    {"channelCount", loop_channel_count},
    {"stats", loop_stats},
    {"execute", loop_execute},
    {"schedule", loop_schedule},
    {"scheduleAtFixedRate", loop_schedule_at_fixed_rate},
    {NULL, NULL},
};

static const luaL_Reg timer_methods[] = {
    {"cancel", timer_cancel},
    {"isActive", timer_is_active},
    {NULL, NULL},
};

void l_loop_open(lua_State *L) {
  l_newmetatable(L, "lupine.Loop", &l_key_loop);
  lua_pushcfunction(L, loop_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, loop_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  l_newmetatable(L, "lupine.Timer", &l_key_timer);
  lua_pushcfunction(L, timer_gc);
  lua_setfield(L, -2, "__gc");
  luaL_newlib(L, timer_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
