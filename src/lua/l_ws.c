// l_ws.c: WebSocket framing as a native handler (core._ws, lua/lupine/ws.lua):
//
//  frameCodec{ server = true, maxMessageSize = 1 MiB, autoPong = true }
//      A duplex handler for a connection that already speaks WebSocket (after
//      the handshake): the decoder of codec.c (cumulation, autoRead holding,
//      hand-off when removed) with the frame decoder of ws.h as its step, and
//      an encoder for what is written through it.
//  text(s), binary(b), close([code [, reason]]), ping([data]), pong([data])
//      message constructors, checked when made.
//
// Inbound: a text message reaches the next handler as a Lua string, a binary
// one as a lupine.Buffer. With fragments = true, a message sent in several
// frames arrives frame by frame as { type = "text"|"binary", data = string or
// Buffer, fin = bool } tables (kept in a Lua table per connection until fired:
// q_ref), still checked against maxMessageSize and UTF-8 as a whole. Pings are answered with a pong at once (autoPong;
// with autoPong = false a userEvent { kind = "wsPing", data = s } instead);
// pongs fire { kind = "wsPong", data = s }. A close frame fires { kind =
// "wsClose", code = n, reason = s }, is answered with a close frame echoing
// its code (unless one was sent already), and the channel closes once that is
// written. A protocol violation sends a close frame with its code (1002, 1007,
// 1009), fires exceptionCaught with the named error ("WsProtocolError:
// unmasked client frame (1002)"), and drops all later input.
//
// Outbound: a string is a text frame (it must be UTF-8), a Buffer a binary
// frame, a table { type = "text"|"binary"|"close"|"ping"|"pong", data =,
// code =, reason = } that frame. The client side masks every frame with a
// fresh key from getrandom(2). ctx:close() (or the channel's close) sends a
// close frame (1000) first and closes the channel once it is written; so does
// writing a close frame. Nothing may be written after a close frame: such a
// write fails with ClosedChannel.
#include "lbind.h"

#include "codec.h"
#include "ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define COPY_MAX 16384 // a Buffer payload up to this size is copied behind its header: one write
#define KEYS_MAX 256   // random bytes fetched at once for masking keys (64 frames)

typedef struct {
  l_native n;
  lp_ws_config cfg;
  bool auto_pong;
  int window_bits;  // permessage-deflate: our compressor's window
  bool no_context;  // and whether it forgets each message
} ws_factory;

typedef struct {
  lp_decoder d; // first: the decoder's callbacks get an lp_decoder *
  lp_ws_decoder w;
  l_host *h;
  bool auto_pong;
  bool failed;     // a protocol error was reported: later input is dropped
  bool close_sent; // a close frame went out: no frame may follow it
  lp_ws_deflater df; // permessage-deflate (w.cfg.deflate): data messages go out compressed
  int q_ref;       // fragments: registry ref of the table of fragment tables not yet fired
  lua_Integer qhead, qtail; // it holds [qhead, qtail), one core token each, in order
  uint64_t mix;    // client: fallback mixing when getrandom has nothing
  uint32_t nkeys;  // client: bytes of keys left at the end of keys
  uint8_t keys[KEYS_MAX];
} ws_conn;

static inline lp_channel *chan(const ws_conn *c) { return lp_ctx_channel(c->d.ctx); }

// ---- writing frames ------------------------------------------------------------------------

static void next_key(ws_conn *c, uint8_t key[4]) {
  if (c->nkeys < 4) {
    ssize_t got = getrandom(c->keys, sizeof c->keys, GRND_NONBLOCK);
    if (got < 4) { // no entropy yet (early boot): still never the same key twice in a row
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      c->mix = (c->mix ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)c) * 0x9e3779b97f4a7c15ull + 1;
      memcpy(c->keys, &c->mix, 8);
      got = 8;
    }
    c->nkeys = (uint32_t)got;
  }
  c->nkeys -= 4;
  memcpy(key, c->keys + c->nkeys, 4);
}

// One frame of payload p[0..n), masked on the client side: 0 or -ENOMEM.
static int encode(ws_conn *c, int op, const void *p, size_t n, lp_buf **out) {
  uint8_t key[4];
  bool mask = !c->w.cfg.server;
  if (mask) next_key(c, key);
  if (c->w.cfg.deflate && (op == LP_WS_TEXT || op == LP_WS_BINARY))
    return lp_ws_encode_deflate(&c->df, chan(c)->loop->pool, op, p, n, mask ? key : NULL, out);
  return lp_ws_encode(chan(c)->loop->pool, op, p, n, mask ? key : NULL, out);
}

