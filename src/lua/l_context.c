// l_context.c: Lua handlers in the pipeline, lupine.Context, lupine.Pipeline,
// lupine.NativeHandler, and the host hooks the core calls.
//
// References: a context holds a registry reference to its handler (host_ref)
// and caches its lupine.Context table (box_ref); both are dropped when it
// leaves the pipeline. The table's box holds a reference on the context and
// one on its channel, so a handle kept by Lua stays safe to use. Messages from Lua travel as LP_MSG_HOST: a stack slot of the state
// that made them (host->cur), valid for the duration of that call.
#include "lbind.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRING_COPY_MAX 1024 // strings up to this size are copied, longer ones pinned

typedef struct {
  L_BOX_HEAD;
  lp_ctx *ctx;
} l_ctx;

typedef struct {
  L_BOX_HEAD;
  lp_channel *ch;
} l_pipeline;

static inline l_host *host_of(const lp_ctx *c) { return c->pipeline->channel->loop->host; }

// The context table of the handler running now on this thread (each loop has
// its thread), and its context; see call_handler.
// initial-exec: a plain thread-local access, not a __tls_get_addr call per use
// (the module needs 16 bytes of the static TLS glibc keeps for dlopen'd code).
#define L_TLS static _Thread_local __attribute__((tls_model("initial-exec")))
L_TLS const void *dispatch_table;
L_TLS lp_ctx *dispatch_ctx;

// ---- messages between Lua and the core -------------------------------------------

static lp_msg host_msg(int idx) {
  lp_msg m = {.kind = LP_MSG_HOST, .host = idx};
  return m;
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
  if (!h->closing) luaL_unref(h->cur, LUA_REGISTRYINDEX, ref);
}

static void unsupported(lp_error *err, lua_State *L, int idx) {
  lp_error_named(err, LP_EUNSUPPORTED, "cannot write a %s: add an encoder to turn it into bytes", luaL_typename(L, idx));
}

static int host_to_buf(lp_loop *loop, lp_msg *m, lp_error *err) {
  l_host *h = loop->host;
  lua_State *L = h->cur;
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
    b = lp_buf_from(loop->pool, s, len);
    if (!b) {
      lp_error_sys(err, ENOMEM, "copying a string");
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

static int host_to_bytes(lp_loop *loop, lp_msg *m, lp_bytes *out, lp_error *err) {
  l_host *h = loop->host;
  lua_State *L = h->cur;
  int idx = m->host;
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (len > STRING_COPY_MAX) { // written in place: the string stays pinned until written
      lua_pushvalue(L, idx);
      out->tag = luaL_ref(L, LUA_REGISTRYINDEX);
      out->p = (const uint8_t *)s;
      out->len = len;
      out->release = unpin_string;
      out->ud = h;
      return 0;
    }
  }
  if (host_to_buf(loop, m, err) != 0) return -1;
  out->buf = m->u.buf;
  m->kind = LP_MSG_NONE;
  return 0;
}

static void host_describe(lp_loop *loop, const lp_msg *m, char *out, size_t outlen) {
  l_tostring(((l_host *)loop->host)->cur, m->host, out, outlen);
}

// ---- calling Lua handlers ----------------------------------------------------------

static void call_handler(lp_ctx *c, int ev, lp_msg *m, lp_future *promise);

static void pass_on(lp_ctx *c, int ev, lp_msg *m, lp_future *promise) {
  if (ev < LP_EV_FIRST_OUTBOUND) lp_ctx_fire(c, ev, m);
  else lp_ctx_op(c, ev, m, promise);
}

// Runs under lua_pcall: "handler 'name' event: " in front of a string error.
static int decorate(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    const lp_ctx *c = lua_touserdata(L, 2);
    lua_pushfstring(L, "handler '%s' %s: %s", c->name, lp_event_name[lua_tointeger(L, 3)], lua_tostring(L, 1));
  } else {
    lua_settop(L, 1);
  }
  return 1;
}

