// fuzz_http.c: libFuzzer target for the HTTP/1.1 parser (src/http_parser.c;
// fuzz/run builds and runs it as target "http"). Beyond what ASan and UBSan
// catch, each input checks the parser's promises, aborting on a violation:
//  - split invariance: the stream parsed whole, byte by byte and in chunks of
//    fuzzer-chosen sizes gives the same events: heads with every field, body
//    bytes (joined across BODY events), ends with trailers, upgrades with the
//    bytes left, errors with status and text, and what the end of input gave;
//  - boundedness: when the parser needs more bytes the cumulation holds at
//    most max_line + max_header + 4 (or a chunk line) bytes;
//  - slices stay inside the head (or trailer section) they belong to, body
//    bytes are the ones just consumed, and every step makes progress;
//  - an error is final.
//
// Input layout: 8 configuration bytes, 4 bytes seeding the chunk sizes, then
// the stream (raw bytes; fuzz/http.dict and fuzz/seeds/http help it along).
#include "buffer.h"
#include "codec.h"
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STREAM 8192

static void fail(const char *what) {
  fprintf(stderr, "fuzz_http: %s\n", what);
  abort();
}

typedef struct {
  uint8_t *bytes;
  size_t len, cap;
} trace;

static void put(trace *t, const void *p, size_t n) {
  if (t->len + n > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    while (cap < t->len + n) cap *= 2;
    t->bytes = realloc(t->bytes, cap);
    if (!t->bytes) fail("out of memory");
    t->cap = cap;
  }
  memcpy(t->bytes + t->len, p, n);
  t->len += n;
}
static void put_u64(trace *t, uint64_t v) { put(t, &v, sizeof v); }
static void put_slice(trace *t, const uint8_t *base, size_t limit, lp_http_slice s) {
  if ((size_t)s.at + s.len > limit) fail("a slice reaches past its head");
  put_u64(t, s.len);
  put(t, base + s.at, s.len);
}
static void put_fields(trace *t, const uint8_t *base, size_t limit, const lp_http_header *h, uint32_t n) {
  put_u64(t, n);
  for (uint32_t i = 0; i < n; i++) {
    put_slice(t, base, limit, h[i].name);
    put_slice(t, base, limit, h[i].value);
  }
}

