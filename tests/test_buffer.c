// test_buffer.c: the core lp_buf and lp_pool, without Lua. Every case frees
// what it makes, so ASan's leak check at exit covers ownership too.
#include "buffer.h"
#include "check.h"

#include <errno.h>
#include <string.h>

#define PATTERN_LEN 1024

// bytes[i] = i * 7 + 1 (mod 256): no two neighbours alike, so a shift shows.
static void fill_pattern(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7 + 1);
}

static void test_new_from_unref(void) {
  lp_buf *b = lp_buf_new(NULL, 8);
  CHECK(b != NULL);
  CHECK(b->cap >= 8 && b->rd == 0 && b->wr == 0 && b->refs == 1 && b->flags == 0);
  CHECK(lp_buf_readable(b) == 0 && lp_buf_writable(b) == b->cap);
  CHECK(lp_buf_rptr(b) == b->data && lp_buf_wptr(b) == b->data);
  CHECK(lp_buf_ref(b) == b && b->refs == 2);
  lp_buf_unref(b); // one reference left: still usable
  CHECK(b->refs == 1 && lp_buf_write(b, "ab", 2) == 0 && lp_buf_readable(b) == 2);
  lp_buf_unref(b);

  lp_buf *z = lp_buf_new(NULL, 0); // zero capacity still gives a usable buffer
  CHECK(z != NULL && z->cap >= 1);
  lp_buf_unref(z);
  CHECK(lp_buf_new(NULL, LP_BUF_MAX + 1) == NULL);

  lp_buf *f = lp_buf_from(NULL, "hello", 5);
  CHECK(f != NULL && f->rd == 0 && f->wr == 5 && f->cap >= 5);
  CHECK(memcmp(lp_buf_rptr(f), "hello", 5) == 0);
  lp_buf_unref(f);
  lp_buf *e = lp_buf_from(NULL, NULL, 0);
  CHECK(e != NULL && lp_buf_readable(e) == 0);
  lp_buf_unref(e);
  lp_buf_unref(NULL); // allowed, does nothing
}

static void test_reserve_growth(void) {
  uint8_t pat[PATTERN_LEN];
  fill_pattern(pat, sizeof pat);

  // Growth keeps the bytes and both indexes.
  lp_buf *b = lp_buf_new(NULL, 64);
  CHECK(b->cap == 64);
  CHECK(lp_buf_write(b, pat, 60) == 0);
  uint8_t tmp[16];
  CHECK(lp_buf_read(b, tmp, 10) == 0 && memcmp(tmp, pat, 10) == 0);
  CHECK(lp_buf_reserve(b, 4) == 0 && b->cap == 64); // fits: nothing moves
  uint8_t *old = b->data;
  CHECK(lp_buf_reserve(b, 100) == 0);
  CHECK(b->data != old && b->cap >= 160 && lp_buf_writable(b) >= 100);
  CHECK(b->rd == 10 && b->wr == 60 && memcmp(b->data, pat, 60) == 0);
  CHECK(lp_buf_reserve(b, 0) == 0 && b->rd == 10 && b->wr == 60);
  // Growth through write: appended bytes follow the old ones.
  size_t cap = b->cap;
  CHECK(lp_buf_write(b, pat + 60, cap - 60 + 1) == 0);
  CHECK(b->cap > cap && b->wr == cap + 1 && b->rd == 10 && memcmp(b->data, pat, cap + 1) == 0);
  lp_buf_unref(b);

  // Most of the buffer was read: reserve discards instead of growing.
  b = lp_buf_new(NULL, 64);
  CHECK(lp_buf_write(b, pat, 64) == 0 && lp_buf_skip(b, 40) == 0);
  old = b->data;
  CHECK(lp_buf_reserve(b, 30) == 0);
  CHECK(b->data == old && b->cap == 64 && b->rd == 0 && b->wr == 24);
  CHECK(memcmp(b->data, pat + 40, 24) == 0 && lp_buf_writable(b) >= 30);
  lp_buf_unref(b);

  // Read part too small to be "most of the buffer": grows, rd kept.
  b = lp_buf_new(NULL, 64);
  CHECK(lp_buf_write(b, pat, 64) == 0 && lp_buf_skip(b, 20) == 0);
  CHECK(lp_buf_reserve(b, 10) == 0);
  CHECK(b->cap >= 74 && b->rd == 20 && b->wr == 64 && memcmp(b->data, pat, 64) == 0);
  lp_buf_unref(b);

  // Read part large but not enough to make room: grows.
  b = lp_buf_new(NULL, 64);
  CHECK(lp_buf_write(b, pat, 64) == 0 && lp_buf_skip(b, 40) == 0);
  CHECK(lp_buf_reserve(b, 50) == 0);
  CHECK(b->cap >= 114 && b->rd == 40 && b->wr == 64 && memcmp(b->data, pat, 64) == 0);
  lp_buf_unref(b);

  // A slice shares the storage: no discard under it (its bytes would shift).
  b = lp_buf_new(NULL, 64);
  CHECK(lp_buf_write(b, pat, 64) == 0 && lp_buf_skip(b, 40) == 0);
  lp_buf *s = lp_buf_slice(b, 0, 8);
  CHECK(s != NULL && lp_buf_reserve(b, 30) == 0);
  CHECK(b->cap > 64 && b->rd == 40 && b->wr == 64 && memcmp(b->data, pat, 64) == 0);
  CHECK(memcmp(s->data, pat, 8) == 0);
  lp_buf_unref(s);
  lp_buf_unref(b);

  // Past LP_BUF_MAX: refused before any allocation.
  b = lp_buf_from(NULL, "x", 1);
  CHECK(lp_buf_reserve(b, LP_BUF_MAX) == -ENOSPC);
  CHECK(lp_buf_reserve(b, SIZE_MAX) == -ENOSPC);
  CHECK(lp_buf_write(b, pat, SIZE_MAX) == -ENOSPC); // p is never read
  CHECK(b->wr == 1 && b->data[0] == 'x');
  lp_buf_unref(b);
}