// The handler raised; its error is on the top of L. Everything here that can
// raise (allocations) runs protected: this is called from libev callbacks.
static void handler_failed(lp_ctx *c, int ev, lua_State *L, lp_future *promise) {
  lua_pushcfunction(L, decorate);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, c);
  lua_pushinteger(L, ev);
  lua_pcall(L, 3, 1, 0); // on failure (out of memory) that error stands in
  lp_channel *ch = lp_ctx_channel(c);
  char text[LP_ERROR_MESSAGE_MAX];
  if (ev == LP_EV_EXCEPTION) { // not passed on (it would loop): handled as the tail would
    bool closing = ch->config.close_on_exception && !(ch->flags & LP_CH_CLOSED);
    lp_log(LP_LOG_WARN, ch->id, "exceptionCaught raised%s: %s", closing ? " (closing the channel)" : "",
           l_tostring(L, -1, text, sizeof text));
    lua_pop(L, 1);
    if (closing) lp_channel_close(ch, NULL);
    return;
  }
  if (promise && !lp_future_done(promise)) { // an outbound op failed: its promise says so
    lp_error e;
    lp_error_named(&e, LP_EHOST, "%s", l_tostring(L, -1, text, sizeof text));
    if (promise->host_ref < 0) promise->host_ref = l_ref(L);
    else lua_pop(L, 1);
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  lp_msg em = host_msg(lua_gettop(L));
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
  lua_State *L = h->cur;
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
    bool buf = m && m->kind == LP_MSG_BUF && !(m->flags & LP_MSGF_STRING);
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
  const void *saved_table = dispatch_table;
  lp_ctx *saved_ctx = dispatch_ctx;
  dispatch_table = lua_topointer(L, fn + 2);
  dispatch_ctx = c;
  int rc = lua_pcall(L, nargs, 0, msgh);
  dispatch_table = saved_table;
  dispatch_ctx = saved_ctx;
  if (LP_UNLIKELY(rc != LUA_OK)) handler_failed(c, ev, L, promise);
  if (!lua_isnil(L, lent)) l_buffer_settle(L, lent);
  lua_settop(L, top);
}

static void lua_inbound(lp_ctx *c, int ev, lp_msg *m) { call_handler(c, ev, m, NULL); }
static void lua_outbound(lp_ctx *c, int op, lp_msg *m, lp_future *promise) { call_handler(c, op, m, promise); }

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
  lua_State *L = h->cur;
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
    l_tostring(L, -1, err, errlen);
    lp_log(LP_LOG_ERROR, lp_ctx_channel(c)->id, "handler '%s' %s raised: %s", c->name, method, err);
  }
  lua_settop(L, top);
  return ok;
}

// Why the last handler of this thread's state failed to be added (link_ctx
// raises it to the caller of addLast & co.).
static _Thread_local char added_error[LP_ERROR_MESSAGE_MAX];

static void lua_added(lp_ctx *c) {
  if (!call_lifecycle(c, "handlerAdded", added_error, sizeof added_error)) {
    // As in Netty: a handler that fails to be added is removed again.
    lp_pipeline_remove(c->pipeline, c);
  }
}

static void lua_removed(lp_ctx *c) {
  char err[LP_ERROR_MESSAGE_MAX];
  call_lifecycle(c, "handlerRemoved", err, sizeof err);
}

static const lp_handler_ops lua_handler_ops = {
    "handler", 0, lua_added, lua_removed, lua_inbound, lua_outbound, NULL,
};

static uint32_t handler_mask(lua_State *L, int h) {
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
    if (c->box_ref >= 0) luaL_unref(h->cur, LUA_REGISTRYINDEX, c->box_ref);
    if (c->host_ref >= 0) luaL_unref(h->cur, LUA_REGISTRYINDEX, c->host_ref);
  }
  c->box_ref = c->host_ref = -1;
}

