// outbound.h: a channel's writes between write() and the kernel. Entries stay
// unflushed until flush(); only flushed ones reach writev(). Both count toward
// the pending bytes that drive the water marks, since unflushed bytes hold
// memory too. Each entry owns its bytes (a buffer reference, or host bytes
// with a release callback) and, when given, its promise.
//
// Pending bytes count what each entry costs, not only its payload (as Netty
// adds a fixed overhead per entry): a flood of empty or one-byte writes holds
// memory per entry, and must reach the water marks and maxPendingBytes too.
#ifndef LP_OUTBOUND_H
#define LP_OUTBOUND_H

#include "common.h"
#include "error.h"
#include <sys/types.h>

#define LP_IOV_MAX 64                    // iovecs per writev
#define LP_WRITE_SPIN_BYTES (1u << 20)   // bytes per writev at most
#define LP_WRITE_SPIN_COUNT 16           // writevs per flush before yielding

// Bytes for the head to write: a buffer (one reference, moved in), host
// memory that stays valid until release(ud, tag) is called, or a region of a
// file (file set: len bytes of file_fd from file_off, sent with sendfile(2);
// the descriptor is owned and closed on release).
typedef struct lp_bytes {
  lp_buf *buf;
  const uint8_t *p;
  size_t len;
  void (*release)(void *ud, int tag);
  void *ud;
  int tag;
  bool file;
  int file_fd;
  uint64_t file_off;
} lp_bytes;

// What an entry costs besides its payload: the entry and its allocation
// header; a buffer adds lp_buf_overhead(), host bytes (a pinned Lua string)
// LP_OUT_HOST_OVERHEAD for the string's header and the reference pinning it.
#define LP_OUT_HOST_OVERHEAD 64

typedef struct lp_out_entry {
  struct lp_out_entry *next;
  lp_bytes bytes;       // bytes.p/len advance as they are written
  lp_future *promise;   // may be NULL
  size_t overhead;      // counted in pending until the entry goes
} lp_out_entry;

#define LP_OUT_ENTRY_OVERHEAD (sizeof(lp_out_entry) + 16)

// Free entry structs of one loop, reused so that writing does not call malloc.
typedef struct lp_out_cache {
  lp_out_entry *free;
  unsigned n;
} lp_out_cache;
void lp_out_cache_drain(lp_out_cache *c);

typedef struct lp_outbound {
  lp_out_cache *cache;     // the loop's entry cache (NULL: malloc/free)
  lp_out_entry *head;      // first flushed entry (or first unflushed when none)
  lp_out_entry *unflushed; // first unflushed entry, NULL when none
  lp_out_entry *tail;
  size_t pending;          // payload not yet written plus each entry's overhead, flushed or not
  size_t file_pending;     // of pending, file regions' bytes not yet sent (no memory held: not for maxPendingBytes)
  size_t flushed;          // entries flushed and not yet written
  size_t peak;             // most pending while unwritable (channel.c: memory back to the system after)
} lp_outbound;

void lp_outbound_init(lp_outbound *ob, lp_out_cache *cache);
// What queueing bytes would add to pending: payload plus overhead.
size_t lp_outbound_cost(const lp_bytes *bytes);
// Queue bytes (ownership moves in). -ENOMEM: nothing queued, bytes released.
int lp_outbound_add(lp_outbound *ob, lp_bytes *bytes, lp_future *promise);
// Payload bytes queued and not yet written (pending without the overheads).
size_t lp_outbound_payload(const lp_outbound *ob);
void lp_outbound_add_flush(lp_outbound *ob);
static inline bool lp_outbound_has_flushed(const lp_outbound *ob) { return ob->flushed > 0; }
// Write flushed entries to fd. Returns bytes written (>= 0), with *would_block
// set when the socket took less than offered; or -errno on a write error
// (LP_EFILESHORT: a file region's file ended before the region did).
// Buffers go out gathered (writev) up to the next file region; a file region
// at the head goes out with sendfile(2), at most LP_WRITE_SPIN_BYTES a call.
// Entries written in full are completed (their promises succeed).
ssize_t lp_outbound_write(lp_outbound *ob, int fd, bool *would_block);
// Fail and drop entries: all of them, or only the flushed ones. The first
// failed promise is reported when unobserved unless quiet; the rest are quiet.
// Returns whether a promise took the (non-quiet) failure to report it.
bool lp_outbound_fail(lp_outbound *ob, const lp_error *err, bool only_flushed, bool quiet);
void lp_bytes_release(lp_bytes *b);
// Datagram transports, where each flushed entry goes whole or not at all: the
// first flushed entry was sent (its promise succeeds), or was refused (its
// promise fails with err; false when it had none, for the caller to report).
void lp_outbound_done_head(lp_outbound *ob);
bool lp_outbound_fail_head(lp_outbound *ob, const lp_error *err);

#endif
