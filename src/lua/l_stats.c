// l_stats.c: lupine.stats() and the admin listener's native side
// (lua/lupine/admin.lua): _statsOff(ch) and _channels(timeout, max, fn).
//
// Threads: the statistics of other loops are read through lp_stats_read
// (relaxed atomics, see stats.h); the loops of a group stay allocated until
// lp_group_destroy, which clears loop->group first, so a loop that sees its
// group may read every loop of it. Live channels come through a cross-loop
// query (stats_query.h): nothing but C structs crosses threads, and the Lua
// callback runs on the asking state's loop.
#include "lbind.h"

#include "group.h"
#include "stats_query.h"

#include <stdlib.h>
#include <string.h>

#define MAX_CHANNELS_PER_LOOP 100000

// The loops to report: the group's workers (the inline worker is the boss
// loop itself), or the caller's loop alone outside a group. *boss: the boss
// loop when it is a loop of its own (threaded workers), else NULL. Returns the
// number of worker loops written to out (at most max).
static int group_loops(lp_loop *self, lp_loop **out, int max, lp_loop **boss) {
  lp_group *g = self->group;
  *boss = NULL;
  if (!g) {
    out[0] = self;
    return 1;
  }
  if (g->cfg.workers == 0) {
    out[0] = g->boss;
    return 1;
  }
  *boss = g->boss;
  int n = 0;
  for (int i = 0; i < g->nworkers && n < max; i++)
    if (g->workers[i].loop) out[n++] = g->workers[i].loop;
  return n;
}

static void set_int(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void push_closed(lua_State *L, const uint64_t *closed) {
  lua_createtable(L, 0, LP_CLOSE_COUNT);
  for (int c = LP_CLOSE_NONE + 1; c < LP_CLOSE_COUNT; c++) set_int(L, lp_close_cause_name[c], closed[c]);
}

// One loop's statistics as a table; handler errors also added into the table
// at index totals_handlers (by name).
static void push_snapshot(lua_State *L, const lp_stats_snapshot *s, int totals_handlers) {
  lua_createtable(L, 0, 16);
  set_int(L, "id", (uint64_t)s->loop_id);
  set_int(L, "accepted", s->accepted);
  set_int(L, "connected", s->connected);
  set_int(L, "active", s->active);
  push_closed(L, s->closed);
  lua_setfield(L, -2, "closed");
  set_int(L, "bytesIn", s->bytes_in);
  set_int(L, "bytesOut", s->bytes_out);
  set_int(L, "reads", s->reads);
  set_int(L, "writes", s->writes);
  set_int(L, "pending", s->pending);
  set_int(L, "unwritable", s->unwritable);
  set_int(L, "luaMemory", s->host_memory);
  lua_createtable(L, 0, 4);
  set_num(L, "p50", s->lag_p50);
  set_num(L, "p99", s->lag_p99);
  set_num(L, "max", s->lag_max);
  set_int(L, "samples", s->lag_samples);
  lua_setfield(L, -2, "lag");
  lua_createtable(L, 0, (int)s->nhandlers);
  for (unsigned i = 0; i <= s->nhandlers; i++) {
    const char *name = i < s->nhandlers ? s->handler[i].name : "(other)";
    uint64_t count = i < s->nhandlers ? s->handler[i].count : s->handler_errors_other;
    if (!count) continue;
    set_int(L, name, count);
    lua_getfield(L, totals_handlers, name);
    lua_Integer sum = lua_tointeger(L, -1) + (lua_Integer)count;
    lua_pop(L, 1);
    lua_pushinteger(L, sum);
    lua_setfield(L, totals_handlers, name);
  }
  lua_setfield(L, -2, "handlerErrors");
}

static void add_snapshot(lp_stats_snapshot *t, const lp_stats_snapshot *s) {
  t->accepted += s->accepted;
  t->connected += s->connected;
  t->active += s->active;
  for (int c = 0; c < LP_CLOSE_COUNT; c++) t->closed[c] += s->closed[c];
  t->bytes_in += s->bytes_in;
  t->bytes_out += s->bytes_out;
  t->reads += s->reads;
  t->writes += s->writes;
  t->pending += s->pending;
  t->unwritable += s->unwritable;
  t->host_memory += s->host_memory;
  // Lag has no sum: the total shows the worst loop's.
  if (s->lag_p50 > t->lag_p50) t->lag_p50 = s->lag_p50;
  if (s->lag_p99 > t->lag_p99) t->lag_p99 = s->lag_p99;
  if (s->lag_max > t->lag_max) t->lag_max = s->lag_max;
  t->lag_samples += s->lag_samples;
}

// lupine.stats() -> { workers = { {id = 1, ...}, ... }, boss = {...} (with
// worker threads), total = {...} }
static int lupine_stats(lua_State *L) {
  lp_loop *self = l_host_get(L)->loop;
  lp_loop *loops[LP_GROUP_MAX_WORKERS], *boss;
  int n = group_loops(self, loops, LP_GROUP_MAX_WORKERS, &boss);
  lp_stats_snapshot *snap = malloc(sizeof *snap), total;
  if (!snap) return luaL_error(L, "lupine.stats: out of memory");
  memset(&total, 0, sizeof total);
  lua_createtable(L, 0, 3);
  int result = lua_gettop(L);
  lua_newtable(L); // the total's handler errors, filled as each loop is pushed
  int handlers = lua_gettop(L);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lp_stats_read(loops[i], loops[i] == self, snap);
    add_snapshot(&total, snap);
    push_snapshot(L, snap, handlers);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, result, "workers");
  if (boss) {
    lp_stats_read(boss, boss == self, snap);
    add_snapshot(&total, snap);
    push_snapshot(L, snap, handlers);
    lua_setfield(L, result, "boss");
  }
  free(snap);
  total.loop_id = -1;
  push_snapshot(L, &total, handlers);
  lua_pushnil(L);
  lua_setfield(L, -2, "id");
  lua_pushvalue(L, handlers);
  lua_setfield(L, -2, "handlerErrors");
  lua_setfield(L, result, "total");
  lua_settop(L, result);
  return 1;
}

