// ws_codec.c: the WebSocket frame decoder and encoder (RFC 6455) and the
// incremental UTF-8 validator, as pure functions over buffers (see ws.h).
//
// The decoder checks what a frame's first bytes say before it waits for the
// rest: reserved bits, opcode, a control frame fragmented or over 125 bytes,
// the mask bit against the side, a continuation with nothing to continue, a
// data frame inside a fragmented message, a length with the high bit set, a
// message past maxMessageSize. Only then does it wait for the whole frame,
// unmask it into a buffer of its own (the cumulation is never written: it may
// share storage with buffers someone else holds) and validate text.
#include "ws.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum { S_OPEN, S_CLOSED, S_FAILED };

// ---- UTF-8 ---------------------------------------------------------------------------
// The state packs what the next bytes must be: bits 0-1 the continuation bytes
// still owed, bits 8-15 and 16-23 the range of the next one (tighter than
// 0x80..0xbf after E0, ED, F0 and F4: no overlongs, no surrogates, nothing
// past U+10FFFF).

#define U8(need, lo, hi) ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

static uint32_t lead(uint8_t c) {
  if (c < 0xc2) return LP_UTF8_BAD; // continuation bytes, and C0/C1 (overlong)
  if (c < 0xe0) return U8(1, 0x80, 0xbf);
  if (c == 0xe0) return U8(2, 0xa0, 0xbf);
  if (c == 0xed) return U8(2, 0x80, 0x9f);
  if (c < 0xf0) return U8(2, 0x80, 0xbf);
  if (c == 0xf0) return U8(3, 0x90, 0xbf);
  if (c < 0xf4) return U8(3, 0x80, 0xbf);
  if (c == 0xf4) return U8(3, 0x80, 0x8f);
  return LP_UTF8_BAD;
}

