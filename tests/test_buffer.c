// test_buffer.c: lp_buf and lp_pool without Lua: creation and references,
// growth (and the discard-instead-of-grow path of lp_buf_reserve), the pool's
// block cache, a pool freed while buffers are out, blocks above 64 KiB,
// slices sharing storage, integers of every width in both byte orders against
// hand-written bytes, index_of, discard_read, copy, and the error codes.
// ASan (make test) checks that every block and struct goes exactly once.
#include "buffer.h"
#include "check.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define PATTERN_LEN 200000

static uint8_t pattern[PATTERN_LEN]; // pattern[i] = i * 7 + (i >> 8): no short period

// b's bytes at index i are p[0..n).
static bool bytes_at(const lp_buf *b, size_t i, const void *p, size_t n) {
  return i <= b->cap && n <= b->cap - i && memcmp(b->data + i, p, n) == 0;
}

static void test_new_from_unref(void) {
  lp_buf *b = lp_buf_new(NULL, 10);
  CHECK(b != NULL);
  CHECK(b->cap == 64); // the smallest block class
  CHECK(b->rd == 0 && b->wr == 0 && b->refs == 1 && b->flags == 0 && b->pool == NULL);
  CHECK(lp_buf_readable(b) == 0 && lp_buf_writable(b) == 64);
  CHECK(lp_buf_rptr(b) == b->data && lp_buf_wptr(b) == b->data);
  lp_buf_unref(b);

  b = lp_buf_new(NULL, 0); // still a usable block
  CHECK(b != NULL && b->cap >= 1 && lp_buf_writable(b) == b->cap);
  lp_buf_unref(b);

  CHECK(lp_buf_new(NULL, LP_BUF_MAX + 1) == NULL);

  lp_pool *pool = lp_pool_new();
  CHECK(pool != NULL && lp_pool_cached_bytes(pool) == 0);
  b = lp_buf_from(pool, "hello", 5);
  CHECK(b != NULL && b->pool == pool);
  CHECK(b->rd == 0 && b->wr == 5 && b->cap == 64 && bytes_at(b, 0, "hello", 5));
  CHECK(lp_buf_wptr(b) == b->data + 5);

  // A second reference keeps it: the block returns to the pool only with the last.
  CHECK(lp_buf_ref(b) == b && b->refs == 2);
  lp_buf_unref(b);
  CHECK(b->refs == 1 && lp_pool_cached_bytes(pool) == 0 && bytes_at(b, 0, "hello", 5));
  lp_buf_unref(b);
  CHECK(lp_pool_cached_bytes(pool) == 64);

  b = lp_buf_from(pool, NULL, 0); // empty: p is not read
  CHECK(b != NULL && lp_buf_readable(b) == 0);
  lp_buf_unref(b);
  lp_buf_unref(NULL); // allowed, like free(NULL)
  lp_pool_free(pool);
}

