// l_dispatch.c: entering Lua for a pipeline event. A Lua handler's context
// calls call_handler for every inbound event and outbound operation it
// handles; handlerAdded/handlerRemoved run from here too. Also the
// conversions between Lua values and core messages (lp_msg), and the host
// hooks the core calls (l_host_ops).
//
// Every call into Lua runs on the state's main thread (host->L). Messages from
// Lua travel as LP_MSG_HOST: a stack slot of the main thread, valid for the
// duration of the call that made them (l_enter lends a coroutine's value there).
#include "lbind.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static inline l_host *host_of(const lp_ctx *c) { return c->pipeline->channel->host; }

// The context table of the handler running now on this thread (each loop has
// its thread), and its context: lupine.Context methods then skip the table
// lookup (l_context.c).
L_TLS const void *l_dispatch_table;
L_TLS lp_ctx *l_dispatch_ctx;

// ---- messages between Lua and the core -------------------------------------------

// A call from a coroutine: handlers will run on the main thread, which is
// suspended in the resume that led here (or in the C code running the loop),
// so values pushed above its top are ours until l_leave restores the top.
int l_enter_thread(l_entry *e, lua_State *L, int msg) {
  lua_State *M = e->h->L;
  l_check_state(L, e->h);
  if (msg) {
    luaL_checkstack(L, 1, NULL);
    if (!lua_checkstack(M, 1)) luaL_error(L, "lupine: the main thread's Lua stack is full");
  }
  e->top = lua_gettop(M);
  if (!msg) return 0;
  lua_pushvalue(L, msg);
  lua_xmove(L, M, 1);
  return e->top + 1;
}

static void push_event(lua_State *L, const lp_event_info *e) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, e->kind);
  lua_setfield(L, -2, "kind");
  if (e->state) {
    lua_pushstring(L, e->state);
    lua_setfield(L, -2, "state");
  }
  if (e->first >= 0) {
    lua_pushboolean(L, e->first);
    lua_setfield(L, -2, "first");
  }
  for (int i = 0; i < e->nfields; i++) {
    const lp_event_field *f = &e->fields[i];
    if (f->str) lua_pushstring(L, f->str);
    else if (f->boolean >= 0) lua_pushboolean(L, f->boolean);
    else if (f->is_integer) lua_pushinteger(L, (lua_Integer)f->integer);
    else continue;
    lua_setfield(L, -2, f->name);
  }
}

// A frame marked LP_MSGF_STRING becomes a Lua string (the buffer is released).
static void push_string_frame(lua_State *L, lp_msg *m) {
  lp_buf *b = m->u.buf;
  m->kind = LP_MSG_NONE;
  lua_pushlstring(L, (const char *)lp_buf_rptr(b), lp_buf_readable(b));
  lp_buf_unref(b);
}

// Push m as a Lua value; a buffer moves into the new box (or becomes a string).
void l_push_msg(lua_State *L, lp_msg *m) {
  switch (m->kind) {
  case LP_MSG_BUF:
    if (m->flags & LP_MSGF_STRING) {
      push_string_frame(L, m);
      break;
    }
    l_buffer_push(L, m->u.buf);
    m->kind = LP_MSG_NONE;
    break;
  case LP_MSG_HOST: lua_pushvalue(L, m->host); break;
  case LP_MSG_ERROR: l_push_error(L, m->u.err); break;
  case LP_MSG_EVENT: push_event(L, m->u.event); break;
  case LP_MSG_DGRAM: l_datagram_push(L, m); break;
  case LP_MSG_PTR: {
    char a[80];
    lua_pushstring(L, lp_addr_format(m->u.ptr, a, sizeof a));
    break;
  }
  default: lua_pushnil(L); break;
  }
}

static void unpin_string(void *ud, int ref) {
  l_host *h = ud;
  if (!h->closing) luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
}

static void unsupported(lp_error *err, lua_State *L, int idx) {
  lp_error_named(err, LP_EUNSUPPORTED, "cannot write a %s: add an encoder to turn it into bytes", luaL_typename(L, idx));
}

