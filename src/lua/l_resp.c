// l_resp.c: RESP from Lua (core._resp, used by lua/lupine/redis.lua):
//
//   decoder{ mode = "server" | "client", batch, maxBulkLength, maxMultibulkLength,
//            maxInlineLength, maxQueryBuffer }      a native decoder factory
//   encode(v [, protocol])                          a reply as a string
//   command(...)                                    a request: an array of bulk strings
//   null                                            RESP's null (a light userdata)
//   errorReply(text)                                a lupine.RedisError, as decoded ones
//   nativeCommands(ch, on)                          a server decoder's store commands on/off
//
// The decoder: "server" turns each request into an array of strings
// ({"SET", "k", "v"}; multibulk or inline), "client" each reply into a Lua
// value (with batch = true, a server's decoder passes the commands that
// arrived together as one array of them: one event instead of many); simple
// and bulk strings, verbatim strings and big numbers are
// strings, integers integers, doubles floats, booleans booleans, null is
// `null`, arrays and sets are arrays, a push is an array with push = true, a
// map a table, an error a lupine.RedisError { err = "ERR ..." }; attributes
// are dropped. A protocol violation fires exceptionCaught with the error kind
// "ProtocolError" and Redis's text ("Protocol error: invalid bulk length"),
// after the values before it; the rest of the input is then ignored.
//
// Per context: the values decoded and not yet fired wait in a Lua FIFO table
// (registry reference), one core token each (as l_codec.c's Lua decoders).
#include "lbind.h"

#include "codec.h"
#include "resp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_QUERY_BUFFER ((size_t)1 << 30) // Redis's client-query-buffer-limit
#define NATIVE_WRITE_AT ((size_t)64 << 10)         // native replies gathered before they are written

static const char l_key_rediserror = 'E';

typedef struct {
  lp_decoder d; // first: the core's callbacks get an lp_decoder *
  l_host *h;
  bool server, failed;
  bool batch;              // server: the commands of one decode call as one array
  lp_resp_req req;
  lp_resp_reply rep;
  int queue_ref;           // the FIFO table
  lua_Integer qhead, qtail;
  lp_shdict *store;        // server with store: answers lp_resp_store_exec's commands itself
  bool native;             // ... while the handler has not switched that off (nativeCommands)
  lp_shscratch sc;         // values read out of the store
  bool flush_queued;       // native replies written, their flush deferred (flush_task)
  lp_task flush_task;
} resp_decoder;

typedef struct {
  l_native n;
  bool server, batch;
  lp_resp_limits lim;
  size_t max_query;
  lp_shdict *store; // the process's: outlives every factory
} resp_factory;

// ---- building values ------------------------------------------------------------------------

static void push_node(lua_State *L, const lp_resp_node *nodes, size_t *i);

static void skip_node(const lp_resp_node *nodes, size_t *i) {
  const lp_resp_node *n = &nodes[(*i)++];
  switch (n->type) {
  case '*': case '~': case '>':
    for (int64_t k = 0; k < n->i; k++) skip_node(nodes, i);
    break;
  case '%': case '|':
    for (int64_t k = 0; k < 2 * n->i; k++) skip_node(nodes, i);
    break;
  default: break;
  }
}

static void push_node(lua_State *L, const lp_resp_node *nodes, size_t *i) {
  luaL_checkstack(L, 4, "RESP value nested too deep");
  while (nodes[*i].type == '|') skip_node(nodes, i); // attributes: dropped
  const lp_resp_node *n = &nodes[(*i)++];
  switch (n->type) {
  case '+': case '$': case '=': case '(': lua_pushlstring(L, n->p, n->len); break;
  case '-': case '!':
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, n->p, n->len);
    lua_setfield(L, -2, "err");
    l_setmetatable(L, &l_key_rediserror);
    break;
  case ':': lua_pushinteger(L, n->i); break;
  case '#': lua_pushboolean(L, n->i != 0); break;
  case ',': lua_pushnumber(L, n->d); break;
  case '_': lua_pushlightuserdata(L, NULL); break;
  case '*': case '~': case '>':
    lua_createtable(L, n->i < 1 << 16 ? (int)n->i : 1 << 16, n->type == '>' ? 1 : 0);
    for (int64_t k = 1; k <= n->i; k++) {
      push_node(L, nodes, i);
      lua_rawseti(L, -2, k);
    }
    if (n->type == '>') {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "push");
    }
    break;
  case '%':
    lua_createtable(L, 0, n->i < 1 << 16 ? (int)n->i : 1 << 16);
    for (int64_t k = 0; k < n->i; k++) {
      push_node(L, nodes, i);
      push_node(L, nodes, i);
      if (lua_isnil(L, -2)) lua_pop(L, 2); // cannot happen (null is a light userdata), kept safe
      else lua_rawset(L, -3);
    }
    break;
  default: lua_pushnil(L); break;
  }
}

