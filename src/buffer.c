// buffer.c: lp_buf views over reference-counted storage blocks, and the
// per-loop pool that caches blocks in power-of-two classes (64 B .. 64 KiB)
// and buffer structs, so that a read loop in steady state calls no malloc.
// Blocks above 64 KiB come from malloc and go back to free.
#include "buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define POOL_KEEP_BLOCKS 64   // cached blocks per class, at most
#define POOL_KEEP_BYTES (4u << 20)
#define POOL_KEEP_STRUCTS 256

struct lp_mem {
  uint32_t refs;
  int32_t cls;    // pool class, or -1 for a malloc'd block
  lp_pool *pool;  // NULL when not from a pool (or the pool is gone)
  lp_mem *next;   // free list link while cached
  size_t cap;
  _Alignas(16) uint8_t bytes[];
};

_Static_assert(sizeof(lp_mem) == LP_BUF_BLOCK_HEADER, "LP_BUF_BLOCK_HEADER is the size of lp_mem");

struct lp_pool {
  lp_mem *free[LP_POOL_CLASSES];
  uint32_t nfree[LP_POOL_CLASSES];
  size_t cached_bytes;
  lp_buf *free_bufs; // linked through ->mem
  uint32_t nfree_bufs;
  size_t live;       // blocks and structs out of the pool
  bool closed;       // lp_pool_free was called; free when live reaches 0
};

lp_pool *lp_pool_new(void) { return calloc(1, sizeof(lp_pool)); }

static void pool_drain(lp_pool *p) {
  for (int c = 0; c < LP_POOL_CLASSES; c++) {
    while (p->free[c]) {
      lp_mem *m = p->free[c];
      p->free[c] = m->next;
      free(m);
    }
    p->nfree[c] = 0;
  }
  while (p->free_bufs) {
    lp_buf *b = p->free_bufs;
    p->free_bufs = (lp_buf *)(void *)b->mem;
    free(b);
  }
  p->nfree_bufs = 0;
  p->cached_bytes = 0;
}

void lp_pool_trim(lp_pool *p, size_t keep) {
  if (!p) return;
  for (int c = LP_POOL_CLASSES - 1; c >= 0 && p->cached_bytes > keep; c--) {
    while (p->free[c] && p->cached_bytes > keep) {
      lp_mem *m = p->free[c];
      p->free[c] = m->next;
      p->nfree[c]--;
      p->cached_bytes -= m->cap;
      free(m);
    }
  }
}

void lp_pool_free(lp_pool *p) {
  if (!p) return;
  pool_drain(p);
  p->closed = true;
  if (p->live == 0) free(p);
}

size_t lp_pool_cached_bytes(const lp_pool *p) { return p ? p->cached_bytes : 0; }
size_t lp_pool_live(const lp_pool *p) { return p ? p->live : 0; }

static void pool_put_live(lp_pool *p) {
  if (--p->live == 0 && p->closed) free(p);
}

static int size_class(size_t n) {
  if (n > ((size_t)1 << LP_POOL_MAX_SHIFT)) return -1;
  int c = 0;
  while (((size_t)1 << (LP_POOL_MIN_SHIFT + c)) < n) c++;
  return c;
}

static lp_mem *mem_alloc(lp_pool *p, size_t n) {
  int c = size_class(n);
  lp_mem *m;
  if (c >= 0) {
    n = (size_t)1 << (LP_POOL_MIN_SHIFT + c);
    if (p && !p->closed && p->free[c]) {
      m = p->free[c];
      p->free[c] = m->next;
      p->nfree[c]--;
      p->cached_bytes -= n;
      p->live++;
      m->refs = 1;
      return m;
    }
  }
  m = malloc(sizeof(lp_mem) + n);
  if (!m) return NULL;
  m->refs = 1;
  m->cls = c;
  m->cap = n;
  m->next = NULL;
  m->pool = (p && !p->closed && c >= 0) ? p : NULL;
  if (m->pool) p->live++;
  return m;
}