static int host_to_buf(lp_channel *ch, lp_msg *m, lp_error *err) {
  l_host *h = ch->host; // the message is on the stack of the channel's state
  lua_State *L = h->L;
  int idx = m->host;
  lp_buf *b = NULL;
  l_buffer_box *box = l_testudata(L, idx, &l_key_buffer);
  if (box) {
    if (!box->buf) {
      lp_error_named(err, LP_EUNSUPPORTED, "lupine.Buffer used after release or hand-off");
      return -1;
    }
    b = box->buf; // handed off: the box is empty from now on
    box->buf = NULL;
  } else if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    b = lp_buf_from(ch->loop->pool, s, len);
    if (!b) {
      lp_error_sys(err, ENOMEM, "copying a string");
      return -1;
    }
  } else if (lua_type(L, idx) == LUA_TUSERDATA) { // a lupine.File for an encoder: its bytes, read now
    int rc = l_file_to_buf(L, idx, ch->loop->pool, &b, err);
    if (rc < 0) return -1;
    if (rc > 0) {
      unsupported(err, L, idx);
      return -1;
    }
  } else {
    unsupported(err, L, idx);
    return -1;
  }
  m->kind = LP_MSG_BUF;
  m->u.buf = b;
  return 0;
}

int l_host_to_bytes(lp_channel *ch, lp_msg *m, lp_bytes *out, lp_error *err) {
  l_host *h = ch->host;
  lua_State *L = h->L;
  int idx = m->host;
  int t = lua_type(L, idx);
  if (t == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (len > L_STRING_COPY_MAX) { // written in place: the string stays pinned until written
      lua_pushvalue(L, idx);
      out->tag = luaL_ref(L, LUA_REGISTRYINDEX);
      out->p = (const uint8_t *)s;
      out->len = len;
      out->release = unpin_string;
      out->ud = h;
      return 0;
    }
  } else if (t == LUA_TUSERDATA && lua_rawlen(L, idx) >= sizeof(void *) &&
             *(const void *const *)lua_touserdata(L, idx) == &l_key_file) { // the region itself, for sendfile
    return l_file_to_bytes(L, idx, out, err);                             // (a Buffer, the usual, goes on)
  }
  if (host_to_buf(ch, m, err) != 0) return -1;
  out->buf = m->u.buf;
  m->kind = LP_MSG_NONE;
  return 0;
}

static void host_describe(const lp_channel *ch, const lp_msg *m, char *out, size_t outlen) {
  l_describe_error(((l_host *)ch->host)->L, m->host, out, outlen);
}

// ---- calling Lua handlers ----------------------------------------------------------

static void call_handler(lp_ctx *c, int ev, lp_msg *m, lp_future *promise);

static void pass_on(lp_ctx *c, int ev, lp_msg *m, lp_future *promise) {
  if (ev < LP_EV_FIRST_OUTBOUND) lp_ctx_fire(c, ev, m);
  else lp_ctx_op(c, ev, m, promise);
}

// Runs under lua_pcall: [1] the error, [2] the context, [3] the event. A
// lupine.Error learns which handler and event raised it (tostring shows
// "handler 'name' event: message"); a value the user raised stays as it is.
static int decorate(lua_State *L) {
  const lp_ctx *c = lua_touserdata(L, 2);
  l_error_decorate(L, 1, c->name, lp_event_name[lua_tointeger(L, 3)]);
  lua_settop(L, 1);
  return 1;
}

// The failed promise of an outbound operation nobody listened to: its cause
// reaches exceptionCaught as the very value the handler raised (the core's
// own hook would pass on only its text). ud: the channel, with a reference.
static void report_raised(lp_future *f, void *ud) {
  lp_channel *ch = ud;
  l_host *h = ch->host;
  if (!h || h->closing || ch->pipeline.destroyed || f->host_ref < 0 || !lua_checkstack(h->L, 2)) {
    lp_log(LP_LOG_INFO, ch->id, "an outbound operation failed and nobody listened: %s",
           f->cause ? f->cause->message : "(no detail)");
    return;
  }
  lua_State *L = h->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->host_ref);
  lp_msg m = l_host_msg(lua_gettop(L));
  lp_pipeline_enter(&ch->pipeline);
  lp_pipeline_fire(&ch->pipeline, LP_EV_EXCEPTION, &m);
  lp_pipeline_leave(&ch->pipeline);
  lua_settop(L, top);
}

static void drop_channel(void *ud) { lp_channel_unref(ud); }