static void test_pool_reuse(void) {
  lp_pool *pool = lp_pool_new();
  CHECK(pool != NULL && lp_pool_cached_bytes(pool) == 0);
  CHECK(lp_pool_cached_bytes(NULL) == 0);

  lp_buf *b = lp_buf_new(pool, 100);
  CHECK(b != NULL && b->cap == 128 && b->pool == pool);
  uint8_t *block = b->data;
  size_t before = lp_pool_cached_bytes(pool);
  lp_buf_unref(b);
  size_t cached = lp_pool_cached_bytes(pool);
  CHECK(cached >= before + 128);

  // Another class does not take the cached 128 B block.
  lp_buf *other = lp_buf_new(pool, 64);
  CHECK(other->cap == 64 && other->data != block && lp_pool_cached_bytes(pool) + 128 > cached);

  // Same class: the very block comes back and leaves the cache.
  lp_buf *again = lp_buf_new(pool, 65);
  CHECK(again->cap == 128 && again->data == block);
  CHECK(lp_pool_cached_bytes(pool) == before);
  lp_buf_unref(other);
  lp_buf_unref(again);

  // Growth returns the old block to the pool.
  lp_buf *g = lp_buf_new(pool, 1);
  CHECK(g->cap == 64);
  uint8_t *small = g->data;
  uint8_t pat[PATTERN_LEN];
  fill_pattern(pat, sizeof pat);
  CHECK(lp_buf_write(g, pat, 64) == 0);
  size_t c0 = lp_pool_cached_bytes(pool);
  CHECK(lp_buf_write(g, "!", 1) == 0 && g->cap == 128);
  size_t c1 = lp_pool_cached_bytes(pool);
  CHECK(c1 + 128 == c0 + 64); // took the cached 128 B block, gave back the 64 B one
  lp_buf *h = lp_buf_new(pool, 64);
  CHECK(h->data == small && lp_pool_cached_bytes(pool) < c1);
  CHECK(memcmp(g->data, pat, 64) == 0 && g->data[64] == '!');
  lp_buf_unref(h);
  lp_buf_unref(g);

  // from() draws from the pool too.
  lp_buf *f = lp_buf_from(pool, "abc", 3);
  CHECK(f->pool == pool && f->cap == 64);
  lp_buf_unref(f);
  lp_pool_free(pool); // with blocks cached: they go too (ASan checks)
}

static void test_pool_free_with_buffers_out(void) {
  lp_pool *pool = lp_pool_new();
  lp_buf *a = lp_buf_new(pool, 64);
  lp_buf *big = lp_buf_new(pool, 100000);
  lp_buf *f = lp_buf_from(pool, "abcdef", 6);
  lp_buf *s = lp_buf_slice(f, 1, 3);
  lp_buf *cached = lp_buf_new(pool, 64);
  lp_buf_unref(cached); // one block sits in the cache
  CHECK(a && big && f && s && lp_pool_cached_bytes(pool) >= 64);
  lp_pool_free(pool);

  // Everything still works; new storage no longer comes from the pool.
  uint8_t pat[PATTERN_LEN];
  fill_pattern(pat, sizeof pat);
  CHECK(lp_buf_write(a, pat, sizeof pat) == 0 && a->cap >= sizeof pat);
  CHECK(memcmp(lp_buf_rptr(a), pat, sizeof pat) == 0);
  lp_buf *c = lp_buf_copy(f, 0, 6); // struct and block from a closed pool
  CHECK(c != NULL && memcmp(c->data, "abcdef", 6) == 0);
  lp_buf *s2 = lp_buf_slice(f, 0, 2);
  CHECK(s2 != NULL && memcmp(s2->data, "ab", 2) == 0);
  CHECK(memcmp(s->data, "bcd", 3) == 0);
  CHECK(lp_buf_write(big, pat, 10) == 0 && big->cap == 100000);

  // Unref in an order that keeps the pool's last users apart.
  lp_buf_unref(f); // the slices keep its block
  CHECK(memcmp(s->data, "bcd", 3) == 0);
  lp_buf_unref(a);
  lp_buf_unref(c);
  lp_buf_unref(big);
  lp_buf_unref(s);
  // Last out: a struct made after the close (not the pool's) holding a pooled
  // block; dropping the block frees the pool, then the struct goes to free().
  lp_buf_unref(s2);
}

