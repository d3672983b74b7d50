// l_http.c: the HTTP/1.1 server side as native handlers (core._http):
//
//  serverCodec{...}  Netty's HttpServerCodec: parses requests (http.h) and
//                    fires a head table, then body chunks (Buffers, slices of
//                    the input), then http.END per request; encodes response
//                    tables written through it (Content-Length or chunked, Date,
//                    Connection), HEAD without body, close after a response
//                    that ends the connection.
//  server{handler=fn, ...}  the server's whole connection handler: the same
//                    parsing, the body aggregated natively, then one Lua call
//                    handler(req, res) per request; res:send encodes the
//                    response natively into one write, flushed at
//                    channelReadComplete (pipelined responses share a send).
//
// One connection state (http_conn) per context serves both; mode says which.
// Ordering: the server answers pipelined requests in order by dispatching
// one at a time: the next request is parsed only when the current response
// finished (its bytes wait in the cumulation). The codec keeps the facts of
// up to RING_MAX unanswered requests (HEAD, version, keep-alive) in order,
// for the responses written through it, and stops parsing when it is full.
//
// The codec also keeps Netty's decoder rules: with autoRead off, one request
// per read() demand (the rest held); after an Upgrade request it parses
// nothing until the answer (101: the codec is to be removed, and on removal
// the bytes not parsed go to the next handler; another status: HTTP goes on).
//
// Errors: a request the parser refuses is answered with its status (400, 413,
// 414, 431, 501, 505, 417) and Connection: close, and the channel closes once
// that is written. A request head that does not complete within headerTimeout
// of the connection's start or of the previous response is a 408 (or a silent
// close when no byte of it came); so is a request body with no byte of it for
// bodyTimeout (the time between two reads, as nginx's client_body_timeout). A handler that raises: the error is logged
// with a traceback (never sent), the client gets a 500 when the response had
// not started (the connection stays usable), else the channel closes.
//
// Lifetimes: the factory holds the handler's registry reference; each
// context holds the factory (its host_ref), so the handler outlives every
// connection. A Response userdata points to its connection while it is the
// current one; the connection forgets it when it finishes or goes, and the
// userdata's __gc forgets the connection: neither outlives the other's pointer.
#include "lbind.h"

#include "codec.h"
#include "http.h"
#include "http_codec.h"
#include "log.h"
#include "tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING_MAX 64          // codec: unanswered pipelined requests tracked
#define FIELDS_MAX 100       // fields in one response
#define COPY_BODY_MAX 16384  // a body up to this size is copied behind the head (one write)
#define DEFAULT_HEADER_TIMEOUT 30.0
#define DEFAULT_BODY_TIMEOUT 60.0
#define HOLD_MAX 65536       // server: input bytes held behind an unanswered request before reading pauses

enum { MODE_CODEC, MODE_SERVER, MODE_CLIENT };

static const char key_end, key_request_mt, key_response, key_strings;

// The strings a request table is made of, interned once per state in an
// array (key_strings; factories keep a reference): lua_setfield with a C
// string looks its key up in Lua's string cache (a hash and a strcmp) per call.
enum {
  S_METHOD = 1, S_TARGET, S_PATH, S_QUERY, S_VERSION, S_HEADERS, S_KEEPALIVE, S_BODY, S_V10, S_V11, S_EMPTY,
  S_M_FIRST, // then the method names, LP_HTTP_M_GET.. in order
  S_COUNT = S_M_FIRST + LP_HTTP_M_PATCH
};
static const char *const string_values[S_COUNT] = {
    NULL, "method", "target", "path", "query", "version", "headers", "keepAlive", "body", "1.0", "1.1", "",
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
};

typedef struct {
  l_native n;
  int mode;
  lp_http_config cfg;
  double header_timeout;  // 0: none
  double body_timeout;    // 0: none
  lua_State *L;           // main thread, for __gc
  int handler_ref;        // server: the handler (function or callable)
  int strings_ref;        // the string array (key_strings)
  int request_mt_ref;     // the requests' metatable
} http_factory;

typedef struct {
  uint8_t head, keep_alive, version; // version: 10 or 11
} req_info;

typedef struct http_res http_res;

typedef struct {
  lp_ctx *ctx;
  l_host *h;
  http_factory *f;        // kept alive by ctx->host_ref
  int mode;
  lp_http_parser p;
  lp_buf *cum;
  // requests parsed and not yet answered, oldest first (server: at most 1)
  req_info *ring;         // max_inflight entries: &one, or (codec) RING_MAX malloc'd
  req_info one;
  uint32_t rhead, rlen, max_inflight;
  bool in_body;           // between HEAD and END of a request
  bool parsing;           // the parse loop is on the stack
  bool in_read;           // between channelRead and channelReadComplete: flush then
  bool dirty;             // written, not flushed
  bool closing;           // a response ended the connection: parse nothing more
  bool streaming;         // codec: a chunked response is in progress
  bool stream_body;       // codec: that response carries a body (not HEAD)
  bool task_queued;
  bool early;             // server: the request (without body) was dispatched at its head
  bool err_wait;          // codec: a refused request is answered once the requests before it are
  bool paused;            // server: reading paused (autoRead off) while input waits behind an answer
  uint32_t allow;         // codec, autoRead off: requests that may still start (one per read() demand)
  bool upgrade_wait;      // codec: after an Upgrade request, the bytes wait for the answer (101: not HTTP)
  bool handed_off;        // removed: the bytes not parsed went to the next handler
  int last_status;        // codec: the status of the last response head written
  bool calling;           // server: dispatch reached the handler's call
  lp_task task;           // parse on after an answer that came from elsewhere
  // server: the request being aggregated
  int req_ref;            // its table (LUA_NOREF: none)
  lp_buf *body;
  http_res *res;          // the current response object (NULL: none)
  // header timeout
  ev_timer timer;
  double wait_since;      // when waiting for a head (or the body's next byte) began; < 0: not waiting
  double wait_len;        // how long that wait may last: headerTimeout or bodyTimeout
} http_conn;

struct http_res {
  L_BOX_HEAD;
  http_conn *c;           // NULL once finished or the connection went
  int status;
  int fields_ref;         // a Lua table of fields set with res:header (LUA_NOREF: none)
  req_info info;
  bool done;              // finished (c is then NULL)
  bool started;           // the head was written (streaming)
  bool chunked;
};

static inline lp_channel *chan(const http_conn *c) { return lp_ctx_channel(c->ctx); }
static inline bool gone(const http_conn *c) { return c->ctx->removed || (chan(c)->flags & LP_CH_CLOSED); }
// The codec with autoRead off: one request per read() demand, the rest held
// (as the frame decoders hold frames; LESSONS #7).
static inline bool holding(const http_conn *c) { return c->mode == MODE_CODEC && !chan(c)->config.auto_read; }

// ---- writing ----------------------------------------------------------------------------

// The answer that ends the connection is written: close, lingering (the
// client may still be sending; a close now could reset the answer away).
static void close_listener(lp_future *f, void *ud) {
  lp_channel *ch = ud;
  if (lp_future_ok(f) && ch->transport == &lp_socket_transport) {
    lp_tls_notify_close(ch); // TLS: the record goes out before the FIN
    lp_channel_close_lingering(ch);
  }
  else lp_channel_close(ch, NULL);
  lp_channel_unref(ch);
}

// Write b (the reference moves) toward the head from this handler. close:
// the connection ends with it (closed once written, or when the write fails).
// promise: the caller's (may be NULL).
static void write_msg_p(http_conn *c, lp_msg *m, bool close, lp_future *promise) {
  lp_channel *ch = chan(c);
  bool own = false;
  if (close && !promise && (promise = lp_channel_new_promise(ch)) != NULL) own = true;
  if (close && promise && lp_future_add_listener(promise, close_listener, lp_channel_ref(ch)) != 0) {
    lp_channel_unref(ch);
    if (own) lp_future_unref(promise);
    promise = NULL;
    own = false;
  }
  bool listened = close && promise;
  lp_ctx_op(c->ctx, LP_OP_WRITE, m, promise);
  if (own) lp_future_unref(promise);
  if (close && !listened) lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL); // out of memory: close now
  c->dirty = true;
  if (close) c->closing = true;
}

static void write_buf_p(http_conn *c, lp_buf *b, bool close, lp_future *promise) {
  lp_msg m = lp_msg_buf(b);
  write_msg_p(c, &m, close, promise);
}

static void write_buf(http_conn *c, lp_buf *b, bool close) { write_buf_p(c, b, close, NULL); }

static void flush(http_conn *c) {
  if (!c->dirty) return;
  c->dirty = false;
  lp_ctx_op(c->ctx, LP_OP_FLUSH, NULL, NULL);
}