// The handler raised; its error is on the top of L. Everything here that can
// raise (allocations) runs protected: this is called from libev callbacks.
static void handler_failed(lp_ctx *c, int ev, lua_State *L, lp_future *promise) {
  lua_pushcfunction(L, decorate);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, c);
  lua_pushinteger(L, ev);
  lua_pcall(L, 3, 1, 0); // on failure (out of memory) that error stands in
  lp_channel *ch = lp_ctx_channel(c);
  lp_stats_handler_error(ch->loop, c->name ? c->name : "?");
  char text[LP_ERROR_MESSAGE_MAX];
  if (ev == LP_EV_EXCEPTION) { // not passed on (it would loop): handled as the tail would
    bool closing = ch->config.close_on_exception && !(ch->flags & LP_CH_CLOSED);
    lp_log(LP_LOG_WARN, ch->id, "exceptionCaught raised%s: %s", closing ? " (closing the channel)" : "",
           l_describe_error(L, -1, text, sizeof text));
    lua_pop(L, 1);
    if (closing) {
      lp_channel_set_close_cause(ch, LP_CLOSE_EXCEPTION, 0);
      lp_channel_close(ch, NULL);
    }
    return;
  }
  if (promise && !lp_future_done(promise)) { // an outbound op failed: its promise says so
    lp_error e;
    lp_error_named(&e, LP_EHOST, "%s", l_error_message(L, -1, text, sizeof text));
    l_future_keep(L, promise); // without it (out of memory) the cause's text stands in
    // A promise that reports to the channel when nobody listens (every one
    // the binding makes) reports the raised value itself.
    if (promise->unobserved && promise->host_ref >= 0)
      lp_future_on_unobserved(promise, report_raised, drop_channel, lp_channel_ref(ch));
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  if (ev == LP_OP_CLOSE && !promise) {
    // A close the core asked for (closeOnException, a timeout, shutdown) is
    // not refused by a handler that raises: it goes on toward the head, then
    // the error is reported (to a closed channel, so the tail only logs it).
    lp_ctx_op(c, LP_OP_CLOSE, NULL, NULL);
  }
  lp_msg em = l_host_msg(lua_gettop(L));
  if ((c->mask & LP_MASK(LP_EV_EXCEPTION)) && !c->removed) call_handler(c, LP_EV_EXCEPTION, &em, NULL);
  else lp_ctx_fire(c, LP_EV_EXCEPTION, &em);
}

// ---- the dispatch into Lua ------------------------------------------------------------
//
// Everything that can raise before the handler runs (allocations, a user
// __index on the handler) runs under lua_pcall: this is called from libev
// callbacks, and nothing may unwind through them. The common case, a handler
// with the method as a plain field and an argument that needs no allocation,
// takes one pcall: the handler's own.

typedef struct {
  lp_ctx *c;
  lp_msg *m;
  lp_future *promise;
} dispatch_args;

// Under pcall: [1] the dispatch, [2] the message when it is a host value
// (stack slots are per frame); returns the context, the message (a new lent
// box for a buffer) and the promise (or nil).
static int make_args(lua_State *L) {
  dispatch_args *a = lua_touserdata(L, 1);
  l_context_push(L, a->c);
  if (!a->m) lua_pushnil(L);
  else if (a->m->kind == LP_MSG_HOST) lua_pushvalue(L, 2);
  else if (a->m->kind == LP_MSG_BUF && !(a->m->flags & LP_MSGF_STRING)) {
    l_buffer_push_lent(L, a->m->u.buf);
    a->m->kind = LP_MSG_NONE; // the box has it now
  } else if (a->m->kind == LP_MSG_DGRAM && !(a->m->flags & LP_MSGF_STRING)) {
    l_datagram_push_lent(L, a->m); // its data's box is lent the same way
  } else l_push_msg(L, a->m);
  if (a->promise) l_future_push(L, a->promise);
  else lua_pushnil(L);
  return 3;
}

// Under pcall: handler[name] through __index.
static int lookup(lua_State *L) {
  lua_gettable(L, 1);
  return 1;
}