static void test_reserve_growth(void) {
  // Growth keeps the bytes and both indexes.
  lp_buf *b = lp_buf_from(NULL, pattern, 64);
  CHECK(b->cap == 64 && lp_buf_writable(b) == 0);
  CHECK(lp_buf_skip(b, 10) == 0);
  CHECK(lp_buf_reserve(b, 0) == 0 && b->cap == 64);
  CHECK(lp_buf_reserve(b, 1) == 0); // rd 10 < cap/2: grows
  CHECK(b->cap == 128 && b->rd == 10 && b->wr == 64 && bytes_at(b, 0, pattern, 64));
  CHECK(lp_buf_writable(b) == 64);
  uint8_t *before = b->data;
  CHECK(lp_buf_reserve(b, 64) == 0 && b->data == before && b->cap == 128); // fits: no move
  lp_buf_unref(b);

  // Many writes: doubling, contents intact past the pooled sizes.
  b = lp_buf_new(NULL, 1);
  for (size_t off = 0; off < 100000; off += 1000) CHECK(lp_buf_write(b, pattern + off, 1000) == 0);
  CHECK(b->wr == 100000 && b->rd == 0 && b->cap == 131072 && bytes_at(b, 0, pattern, 100000));
  lp_buf_unref(b);

  // Most of it was read and discarding alone makes room: no new block.
  b = lp_buf_from(NULL, pattern, 64);
  lp_buf_skip(b, 40);
  before = b->data;
  CHECK(lp_buf_reserve(b, 30) == 0);
  CHECK(b->data == before && b->cap == 64 && b->rd == 0 && b->wr == 24 && bytes_at(b, 0, pattern + 40, 24));
  CHECK(lp_buf_writable(b) == 40);
  lp_buf_unref(b);

  // The boundary: rd == cap/2 discards, rd == cap/2 - 1 grows.
  b = lp_buf_from(NULL, pattern, 64);
  lp_buf_skip(b, 32);
  CHECK(lp_buf_reserve(b, 20) == 0 && b->cap == 64 && b->rd == 0 && b->wr == 32 && bytes_at(b, 0, pattern + 32, 32));
  lp_buf_unref(b);
  b = lp_buf_from(NULL, pattern, 64);
  lp_buf_skip(b, 31);
  CHECK(lp_buf_reserve(b, 20) == 0 && b->cap == 128 && b->rd == 31 && b->wr == 64 && bytes_at(b, 0, pattern, 64));
  lp_buf_unref(b);

  // Discarding would not make enough room: grows, indexes kept. Exactly enough discards.
  b = lp_buf_from(NULL, pattern, 64);
  lp_buf_skip(b, 40);
  CHECK(lp_buf_reserve(b, 41) == 0 && b->cap == 128 && b->rd == 40 && b->wr == 64 && bytes_at(b, 0, pattern, 64));
  lp_buf_unref(b);
  b = lp_buf_from(NULL, pattern, 64);
  lp_buf_skip(b, 40);
  CHECK(lp_buf_reserve(b, 40) == 0 && b->cap == 64 && b->rd == 0 && b->wr == 24 && lp_buf_writable(b) == 40);
  lp_buf_unref(b);

  // A slice shares the storage: moving bytes under it is not allowed, so it grows.
  b = lp_buf_from(NULL, pattern, 64);
  lp_buf *s = lp_buf_slice(b, 40, 24);
  lp_buf_skip(b, 40);
  CHECK(lp_buf_reserve(b, 30) == 0 && b->cap == 128 && b->rd == 40 && b->wr == 64);
  CHECK(bytes_at(s, 0, pattern + 40, 24) && bytes_at(b, 40, pattern + 40, 24));
  lp_buf_unref(s);
  lp_buf_unref(b);

  // Past LP_BUF_MAX: refused before allocating anything.
  b = lp_buf_from(NULL, "0123456789", 10);
  CHECK(lp_buf_reserve(b, LP_BUF_MAX + 1) == -ENOSPC);
  CHECK(lp_buf_reserve(b, LP_BUF_MAX - 9) == -ENOSPC); // wr 10 + n > max
  CHECK(lp_buf_reserve(b, SIZE_MAX) == -ENOSPC);        // no wrap-around
  CHECK(lp_buf_write(b, pattern, SIZE_MAX) == -ENOSPC);
  CHECK(b->cap == 64 && b->wr == 10 && bytes_at(b, 0, "0123456789", 10));
  lp_buf_unref(b);

  // write copies from storage that overlaps its destination (a slice of the same bytes).
  b = lp_buf_from(NULL, "0123456789", 10);
  s = lp_buf_slice(b, 2, 10);
  s->wr = 0;
  CHECK(lp_buf_write(s, b->data, 8) == 0 && s->wr == 8);
  CHECK(bytes_at(b, 0, "0101234567", 10));
  lp_buf_unref(s);
  lp_buf_unref(b);
}