// End the connection once what was written before is out (a close now would
// drop writes not yet flushed).
static void close_after_writes(http_conn *c) {
  lp_buf *b = lp_buf_new(chan(c)->loop->pool, 0);
  if (!b) {
    lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
    c->closing = true;
    return;
  }
  write_buf(c, b, true);
  flush(c);
}

// A complete response with a short text body, from the server itself.
static void answer_plain(http_conn *c, int status, const req_info *ri, bool close) {
  const char *text = lp_http_reason(status);
  char body[64];
  size_t n = (size_t)snprintf(body, sizeof body, "%s\n", text);
  lp_http_field ct = {"Content-Type", "text/plain; charset=utf-8", 12, 25};
  lp_http_response r = {.version = ri ? ri->version : 11, .status = status, .fields = &ct, .nfields = 1,
                        .content_length = (int64_t)n, .keep_alive = !close, .date = true,
                        .now = ev_now(chan(c)->loop->ev)};
  lp_buf *b = lp_buf_new(chan(c)->loop->pool, 256);
  if (!b || lp_http_encode_head(b, &r) != 0 || (!(ri && ri->head) && lp_buf_write(b, body, n) != 0)) {
    if (b) lp_buf_unref(b);
    lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
    c->closing = true;
    return;
  }
  write_buf(c, b, close);
}

// ---- the request ring -------------------------------------------------------------------

static void ring_push(http_conn *c, req_info ri) {
  c->ring[(c->rhead + c->rlen) % c->max_inflight] = ri;
  c->rlen++;
}

static req_info ring_front(const http_conn *c) {
  if (c->rlen) return c->ring[c->rhead];
  req_info d = {0, 1, 11};
  return d;
}

static void ring_pop(http_conn *c) {
  if (!c->rlen) return;
  c->rhead = (c->rhead + 1) % c->max_inflight;
  c->rlen--;
}

// ---- Lua values of a request ------------------------------------------------------------

// Push a header name in lower case (names are tokens: ASCII only).
static void push_lower(lua_State *L, const char *s, size_t n) {
  char tmp[256];
  if (n > sizeof tmp) {
    luaL_Buffer b;
    char *o = luaL_buffinitsize(L, &b, n);
    for (size_t i = 0; i < n; i++) o[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
    luaL_pushresultsize(&b, n);
    return;
  }
  for (size_t i = 0; i < n; i++) tmp[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
  lua_pushlstring(L, tmp, n);
}

// A head's fields as a table { lower-case name = value }; a repeated field's
// values joined with ", ".
static void push_headers(lua_State *L, const lp_http_head *hd) {
  const uint8_t *base = hd->base;
  lua_createtable(L, 0, (int)hd->nheaders);
  for (uint32_t i = 0; i < hd->nheaders; i++) {
    const lp_http_header *f = &hd->headers[i];
    push_lower(L, lp_http_at(base, f->name), f->name.len);
    lua_pushvalue(L, -1);
    if (LP_UNLIKELY(lua_rawget(L, -3) == LUA_TSTRING)) { // repeated: join
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, lp_http_at(base, f->value), f->value.len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, lp_http_at(base, f->value), f->value.len);
    }
    lua_rawset(L, -3);
  }
}

// Push the request table of p->head (may raise: run it protected):
// { method, target, path, query, version, headers = { lower-case name = value },
// keepAlive }. A repeated field's values are joined with ", " (RFC 9110 5.3).
static void build_request(lua_State *L, http_conn *c) {
  const lp_http_head *hd = &c->p.head;
  const uint8_t *base = hd->base;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->f->strings_ref);
  int S = lua_gettop(L);
  lua_createtable(L, 0, 8);
  int t = S + 1;
  lua_rawgeti(L, S, S_METHOD);
  if (hd->method >= LP_HTTP_M_GET && hd->method <= LP_HTTP_M_PATCH) lua_rawgeti(L, S, S_M_FIRST + hd->method - 1);
  else lua_pushlstring(L, lp_http_at(base, hd->method_name), hd->method_name.len);
  lua_rawset(L, t);
  const char *tg = lp_http_at(base, hd->target);
  size_t tlen = hd->target.len;
  const char *q = memchr(tg, '?', tlen);
  lua_rawgeti(L, S, S_TARGET);
  lua_pushlstring(L, tg, tlen);
  if (q) {
    lua_rawset(L, t);
    lua_rawgeti(L, S, S_PATH);
    lua_pushlstring(L, tg, (size_t)(q - tg));
    lua_rawset(L, t);
    lua_rawgeti(L, S, S_QUERY);
    lua_pushlstring(L, q + 1, tlen - (size_t)(q - tg) - 1);
    lua_rawset(L, t);
  } else {
    lua_rawgeti(L, S, S_PATH);
    lua_pushvalue(L, -2);
    lua_rawset(L, t);
    lua_rawset(L, t);
  }
  lua_rawgeti(L, S, S_VERSION);
  lua_rawgeti(L, S, hd->version == 10 ? S_V10 : S_V11);
  lua_rawset(L, t);
  lua_rawgeti(L, S, S_HEADERS);
  push_headers(L, hd);
  lua_rawset(L, t);
  lua_rawgeti(L, S, S_KEEPALIVE);
  lua_pushboolean(L, hd->keep_alive);
  lua_rawset(L, t);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->f->request_mt_ref);
  lua_setmetatable(L, t);
  lua_remove(L, S);
}

// Under pcall: [1] the connection. Pushes the request table of its head.
static int push_head(lua_State *L) {
  build_request(L, lua_touserdata(L, 1));
  return 1;
}

// Under pcall: [1] the connection. Pushes the response table of p->head:
// { status, reason, version, headers = { lower-case name = value }, keepAlive }.
static int push_response_head(lua_State *L) {
  http_conn *c = lua_touserdata(L, 1);
  const lp_http_head *hd = &c->p.head;
  const uint8_t *base = hd->base;
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, hd->status);
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, lp_http_at(base, hd->reason), hd->reason.len);
  lua_setfield(L, -2, "reason");
  lua_pushstring(L, hd->version == 10 ? "1.0" : "1.1");
  lua_setfield(L, -2, "version");
  push_headers(L, hd);
  lua_setfield(L, -2, "headers");
  lua_pushboolean(L, hd->keep_alive);
  lua_setfield(L, -2, "keepAlive");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_request_mt); // header() reads headers alike
  lua_setmetatable(L, -2);
  return 1;
}

// ---- the header timeout -------------------------------------------------------------------

// One timer serves both waits; it is set when a wait starts and no timer runs,
// and otherwise only checked when it fires (no timer moves per request or read).
static void wait_for(http_conn *c, double len) {
  if (len <= 0) return;
  c->wait_since = ev_now(chan(c)->loop->ev);
  c->wait_len = len;
  if (!ev_is_active(&c->timer)) {
    ev_timer_set(&c->timer, len, 0.);
    ev_timer_start(chan(c)->loop->ev, &c->timer);
  }
}

static void wait_for_head(http_conn *c) { wait_for(c, c->f->header_timeout); }

static void on_timer(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(revents);
  http_conn *c = lp_container_of(w, http_conn, timer);
  if (c->wait_since < 0 || gone(c) || c->closing) return;
  double left = c->wait_since + c->wait_len - ev_now(ev);
  if (left > 0.001) { // the wait began after the timer was set: sleep on (no timer moves per request)
    ev_timer_set(w, left, 0.);
    ev_timer_start(ev, w);
    return;
  }
  lp_channel *ch = lp_channel_ref(chan(c));
  lp_pipeline_enter(&ch->pipeline);
  c->wait_since = -1;
  if (c->in_body) {
    if (LP_LOG_ENABLED(LP_LOG_DEBUG))
      lp_log(LP_LOG_DEBUG, ch->id, "http: no byte of the request body for %g s: 408", c->wait_len);
    answer_plain(c, 408, NULL, true);
    flush(c);
  } else if (c->cum && lp_buf_readable(c->cum)) {
    if (LP_LOG_ENABLED(LP_LOG_DEBUG))
      lp_log(LP_LOG_DEBUG, ch->id, "http: request head not complete within %g s: 408", c->wait_len);
    answer_plain(c, 408, NULL, true);
    flush(c);
  } else {
    lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL); // idle keep-alive connection
    c->closing = true;
  }
  lp_pipeline_leave(&ch->pipeline);
  lp_channel_unref(ch);
}

// ---- the parse loop -----------------------------------------------------------------------

static void dispatch(http_conn *c);

// Fire the value on the top of L (popped) as channelRead.
static void fire_top(http_conn *c, lua_State *L) {
  lp_msg m = l_host_msg(lua_gettop(L));
  lp_ctx_fire(c->ctx, LP_EV_READ, &m);
  lua_pop(L, 1);
}