static void host_ctx_free(lp_ctx *c) { host_ctx_removed(c); }

static void host_future_free(lp_future *f) {
  l_host *h = f->loop->host;
  if (h && !h->closing && f->host_ref >= 0) luaL_unref(h->cur, LUA_REGISTRYINDEX, f->host_ref);
  f->host_ref = -1;
}

const lp_host_ops l_host_ops = {
    host_to_bytes, host_to_buf, host_describe, l_channel_teardown, host_ctx_removed, host_ctx_free, host_future_free,
};

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
  l_loop_push(L, ch->loop->host);
  lua_setfield(L, -2, "executor");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &l_key_context);
  lua_setmetatable(L, -2);
  if (!c->removed) { // cached while linked; a removed context gets an uncached one
    lua_pushvalue(L, -1);
    c->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

static lp_ctx *test_ctx(lua_State *L, int i) {
  if (lua_topointer(L, i) == dispatch_table && dispatch_table) return dispatch_ctx;
  if (lua_type(L, i) != LUA_TTABLE) return NULL;
  lua_rawgeti(L, i, 1);
  l_ctx *box = l_testudata(L, -1, &l_key_context_box);
  lua_pop(L, 1);
  return box ? box->ctx : NULL;
}

static lp_ctx *check_ctx(lua_State *L, int i) {
  lp_ctx *c = test_ctx(L, i);
  if (!c) luaL_typeerror(L, i, "lupine.Context");
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
  l_host *h = host_of(c);
  lua_State *prev = l_enter(h, L);
  if (ev == LP_EV_READ || ev == LP_EV_USER_EVENT || ev == LP_EV_EXCEPTION) {
    luaL_checkany(L, 2);
    lp_msg m = host_msg(2);
    lp_ctx_fire(c, ev, &m);
  } else {
    lp_ctx_fire(c, ev, NULL);
  }
  l_leave(h, prev);
  lua_settop(L, 1);
  return 1;
}

// Outbound from a context (from = ctx) or the channel/pipeline (from = tail).
// write(msg [, promise | listener]): a write makes no future unless asked for
// one (a Lua future per write costs two allocations and GC work on the hot
// path); a failure nobody asked about still reaches exceptionCaught.
int l_outbound_write(lua_State *L, lp_ctx *from, bool flush) {
  luaL_checkany(L, 2);
  lp_channel *ch = lp_ctx_channel(from);
  lp_future *f = NULL;
  int t = lua_type(L, 3);
  if (t == LUA_TFUNCTION) {
    if (!(f = lp_channel_new_promise(ch))) return luaL_error(L, "write: out of memory");
    l_future_listen(L, f, 3);
  } else if (t != LUA_TNONE && t != LUA_TNIL) {
    f = l_future_test(L, 3);
    luaL_argexpected(L, f != NULL, 3, "lupine.Future or listener function");
    lp_future_ref(f);
  }
  l_host *h = ch->loop->host;
  lua_State *prev = l_enter(h, L);
  lp_msg m = host_msg(2);
  lp_pipeline *p = from->pipeline;
  lp_pipeline_enter(p);
  lp_ctx_op(from, LP_OP_WRITE, &m, f);
  if (flush) lp_ctx_op(from, LP_OP_FLUSH, NULL, NULL);
  lp_pipeline_leave(p);
  l_leave(h, prev);
  if (!f) return 0;
  lp_future_unref(f);
  lua_settop(L, 3);
  return t == LUA_TFUNCTION ? 0 : 1; // the promise given
}

int l_outbound_simple(lua_State *L, lp_ctx *from, int op) {
  lp_channel *ch = lp_ctx_channel(from);
  l_host *h = ch->loop->host;
  lp_future *f = NULL;
  if (op == LP_OP_CLOSE) {
    f = l_future_test(L, 2);
    if (f) lp_future_ref(f);
    else if (!(f = lp_future_new(ch->loop))) return luaL_error(L, "close: out of memory");
  }
  lua_State *prev = l_enter(h, L);
  lp_pipeline *p = from->pipeline;
  lp_pipeline_enter(p);
  lp_ctx_op(from, op, NULL, f);
  lp_pipeline_leave(p);
  l_leave(h, prev);
  if (!f) {
    lua_settop(L, 1);
    return 1;
  }
  l_future_push(L, f);
  lp_future_unref(f);
  return 1;
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
  size_t len;
  const char *a = luaL_checklstring(L, 2, &len);
  const char *colon = strrchr(a, ':');
  char host[64];
  lp_sockaddr addr;
  char *end = NULL;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || (size_t)(colon - a) >= sizeof host || !end || *end || end == colon + 1 || port < 1 || port > 65535)
    return luaL_argerror(L, 2, "expected a numeric address \"host:port\"");
  memcpy(host, a, (size_t)(colon - a));
  host[colon - a] = 0;
  if (lp_addr_parse(host, (int)port, &addr) != 0) return luaL_argerror(L, 2, "expected a numeric address \"host:port\"");
  lp_channel *ch = lp_ctx_channel(c);
  lp_future *f = l_future_test(L, 3);
  if (f) lp_future_ref(f);
  else if (!(f = lp_channel_new_promise(ch))) return luaL_error(L, "connect: out of memory");
  l_host *h = host_of(c);
  lua_State *prev = l_enter(h, L);
  lp_msg m = {.kind = LP_MSG_PTR, .u.ptr = &addr};
  lp_pipeline_enter(c->pipeline);
  lp_ctx_op(c, LP_OP_CONNECT, &m, f);
  lp_pipeline_leave(c->pipeline);
  l_leave(h, prev);
  l_future_push(L, f);
  lp_future_unref(f);
  return 1;
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

// ---- lupine.Pipeline -----------------------------------------------------------------

void l_pipeline_push(lua_State *L, lp_channel *ch) {
  l_pipeline *box = l_newudata(L, sizeof *box, 0, &l_key_pipeline);
  box->ch = lp_channel_ref(ch);
}

static lp_pipeline *check_pipeline(lua_State *L, int i) {
  return &((l_pipeline *)l_checkudata(L, i, &l_key_pipeline, "lupine.Pipeline"))->ch->pipeline;
}

static int pipeline_gc(lua_State *L) {
  l_pipeline *box = l_checkudata(L, 1, &l_key_pipeline, "lupine.Pipeline");
  if (box->ch) lp_channel_unref(box->ch);
  box->ch = NULL;
  return 0;
}

l_native *l_native_new(lua_State *L, size_t size, const char *type_name) {
  l_native *n = l_newudata(L, size, 0, &l_key_native);
  n->type_name = type_name;
  return n;
}

static int native_gc(lua_State *L) {
  l_native *n = l_checkudata(L, 1, &l_key_native, "lupine.NativeHandler");
  if (n->free) n->free(n);
  n->free = NULL;
  return 0;
}

static int native_tostring(lua_State *L) {
  l_native *n = l_checkudata(L, 1, &l_key_native, "lupine.NativeHandler");
  lua_pushfstring(L, "lupine.NativeHandler(%s)", n->type_name);
  return 1;
}

// Make a context for the handler at index hi (table or native factory).
static lp_ctx *make_ctx(lua_State *L, lp_pipeline *p, const char *name, int hi) {
  hi = lua_absindex(L, hi);
  if (p->destroyed) luaL_error(L, "pipeline of channel #%I is gone (the channel was closed)", (lua_Integer)p->channel->id);
  if (name && lp_pipeline_get(p, name)) luaL_error(L, "pipeline: duplicate handler name '%s'", name);
  lp_ctx *c;
  l_native *n = l_testudata(L, hi, &l_key_native);
  if (n) {
    char gen[96];
    if (!name) {
      lp_pipeline_gen_name(p, n->type_name, gen, sizeof gen);
      name = gen;
    }
    c = n->make(n, p, name, L);
  } else {
    luaL_argexpected(L, lua_istable(L, hi), hi, "handler table");
    char gen[96];
    if (!name) {
      const char *base = lua_getfield(L, hi, "name") == LUA_TSTRING ? lua_tostring(L, -1) : "handler";
      lp_pipeline_gen_name(p, base, gen, sizeof gen);
      lua_pop(L, 1);
      name = gen;
    }
    uint32_t mask = handler_mask(L, hi); // may raise: before the context exists
    c = lp_ctx_new(p, &lua_handler_ops, NULL, name);
    if (c) c->mask = mask;
  }
  if (!c) luaL_error(L, "pipeline: out of memory");
  // Protected: a raise here (out of memory) would leak the context.
  lua_pushvalue(L, hi);
  c->host_ref = l_ref(L);
  if (c->host_ref == LUA_NOREF) {
    c->host_ref = -1;
    lp_ctx_unref(c);
    luaL_error(L, "pipeline: out of memory");
  }
  return c;
}

// Make a Lua handler's context table now, where running out of memory raises
// to the caller, so that dispatching to it later needs no allocation.
static void prepare_ctx(lua_State *L, lp_ctx *c) {
  if (c->ops == &lua_handler_ops && !c->removed) {
    l_context_push(L, c);
    lua_pop(L, 1);
  }
}

static void link_ctx(lua_State *L, lp_pipeline *p, int where, const char *base, lp_ctx *c) {
  l_host *h = p->channel->loop->host;
  c->refs++; // held across the add: a handlerAdded that fails removes it again (and may free it)
  lua_State *prev = l_enter(h, L);
  int rc = lp_pipeline_add(p, where, base, c);
  l_leave(h, prev);
  bool dropped = rc == 0 && c->removed;
  char name[128];
  snprintf(name, sizeof name, "%s", c->name);
  lp_ctx_unref(c);
  if (rc == 0 && !dropped) {
    prepare_ctx(L, c);
    return;
  }
  if (dropped) luaL_error(L, "pipeline: handler '%s' was not added: its handlerAdded raised: %s", name, added_error);
  lp_ctx_unref(c); // never linked: the reference it was made with
  if (rc == -EEXIST) luaL_error(L, "pipeline: duplicate handler name '%s'", name);
  if (rc == -ENOENT) luaL_error(L, "pipeline: no handler named '%s'", base);
  luaL_error(L, "pipeline of channel #%I is gone (the channel was closed)", (lua_Integer)p->channel->id);
}

// addFirst/addLast([name,] handler): name may be nil or absent.
static int pipeline_add_end(lua_State *L, int where) {
  lp_pipeline *p = check_pipeline(L, 1);
  const char *name = NULL;
  int hi = 2;
  if (lua_gettop(L) >= 3) {
    name = luaL_optstring(L, 2, NULL);
    hi = 3;
  }
  lp_ctx *c = make_ctx(L, p, name, hi);
  link_ctx(L, p, where, NULL, c);
  lua_settop(L, 1);
  return 1;
}

static int pipeline_add_first(lua_State *L) { return pipeline_add_end(L, LP_ADD_FIRST); }
static int pipeline_add_last(lua_State *L) { return pipeline_add_end(L, LP_ADD_LAST); }

static int pipeline_add_rel(lua_State *L, int where) {
  lp_pipeline *p = check_pipeline(L, 1);
  const char *base = luaL_checkstring(L, 2);
  const char *name = luaL_optstring(L, 3, NULL);
  if (!lp_pipeline_get(p, base)) return luaL_error(L, "pipeline: no handler named '%s'", base);
  lp_ctx *c = make_ctx(L, p, name, 4);
  link_ctx(L, p, where, base, c);
  lua_settop(L, 1);
  return 1;
}

static int pipeline_add_before(lua_State *L) { return pipeline_add_rel(L, LP_ADD_BEFORE); }
static int pipeline_add_after(lua_State *L) { return pipeline_add_rel(L, LP_ADD_AFTER); }

// Find a context by name, handler (table or factory) or Context.
static lp_ctx *find_ctx(lua_State *L, lp_pipeline *p, int i) {
  if (lua_type(L, i) == LUA_TSTRING) return lp_pipeline_get(p, lua_tostring(L, i));
  lp_ctx *found = test_ctx(L, i);
  if (found) return !found->removed && found->pipeline == p ? found : NULL;
  for (lp_ctx *c = lp_pipeline_first(p); c; c = lp_pipeline_next(p, c)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->host_ref);
    bool same = lua_rawequal(L, -1, i);
    lua_pop(L, 1);
    if (same) return c;
  }
  return NULL;
}

