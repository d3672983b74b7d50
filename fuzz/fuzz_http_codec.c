// fuzz_http_codec.c: libFuzzer target for the response encoder (src/codec/http_codec.c)
// against the parser (fuzz/run builds and runs it as target "http_codec").
// Each request the parser takes from the input is answered: its header fields
// become the response's fields (framing fields left out), its target the body,
// sent with Content-Length or in chunks as the first input byte says. Then:
//  - every field the request parser accepted passes lp_http_field_check (what
//    one side takes, the other may send);
//  - the response parser reads the encoded bytes back as exactly one response
//    with the same status, the fields in order after the encoder's own, the
//    same body, and the same keep-alive.
#include "buffer.h"
#include "http.h"
#include "http_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 256

static void fail(const char *what) {
  fprintf(stderr, "fuzz_http_codec: %s\n", what);
  abort();
}

static bool framing(const char *n, size_t len) {
  return lp_http_name_is(n, len, "content-length") || lp_http_name_is(n, len, "transfer-encoding") ||
         lp_http_name_is(n, len, "connection") || lp_http_name_is(n, len, "date");
}

static void answer(const lp_http_head *h, uint8_t mode) {
  static const int statuses[4] = {200, 201, 404, 500};
  lp_http_field f[MAX_FIELDS];
  size_t n = 0;
  for (uint32_t i = 0; i < h->nheaders && n < MAX_FIELDS; i++) {
    const lp_http_header *hh = &h->headers[i];
    const char *name = lp_http_at(h->base, hh->name), *value = lp_http_at(h->base, hh->value);
    if (lp_http_field_check(name, hh->name.len, value, hh->value.len) != 0) fail("a parsed field fails field_check");
    if (framing(name, hh->name.len)) continue;
    f[n++] = (lp_http_field){name, value, hh->name.len, hh->value.len};
  }
  const char *body = lp_http_at(h->base, h->target);
  size_t blen = h->target.len;
  bool chunked = mode & 1;
  lp_http_response r = {.version = h->version, .status = statuses[(mode >> 1) & 3], .fields = f, .nfields = n,
                        .content_length = chunked ? -1 : (int64_t)blen, .keep_alive = h->keep_alive, .date = true};
  lp_buf *out = lp_buf_new(NULL, 0);
  if (!out || lp_http_encode_head(out, &r) != 0) fail("encode_head");
  if (chunked && h->version >= 11) {
    size_t step = 1 + (mode >> 3), at = 0;
    while (at < blen) {
      size_t k = blen - at < step ? blen - at : step;
      if (lp_http_encode_chunk(out, body + at, k) != 0) fail("encode_chunk");
      at += k;
    }
    if (lp_http_encode_last_chunk(out) != 0) fail("encode_last_chunk");
  } else if (lp_buf_write(out, body, blen) != 0) {
    fail("body");
  }
  // Read it back.
  lp_http_config cfg;
  lp_http_config_default(&cfg, true);
  cfg.max_header = LP_HTTP_LIMIT_MAX;
  cfg.max_headers = LP_HTTP_MAX_HEADERS_MAX;
  lp_http_parser p;
  lp_http_parser_init(&p, &cfg);
  lp_http_parser_set_request_method(&p, h->method == LP_HTTP_M_HEAD ? LP_HTTP_M_GET : h->method);
  int ev = lp_http_parse(&p, out);
  if (ev != LP_HTTP_HEAD) fail("no response head");
  const lp_http_head *rh = &p.head;
  if (rh->status != r.status) fail("status");
  if (rh->nheaders < n) fail("fewer fields");
  uint32_t skip = rh->nheaders - (uint32_t)n;
  for (size_t i = 0; i < n; i++) {
    const lp_http_header *g = &rh->headers[skip + i];
    if (g->name.len != f[i].name_len || memcmp(lp_http_at(rh->base, g->name), f[i].name, f[i].name_len) != 0)
      fail("field name");
    if (g->value.len != f[i].value_len || memcmp(lp_http_at(rh->base, g->value), f[i].value, f[i].value_len) != 0)
      fail("field value");
  }
  bool close_delimited = chunked && h->version < 11;
  if (!close_delimited && rh->keep_alive != (bool)h->keep_alive) fail("keep-alive");
  size_t got = 0;
  for (;;) {
    ev = lp_http_parse(&p, out);
    if (ev == LP_HTTP_BODY) {
      if (got + p.body_len > blen || memcmp(out->data + p.body_index, body + got, p.body_len) != 0) fail("body bytes");
      got += p.body_len;
      continue;
    }
    if (ev == LP_HTTP_NEED && close_delimited) ev = lp_http_finish(&p, out);
    if (ev != LP_HTTP_END) fail("no end of the response");
    break;
  }
  if (got != blen) fail("body length");
  lp_http_parser_free(&p);
  lp_buf_unref(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  lp_http_config cfg;
  lp_http_config_default(&cfg, false);
  lp_http_parser p;
  lp_http_parser_init(&p, &cfg);
  lp_buf *in = lp_buf_from(NULL, data + 1, size - 1);
  if (!in) return 0;
  for (int steps = 0; steps < 10000; steps++) {
    int ev = lp_http_parse(&p, in);
    if (ev == LP_HTTP_HEAD) answer(&p.head, mode);
    else if (ev == LP_HTTP_UPGRADE) lp_http_parser_resume(&p);
    else if (ev != LP_HTTP_BODY && ev != LP_HTTP_END) break;
  }
  lp_http_parser_free(&p);
  lp_buf_unref(in);
  return 0;
}