static void parse_error(http_conn *c) {
  lp_channel *ch = chan(c);
  if (LP_LOG_ENABLED(LP_LOG_DEBUG)) lp_log(LP_LOG_DEBUG, ch->id, "http: %s", c->p.error.message);
  c->wait_since = -1;
  if (c->in_body && c->rlen) c->rlen--; // the request refused in its body is not one to answer
  if (c->mode == MODE_CODEC && c->rlen) {
    // Requests before it are still to be answered (in order): after them.
    c->err_wait = true;
    c->closing = true;
    return;
  }
  if (c->p.error.code == LP_EHTTP || c->p.status != 500) {
    // Answer in order: earlier requests still unanswered (codec) come first,
    // so this only goes out now when nothing is pending.
    answer_plain(c, c->p.status, NULL, true);
  } else {
    lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
    c->closing = true;
  }
}

// The client: responses, fired as a head table, body Buffers and END. A
// response the parser refuses is an exceptionCaught with its named error
// (HttpBadResponse, HttpBodyTooLarge, ...), then the channel closes.
static void client_event(http_conn *c, int ev) {
  lua_State *L = c->h->L;
  if (ev == LP_HTTP_ERROR) {
    lp_error e = c->p.error;
    lp_msg m = lp_msg_err(&e);
    c->closing = true;
    lp_ctx_fire(c->ctx, LP_EV_EXCEPTION, &m);
    lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
  } else if (ev == LP_HTTP_HEAD) {
    int top = lua_gettop(L);
    lua_pushcfunction(L, push_response_head);
    lua_pushlightuserdata(L, c);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      lua_settop(L, top);
      lp_error e;
      lp_error_sys(&e, ENOMEM, "http client");
      lp_msg m = lp_msg_err(&e);
      c->closing = true;
      lp_ctx_fire(c->ctx, LP_EV_EXCEPTION, &m);
      lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
      return;
    }
    fire_top(c, L);
  } else if (ev == LP_HTTP_BODY) {
    lp_buf *s = lp_buf_slice(c->cum, c->p.body_index, c->p.body_len);
    if (!s) {
      lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
      c->closing = true;
      return;
    }
    lp_msg m = lp_msg_buf(s);
    lp_ctx_fire(c->ctx, LP_EV_READ, &m);
  } else if (ev == LP_HTTP_END) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_end);
    fire_top(c, L);
  }
}

static void client_parse_loop(http_conn *c, bool last) {
  if (c->parsing || c->h->closing || !lua_checkstack(c->h->L, 8)) return;
  c->parsing = true;
  while (!gone(c) && !c->closing && c->cum) {
    int ev = lp_http_parse(&c->p, c->cum);
    if (ev == LP_HTTP_NEED || ev == LP_HTTP_UPGRADE) break;
    client_event(c, ev);
    if (ev == LP_HTTP_ERROR) break;
  }
  if (last && !c->closing) { // the input ended: a body delimited by the close ends here
    lp_buf *empty = c->cum ? NULL : lp_buf_new(chan(c)->loop->pool, 0);
    lp_buf *in = c->cum ? c->cum : empty;
    if (in) {
      int ev = lp_http_finish(&c->p, in);
      if (ev == LP_HTTP_END || ev == LP_HTTP_ERROR) client_event(c, ev);
    }
    if (empty) lp_buf_unref(empty);
  }
  if (c->cum && lp_buf_readable(c->cum) == 0) {
    lp_buf_unref(c->cum);
    c->cum = NULL;
  }
  c->parsing = false;
}

// Removed (a protocol upgrade): the bytes not parsed go to the next handler,
// once no parse loop is on the stack.
static void handover(http_conn *c) {
  if (c->handed_off || c->parsing) return;
  c->handed_off = true;
  lp_buf *rest = c->cum;
  c->cum = NULL;
  if (rest && lp_buf_readable(rest) && !c->ctx->pipeline->destroyed) {
    lp_msg m = lp_msg_buf(rest);
    lp_ctx_fire(c->ctx, LP_EV_READ, &m);
    lp_ctx_fire(c->ctx, LP_EV_READ_COMPLETE, NULL);
  } else if (rest) {
    lp_buf_unref(rest);
  }
}

static void parse_loop(http_conn *c) {
  if (c->mode == MODE_CLIENT) {
    client_parse_loop(c, false);
    return;
  }
  if (c->parsing) return; // the loop on the stack goes on
  lua_State *L = c->h->L;
  if (c->h->closing || !lua_checkstack(L, 8)) return;
  c->parsing = true;
  while (c->cum && !gone(c) && !c->closing) {
    if (!c->in_body && c->rlen >= c->max_inflight) break; // answer first
    if (!c->in_body && holding(c) && c->allow == 0) break; // wait for a read() demand
    if (c->upgrade_wait) break;
    int ev = lp_http_parse(&c->p, c->cum);
    if (ev == LP_HTTP_NEED) break;
    if (ev == LP_HTTP_ERROR) {
      parse_error(c);
      break;
    }
    if (ev == LP_HTTP_UPGRADE) {
      // The codec: the answer decides (101, then the codec's removal, or HTTP on);
      // it may have been given already, from inside this loop.
      if (c->mode == MODE_CODEC && (c->rlen || c->last_status == 101)) {
        c->upgrade_wait = true;
        break;
      }
      lp_http_parser_resume(&c->p); // the server takes no upgrade: the stream goes on as HTTP
      continue;
    }
    if (ev == LP_HTTP_HEAD) {
      c->in_body = true;
      if (c->allow) c->allow--;
      c->wait_since = -1;
      const lp_http_head *hd = &c->p.head;
      req_info ri = {hd->method == LP_HTTP_M_HEAD, hd->keep_alive, (uint8_t)(hd->version == 10 ? 10 : 11)};
      ring_push(c, ri);
      if (hd->expect_continue && (hd->chunked || hd->content_length > 0)) {
        lp_buf *b = lp_buf_from(chan(c)->loop->pool, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        if (b) {
          write_buf(c, b, false);
          flush(c); // the client waits for it before sending the body
        }
      }
      if (c->mode == MODE_SERVER && !hd->chunked && hd->content_length <= 0) {
        // No body: dispatched now, from the head in place (its END follows at once).
        c->early = true;
        dispatch(c);
        continue;
      }
      if (c->mode != MODE_CLIENT) wait_for(c, c->f->body_timeout);
      int top = lua_gettop(L);
      lua_pushcfunction(L, push_head);
      lua_pushlightuserdata(L, c);
      if (lua_pcall(L, 1, 1, 0) != LUA_OK) { // out of memory
        lp_log(LP_LOG_ERROR, chan(c)->id, "http: %s", lua_tostring(L, -1));
        lua_settop(L, top);
        lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
        c->closing = true;
        break;
      }
      if (c->mode == MODE_CODEC) {
        fire_top(c, L);
      } else {
        c->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      }
      continue;
    }
    if (ev == LP_HTTP_BODY) {
      lp_buf *in = c->cum;
      if (c->wait_since >= 0) c->wait_since = ev_now(chan(c)->loop->ev); // bytes came: the wait starts over
      if (c->mode == MODE_CODEC) {
        lp_buf *s = lp_buf_slice(in, c->p.body_index, c->p.body_len);
        if (!s) goto enomem;
        lp_msg m = lp_msg_buf(s);
        lp_ctx_fire(c->ctx, LP_EV_READ, &m);
      } else {
        if (!c->body && !(c->body = lp_buf_new(chan(c)->loop->pool, c->p.body_len))) goto enomem;
        if (lp_buf_write(c->body, in->data + c->p.body_index, c->p.body_len) != 0) goto enomem;
      }
      continue;
    }
    // LP_HTTP_END
    c->in_body = false;
    c->wait_since = -1;
    if (c->mode == MODE_CODEC) {
      lua_rawgetp(L, LUA_REGISTRYINDEX, &key_end);
      fire_top(c, L);
    } else if (c->early) {
      c->early = false;
    } else {
      dispatch(c);
    }
    if (c->rlen == 0 && !c->closing) wait_for_head(c);
  }
  if (c->cum && lp_buf_readable(c->cum) == 0) {
    lp_buf_unref(c->cum);
    c->cum = NULL;
  }
  c->parsing = false;
  if (c->ctx->removed) handover(c);
  return;
enomem:
  lp_log(LP_LOG_ERROR, chan(c)->id, "http: out of memory");
  lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
  c->closing = true;
  c->parsing = false;
}

static void parse_task(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  http_conn *c = lp_container_of(t, http_conn, task);
  lp_ctx *ctx = c->ctx;
  lp_channel *ch = lp_ctx_channel(ctx);
  c->task_queued = false;
  if (!gone(c)) {
    lp_pipeline_enter(&ch->pipeline);
    parse_loop(c);
    flush(c);
    if (holding(c) && (c->allow || c->in_body) && !gone(c) && !c->closing) lp_ctx_op(ctx, LP_OP_READ, NULL, NULL);
    if (c->paused && !gone(c) && !(c->rlen && c->cum && lp_buf_readable(c->cum) > HOLD_MAX)) {
      c->paused = false;
      lp_channel_set_auto_read(ch, true);
    }
    lp_pipeline_leave(&ch->pipeline);
  }
  lp_ctx_unref(ctx);
  lp_channel_unref(ch);
}

static void schedule_parse(http_conn *c);

// A response finished. Inside the parse loop (an answer from the handler's
// own call) the loop goes on by itself; otherwise a task parses on.
static void answered(http_conn *c, bool keep_alive) {
  ring_pop(c);
  if (!keep_alive) c->closing = true;
  if (c->parsing || c->closing || gone(c)) return;
  if (!c->in_read) flush(c);
  if (c->rlen == 0) wait_for_head(c);
  if (c->cum) schedule_parse(c);
}

static void schedule_parse(http_conn *c) {
  if (c->task_queued) return;
  c->task_queued = true;
  c->ctx->refs++; // both stay alive until the task ran
  lp_channel_ref(chan(c));
  c->task.run = parse_task;
  lp_loop_defer(chan(c)->loop, &c->task);
}

// ---- responses from Lua values ----------------------------------------------------------------

typedef struct {
  lp_http_field f[FIELDS_MAX];
  size_t n;
  bool close, date;
} fields;

// Add one field from Lua strings at stack indexes ni, vi (raises on bad ones).
static void add_field(lua_State *L, fields *fs, int ni, int vi, const char *fn) {
  size_t nl, vl;
  const char *name = lua_tolstring(L, ni, &nl);
  if (lua_type(L, vi) == LUA_TNUMBER) lua_tolstring(L, vi, NULL); // converted in place: keys are strings, values may be numbers
  const char *value = lua_tolstring(L, vi, &vl);
  if (!name || !value) luaL_error(L, "%s: header names and values must be strings", fn);
  if (lp_http_field_check(name, nl, value, vl) != 0)
    luaL_error(L, "%s: bad header '%s' (names are tokens; values hold no CR, LF or NUL)", fn, name);
  if (lp_http_name_is(name, nl, "content-length") || lp_http_name_is(name, nl, "transfer-encoding"))
    luaL_error(L, "%s: '%s' is set by the server from the body", fn, name);
  if (lp_http_name_is(name, nl, "connection")) {
    if (vl == 5 && lp_http_name_is(value, vl, "close")) fs->close = true;
    // The encoder writes close and keep-alive itself; other options (Upgrade) pass.
    if (fs->close || (vl == 10 && lp_http_name_is(value, vl, "keep-alive"))) return;
  }
  if (lp_http_name_is(name, nl, "date")) fs->date = false;
  if (fs->n == FIELDS_MAX) luaL_error(L, "%s: more than %d header fields", fn, FIELDS_MAX);
  lp_http_field *f = &fs->f[fs->n++];
  f->name = name, f->name_len = nl, f->value = value, f->value_len = vl;
}

// The fields of the table at t: { name = value or { value, ... } }. The
// strings stay referenced by the table, which stays on the stack.
static void read_fields(lua_State *L, int t, fields *fs, const char *fn) {
  t = lua_absindex(L, t);
  if (lua_isnoneornil(L, t)) return;
  if (!lua_istable(L, t)) luaL_error(L, "%s: headers must be a table", fn);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "%s: header names must be strings", fn);
    if (lua_istable(L, -1)) {
      for (lua_Integer i = 1;; i++) {
        if (lua_rawgeti(L, -1, i) == LUA_TNIL) {
          lua_pop(L, 1);
          break;
        }
        add_field(L, fs, -3, -1, fn);
        lua_pop(L, 1); // the value stays referenced by its table
      }
    } else {
      add_field(L, fs, -2, -1, fn);
    }
    lua_pop(L, 1);
  }
}

