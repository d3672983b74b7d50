// l_embedded.c: the embedded channel behind lupine.test.embedded (Netty's
// EmbeddedChannel). It is a real lp_channel with its real pipeline; only its
// transport differs: the head's write/flush/close queue messages instead of doing
// I/O, and the tail hook keeps what reaches the tail (messages nobody
// consumed, unhandled exceptions) instead of dropping or logging them.
//
// Where the messages go: a Lua table Q = { inbound = {}, outbound = {},
// pending = {}, promises = {}, exceptions = {} } that test.lua owns and reads
// (readInbound, readOutbound, checkException). The C side finds Q through a
// registry table with weak values keyed by the channel's address, so Q lives
// as long as the Lua object that reads it, and a channel whose Lua object is
// gone drops what it would have queued. Messages become Lua values as they
// are queued (a buffer moves into a Buffer box, a string frame becomes a
// string); pending writes keep their promises (lupine.Future values) until
// flush succeeds them or close fails them.
#include "lbind.h"

#include "log.h"

#include <string.h>

static const char queues_key = 'q';

static l_host *host_of(lp_channel *ch) { return ch->host; }

// Push Q for ch; false (nothing pushed) when it is gone.
static bool push_queues(lua_State *L, lp_channel *ch) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &queues_key);
  if (lua_rawgetp(L, -1, ch) != LUA_TTABLE) {
    lua_pop(L, 2);
    return false;
  }
  lua_remove(L, -2);
  return true;
}

// Under pcall: [1] Q, [2] the field name, [3] the value: Q[field][#+1] = value.
static int append(lua_State *L) {
  lua_getfield(L, 1, lua_tostring(L, 2));
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

// Under pcall: [1] a message that is not a host value, as a light userdata. Pushes it as a Lua value.
static int push_msg_protected(lua_State *L) {
  l_push_msg(L, lua_touserdata(L, 1));
  return 1;
}

// Queue m (as a Lua value) at Q[field]; the message is consumed either way.
// With a promise, also Q.promises[#+1] = the future (or false).
static void enqueue(lp_channel *ch, const char *field, lp_msg *m, lp_future *promise, bool with_promise) {
  l_host *h = host_of(ch);
  if (h->closing) {
    lp_msg_release(m);
    return;
  }
  lua_State *L = h->L;
  lua_checkstack(L, 8);
  int top = lua_gettop(L);
  if (!push_queues(L, ch)) {
    lp_msg_release(m);
    if (promise) lp_future_succeed(promise); // nobody reads this channel any more
    return;
  }
  int q = top + 1;
  if (m->kind == LP_MSG_HOST) { // a stack slot of this frame: copy it here (no allocation)
    lua_pushvalue(L, m->host);
    m->kind = LP_MSG_NONE;
  } else {
    lua_pushcfunction(L, push_msg_protected);
    lua_pushlightuserdata(L, m);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) { // out of memory
      lp_msg_release(m);
      lua_settop(L, top);
      lp_log(LP_LOG_ERROR, ch->id, "embedded channel: a message was lost (out of memory)");
      return;
    }
  }
  int v = lua_gettop(L);
  lua_pushcfunction(L, append);
  lua_pushvalue(L, q);
  lua_pushstring(L, field);
  lua_pushvalue(L, v);
  bool ok = lua_pcall(L, 3, 0, 0) == LUA_OK;
  if (ok && with_promise) {
    lua_pushcfunction(L, append);
    lua_pushvalue(L, q);
    lua_pushliteral(L, "promises");
    if (promise) l_future_push(L, promise);
    else lua_pushboolean(L, 0);
    ok = lua_pcall(L, 3, 0, 0) == LUA_OK;
  }
  if (!ok) lp_log(LP_LOG_ERROR, ch->id, "embedded channel: a message was lost (out of memory)");
  lua_settop(L, top);
}

static void fail_closed(lp_channel *ch, lp_future *promise) {
  lp_error e;
  lp_error_named(&e, LP_ECLOSED, "channel #%llu is closed", (unsigned long long)ch->id);
  lp_channel_fail_promise(ch, promise, &e);
}

static void emb_write(lp_channel *ch, lp_msg *m, lp_future *promise) {
  if (ch->flags & LP_CH_CLOSED) {
    lp_msg_release(m);
    fail_closed(ch, promise);
    return;
  }
  // A Buffer is handed off here, as a socket's head does: the writer's box is
  // empty from now on and readOutbound gets a new one, so a handler that uses
  // or writes a buffer after writing it fails here exactly as it fails live
  // ("lupine.Buffer used after release or hand-off"). Strings and other
  // values are queued as they are (an encoder's spec reads them back).
  l_host *h = host_of(ch);
  if (m->kind == LP_MSG_HOST && !h->closing && l_testudata(h->L, m->host, &l_key_buffer)) {
    lp_error e;
    if (ch->loop->host_ops->to_buf(ch, m, &e) != 0) {
      lp_msg_release(m);
      lp_channel_fail_promise(ch, promise, &e);
      return;
    }
  }
  enqueue(ch, "pending", m, promise, true);
}