static void test_big_blocks(void) {
  lp_pool *pool = lp_pool_new();
  lp_buf *m = lp_buf_new(pool, 65536); // largest pooled class
  CHECK(m != NULL && m->cap == 65536);
  size_t before = lp_pool_cached_bytes(pool);
  lp_buf_unref(m);
  CHECK(lp_pool_cached_bytes(pool) >= before + 65536);

  lp_buf *b = lp_buf_new(pool, 65537); // malloc path: exact size, never cached
  CHECK(b != NULL && b->cap == 65537);
  size_t c = lp_pool_cached_bytes(pool);
  memset(b->data, 0xab, b->cap); // the whole capacity is addressable
  b->wr = b->cap;
  CHECK(lp_buf_write(b, "z", 1) == 0 && b->cap > 65537 && b->data[65536] == 0xab && b->data[65537] == 'z');
  lp_buf_unref(b);
  CHECK(lp_pool_cached_bytes(pool) < c + 65537); // neither block was cached

  // A pooled buffer grows past 64 KiB, into malloc storage.
  lp_buf *g = lp_buf_new(pool, 64);
  static uint8_t chunk[70000];
  fill_pattern(chunk, sizeof chunk);
  CHECK(lp_buf_write(g, chunk, sizeof chunk) == 0);
  CHECK(g->cap >= sizeof chunk && g->wr == sizeof chunk && memcmp(g->data, chunk, sizeof chunk) == 0);
  lp_buf_unref(g);
  lp_pool_free(pool);
}

static void test_slices(void) {
  lp_pool *pool = lp_pool_new();
  lp_buf *p = lp_buf_from(pool, "0123456789", 10);
  lp_buf *s = lp_buf_slice(p, 2, 5);
  CHECK(s != NULL && (s->flags & LP_BUF_SLICE) && s->data == p->data + 2);
  CHECK(s->cap == 5 && s->rd == 0 && s->wr == 5 && memcmp(lp_buf_rptr(s), "23456", 5) == 0);

  // Writes either way are seen by the other.
  CHECK(lp_buf_set_uint(s, 0, 1, true, 'X') == 0 && p->data[2] == 'X');
  CHECK(lp_buf_set_uint(p, 6, 1, true, 'Y') == 0 && s->data[4] == 'Y');
  s->wr = 0; // a slice writes within its capacity, never past it
  CHECK(lp_buf_write(s, "abcde", 5) == 0 && memcmp(p->data, "01abcde789", 10) == 0);
  CHECK(lp_buf_write(s, "f", 1) == -ENOSPC && lp_buf_reserve(s, 1) == -ENOSPC);
  CHECK(lp_buf_write_uint(s, 2, true, 1) == -ENOSPC && s->wr == 5);
  CHECK(lp_buf_reserve(s, 0) == 0);

  // Range checks: index and length within the parent's capacity.
  CHECK(lp_buf_slice(p, p->cap + 1, 0) == NULL);
  CHECK(lp_buf_slice(p, 2, p->cap - 1) == NULL);
  CHECK(lp_buf_slice(p, 0, SIZE_MAX) == NULL);
  CHECK(lp_buf_slice(p, 2, SIZE_MAX) == NULL); // index + len wraps around
  CHECK(lp_buf_slice(p, SIZE_MAX, 2) == NULL);
  lp_buf *empty = lp_buf_slice(p, p->cap, 0);
  CHECK(empty != NULL && empty->cap == 0 && lp_buf_readable(empty) == 0);
  lp_buf_unref(empty);

  // A slice of a slice still shares the block.
  lp_buf *ss = lp_buf_slice(s, 1, 2);
  CHECK(ss != NULL && ss->data == p->data + 3 && memcmp(ss->data, "bc", 2) == 0);
  CHECK(lp_buf_set_uint(ss, 0, 1, true, 'Q') == 0 && p->data[3] == 'Q' && s->data[1] == 'Q');

  // The parent grows to new storage; the slices keep the old.
  uint8_t *old = p->data;
  p->wr = p->cap;
  CHECK(lp_buf_write(p, "!", 1) == 0 && p->data != old);
  CHECK(memcmp(p->data, "01aQcde789", 10) == 0);
  CHECK(lp_buf_set_uint(p, 2, 1, true, '#') == 0 && s->data[0] == 'a'); // no longer shared
  CHECK(lp_buf_set_uint(s, 0, 1, true, '$') == 0 && p->data[2] == '#');
  CHECK(s->data == old + 2 && memcmp(s->data, "$Qcde", 5) == 0);

  // The parent goes; the slices' block stays alive.
  lp_buf_unref(p);
  CHECK(memcmp(s->data, "$Qcde", 5) == 0 && memcmp(ss->data, "Qc", 2) == 0);
  uint64_t v = 0;
  CHECK(lp_buf_read_uint(s, 2, true, &v) == 0 && v == 0x2451); // "$Q"
  lp_buf_unref(s);
  CHECK(ss->data[1] == 'c');
  lp_buf_unref(ss);
  lp_pool_free(pool);
}