static void test_pool_reuse(void) {
  lp_pool *pool = lp_pool_new();
  lp_buf *b = lp_buf_new(pool, 100);
  CHECK(b->cap == 128 && lp_pool_cached_bytes(pool) == 0);
  uint8_t *block = b->data;
  lp_buf *strct = b;
  lp_buf_unref(b);
  CHECK(lp_pool_cached_bytes(pool) == 128);

  // The same class takes it: the same block (and struct) comes back, fresh indexes.
  b = lp_buf_new(pool, 65);
  CHECK(b->data == block && b == strct && b->cap == 128 && lp_pool_cached_bytes(pool) == 0);
  CHECK(b->rd == 0 && b->wr == 0 && b->refs == 1 && b->flags == 0);
  lp_buf_unref(b);

  // Another class does not.
  lp_buf *other = lp_buf_new(pool, 64);
  CHECK(other->cap == 64 && other->data != block && lp_pool_cached_bytes(pool) == 128);

  // Blocks of two classes cached; each request takes its own class.
  lp_buf_unref(other);
  CHECK(lp_pool_cached_bytes(pool) == 128 + 64);
  b = lp_buf_new(pool, 128);
  CHECK(b->data == block && lp_pool_cached_bytes(pool) == 64);

  // Growing returns the old block to the pool.
  CHECK(lp_buf_write(b, pattern, 129) == 0 && b->cap == 256 && lp_pool_cached_bytes(pool) == 64 + 128);
  lp_buf *again = lp_buf_new(pool, 128);
  CHECK(again->data == block && lp_pool_cached_bytes(pool) == 64);
  lp_buf_unref(again);
  lp_buf_unref(b);
  CHECK(lp_pool_cached_bytes(pool) == 64 + 128 + 256);

  // The cache is bounded: of many blocks freed at once, not all are kept.
  enum { MANY = 200 };
  lp_buf *many[MANY];
  size_t cached_before = lp_pool_cached_bytes(pool);
  for (int i = 0; i < MANY; i++) many[i] = lp_buf_new(pool, 64);
  for (int i = 0; i < MANY; i++) lp_buf_unref(many[i]);
  size_t kept = lp_pool_cached_bytes(pool) - (cached_before - 64);
  CHECK(kept >= 64 && kept < (size_t)MANY * 64 && kept % 64 == 0);
  lp_pool_free(pool); // frees every cached block (ASan: no leak)
}

static void test_pool_free_live(void) {
  lp_pool_free(NULL);

  lp_pool *pool = lp_pool_new();
  lp_buf *a = lp_buf_from(pool, "abcdef", 6);
  lp_buf *s = lp_buf_slice(a, 1, 3);
  lp_buf *c = lp_buf_new(pool, 1000);
  lp_buf_unref(lp_buf_new(pool, 64)); // one cached block, freed with the pool
  lp_pool_free(pool);

  // The buffers still work; what they allocate now comes from malloc.
  CHECK(bytes_at(a, 0, "abcdef", 6) && bytes_at(s, 0, "bcd", 3));
  CHECK(lp_buf_write(a, pattern, 100) == 0 && a->cap == 128 && bytes_at(a, 0, "abcdef", 6));
  lp_buf *cp = lp_buf_copy(a, 0, 6);
  CHECK(cp != NULL && cp->pool == NULL && bytes_at(cp, 0, "abcdef", 6));
  lp_buf *s2 = lp_buf_slice(c, 0, 10);
  CHECK(s2 != NULL && s2->pool == NULL);
  CHECK(lp_buf_write(c, "xyz", 3) == 0 && bytes_at(s2, 0, "xyz", 3));
  CHECK(bytes_at(s, 0, "bcd", 3)); // a moved; s kept the old block

  // The last one out frees the pool (ASan: no leak, no use after free).
  lp_buf_unref(a);
  lp_buf_unref(cp);
  lp_buf_unref(c);
  CHECK(bytes_at(s2, 0, "xyz", 3));
  lp_buf_unref(s2);
  CHECK(bytes_at(s, 0, "bcd", 3));
  lp_buf_unref(s);

  // A pool with nothing out goes at once.
  pool = lp_pool_new();
  lp_buf_unref(lp_buf_new(pool, 64));
  lp_pool_free(pool);
}