static lp_ctx *check_find(lua_State *L, lp_pipeline *p, int i) {
  lp_ctx *c = find_ctx(L, p, i);
  if (!c) {
    if (lua_type(L, i) == LUA_TSTRING) luaL_error(L, "pipeline: no handler named '%s'", lua_tostring(L, i));
    luaL_error(L, "pipeline: no such handler (%s)", luaL_tolstring(L, i, NULL));
  }
  return c;
}

static int pipeline_remove(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lp_ctx *c = check_find(L, p, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->host_ref); // the removed handler, returned
  l_host *h = p->channel->loop->host;
  lua_State *prev = l_enter(h, L);
  lp_pipeline_remove(p, c);
  l_leave(h, prev);
  return 1;
}

static int pipeline_replace(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lp_ctx *old = check_find(L, p, 2);
  const char *name = luaL_optstring(L, 3, NULL);
  if (name && strcmp(name, old->name) != 0 && lp_pipeline_get(p, name))
    return luaL_error(L, "pipeline: duplicate handler name '%s'", name);
  lua_rawgeti(L, LUA_REGISTRYINDEX, old->host_ref); // returned
  // The new context may take the old one's name: build it unnamed, then rename.
  lp_ctx *c = make_ctx(L, p, NULL, 4);
  char *nm = strdup(name ? name : old->name);
  if (!nm) {
    lp_ctx_unref(c);
    return luaL_error(L, "pipeline: out of memory");
  }
  free(c->name);
  c->name = nm;
  l_host *h = p->channel->loop->host;
  lua_State *prev = l_enter(h, L);
  int rc = lp_pipeline_replace(p, old, c);
  l_leave(h, prev);
  if (rc) {
    lp_ctx_unref(c);
    return luaL_error(L, "pipeline: cannot replace '%s'", old->name);
  }
  prepare_ctx(L, c);
  return 1;
}