// Push the value just parsed.
static void push_parsed(lua_State *L, resp_decoder *rd) {
  if (rd->server) {
    size_t n = rd->req.nargs;
    lua_createtable(L, n < 1 << 16 ? (int)n : 1 << 16, 0);
    for (size_t k = 0; k < n; k++) {
      lua_pushlstring(L, rd->req.args[k].p, rd->req.args[k].len);
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
  } else {
    size_t i = 0;
    push_node(L, rd->rep.nodes, &i);
  }
}

enum { STEP_NEED, STEP_ERROR, STEP_NOMEM };

// Under pcall (one per decode call, not one per value): [1] the decoder, [2]
// the cumulation. Parses every complete value, queues each (or, batching, one
// array of them) with its core token, and consumes its bytes; returns a STEP_*.
static int decode_all(lua_State *L) {
  resp_decoder *rd = lua_touserdata(L, 1);
  lp_buf *in = lua_touserdata(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rd->queue_ref); // 3: the FIFO
  int batch = 0;
  lua_Integer nbatch = 0;
  int status = STEP_NEED;
  for (;;) {
    size_t used = 0, len = lp_buf_readable(in);
    const char *p = (const char *)lp_buf_rptr(in);
    int rc = rd->server ? lp_resp_req_parse(&rd->req, p, len, &used) : lp_resp_reply_parse(&rd->rep, p, len, &used);
    if (rc == LP_RESP_NEED) break;
    if (rc != LP_RESP_DONE) {
      status = rc == LP_RESP_ERROR ? STEP_ERROR : STEP_NOMEM;
      break;
    }
    if (rd->server && rd->req.nargs == 0) { // a blank line, "*0": nothing
      lp_buf_skip(in, used);
      continue;
    }
    if (rd->batch) {
      if (!batch) {
        lua_createtable(L, 16, 0);
        batch = lua_gettop(L);
      }
      push_parsed(L, rd);
      lua_rawseti(L, batch, ++nbatch);
    } else {
      if (lp_decoder_reserve(&rd->d, 1) != 0) return luaL_error(L, "not enough memory");
      push_parsed(L, rd);
      lua_rawseti(L, 3, rd->qtail++);
      lp_msg token = {.kind = LP_MSG_HOST};
      lp_decoder_add(&rd->d, &token); // reserved: cannot fail
    }
    lp_buf_skip(in, used);
  }
  if (batch) { // the commands before an error go out too
    if (lp_decoder_reserve(&rd->d, 1) != 0) return luaL_error(L, "not enough memory");
    lua_pushvalue(L, batch);
    lua_rawseti(L, 3, rd->qtail++);
    lp_msg token = {.kind = LP_MSG_HOST};
    lp_decoder_add(&rd->d, &token);
  }
  lua_pushinteger(L, status);
  return 1;
}

// A protocol violation: the rest of the input is ignored, err says Redis's words.
static int protocol_error(resp_decoder *rd, lp_buf *in, lp_error *err) {
  rd->failed = true;
  lp_buf_skip(in, lp_buf_readable(in));
  memset(err, 0, sizeof *err);
  err->code = LP_ECORRUPT;
  err->kind = "ProtocolError";
  err->limit = err->length = -1;
  snprintf(err->message, sizeof err->message, "%s", rd->server ? rd->req.err : rd->rep.err);
  return LP_DECODE_ERROR;
}

// The flush of native replies, run before the loop next waits for events
// (as Redis writes its replies before it sleeps): the replies to every
// connection that was readable in this turn go out together, so that a
// client with many connections reads them in few calls.
static void flush_task(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  resp_decoder *rd = lp_container_of(t, resp_decoder, flush_task);
  lp_ctx *ctx = rd->d.ctx;
  lp_channel *ch = lp_ctx_channel(ctx);
  lp_pipeline *p = ctx->pipeline;
  rd->flush_queued = false;
  if (!ctx->removed && !p->destroyed && !(ch->flags & LP_CH_CLOSED)) {
    lp_pipeline_enter(p);
    lp_ctx_op(ctx, LP_OP_FLUSH, NULL, NULL);
    lp_pipeline_leave(p);
  }
  lp_ctx_unref(ctx); // may free rd
  lp_channel_unref(ch);
}

// Hand the native replies in *out to the pipeline: written, and flushed now
// (now) or before the loop waits. Returns whether the decoder may go on
// answering: the channel is open and writable (a client that sends without
// reading stops being answered once its replies pass the high water mark;
// autoBackpressure then holds the rest of its input until they drain).
static bool send_native(resp_decoder *rd, lp_buf **out, bool now) {
  lp_msg m = lp_msg_buf(*out);
  *out = NULL;
  lp_ctx *ctx = rd->d.ctx;
  lp_ctx_op(ctx, LP_OP_WRITE, &m, NULL);
  if (now) {
    lp_ctx_op(ctx, LP_OP_FLUSH, NULL, NULL);
  } else if (!rd->flush_queued) {
    rd->flush_queued = true;
    ctx->refs++; // both stay alive until the task ran
    lp_channel_ref(lp_ctx_channel(ctx));
    rd->flush_task.run = flush_task;
    lp_loop_defer(lp_ctx_channel(ctx)->loop, &rd->flush_task);
  }
  return lp_channel_is_writable(lp_ctx_channel(ctx)) && !rd->h->closing;
}

enum { NATIVE_WAIT, NATIVE_HANDLER, NATIVE_ERROR, NATIVE_NOMEM };

// Answer the commands at the front of in that lp_resp_store_exec knows,
// consuming them: NATIVE_WAIT (all complete commands answered, or the channel
// cannot take more replies now), NATIVE_HANDLER (the next command is the
// handler's: not consumed), NATIVE_ERROR (a protocol violation, rd->req.err),
// NATIVE_NOMEM. The replies of one call go out in one write, before the
// commands after them reach the handler: the order of replies is kept.
static int serve_native(resp_decoder *rd, lp_buf *in) {
  lp_buf *out = NULL;
  int status = NATIVE_WAIT;
  for (;;) {
    size_t used = 0;
    int rc = lp_resp_req_parse(&rd->req, (const char *)lp_buf_rptr(in), lp_buf_readable(in), &used);
    if (rc != LP_RESP_DONE) {
      if (rc != LP_RESP_NEED) status = rc == LP_RESP_ERROR ? NATIVE_ERROR : NATIVE_NOMEM;
      break;
    }
    if (rd->req.nargs) {
      if (!out && !(out = lp_buf_new(lp_ctx_channel(rd->d.ctx)->loop->pool, 4096))) {
        status = NATIVE_NOMEM;
        break;
      }
      int x = lp_resp_store_exec(rd->store, rd->req.args, rd->req.nargs, out, &rd->sc);
      if (x == LP_RESP_STORE_PASS) { // parsed again by the handler's path: not consumed
        status = NATIVE_HANDLER;
        break;
      }
      if (x < 0) {
        status = NATIVE_NOMEM;
        break;
      }
    }
    lp_buf_skip(in, used);
    if (out && lp_buf_readable(out) >= NATIVE_WRITE_AT && !send_native(rd, &out, true)) return NATIVE_WAIT;
  }
  // Flushed now when the handler is next: its replies are flushed when it writes them anyway.
  if (out && lp_buf_readable(out)) send_native(rd, &out, status != NATIVE_WAIT);
  else if (out) lp_buf_unref(out);
  return status;
}

static int resp_decode(lp_decoder *d, lp_buf *in, bool last, lp_error *err) {
  resp_decoder *rd = (resp_decoder *)d;
  l_host *h = rd->h;
  (void)last;
  if (!in || h->closing) return LP_DECODE_OK;
  if (rd->failed) { // after a protocol error: nothing more is read
    lp_buf_skip(in, lp_buf_readable(in));
    return LP_DECODE_OK;
  }
  // Natively only while the handler has answered everything before: nothing
  // queued for it (held while autoRead is off, or not yet fired).
  if (rd->native && d->qlen == 0 && rd->qhead == rd->qtail) {
    switch (serve_native(rd, in)) {
    case NATIVE_WAIT: return LP_DECODE_OK;
    case NATIVE_ERROR: return protocol_error(rd, in, err);
    case NATIVE_NOMEM: lp_error_sys(err, ENOMEM, "RESP decoder"); return LP_DECODE_ERROR;
    default: break; // the rest through the handler
    }
    if (h->closing || lp_buf_readable(in) == 0) return LP_DECODE_OK;
  }
  lua_State *L = h->L;
  if (!lua_checkstack(L, 8)) {
    lp_error_named(err, LP_EDECODER, "handler '%s': Lua stack overflow", d->ctx->name);
    return LP_DECODE_ERROR;
  }
  int top = lua_gettop(L);
  lua_pushcfunction(L, decode_all);
  lua_pushlightuserdata(L, rd);
  lua_pushlightuserdata(L, in);
  int status = lua_pcall(L, 2, 1, 0) == LUA_OK ? (int)lua_tointeger(L, -1) : STEP_NOMEM;
  lua_settop(L, top);
  if (status == STEP_NEED) return LP_DECODE_OK;
  if (status == STEP_NOMEM) {
    lp_error_sys(err, ENOMEM, "RESP decoder");
    return LP_DECODE_ERROR;
  }
  return protocol_error(rd, in, err);
}

static bool take_oldest(resp_decoder *rd, lua_State *L) {
  lua_Integer i = rd->qhead++;
  if (rd->h->closing || !lua_checkstack(L, 4)) return false;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rd->queue_ref);
  lua_rawgeti(L, -1, i);
  lua_pushnil(L);
  lua_rawseti(L, -3, i); // no allocation: the key exists
  lua_remove(L, -2);
  return true;
}