static void test_big_blocks(void) {
  lp_pool *pool = lp_pool_new();
  lp_buf *b = lp_buf_new(pool, 65536); // the largest pooled class
  CHECK(b->cap == 65536);
  lp_buf_unref(b);
  CHECK(lp_pool_cached_bytes(pool) == 65536);

  b = lp_buf_new(pool, 65537); // malloc: exact size, not the cached block, not cached after
  CHECK(b != NULL && b->cap == 65537 && lp_pool_cached_bytes(pool) == 65536);
  memcpy(b->data, pattern, 65537);
  CHECK(bytes_at(b, 0, pattern, 65537));
  lp_buf_unref(b);
  CHECK(lp_pool_cached_bytes(pool) == 65536);

  // Growing out of the pool: the pooled block goes back, the new one is malloc'd.
  b = lp_buf_new(pool, 40000);
  CHECK(b->cap == 65536 && lp_pool_cached_bytes(pool) == 0);
  CHECK(lp_buf_write(b, pattern, 70000) == 0);
  CHECK(b->cap == 131072 && bytes_at(b, 0, pattern, 70000) && lp_pool_cached_bytes(pool) == 65536);
  lp_buf_unref(b);
  CHECK(lp_pool_cached_bytes(pool) == 65536);
  lp_pool_free(pool);
}

static void test_slices(void) {
  lp_pool *pool = lp_pool_new();
  lp_buf *p = lp_buf_from(pool, "0123456789", 10);
  lp_buf *s = lp_buf_slice(p, 2, 5);
  CHECK(s != NULL && s->data == p->data + 2 && s->cap == 5 && s->rd == 0 && s->wr == 5);
  CHECK((s->flags & LP_BUF_SLICE) && !(p->flags & LP_BUF_SLICE) && s->refs == 1);
  CHECK(bytes_at(s, 0, "23456", 5));

  // Both ways: a write through one is seen by the other.
  CHECK(lp_buf_set_uint(s, 0, 1, true, 'X') == 0 && bytes_at(p, 0, "01X3456789", 10));
  CHECK(lp_buf_set_uint(p, 3, 1, true, 'Y') == 0 && bytes_at(s, 0, "XY456", 5));
  lp_buf *ss = lp_buf_slice(s, 1, 2); // of a slice: still the same bytes
  CHECK(ss != NULL && ss->data == p->data + 3 && bytes_at(ss, 0, "Y4", 2));

  // Ranges are within the capacity.
  lp_buf *e = lp_buf_slice(p, 64, 0);
  CHECK(e != NULL && e->cap == 0 && lp_buf_readable(e) == 0);
  lp_buf_unref(e);
  CHECK(lp_buf_slice(p, 64, 1) == NULL);
  CHECK(lp_buf_slice(p, 60, 5) == NULL);
  CHECK(lp_buf_slice(p, 65, 0) == NULL);
  CHECK(lp_buf_slice(p, SIZE_MAX, 2) == NULL);
  CHECK(lp_buf_slice(s, 3, 3) == NULL);

  // A slice cannot grow: -ENOSPC, nothing written.
  CHECK(lp_buf_reserve(s, 0) == 0);
  CHECK(lp_buf_reserve(s, 1) == -ENOSPC);
  CHECK(lp_buf_write(s, "a", 1) == -ENOSPC && s->wr == 5);
  CHECK(lp_buf_write_uint(s, 2, true, 1) == -ENOSPC && s->wr == 5);
  s->rd = s->wr = 0; // clear: room for exactly its capacity
  CHECK(lp_buf_write(s, "abcde", 5) == 0 && bytes_at(p, 0, "01abcde789", 10));
  CHECK(lp_buf_write(s, "f", 1) == -ENOSPC && s->cap == 5);

  // The parent grows: it moves to a new block, the slices keep the old one,
  // which stays out of the pool until the last slice goes.
  CHECK(lp_buf_reserve(p, 100) == 0 && p->data != s->data - 2 && bytes_at(p, 0, "01abcde789", 10));
  CHECK(lp_pool_cached_bytes(pool) == 0);
  CHECK(lp_buf_set_uint(p, 2, 1, true, 'Z') == 0 && bytes_at(s, 0, "abcde", 5) && bytes_at(p, 0, "01Zbcde789", 10));
  CHECK(lp_buf_set_uint(s, 4, 1, true, 'W') == 0 && bytes_at(p, 0, "01Zbcde789", 10) && bytes_at(ss, 0, "bc", 2));

  // ... and the parent's unref.
  lp_buf_unref(p);
  CHECK(lp_pool_cached_bytes(pool) == 128); // p's new block; the old is still held
  CHECK(bytes_at(s, 0, "abcdW", 5));
  lp_buf_unref(s);
  CHECK(lp_pool_cached_bytes(pool) == 128 && bytes_at(ss, 0, "bc", 2));
  lp_buf_unref(ss);
  CHECK(lp_pool_cached_bytes(pool) == 128 + 64);
  lp_pool_free(pool);
}