// Hand-computed encodings of each width in both byte orders.
static const struct {
  int width;
  bool be;
  uint64_t v;      // the value as read back
  uint8_t enc[8];  // its bytes
} int_cases[] = {
    {1, true, 0x08, {0x08}},
    {1, false, 0x08, {0x08}},
    {1, true, 0xff, {0xff}},
    {2, true, 0x0708, {0x07, 0x08}},
    {2, false, 0x0708, {0x08, 0x07}},
    {2, true, 0xfffe, {0xff, 0xfe}},
    {2, false, 0xfffe, {0xfe, 0xff}},
    {3, true, 0x060708, {0x06, 0x07, 0x08}},
    {3, false, 0x060708, {0x08, 0x07, 0x06}},
    {3, true, 0xfffffe, {0xff, 0xff, 0xfe}},
    {3, false, 0x800001, {0x01, 0x00, 0x80}},
    {4, true, 0x05060708, {0x05, 0x06, 0x07, 0x08}},
    {4, false, 0x05060708, {0x08, 0x07, 0x06, 0x05}},
    {4, true, 0xdeadbeef, {0xde, 0xad, 0xbe, 0xef}},
    {4, false, 0xdeadbeef, {0xef, 0xbe, 0xad, 0xde}},
    {8, true, 0x0102030405060708, {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}},
    {8, false, 0x0102030405060708, {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01}},
    {8, true, 0x8000000000000001, {0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01}},
    {8, false, 0x8000000000000001, {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80}},
    {8, true, UINT64_MAX, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
};

static void test_integers(void) {
  for (size_t i = 0; i < LP_ARRAY_LEN(int_cases); i++) {
    int w = int_cases[i].width;
    bool be = int_cases[i].be;
    uint64_t v = int_cases[i].v;
    const uint8_t *enc = int_cases[i].enc;
    // Written with the high bits set: they must be cut off at the width.
    uint64_t wide = w == 8 ? v : v | ~(((uint64_t)1 << (w * 8)) - 1);

    lp_buf *b = lp_buf_new(NULL, 2);
    CHECK(lp_buf_write(b, "\xaa", 1) == 0);
    CHECK(lp_buf_write_uint(b, w, be, wide) == 0);
    CHECK(b->wr == 1 + (size_t)w && memcmp(b->data + 1, enc, (size_t)w) == 0);
    uint64_t out = 0;
    CHECK(lp_buf_get_uint(b, 1, w, be, &out) == 0 && out == v && b->rd == 0);
    CHECK(lp_buf_skip(b, 1) == 0);
    out = 0;
    CHECK(lp_buf_read_uint(b, w, be, &out) == 0 && out == v && b->rd == 1 + (size_t)w);
    CHECK(lp_buf_read_uint(b, w, be, &out) == -ERANGE && b->rd == 1 + (size_t)w);

    // set at an absolute index, up to the capacity, indexes untouched.
    size_t at = b->cap - (size_t)w;
    size_t rd = b->rd, wr = b->wr;
    CHECK(lp_buf_set_uint(b, at, w, be, wide) == 0 && memcmp(b->data + at, enc, (size_t)w) == 0);
    CHECK(b->rd == rd && b->wr == wr);
    CHECK(lp_buf_get_uint(b, at, w, be, &out) == (at + (size_t)w > wr ? -ERANGE : 0)); // get stops at wr
    b->wr = b->cap;
    CHECK(lp_buf_get_uint(b, at, w, be, &out) == 0 && out == v);

    // The raw codecs agree.
    uint8_t raw[8] = {0};
    lp_store_uint(raw, w, be, wide);
    CHECK(memcmp(raw, enc, (size_t)w) == 0 && lp_load_uint(enc, w, be) == v);
    lp_buf_unref(b);
  }

  // Opposite order reads the bytes reversed.
  lp_buf *b = lp_buf_from(NULL, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
  uint64_t out = 0;
  CHECK(lp_buf_get_uint(b, 0, 4, true, &out) == 0 && out == 0x01020304);
  CHECK(lp_buf_get_uint(b, 0, 4, false, &out) == 0 && out == 0x04030201);
  CHECK(lp_buf_get_uint(b, 5, 3, true, &out) == 0 && out == 0x060708);
  CHECK(lp_buf_get_uint(b, 5, 3, false, &out) == 0 && out == 0x080706);
  CHECK(lp_buf_get_uint(b, 0, 8, false, &out) == 0 && out == 0x0807060504030201);
  CHECK(lp_buf_read_uint(b, 2, false, &out) == 0 && out == 0x0201 && b->rd == 2);
  CHECK(lp_buf_read_uint(b, 1, true, &out) == 0 && out == 0x03 && b->rd == 3);
  lp_buf_unref(b);
}

static void test_index_of(void) {
  lp_buf *b = lp_buf_from(NULL, "hello world", 11);
  size_t wr = b->wr;
  CHECK(lp_buf_index_of(b, 0, wr, "h", 1) == 0);        // start
  CHECK(lp_buf_index_of(b, 0, wr, "hello", 5) == 0);
  CHECK(lp_buf_index_of(b, 0, wr, "o w", 3) == 4);      // middle
  CHECK(lp_buf_index_of(b, 0, wr, "d", 1) == 10);       // last byte
  CHECK(lp_buf_index_of(b, 0, wr, "world", 5) == 6);    // ends at the end
  CHECK(lp_buf_index_of(b, 0, wr, "hello world", 11) == 0);
  CHECK(lp_buf_index_of(b, 0, wr, "xyz", 3) == -1);     // absent
  CHECK(lp_buf_index_of(b, 0, wr, "worldz", 6) == -1);  // runs off the end
  CHECK(lp_buf_index_of(b, 0, wr, "hello world!", 12) == -1); // longer than the buffer
  CHECK(lp_buf_index_of(b, 0, 3, "hell", 4) == -1);     // longer than the range
  CHECK(lp_buf_index_of(b, 0, wr, "", 0) == 0);         // empty needle: at from
  CHECK(lp_buf_index_of(b, 4, wr, "", 0) == 4);
  CHECK(lp_buf_index_of(b, 5, 4, "", 0) == -1);
  lp_buf_unref(b);

  // Partial matches just before the real one.
  b = lp_buf_from(NULL, "abababc", 7);
  CHECK(lp_buf_index_of(b, 0, b->wr, "ababc", 5) == 2);
  lp_buf_unref(b);
  b = lp_buf_from(NULL, "aaaab", 5);
  CHECK(lp_buf_index_of(b, 0, b->wr, "aab", 3) == 2);
  CHECK(lp_buf_index_of(b, 0, b->wr, "aaab", 4) == 1);
  lp_buf_unref(b);

  // from/to limits and absolute indexes.
  b = lp_buf_from(NULL, "abcabc", 6);
  CHECK(lp_buf_index_of(b, 0, 6, "abc", 3) == 0);
  CHECK(lp_buf_index_of(b, 1, 6, "abc", 3) == 3);
  CHECK(lp_buf_index_of(b, 1, 5, "abc", 3) == -1); // the match at 3 ends past to
  CHECK(lp_buf_index_of(b, 1, 6, "a", 1) == 3);
  CHECK(lp_buf_index_of(b, 0, 2, "c", 1) == -1);
  CHECK(lp_buf_index_of(b, 4, 6, "bc", 2) == 4);
  CHECK(lp_buf_index_of(b, 3, 3, "a", 1) == -1); // empty range
  CHECK(lp_buf_index_of(b, 6, 6, "a", 1) == -1);
  CHECK(lp_buf_index_of(b, 100, 200, "a", 1) == -1);
  CHECK(lp_buf_index_of(b, 0, 1000, "c", 1) == 2); // to clamps to wr
  CHECK(lp_buf_skip(b, 3) == 0 && lp_buf_index_of(b, b->rd, b->wr, "a", 1) == 3);
  CHECK(lp_buf_index_of(b, 0, b->wr, "a", 1) == 0); // from may lie below rd
  // Bytes past wr are not searched.
  CHECK(lp_buf_set_uint(b, 6, 1, true, 'z') == 0 && b->cap > 6);
  CHECK(lp_buf_index_of(b, 0, b->cap, "z", 1) == -1);
  CHECK(lp_buf_index_of(b, 0, b->cap, "cz", 2) == -1);
  lp_buf_unref(b);

  // Bytes with the high bit and zero bytes.
  b = lp_buf_from(NULL, "a\0\xff\r\n\xff", 6);
  CHECK(lp_buf_index_of(b, 0, b->wr, "\0", 1) == 1);
  CHECK(lp_buf_index_of(b, 0, b->wr, "\xff", 1) == 2);
  CHECK(lp_buf_index_of(b, 3, b->wr, "\xff", 1) == 5);
  CHECK(lp_buf_index_of(b, 0, b->wr, "\r\n", 2) == 3);
  lp_buf_unref(b);
}

static void test_discard_read(void) {
  lp_buf *b = lp_buf_from(NULL, "abcdef", 6);
  size_t cap = b->cap;
  lp_buf_discard_read(b); // nothing read: no change
  CHECK(b->rd == 0 && b->wr == 6 && memcmp(b->data, "abcdef", 6) == 0);
  CHECK(lp_buf_skip(b, 2) == 0);
  lp_buf_discard_read(b);
  CHECK(b->rd == 0 && b->wr == 4 && b->cap == cap && memcmp(b->data, "cdef", 4) == 0);
  CHECK(lp_buf_writable(b) == cap - 4);
  CHECK(lp_buf_skip(b, 4) == 0);
  lp_buf_discard_read(b); // all read
  CHECK(b->rd == 0 && b->wr == 0);
  lp_buf_unref(b);
}

static void test_copy(void) {
  lp_pool *pool = lp_pool_new();
  lp_buf *b = lp_buf_from(pool, "abcdef", 6);
  lp_buf *c = lp_buf_copy(b, 1, 3);
  CHECK(c != NULL && !(c->flags & LP_BUF_SLICE) && c->data != b->data + 1);
  CHECK(c->rd == 0 && c->wr == 3 && memcmp(c->data, "bcd", 3) == 0);
  CHECK(lp_buf_set_uint(c, 0, 1, true, 'X') == 0 && b->data[1] == 'b'); // independent
  CHECK(lp_buf_set_uint(b, 2, 1, true, 'Y') == 0 && c->data[1] == 'c');
  CHECK(lp_buf_write(c, "123", 3) == 0 && memcmp(c->data, "Xcd123", 6) == 0); // a copy may grow
  lp_buf_unref(c);

  lp_buf *z = lp_buf_copy(b, 6, 0);
  CHECK(z != NULL && lp_buf_readable(z) == 0);
  lp_buf_unref(z);
  CHECK(lp_buf_copy(b, b->cap + 1, 0) == NULL);
  CHECK(lp_buf_copy(b, 1, b->cap) == NULL);
  CHECK(lp_buf_copy(b, 1, SIZE_MAX) == NULL); // index + len wraps around

  lp_buf *s = lp_buf_slice(b, 2, 3); // a copy of a slice is not a slice
  lp_buf *cs = lp_buf_copy(s, 0, 3);
  lp_buf_unref(b);
  lp_buf_unref(s);
  CHECK(cs != NULL && !(cs->flags & LP_BUF_SLICE) && memcmp(cs->data, "Yde", 3) == 0);
  CHECK(lp_buf_write(cs, "!", 1) == 0);
  lp_buf_unref(cs);
  lp_pool_free(pool);
}

static void test_errors(void) {
  lp_buf *b = lp_buf_from(NULL, "abcd", 4); // cap 64, wr 4
  uint64_t out = 0x55;
  uint8_t tmp[8];
  // get: index + width <= wr, even when the capacity is larger.
  CHECK(lp_buf_get_uint(b, 3, 2, true, &out) == -ERANGE && out == 0x55);
  CHECK(lp_buf_get_uint(b, 4, 1, true, &out) == -ERANGE);
  CHECK(lp_buf_get_uint(b, 5, 1, true, &out) == -ERANGE);
  CHECK(lp_buf_get_uint(b, SIZE_MAX, 1, true, &out) == -ERANGE);
  CHECK(lp_buf_get_uint(b, 0, 8, true, &out) == -ERANGE);
  CHECK(lp_buf_get_uint(b, 0, 4, true, &out) == 0 && out == 0x61626364);
  // set: index + width <= cap.
  CHECK(lp_buf_set_uint(b, b->cap - 1, 2, true, 0) == -ERANGE);
  CHECK(lp_buf_set_uint(b, b->cap, 1, true, 0) == -ERANGE);
  CHECK(lp_buf_set_uint(b, SIZE_MAX, 1, true, 0) == -ERANGE);
  CHECK(lp_buf_set_uint(b, SIZE_MAX - 2, 4, true, 0) == -ERANGE);
  CHECK(lp_buf_set_uint(b, b->cap - 8, 8, true, 0) == 0);
  // read/skip: within the readable bytes, indexes untouched on failure.
  CHECK(lp_buf_read(b, tmp, 5) == -ERANGE && b->rd == 0);
  CHECK(lp_buf_skip(b, 5) == -ERANGE && b->rd == 0);
  CHECK(lp_buf_read_uint(b, 8, true, &out) == -ERANGE && b->rd == 0);
  CHECK(lp_buf_read(b, tmp, 4) == 0 && memcmp(tmp, "abcd", 4) == 0 && b->rd == 4);
  CHECK(lp_buf_read(b, tmp, 1) == -ERANGE && lp_buf_skip(b, 1) == -ERANGE);
  CHECK(lp_buf_read(b, tmp, 0) == 0 && lp_buf_skip(b, 0) == 0);
  // Width: only 1, 2, 3, 4, 8.
  static const int bad_widths[] = {0, 5, 6, 7, 9, 16, -1};
  for (size_t i = 0; i < LP_ARRAY_LEN(bad_widths); i++) {
    int w = bad_widths[i];
    size_t rd = b->rd, wr = b->wr;
    CHECK(lp_buf_get_uint(b, 0, w, true, &out) == -EINVAL);
    CHECK(lp_buf_set_uint(b, 0, w, false, 0) == -EINVAL);
    CHECK(lp_buf_read_uint(b, w, true, &out) == -EINVAL);
    CHECK(lp_buf_write_uint(b, w, false, 0) == -EINVAL);
    CHECK(b->rd == rd && b->wr == wr);
  }
  // A slice cannot grow.
  lp_buf *s = lp_buf_slice(b, 0, 4);
  CHECK(lp_buf_reserve(s, 1) == -ENOSPC);
  CHECK(lp_buf_write(s, "x", 1) == -ENOSPC);
  CHECK(lp_buf_write_uint(s, 1, true, 1) == -ENOSPC);
  CHECK(lp_buf_write_uint(s, 5, true, 1) == -EINVAL); // the width is checked first
  CHECK(s->wr == 4 && s->cap == 4);
  lp_buf_unref(s);
  lp_buf_unref(b);
}

// Writing bytes that overlap the destination, through a slice of the same
// storage (Lua: buf:writeBytes(buf:slice(...))): must behave like memmove.
static void test_write_overlapping(void) {
  uint8_t pat[PATTERN_LEN];
  fill_pattern(pat, sizeof pat);
  lp_buf *b = lp_buf_new(NULL, 4096);
  memcpy(b->data, pat, sizeof pat);
  b->wr = 10;
  lp_buf *s = lp_buf_slice(b, 2, 200); // covers [2, 202), the write goes to [10, 210)
  CHECK(lp_buf_write(b, s->data, 200) == 0 && b->wr == 210);
  CHECK(memcmp(b->data, pat, 10) == 0 && memcmp(b->data + 10, pat + 2, 200) == 0);
  lp_buf_unref(s);
  lp_buf_unref(b);
}

// The discard-instead-of-grow rule at its edges: the read part must be at
// least half the capacity and at least what is missing; a slice forbids it.
static void test_discard_boundaries(void) {
  uint8_t pat[PATTERN_LEN];
  fill_pattern(pat, sizeof pat);
  static const struct {
    size_t rd, n;  // read part, bytes asked for (64 written into 64)
    bool discards;
  } cases[] = {
      {32, 20, true},  // rd == cap/2
      {31, 20, false}, // rd == cap/2 - 1
      {40, 40, true},  // rd == exactly what is missing
      {40, 41, false}, // one byte more than discarding frees
      {64, 64, true},  // everything read
  };
  for (size_t i = 0; i < LP_ARRAY_LEN(cases); i++) {
    size_t rd = cases[i].rd, n = cases[i].n;
    lp_buf *b = lp_buf_from(NULL, pat, 64);
    CHECK(b->cap == 64 && lp_buf_skip(b, rd) == 0);
    uint8_t *old = b->data;
    CHECK(lp_buf_reserve(b, n) == 0 && lp_buf_writable(b) >= n);
    if (cases[i].discards) {
      CHECK(b->data == old && b->cap == 64 && b->rd == 0 && b->wr == 64 - rd);
      CHECK(memcmp(b->data, pat + rd, 64 - rd) == 0);
    } else {
      CHECK(b->data != old && b->cap == 128 && b->rd == rd && b->wr == 64);
      CHECK(memcmp(b->data, pat, 64) == 0);
    }
    lp_buf_unref(b);
  }
}

// Exact pool accounting: the same struct and block come back; a block shared
// with a slice stays out of the cache until its last view goes; the cache of
// one class is bounded.
static void test_pool_accounting(void) {
  lp_pool *pool = lp_pool_new();
  lp_buf *b = lp_buf_new(pool, 64);
  lp_buf *strct = b;
  uint8_t *block = b->data;
  lp_buf_unref(b);
  CHECK(lp_pool_cached_bytes(pool) == 64 && lp_pool_live(pool) == 0);
  b = lp_buf_new(pool, 10);
  CHECK(b == strct && b->data == block && lp_pool_cached_bytes(pool) == 0 && lp_pool_live(pool) == 2);
  CHECK(b->rd == 0 && b->wr == 0 && b->refs == 1 && b->flags == 0);

  // b grows while a slice holds its first block: nothing returns to the cache.
  CHECK(lp_buf_write(b, "0123456789", 10) == 0);
  lp_buf *s = lp_buf_slice(b, 2, 3);
  uint8_t big[100] = {0};
  CHECK(lp_buf_write(b, big, sizeof big) == 0 && b->cap == 128 && b->data != block);
  CHECK(lp_pool_cached_bytes(pool) == 0);
  lp_buf_unref(b); // its 128 B block is cached; the 64 B one is still the slice's
  CHECK(lp_pool_cached_bytes(pool) == 128 && memcmp(s->data, "234", 3) == 0);
  lp_buf_unref(s);
  CHECK(lp_pool_cached_bytes(pool) == 128 + 64 && lp_pool_live(pool) == 0);

  // Many blocks of one class freed at once: the cache keeps some, not all.
  enum { MANY = 200 };
  lp_buf *many[MANY];
  for (int i = 0; i < MANY; i++) many[i] = lp_buf_new(pool, 64);
  CHECK(lp_pool_cached_bytes(pool) == 128);
  for (int i = 0; i < MANY; i++) lp_buf_unref(many[i]);
  size_t kept = lp_pool_cached_bytes(pool) - 128;
  CHECK(kept >= 64 && kept < (size_t)MANY * 64 && kept % 64 == 0);
  CHECK(lp_pool_live(pool) == 0);
  lp_pool_free(pool);
}

// lp_buf_discard_read while a slice shares the storage: the buffer moves to a
// fresh block of the same capacity and the slice keeps the old one, bytes
// unchanged. A slice discarding its own read part shifts within the shared
// block (its bytes are its parent's, as in Netty).
static void test_discard_under_slice(void) {
  lp_pool *pool = lp_pool_new();
  lp_buf *b = lp_buf_from(pool, "abcdef", 6);
  lp_buf *s = lp_buf_slice(b, 0, 3);
  CHECK(b && s && lp_buf_skip(b, 3) == 0);
  uint8_t *old = b->data;
  size_t cap = b->cap, live = lp_pool_live(pool); // 2 structs, 1 block
  lp_buf_discard_read(b);
  CHECK(b->rd == 0 && b->wr == 3 && b->cap == cap && memcmp(b->data, "def", 3) == 0);
  CHECK(b->data != old && s->data == old && memcmp(s->data, "abc", 3) == 0);
  CHECK(lp_pool_live(pool) == live + 1); // the new block is out, the old one still the slice's
  CHECK(lp_buf_set_uint(b, 0, 1, true, 'X') == 0 && s->data[0] == 'a'); // no longer shared
  lp_buf_unref(s); // its struct and, as the last user, the old block: back to the cache
  CHECK(lp_pool_live(pool) == live - 1 && lp_pool_cached_bytes(pool) == cap);

  // Everything read: still a fresh block, the slice's bytes intact.
  s = lp_buf_slice(b, 0, 3);
  old = b->data;
  CHECK(s && lp_buf_skip(b, 3) == 0);
  lp_buf_discard_read(b);
  CHECK(b->rd == 0 && b->wr == 0 && b->data != old && memcmp(s->data, "Xef", 3) == 0);
  lp_buf_unref(s);

  // A second reference to the buffer itself is no slice: shift in place.
  CHECK(lp_buf_write(b, "uvwxyz", 6) == 0 && lp_buf_skip(b, 4) == 0);
  lp_buf_ref(b);
  old = b->data;
  lp_buf_discard_read(b);
  CHECK(b->data == old && b->rd == 0 && b->wr == 2 && memcmp(b->data, "yz", 2) == 0);
  lp_buf_unref(b);

  // A slice's own discard shifts the bytes its parent sees.
  s = lp_buf_slice(b, 0, 2);
  CHECK(s && lp_buf_skip(s, 1) == 0);
  lp_buf_discard_read(s);
  CHECK(s->data == b->data && s->rd == 0 && s->wr == 1 && b->data[0] == 'z');
  lp_buf_unref(s);
  lp_buf_unref(b);
  CHECK(lp_pool_live(pool) == 0);
  lp_pool_free(pool);
}

// index_of on a full block with a near-match in its last bytes: the search
// must stop at the end (ASan sees any read past the block).
static void test_index_of_at_block_end(void) {
  lp_buf *b = lp_buf_new(NULL, 64);
  CHECK(b->cap == 64);
  memset(b->data, 'x', 64);
  b->data[62] = 'a';
  b->data[63] = 'b';
  b->wr = 64;
  CHECK(lp_buf_index_of(b, 0, 64, "ac", 2) == -1);   // near-match at cap - 2
  CHECK(lp_buf_index_of(b, 0, 64, "abc", 3) == -1);  // runs off the block
  CHECK(lp_buf_index_of(b, 0, 64, "b", 1) == 63);
  CHECK(lp_buf_index_of(b, 0, 64, "ab", 2) == 62);
  CHECK(lp_buf_index_of(b, 60, 64, "xxab", 4) == 60);
  lp_buf_unref(b);
}

int main(void) {
  test_new_from_unref();
  test_reserve_growth();
  test_pool_reuse();
  test_pool_free_with_buffers_out();
  test_big_blocks();
  test_slices();
  test_integers();
  test_index_of();
  test_discard_read();
  test_copy();
  test_errors();
  test_write_overlapping();
  test_discard_boundaries();
  test_pool_accounting();
  test_discard_under_slice();
  test_index_of_at_block_end();
  return check_report();
}