static int pipeline_get(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lp_ctx *c = lp_pipeline_get(p, luaL_checkstring(L, 2));
  if (!c) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->host_ref);
  return 1;
}

static int pipeline_context(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lp_ctx *c = find_ctx(L, p, 2);
  if (!c) return 0;
  l_context_push(L, c);
  return 1;
}

static int pipeline_names(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lua_createtable(L, (int)p->count, 0);
  int i = 1;
  for (lp_ctx *c = lp_pipeline_first(p); c; c = lp_pipeline_next(p, c)) {
    lua_pushstring(L, c->name);
    lua_rawseti(L, -2, i++);
  }
  return 1;
}

static int pipeline_fire(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  int ev = (int)lua_tointeger(L, lua_upvalueindex(1));
  l_host *h = p->channel->loop->host;
  lua_State *prev = l_enter(h, L);
  lp_pipeline_enter(p);
  if (ev == LP_EV_READ || ev == LP_EV_USER_EVENT || ev == LP_EV_EXCEPTION) {
    luaL_checkany(L, 2);
    lp_msg m = host_msg(2);
    lp_pipeline_fire(p, ev, &m);
  } else {
    lp_pipeline_fire(p, ev, NULL);
  }
  lp_pipeline_leave(p);
  l_leave(h, prev);
  lua_settop(L, 1);
  return 1;
}

