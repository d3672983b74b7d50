// l_co.c: the little native help lua/lupine/co.lua (coroutines) needs: a
// failed future that nobody observed reported through a Lua function (the
// core's unobserved hook), log lines with a channel id, and the socket
// handler's operations (inbound Buffers as strings, and the fast path that
// resumes a coroutine parked in receiveAny straight from the read).
//
// Ownership: _onUnobserved's record (host, registry reference to the function)
// belongs to the future's hook: the core calls drop() exactly once, after the
// report or when the future goes unreported, and drop frees it.
#include "lbind.h"

#include "log.h"

#include <stdint.h>
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

// ---- the socket's handler: strings in, and a parked receiveAny resumed from here ----------
//
// The socket's handler (co.lua's Tail) gets its own operations: a Lua handler
// whose inbound Buffers arrive as strings (what a socket returns is strings,
// and one made from the read buffer by the dispatch costs less than a Buffer
// box and readString/release), and whose read goes straight to a coroutine
// parked in receiveAny: receiveAny's fast path parks in _coParkAny, which
// keeps the coroutine in the context (state, a lua_State*), and the next
// Buffer resumes it with the string at once: no handler call, no Lua
// channelRead, no coroutine.resume in between.
//
// Invariants: ctx->state is the thread the context table's [2] holds (so
// the pointer stays valid while the context is linked; its removal clears
// state), tagged with PARKED while that thread is parked in _coParkAny on
// this context, or NULL. Whatever resumes the coroutine clears PARKED: deliver
// before it resumes, parked_resumed after co.lua's wakers. The hold stays
// after the park (the thread is the socket's own coroutine in the common
// case, alive anyway, and the next park of the same thread then costs no
// table write); the table goes with the context.

#define PARKED ((uintptr_t)1)
static inline lua_State *held(const lp_ctx *c) { return (lua_State *)((uintptr_t)c->state & ~PARKED); }
static inline bool parked(const lp_ctx *c) { return ((uintptr_t)c->state & PARKED) != 0; }

static const char parked_mark; // what _coParkAny yields: "parked in a lupine wait"
static const char deliver_key; // what deliver resumes with, before the message
static const char key_tail, key_settle; // registry: co.lua's Tail table and settle function

static inline l_host *host_of(const lp_ctx *c) { return c->pipeline->channel->host; }

// After a resume that did not end in a new park in _coParkAny (the coroutine
// ended, raised, or waits elsewhere): co.lua's settle(co, ok, ...) finishes it.
static void settle(lp_ctx *c, lua_State *L, lua_State *co, int st, int nres) {
  if (st != LUA_OK && st != LUA_YIELD) nres = 1; // the error object
  if (!lua_checkstack(L, nres + 4) || !lua_checkstack(co, 1)) {
    lua_pop(co, nres);
    lp_log(LP_LOG_ERROR, lp_ctx_channel(c)->id, "Lua stack overflow: a coroutine's end dropped");
    return;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_settle);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushboolean(L, st == LUA_OK || st == LUA_YIELD);
  lua_xmove(co, L, nres);
  l_pcall_log(L, nres + 2, "settling a coroutine", lp_ctx_channel(c)->id);
}

// The fast path: resume the coroutine parked on c with m (parked_resumed,
// running in it, makes the string: an allocation that fails raises there, in
// the coroutine, not through this libev callback). True when m was taken.
static bool deliver(lp_ctx *c, lp_msg *m) {
  lua_State *co = held(c);
  c->state = co; // not parked any more
  l_host *h = host_of(c);
  // A coroutine closed while parked (co._abandon) is not resumed: the Lua path decides.
  if (h->closing || lua_status(co) != LUA_YIELD || !lua_checkstack(co, 2)) return false;
  lua_pushlightuserdata(co, (void *)&deliver_key);
  lua_pushlightuserdata(co, m);
  int nres;
  int st = lua_resume(co, h->L, 2, &nres);
  if (st == LUA_YIELD && nres == 1 && lua_touserdata(co, -1) == &parked_mark) lua_pop(co, 1); // parked again
  else settle(c, h->L, co, st, nres);
  return m->kind == LP_MSG_NONE; // not taken (out of memory): the Lua path gets it
}

static void tail_inbound(lp_ctx *c, int ev, lp_msg *m) {
  if (ev == LP_EV_READ && m && m->kind == LP_MSG_BUF) {
    m->flags |= LP_MSGF_STRING;
    if (parked(c) && deliver(c, m)) return;
  }
  l_lua_handler_ops.inbound(c, ev, m);
}

static void tail_removed(lp_ctx *c) {
  c->state = NULL; // the context table (and its hold on the thread) may go now
  l_lua_handler_ops.removed(c);
}

static void tail_added(lp_ctx *c) { l_lua_handler_ops.added(c); }

static void tail_outbound(lp_ctx *c, int op, lp_msg *m, lp_future *promise) {
  l_lua_handler_ops.outbound(c, op, m, promise);
}

const lp_handler_ops l_co_tail_ops = {"handler", 0, tail_added, tail_removed, tail_inbound, tail_outbound, NULL};

