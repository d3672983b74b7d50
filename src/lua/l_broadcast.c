// l_broadcast.c: messages between the workers of a process (src/bus.c).
//
//   lupine.subscribe(topic, fn)      fn(value, topic) on this state's loop, for each message
//   lupine.unsubscribe(topic [, fn]) how many subscriptions went (fn nil: all of topic's)
//   lupine.broadcast(topic, value)   receivers [, "BroadcastQueueFull: ..."]
//   lupine.setBroadcastLimit(n)      undelivered messages this state may hold (10000)
//
// Values are copied as lupine.blocking copies them (l_flat.c): nil, booleans,
// numbers, strings and flat tables of those. A broadcast reaches every
// subscriber of the process, this state's own included, always later from
// its loop (never inside broadcast), in order per sender.
//
// Per state: a client userdata in the registry owns the bus endpoint (its
// __gc detaches it; made after the state's host, so it goes first when the
// state closes) and a table topic -> { fn, ... } holds the subscribers.
#include "lbind.h"

#include "bus.h"
#include "l_flat.h"
#include "log.h"

#include <string.h>

static const char client_key = 'b', subs_key = 's';

typedef struct l_bus_client {
  lp_bus_ep *ep;
  l_host *h;
} l_bus_client;

typedef struct delivery {
  const char *topic, *data;
  size_t tlen, len;
} delivery;

// Protected, on the state's main thread: [1] delivery.
static int deliver_protected(lua_State *L) {
  delivery *m = lua_touserdata(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &subs_key);
  if (!lua_istable(L, -1)) return 0;
  lua_pushlstring(L, m->topic, m->tlen);
  int topic = lua_gettop(L);
  if (lua_rawget(L, -2) != LUA_TTABLE) return 0;
  int list = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  if (n == 0) return 0;
  lua_createtable(L, (int)n, 0); // a snapshot: a subscriber may unsubscribe others
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    lua_rawseti(L, -2, i);
  }
  int snap = lua_gettop(L);
  lua_pushlstring(L, m->topic, m->tlen);
  lua_replace(L, topic);
  l_reader r = {m->data, m->data + m->len};
  l_flat_decode(L, &r);
  int value = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, snap, i);
    lua_pushvalue(L, value);
    lua_pushvalue(L, topic);
    l_pcall_log(L, 2, "a lupine.subscribe function", 0);
  }
  return 0;
}

static void deliver(void *ud, const char *topic, size_t tlen, const char *data, size_t len) {
  l_bus_client *c = ud;
  l_host *h = c->h;
  if (h->closing) return;
  lua_State *L = h->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 4)) return;
  delivery m = {topic, data, tlen, len};
  lua_pushcfunction(L, deliver_protected);
  lua_pushlightuserdata(L, &m);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) { // out of memory decoding the value
    char text[256];
    lp_log(LP_LOG_ERROR, 0, "delivering a broadcast: %s", l_describe_error(L, -1, text, sizeof text));
  }
  lua_settop(L, top);
}

static int client_gc(lua_State *L) {
  l_bus_client *c = lua_touserdata(L, 1);
  if (c->ep) lp_bus_detach(c->ep);
  c->ep = NULL;
  return 0;
}

// This state's client, made on first use.
static l_bus_client *client(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &client_key) == LUA_TUSERDATA) {
    l_bus_client *c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return c;
  }
  lua_pop(L, 1);
  l_host *h = l_host_get(L);
  l_bus_client *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->ep = NULL;
  c->h = h;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, client_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  c->ep = lp_bus_attach(h->loop, deliver, c, 0);
  if (!c->ep) return luaL_error(L, "not enough memory"), NULL;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &client_key);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &subs_key);
  return c;
}

static const char *checktopic(lua_State *L, size_t *len) {
  const char *t = l_checklstring(L, 1, len);
  l_argcheck(L, *len <= LP_BUS_TOPIC_MAX, 1, "topic longer than 1024 bytes");
  return t;
}

static int l_subscribe(lua_State *L) {
  size_t tlen;
  checktopic(L, &tlen);
  l_checktype(L, 2, LUA_TFUNCTION);
  l_bus_client *c = client(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &subs_key);
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  // Count it in the core first: when that fails, nothing changed here.
  if (lp_bus_subscribe(c->ep, lua_tostring(L, 1), tlen, 1) != 0) return luaL_error(L, "not enough memory");
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

static int l_unsubscribe(lua_State *L) {
  size_t tlen;
  const char *topic = checktopic(L, &tlen);
  bool all = lua_isnoneornil(L, 2);
  if (!all) l_checktype(L, 2, LUA_TFUNCTION);
  l_bus_client *c = client(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &subs_key);
  lua_pushvalue(L, 1);
  lua_Integer removed = 0;
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    int list = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list), j = 1;
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, list, i);
      if ((all || (removed == 0 && lua_rawequal(L, -1, 2)))) {
        lua_pop(L, 1);
        removed++;
        lp_bus_subscribe(c->ep, topic, tlen, -1);
        continue;
      }
      lua_rawseti(L, list, j++);
    }
    for (; j <= n; j++) {
      lua_pushnil(L);
      lua_rawseti(L, list, j);
    }
    if (lua_rawlen(L, list) == 0) {
      lua_pushvalue(L, 1);
      lua_pushnil(L);
      lua_rawset(L, list - 1);
    }
  }
  lua_pushinteger(L, removed);
  return 1;
}

static int l_broadcast_fn(lua_State *L) {
  size_t tlen;
  const char *topic = checktopic(L, &tlen);
  l_checkany(L, 2);
  l_blob b = {0};
  char err[L_FLAT_ERR_MAX];
  l_crossing x = {"lupine.broadcast", "argument", "to other workers", 2, err};
  if (!l_flat_encode(L, 2, &b, &x)) {
    l_blob_free(&b);
    lua_pushstring(L, err);
    return lua_error(L);
  }
  size_t receivers = 0, dropped = 0;
  int rc = b.oom ? -1 : lp_bus_publish(topic, tlen, b.data, b.len, &receivers, &dropped);
  l_blob_free(&b);
  if (rc) return luaL_error(L, "not enough memory");
  lua_pushinteger(L, (lua_Integer)receivers);
  if (!dropped) return 1;
  lua_pushfstring(L, "BroadcastQueueFull: %I subscribing worker%s fell behind (its queue of undelivered messages is full) and miss%s this message",
                  (lua_Integer)dropped, dropped == 1 ? "" : "s", dropped == 1 ? "es" : "");
  return 2;
}

static int l_set_broadcast_limit(lua_State *L) {
  lua_Integer n = l_checkinteger(L, 1);
  l_argcheck(L, n >= 1 && n <= 100000000, 1, "limit must be from 1 to 100000000");
  lp_bus_set_max_queued(client(L)->ep, (size_t)n);
  return 0;
}

static const luaL_Reg funcs[] = {{"subscribe", l_subscribe},
                                 {"unsubscribe", l_unsubscribe},
                                 {"broadcast", l_broadcast_fn},
                                 {"setBroadcastLimit", l_set_broadcast_limit},
                                 {NULL, NULL}};

void l_broadcast_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