static void send_buf(ws_conn *c, lp_buf *b, lp_future *promise) {
  lp_msg m = lp_msg_buf(b);
  lp_ctx_op(c->d.ctx, LP_OP_WRITE, &m, promise);
}

typedef struct {
  lp_channel *ch;
  lp_future *promise; // the close operation's, or NULL
} close_job;

static void close_listener(lp_future *f, void *ud) {
  LP_UNUSED(f);
  close_job *j = ud;
  lp_channel_close(j->ch, j->promise); // through the pipeline: this codec passes it on (close_sent)
  if (j->promise) lp_future_unref(j->promise);
  lp_channel_unref(j->ch);
  free(j);
}

// Send a close frame (payload pl[0..n), already checked), flushed, and close
// the channel once it is written (or failed to be). wp: the write's promise
// (may be NULL); cp: the close's (may be NULL).
static void send_close(ws_conn *c, const uint8_t *pl, size_t n, lp_future *wp, lp_future *cp) {
  lp_channel *ch = chan(c);
  c->close_sent = true;
  lp_buf *b = NULL;
  bool own = false;
  close_job *j = NULL;
  if (encode(c, LP_WS_CLOSE, pl, n, &b) != 0) goto now;
  if (!wp) {
    if (!(wp = lp_channel_new_promise(ch))) goto now;
    own = true;
  }
  if (!(j = malloc(sizeof *j))) goto now;
  j->ch = lp_channel_ref(ch);
  j->promise = cp ? lp_future_ref(cp) : NULL;
  if (lp_future_add_listener(wp, close_listener, j) != 0) {
    lp_channel_unref(ch);
    if (cp) lp_future_unref(cp);
    free(j);
    goto now;
  }
  send_buf(c, b, wp);
  if (own) lp_future_unref(wp);
  lp_ctx_op(c->d.ctx, LP_OP_FLUSH, NULL, NULL);
  return;
now: // out of memory: close without the frame
  if (b) lp_buf_unref(b);
  if (own) lp_future_unref(wp);
  lp_ctx_op(c->d.ctx, LP_OP_CLOSE, NULL, cp);
}

static void send_close_code(ws_conn *c, int code) {
  uint8_t pl[2];
  size_t n = 0;
  if (code != LP_WS_NO_STATUS) {
    lp_store_uint(pl, 2, true, (uint64_t)code);
    n = 2;
  }
  send_close(c, pl, n, NULL, NULL);
}

// ---- decoding ------------------------------------------------------------------------------

// Under pcall: [1] kind, [2] payload (light userdata lp_buf), [3] close code or -1.
static int make_event(lua_State *L) {
  const char *kind = lua_touserdata(L, 1);
  const lp_buf *b = lua_touserdata(L, 2);
  lua_Integer code = lua_tointeger(L, 3);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushlstring(L, (const char *)lp_buf_rptr(b), lp_buf_readable(b));
  lua_setfield(L, -2, code >= 0 ? "reason" : "data");
  if (code >= 0) {
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
  }
  return 1;
}

static void fire_event(ws_conn *c, const char *kind, lp_buf *payload, int code) {
  if (c->h->closing) return;
  lua_State *L = c->h->L;
  if (!lua_checkstack(L, 6)) return;
  int top = lua_gettop(L);
  lua_pushcfunction(L, make_event);
  lua_pushlightuserdata(L, (void *)kind);
  lua_pushlightuserdata(L, payload);
  lua_pushinteger(L, code);
  if (lua_pcall(L, 3, 1, 0) == LUA_OK) {
    lp_msg m = l_host_msg(lua_gettop(L));
    lp_ctx_fire(c->d.ctx, LP_EV_USER_EVENT, &m);
  }
  lua_settop(L, top);
}