static void mem_unref(lp_mem *m) {
  if (--m->refs) return;
  lp_pool *p = m->pool;
  if (!p) {
    free(m);
    return;
  }
  if (!p->closed && p->nfree[m->cls] < POOL_KEEP_BLOCKS && p->cached_bytes + m->cap <= POOL_KEEP_BYTES) {
    m->next = p->free[m->cls];
    p->free[m->cls] = m;
    p->nfree[m->cls]++;
    p->cached_bytes += m->cap;
  } else {
    free(m);
  }
  pool_put_live(p);
}

static lp_buf *buf_struct(lp_pool *p) {
  lp_buf *b;
  if (p && !p->closed && p->free_bufs) {
    b = p->free_bufs;
    p->free_bufs = (lp_buf *)(void *)b->mem;
    p->nfree_bufs--;
  } else {
    b = malloc(sizeof *b);
    if (!b) return NULL;
    if (p && p->closed) p = NULL;
  }
  if (p) p->live++;
  b->pool = p;
  b->refs = 1;
  b->flags = 0;
  b->rd = b->wr = 0;
  return b;
}

static void buf_struct_free(lp_buf *b) {
  lp_pool *p = b->pool;
  if (!p) {
    free(b);
    return;
  }
  if (!p->closed && p->nfree_bufs < POOL_KEEP_STRUCTS) {
    b->mem = (lp_mem *)(void *)p->free_bufs;
    p->free_bufs = b;
    p->nfree_bufs++;
  } else {
    free(b);
  }
  pool_put_live(p);
}

lp_buf *lp_buf_new(lp_pool *pool, size_t cap) {
  if (cap > LP_BUF_MAX) return NULL;
  lp_buf *b = buf_struct(pool);
  if (!b) return NULL;
  lp_mem *m = mem_alloc(pool, cap ? cap : 1);
  if (!m) {
    buf_struct_free(b);
    return NULL;
  }
  b->mem = m;
  b->data = m->bytes;
  b->cap = m->cap;
  return b;
}

lp_buf *lp_buf_from(lp_pool *pool, const void *p, size_t n) {
  lp_buf *b = lp_buf_new(pool, n);
  if (b && n) {
    memcpy(b->data, p, n);
    b->wr = n;
  }
  return b;
}

void lp_buf_unref(lp_buf *b) {
  if (!b || --b->refs) return;
  mem_unref(b->mem);
  buf_struct_free(b);
}

lp_buf *lp_buf_slice(lp_buf *b, size_t index, size_t len) {
  if (index > b->cap || len > b->cap - index) return NULL;
  lp_buf *s = buf_struct(b->pool);
  if (!s) return NULL;
  s->mem = b->mem;
  s->mem->refs++;
  s->data = b->data + index;
  s->cap = len;
  s->wr = len;
  s->flags = LP_BUF_SLICE;
  return s;
}

lp_buf *lp_buf_copy(lp_buf *b, size_t index, size_t len) {
  if (index > b->cap || len > b->cap - index) return NULL;
  return lp_buf_from(b->pool, b->data + index, len);
}

int lp_buf_reserve(lp_buf *b, size_t n) {
  if (n <= b->cap - b->wr) return 0;
  if (b->flags & LP_BUF_SLICE) return -ENOSPC;
  if (n > LP_BUF_MAX - b->wr) return -ENOSPC;
  size_t need = b->wr + n;
  // Reclaim the read part first when that alone makes room and it is most of
  // the buffer: cheaper than growing, and keeps long-lived cumulations small.
  if (b->rd >= need - b->cap && b->rd >= b->cap / 2 && b->mem->refs == 1) {
    lp_buf_discard_read(b);
    return 0;
  }
  size_t cap = b->cap < 64 ? 64 : b->cap;
  while (cap < need) cap = cap > LP_BUF_MAX / 2 ? LP_BUF_MAX : cap * 2;
  lp_mem *m = mem_alloc(b->pool && !b->pool->closed ? b->pool : NULL, cap);
  if (!m) return -ENOMEM;
  memcpy(m->bytes, b->data, b->wr);
  mem_unref(b->mem);
  b->mem = m;
  b->data = m->bytes;
  b->cap = m->cap;
  return 0;
}

