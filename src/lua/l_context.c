// l_context.c: lupine.Context, a handler's view of its place in a pipeline,
// and the outbound calls from Lua (write, flush, read, close) that contexts,
// pipelines and channels share.
//
// References: a context holds a registry reference to its handler (host_ref)
// and caches its lupine.Context table (box_ref); both are dropped when it
// leaves the pipeline (l_dispatch.c's host hooks). The table's box holds a
// reference on the context and one on its channel, so a handle kept by Lua
// stays safe to use.
#include "lbind.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  L_BOX_HEAD;
  lp_ctx *ctx;
} l_ctx;

static inline l_host *host_of(const lp_ctx *c) { return c->pipeline->channel->host; }

// ---- lupine.Context ------------------------------------------------------------------

// A context is a Lua table, so that `ctx:write(...)` finds its method through a
// plain table __index (a C __index function costs a C call per lookup): its
// properties are fields (channel, name, handler, pipeline, executor), [1] is
// the box holding the native context, and the shared metatable
// "lupine.Context" gives the methods.
void l_context_push(lua_State *L, lp_ctx *c) {
  if (c->box_ref >= 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->box_ref);
    return;
  }
  lp_channel *ch = lp_ctx_channel(c);
  lua_createtable(L, 1, 5);
  l_ctx *box = l_newudata(L, sizeof *box, 0, &l_key_context_box);
  box->ctx = c;
  c->refs++;
  lp_channel_ref(ch);
  lua_rawseti(L, -2, 1);
  l_channel_push(L, ch);
  lua_setfield(L, -2, "channel");
  lua_pushstring(L, c->name);
  lua_setfield(L, -2, "name");
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->host_ref);
  lua_setfield(L, -2, "handler");
  l_pipeline_push(L, ch);
  lua_setfield(L, -2, "pipeline");
  l_loop_push(L, ch->host);
  lua_setfield(L, -2, "executor");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &l_key_context);
  lua_setmetatable(L, -2);
  if (!c->removed) { // cached while linked; a removed context gets an uncached one
    lua_pushvalue(L, -1);
    c->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

lp_ctx *l_context_test(lua_State *L, int i) {
  if (lua_topointer(L, i) == l_dispatch_table && l_dispatch_table) return l_dispatch_ctx;
  if (lua_type(L, i) != LUA_TTABLE) return NULL;
  lua_rawgeti(L, i, 1);
  l_ctx *box = l_testudata(L, -1, &l_key_context_box);
  lua_pop(L, 1);
  return box ? box->ctx : NULL;
}

static lp_ctx *check_ctx(lua_State *L, int i) {
  lp_ctx *c = l_context_test(L, i);
  if (!c) l_typeerror(L, i, "lupine.Context");
  return c;
}

static int ctx_gc(lua_State *L) {
  l_ctx *box = l_checkudata(L, 1, &l_key_context_box, "lupine.ContextBox");
  if (box->ctx) {
    lp_channel *ch = lp_ctx_channel(box->ctx);
    lp_ctx_unref(box->ctx);
    lp_channel_unref(ch);
    box->ctx = NULL;
  }
  return 0;
}

// ctx:fireXxx(...): one C function per event, the event id as upvalue.
static int ctx_fire(lua_State *L) {
  lp_ctx *c = check_ctx(L, 1);
  int ev = (int)lua_tointeger(L, lua_upvalueindex(1));
  bool with_msg = ev == LP_EV_READ || ev == LP_EV_USER_EVENT || ev == LP_EV_EXCEPTION;
  if (with_msg) l_checkany(L, 2);
  l_entry e;
  int slot = l_enter(&e, L, host_of(c), NULL, with_msg ? 2 : 0);
  lp_msg m = l_host_msg(slot);
  lp_ctx_fire(c, ev, with_msg ? &m : NULL);
  l_leave(&e);
  lua_settop(L, 1);
  return 1;
}

// Outbound from a context (from = ctx) or the channel/pipeline (from = tail).
// write(msg [, promise | listener]): a write makes no future unless asked for
// one (a Lua future per write costs two allocations and GC work on the hot
// path); a failure nobody asked about still reaches exceptionCaught.
int l_outbound_write(lua_State *L, lp_ctx *from, bool flush) {
  l_checkany(L, 2);
  lp_channel *ch = lp_ctx_channel(from);
  lp_future *f = NULL;
  int t = lua_type(L, 3);
  if (t == LUA_TFUNCTION) { // the promise lives in a box on the stack: a raise leaves it to the GC
    if (!(f = lp_channel_new_promise(ch))) return luaL_error(L, "write: out of memory");
    l_future_push(L, f);
    lp_future_unref(f);
    l_future_listen(L, f, 3);
  } else if (t != LUA_TNONE && t != LUA_TNIL) {
    f = l_future_test(L, 3); // its box, in slot 3, keeps it through the call
    l_argexpected(L, f != NULL, 3, "lupine.Future or listener function");
    l_future_take(L, f, "write", from);
  }
  l_entry e;
  lp_msg m = l_host_msg(l_enter(&e, L, ch->host, from->pipeline, 2));
  lp_ctx_op(from, LP_OP_WRITE, &m, f);
  if (flush) lp_ctx_op(from, LP_OP_FLUSH, NULL, NULL);
  l_leave(&e);
  if (!f || t == LUA_TFUNCTION) return 0;
  lua_settop(L, 3);
  return 1; // the promise given
}

// Push the promise given at idx (taken by operation `what` from context
// from: l_future_take), or a new one; returns it. A new one reports its
// failure when nobody looks at it when report is set.
static lp_future *promise_arg(lua_State *L, int idx, lp_ctx *from, bool report, const char *what) {
  lp_channel *ch = lp_ctx_channel(from);
  lp_future *f = l_future_test(L, idx);
  if (f) {
    l_future_take(L, f, what, from);
    lua_pushvalue(L, idx);
    return f;
  }
  if (!(f = report ? lp_channel_new_promise(ch) : lp_future_new(ch->loop))) luaL_error(L, "%s: out of memory", what);
  l_future_push(L, f);
  lp_future_unref(f); // the box holds it
  return f;
}

int l_outbound_simple(lua_State *L, lp_ctx *from, int op) {
  lp_channel *ch = lp_ctx_channel(from);
  // A close that fails (an outbound handler raised) and that nobody looks
  // at reaches exceptionCaught, as a failed write does.
  lp_future *f = op == LP_OP_CLOSE ? promise_arg(L, 2, from, true, "close") : NULL;
  l_entry e;
  l_enter(&e, L, ch->host, from->pipeline, 0);
  lp_ctx_op(from, op, NULL, f);
  l_leave(&e);
  if (!f) lua_settop(L, 1);
  return 1; // self, or the promise
}

static int ctx_write(lua_State *L) { return l_outbound_write(L, check_ctx(L, 1), false); }
static int ctx_write_and_flush(lua_State *L) { return l_outbound_write(L, check_ctx(L, 1), true); }
static int ctx_flush(lua_State *L) { return l_outbound_simple(L, check_ctx(L, 1), LP_OP_FLUSH); }
static int ctx_read(lua_State *L) { return l_outbound_simple(L, check_ctx(L, 1), LP_OP_READ); }
static int ctx_close(lua_State *L) { return l_outbound_simple(L, check_ctx(L, 1), LP_OP_CLOSE); }

// ctx:connect(address [, promise]): pass a connect operation on toward the
// head, from a handler's connect(ctx, address, promise) method (which may log
// it, or change the address). address is numeric, "127.0.0.1:80" or
// "[::1]:80", as the handler received it. Returns the promise.
static int ctx_connect(lua_State *L) {
  lp_ctx *c = check_ctx(L, 1);
  const char *a = l_checkcstring(L, 2);
  const char *colon = strrchr(a, ':');
  char host[64];
  lp_sockaddr addr;
  char *end = NULL;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || (size_t)(colon - a) >= sizeof host || !end || *end || end == colon + 1 || port < 1 || port > 65535)
    return l_argerror(L, 2, "expected a numeric address \"host:port\"");
  memcpy(host, a, (size_t)(colon - a));
  host[colon - a] = 0;
  if (lp_addr_parse(host, (int)port, &addr) != 0) return l_argerror(L, 2, "expected a numeric address \"host:port\"");
  lp_future *f = promise_arg(L, 3, c, true, "connect");
  l_entry e;
  l_enter(&e, L, host_of(c), c->pipeline, 0);
  lp_msg m = {.kind = LP_MSG_PTR, .u.ptr = &addr};
  lp_ctx_op(c, LP_OP_CONNECT, &m, f);
  l_leave(&e);
  return 1; // the promise
}