// _statsOff(ch): the admin listener's own connections are not counted.
static int stats_off(lua_State *L) {
  lp_channel_stats_off(l_channel_check(L, 1));
  return 0;
}

// ---- _channels(timeout, max, fn) ---------------------------------------------------

typedef struct {
  l_host *h;
  int fn_ref;
} channels_call;

static void push_channel(lua_State *L, const lp_chan_info *ci, int worker) {
  lua_createtable(L, 0, 10);
  set_int(L, "id", ci->id);
  set_int(L, "worker", (uint64_t)worker);
  lua_pushstring(L, ci->local);
  lua_setfield(L, -2, "localAddress");
  lua_pushstring(L, ci->remote);
  lua_setfield(L, -2, "remoteAddress");
  set_num(L, "age", ci->age);
  set_int(L, "bytesIn", ci->bytes_in);
  set_int(L, "bytesOut", ci->bytes_out);
  set_int(L, "pending", ci->pending);
  lua_pushboolean(L, ci->unwritable);
  lua_setfield(L, -2, "unwritable");
  lua_newtable(L);
  int k = 0;
  for (const char *p = ci->handlers; *p;) {
    size_t len = strcspn(p, ",");
    lua_pushlstring(L, p, len);
    lua_rawseti(L, -2, ++k);
    p += len;
    if (*p) p++;
  }
  lua_setfield(L, -2, "handlers");
}

// Under pcall: [1] the query as a light userdata; pushes the result table.
static int push_query(lua_State *L) {
  const lp_chan_query *q = lua_touserdata(L, 1);
  lua_createtable(L, 0, 4);
  set_int(L, "asked", (uint64_t)q->nparts);
  set_int(L, "answered", (uint64_t)q->nanswered);
  bool truncated = false;
  lua_newtable(L);
  int k = 0;
  for (int i = 0; i < q->nparts; i++) {
    const lp_chan_part *part = &q->parts[i];
    if (!part->answered) continue;
    truncated |= part->truncated;
    for (size_t j = 0; j < part->n; j++) {
      push_channel(L, &part->infos[j], part->loop_id);
      lua_rawseti(L, -2, ++k);
    }
  }
  lua_setfield(L, -2, "channels");
  lua_pushboolean(L, truncated);
  lua_setfield(L, -2, "truncated");
  return 1;
}

static void channels_done(lp_chan_query *q, void *ud) {
  channels_call *call = ud;
  l_host *h = call->h;
  if (!h->closing && lua_checkstack(h->L, 4)) {
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, call->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, call->fn_ref);
    lua_pushcfunction(L, push_query);
    lua_pushlightuserdata(L, q);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) { // out of memory: the callback gets nil and the error
      lua_pushnil(L);
      lua_insert(L, -2);
      l_pcall_log(L, 2, "a /channels callback", 0);
    } else {
      l_pcall_log(L, 1, "a /channels callback", 0);
    }
  }
  free(call);
}

// _channels(timeout, max, fn): fn(result) later, on this loop, with
// { asked, answered, truncated, channels = { {id, worker, localAddress, ...} } }.
static int list_channels(lua_State *L) {
  double timeout = l_checknumber(L, 1);
  lua_Integer max = l_checkinteger(L, 2);
  l_argexpected(L, lua_type(L, 3) == LUA_TFUNCTION, 3, "function");
  l_argcheck(L, timeout > 0 && timeout <= 60, 1, "timeout must be over 0 and at most 60 seconds");
  l_argcheck(L, max >= 0 && max <= MAX_CHANNELS_PER_LOOP, 2, "max must be from 0 to 100000");
  l_host *h = l_host_get(L);
  lp_loop *loops[LP_GROUP_MAX_WORKERS], *boss;
  int n = group_loops(h->loop, loops, LP_GROUP_MAX_WORKERS, &boss);
  channels_call *call = malloc(sizeof *call);
  if (!call) return luaL_error(L, "lupine: out of memory");
  lua_pushvalue(L, 3);
  call->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  call->h = h;
  if (!lp_chan_query_start(h->loop, loops, n, (size_t)max, timeout, channels_done, call)) {
    luaL_unref(L, LUA_REGISTRYINDEX, call->fn_ref);
    free(call);
    return luaL_error(L, "lupine: out of memory");
  }
  return 0;
}

void l_stats_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"stats", lupine_stats},
      {"_statsOff", stats_off},
      {"_channels", list_channels},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
