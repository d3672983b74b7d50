// buffer.h: lp_buf, a byte buffer with a reader and a writer index (Netty's
// ByteBuf), and lp_pool, a per-loop cache of storage blocks so the steady-state
// read path allocates nothing.
//
// Ownership: lp_buf_new/from/slice return a buffer with one reference that the
// caller owns; lp_buf_unref drops it. A slice shares its parent's storage (the
// storage is reference counted separately), has a fixed capacity and its own
// indexes; a parent that grows moves to new storage and the slice keeps the old.
// Indexes are byte offsets from 0: 0 <= rd <= wr <= cap.
//
// A pool belongs to one loop thread; buffers from it must be freed on that
// thread. lp_pool_free may run while buffers are still out: they then free
// their storage with free() when they go.
#ifndef LP_BUFFER_H
#define LP_BUFFER_H

#include "common.h"
#include <sys/types.h>

#define LP_BUF_MAX ((size_t)1 << 30) // largest capacity a buffer may grow to
#define LP_POOL_MIN_SHIFT 6          // smallest pooled block: 64 B
#define LP_POOL_MAX_SHIFT 16         // largest pooled block: 64 KiB
#define LP_POOL_CLASSES (LP_POOL_MAX_SHIFT - LP_POOL_MIN_SHIFT + 1)

enum { LP_BUF_SLICE = 1 }; // lp_buf.flags

typedef struct lp_mem lp_mem;

struct lp_buf {
  uint8_t *data;  // first byte of this view
  size_t cap;     // bytes addressable from data
  size_t rd, wr;  // reader and writer index
  lp_mem *mem;    // storage (shared with slices)
  uint32_t refs;
  uint32_t flags;
  lp_pool *pool;  // where this struct returns (NULL: malloc/free)
};

lp_pool *lp_pool_new(void);
void lp_pool_free(lp_pool *pool);
// Free cached storage blocks (largest classes first) until at most keep bytes stay cached.
void lp_pool_trim(lp_pool *pool, size_t keep);
// Bytes of storage blocks cached for reuse, for tests and stats.
size_t lp_pool_cached_bytes(const lp_pool *pool);
// Blocks and buffer structs taken from the pool and not yet given back.
size_t lp_pool_live(const lp_pool *pool);

lp_buf *lp_buf_new(lp_pool *pool, size_t cap);                   // NULL on ENOMEM
lp_buf *lp_buf_from(lp_pool *pool, const void *p, size_t n);     // copy of p[0..n)
lp_buf *lp_buf_slice(lp_buf *b, size_t index, size_t len);       // NULL: out of range/ENOMEM
lp_buf *lp_buf_copy(lp_buf *b, size_t index, size_t len);        // new storage
static inline lp_buf *lp_buf_ref(lp_buf *b) { b->refs++; return b; }
void lp_buf_unref(lp_buf *b);

#define LP_BUF_BLOCK_HEADER 32 // bytes in front of a storage block (checked in buffer.c)

static inline size_t lp_buf_readable(const lp_buf *b) { return b->wr - b->rd; }
// Memory b keeps alive besides its readable bytes: its struct and, unless it
// is a slice, the rest of its storage block (which it keeps alive). A slice
// counts only its readable bytes of the storage it shares.
static inline size_t lp_buf_overhead(const lp_buf *b) {
  size_t n = sizeof *b;
  if (!(b->flags & LP_BUF_SLICE)) n += LP_BUF_BLOCK_HEADER + b->cap - lp_buf_readable(b);
  return n;
}
static inline size_t lp_buf_writable(const lp_buf *b) { return b->cap - b->wr; }
static inline uint8_t *lp_buf_rptr(const lp_buf *b) { return b->data + b->rd; }
static inline uint8_t *lp_buf_wptr(const lp_buf *b) { return b->data + b->wr; }

// Make room for n more bytes after wr: 0, -ENOMEM, or -ENOSPC (a slice, or past LP_BUF_MAX).
int lp_buf_reserve(lp_buf *b, size_t n);
// Append n bytes (p may point into b: it is read after any growth only if it
// survives it, so pass a pointer into b only when lp_buf_reserve ran first).
int lp_buf_write(lp_buf *b, const void *p, size_t n);        // 0 or as reserve
int lp_buf_read(lp_buf *b, void *p, size_t n);               // 0 or -ERANGE
int lp_buf_skip(lp_buf *b, size_t n);                        // 0 or -ERANGE
int lp_buf_discard_read(lp_buf *b);                          // move readable bytes to 0; 0 or -ENOMEM
// First absolute index i in [from, to) where needle starts, or -1.
ptrdiff_t lp_buf_index_of(const lp_buf *b, size_t from, size_t to, const void *needle, size_t n);

// Unsigned integers of width 1, 2, 3, 4 or 8 bytes, big-endian when be.
// get/set take an absolute index and leave the indexes alone; they check
// index + width <= wr (get) or <= cap (set). Errors: -ERANGE, -EINVAL (width).
int lp_buf_get_uint(const lp_buf *b, size_t index, int width, bool be, uint64_t *out);
int lp_buf_set_uint(lp_buf *b, size_t index, int width, bool be, uint64_t v);
int lp_buf_read_uint(lp_buf *b, int width, bool be, uint64_t *out);
int lp_buf_write_uint(lp_buf *b, int width, bool be, uint64_t v); // grows like write
static inline int lp_buf_write_u32be(lp_buf *b, uint32_t v) { return lp_buf_write_uint(b, 4, true, v); }

// Decode/encode without a buffer (used by codecs on raw pointers).
uint64_t lp_load_uint(const uint8_t *p, int width, bool be);
void lp_store_uint(uint8_t *p, int width, bool be, uint64_t v);

#endif
