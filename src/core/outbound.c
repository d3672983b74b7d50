// outbound.c: queue, gathering writes and completion of write promises.
// Entry structs come from the loop's cache, so the steady-state write path
// does not call malloc.
#include "outbound.h"

#include "buffer.h"
#include "future.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define ENTRY_CACHE_MAX 1024

static lp_out_entry *entry_get(lp_out_cache *c) {
  lp_out_entry *e = c ? c->free : NULL;
  if (e) {
    c->free = e->next;
    c->n--;
    return e;
  }
  return malloc(sizeof *e);
}

static void entry_put(lp_out_cache *c, lp_out_entry *e) {
  if (c && c->n < ENTRY_CACHE_MAX) {
    e->next = c->free;
    c->free = e;
    c->n++;
  } else {
    free(e);
  }
}

void lp_out_cache_drain(lp_out_cache *c) {
  while (c->free) {
    lp_out_entry *e = c->free;
    c->free = e->next;
    free(e);
  }
  c->n = 0;
}

void lp_bytes_release(lp_bytes *b) {
  if (b->buf) lp_buf_unref(b->buf);
  else if (b->file && b->file_fd >= 0) close(b->file_fd);
  else if (b->release) b->release(b->ud, b->tag);
  b->buf = NULL;
  b->release = NULL;
  b->file = false;
}

void lp_outbound_init(lp_outbound *ob, lp_out_cache *cache) {
  ob->cache = cache;
  ob->head = ob->unflushed = ob->tail = NULL;
  ob->pending = 0;
  ob->file_pending = 0;
  ob->flushed = 0;
  ob->peak = 0;
}

// A file region counts its length too, though its bytes stay in the page
// cache: the water marks are about what a peer has yet to take.
static size_t overhead_of(const lp_bytes *b) {
  return LP_OUT_ENTRY_OVERHEAD + (b->buf ? lp_buf_overhead(b->buf) : LP_OUT_HOST_OVERHEAD);
}

size_t lp_outbound_cost(const lp_bytes *b) {
  return (b->buf ? lp_buf_readable(b->buf) : b->len) + overhead_of(b);
}

int lp_outbound_add(lp_outbound *ob, lp_bytes *bytes, lp_future *promise) {
  lp_out_entry *e = entry_get(ob->cache);
  if (!e) {
    lp_bytes_release(bytes);
    return -ENOMEM;
  }
  e->next = NULL;
  e->bytes = *bytes;
  if (e->bytes.buf) {
    e->bytes.p = lp_buf_rptr(e->bytes.buf);
    e->bytes.len = lp_buf_readable(e->bytes.buf);
  }
  e->overhead = overhead_of(&e->bytes);
  e->promise = promise ? lp_future_ref(promise) : NULL;
  if (ob->tail) ob->tail->next = e;
  else ob->head = e;
  ob->tail = e;
  if (!ob->unflushed) ob->unflushed = e;
  ob->pending += e->bytes.len + e->overhead;
  if (e->bytes.file) ob->file_pending += e->bytes.len;
  return 0;
}

size_t lp_outbound_payload(const lp_outbound *ob) {
  size_t n = 0;
  for (const lp_out_entry *e = ob->head; e; e = e->next) n += e->bytes.len;
  return n;
}

void lp_outbound_add_flush(lp_outbound *ob) {
  for (lp_out_entry *e = ob->unflushed; e; e = e->next) ob->flushed++;
  ob->unflushed = NULL;
}

// Remove the first entry (it must be flushed) and complete its promise.
static void pop_done(lp_outbound *ob) {
  lp_out_entry *e = ob->head;
  ob->head = e->next;
  if (!ob->head) ob->tail = NULL;
  ob->flushed--;
  ob->pending -= e->overhead;
  lp_bytes_release(&e->bytes);
  lp_future *f = e->promise;
  entry_put(ob->cache, e);
  if (f) {
    lp_future_succeed(f);
    lp_future_unref(f);
  }
}