static void on_control(ws_conn *c, int op, lp_buf *p) {
  switch (op) {
  case LP_WS_PING:
    if (!c->auto_pong) {
      fire_event(c, "wsPing", p, -1);
    } else if (!c->close_sent) {
      lp_buf *b;
      if (encode(c, LP_WS_PONG, lp_buf_rptr(p), lp_buf_readable(p), &b) == 0) {
        send_buf(c, b, NULL);
        lp_ctx_op(c->d.ctx, LP_OP_FLUSH, NULL, NULL);
      }
    }
    break;
  case LP_WS_PONG: fire_event(c, "wsPong", p, -1); break;
  case LP_WS_CLOSE: {
    int code = c->w.close_code;
    bool answered = c->close_sent;
    fire_event(c, "wsClose", p, code);
    if (!c->close_sent) send_close_code(c, code); // the handshake's answer: the same code
    else if (answered) lp_ctx_op(c->d.ctx, LP_OP_CLOSE, NULL, NULL); // it answered ours: done
    // (else the handler closed in wsClose: its close frame is on the way, the close follows it)
    break;
  }
  default: break;
  }
}

// ---- fragments (option fragments): { type, data, fin } tables, queued on the Lua side ------

typedef struct {
  int op;
  bool fin, taken;
  lp_buf *b;
} fragment;

// Under pcall: [1] the connection, [2] the fragment. Appends its table to the queue.
static int make_fragment(lua_State *L) {
  ws_conn *c = lua_touserdata(L, 1);
  fragment *f = lua_touserdata(L, 2);
  if (c->q_ref == LUA_NOREF) {
    lua_newtable(L);
    c->q_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->q_ref);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, f->op == LP_WS_TEXT ? "text" : "binary");
  lua_setfield(L, -2, "type");
  if (f->op == LP_WS_TEXT) {
    lua_pushlstring(L, (const char *)lp_buf_rptr(f->b), lp_buf_readable(f->b));
  } else {
    l_buffer_push(L, NULL);
    ((l_buffer_box *)lua_touserdata(L, -1))->buf = f->b; // the box takes the reference
    f->taken = true;
  }
  lua_setfield(L, -2, "data");
  lua_pushboolean(L, f->fin);
  lua_setfield(L, -2, "fin");
  lua_rawseti(L, -2, c->qtail);
  c->qtail++;
  return 0;
}

// Queue the fragment's table and its token: 0, or -ENOMEM (b released either way).
static int queue_fragment(ws_conn *c, int op, bool fin, lp_buf *b) {
  fragment f = {op, fin, false, b};
  lua_State *L = c->h->L;
  int rc = -ENOMEM;
  if (!c->h->closing && lp_decoder_reserve(&c->d, 1) == 0 && lua_checkstack(L, 8)) {
    int top = lua_gettop(L);
    lua_pushcfunction(L, make_fragment);
    lua_pushlightuserdata(L, c);
    lua_pushlightuserdata(L, &f);
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) {
      lp_msg token = {.kind = LP_MSG_HOST};
      lp_decoder_add(&c->d, &token); // reserved: cannot fail
      rc = 0;
    }
    lua_settop(L, top);
  }
  if (!f.taken) lp_buf_unref(b);
  return rc;
}

// Push the oldest queued fragment table (and forget it there); false when it cannot.
static bool take_fragment(ws_conn *c, lua_State *L) {
  lua_Integer i = c->qhead++;
  if (c->h->closing || c->q_ref == LUA_NOREF || !lua_checkstack(L, 4)) return false;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->q_ref);
  lua_rawgeti(L, -1, i);
  lua_pushnil(L);
  lua_rawseti(L, -3, i); // no allocation: the key exists
  lua_remove(L, -2);
  return true;
}

static void ws_fire_host(lp_decoder *d) {
  ws_conn *c = (ws_conn *)d;
  lua_State *L = c->h->L;
  int top = lua_gettop(L);
  if (take_fragment(c, L)) {
    lp_msg m = {.kind = LP_MSG_HOST, .host = lua_gettop(L)};
    lp_ctx_fire(d->ctx, LP_EV_READ, &m);
  }
  lua_settop(L, top);
}

static void ws_drop_host(lp_decoder *d) {
  ws_conn *c = (ws_conn *)d;
  lua_State *L = c->h->L;
  int top = lua_gettop(L);
  take_fragment(c, L);
  lua_settop(L, top);
}