// Body at index i: a string or a live Buffer (not handed off here). Returns its bytes.
static const char *body_bytes(lua_State *L, int i, size_t *len, const char *fn) {
  if (lua_isnoneornil(L, i)) {
    *len = 0;
    return "";
  }
  if (lua_type(L, i) == LUA_TSTRING) return lua_tolstring(L, i, len);
  lp_buf *b = l_buffer_test(L, i);
  if (!b && l_testudata(L, i, &l_key_file)) luaL_error(L, "%s: a lupine.File body goes with res:send only", fn);
  if (!b) luaL_error(L, "%s: the body must be a string or a lupine.Buffer, not a %s", fn, luaL_typename(L, i));
  *len = lp_buf_readable(b);
  return (const char *)lp_buf_rptr(b);
}

// Encode head (+ body when body != NULL) into one buffer; big bodies go as a second buffer. Never raises.
static int emit(http_conn *c, lp_http_response *r, const char *body, size_t blen, bool close, lp_future *promise) {
  lp_pool *pool = chan(c)->loop->pool;
  r->now = ev_now(chan(c)->loop->ev); // Date per loop second: the loop's clock, no clock call
  bool copy = body && blen <= COPY_BODY_MAX;
  lp_buf *b = lp_buf_new(pool, 160 + (copy ? blen : 0));
  if (!b) return -ENOMEM;
  if (lp_http_encode_head(b, r) != 0 || (copy && blen && lp_buf_write(b, body, blen) != 0)) {
    lp_buf_unref(b);
    return -ENOMEM;
  }
  if (body && !copy) {
    lp_buf *bb = lp_buf_from(pool, body, blen);
    if (!bb) {
      lp_buf_unref(b);
      return -ENOMEM;
    }
    write_buf(c, b, false);
    write_buf_p(c, bb, close, promise);
  } else {
    write_buf_p(c, b, close, promise);
  }
  return 0;
}

static bool bodiless_status(int s) { return s < 200 || s == 204 || s == 304; }

// ---- lupine.http.Response -------------------------------------------------------------------

// The response, raising when it is finished; r->c is NULL when its
// connection went (sending then does nothing: the client is gone).
static http_res *check_res(lua_State *L, const char *fn) {
  http_res *r = l_checkudata(L, 1, &key_response, "lupine.http.Response");
  if (r->done) luaL_error(L, "res:%s: the response is already finished", fn);
  return r;
}

static int res_gc(lua_State *L) {
  http_res *r = lua_touserdata(L, 1);
  if (r->c && r->c->res == r) r->c->res = NULL;
  r->c = NULL;
  if (r->fields_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r->fields_ref);
  r->fields_ref = LUA_NOREF;
  return 0;
}

// The response is over (sent: done), or its connection went.
static void res_done(http_res *r, bool done) {
  http_conn *c = r->c;
  if (c && c->res == r) c->res = NULL;
  r->c = NULL;
  r->done = r->done || done;
  // Its fields table goes with the response (its __gc does it when the state is closing).
  if (c && !c->h->closing && r->fields_ref != LUA_NOREF) {
    luaL_unref(c->h->L, LUA_REGISTRYINDEX, r->fields_ref);
    r->fields_ref = LUA_NOREF;
  }
}

// res:status([code]): set (returns res) or get.
static int res_status(lua_State *L) {
  http_res *r = l_checkudata(L, 1, &key_response, "lupine.http.Response");
  if (lua_isnoneornil(L, 2)) {
    lua_pushinteger(L, r->status);
    return 1;
  }
  lua_Integer s = l_checkinteger(L, 2);
  l_argcheck(L, s >= 100 && s <= 999, 2, "status must be 100..999");
  check_res(L, "status");
  r->status = (int)s;
  lua_settop(L, 1);
  return 1;
}

// res:header(name [, value]): set a field (value nil: remove it) and return
// res; with no value given, return what is set.
static int res_header(lua_State *L) {
  http_res *r = check_res(L, "header");
  l_checkstring(L, 2);
  if (r->fields_ref == LUA_NOREF) {
    lua_newtable(L);
    r->fields_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->fields_ref);
  int t = lua_gettop(L);
  push_lower(L, lua_tostring(L, 2), lua_rawlen(L, 2));
  if (lua_isnone(L, 3)) {
    lua_rawget(L, t);
    return 1;
  }
  if (!lua_isnil(L, 3)) {
    fields probe = {.n = 0, .date = true};
    if (lua_istable(L, 3)) { // a list of values, each checked
      for (lua_Integer i = 1; lua_rawgeti(L, 3, i) != LUA_TNIL; i++) {
        probe.n = 0;
        add_field(L, &probe, 2, -1, "res:header");
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    } else {
      add_field(L, &probe, 2, 3, "res:header");
    }
  }
  lua_pushvalue(L, 3);
  lua_rawset(L, t);
  lua_settop(L, 1);
  return 1;
}

static void res_fields(lua_State *L, http_res *r, fields *fs, int extra, const char *fn) {
  fs->n = 0;
  fs->close = false;
  fs->date = true;
  if (r->fields_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fields_ref); // stays on the stack: the strings live in it
    read_fields(L, -1, fs, fn);
  }
  if (extra) read_fields(L, extra, fs, fn);
}