static void resp_fire_host(lp_decoder *d) {
  resp_decoder *rd = (resp_decoder *)d;
  lua_State *L = rd->h->L;
  int top = lua_gettop(L);
  if (!take_oldest(rd, L)) return;
  lp_msg m = {.kind = LP_MSG_HOST, .host = lua_gettop(L)};
  lp_ctx_fire(d->ctx, LP_EV_READ, &m);
  lua_settop(L, top);
}

static void resp_drop_host(lp_decoder *d) {
  resp_decoder *rd = (resp_decoder *)d;
  lua_State *L = rd->h->L;
  int top = lua_gettop(L);
  take_oldest(rd, L);
  lua_settop(L, top);
}

static void resp_free(lp_decoder *d) {
  resp_decoder *rd = (resp_decoder *)d;
  if (!rd->h->closing && rd->queue_ref != LUA_NOREF) luaL_unref(rd->h->L, LUA_REGISTRYINDEX, rd->queue_ref);
  lp_resp_req_free(&rd->req);
  lp_resp_reply_free(&rd->rep);
  free(rd->sc.data);
  free(rd);
}

static const lp_decoder_ops resp_ops = {resp_decode, resp_fire_host, resp_drop_host, resp_free, NULL, 0};

static lp_ctx *resp_make(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  resp_factory *f = (resp_factory *)self;
  lua_newtable(L);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  resp_decoder *rd = calloc(1, sizeof *rd);
  if (!rd) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return NULL;
  }
  rd->d.ops = &resp_ops;
  rd->d.max_cumulation = f->max_query;
  rd->h = l_host_get(L);
  rd->server = f->server;
  rd->batch = f->batch;
  lp_resp_req_init(&rd->req, &f->lim);
  lp_resp_reply_init(&rd->rep, &f->lim);
  rd->queue_ref = ref;
  rd->qhead = rd->qtail = 1;
  rd->store = f->store;
  rd->native = f->store != NULL;
  return lp_decoder_ctx_new(p, name, &rd->d); // on failure, resp_free releases rd
}