static int ctx_new_promise(lua_State *L) {
  lp_future *f = lp_channel_new_promise(lp_ctx_channel(check_ctx(L, 1)));
  if (!f) return luaL_error(L, "newPromise: out of memory");
  l_future_push(L, f);
  lp_future_unref(f);
  return 1;
}

static int ctx_is_removed(lua_State *L) {
  lua_pushboolean(L, check_ctx(L, 1)->removed);
  return 1;
}

static int ctx_newindex(lua_State *L) {
  return luaL_error(L, "lupine.Context is read-only (keep state in ctx.channel.attr or the handler)");
}

static int ctx_tostring(lua_State *L) {
  lp_ctx *c = check_ctx(L, 1);
  lua_pushfstring(L, "lupine.Context('%s' on channel #%I%s)", c->name, (lua_Integer)lp_ctx_channel(c)->id,
                  c->removed ? ", removed" : "");
  return 1;
}
// ---- registration -----------------------------------------------------------------------

static const char *const fire_names[LP_EV_FIRST_OUTBOUND] = {
    "fireChannelRegistered", "fireChannelUnregistered", "fireChannelActive",
    "fireChannelInactive",   "fireChannelRead",         "fireChannelReadComplete",
    "fireUserEventTriggered", "fireChannelWritabilityChanged", "fireExceptionCaught",
};

void l_add_fire_methods(lua_State *L, lua_CFunction fn) {
  for (int e = 0; e < LP_EV_FIRST_OUTBOUND; e++) {
    lua_pushinteger(L, e);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, fire_names[e]);
  }
}

static const luaL_Reg ctx_methods[] = {
    {"write", ctx_write}, {"writeAndFlush", ctx_write_and_flush}, {"flush", ctx_flush},
    {"read", ctx_read},   {"close", ctx_close},                   {"newPromise", ctx_new_promise},
    {"connect", ctx_connect},
    {"isRemoved", ctx_is_removed}, {NULL, NULL},
};

void l_context_open(lua_State *L) {
  l_newmetatable(L, "lupine.Context", &l_key_context);
  lua_pushcfunction(L, ctx_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, ctx_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_newtable(L);
  luaL_setfuncs(L, ctx_methods, 0);
  l_add_fire_methods(L, ctx_fire);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  l_newmetatable(L, "lupine.ContextBox", &l_key_context_box);
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}