// One integer case: value v written with width w and byte order be gives bytes[0..w).
typedef struct {
  int w;
  bool be;
  uint64_t v;
  uint8_t bytes[8];
} int_case;

static const int_case int_cases[] = {
    {1, true, 0x0102030405060708u, {0x08}},
    {1, false, 0x0102030405060708u, {0x08}},
    {2, true, 0x0102030405060708u, {0x07, 0x08}},
    {2, false, 0x0102030405060708u, {0x08, 0x07}},
    {3, true, 0x0102030405060708u, {0x06, 0x07, 0x08}},
    {3, false, 0x0102030405060708u, {0x08, 0x07, 0x06}},
    {4, true, 0x0102030405060708u, {0x05, 0x06, 0x07, 0x08}},
    {4, false, 0x0102030405060708u, {0x08, 0x07, 0x06, 0x05}},
    {8, true, 0x0102030405060708u, {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}},
    {8, false, 0x0102030405060708u, {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01}},
    {1, true, 0xFEDCBA9876543280u, {0x80}},
    {2, true, 0xFEDCBA9876543280u, {0x32, 0x80}},
    {2, false, 0xFEDCBA9876543280u, {0x80, 0x32}},
    {3, true, 0xFEDCBA9876543280u, {0x54, 0x32, 0x80}},
    {3, false, 0xFEDCBA9876543280u, {0x80, 0x32, 0x54}},
    {4, true, 0xFEDCBA9876543280u, {0x76, 0x54, 0x32, 0x80}},
    {4, false, 0xFEDCBA9876543280u, {0x80, 0x32, 0x54, 0x76}},
    {8, true, 0xFEDCBA9876543280u, {0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x80}},
    {8, false, 0xFEDCBA9876543280u, {0x80, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE}},
    {8, true, UINT64_MAX, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
    {3, false, 0xFFFFFFu, {0xFF, 0xFF, 0xFF}},
    {4, true, 0, {0, 0, 0, 0}},
};

static uint64_t low_bytes(uint64_t v, int w) { return w == 8 ? v : v & (((uint64_t)1 << (w * 8)) - 1); }

static void test_integers(void) {
  for (size_t i = 0; i < LP_ARRAY_LEN(int_cases); i++) {
    const int_case *t = &int_cases[i];
    uint64_t want = low_bytes(t->v, t->w), got = 0;
    lp_buf *b = lp_buf_new(NULL, 16);

    // write: bytes at wr, wr advances; read: same value, rd advances.
    CHECK(lp_buf_write_uint(b, t->w, t->be, t->v) == 0 && b->wr == (size_t)t->w);
    CHECK(bytes_at(b, 0, t->bytes, (size_t)t->w));
    CHECK(lp_buf_get_uint(b, 0, t->w, t->be, &got) == 0 && got == want && b->rd == 0);
    got = 0;
    CHECK(lp_buf_read_uint(b, t->w, t->be, &got) == 0 && got == want && b->rd == (size_t)t->w);

    // set/get at an absolute index leave the indexes alone.
    b->rd = b->wr = 0;
    memset(b->data, 0xAA, b->cap);
    CHECK(lp_buf_set_uint(b, 5, t->w, t->be, t->v) == 0 && b->rd == 0 && b->wr == 0);
    CHECK(bytes_at(b, 5, t->bytes, (size_t)t->w) && b->data[4] == 0xAA && b->data[5 + t->w] == 0xAA);
    CHECK(lp_buf_get_uint(b, 5, t->w, t->be, &got) == -ERANGE); // beyond wr
    b->wr = 5 + (size_t)t->w;
    got = 0;
    CHECK(lp_buf_get_uint(b, 5, t->w, t->be, &got) == 0 && got == want);

    // The raw-pointer codecs agree.
    uint8_t raw[8] = {0};
    lp_store_uint(raw, t->w, t->be, t->v);
    CHECK(memcmp(raw, t->bytes, (size_t)t->w) == 0);
    CHECK(lp_load_uint(t->bytes, t->w, t->be) == want);
    lp_buf_unref(b);
  }

  // Writes grow; several in a row land back to back.
  lp_buf *b = lp_buf_new(NULL, 1);
  for (int i = 0; i < 20; i++) CHECK(lp_buf_write_uint(b, 3, false, 0x030201u + (uint64_t)i) == 0);
  CHECK(b->wr == 60 && b->data[57] == 0x01 + 19 && b->data[58] == 0x02 && b->data[59] == 0x03);
  CHECK(lp_buf_write_u32be(b, 258) == 0 && b->wr == 64 && bytes_at(b, 60, "\0\0\1\2", 4));
  CHECK(lp_buf_write_uint(b, 8, true, 1) == 0 && b->cap == 128 && bytes_at(b, 64, "\0\0\0\0\0\0\0\1", 8));
  lp_buf_unref(b);
}

static void test_index_of(void) {
  const char *text = "hello world, hello!";
  size_t len = strlen(text); // 19
  lp_buf *b = lp_buf_from(NULL, text, len);
  CHECK(lp_buf_index_of(b, 0, len, "hel", 3) == 0);
  CHECK(lp_buf_index_of(b, 0, len, "h", 1) == 0);
  CHECK(lp_buf_index_of(b, 0, len, "world", 5) == 6);
  CHECK(lp_buf_index_of(b, 0, len, "!", 1) == 18);
  CHECK(lp_buf_index_of(b, 0, len, "lo!", 3) == 16);
  CHECK(lp_buf_index_of(b, 0, len, text, len) == 0); // the whole range
  CHECK(lp_buf_index_of(b, 0, len, "xyz", 3) == -1);
  CHECK(lp_buf_index_of(b, 0, len, "hello?", 6) == -1);
  CHECK(lp_buf_index_of(b, 0, len, "ld!", 3) == -1);

  // A needle longer than the range.
  CHECK(lp_buf_index_of(b, 0, 4, "hello", 5) == -1);
  CHECK(lp_buf_index_of(b, 0, 5, "hello", 5) == 0);
  CHECK(lp_buf_index_of(b, 14, 18, "hello", 5) == -1);

  // from/to limit the search; the result is an absolute index.
  CHECK(lp_buf_index_of(b, 1, len, "hello", 5) == 13);
  CHECK(lp_buf_index_of(b, 13, len, "hello", 5) == 13);
  CHECK(lp_buf_index_of(b, 14, len, "hello", 5) == -1);
  CHECK(lp_buf_index_of(b, 1, 17, "hello", 5) == -1);
  CHECK(lp_buf_index_of(b, 1, 18, "hello", 5) == 13);
  CHECK(lp_buf_index_of(b, 0, 4, "o", 1) == -1);
  CHECK(lp_buf_index_of(b, 0, 5, "o", 1) == 4);
  CHECK(lp_buf_index_of(b, 10, 5, "o", 1) == -1); // from > to
  CHECK(lp_buf_index_of(b, len, len, "!", 1) == -1);
  lp_buf_skip(b, 6);
  CHECK(lp_buf_index_of(b, b->rd, b->wr, "hello", 5) == 13);

  // to is capped at wr: bytes beyond it never match.
  CHECK(lp_buf_set_uint(b, len, 2, true, ('x' << 8) | 'y') == 0 && b->wr == len);
  CHECK(lp_buf_index_of(b, 0, 1000, "lo!", 3) == 16);
  CHECK(lp_buf_index_of(b, 0, 1000, "!xy", 3) == -1);
  CHECK(lp_buf_index_of(b, 0, 1000, "x", 1) == -1);
  b->wr = len + 2;
  CHECK(lp_buf_index_of(b, 0, 1000, "!xy", 3) == 18);

  // An empty needle is found where the search starts.
  CHECK(lp_buf_index_of(b, 3, 10, "", 0) == 3);
  CHECK(lp_buf_index_of(b, 21, 1000, "", 0) == 21);
  CHECK(lp_buf_index_of(b, 22, 1000, "", 0) == -1);
  lp_buf_unref(b);

  // Partial matches just before the real one.
  b = lp_buf_from(NULL, "ababac", 6);
  CHECK(lp_buf_index_of(b, 0, 6, "abac", 4) == 2);
  CHECK(lp_buf_index_of(b, 0, 6, "abab", 4) == 0);
  CHECK(lp_buf_index_of(b, 1, 6, "abab", 4) == -1);
  lp_buf_unref(b);
  b = lp_buf_from(NULL, "\r\r\n\r\n\r", 6);
  CHECK(lp_buf_index_of(b, 0, 6, "\r\n\r\n", 4) == 1);
  CHECK(lp_buf_index_of(b, 2, 6, "\r\n\r\n", 4) == -1);
  CHECK(lp_buf_index_of(b, 0, 6, "\n\r", 2) == 2);
  lp_buf_unref(b);

  // The first byte occurs again only where the needle no longer fits.
  b = lp_buf_from(NULL, "abcda", 5);
  CHECK(lp_buf_index_of(b, 1, 5, "ab", 2) == -1);
  CHECK(lp_buf_index_of(b, 1, 5, "a", 1) == 4);
  lp_buf_unref(b);
}

static void test_discard_read(void) {
  lp_buf *b = lp_buf_from(NULL, "abcdef", 6);
  uint8_t *data = b->data;
  lp_buf_discard_read(b); // nothing read: no change
  CHECK(b->rd == 0 && b->wr == 6 && bytes_at(b, 0, "abcdef", 6));
  lp_buf_skip(b, 2);
  lp_buf_discard_read(b);
  CHECK(b->rd == 0 && b->wr == 4 && b->cap == 64 && b->data == data && bytes_at(b, 0, "cdef", 4));
  CHECK(lp_buf_writable(b) == 60);
  lp_buf_skip(b, 4);
  lp_buf_discard_read(b); // all read
  CHECK(b->rd == 0 && b->wr == 0 && b->cap == 64);
  lp_buf_unref(b);
}

static void test_copy(void) {
  lp_buf *p = lp_buf_from(NULL, "0123456789", 10);
  lp_buf *c = lp_buf_copy(p, 2, 5);
  CHECK(c != NULL && c->data != p->data && c->rd == 0 && c->wr == 5 && !(c->flags & LP_BUF_SLICE));
  CHECK(bytes_at(c, 0, "23456", 5));
  CHECK(lp_buf_set_uint(c, 0, 1, true, 'X') == 0 && bytes_at(p, 0, "0123456789", 10));
  CHECK(lp_buf_set_uint(p, 3, 1, true, 'Y') == 0 && bytes_at(c, 0, "X3456", 5));
  CHECK(lp_buf_write(c, pattern, 1000) == 0 && bytes_at(c, 0, "X3456", 5)); // a copy grows
  lp_buf_unref(c);
  c = lp_buf_copy(p, 64, 0);
  CHECK(c != NULL && lp_buf_readable(c) == 0);
  lp_buf_unref(c);
  CHECK(lp_buf_copy(p, 60, 5) == NULL);
  CHECK(lp_buf_copy(p, 65, 0) == NULL);
  CHECK(lp_buf_copy(p, SIZE_MAX, 2) == NULL);
  lp_buf_unref(p);
}

static void test_errors(void) {
  lp_buf *b = lp_buf_from(NULL, "abc", 3);
  uint8_t out[8] = {0};
  uint64_t v = 0;

  CHECK(lp_buf_read(b, out, 4) == -ERANGE && b->rd == 0);
  CHECK(lp_buf_skip(b, 4) == -ERANGE && b->rd == 0);
  CHECK(lp_buf_read(b, out, 2) == 0 && memcmp(out, "ab", 2) == 0 && b->rd == 2);
  CHECK(lp_buf_read(b, out, 2) == -ERANGE && b->rd == 2);
  CHECK(lp_buf_skip(b, 1) == 0 && b->rd == 3 && lp_buf_skip(b, 1) == -ERANGE);
  b->rd = 0;

  // get: index + width <= wr.
  CHECK(lp_buf_get_uint(b, 1, 2, true, &v) == 0 && v == 0x6263);
  CHECK(lp_buf_get_uint(b, 2, 2, true, &v) == -ERANGE);
  CHECK(lp_buf_get_uint(b, 3, 1, true, &v) == -ERANGE);
  CHECK(lp_buf_get_uint(b, 0, 4, true, &v) == -ERANGE);
  CHECK(lp_buf_get_uint(b, SIZE_MAX, 1, true, &v) == -ERANGE);
  // set: index + width <= cap.
  CHECK(lp_buf_set_uint(b, 62, 2, true, 1) == 0);
  CHECK(lp_buf_set_uint(b, 63, 2, true, 1) == -ERANGE);
  CHECK(lp_buf_set_uint(b, 64, 1, true, 1) == -ERANGE);
  CHECK(lp_buf_set_uint(b, 57, 8, false, 1) == -ERANGE);
  CHECK(lp_buf_set_uint(b, SIZE_MAX - 2, 8, false, 1) == -ERANGE);
  // read: width <= readable, rd kept on failure.
  CHECK(lp_buf_read_uint(b, 4, true, &v) == -ERANGE && b->rd == 0);
  CHECK(lp_buf_read_uint(b, 8, false, &v) == -ERANGE && b->rd == 0);

  // Width 5 (and friends): -EINVAL, nothing touched.
  static const int bad_widths[] = {5, 0, 6, 7, 9, -1, 16};
  for (size_t i = 0; i < LP_ARRAY_LEN(bad_widths); i++) {
    int w = bad_widths[i];
    CHECK(lp_buf_get_uint(b, 0, w, true, &v) == -EINVAL);
    CHECK(lp_buf_set_uint(b, 0, w, false, 0x7777777777u) == -EINVAL);
    CHECK(lp_buf_read_uint(b, w, true, &v) == -EINVAL && b->rd == 0);
    CHECK(lp_buf_write_uint(b, w, true, 0x7777777777u) == -EINVAL && b->wr == 3);
  }
  CHECK(bytes_at(b, 0, "abc", 3) && b->cap == 64);

  // A slice cannot grow.
  lp_buf *s = lp_buf_slice(b, 0, 3);
  CHECK(lp_buf_write_uint(s, 1, true, 0) == -ENOSPC && s->wr == 3);
  CHECK(lp_buf_reserve(s, 1) == -ENOSPC);
  lp_buf_unref(s);
  lp_buf_unref(b);
}

int main(void) {
  for (size_t i = 0; i < PATTERN_LEN; i++) pattern[i] = (uint8_t)(i * 7 + (i >> 8));
  test_new_from_unref();
  test_reserve_growth();
  test_pool_reuse();
  test_pool_free_live();
  test_big_blocks();
  test_slices();
  test_integers();
  test_index_of();
  test_discard_read();
  test_copy();
  test_errors();
  return check_report();
}