// The connection that r answers, entered; NULL when it went.
static http_conn *res_enter(lua_State *L, http_res *r, l_entry *e) {
  http_conn *c = r->c;
  l_enter(e, L, c->h, &chan(c)->pipeline, 0);
  return c;
}

// res:send([status,] [body [, headers]]): the whole response at once.
static int res_send(lua_State *L) {
  http_res *r = check_res(L, "send");
  if (!r->c) { // the connection went: nothing to send it to
    r->done = r->done || true;
    lua_settop(L, 1);
    return 1;
  }
  if (r->started) return luaL_error(L, "res:send: the response is streaming: use res:write and res:finish");
  int bi = 2;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer s = l_checkinteger(L, 2);
    l_argcheck(L, s >= 100 && s <= 999, 2, "status must be 100..999");
    r->status = (int)s;
    bi = 3;
  }
  size_t blen;
  // A lupine.File body: the head here, then the region itself (sendfile),
  // with its length as Content-Length.
  lua_Integer flen = l_file_length(L, bi);
  bool file = flen >= 0;
  const char *body = file ? NULL : body_bytes(L, bi, &blen, "res:send");
  if (file) blen = (size_t)flen;
  fields fs;
  res_fields(L, r, &fs, lua_isnoneornil(L, bi + 1) ? 0 : bi + 1, "res:send");
  http_conn *c = r->c;
  bool keep = r->info.keep_alive && !fs.close && !c->closing;
  bool nobody = bodiless_status(r->status);
  lp_http_response resp = {.version = r->info.version, .status = r->status, .fields = fs.f, .nfields = fs.n,
                           .content_length = nobody ? -1 : (int64_t)blen, .no_length = nobody, .keep_alive = keep,
                           .date = fs.date};
  bool with_body = !r->info.head && !nobody;
  l_entry e;
  int slot = l_enter(&e, L, c->h, &chan(c)->pipeline, file ? bi : 0); // the File lent when L is a coroutine
  res_done(r, true);
  int rc = 0;
  if (gone(c)) {
  } else if (file && with_body) { // the head, then the file; closing (when not kept) after the file
    rc = emit(c, &resp, NULL, 0, false, NULL);
    lp_msg fm = l_host_msg(slot);
    if (!rc) write_msg_p(c, &fm, !keep, NULL);
  } else {
    rc = emit(c, &resp, with_body ? body : NULL, with_body ? blen : 0, !keep, NULL);
  }
  if (rc != 0) {
    lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
    c->closing = true;
  }
  if (!gone(c)) answered(c, keep);
  l_leave(&e);
  if (file) { // not handed off (HEAD, 204, 304, the client gone): its descriptor goes now, not at the next GC
    lua_getfield(L, bi, "close");
    lua_pushvalue(L, bi);
    lua_call(L, 1, 0);
  }
  lua_settop(L, 1);
  return 1;
}

// Write the head of a streamed response (chunked for HTTP/1.1, until close for 1.0).
static void start_stream(lua_State *L, http_res *r) {
  fields fs;
  res_fields(L, r, &fs, 0, "res:write");
  http_conn *c = r->c;
  bool keep = r->info.keep_alive && !fs.close && r->info.version >= 11 && !c->closing;
  r->chunked = r->info.version >= 11;
  bool nobody = bodiless_status(r->status);
  lp_http_response resp = {.version = r->info.version, .status = r->status, .fields = fs.f, .nfields = fs.n,
                           .content_length = -1, .no_length = nobody, .keep_alive = keep, .date = fs.date};
  if (!keep) r->info.keep_alive = 0;
  r->started = true;
  l_entry e;
  res_enter(L, r, &e);
  if (!gone(c) && emit(c, &resp, NULL, 0, false, NULL) != 0) {
    lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
    c->closing = true;
  }
  l_leave(&e);
}

static void write_chunk(http_conn *c, http_res *r, const char *p, size_t n, bool last) {
  if (gone(c)) return;
  if (r->info.head || bodiless_status(r->status)) {
    if (last) write_buf(c, lp_buf_new(chan(c)->loop->pool, 0), !r->info.keep_alive);
    return;
  }
  lp_buf *b = lp_buf_new(chan(c)->loop->pool, n + 32);
  int rc = b ? 0 : -ENOMEM;
  if (!rc && n) rc = r->chunked ? lp_http_encode_chunk(b, p, n) : lp_buf_write(b, p, n);
  if (!rc && last && r->chunked) rc = lp_http_encode_last_chunk(b);
  if (rc) {
    if (b) lp_buf_unref(b);
    lp_ctx_op(c->ctx, LP_OP_CLOSE, NULL, NULL);
    c->closing = true;
    return;
  }
  write_buf(c, b, last && !r->info.keep_alive);
}

// res:write(chunk): stream a body chunk (the head goes first, on the first call).
// The start of res:write and res:finish: the chunk (argument 2) and the head,
// sent first. NULL when there is nothing to send it to, with the method's
// results in *ret (the connection went: res itself; it went while the head
// was written: none). finish marks a response whose connection went done.
static http_conn *stream_chunk(lua_State *L, http_res *r, bool last, const char **p, size_t *n, int *ret) {
  if (!r->c) {
    if (last) r->done = true;
    lua_settop(L, 1);
    *ret = 1;
    return NULL;
  }
  *p = body_bytes(L, 2, n, last ? "res:finish" : "res:write");
  if (!r->started) start_stream(L, r);
  *ret = 0;
  return r->c;
}

static int res_write(lua_State *L) {
  http_res *r = check_res(L, "write");
  const char *p;
  size_t n;
  int ret;
  http_conn *c = stream_chunk(L, r, false, &p, &n, &ret);
  if (!c) return ret;
  l_entry e;
  res_enter(L, r, &e);
  if (n) write_chunk(c, r, p, n, false);
  if (!c->in_read && !gone(c)) flush(c);
  l_leave(&e);
  lua_settop(L, 1);
  return 1;
}

// res:finish([chunk]): the last chunk (if any) and the end of the response.
static int res_finish(lua_State *L) {
  http_res *r = check_res(L, "finish");
  const char *p;
  size_t n;
  int ret;
  http_conn *c = stream_chunk(L, r, true, &p, &n, &ret);
  if (!c) return ret;
  bool keep = r->info.keep_alive && !c->closing;
  l_entry e;
  res_enter(L, r, &e);
  res_done(r, true);
  write_chunk(c, r, p, n, true);
  if (!gone(c)) answered(c, keep);
  l_leave(&e);
  lua_settop(L, 1);
  return 1;
}

static int res_tostring(lua_State *L) {
  http_res *r = l_checkudata(L, 1, &key_response, "lupine.http.Response");
  lua_pushfstring(L, "lupine.http.Response %d%s", r->status, r->c ? "" : " finished");
  return 1;
}

static int res_finished(lua_State *L) {
  http_res *r = l_checkudata(L, 1, &key_response, "lupine.http.Response");
  lua_pushboolean(L, r->c == NULL);
  return 1;
}

// ---- dispatch (server) ----------------------------------------------------------------------

// Under pcall: [1] the connection. Makes req (from the head, or the one
// gathered with its body) and res, then calls handler(req, res): one
// protected call per request, whatever fails in it.
static int dispatch_call(lua_State *L) {
  http_conn *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->f->handler_ref); // 2
  if (c->req_ref != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, c->req_ref);
  else build_request(L, c); // 3
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->f->strings_ref);
  lua_rawgeti(L, -1, S_BODY);
  if (c->body) lua_pushlstring(L, (const char *)lp_buf_rptr(c->body), lp_buf_readable(c->body));
  else lua_rawgeti(L, -2, S_EMPTY);
  lua_rawset(L, 3);
  lua_pop(L, 1);
  http_res *r = l_newudata(L, sizeof *r, 0, &key_response); // 4
  r->status = 200;
  r->fields_ref = LUA_NOREF;
  r->c = c;
  r->info = ring_front(c);
  c->res = r;
  c->calling = true;
  lua_call(L, 2, 0);
  return 0;
}