static lua_Integer opt_size(lua_State *L, const char *field, lua_Integer def, lua_Integer min, lua_Integer max) {
  if (lua_getfield(L, 1, field) != LUA_TNIL) {
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < min || v > max)
      luaL_error(L, "lupine.redis.codec: option '%s' must be an integer from %I to %I", field, min, max);
    def = v;
  }
  lua_pop(L, 1);
  return def;
}

// decoder{ mode, maxBulkLength, maxMultibulkLength, maxInlineLength, maxQueryBuffer }
static int resp_decoder_new(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  l_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    static const char *const known[] = {"mode", "maxBulkLength", "maxMultibulkLength", "maxInlineLength",
                                        "maxQueryBuffer", "batch", "store", NULL};
    bool ok = false;
    if (lua_type(L, -2) == LUA_TSTRING)
      for (int i = 0; known[i]; i++) ok |= strcmp(lua_tostring(L, -2), known[i]) == 0;
    if (!ok)
      return luaL_error(L, "lupine.redis.codec: unknown option '%s' (known: mode, batch, store, maxBulkLength, "
                           "maxMultibulkLength, maxInlineLength, maxQueryBuffer)",
                        luaL_tolstring(L, -2, NULL));
    lua_pop(L, 1);
  }
  const char *mode = "server";
  if (lua_getfield(L, 1, "mode") != LUA_TNIL) mode = lua_tostring(L, -1);
  if (!mode || (strcmp(mode, "server") != 0 && strcmp(mode, "client") != 0))
    return luaL_error(L, "lupine.redis.codec: option 'mode' must be \"server\" or \"client\"");
  bool server = strcmp(mode, "server") == 0;
  lua_pop(L, 1);
  lp_resp_limits lim;
  lp_resp_limits_default(&lim);
  lim.max_bulk = (size_t)opt_size(L, "maxBulkLength", (lua_Integer)lim.max_bulk, 1, (lua_Integer)1 << 40);
  lim.max_multibulk = (size_t)opt_size(L, "maxMultibulkLength", (lua_Integer)lim.max_multibulk, 1, INT32_MAX);
  lim.max_inline = (size_t)opt_size(L, "maxInlineLength", (lua_Integer)lim.max_inline, 16, 1 << 30);
  lua_Integer maxq = opt_size(L, "maxQueryBuffer", (lua_Integer)DEFAULT_MAX_QUERY_BUFFER, 1024, (lua_Integer)1 << 40);
  resp_factory *f = (resp_factory *)l_native_new(L, sizeof *f, server ? "redisServerCodec" : "redisClientCodec");
  f->n.make = resp_make;
  f->server = server;
  f->lim = lim;
  f->max_query = (size_t)maxq;
  f->batch = lua_getfield(L, 1, "batch") != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (f->batch && !server) return luaL_error(L, "lupine.redis.codec: option 'batch' is for mode \"server\"");
  if (lua_getfield(L, 1, "store") != LUA_TNIL) {
    if (!server) return luaL_error(L, "lupine.redis.codec: option 'store' is for mode \"server\"");
    f->store = l_shared_test(L, -1);
    if (!f->store) return luaL_error(L, "lupine.redis.codec: option 'store' must be a lupine.shared dictionary");
  }
  lua_pop(L, 1);
  return 1;
}