int lp_buf_write(lp_buf *b, const void *p, size_t n) {
  int rc = lp_buf_reserve(b, n);
  if (rc) return rc;
  // memmove: p may point into this buffer's own storage through a slice
  // (writeBytes(buf:slice(...))), overlapping the bytes being written.
  if (n) memmove(b->data + b->wr, p, n);
  b->wr += n;
  return 0;
}

int lp_buf_read(lp_buf *b, void *p, size_t n) {
  if (n > lp_buf_readable(b)) return -ERANGE;
  memcpy(p, b->data + b->rd, n);
  b->rd += n;
  return 0;
}

int lp_buf_skip(lp_buf *b, size_t n) {
  if (n > lp_buf_readable(b)) return -ERANGE;
  b->rd += n;
  return 0;
}

int lp_buf_discard_read(lp_buf *b) {
  if (b->rd == 0) return 0;
  size_t n = lp_buf_readable(b);
  if (b->mem->refs > 1 && !(b->flags & LP_BUF_SLICE)) {
    // Slices share this storage: move to a fresh block rather than shift the
    // bytes under them (the same rule as lp_buf_reserve).
    lp_mem *m = mem_alloc(b->pool && !b->pool->closed ? b->pool : NULL, b->cap);
    if (m) {
      memcpy(m->bytes, b->data + b->rd, n);
      mem_unref(b->mem);
      b->mem = m;
      b->data = m->bytes;
      b->cap = m->cap;
      b->rd = 0;
      b->wr = n;
      return 0;
    }
    return -ENOMEM; // never shift the bytes under a slice
  }
  if (n) memmove(b->data, b->data + b->rd, n);
  b->rd = 0;
  b->wr = n;
  return 0;
}

ptrdiff_t lp_buf_index_of(const lp_buf *b, size_t from, size_t to, const void *needle, size_t n) {
  if (to > b->wr) to = b->wr;
  if (from >= to || n == 0 || n > to - from) return n == 0 && from <= to ? (ptrdiff_t)from : -1;
  const uint8_t *start = b->data + from, *end = b->data + to;
  const uint8_t first = *(const uint8_t *)needle;
  // (size_t)(end - p) >= n, not p + n <= end: after a near-match at end - n,
  // p + n would point past the block's one-past-the-end (undefined in C).
  for (const uint8_t *p = start; (size_t)(end - p) >= n;) {
    p = memchr(p, first, (size_t)(end - p) - (n - 1));
    if (!p) break;
    if (memcmp(p, needle, n) == 0) return p - b->data;
    p++;
  }
  return -1;
}

uint64_t lp_load_uint(const uint8_t *p, int width, bool be) {
  uint64_t v = 0;
  if (be)
    for (int i = 0; i < width; i++) v = (v << 8) | p[i];
  else
    for (int i = width - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

void lp_store_uint(uint8_t *p, int width, bool be, uint64_t v) {
  for (int i = 0; i < width; i++) {
    p[be ? width - 1 - i : i] = (uint8_t)v;
    v >>= 8;
  }
}

static bool width_ok(int w) { return w == 1 || w == 2 || w == 3 || w == 4 || w == 8; }

int lp_buf_get_uint(const lp_buf *b, size_t index, int width, bool be, uint64_t *out) {
  if (!width_ok(width)) return -EINVAL;
  if (index > b->wr || (size_t)width > b->wr - index) return -ERANGE;
  *out = lp_load_uint(b->data + index, width, be);
  return 0;
}

int lp_buf_set_uint(lp_buf *b, size_t index, int width, bool be, uint64_t v) {
  if (!width_ok(width)) return -EINVAL;
  if (index > b->cap || (size_t)width > b->cap - index) return -ERANGE;
  lp_store_uint(b->data + index, width, be, v);
  return 0;
}

int lp_buf_read_uint(lp_buf *b, int width, bool be, uint64_t *out) {
  int rc = lp_buf_get_uint(b, b->rd, width, be, out);
  if (rc == 0) b->rd += (size_t)width;
  return rc;
}

int lp_buf_write_uint(lp_buf *b, int width, bool be, uint64_t v) {
  if (!width_ok(width)) return -EINVAL;
  int rc = lp_buf_reserve(b, (size_t)width);
  if (rc) return rc;
  lp_store_uint(b->data + b->wr, width, be, v);
  b->wr += (size_t)width;
  return 0;
}