static void call_handler(lp_ctx *c, int ev, lp_msg *m, lp_future *promise) {
  l_host *h = host_of(c);
  lua_State *L = h->L;
  if (LP_UNLIKELY(h->closing || !lua_checkstack(L, 12))) {
    if (m) lp_msg_release(m);
    if (!h->closing) lp_log(LP_LOG_ERROR, lp_ctx_channel(c)->id, "Lua stack overflow: event dropped");
    return;
  }
  int top = lua_gettop(L);
  int msgh = top + 1, lent = top + 2, fn = top + 3;
  lua_pushcfunction(L, l_traceback);
  lua_pushnil(L); // a lent buffer box, kept here to settle after the call
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->host_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->ev_name_ref[ev]);
  lua_pushvalue(L, -1);
  if (LP_UNLIKELY(lua_rawget(L, fn) != LUA_TFUNCTION)) { // not a plain field: ask __index
    lua_pop(L, 1);
    lua_pushcfunction(L, lookup);
    lua_pushvalue(L, fn);
    lua_pushvalue(L, fn + 1);
    if (lua_pcall(L, 2, 1, msgh) != LUA_OK) {
      if (m) lp_msg_release(m);
      handler_failed(c, ev, L, promise);
      lua_settop(L, top);
      return;
    }
    if (!lua_isfunction(L, -1)) { // the method is gone since the handler was added
      lua_settop(L, top);
      pass_on(c, ev, m, promise);
      return;
    }
  }
  lua_replace(L, fn + 1);  // msgh, lent, handler, method
  lua_rotate(L, fn, 1);    // msgh, lent, method, handler (self)
  bool with_promise = ev == LP_OP_WRITE || ev == LP_OP_CLOSE || ev == LP_OP_CONNECT;
  int nargs = 2 + (m != NULL) + with_promise;
  if (LP_LIKELY(c->box_ref >= 0 && (!m || m->kind == LP_MSG_HOST) && !promise)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->box_ref);
    if (m) lua_pushvalue(L, m->host);
    if (with_promise) lua_pushnil(L);
  } else {
    dispatch_args a = {c, m, promise};
    bool buf = m && (m->kind == LP_MSG_BUF || m->kind == LP_MSG_DGRAM) && !(m->flags & LP_MSGF_STRING);
    lua_pushcfunction(L, make_args);
    lua_pushlightuserdata(L, &a);
    if (m && m->kind == LP_MSG_HOST) lua_pushvalue(L, m->host);
    else lua_pushnil(L);
    if (lua_pcall(L, 2, 3, msgh) != LUA_OK) { // out of memory, most likely
      if (m) lp_msg_release(m);
      lua_settop(L, top);
      lp_log(LP_LOG_ERROR, lp_ctx_channel(c)->id, "cannot call handler '%s': out of memory", c->name);
      return;
    }
    if (buf) {
      lua_pushvalue(L, -2);
      lua_replace(L, lent);
    }
    if (!with_promise) lua_pop(L, 1);
    if (!m) lua_remove(L, -1 - with_promise);
  }
  // The context being called is on the stack for the whole call, so its
  // table's address names it: its methods then skip the table lookup.
  const void *saved_table = l_dispatch_table;
  lp_ctx *saved_ctx = l_dispatch_ctx;
  l_dispatch_table = lua_topointer(L, fn + 2);
  l_dispatch_ctx = c;
  int rc = lua_pcall(L, nargs, 0, msgh);
  l_dispatch_table = saved_table;
  l_dispatch_ctx = saved_ctx;
  if (LP_UNLIKELY(rc != LUA_OK)) handler_failed(c, ev, L, promise);
  if (!lua_isnil(L, lent)) {
    if (l_testudata(L, lent, &l_key_buffer)) l_buffer_settle(L, lent);
    else l_datagram_settle(L, lent);
  }
  lua_settop(L, top);
}

static void lua_inbound(lp_ctx *c, int ev, lp_msg *m) { call_handler(c, ev, m, NULL); }
static void lua_outbound(lp_ctx *c, int op, lp_msg *m, lp_future *promise) {
  if (promise) promise->holder = c; // this handler may pass it on or complete it (l_future_take)
  call_handler(c, op, m, promise);
}

// handlerAdded / handlerRemoved: not pipeline events, called when present.
typedef struct {
  lp_ctx *c;
  const char *method;
} lifecycle_call;

// Under pcall: the lookup and the context table allocate, and may raise.
static int lifecycle_invoke(lua_State *L) {
  const lifecycle_call *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->host_ref);
  if (lua_getfield(L, -1, a->method) != LUA_TFUNCTION) return 0;
  lua_insert(L, -2);
  l_context_push(L, a->c);
  lua_call(L, 2, 0);
  return 0;
}