static void dispatch(http_conn *c) {
  lua_State *L = c->h->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, l_traceback);
  lua_pushcfunction(L, dispatch_call);
  lua_pushlightuserdata(L, c);
  c->calling = false;
  int rc = lua_pcall(L, 1, 0, top + 1);
  if (c->req_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, c->req_ref);
    c->req_ref = LUA_NOREF;
  }
  if (c->body) {
    lp_buf_unref(c->body);
    c->body = NULL;
  }
  if (LP_UNLIKELY(rc != LUA_OK)) {
    char text[LP_ERROR_MESSAGE_MAX * 4];
    http_res *r = c->res;
    if (!c->calling) { // out of memory before the handler ran
      lp_log(LP_LOG_ERROR, chan(c)->id, "http: %s", l_tostring(L, -1, text, sizeof text));
      if (r) res_done(r, true);
      req_info ri = ring_front(c);
      if (!gone(c)) {
        answer_plain(c, 500, &ri, !ri.keep_alive);
        answered(c, ri.keep_alive);
      }
    } else {
      lp_log(LP_LOG_ERROR, chan(c)->id, "http handler raised: %s", l_tostring(L, -1, text, sizeof text));
      if (r) { // not finished
        bool started = r->started;
        req_info ri = r->info;
        res_done(r, true);
        if (gone(c)) {
        } else if (!started) {
          answer_plain(c, 500, &ri, !ri.keep_alive);
          answered(c, ri.keep_alive);
        } else {
          close_after_writes(c);
        }
      }
    }
  }
  lua_settop(L, top);
}

// ---- the codec's outbound side ----------------------------------------------------------------

// A response went through the codec: a refused request waiting behind the
// answered ones is answered now; otherwise the next head is waited for.
static void codec_answered(http_conn *c) {
  if (c->rlen) return;
  if (c->err_wait) {
    c->err_wait = false;
    answer_plain(c, c->p.status, NULL, true);
    flush(c);
  } else if (!c->closing) {
    wait_for_head(c);
  }
}

// Under pcall: [1] conn, [2] the response table, [3] the write's promise
// (light userdata, may be NULL); returns nothing. Encodes and writes.
static int codec_encode(lua_State *L) {
  http_conn *c = lua_touserdata(L, 1);
  lp_future *promise = lua_touserdata(L, 3);
  const char *fn = "http.serverCodec";
  lua_getfield(L, 2, "status");
  lua_Integer s = lua_isnil(L, -1) ? 200 : lua_tointeger(L, -1);
  if (s < 100 || s > 999) return luaL_error(L, "%s: a response's status must be 100..999", fn);
  fields fs = {.n = 0, .date = true};
  lua_getfield(L, 2, "headers");
  read_fields(L, -1, &fs, fn);
  req_info ri = ring_front(c);
  bool keep = ri.keep_alive && !fs.close;
  bool nobody = bodiless_status((int)s);
  int stream = lua_getfield(L, 2, "stream");
  lua_pop(L, 1);
  if (stream != LUA_TNIL && stream != LUA_TBOOLEAN) return luaL_error(L, "%s: 'stream' must be a boolean", fn);
  lua_getfield(L, 2, "stream");
  bool streamed = lua_toboolean(L, -1);
  lua_getfield(L, 2, "body");
  size_t blen;
  const char *body = body_bytes(L, -1, &blen, fn);
  if (streamed && ri.version < 11) keep = false;
  if (s == 101) keep = true; // the connection goes on, in the new protocol
  lp_http_response resp = {.version = ri.version, .status = (int)s, .fields = fs.f, .nfields = fs.n,
                           .content_length = (nobody || streamed) ? -1 : (int64_t)blen, .no_length = nobody,
                           .keep_alive = keep, .date = fs.date};
  bool with_body = !ri.head && !nobody && !streamed;
  if (streamed) {
    c->streaming = true;
    c->stream_body = !ri.head && !nobody;
    c->ring[c->rhead].keep_alive = keep; // for the end of the stream
  }
  // From here nothing raises: the promise is the write's.
  lua_pushboolean(L, 1);
  lua_replace(L, 3);
  if (emit(c, &resp, with_body ? body : NULL, with_body ? blen : 0, !streamed && !keep, promise) != 0) {
    lp_error e;
    lp_error_sys(&e, ENOMEM, "encoding a response");
    lp_channel_fail_promise(chan(c), promise, &e);
    return 0;
  }
  c->last_status = (int)s;
  if (c->upgrade_wait && s != 101 && c->rlen <= 1) { // the upgrade is declined: HTTP goes on
    c->upgrade_wait = false;
    lp_http_parser_resume(&c->p);
  }
  if (!streamed) {
    ring_pop(c);
    if (!keep) c->closing = true;
    codec_answered(c);
  }
  return 0;
}

static void codec_outbound(lp_ctx *ctx, int op, lp_msg *m, lp_future *promise) {
  http_conn *c = ctx->state;
  if (op == LP_OP_READ && c->cum && lp_buf_readable(c->cum) && !c->closing) {
    if (holding(c)) { // served from the bytes held, in a task, not from the socket
      c->allow++;
      schedule_parse(c);
      return;
    }
    schedule_parse(c); // reading is on again: what is held goes first
  }
  if (op != LP_OP_WRITE || m->kind != LP_MSG_HOST || c->h->closing) {
    if (op == LP_OP_FLUSH) c->dirty = false;
    lp_ctx_op(ctx, op, m, promise);
    return;
  }
  lua_State *L = c->h->L;
  int idx = m->host;
  if (c->streaming) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_end);
    bool end = lua_rawequal(L, -1, idx);
    lua_pop(L, 1);
    size_t n = 0;
    const char *p = NULL;
    if (!end) {
      lp_buf *bb = l_buffer_test(L, idx);
      if (lua_type(L, idx) == LUA_TSTRING) p = lua_tolstring(L, idx, &n);
      else if (bb) p = (const char *)lp_buf_rptr(bb), n = lp_buf_readable(bb);
      else { // not a chunk: pass it on
        lp_ctx_op(ctx, op, m, promise);
        return;
      }
    }
    req_info ri = ring_front(c);
    lp_buf *b = lp_buf_new(chan(c)->loop->pool, n + 32);
    int rc = b ? 0 : -ENOMEM;
    if (!rc && c->stream_body && n) rc = ri.version >= 11 ? lp_http_encode_chunk(b, p, n) : lp_buf_write(b, p, n);
    if (!rc && end && c->stream_body && ri.version >= 11) rc = lp_http_encode_last_chunk(b);
    if (rc) {
      if (b) lp_buf_unref(b);
      lp_error e;
      lp_error_sys(&e, ENOMEM, "encoding a chunk");
      lp_channel_fail_promise(chan(c), promise, &e);
      return;
    }
    if (end) {
      c->streaming = false;
      ring_pop(c);
      if (ri.keep_alive) codec_answered(c);
      if (!ri.keep_alive) {
        c->closing = true;
        if (promise) {
          lp_msg bm = lp_msg_buf(b);
          lp_future_add_listener(promise, close_listener, lp_channel_ref(chan(c)));
          lp_ctx_op(ctx, LP_OP_WRITE, &bm, promise);
          return;
        }
        write_buf(c, b, true);
        return;
      }
    }
    lp_msg bm = lp_msg_buf(b);
    lp_ctx_op(ctx, LP_OP_WRITE, &bm, promise);
    return;
  }
  if (!lua_istable(L, idx)) { // bytes and other values pass on
    lp_ctx_op(ctx, op, m, promise);
    return;
  }
  int top = lua_gettop(L);
  lua_pushcfunction(L, l_traceback);
  lua_pushcfunction(L, codec_encode);
  lua_pushlightuserdata(L, c);
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, promise);
  if (lua_pcall(L, 3, 0, top + 1) != LUA_OK) { // raised before it wrote: the promise is still ours
    lp_error e;
    char text[LP_ERROR_MESSAGE_MAX];
    lp_error_named(&e, LP_EHOST, "%s", l_tostring(L, -1, text, sizeof text));
    lp_channel_fail_promise(chan(c), promise, &e);
  }
  lua_settop(L, top);
  if (!c->parsing && !c->closing && c->cum && c->rlen < c->max_inflight) schedule_parse(c); // parsing waited for answers
}

// ---- the client's outbound side: requests ------------------------------------------------------

