// fuzz_frames.c: libFuzzer targets for the native frame decoders and the
// prepender (src/codec/codec_frame.c), built once per decoder with -DFUZZ_KIND=...
// (fuzz/run builds and runs them). Beyond what ASan and UBSan catch, each
// input checks the decoders' promises, aborting on a violation:
//  - split invariance: the stream decoded whole, byte by byte and in chunks
//    of fuzzer-chosen sizes yields the same frames and the same errors (with
//    failFast the length an error reports may differ, its place may not);
//  - boundedness: after each read the cumulation holds at most the limit
//    (plus a partial delimiter);
//  - frames stay intact: every frame (a slice sharing the cumulation's
//    storage) still holds its bytes after all later reads were appended;
//  - the prepender's output decodes back to its input.
//
// Input layout: a few configuration bytes, four bytes that seed the chunk
// sizes, then the stream. For the text decoders stream bytes map onto a small
// alphabet with the delimiters in it, so that frames are dense.
#include "buffer.h"
#include "codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_LINE, K_DELIMITER, K_LENGTH_FIELD, K_FIXED, K_PREPENDER };
#ifndef FUZZ_KIND
#error "build with -DFUZZ_KIND=K_LINE (or K_DELIMITER, K_LENGTH_FIELD, K_FIXED, K_PREPENDER)"
#endif

#define MAX_STREAM 8192
#define MAX_FRAMES 4096

static const char alphabet[8] = {'a', 'b', '\r', '\n', '-', '=', '\0', 'x'};

static void fail(const char *what) {
  fprintf(stderr, "fuzz_frames: %s\n", what);
  abort();
}

// What a run saw, comparable between runs.
typedef struct {
  uint8_t *bytes; // frames and errors, serialized
  size_t len, cap;
  lp_buf *frames[MAX_FRAMES]; // kept to the end: their bytes must not change
  size_t nframes;
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

static uint32_t next_rand(uint32_t *s) { // xorshift32
  uint32_t x = *s ? *s : 0x9e3779b9u;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

// Decode stream in chunks: chunk 0 = whole, 1 = byte by byte, else random sizes from seed.
static void run(const lp_frame_config *cfg, const uint8_t *s, size_t n, int mode, uint32_t seed, size_t bound, trace *t) {
  lp_pool *pool = lp_pool_new();
  lp_frame_decoder d;
  lp_frame_decoder_init(&d, cfg);
  lp_buf *cum = NULL;
  size_t at = 0;
  while (at < n) {
    size_t len = mode == 0 ? n : mode == 1 ? 1 : 1 + next_rand(&seed) % 64;
    if (len > n - at) len = n - at;
    lp_buf *chunk = lp_buf_from(pool, s + at, len);
    if (!chunk || lp_cumulate(pool, &cum, chunk) != 0) fail("out of memory");
    at += len;
    for (;;) {
      size_t before = lp_buf_readable(cum);
      lp_buf *frame;
      lp_error err;
      int rc = lp_frame_decode(&d, cum, &frame, &err);
      if (rc == LP_FRAME_OK) {
        uint32_t fl = (uint32_t)lp_buf_readable(frame);
        put(t, "F", 1);
        put(t, &fl, sizeof fl);
        put(t, lp_buf_rptr(frame), fl);
        if (t->nframes < MAX_FRAMES) t->frames[t->nframes++] = frame;
        else lp_buf_unref(frame);
      } else if (rc == LP_FRAME_ERROR) {
        if (err.code != LP_ETOOLONG && err.code != LP_ECORRUPT) fail("an error that is neither TooLongFrame nor CorruptedFrame");
        put(t, err.code == LP_ETOOLONG ? "T" : "C", 1);
        if (!cfg->fail_fast) put(t, &err.length, sizeof err.length);
      }
      if (rc != LP_FRAME_OK && lp_buf_readable(cum) == before) break;
    }
    if (lp_buf_readable(cum) > bound) fail("the cumulation grew past its bound");
  }
  // Every frame kept still holds the bytes it was given.
  size_t off = 0, k = 0;
  while (off < t->len && k < t->nframes) {
    if (t->bytes[off] != 'F') {
      off += 1 + (t->bytes[off] == 'T' || t->bytes[off] == 'C' ? (cfg->fail_fast ? 0 : sizeof(long long)) : 0);
      continue;
    }
    uint32_t fl;
    memcpy(&fl, t->bytes + off + 1, sizeof fl);
    if (lp_buf_readable(t->frames[k]) != fl || memcmp(lp_buf_rptr(t->frames[k]), t->bytes + off + 1 + sizeof fl, fl) != 0)
      fail("a frame's bytes changed after later input");
    off += 1 + sizeof fl + fl;
    k++;
  }
  for (size_t i = 0; i < t->nframes; i++) lp_buf_unref(t->frames[i]);
  t->nframes = 0;
  if (cum) lp_buf_unref(cum);
  if (lp_pool_live(pool) != 0) fail("a buffer was not released");
  lp_pool_free(pool);
}

static bool same(const trace *a, const trace *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->bytes, b->bytes, a->len) == 0);
}

static void check_invariance(const lp_frame_config *cfg, const uint8_t *s, size_t n, uint32_t seed, size_t bound) {
  static trace whole, other;
  whole.len = other.len = 0;
  run(cfg, s, n, 0, seed, bound, &whole);
  if (n <= 2048) {
    other.len = 0;
    run(cfg, s, n, 1, seed, bound, &other);
    if (!same(&other, &whole)) fail("byte-by-byte reads decode differently");
  }
  other.len = 0;
  run(cfg, s, n, 2, seed, bound, &other);
  if (!same(&other, &whole)) fail("split reads decode differently");
}