// The head entry is a file region: sendfile from where it has got to.
static ssize_t write_file(lp_outbound *ob, int fd, bool *would_block) {
  lp_out_entry *e = ob->head;
  if (!e->bytes.len) { // an empty region: done at once
    pop_done(ob);
    return 0;
  }
  size_t want = e->bytes.len < LP_WRITE_SPIN_BYTES ? e->bytes.len : LP_WRITE_SPIN_BYTES;
  off_t off = (off_t)e->bytes.file_off;
  ssize_t w;
  do w = sendfile(fd, e->bytes.file_fd, &off, want);
  while (w < 0 && errno == EINTR);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *would_block = true;
      return 0;
    }
    return -errno;
  }
  if (w == 0) return LP_EFILESHORT; // end of file before the end of the region
  e->bytes.file_off += (uint64_t)w;
  e->bytes.len -= (size_t)w;
  ob->pending -= (size_t)w;
  ob->file_pending -= (size_t)w;
  if (!e->bytes.len) pop_done(ob);
  else if ((size_t)w < want) *would_block = true;
  return w;
}

ssize_t lp_outbound_write(lp_outbound *ob, int fd, bool *would_block) {
  *would_block = false;
  if (ob->flushed && ob->head->bytes.file) return write_file(ob, fd, would_block);
  struct iovec iov[LP_IOV_MAX];
  int n = 0;
  size_t offered = 0;
  size_t k = 0;
  for (lp_out_entry *e = ob->head; k < ob->flushed && n < LP_IOV_MAX && offered < LP_WRITE_SPIN_BYTES;
       e = e->next, k++) {
    if (e->bytes.file) break; // buffers up to it now, the file on the next call
    if (!e->bytes.len) continue;
    iov[n].iov_base = (void *)e->bytes.p;
    iov[n].iov_len = e->bytes.len;
    offered += e->bytes.len;
    n++;
  }
  ssize_t w = 0;
  if (n) {
    // One entry (the common echo case): send(), which the kernel serves with
    // less work than sendmsg()'s message header and iovec import.
    if (n == 1) {
      do w = send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
      while (w < 0 && errno == EINTR);
    } else {
      struct msghdr mh = {0};
      mh.msg_iov = iov;
      mh.msg_iovlen = (size_t)n;
      do w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
      while (w < 0 && errno == EINTR);
    }
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        *would_block = true;
        return 0;
      }
      return -errno;
    }
    if ((size_t)w < offered) *would_block = true;
  }
  size_t left = (size_t)w;
  ob->pending -= left;
  while (ob->flushed && !ob->head->bytes.file && ob->head->bytes.len <= left) {
    left -= ob->head->bytes.len;
    pop_done(ob);
  }
  if (left) { // a partly written entry
    ob->head->bytes.p += left;
    ob->head->bytes.len -= left;
  }
  return w;
}

void lp_outbound_done_head(lp_outbound *ob) {
  ob->pending -= ob->head->bytes.len;
  pop_done(ob);
}

bool lp_outbound_fail_head(lp_outbound *ob, const lp_error *err) {
  lp_out_entry *e = ob->head;
  ob->head = e->next;
  if (!ob->head) ob->tail = NULL;
  ob->flushed--;
  ob->pending -= e->bytes.len + e->overhead;
  lp_bytes_release(&e->bytes);
  lp_future *f = e->promise;
  entry_put(ob->cache, e);
  if (!f) return false;
  lp_future_fail(f, err);
  lp_future_unref(f);
  return true;
}

bool lp_outbound_fail(lp_outbound *ob, const lp_error *err, bool only_flushed, bool quiet) {
  lp_out_entry *keep = only_flushed ? ob->unflushed : NULL;
  bool reported = false;
  while (ob->head && ob->head != keep) {
    lp_out_entry *e = ob->head;
    ob->head = e->next;
    if (ob->unflushed == e) ob->unflushed = NULL;
    ob->pending -= e->bytes.len + e->overhead;
    if (e->bytes.file) ob->file_pending -= e->bytes.len;
    lp_bytes_release(&e->bytes);
    lp_future *f = e->promise;
    entry_put(ob->cache, e);
    if (f) {
      f->quiet = f->quiet || quiet;
      reported = reported || !quiet;
      quiet = true;
      lp_future_fail(f, err);
      lp_future_unref(f);
    }
  }
  ob->flushed = 0;
  if (!ob->head) ob->tail = NULL;
  return reported;
}