static int pipeline_write(lua_State *L) { return l_outbound_write(L, &check_pipeline(L, 1)->tail, false); }
static int pipeline_write_and_flush(lua_State *L) { return l_outbound_write(L, &check_pipeline(L, 1)->tail, true); }
static int pipeline_flush(lua_State *L) { return l_outbound_simple(L, &check_pipeline(L, 1)->tail, LP_OP_FLUSH); }
static int pipeline_read(lua_State *L) { return l_outbound_simple(L, &check_pipeline(L, 1)->tail, LP_OP_READ); }
static int pipeline_close(lua_State *L) { return l_outbound_simple(L, &check_pipeline(L, 1)->tail, LP_OP_CLOSE); }

static int pipeline_index(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "channel") == 0) {
    l_channel_push(L, p->channel);
    return 1;
  }
  return 0;
}

static int pipeline_len(lua_State *L) {
  lua_pushinteger(L, check_pipeline(L, 1)->count);
  return 1;
}

static int pipeline_tostring(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "lupine.Pipeline(#%I: head", (lua_Integer)p->channel->id);
  luaL_addvalue(&b);
  for (lp_ctx *c = lp_pipeline_first(p); c; c = lp_pipeline_next(p, c)) {
    luaL_addstring(&b, ", ");
    luaL_addstring(&b, c->name);
  }
  luaL_addstring(&b, ", tail)");
  luaL_pushresult(&b);
  return 1;
}