static int ws_step(lp_decoder *d, lp_buf *in, bool last, lp_error *err) {
  LP_UNUSED(last);
  ws_conn *c = (ws_conn *)d;
  if (!in) return LP_DECODE_OK;
  if (c->failed) { // after a violation nothing more is read
    in->rd = in->wr;
    return LP_DECODE_OK;
  }
  int rc = lp_ws_decode(&c->w, in);
  if (rc == LP_WS_NEED) return LP_DECODE_OK;
  if (rc == LP_WS_MESSAGE) {
    lp_msg m = lp_msg_buf(c->w.payload);
    if (c->w.opcode == LP_WS_TEXT) m.flags = LP_MSGF_STRING;
    if (lp_decoder_add(d, &m) != 0) {
      lp_error_sys(err, ENOMEM, "queueing a message");
      return LP_DECODE_ERROR;
    }
    return LP_DECODE_OK;
  }
  if (rc == LP_WS_FRAGMENT) {
    if (queue_fragment(c, c->w.opcode, c->w.fin, c->w.payload) != 0) {
      lp_error_sys(err, ENOMEM, "queueing a fragment");
      return LP_DECODE_ERROR;
    }
    return LP_DECODE_OK;
  }
  if (rc == LP_WS_CONTROL) {
    lp_buf *p = c->w.payload;
    on_control(c, c->w.opcode, p);
    lp_buf_unref(p);
    return LP_DECODE_OK;
  }
  c->failed = true;
  *err = c->w.error;
  in->rd = in->wr;
  if (!c->close_sent) send_close_code(c, c->w.close_code);
  return LP_DECODE_ERROR;
}

// ---- encoding ------------------------------------------------------------------------------

static void fail_write(ws_conn *c, lp_future *promise, int code, const char *kind, const char *fmt, const char *arg) {
  lp_error e;
  e.code = code;
  e.kind = kind;
  e.limit = e.length = -1;
  char text[LP_ERROR_MESSAGE_MAX - 40];
  snprintf(text, sizeof text, fmt, arg);
  snprintf(e.message, sizeof e.message, "%s: %s", kind, text);
  lp_channel_fail_promise(chan(c), promise, &e);
}

static int opcode_of(const char *t) {
  if (!t) return -1;
  if (strcmp(t, "text") == 0) return LP_WS_TEXT;
  if (strcmp(t, "binary") == 0) return LP_WS_BINARY;
  if (strcmp(t, "close") == 0) return LP_WS_CLOSE;
  if (strcmp(t, "ping") == 0) return LP_WS_PING;
  if (strcmp(t, "pong") == 0) return LP_WS_PONG;
  return -1;
}

// Under pcall: [1] a message table -> opcode, payload (string, Buffer or nil), code (close).
static int read_table(lua_State *L) {
  lua_getfield(L, 1, "type");
  int op = opcode_of(lua_tostring(L, -1));
  if (op < 0)
    return luaL_error(L, "lupine.ws: a message table's type must be \"text\", \"binary\", \"close\", \"ping\" or \"pong\"");
  lua_pushinteger(L, op);
  lua_getfield(L, 1, op == LP_WS_CLOSE ? "reason" : "data");
  int t = lua_type(L, -1);
  if (t != LUA_TNIL && t != LUA_TSTRING && !l_testudata(L, -1, &l_key_buffer))
    return luaL_error(L, "lupine.ws: a message's %s must be a string or a lupine.Buffer",
                      op == LP_WS_CLOSE ? "reason" : "data");
  lua_getfield(L, 1, "code");
  return 3;
}