uint32_t lp_utf8_step(uint32_t s, const uint8_t *p, size_t n) {
  if (s == LP_UTF8_BAD) return s;
  size_t i = 0;
  while (i < n) {
    if (s == 0) {
      // ASCII a word at a time: the common case of text.
      while (n - i >= 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      while (i < n && p[i] < 0x80) i++;
      if (i == n) break;
      s = lead(p[i++]);
      if (s == LP_UTF8_BAD) return s;
      continue;
    }
    uint8_t c = p[i++];
    if (c < ((s >> 8) & 0xff) || c > (s >> 16)) return LP_UTF8_BAD;
    uint32_t need = (s & 3) - 1;
    s = need ? U8(need, 0x80, 0xbf) : 0;
  }
  return s;
}

// ---- configuration ------------------------------------------------------------------

void lp_ws_config_default(lp_ws_config *c, bool server) {
  memset(c, 0, sizeof *c);
  c->server = server;
  c->max_message = LP_WS_DEFAULT_MAX_MESSAGE;
}

int lp_ws_config_check(const lp_ws_config *c, char *why, size_t whylen) {
  if (c->max_message < 1 || c->max_message > LP_WS_MAX_MESSAGE_MAX) {
    if (why && whylen) snprintf(why, whylen, "maxMessageSize must be from 1 to %zu", LP_WS_MAX_MESSAGE_MAX);
    return -EINVAL;
  }
  return 0;
}

void lp_ws_decoder_init(lp_ws_decoder *d, const lp_ws_config *c) {
  memset(d, 0, sizeof *d);
  d->cfg = *c;
  d->state = S_OPEN;
}

static void drop_msg(lp_ws_decoder *d) {
  if (d->msg) lp_buf_unref(d->msg);
  d->msg = NULL;
  d->msg_op = 0;
  d->msg_total = 0;
}

void lp_ws_decoder_free(lp_ws_decoder *d) {
  drop_msg(d);
  if (d->inflater) {
    inflateEnd(d->inflater);
    free(d->inflater);
    d->inflater = NULL;
  }
}

// ---- decoding ---------------------------------------------------------------------

static const char *kind_of(int close_code) {
  switch (close_code) {
  case LP_WS_INVALID_PAYLOAD: return "WsInvalidPayload";
  case LP_WS_TOO_BIG: return "WsMessageTooBig";
  default: return "WsProtocolError";
  }
}

// The decoder fails for good: "Kind: text (code)", ERROR now and on every later call.
static int fail(lp_ws_decoder *d, int close_code, const char *fmt, ...) LP_PRINTF(3, 4);
static int fail(lp_ws_decoder *d, int close_code, const char *fmt, ...) {
  lp_error *e = &d->error;
  d->state = S_FAILED;
  d->close_code = close_code;
  drop_msg(d);
  e->code = LP_EWS;
  e->kind = kind_of(close_code);
  e->limit = e->length = -1;
  char text[LP_ERROR_MESSAGE_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  snprintf(e->message, sizeof e->message, "%s: %.160s (%d)", e->kind, text, close_code);
  return LP_WS_ERROR;
}

static int fail_enomem(lp_ws_decoder *d) {
  d->state = S_FAILED;
  d->close_code = LP_WS_INTERNAL;
  drop_msg(d);
  lp_error_sys(&d->error, ENOMEM, "websocket");
  return LP_WS_ERROR;
}

static int too_big(lp_ws_decoder *d, uint64_t len) {
  fail(d, LP_WS_TOO_BIG, "message of %s%" PRIu64 " bytes exceeds maxMessageSize %zu", d->msg ? "at least " : "", len,
       d->cfg.max_message);
  d->error.limit = (long long)d->cfg.max_message;
  d->error.length = len > (uint64_t)INT64_MAX ? INT64_MAX : (long long)len;
  return LP_WS_ERROR;
}

static int too_big_inflated(lp_ws_decoder *d) {
  fail(d, LP_WS_TOO_BIG, "inflated message exceeds maxMessageSize %zu", d->cfg.max_message);
  d->error.limit = (long long)d->cfg.max_message;
  return LP_WS_ERROR;
}

// Inflate src[0..n) (and, at the message's end, the 00 00 ff ff the sender
// stripped) onto the end of d->msg, which never grows past maxMessageSize + 1
// bytes: one byte more than allowed is how a message too big shows. 0, or
// LP_WS_ERROR (the decoder failed: 1009, 1007 for bad data, ENOMEM).
static int inflate_into(lp_ws_decoder *d, const uint8_t *src, size_t n, bool fin) {
  static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
  z_stream *z = d->inflater;
  if (!z) {
    if (!(z = calloc(1, sizeof *z))) return fail_enomem(d);
    if (inflateInit2(z, -15) != Z_OK) {
      free(z);
      return fail_enomem(d);
    }
    d->inflater = z;
  }
  size_t lim = d->cfg.max_message - (size_t)d->msg_total; // bytes this message may still grow by
  size_t cap = lim + 1;
  for (int part = 0; part < 2; part++) {
    if (part == 1 && !fin) break;
    z->next_in = (Bytef *)(part ? tail : src);
    size_t left = part ? sizeof tail : n;
    while (left > 0 || z->avail_out == 0) {
      uInt chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
      z->avail_in = chunk;
      lp_buf *m = d->msg;
      size_t have = lp_buf_readable(m);
      if (lp_buf_writable(m) == 0) {
        if (have >= cap) return too_big_inflated(d);
        size_t grow = have < 4096 ? 4096 : have;
        if (grow > cap - have) grow = cap - have;
        if (lp_buf_reserve(m, grow) != 0) return fail_enomem(d);
      }
      size_t room = lp_buf_writable(m);
      if (room > cap - have) room = cap - have;
      if (room > (1u << 30)) room = 1u << 30;
      z->next_out = lp_buf_wptr(m);
      z->avail_out = (uInt)room;
      int rc = inflate(z, Z_SYNC_FLUSH);
      m->wr += room - z->avail_out;
      left -= chunk - z->avail_in;
      if (lp_buf_readable(m) > lim) return too_big_inflated(d);
      if (rc == Z_STREAM_END) { // the sender ended its stream (BFINAL): the next one starts afresh
        inflateReset(z);
        continue;
      }
      if (rc == Z_BUF_ERROR || (rc == Z_OK && z->avail_out > 0 && left == 0)) break; // all taken
      if (rc != Z_OK) {
        inflateReset(z);
        return fail(d, LP_WS_INVALID_PAYLOAD, "invalid compressed data");
      }
    }
  }
  return 0;
}

static const char *op_name(int op) {
  switch (op) {
  case LP_WS_TEXT: return "text";
  case LP_WS_BINARY: return "binary";
  default: return "continuation";
  }
}

// Close codes a peer may send (RFC 6455 7.4, and the IANA registry's 1012-1014).
bool lp_ws_close_code_ok(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

// Unmask (or copy) payload p[0..n) to the end of b, which has room.
static void put_payload(lp_buf *b, const uint8_t *p, size_t n, const uint8_t *key) {
  if (key) lp_ws_mask(lp_buf_wptr(b), p, n, key);
  else memcpy(lp_buf_wptr(b), p, n);
  b->wr += n;
}

int lp_ws_decode(lp_ws_decoder *d, lp_buf *in) {
  d->payload = NULL;
  d->opcode = 0;
  for (;;) {
    if (d->state == S_FAILED) return LP_WS_ERROR;
    size_t n = lp_buf_readable(in);
    if (d->state == S_CLOSED) {
      in->rd += n;
      return LP_WS_NEED;
    }
    if (n < 2) return LP_WS_NEED;
    const uint8_t *p = lp_buf_rptr(in);
    bool fin = p[0] & 0x80, masked = p[1] & 0x80;
    int rsv = p[0] & 0x70, op = p[0] & 0x0f;
    size_t len7 = p[1] & 0x7f;
    bool control = op & 8;
    bool rsv1 = rsv & 0x40;
    if (!d->cfg.deflate && rsv)
      return fail(d, LP_WS_PROTOCOL, "reserved bits set (0x%02x) with no extension negotiated", rsv);
    if (rsv & 0x30) return fail(d, LP_WS_PROTOCOL, "reserved bits set (0x%02x) beyond permessage-deflate's", rsv & 0x30);
    if (op != LP_WS_CONT && op != LP_WS_TEXT && op != LP_WS_BINARY && op != LP_WS_CLOSE && op != LP_WS_PING &&
        op != LP_WS_PONG)
      return fail(d, LP_WS_PROTOCOL, "unknown opcode 0x%x", op);
    if (control && !fin) return fail(d, LP_WS_PROTOCOL, "fragmented control frame (opcode 0x%x)", op);
    if (control && len7 > LP_WS_MAX_CONTROL)
      return fail(d, LP_WS_PROTOCOL, "control frame (opcode 0x%x) longer than 125 bytes", op);
    if (d->cfg.server && !masked) return fail(d, LP_WS_PROTOCOL, "unmasked client frame");
    if (!d->cfg.server && masked) return fail(d, LP_WS_PROTOCOL, "masked server frame");
    if (op == LP_WS_CONT && !d->msg_op) return fail(d, LP_WS_PROTOCOL, "continuation frame with no message to continue");
    if (rsv1 && (control || op == LP_WS_CONT))
      return fail(d, LP_WS_PROTOCOL, "compressed bit (RSV1) on a %s frame", control ? "control" : "continuation");
    if (!control && op != LP_WS_CONT && d->msg_op)
      return fail(d, LP_WS_PROTOCOL, "%s frame inside a fragmented %s message", op_name(op), op_name(d->msg_op));
    size_t hlen = 2;
    uint64_t len = len7;
    if (len7 == 126) {
      if (n < 4) return LP_WS_NEED;
      len = lp_load_uint(p + 2, 2, true);
      hlen = 4;
    } else if (len7 == 127) {
      if (n < 10) return LP_WS_NEED;
      len = lp_load_uint(p + 2, 8, true);
      if (len >> 63) return fail(d, LP_WS_PROTOCOL, "frame length with the high bit set");
      hlen = 10;
    }
    if (!control) {
      uint64_t have = d->msg_total + (d->msg ? lp_buf_readable(d->msg) : 0);
      if (len > d->cfg.max_message - have) return too_big(d, have + len);
    }
    const uint8_t *key = NULL;
    if (masked) {
      key = p + hlen;
      hlen += 4;
    }
    if (n < hlen || n - hlen < len) return LP_WS_NEED;
    const uint8_t *body = p + hlen;
    size_t blen = (size_t)len;

    if (control) {
      if (op == LP_WS_CLOSE && blen == 1) return fail(d, LP_WS_PROTOCOL, "close frame with a 1-byte payload");
      lp_buf *b = lp_buf_new(in->pool, blen);
      if (!b) return fail_enomem(d);
      put_payload(b, body, blen, key);
      in->rd += hlen + blen;
      d->close_code = 0;
      if (op == LP_WS_CLOSE) {
        d->close_code = LP_WS_NO_STATUS;
        if (blen >= 2) {
          int code = (int)lp_load_uint(lp_buf_rptr(b), 2, true);
          b->rd += 2;
          if (!lp_ws_close_code_ok(code)) {
            lp_buf_unref(b);
            return fail(d, LP_WS_PROTOCOL, "close code %d may not be sent", code);
          }
          if (!lp_utf8_valid(lp_buf_rptr(b), lp_buf_readable(b))) {
            lp_buf_unref(b);
            return fail(d, LP_WS_INVALID_PAYLOAD, "close reason is not UTF-8");
          }
          d->close_code = code;
        }
        d->state = S_CLOSED;
        drop_msg(d); // a message left unfinished is dropped
      }
      d->opcode = op;
      d->payload = b;
      return LP_WS_CONTROL;
    }

    if (op != LP_WS_CONT && fin && !rsv1) { // a whole message in one frame: the common case
      lp_buf *b = lp_buf_new(in->pool, blen);
      if (!b) return fail_enomem(d);
      put_payload(b, body, blen, key);
      in->rd += hlen + blen;
      if (op == LP_WS_TEXT && !lp_utf8_valid(lp_buf_rptr(b), blen)) {
        lp_buf_unref(b);
        return fail(d, LP_WS_INVALID_PAYLOAD, "text message is not UTF-8");
      }
      d->opcode = op;
      d->payload = b;
      return LP_WS_MESSAGE;
    }

    // A fragment (or a compressed message): append it to the message in progress.
    if (op != LP_WS_CONT) {
      d->msg = lp_buf_new(in->pool, rsv1 ? 0 : blen);
      if (!d->msg) return fail_enomem(d);
      d->msg_op = op;
      d->utf8 = 0;
      d->compressed = rsv1;
    }
    size_t at = d->msg->wr;
    if (d->compressed) {
      lp_buf *tmp = NULL;
      const uint8_t *src = body;
      if (key) { // unmasked into a buffer of its own: the input is never written
        if (!(tmp = lp_buf_new(in->pool, blen))) return fail_enomem(d);
        put_payload(tmp, body, blen, key);
        src = lp_buf_rptr(tmp);
      }
      in->rd += hlen + blen;
      int rc = inflate_into(d, src, blen, fin);
      if (tmp) lp_buf_unref(tmp);
      if (rc != 0) return LP_WS_ERROR;
      if (fin && d->cfg.peer_no_context) inflateReset(d->inflater);
    } else {
      if (lp_buf_reserve(d->msg, blen) != 0) return fail_enomem(d);
      put_payload(d->msg, body, blen, key);
      in->rd += hlen + blen;
    }
    if (d->msg_op == LP_WS_TEXT) {
      d->utf8 = lp_utf8_step(d->utf8, d->msg->data + at, d->msg->wr - at);
      if (d->utf8 == LP_UTF8_BAD) return fail(d, LP_WS_INVALID_PAYLOAD, "text message is not UTF-8");
      if (fin && d->utf8 != 0) return fail(d, LP_WS_INVALID_PAYLOAD, "text message ends inside a UTF-8 sequence");
    }
    if (d->cfg.fragments && !(op != LP_WS_CONT && fin)) { // a frame of a fragmented message, as it is
      d->opcode = d->msg_op;
      d->fin = fin;
      d->payload = d->msg;
      d->msg = NULL;
      if (fin) {
        drop_msg(d);
      } else {
        d->msg_total += lp_buf_readable(d->payload);
        if (!(d->msg = lp_buf_new(in->pool, 0))) {
          lp_buf_unref(d->payload);
          d->payload = NULL;
          return fail_enomem(d);
        }
      }
      return LP_WS_FRAGMENT;
    }
    if (!fin) continue; // more fragments to come: on to the next frame
    d->opcode = d->msg_op;
    d->payload = d->msg;
    d->msg = NULL;
    d->msg_op = 0;
    return LP_WS_MESSAGE;
  }
}

// ---- encoding -------------------------------------------------------------------------

size_t lp_ws_header(uint8_t *out, int opcode, bool fin, uint64_t len, const uint8_t *key) {
  size_t h = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
  uint8_t m = key ? 0x80 : 0;
  if (len < 126) {
    out[1] = (uint8_t)(m | len);
  } else if (len <= 0xffff) {
    out[1] = m | 126;
    lp_store_uint(out + 2, 2, true, len);
    h = 4;
  } else {
    out[1] = m | 127;
    lp_store_uint(out + 2, 8, true, len);
    h = 10;
  }
  if (key) {
    memcpy(out + h, key, 4);
    h += 4;
  }
  return h;
}

void lp_ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4]) {
  uint64_t k;
  uint8_t k8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
  memcpy(&k, k8, 8); // byte i of the word is key[i % 4] whatever the byte order
  size_t i = 0;
  for (; n - i >= 8; i += 8) {
    uint64_t w;
    memcpy(&w, src + i, 8);
    w ^= k;
    memcpy(dst + i, &w, 8);
  }
  for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

int lp_ws_encode(lp_pool *pool, int opcode, const void *p, size_t n, const uint8_t *key, lp_buf **out) {
  if (n > LP_BUF_MAX - LP_WS_MAX_HEADER) return -ENOMEM;
  lp_buf *b = lp_buf_new(pool, n + LP_WS_MAX_HEADER);
  if (!b) return -ENOMEM;
  b->wr = lp_ws_header(b->data, opcode, true, n, key);
  if (key) lp_ws_mask(lp_buf_wptr(b), p, n, key);
  else if (n) memcpy(lp_buf_wptr(b), p, n);
  b->wr += n;
  *out = b;
  return 0;
}

int lp_ws_close_payload(uint8_t *out, int code, const void *reason, size_t len, char *why, size_t whylen) {
  if (code == LP_WS_NO_STATUS && len == 0) return 0;
  if (!lp_ws_close_code_ok(code)) {
    if (why && whylen) snprintf(why, whylen, "close code %d may not be sent (1000-1003, 1007-1014, 3000-4999)", code);
    return -EINVAL;
  }
  if (len > LP_WS_MAX_CONTROL - 2) {
    if (why && whylen) snprintf(why, whylen, "close reason of %zu bytes is over 123", len);
    return -EINVAL;
  }
  if (!lp_utf8_valid(reason, len)) {
    if (why && whylen) snprintf(why, whylen, "close reason is not UTF-8");
    return -EINVAL;
  }
  lp_store_uint(out, 2, true, (uint64_t)code);
  if (len) memcpy(out + 2, reason, len);
  return (int)(len + 2);
}

// ---- permessage-deflate: the sending side ---------------------------------------------

void lp_ws_deflater_init(lp_ws_deflater *df, int window_bits, bool no_context) {
  df->z = NULL;
  df->window_bits = window_bits < 9 ? 9 : window_bits > 15 ? 15 : window_bits;
  df->no_context = no_context;
}

void lp_ws_deflater_free(lp_ws_deflater *df) {
  if (df->z) {
    deflateEnd(df->z);
    free(df->z);
    df->z = NULL;
  }
}

int lp_ws_encode_deflate(lp_ws_deflater *df, lp_pool *pool, int opcode, const void *p, size_t n, const uint8_t *key,
                         lp_buf **out) {
  z_stream *z = df->z;
  if (!z) {
    if (!(z = calloc(1, sizeof *z))) return -ENOMEM;
    if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -df->window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      free(z);
      return -ENOMEM;
    }
    df->z = z;
  }
  if (n > LP_BUF_MAX / 2) return -ENOMEM;
  // Room for the longest header in front; the header goes right before the data.
  lp_buf *b = lp_buf_new(pool, LP_WS_MAX_HEADER + n + n / 100 + 64);
  if (!b) return -ENOMEM;
  b->wr = LP_WS_MAX_HEADER;
  z->next_in = (Bytef *)p;
  z->avail_in = (uInt)n;
  for (;;) {
    if (lp_buf_writable(b) < 64 && lp_buf_reserve(b, lp_buf_readable(b) + 64) != 0) {
      lp_buf_unref(b);
      deflateReset(z);
      return -ENOMEM;
    }
    size_t room = lp_buf_writable(b);
    z->next_out = lp_buf_wptr(b);
    z->avail_out = (uInt)room;
    deflate(z, Z_SYNC_FLUSH);
    b->wr += room - z->avail_out;
    if (z->avail_in == 0 && z->avail_out > 0) break; // all in, all out
  }
  if (df->no_context) deflateReset(z);
  size_t clen = b->wr - LP_WS_MAX_HEADER;
  if (clen >= 4) clen -= 4, b->wr -= 4; // the 00 00 ff ff every sync flush ends with (RFC 7692 7.2.1)
  uint8_t h[LP_WS_MAX_HEADER];
  size_t hl = lp_ws_header(h, opcode, true, clen, key);
  h[0] |= 0x40; // RSV1: compressed
  b->rd = LP_WS_MAX_HEADER - hl;
  memcpy(b->data + b->rd, h, hl);
  if (key) lp_ws_mask(b->data + LP_WS_MAX_HEADER, b->data + LP_WS_MAX_HEADER, clen, key);
  *out = b;
  return 0;
}