// Called from inside the core (pipeline add, remove, destroy at teardown):
// nothing may unwind through it, so all of it runs protected. On failure the
// error's text goes to the log and to err.
static bool call_lifecycle(lp_ctx *c, const char *method, char *err, size_t errlen) {
  l_host *h = host_of(c);
  if (h->closing || c->host_ref < 0) return true;
  lua_State *L = h->L;
  if (!lua_checkstack(L, 4)) {
    snprintf(err, errlen, "Lua stack overflow");
    return false;
  }
  int top = lua_gettop(L);
  lifecycle_call a = {c, method};
  lua_pushcfunction(L, l_traceback);
  lua_pushcfunction(L, lifecycle_invoke);
  lua_pushlightuserdata(L, &a);
  bool ok = lua_pcall(L, 1, 0, top + 1) == LUA_OK;
  if (!ok) {
    l_describe_error(L, -1, err, errlen);
    lp_log(LP_LOG_ERROR, lp_ctx_channel(c)->id, "handler '%s' %s raised: %s", c->name, method, err);
  }
  lua_settop(L, top);
  return ok;
}

// Why the last handler of this thread's state failed to be added (link_ctx
// raises it to the caller of addLast & co.).
_Thread_local char l_added_error[LP_ERROR_MESSAGE_MAX];

static void lua_added(lp_ctx *c) {
  if (!call_lifecycle(c, "handlerAdded", l_added_error, sizeof l_added_error)) {
    // As in Netty: a handler that fails to be added is removed again.
    lp_pipeline_remove(c->pipeline, c);
  }
}

static void lua_removed(lp_ctx *c) {
  char err[LP_ERROR_MESSAGE_MAX];
  call_lifecycle(c, "handlerRemoved", err, sizeof err);
}

const lp_handler_ops l_lua_handler_ops = {
    "handler", 0, lua_added, lua_removed, lua_inbound, lua_outbound, NULL,
};

uint32_t l_handler_mask(lua_State *L, int h) {
  uint32_t mask = 0;
  for (int e = 0; e < LP_EV_COUNT; e++) {
    if (lua_getfield(L, h, lp_event_name[e]) == LUA_TFUNCTION) mask |= LP_MASK(e);
    lua_pop(L, 1);
  }
  return mask;
}

// ---- host hooks ---------------------------------------------------------------------

// A context out of its pipeline is never called again: drop both references
// at once, not when its memory goes (after the GC finds its handle), so that
// registry slots are reused promptly under connection churn.
static void host_ctx_removed(lp_ctx *c) {
  l_host *h = host_of(c);
  if (!h->closing) {
    if (c->box_ref >= 0) luaL_unref(h->L, LUA_REGISTRYINDEX, c->box_ref);
    if (c->host_ref >= 0) luaL_unref(h->L, LUA_REGISTRYINDEX, c->host_ref);
  }
  c->box_ref = c->host_ref = -1;
}

static void host_ctx_free(lp_ctx *c) { host_ctx_removed(c); }

// A lupine.Error passed on from Lua (ctx:fireExceptionCaught(err)) keeps the
// code of the native error it was made from: the tail logs a peer reset at
// debug however many handlers it went through.
static int error_code_protected(lua_State *L) {
  lua_Integer code = 0;
  if (l_is_error(L, 1)) {
    lua_pushliteral(L, "code");
    lua_rawget(L, 1);
    code = lua_tointeger(L, -1);
  }
  lua_pushinteger(L, code);
  return 1;
}

static int host_error_code(const lp_channel *ch, const lp_msg *m) {
  l_host *h = ch->host;
  lua_State *L = h->L;
  if (h->closing || lua_type(L, m->host) != LUA_TTABLE || !lua_checkstack(L, 3)) return 0;
  lua_pushcfunction(L, error_code_protected);
  lua_pushvalue(L, m->host);
  int code = lua_pcall(L, 1, 1, 0) == LUA_OK ? (int)lua_tointeger(L, -1) : 0;
  lua_pop(L, 1);
  return code;
}

// The Lua state's memory, for lupine.stats() (what collectgarbage("count") says).
static size_t host_memory(lp_loop *loop) {
  l_host *h = loop->host;
  if (!h || h->closing) return 0;
  if (h->launcher) return l_worker_memory(h); // a worker: every state on its loop (reloads drain old ones)
  return (size_t)lua_gc(h->L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(h->L, LUA_GCCOUNTB);
}

const lp_host_ops l_host_ops = {
    l_host_to_bytes, host_to_buf, host_describe, l_channel_teardown, host_ctx_removed, host_ctx_free, l_future_drop,
    host_error_code, l_host_to_datagram, host_memory,
};