const lp_handler_ops *l_handler_ops_for(lua_State *L, int hi) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_tail);
  bool tail = lua_rawequal(L, -1, hi);
  lua_pop(L, 1);
  return tail ? &l_co_tail_ops : &l_lua_handler_ops;
}

// The socket's context in ch's pipeline: the last one with these operations
// (the socket is added last; handlers added after it are rare), or NULL.
static lp_ctx *tail_of(lp_channel *ch) {
  lp_pipeline *p = &ch->pipeline;
  for (lp_ctx *c = p->tail.prev; c && c != &p->head; c = c->prev)
    if (c->ops == &l_co_tail_ops && !c->removed) return c;
  return NULL;
}

// The coroutine was resumed: by deliver ([2] deliver_key, [3] the message:
// the bytes become a string here) or by anyone else (co.lua's wakers: nil,
// why, msg). [1] is the channel it parked on.
static int parked_resumed(lua_State *L, int status, lua_KContext k) {
  LP_UNUSED(status), LP_UNUSED(k);
  if (lua_touserdata(L, 2) == &deliver_key) {
    lp_msg *m = lua_touserdata(L, 3);
    lp_buf *b = m->u.buf;
    lua_pushlstring(L, (const char *)lp_buf_rptr(b), lp_buf_readable(b)); // may raise: m still owns b
    m->kind = LP_MSG_NONE;
    lp_buf_unref(b);
    return 1;
  }
  lp_ctx *c = tail_of(l_channel_check(L, 1));
  if (c && c->state == (void *)((uintptr_t)L | PARKED)) c->state = L;
  return lua_gettop(L) - 1; // what the resumer gave
}

// core._coParkAny(ch): in a coroutine, park it on the socket's context in
// ch's pipeline until the next Buffer reaches it (resumed with the bytes as a
// string: data) or co.lua wakes it (with nil, why, msg). Returns what the
// resumer gave.
static int park_any(lua_State *L) {
  lp_ctx *c = tail_of(l_channel_check(L, 1));
  if (!c) return luaL_error(L, "receiveAny: the socket's handler is not in the channel's pipeline");
  if (held(c) != L) { // the context table holds the thread from now on
    if (lua_pushthread(L)) return luaL_error(L, "receiveAny: called outside a coroutine");
    if (c->box_ref < 0) return luaL_error(L, "receiveAny: the socket's handler is not in the channel's pipeline");
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->box_ref);
    lua_rotate(L, -2, 1);
    lua_rawseti(L, -2, 2);
  }
  c->state = (void *)((uintptr_t)L | PARKED);
  lua_settop(L, 1);
  lua_pushlightuserdata(L, (void *)&parked_mark);
  return lua_yieldk(L, 1, 0, parked_resumed);
}

// Whether a handler in p handles writes.
static bool writers_before_head(const lp_pipeline *p) {
  for (const lp_ctx *c = p->tail.prev; c && c != &p->head; c = c->prev)
    if (c->mask & LP_MASK(LP_OP_WRITE)) return true;
  return false;
}

// core._coSend(ch, data): the socket's send once nothing waits: when the
// channel is writable, writes and flushes data from the pipeline's tail
// (ch:writeAndFlush(data)) and returns what send returns (the bytes of a
// string, 1 for another message); false (nothing written) when it is over
// its high water mark. One call instead of three.
static int co_send(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  if (!lp_channel_is_writable(ch)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (lua_type(L, 2) != LUA_TSTRING) {
    l_outbound_write(L, &ch->pipeline.tail, true);
    lua_pushinteger(L, 1);
    return 1;
  }
  size_t len;
  const char *s = lua_tolstring(L, 2, &len);
  lp_pipeline *p = &ch->pipeline;
  lp_buf *b;
  // A short string the head would copy anyway, with no handler on the way
  // that writes (a Lua one must get the string): copied here, so the string
  // is not lent to the main thread's stack and converted there.
  if (len <= L_STRING_COPY_MAX && !writers_before_head(p) && (b = lp_buf_from(ch->loop->pool, s, len))) {
    lp_msg m = {.kind = LP_MSG_BUF, .u.buf = b};
    lp_pipeline_enter(p);
    lp_ctx_op(&p->tail, LP_OP_WRITE, &m, NULL);
    lp_ctx_op(&p->tail, LP_OP_FLUSH, NULL, NULL);
    lp_pipeline_leave(p);
  } else l_outbound_write(L, &p->tail, true);
  lua_pushinteger(L, (lua_Integer)len);
  return 1;
}

// core._coSetup(Tail, settle): the socket handler table (its contexts get
// l_co_tail_ops), and co.lua's settle(co, ok, ...) for what deliver cannot
// finish itself.
static int co_setup(lua_State *L) {
  l_checktype(L, 1, LUA_TTABLE);
  l_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_settle);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_tail);
  return 0;
}

static const luaL_Reg funcs[] = {
    {"_onUnobserved", on_unobserved}, {"_logChannel", log_channel}, {"_coParkAny", park_any}, {"_coSend", co_send},
    {"_coSetup", co_setup}, {NULL, NULL}};

void l_co_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
