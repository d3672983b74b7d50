// fuzz_resp.c: libFuzzer target for the RESP parsers (src/resp.c; fuzz/run
// builds and runs it as target "resp"). Beyond what ASan and UBSan catch, each
// input checks, aborting on a violation:
//  - split invariance: the stream parsed whole, byte by byte (short inputs)
//    and in chunks of fuzzer-chosen sizes gives the same results: each
//    request's arguments (or each reply's nodes), the error text, and how
//    many bytes were left unconsumed at the end;
//  - progress: a DONE consumes at least one byte and no more than it was given;
//  - an error is final (the caller closes the connection).
//
// Input layout: 1 configuration byte (bit 0: replies instead of requests;
// bits 1-2: small limits), 4 bytes seeding the chunk sizes, then the stream.
#include "resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what) {
  fprintf(stderr, "fuzz_resp: %s\n", what);
  abort();
}

typedef struct {
  char *bytes;
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

static void put_sz(trace *t, size_t v) { put(t, &v, sizeof v); }

static uint32_t rng(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 16;
}

// Feed data in chunks (chunk 0: all at once; -1: fuzzer-chosen sizes from seed).
static void run(const lp_resp_limits *lim, bool replies, const char *data, size_t n, int chunk, uint32_t seed,
                trace *t) {
  lp_resp_req rq;
  lp_resp_reply rp;
  lp_resp_req_init(&rq, lim);
  lp_resp_reply_init(&rp, lim);
  size_t off = 0, avail = 0;
  bool errored = false;
  while (!errored) {
    // give more bytes
    size_t step = chunk == 0 ? n : chunk > 0 ? (size_t)chunk : 1 + rng(&seed) % 17;
    if (avail == n && off == avail) break;
    size_t before = avail;
    avail = avail + step > n ? n : avail + step;
    for (;;) {
      size_t used = 0;
      int rc = replies ? lp_resp_reply_parse(&rp, data + off, avail - off, &used)
                       : lp_resp_req_parse(&rq, data + off, avail - off, &used);
      if (rc == LP_RESP_DONE) {
        if (used == 0 || used > avail - off) fail("DONE without progress, or past the input");
        put(t, "D", 1);
        if (replies) {
          put_sz(t, rp.nnodes);
          for (size_t i = 0; i < rp.nnodes; i++) {
            lp_resp_node *nd = &rp.nodes[i];
            put(t, &nd->type, sizeof nd->type);
            put(t, &nd->i, sizeof nd->i);
            put_sz(t, nd->len);
            if (nd->len) put(t, nd->p, nd->len);
          }
        } else {
          put_sz(t, rq.nargs);
          put(t, &rq.inline_cmd, 1);
          for (size_t i = 0; i < rq.nargs; i++) {
            put_sz(t, rq.args[i].len);
            put(t, rq.args[i].p, rq.args[i].len);
          }
        }
        off += used;
        continue;
      }
      if (rc == LP_RESP_ERROR) {
        put(t, "E", 1);
        const char *e = replies ? rp.err : rq.err;
        put(t, e, strlen(e));
        errored = true;
      }
      if (rc == LP_RESP_NOMEM) fail("out of memory");
      break;
    }
    if (avail == n && before == n) break;
  }
  put(t, "L", 1);
  put_sz(t, errored ? 0 : n - off);
  lp_resp_req_free(&rq);
  lp_resp_reply_free(&rp);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
  if (size < 5) return 0;
  bool replies = in[0] & 1;
  lp_resp_limits lim;
  lp_resp_limits_default(&lim);
  if (in[0] & 2) lim.max_bulk = 16;
  if (in[0] & 4) {
    lim.max_multibulk = 8;
    lim.max_inline = 32;
  }
  uint32_t seed;
  memcpy(&seed, in + 1, 4);
  const char *data = (const char *)in + 5;
  size_t n = size - 5;
  trace whole = {0}, other = {0};
  run(&lim, replies, data, n, 0, 0, &whole);
  if (n <= 512) {
    run(&lim, replies, data, n, 1, 0, &other);
    if (other.len != whole.len || memcmp(other.bytes, whole.bytes, whole.len) != 0) fail("byte by byte differs from whole");
    other.len = 0;
  }
  run(&lim, replies, data, n, -1, seed, &other);
  if (other.len != whole.len || memcmp(other.bytes, whole.bytes, whole.len) != 0) fail("chunks differ from whole");
  free(whole.bytes);
  free(other.bytes);
  return 0;
}