// nativeCommands(channel, on): whether the channel's RESP server decoder with
// a store answers its commands itself (on at first). Returns the previous
// setting; raises when the channel has no such decoder.
static int resp_native_commands(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  l_checktype(L, 2, LUA_TBOOLEAN);
  for (lp_ctx *c = lp_pipeline_first(&ch->pipeline); c; c = lp_pipeline_next(&ch->pipeline, c)) {
    lp_decoder *d = lp_decoder_of(c);
    if (d && d->ops == &resp_ops && ((resp_decoder *)d)->store) {
      resp_decoder *rd = (resp_decoder *)d;
      lua_pushboolean(L, rd->native);
      rd->native = lua_toboolean(L, 2);
      return 1;
    }
  }
  return luaL_error(L, "lupine.redis.nativeCommands: the channel has no redis.codec with a store");
}

// ---- encoding --------------------------------------------------------------------------------

static void encode(lua_State *L, int idx, lp_resp_out *o, int proto, int depth);

static void encode_table(lua_State *L, int idx, lp_resp_out *o, int proto, int depth) {
  if (lua_getfield(L, idx, "err") == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    lp_resp_put_line(o, '-', s, n);
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "ok") == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    lp_resp_put_line(o, '+', s, n);
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "map") == LUA_TTABLE) { // { map = { k1, v1, k2, v2 } }: a map in RESP3
    int m = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, m);
    lp_resp_put_int(o, proto == 3 ? '%' : '*', proto == 3 ? n / 2 : n);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, m, i);
      encode(L, lua_gettop(L), o, proto, depth + 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  bool push = lua_getfield(L, idx, "push") == LUA_TBOOLEAN && lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  lp_resp_put_int(o, push && proto == 3 ? '>' : '*', n);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    encode(L, lua_gettop(L), o, proto, depth + 1);
    lua_pop(L, 1);
  }
}