static void ws_outbound(lp_decoder *d, int op, lp_msg *m, lp_future *promise) {
  ws_conn *c = (ws_conn *)d;
  lp_ctx *ctx = d->ctx;
  lp_channel *ch = chan(c);
  if (op == LP_OP_CLOSE) {
    if (!c->close_sent && (ch->flags & LP_CH_ACTIVE) && !(ch->flags & LP_CH_CLOSED)) {
      // The close goes on, with the caller's promise, once the frame is written.
      static const uint8_t normal[2] = {LP_WS_NORMAL >> 8, LP_WS_NORMAL & 0xff};
      send_close(c, normal, 2, NULL, promise);
      return;
    }
    lp_ctx_op(ctx, op, m, promise);
    return;
  }
  if (op != LP_OP_WRITE) {
    lp_ctx_op(ctx, op, m, promise);
    return;
  }
  int opcode = LP_WS_BINARY, code = LP_WS_NO_STATUS;
  lp_buf *owned = NULL; // a payload buffer taken from the message
  const uint8_t *p = NULL;
  size_t n = 0;
  lua_State *L = c->h->L;
  int top = lua_gettop(L);
  if (m->kind == LP_MSG_BUF) {
    owned = m->u.buf;
    m->kind = LP_MSG_NONE;
  } else if (m->kind == LP_MSG_HOST && !c->h->closing) {
    int idx = m->host;
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING) {
      opcode = LP_WS_TEXT;
      p = (const uint8_t *)lua_tolstring(L, idx, &n);
    } else if (t == LUA_TUSERDATA && l_testudata(L, idx, &l_key_buffer)) {
      l_buffer_box *box = l_testudata(L, idx, &l_key_buffer);
      if (!box->buf) {
        fail_write(c, promise, LP_EUNSUPPORTED, "UnsupportedMessage", "%s", "lupine.Buffer used after release or hand-off");
        return;
      }
      owned = box->buf; // handed off, as any written Buffer
      box->buf = NULL;
    } else if (t == LUA_TTABLE && lua_checkstack(L, 8)) {
      lua_pushcfunction(L, read_table);
      lua_pushvalue(L, idx);
      if (lua_pcall(L, 1, 3, 0) != LUA_OK) {
        char text[LP_ERROR_MESSAGE_MAX];
        fail_write(c, promise, LP_EUNSUPPORTED, "UnsupportedMessage", "%s", l_tostring(L, -1, text, sizeof text));
        lua_settop(L, top);
        return;
      }
      opcode = (int)lua_tointeger(L, -3);
      if (lua_isinteger(L, -1)) code = (int)lua_tointeger(L, -1);
      else if (opcode == LP_WS_CLOSE) code = LP_WS_NORMAL;
      l_buffer_box *box = l_testudata(L, -2, &l_key_buffer);
      if (box && box->buf) {
        owned = box->buf;
        box->buf = NULL;
      } else if (lua_type(L, -2) == LUA_TSTRING) {
        p = (const uint8_t *)lua_tolstring(L, -2, &n); // stays on the stack until top is restored
      }
    } else {
      lp_ctx_op(ctx, op, m, promise); // not a message of ours: for an encoder nearer the head
      return;
    }
  } else {
    lp_ctx_op(ctx, op, m, promise);
    return;
  }
  if (owned) {
    p = lp_buf_rptr(owned);
    n = lp_buf_readable(owned);
  }
  lp_buf *b = NULL;
  if (c->close_sent) {
    fail_write(c, promise, LP_ECLOSED, "ClosedChannel", "%s", "a WebSocket close frame was sent: no frame may follow");
  } else if (opcode == LP_WS_TEXT && !lp_utf8_valid(p, n)) {
    fail_write(c, promise, LP_EWS, "WsInvalidPayload", "%s", "text message is not UTF-8");
  } else if (opcode == LP_WS_CLOSE) {
    uint8_t pl[LP_WS_MAX_CONTROL];
    char why[LP_ERROR_MESSAGE_MAX - 60];
    int len = lp_ws_close_payload(pl, code, p, n, why, sizeof why);
    if (len < 0) fail_write(c, promise, LP_EWS, "WsProtocolError", "%s", why);
    else send_close(c, pl, (size_t)len, promise, NULL);
  } else if ((opcode & 8) && n > LP_WS_MAX_CONTROL) {
    fail_write(c, promise, LP_EWS, "WsProtocolError", "%s", "a ping or pong carries at most 125 bytes");
  } else if (c->w.cfg.server && !c->w.cfg.deflate && owned && n > COPY_MAX) {
    // A large Buffer goes out as it is, behind a header of its own (no copy).
    b = lp_buf_new(ch->loop->pool, LP_WS_MAX_HEADER);
    if (b) {
      b->wr = lp_ws_header(b->data, opcode, true, n, NULL);
      send_buf(c, b, NULL);
      send_buf(c, owned, promise);
      owned = NULL;
    } else {
      lp_error e;
      lp_error_sys(&e, ENOMEM, "encoding a WebSocket frame");
      lp_channel_fail_promise(ch, promise, &e);
    }
  } else if (encode(c, opcode, p, n, &b) == 0) {
    send_buf(c, b, promise);
  } else {
    lp_error e;
    lp_error_sys(&e, ENOMEM, "encoding a WebSocket frame");
    lp_channel_fail_promise(ch, promise, &e);
  }
  if (owned) lp_buf_unref(owned);
  lua_settop(L, top);
}

static void ws_free(lp_decoder *d) {
  ws_conn *c = (ws_conn *)d;
  lp_ws_decoder_free(&c->w);
  lp_ws_deflater_free(&c->df);
  if (c->q_ref != LUA_NOREF && !c->h->closing) luaL_unref(c->h->L, LUA_REGISTRYINDEX, c->q_ref);
  free(c);
}