// ---- registration -----------------------------------------------------------------------

static const char *const fire_names[LP_EV_FIRST_OUTBOUND] = {
    "fireChannelRegistered", "fireChannelUnregistered", "fireChannelActive",
    "fireChannelInactive",   "fireChannelRead",         "fireChannelReadComplete",
    "fireUserEventTriggered", "fireChannelWritabilityChanged", "fireExceptionCaught",
};

static void add_fire_methods(lua_State *L, lua_CFunction fn) {
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

static const luaL_Reg pipeline_methods[] = {
    {"addFirst", pipeline_add_first},   {"addLast", pipeline_add_last},   {"addBefore", pipeline_add_before},
    {"addAfter", pipeline_add_after},   {"remove", pipeline_remove},      {"replace", pipeline_replace},
    {"get", pipeline_get},              {"context", pipeline_context},    {"names", pipeline_names},
    {"write", pipeline_write},          {"writeAndFlush", pipeline_write_and_flush},
    {"flush", pipeline_flush},          {"read", pipeline_read},          {"close", pipeline_close},
    {NULL, NULL},
};

static void new_type(lua_State *L, const char *name, const void *key, const luaL_Reg *methods, lua_CFunction fire, lua_CFunction index,
                     lua_CFunction gc, lua_CFunction tostring) {
  l_newmetatable(L, name, key);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  add_fire_methods(L, fire);
  lua_pushcclosure(L, index, 1);
  lua_setfield(L, -2, "__index");
}

void l_context_open(lua_State *L) {
  l_newmetatable(L, "lupine.Context", &l_key_context);
  lua_pushcfunction(L, ctx_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, ctx_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_newtable(L);
  luaL_setfuncs(L, ctx_methods, 0);
  add_fire_methods(L, ctx_fire);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  l_newmetatable(L, "lupine.ContextBox", &l_key_context_box);
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  new_type(L, "lupine.Pipeline", &l_key_pipeline, pipeline_methods, pipeline_fire, pipeline_index, pipeline_gc, pipeline_tostring);
  lua_pushcfunction(L, pipeline_len);
  lua_setfield(L, -2, "__len");
  lua_pop(L, 1);
  l_newmetatable(L, "lupine.NativeHandler", &l_key_native);
  lua_pushcfunction(L, native_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, native_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