// Move pending writes to outbound (flush) or drop them (close), completing their promises.
static void settle_pending(lp_channel *ch, bool flush) {
  l_host *h = host_of(ch);
  if (h->closing) return;
  lua_State *L = h->L;
  lua_checkstack(L, 8);
  int top = lua_gettop(L);
  if (!push_queues(L, ch)) return;
  int q = top + 1;
  lua_getfield(L, q, "pending");
  lua_getfield(L, q, "promises");
  lua_getfield(L, q, "outbound");
  int pending = q + 1, promises = q + 2, outbound = q + 3;
  lua_Integer n = (lua_Integer)lua_rawlen(L, pending);
  lua_Integer o = (lua_Integer)lua_rawlen(L, outbound);
  for (lua_Integer i = 1; i <= n; i++) {
    if (flush) {
      lua_pushcfunction(L, append);
      lua_pushvalue(L, q);
      lua_pushliteral(L, "outbound");
      lua_rawgeti(L, pending, i);
      if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        lua_pop(L, 1);
        lp_log(LP_LOG_ERROR, ch->id, "embedded channel: a message was lost (out of memory)");
      }
      o++;
    }
    lua_rawgeti(L, promises, i);
    lp_future *f = l_future_test(L, -1);
    lua_pop(L, 1);
    if (f && flush) lp_future_succeed(f);
    else if (f) fail_closed(ch, f);
    lua_pushnil(L);
    lua_rawseti(L, pending, i);
    lua_pushnil(L);
    lua_rawseti(L, promises, i);
  }
  lua_settop(L, top);
}

static void emb_flush(lp_channel *ch) { settle_pending(ch, true); }

static void emb_read(lp_channel *ch) { LP_UNUSED(ch); }

static void emb_close(lp_channel *ch, lp_future *promise) {
  settle_pending(ch, false);
  lp_channel_close_now(ch);
  if (promise) lp_future_succeed(promise);
}

static bool emb_tail(lp_channel *ch, int ev, lp_msg *m) {
  if (ev == LP_EV_READ) enqueue(ch, "inbound", m, NULL, false);
  else if (ev == LP_EV_EXCEPTION) enqueue(ch, "exceptions", m, NULL, false);
  else if (m) lp_msg_release(m);
  return true;
}

static void emb_free(lp_channel *ch) {
  l_host *h = host_of(ch);
  if (h->closing) return;
  lua_State *L = h->L;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &queues_key);
  lua_pushnil(L);
  lua_rawsetp(L, -2, ch);
  lua_pop(L, 1);
}

static const lp_transport embedded_transport = {
    "embedded", emb_write, emb_flush, emb_read, emb_close, NULL, emb_free, emb_tail,
};

// core._embeddedChannel() -> ch, Q: a channel with its pipeline, not registered
// yet (add handlers, then core._embeddedRegister(ch)).
static int embedded_channel(lua_State *L) {
  l_host *h = l_host_get(L);
  lua_createtable(L, 0, 5);
  static const char *const fields[] = {"inbound", "outbound", "pending", "promises", "exceptions"};
  for (size_t i = 0; i < LP_ARRAY_LEN(fields); i++) {
    lua_newtable(L);
    lua_setfield(L, -2, fields[i]);
  }
  int q = lua_gettop(L);
  lp_channel *ch = lp_channel_new(h->loop, &embedded_transport, -1, NULL);
  if (!ch) return luaL_error(L, "lupine.test.embedded: out of memory");
  // Active once registered, as Netty's EmbeddedChannel; closed with the loop,
  // but not one of the loop's connections (loop:channelCount()).
  ch->flags |= LP_CH_CONNECTED | LP_CH_UNCOUNTED;
  l_channel_adopt(h, ch); // not counted: an embedded channel never keeps an old state alive
  lua_rawgetp(L, LUA_REGISTRYINDEX, &queues_key);
  lua_pushvalue(L, q);
  lua_rawsetp(L, -2, ch);
  lua_pop(L, 1);
  l_channel_push(L, ch); // the box takes its own reference; the first one is the loop's (see channel.h)
  lua_pushvalue(L, q);
  return 2;
}

static int embedded_register(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  if (ch->transport != &embedded_transport) return l_argerror(L, 1, "not an embedded channel");
  if (ch->flags & LP_CH_REGISTERED) return 0;
  lp_channel_register(ch);
  return 0;
}

// Close below the pipeline, as a socket whose peer vanished (from __gc of the
// test object: no Lua runs now; channelInactive follows as a task).
static int embedded_close_now(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  if (ch->transport != &embedded_transport) return l_argerror(L, 1, "not an embedded channel");
  lp_channel_close_now(ch);
  return 0;
}

// core._runPendingTasks(): run what is due now (deferred tasks, timers that
// expired, ready I/O), without waiting; again while tasks add tasks (bounded).
static int run_pending_tasks(lua_State *L) {
  l_host *h = l_host_get(L);
  for (int i = 0; i < 100; i++) {
    if (h->running) lp_loop_run_tasks(h->loop); // inside the loop: tasks only, no nested poll
    else lp_loop_run_once(h->loop, false);
    if (!h->loop->deferred && !h->loop->posted) break;
  }
  return 0;
}

static const luaL_Reg funcs[] = {
    {"_embeddedChannel", embedded_channel},
    {"_embeddedRegister", embedded_register},
    {"_embeddedCloseNow", embedded_close_now},
    {"_runPendingTasks", run_pending_tasks},
    {NULL, NULL},
};

void l_embedded_open(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  l_push_weak_table(L, &queues_key, "v");
  lua_pop(L, 1);
}