static const lp_decoder_ops ws_ops = {
    ws_step, ws_fire_host, ws_drop_host, ws_free, ws_outbound, LP_MASK(LP_OP_WRITE) | LP_MASK(LP_OP_CLOSE),
};

static lp_ctx *ws_make(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  ws_factory *f = (ws_factory *)self;
  ws_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->d.ops = &ws_ops;
  c->h = l_host_get(L);
  c->auto_pong = f->auto_pong;
  c->q_ref = LUA_NOREF;
  c->qhead = c->qtail = 1;
  lp_ws_decoder_init(&c->w, &f->cfg);
  lp_ws_deflater_init(&c->df, f->window_bits, f->no_context);
  return lp_decoder_ctx_new(p, name, &c->d); // on failure, ws_free releases c
}

// ---- Lua functions ---------------------------------------------------------------------------

static bool opt_bool(lua_State *L, int t, const char *fn, const char *field, bool def) {
  int ty = lua_getfield(L, t, field);
  if (ty != LUA_TNIL && ty != LUA_TBOOLEAN) luaL_error(L, "%s: option '%s' must be a boolean", fn, field);
  bool v = ty == LUA_TNIL ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

// deflate = true or { serverNoContextTakeover, clientNoContextTakeover,
// serverMaxWindowBits, clientMaxWindowBits }: what the handshake agreed on.
static void deflate_options(lua_State *L, int t, const char *fn, ws_factory *f) {
  static const char *const known[] = {"serverNoContextTakeover", "clientNoContextTakeover", "serverMaxWindowBits",
                                      "clientMaxWindowBits", NULL};
  int ty = lua_getfield(L, t, "deflate");
  if (ty == LUA_TNIL || (ty == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
    lua_pop(L, 1);
    return;
  }
  f->cfg.deflate = true;
  f->window_bits = 15;
  if (ty == LUA_TBOOLEAN) {
    lua_pop(L, 1);
    return;
  }
  if (ty != LUA_TTABLE) luaL_error(L, "%s: option 'deflate' must be a boolean or a table", fn);
  int d = lua_gettop(L);
  l_check_options(L, d, "lupine.ws.frameCodec: deflate", known);
  bool server = f->cfg.server;
  bool snc = opt_bool(L, d, fn, "serverNoContextTakeover", false);
  bool cnc = opt_bool(L, d, fn, "clientNoContextTakeover", false);
  int bits[2];
  const char *names[2] = {"serverMaxWindowBits", "clientMaxWindowBits"};
  for (int i = 0; i < 2; i++) {
    bits[i] = 15;
    if (lua_getfield(L, d, names[i]) != LUA_TNIL) {
      int isint;
      lua_Integer v = lua_tointegerx(L, -1, &isint);
      if (!isint || v < 8 || v > 15) luaL_error(L, "%s: option '%s' must be an integer from 8 to 15", fn, names[i]);
      bits[i] = (int)v;
    }
    lua_pop(L, 1);
  }
  f->no_context = server ? snc : cnc;
  f->window_bits = server ? bits[0] : bits[1];
  f->cfg.peer_no_context = server ? cnc : snc;
  lua_pop(L, 1);
}

// frameCodec{ server = true, maxMessageSize = 1048576, autoPong = true, deflate = false, fragments = false }
static int ws_frame_codec(lua_State *L) {
  static const char *const known[] = {"server", "maxMessageSize", "autoPong", "deflate", "fragments", NULL};
  static const char fn[] = "lupine.ws.frameCodec";
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  l_checktype(L, 1, LUA_TTABLE);
  l_check_options(L, 1, fn, known);
  lp_ws_config cfg;
  lp_ws_config_default(&cfg, opt_bool(L, 1, fn, "server", true));
  if (lua_getfield(L, 1, "maxMessageSize") != LUA_TNIL) {
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 1 || v > (lua_Integer)LP_WS_MAX_MESSAGE_MAX)
      luaL_error(L, "%s: option 'maxMessageSize' must be an integer from 1 to %I", fn, (lua_Integer)LP_WS_MAX_MESSAGE_MAX);
    cfg.max_message = (size_t)v;
  }
  lua_pop(L, 1);
  bool auto_pong = opt_bool(L, 1, fn, "autoPong", true);
  cfg.fragments = opt_bool(L, 1, fn, "fragments", false);
  ws_factory *f = (ws_factory *)l_native_new(L, sizeof *f, "wsFrameCodec");
  f->n.make = ws_make;
  f->cfg = cfg;
  f->auto_pong = auto_pong;
  deflate_options(L, 1, fn, f);
  return 1;
}

// text(s): s, checked to be UTF-8.
static int ws_text(lua_State *L) {
  size_t n;
  const char *s = l_checklstring(L, 1, &n);
  if (!lp_utf8_valid(s, n)) return l_argerror(L, 1, "not UTF-8");
  lua_settop(L, 1);
  return 1;
}

// binary(b): a Buffer (a string is copied into a new one; a Buffer is itself).
static int ws_binary(lua_State *L) {
  if (l_testudata(L, 1, &l_key_buffer)) {
    lua_settop(L, 1);
    return 1;
  }
  size_t n;
  const char *s = l_checklstring(L, 1, &n);
  lp_buf *b = lp_buf_from(l_pool(L), s, n);
  if (!b) return luaL_error(L, "out of memory");
  l_buffer_push(L, b);
  return 1;
}

static int control_table(lua_State *L, const char *type) {
  size_t n = 0;
  if (!lua_isnoneornil(L, 1)) l_checklstring(L, 1, &n);
  if (n > LP_WS_MAX_CONTROL) return l_argerror(L, 1, "at most 125 bytes");
  lua_createtable(L, 0, 2);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  if (n) {
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "data");
  }
  return 1;
}
static int ws_ping(lua_State *L) { return control_table(L, "ping"); }
static int ws_pong(lua_State *L) { return control_table(L, "pong"); }