// Under pcall: [1] conn, [2] the request table, [3] the promise (light
// userdata, may be NULL). { method = "GET", target = "/", headers = {...},
// body = string or Buffer or nil }: Host comes from headers (required), a
// body gets Content-Length.
static int client_encode(lua_State *L) {
  http_conn *c = lua_touserdata(L, 1);
  lp_future *promise = lua_touserdata(L, 3);
  const char *fn = "http.clientCodec";
  lua_getfield(L, 2, "method");
  size_t ml;
  const char *method = lua_tolstring(L, -1, &ml);
  if (!method || ml == 0 || lp_http_field_check(method, ml, "", 0) != 0)
    return luaL_error(L, "%s: a request's method must be a token", fn);
  lua_getfield(L, 2, "target");
  size_t tl;
  const char *target = lua_tolstring(L, -1, &tl);
  if (!target || tl == 0) return luaL_error(L, "%s: a request's target must be a string", fn);
  for (size_t i = 0; i < tl; i++)
    if ((unsigned char)target[i] <= ' ' || target[i] == 0x7f)
      return luaL_error(L, "%s: a request's target must hold no space or control character", fn);
  fields fs = {.n = 0, .date = true};
  lua_getfield(L, 2, "headers");
  read_fields(L, -1, &fs, fn);
  lua_getfield(L, 2, "body");
  size_t blen;
  bool has_body = !lua_isnil(L, -1);
  const char *body = body_bytes(L, -1, &blen, fn);
  lp_buf *b = lp_buf_new(chan(c)->loop->pool, ml + tl + 64 + blen);
  int rc = b ? 0 : -ENOMEM;
  if (!rc) rc = lp_buf_write(b, method, ml);
  if (!rc) rc = lp_buf_write(b, " ", 1);
  if (!rc) rc = lp_buf_write(b, target, tl);
  if (!rc) rc = lp_buf_write(b, " HTTP/1.1\r\n", 11);
  for (size_t i = 0; !rc && i < fs.n; i++) {
    rc = lp_buf_write(b, fs.f[i].name, fs.f[i].name_len);
    if (!rc) rc = lp_buf_write(b, ": ", 2);
    if (!rc) rc = lp_buf_write(b, fs.f[i].value, fs.f[i].value_len);
    if (!rc) rc = lp_buf_write(b, "\r\n", 2);
  }
  if (!rc && fs.close) rc = lp_buf_write(b, "Connection: close\r\n", 19);
  // Content-Length with a body, and for the methods whose body has a meaning (RFC 9110 8.6).
  bool wants = (ml == 4 && memcmp(method, "POST", 4) == 0) || (ml == 3 && memcmp(method, "PUT", 3) == 0) ||
               (ml == 5 && memcmp(method, "PATCH", 5) == 0);
  if (!rc && (has_body || wants)) {
    rc = lp_buf_write(b, "Content-Length: ", 16);
    if (!rc) rc = lp_http_write_u64(b, blen);
    if (!rc) rc = lp_buf_write(b, "\r\n", 2);
  }
  if (!rc) rc = lp_buf_write(b, "\r\n", 2);
  if (!rc && blen) rc = lp_buf_write(b, body, blen);
  if (rc) {
    if (b) lp_buf_unref(b);
    return luaL_error(L, "%s: out of memory", fn);
  }
  // From here nothing raises: the promise is the write's.
  lua_pushboolean(L, 1);
  lua_replace(L, 3);
  int m = LP_HTTP_M_OTHER;
  if (ml == 4 && memcmp(method, "HEAD", 4) == 0) m = LP_HTTP_M_HEAD;
  else if (ml == 7 && memcmp(method, "CONNECT", 7) == 0) m = LP_HTTP_M_CONNECT;
  else m = LP_HTTP_M_GET;
  lp_http_parser_set_request_method(&c->p, m);
  lp_msg bm = lp_msg_buf(b);
  lp_ctx_op(c->ctx, LP_OP_WRITE, &bm, promise);
  return 0;
}

static void client_outbound(lp_ctx *ctx, int op, lp_msg *m, lp_future *promise) {
  http_conn *c = ctx->state;
  if (op != LP_OP_WRITE || m->kind != LP_MSG_HOST || c->h->closing || !lua_istable(c->h->L, m->host)) {
    lp_ctx_op(ctx, op, m, promise);
    return;
  }
  lua_State *L = c->h->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, l_traceback);
  lua_pushcfunction(L, client_encode);
  lua_pushlightuserdata(L, c);
  lua_pushvalue(L, m->host);
  lua_pushlightuserdata(L, promise);
  if (lua_pcall(L, 3, 0, top + 1) != LUA_OK) {
    lp_error e;
    char text[LP_ERROR_MESSAGE_MAX];
    lp_error_named(&e, LP_EHOST, "%s", l_tostring(L, -1, text, sizeof text));
    lp_channel_fail_promise(chan(c), promise, &e);
  }
  lua_settop(L, top);
}

// ---- handler ops --------------------------------------------------------------------------------

static void conn_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  http_conn *c = ctx->state;
  switch (ev) {
  case LP_EV_READ: {
    lp_loop *loop = chan(c)->loop;
    if (m->kind == LP_MSG_HOST) {
      lp_error e;
      if (!loop->host_ops || !loop->host_ops->to_buf || loop->host_ops->to_buf(chan(c), m, &e) != 0) {
        lp_ctx_fire(ctx, ev, m);
        return;
      }
    }
    if (m->kind != LP_MSG_BUF) {
      lp_ctx_fire(ctx, ev, m);
      return;
    }
    lp_buf *in = m->u.buf;
    m->kind = LP_MSG_NONE;
    if (c->closing) { // after a response that ended the connection, input is dropped
      lp_buf_unref(in);
      return;
    }
    c->in_read = true;
    if (holding(c) && !c->in_body && c->allow == 0) c->allow = 1; // these bytes came for a read() demand
    if (lp_cumulate(loop->pool, &c->cum, in) != 0) {
      lp_ctx_op(ctx, LP_OP_CLOSE, NULL, NULL);
      c->closing = true;
      return;
    }
    parse_loop(c);
    if (c->mode == MODE_SERVER && c->rlen && !c->paused && c->cum && lp_buf_readable(c->cum) > HOLD_MAX &&
        !gone(c)) {
      // Pipelined input behind an answer not yet given: stop reading until it is.
      c->paused = true;
      lp_channel_set_auto_read(chan(c), false);
    }
    return;
  }
  case LP_EV_READ_COMPLETE:
    c->in_read = false;
    flush(c);
    // A demand not yet served by a whole request: read on, or it never would be.
    if (holding(c) && (c->allow || c->in_body) && !gone(c) && !c->closing) lp_ctx_op(ctx, LP_OP_READ, NULL, NULL);
    if (c->mode != MODE_SERVER) lp_ctx_fire(ctx, ev, m);
    return;
  case LP_EV_INACTIVE:
    if (c->mode == MODE_CLIENT && !c->ctx->removed && !c->closing) client_parse_loop(c, true);
    if (c->res) res_done(c->res, false);
    ev_timer_stop(chan(c)->loop->ev, &c->timer);
    break;
  case LP_EV_ACTIVE:
    if (c->mode != MODE_CLIENT) wait_for_head(c);
    break;
  default: break;
  }
  lp_ctx_fire(ctx, ev, m);
}

static void conn_added(lp_ctx *ctx) {
  http_conn *c = ctx->state;
  if (c->mode != MODE_CLIENT && lp_channel_is_active(chan(c))) wait_for_head(c);
}

static void conn_removed(lp_ctx *ctx) {
  http_conn *c = ctx->state;
  ev_timer_stop(chan(c)->loop->ev, &c->timer);
  if (c->res) res_done(c->res, false);
  if (c->mode == MODE_CODEC) handover(c);
}

static void conn_free(lp_ctx *ctx) {
  http_conn *c = ctx->state;
  if (!c) return;
  ev_timer_stop(chan(c)->loop->ev, &c->timer);
  if (c->res) {
    c->res->c = NULL;
    c->res = NULL;
  }
  if (c->req_ref != LUA_NOREF && !c->h->closing) luaL_unref(c->h->L, LUA_REGISTRYINDEX, c->req_ref);
  if (c->cum) lp_buf_unref(c->cum);
  if (c->body) lp_buf_unref(c->body);
  lp_http_parser_free(&c->p);
  if (c->ring != &c->one) free(c->ring);
  free(c);
  ctx->state = NULL;
}

static const lp_handler_ops codec_ops = {
    "httpServerCodec",
    LP_MASK(LP_EV_READ) | LP_MASK(LP_EV_READ_COMPLETE) | LP_MASK(LP_EV_INACTIVE) | LP_MASK(LP_EV_ACTIVE) |
        LP_MASK(LP_OP_WRITE) | LP_MASK(LP_OP_FLUSH) | LP_MASK(LP_OP_READ),
    conn_added, conn_removed, conn_inbound, codec_outbound, conn_free,
};

static const lp_handler_ops server_ops = {
    "httpServer",
    LP_MASK(LP_EV_READ) | LP_MASK(LP_EV_READ_COMPLETE) | LP_MASK(LP_EV_INACTIVE) | LP_MASK(LP_EV_ACTIVE),
    conn_added, conn_removed, conn_inbound, NULL, conn_free,
};