static size_t text_stream(const uint8_t *in, size_t n, uint8_t *out) {
  if (n > MAX_STREAM) n = MAX_STREAM;
  for (size_t i = 0; i < n; i++) out[i] = (uint8_t)alphabet[in[i] & 7];
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t stream[MAX_STREAM];
  lp_frame_config c;
  memset(&c, 0, sizeof c);
  if (size < 16) return 0;
  const uint8_t *h = data; // 12 configuration bytes, 4 seed bytes
  uint32_t seed;
  memcpy(&seed, data + 12, sizeof seed);
  data += 16;
  size -= 16;
  size_t n, bound;
  switch (FUZZ_KIND) {
  case K_LINE:
    c.kind = LP_FRAME_LINE;
    c.max = 1 + h[0] % 64;
    c.strip_delimiter = h[1] & 1;
    c.fail_fast = h[1] & 2;
    n = text_stream(data, size, stream);
    bound = c.max + 1;
    break;
  case K_DELIMITER: {
    c.kind = LP_FRAME_DELIMITER;
    c.max = 1 + h[0] % 64;
    c.strip_delimiter = h[1] & 1;
    c.fail_fast = h[1] & 2;
    c.ndelims = 1 + h[2] % 3;
    size_t maxd = 0;
    for (int i = 0; i < c.ndelims; i++) {
      c.delim_len[i] = (uint8_t)(1 + (h[3 + 3 * i] & 3) % 3);
      for (int j = 0; j < c.delim_len[i]; j++) c.delims[i][j] = (uint8_t)alphabet[(h[3 + 3 * i + j] >> 2) & 7];
      if (c.delim_len[i] > maxd) maxd = c.delim_len[i];
    }
    n = text_stream(data, size, stream);
    bound = c.max + maxd - 1;
    break;
  }
  case K_LENGTH_FIELD: {
    static const int widths[] = {1, 2, 3, 4, 8};
    c.kind = LP_FRAME_LENGTH_FIELD;
    c.length_offset = h[0] % 4;
    c.length_size = widths[h[1] % 5];
    c.length_adjustment = (int8_t)h[2] % 16;
    c.initial_strip = h[3] % 16;
    c.max = c.length_offset + (size_t)c.length_size + h[4] % 256;
    c.big_endian = h[5] & 1;
    c.fail_fast = h[5] & 2;
    n = size < MAX_STREAM ? size : MAX_STREAM;
    memcpy(stream, data, n);
    bound = c.max;
    break;
  }
  case K_FIXED:
    c.kind = LP_FRAME_FIXED;
    c.max = 1 + h[0] % 32;
    n = size < MAX_STREAM ? size : MAX_STREAM;
    memcpy(stream, data, n);
    bound = c.max - 1;
    break;
  case K_PREPENDER: {
    static const int widths[] = {1, 2, 3, 4, 8};
    lp_prepender_config pc = {.length_size = widths[h[0] % 5], .big_endian = h[1] & 1,
                              .adjustment = (int8_t)h[2] % 8, .includes_length = h[1] & 2};
    n = size < MAX_STREAM ? size : MAX_STREAM;
    lp_pool *pool = lp_pool_new();
    lp_buf *out;
    lp_error err;
    int rc = lp_prepend_length(pool, &pc, lp_buf_from(pool, data, n), &out, &err);
    int64_t want = (int64_t)n + pc.adjustment + (pc.includes_length ? pc.length_size : 0);
    uint64_t maxv = pc.length_size == 8 ? (uint64_t)INT64_MAX : ((uint64_t)1 << (8 * pc.length_size)) - 1;
    if (rc != 0) {
      if (want >= 0 && (uint64_t)want <= maxv) fail("the prepender refused a length that fits");
    } else {
      if (want < 0 || (uint64_t)want > maxv) fail("the prepender wrote a length that does not fit");
      // The matching decoder gives the payload back.
      lp_frame_config dc = {.kind = LP_FRAME_LENGTH_FIELD, .max = LP_FRAME_LIMIT_MAX, .length_size = pc.length_size,
                            .big_endian = pc.big_endian, .fail_fast = true, .initial_strip = (size_t)pc.length_size,
                            .length_adjustment = -(int64_t)pc.adjustment - (pc.includes_length ? pc.length_size : 0)};
      lp_frame_decoder d;
      lp_frame_decoder_init(&d, &dc);
      lp_buf *frame;
      if (lp_frame_decode(&d, out, &frame, &err) != LP_FRAME_OK) fail("the prepender's output does not decode");
      if (lp_buf_readable(frame) != n || memcmp(lp_buf_rptr(frame), data, n) != 0) fail("the payload changed");
      if (lp_buf_readable(out) != 0) fail("bytes left after the frame");
      lp_buf_unref(frame);
      lp_buf_unref(out);
    }
    if (lp_pool_live(pool) != 0) fail("a buffer was not released");
    lp_pool_free(pool);
    return 0;
  }
  default: return 0;
  }
  if (lp_frame_config_check(&c, NULL, 0) != 0) return 0;
  check_invariance(&c, stream, n, seed, bound);
  return 0;
}