static uint32_t next_rand(uint32_t *s) { // xorshift32
  uint32_t x = *s ? *s : 0x9e3779b9u;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

// Parse s[0..n) in chunks: mode 0 = whole, 1 = byte by byte, else random sizes from seed.
static void run(const lp_http_config *cfg, int method, const uint8_t *s, size_t n, int mode, uint32_t seed, trace *t) {
  lp_pool *pool = lp_pool_new();
  lp_http_parser p;
  lp_http_parser_init(&p, cfg);
  lp_http_parser_set_request_method(&p, method);
  lp_buf *cum = NULL;
  size_t bound = cfg->max_line + cfg->max_header + 4;
  if (cfg->max_chunk_line + 2 > bound) bound = cfg->max_chunk_line + 2;
  size_t at = 0, steps = 0;
  bool body_open = false, upgraded = false, failed = false;
  while (at < n && !failed) {
    size_t len = mode == 0 ? n : mode == 1 ? 1 : 1 + next_rand(&seed) % 64;
    if (len > n - at) len = n - at;
    lp_buf *chunk = lp_buf_from(pool, s + at, len);
    if (!chunk || lp_cumulate(pool, &cum, chunk) != 0) fail("out of memory");
    at += len;
    for (;;) {
      if (++steps > 4 * n + 16) fail("no progress");
      size_t rd = cum->rd;
      int rc = lp_http_parse(&p, cum);
      if (rc == LP_HTTP_NEED) {
        if (lp_buf_readable(cum) > bound) fail("the cumulation grew past its bound");
        break;
      }
      if (rc != LP_HTTP_BODY && body_open) put(t, ")", 1), body_open = false;
      if (rc == LP_HTTP_HEAD) {
        const lp_http_head *h = &p.head;
        // (empty lines before it may have been consumed too)
        if (cum->rd - rd < h->length || h->base != cum->data + cum->rd - h->length) fail("the head is not what was consumed");
        put(t, "H", 1);
        int64_t v[] = {h->version, h->method, h->status, h->content_length, h->chunked, h->until_close, h->no_body,
                       h->keep_alive, h->expect_continue, h->upgrade};
        put(t, v, sizeof v);
        if (cfg->response) put_slice(t, h->base, h->length, h->reason);
        else put_slice(t, h->base, h->length, h->method_name), put_slice(t, h->base, h->length, h->target);
        put_fields(t, h->base, h->length, h->headers, h->nheaders);
      } else if (rc == LP_HTTP_BODY) {
        // (chunk framing before them may have been consumed too)
        if (p.body_len == 0 || p.body_index < rd || cum->rd != p.body_index + p.body_len)
          fail("body bytes are not what was consumed");
        if (!body_open) put(t, "(", 1), body_open = true;
        put(t, cum->data + p.body_index, p.body_len);
      } else if (rc == LP_HTTP_END) {
        put(t, "E", 1);
        const uint8_t *tb = p.trailers.base;
        if (p.trailers.nheaders && (tb < cum->data + rd || tb > cum->data + cum->rd)) fail("trailers are not what was consumed");
        put_fields(t, tb, p.trailers.nheaders ? (size_t)(cum->data + cum->rd - tb) : 0, p.trailers.headers, p.trailers.nheaders);
      } else if (rc == LP_HTTP_UPGRADE) {
        if (cum->rd != rd) fail("UPGRADE consumed bytes");
        if (!upgraded) put(t, "U", 1);
        upgraded = true;
        break;
      } else if (rc == LP_HTTP_ERROR) {
        if (p.error.code != LP_EHTTP) fail("an error that is not LP_EHTTP");
        put(t, "!", 1);
        put_u64(t, (uint64_t)p.status);
        put(t, p.error.message, strlen(p.error.message));
        if (lp_http_parse(&p, cum) != LP_HTTP_ERROR) fail("an error was not final");
        failed = true;
        break;
      } else {
        fail("an unknown event");
      }
    }
  }
  if (body_open) put(t, ")", 1);
  if (upgraded) {
    put(t, "<", 1);
    put(t, lp_buf_rptr(cum), lp_buf_readable(cum));
  } else if (!failed) {
    int rc = lp_http_finish(&p, cum);
    put(t, "$", 1);
    put_u64(t, (uint64_t)(int64_t)rc);
    if (rc == LP_HTTP_ERROR) put(t, p.error.message, strlen(p.error.message));
  }
  if (cum) lp_buf_unref(cum);
  lp_http_parser_free(&p);
  if (lp_pool_live(pool) != 0) fail("a buffer was not released");
  lp_pool_free(pool);
}

static bool same(const trace *a, const trace *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->bytes, b->bytes, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static trace whole, other;
  if (size < 12) return 0;
  const uint8_t *h = data;
  uint32_t seed;
  memcpy(&seed, data + 8, sizeof seed);
  data += 12;
  size -= 12;
  size_t n = size < MAX_STREAM ? size : MAX_STREAM;
  static const int methods[] = {LP_HTTP_M_GET, LP_HTTP_M_HEAD, LP_HTTP_M_CONNECT, LP_HTTP_M_POST};
  lp_http_config c;
  lp_http_config_default(&c, h[0] & 1);
  int method = methods[(h[0] >> 1) & 3];
  if (h[0] & 8) { // small limits, to reach them
    c.max_line = 16 + h[1] % 64;
    c.max_header = 2 + h[2] % 128;
    c.max_headers = 1 + h[3] % 8;
    c.max_body = h[4] % 4 == 0 ? 0 : h[4] % 128;
    c.max_chunk_line = 1 + h[5] % 32;
  } else if (h[0] & 16) {
    c.max_body = 0;
  }
  if (lp_http_config_check(&c, NULL, 0) != 0) return 0;
  whole.len = 0;
  run(&c, method, data, n, 0, seed, &whole);
  if (n <= 2048) {
    other.len = 0;
    run(&c, method, data, n, 1, seed, &other);
    if (!same(&other, &whole)) fail("byte-by-byte reads parse differently");
  }
  other.len = 0;
  run(&c, method, data, n, 2, seed, &other);
  if (!same(&other, &whole)) fail("split reads parse differently");
  return 0;
}