static const lp_handler_ops client_ops = {
    "httpClientCodec",
    LP_MASK(LP_EV_READ) | LP_MASK(LP_EV_READ_COMPLETE) | LP_MASK(LP_EV_INACTIVE) | LP_MASK(LP_OP_WRITE),
    NULL, conn_removed, conn_inbound, client_outbound, conn_free,
};

static lp_ctx *conn_make(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  http_factory *f = (http_factory *)self;
  http_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  const lp_handler_ops *ops = f->mode == MODE_CODEC ? &codec_ops : f->mode == MODE_SERVER ? &server_ops : &client_ops;
  lp_ctx *ctx = lp_ctx_new(p, ops, c, name);
  if (!ctx) {
    free(c);
    return NULL;
  }
  c->ctx = ctx;
  c->h = l_host_get(L);
  c->f = f;
  c->mode = f->mode;
  c->max_inflight = f->mode == MODE_CODEC ? RING_MAX : 1;
  c->ring = &c->one;
  if (f->mode == MODE_CODEC && !(c->ring = malloc(RING_MAX * sizeof *c->ring))) {
    c->ring = &c->one;
    c->max_inflight = 1;
  }
  c->req_ref = LUA_NOREF;
  c->wait_since = -1;
  ev_init(&c->timer, on_timer);
  lp_http_parser_init(&c->p, &f->cfg);
  return ctx;
}

static void factory_free(l_native *self) {
  http_factory *f = (http_factory *)self;
  if (!f->L) return;
  if (f->handler_ref != LUA_NOREF) luaL_unref(f->L, LUA_REGISTRYINDEX, f->handler_ref);
  if (f->strings_ref != LUA_NOREF) luaL_unref(f->L, LUA_REGISTRYINDEX, f->strings_ref);
  if (f->request_mt_ref != LUA_NOREF) luaL_unref(f->L, LUA_REGISTRYINDEX, f->request_mt_ref);
  f->handler_ref = f->strings_ref = f->request_mt_ref = LUA_NOREF;
}

// ---- factories ------------------------------------------------------------------------------

static const char *const codec_known[] = {"maxInitialLineLength", "maxHeaderSize", "maxHeaders", "maxBody",
                                          "maxChunkLine", "headerTimeout", "bodyTimeout", "handler", NULL};

static int new_factory(lua_State *L, int mode) {
  const char *fn = mode == MODE_CODEC ? "http.serverCodec" : mode == MODE_SERVER ? "http.server" : "http.clientCodec";
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  l_checktype(L, 1, LUA_TTABLE);
  l_check_options(L, 1, fn, codec_known);
  lp_http_config cfg;
  lp_http_config_default(&cfg, mode == MODE_CLIENT);
  const lua_Integer lim = (lua_Integer)LP_HTTP_LIMIT_MAX;
  cfg.max_line = (size_t)l_opt_int(L, 1, "maxInitialLineLength", (lua_Integer)cfg.max_line, 16, lim);
  cfg.max_header = (size_t)l_opt_int(L, 1, "maxHeaderSize", (lua_Integer)cfg.max_header, 16, lim);
  cfg.max_headers = (uint32_t)l_opt_int(L, 1, "maxHeaders", cfg.max_headers, 1, LP_HTTP_MAX_HEADERS_MAX);
  cfg.max_body = (uint64_t)l_opt_int(L, 1, "maxBody", (lua_Integer)cfg.max_body, 0, (lua_Integer)1 << 40);
  cfg.max_chunk_line = (size_t)l_opt_int(L, 1, "maxChunkLine", (lua_Integer)cfg.max_chunk_line, 16, lim);
  double ht = l_opt_number(L, 1, "headerTimeout", DEFAULT_HEADER_TIMEOUT);
  if (!(ht >= 0 && ht <= 1e6)) luaL_error(L, "%s: option 'headerTimeout' must be 0 (none) to 1e6 seconds", fn);
  double bt = l_opt_number(L, 1, "bodyTimeout", DEFAULT_BODY_TIMEOUT);
  if (!(bt >= 0 && bt <= 1e6)) luaL_error(L, "%s: option 'bodyTimeout' must be 0 (none) to 1e6 seconds", fn);
  if (mode == MODE_SERVER && cfg.max_body == 0) luaL_error(L, "%s: option 'maxBody' must be at least 1 (the body is aggregated)", fn);
  char why[200];
  if (lp_http_config_check(&cfg, why, sizeof why) != 0) luaL_error(L, "%s: %s", fn, why);
  int handler = lua_getfield(L, 1, "handler");
  if (mode == MODE_SERVER && handler != LUA_TFUNCTION) {
    if (handler == LUA_TNIL || !luaL_getmetafield(L, -1, "__call"))
      luaL_error(L, "%s: option 'handler' must be a function(req, res) (or callable)", fn);
    lua_pop(L, 1);
  }
  if (mode != MODE_SERVER && handler != LUA_TNIL) luaL_error(L, "%s: unknown option 'handler'", fn);
  if (mode == MODE_CLIENT && lua_getfield(L, 1, "headerTimeout") != LUA_TNIL) luaL_error(L, "%s: unknown option 'headerTimeout' (the request's timeout bounds it)", fn);
  if (mode == MODE_CLIENT && lua_getfield(L, 1, "bodyTimeout") != LUA_TNIL) luaL_error(L, "%s: unknown option 'bodyTimeout' (the request's timeout bounds it)", fn);
  if (mode == MODE_CLIENT) lua_pop(L, 2);
  int ref = mode == MODE_SERVER ? luaL_ref(L, LUA_REGISTRYINDEX) : LUA_NOREF;
  http_factory *f = (http_factory *)l_native_new(L, sizeof *f,
      mode == MODE_CODEC ? "httpServerCodec" : mode == MODE_SERVER ? "httpServer" : "httpClientCodec");
  f->n.make = conn_make;
  f->n.free = factory_free;
  f->mode = mode;
  f->cfg = cfg;
  f->header_timeout = ht;
  f->body_timeout = bt;
  f->L = l_host_get(L)->L;
  f->handler_ref = ref;
  f->strings_ref = f->request_mt_ref = LUA_NOREF;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_strings);
  f->strings_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_request_mt);
  f->request_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int http_server_codec(lua_State *L) { return new_factory(L, MODE_CODEC); }
static int http_server_handler(lua_State *L) { return new_factory(L, MODE_SERVER); }
static int http_client_codec(lua_State *L) { return new_factory(L, MODE_CLIENT); }

// req:header(name): the field's value (case-insensitive), or nil.
static int req_header(lua_State *L) {
  l_checktype(L, 1, LUA_TTABLE);
  size_t n;
  const char *name = l_checklstring(L, 2, &n);
  if (lua_getfield(L, 1, "headers") != LUA_TTABLE) return 0;
  push_lower(L, name, n);
  lua_rawget(L, -2);
  return 1;
}

// encode(resp): the bytes of a whole response table {status, headers, body,
// version = 11, keepAlive = true}, for tests and Lua encoders.
static int http_reason(lua_State *L) {
  lua_pushstring(L, lp_http_reason((int)l_checkinteger(L, 1)));
  return 1;
}

static int http_date(lua_State *L) {
  lua_pushstring(L, lp_http_date(lua_isnoneornil(L, 1) ? (double)time(NULL) : l_checknumber(L, 1)));
  return 1;
}

static const luaL_Reg res_methods[] = {
    {"status", res_status}, {"header", res_header}, {"send", res_send},       {"write", res_write},
    {"finish", res_finish}, {"finished", res_finished}, {NULL, NULL},
};

static const luaL_Reg http_funcs[] = {
    {"serverCodec", http_server_codec}, {"serverHandler", http_server_handler}, {"clientCodec", http_client_codec},
    {"reason", http_reason},
    {"date", http_date}, {NULL, NULL},
};

void l_http_open(lua_State *L) {
  lua_createtable(L, S_COUNT, 0);
  for (int i = 1; i < S_COUNT; i++) {
    if (!string_values[i]) continue;
    lua_pushstring(L, string_values[i]);
    lua_rawseti(L, -2, i);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_strings);
  luaL_newlib(L, http_funcs);
  // END: the marker after each request's body (codec), and that a streamed response ends
  lua_newtable(L);
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "lupine.http.END");
  lua_setfield(L, -2, "__name");
  lua_pushliteral(L, "lupine.http.END");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_end);
  lua_setfield(L, -2, "END");
  // the requests' metatable: { __index = { header = req:header } }
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, req_header);
  lua_setfield(L, -2, "header");
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Request"); // the methods table, for http.lua to extend
  lua_setfield(L, -2, "__index");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_request_mt);
  // lupine.http.Response
  l_newmetatable(L, "lupine.http.Response", &key_response);
  lua_pushcfunction(L, res_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, res_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, res_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_setfield(L, -2, "_http");
}