// close([code = 1000 [, reason]]): { type = "close", code = , reason = }
static int ws_close(lua_State *L) {
  lua_Integer code = l_optinteger(L, 1, LP_WS_NORMAL);
  size_t n = 0;
  const char *r = l_optlstring(L, 2, "", &n);
  uint8_t pl[LP_WS_MAX_CONTROL];
  char why[120];
  if (code < 0 || code > 65535 || lp_ws_close_payload(pl, (int)code, r, n, why, sizeof why) < 0) {
    if (code < 0 || code > 65535) snprintf(why, sizeof why, "close code %lld may not be sent", (long long)code);
    return luaL_error(L, "lupine.ws.close: %s", why);
  }
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "close");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  lua_pushlstring(L, r, n);
  lua_setfield(L, -2, "reason");
  return 1;
}

// lupine.ws._accept(key): the handshake's Sec-WebSocket-Accept, base64(SHA-1(key ..
// the RFC 6455 GUID)), with OpenSSL's libcrypto (linked for TLS). The key is
// whatever the client sent; the caller checks that it is 16 bytes of base64.
static int ws_accept(lua_State *L) {
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  if (n > 256) return luaL_error(L, "lupine.ws._accept: key of %d bytes is too long", (int)n);
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char buf[256 + sizeof guid];
  memcpy(buf, key, n);
  memcpy(buf + n, guid, sizeof guid - 1);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(buf, n + sizeof guid - 1, digest);
  unsigned char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1]; // 28 chars and the NUL EVP writes
  int len = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  lua_pushlstring(L, (const char *)out, (size_t)len);
  return 1;
}

// lupine.ws._key(): a client handshake's Sec-WebSocket-Key, 16 bytes from the
// kernel's random source in base64 (RFC 6455 4.1: a nonce, fresh per connection).
static int ws_key(lua_State *L) {
  unsigned char nonce[16];
  if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
    return luaL_error(L, "lupine.ws: getrandom failed: %s", strerror(errno));
  unsigned char out[25];
  int len = EVP_EncodeBlock(out, nonce, sizeof nonce);
  lua_pushlstring(L, (const char *)out, (size_t)len);
  return 1;
}

static const luaL_Reg ws_funcs[] = {
    {"_accept", ws_accept}, {"_key", ws_key},
    {"frameCodec", ws_frame_codec}, {"text", ws_text}, {"binary", ws_binary}, {"close", ws_close},
    {"ping", ws_ping},              {"pong", ws_pong}, {NULL, NULL},
};

void l_ws_open(lua_State *L) {
  luaL_newlib(L, ws_funcs);
  lua_setfield(L, -2, "_ws"); // lupine.ws (ws.lua) is built on it
}