static void encode(lua_State *L, int idx, lp_resp_out *o, int proto, int depth) {
  if (depth > LP_RESP_MAX_DEPTH) luaL_error(L, "lupine.redis.encode: nested deeper than %d", LP_RESP_MAX_DEPTH);
  luaL_checkstack(L, 4, "lupine.redis.encode");
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    lp_resp_put_bulk(o, s, n);
    break;
  }
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) lp_resp_put_int(o, ':', lua_tointeger(L, idx));
    else if (proto == 3) lp_resp_put_double(o, lua_tonumber(L, idx));
    else {
      size_t n;
      lua_pushvalue(L, idx); // a copy to convert: lua_tolstring changes the slot it reads
      const char *s = lua_tolstring(L, -1, &n);
      lp_resp_put_bulk(o, s, n);
      lua_pop(L, 1);
    }
    break;
  case LUA_TBOOLEAN:
    if (proto == 3) lp_resp_put_raw(o, lua_toboolean(L, idx) ? "#t\r\n" : "#f\r\n", 4);
    else lp_resp_put_int(o, ':', lua_toboolean(L, idx));
    break;
  case LUA_TNIL: lp_resp_put_raw(o, proto == 3 ? "_\r\n" : "$-1\r\n", proto == 3 ? 3 : 5); break;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) {
      lp_resp_put_raw(o, proto == 3 ? "_\r\n" : "$-1\r\n", proto == 3 ? 3 : 5);
      break;
    }
    luaL_error(L, "lupine.redis.encode: cannot encode a light userdata");
    break;
  case LUA_TTABLE: encode_table(L, idx, o, proto, depth); break;
  default: luaL_error(L, "lupine.redis.encode: cannot encode a %s", luaL_typename(L, idx));
  }
}

// Under pcall: [1] out, [2] value, [3] protocol.
static int encode_protected(lua_State *L) {
  lp_resp_out *o = lua_touserdata(L, 1);
  encode(L, 2, o, (int)lua_tointeger(L, 3), 0);
  return 0;
}

static int finish(lua_State *L, lp_resp_out *o, int rc) {
  if (rc != LUA_OK) {
    lp_resp_out_free(o);
    return lua_error(L);
  }
  if (o->oom) {
    lp_resp_out_free(o);
    return luaL_error(L, "not enough memory");
  }
  lua_pushlstring(L, o->data ? o->data : "", o->len); // may raise: then o leaks once, out of memory only
  lp_resp_out_free(o);
  return 1;
}

// encode(v [, protocol 2|3]) -> string
static int resp_encode(lua_State *L) {
  l_checkany(L, 1);
  lua_Integer proto = l_optinteger(L, 2, 2);
  l_argcheck(L, proto == 2 || proto == 3, 2, "protocol must be 2 or 3");
  lp_resp_out o = {0};
  lua_settop(L, 2);
  lua_pushcfunction(L, encode_protected);
  lua_pushlightuserdata(L, &o);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, proto);
  return finish(L, &o, lua_pcall(L, 3, 0, 0));
}

// command(...) -> "*n\r\n$..\r\n..": each argument a string or number
static int resp_command(lua_State *L) {
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++)
    if (lua_type(L, i) != LUA_TSTRING && lua_type(L, i) != LUA_TNUMBER) l_typeerror(L, i, "string");
  lp_resp_out o = {0};
  lp_resp_put_int(&o, '*', n);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    if (lua_type(L, i) == LUA_TNUMBER) {
      lua_pushvalue(L, i);
      s = lua_tolstring(L, -1, &len); // may raise (memory): rare
      lp_resp_put_bulk(&o, s, len);
      lua_pop(L, 1);
    } else {
      s = lua_tolstring(L, i, &len);
      lp_resp_put_bulk(&o, s, len);
    }
  }
  return finish(L, &o, LUA_OK);
}

// errorReply(text) -> a lupine.RedisError { err = text }, as the decoder makes them
static int resp_error_reply(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_createtable(L, 0, 1);
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, "err");
  l_setmetatable(L, &l_key_rediserror);
  return 1;
}

static int rediserror_tostring(lua_State *L) {
  lua_getfield(L, 1, "err");
  return 1;
}

static const luaL_Reg funcs[] = {
    {"decoder", resp_decoder_new}, {"encode", resp_encode}, {"command", resp_command},
    {"nativeCommands", resp_native_commands}, {"errorReply", resp_error_reply}, {NULL, NULL}};

void l_resp_open(lua_State *L) {
  l_newmetatable(L, "lupine.RedisError", &l_key_rediserror);
  lua_pushcfunction(L, rediserror_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_setfield(L, -2, "_resp");
}
