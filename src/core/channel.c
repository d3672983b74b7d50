// channel.c: socket channels: the read loop, flushing, close and teardown
// (connecting is connect.c's). Everything here runs on the channel's loop thread.
//
// Rules kept:
// - Any call that fires events can run a handler that closes the channel;
//   after each fire the code re-checks LP_CH_CLOSED before touching the fd.
// - Close is immediate below the pipeline (fd closed, pending writes failed,
//   close future done); channelInactive, channelUnregistered and the pipeline's
//   destruction run later as one deferred task, so a handler that closes its
//   channel never has its pipeline freed under it.
// - A reference is held across every callback that may drop the last one.
#include "channel.h"

#include "buffer.h"
#include "connect.h"
#include "future.h"
#include "host.h"
#include "log.h"
#include "udp.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALLOC_START_IDX 5  // 2 KiB
#define TRIM_AFTER_PEAK (1u << 20) // an outbound buffer that held this much gives memory back once empty
#define ALLOC_MAX_IDX (LP_POOL_MAX_SHIFT - LP_POOL_MIN_SHIFT)

static atomic_uint_fast64_t next_channel_id = 1;

static void on_readable(struct ev_loop *ev, ev_io *w, int revents);
static void on_writable(struct ev_loop *ev, ev_io *w, int revents);
static void teardown(lp_task *t, lp_loop *loop);
static void drain_input(lp_channel *ch);
static void drain_progress(lp_channel *ch);
static void close_after_flush(lp_channel *ch);
static void drain_stop(lp_channel *ch);
static void trim_after_peak(lp_channel *ch);

void lp_channel_config_default(lp_channel_config *c) {
  memset(c, 0, sizeof *c);
  c->tcp_nodelay = true;
  c->auto_read = true;
  c->auto_backpressure = true;
  c->close_on_exception = true;
  c->max_messages_per_read = 16;
  c->high_water = 64 * 1024;
  c->low_water = 32 * 1024;
  c->max_pending = 16u * 1024 * 1024;
  c->drain_timeout = 30.;
}

// The loop's entry cache goes with the loop (an lp_loop_on_free hook).
static void drain_out_cache(lp_loop *loop) { lp_out_cache_drain(&loop->out_cache); }

lp_channel *lp_channel_new(lp_loop *loop, const lp_transport *transport, int fd, const lp_channel_config *cfg) {
  // Channels still open when their loop is freed close with it; their entries
  // go back to the loop's cache, drained after that.
  if (lp_loop_on_free(loop, LP_LOOP_CLOSING, lp_channel_close_all) || lp_loop_on_free(loop, LP_LOOP_GONE, drain_out_cache))
    return NULL;
  lp_channel *ch = calloc(1, sizeof *ch);
  if (!ch) return NULL;
  ch->loop = loop;
  ch->transport = transport;
  ch->id = atomic_fetch_add(&next_channel_id, 1);
  ch->fd = fd;
  ch->refs = 1;
  ch->alloc_idx = ALLOC_START_IDX;
  ch->host_ref = -1;
  ch->host = loop->host;
  if (cfg) ch->config = *cfg;
  else lp_channel_config_default(&ch->config);
  lp_outbound_init(&ch->out, &loop->out_cache);
  lp_pipeline_init(&ch->pipeline, ch);
  lp_list_init(&ch->link);
  ev_io_init(&ch->read_watcher, on_readable, fd, EV_READ);
  ev_io_init(&ch->write_watcher, on_writable, fd, EV_WRITE);
  ch->created = lp_loop_now(loop);
  if (fd >= 0) {
    ch->flags |= LP_CH_CONNECTED | LP_CH_IN_STATS; // accepted
    LP_STAT_ADD(&loop->stats, accepted, 1);
    LP_STAT_ADD(&loop->stats, active, 1);
    lp_sockaddr a;
    if (lp_sock_local(fd, &a) == 0) lp_chaddr_set(&ch->local, &a);
    if (lp_sock_peer(fd, &a) == 0) lp_chaddr_set(&ch->remote, &a);
  }
  return ch;
}

void lp_channel_stats_off(lp_channel *ch) {
  ch->flags |= LP_CH_STATS_OFF;
  if (!(ch->flags & LP_CH_IN_STATS)) return;
  ch->flags &= ~(uint32_t)LP_CH_IN_STATS;
  LP_STAT_SUB(&ch->loop->stats, accepted, 1);
  LP_STAT_SUB(&ch->loop->stats, active, 1);
}

// The channel ends: out of the active count, into its cause's.
static void count_closed(lp_channel *ch) {
  if (!(ch->flags & LP_CH_IN_STATS)) return;
  ch->flags &= ~(uint32_t)LP_CH_IN_STATS;
  LP_STAT_SUB(&ch->loop->stats, active, 1);
  lp_stats_closed(ch->loop, ch->close_cause, ch, ch->close_errno ? lp_errno_name(ch->close_errno) : NULL);
}

void lp_channel_unref(lp_channel *ch) {
  if (--ch->refs) return;
  if (ch->transport->free) ch->transport->free(ch);
  if (ch->close_future) lp_future_unref(ch->close_future);
  drain_stop(ch);
  count_closed(ch); // never registered nor closed
  if (ch->fd >= 0) close(ch->fd); // never registered
  lp_chaddr_free(&ch->local);
  lp_chaddr_free(&ch->remote);
  free(ch);
}

int lp_channel_apply_socket_options(lp_channel *ch) {
  const lp_channel_config *c = &ch->config;
  int fd = ch->fd, rc = 0;
  if (fd < 0) return 0;
  if (lp_chaddr_family(&ch->local) == AF_INET || lp_chaddr_family(&ch->local) == AF_INET6)
    rc = lp_sock_set_int(fd, IPPROTO_TCP, TCP_NODELAY, c->tcp_nodelay);
  if (!rc && c->keepalive) rc = lp_sock_set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
  if (!rc && c->rcvbuf > 0) rc = lp_sock_set_int(fd, SOL_SOCKET, SO_RCVBUF, c->rcvbuf);
  if (!rc && c->sndbuf > 0) rc = lp_sock_set_int(fd, SOL_SOCKET, SO_SNDBUF, c->sndbuf);
  return rc;
}

void lp_channel_fire(lp_channel *ch, int ev, lp_msg *m) {
  lp_pipeline_enter(&ch->pipeline);
  lp_pipeline_fire(&ch->pipeline, ev, m);
  lp_pipeline_leave(&ch->pipeline);
}

void lp_channel_register(lp_channel *ch) {
  lp_list_push(&ch->loop->channels, &ch->link);
  if (!(ch->flags & LP_CH_UNCOUNTED)) ch->loop->nchannels++;
  ch->flags |= LP_CH_REGISTERED;
  lp_channel_ref(ch);
  lp_channel_fire(ch, LP_EV_REGISTERED, NULL);
  if ((ch->flags & (LP_CH_CONNECTED | LP_CH_CLOSED)) == LP_CH_CONNECTED) lp_channel_activate(ch);
  lp_channel_unref(ch);
}

void lp_channel_activate(lp_channel *ch) {
  if (ch->flags & (LP_CH_ACTIVE | LP_CH_CLOSED)) return;
  ch->flags |= LP_CH_ACTIVE | LP_CH_WAS_ACTIVE | LP_CH_CONNECTED;
  if (!(ch->flags & (LP_CH_IN_STATS | LP_CH_STATS_OFF | LP_CH_UNCOUNTED)) && ch->transport == &lp_socket_transport) {
    ch->flags |= LP_CH_IN_STATS; // a client connection, now established
    LP_STAT_ADD(&ch->loop->stats, connected, 1);
    LP_STAT_ADD(&ch->loop->stats, active, 1);
  }
  lp_channel_ref(ch);
  lp_channel_fire(ch, LP_EV_ACTIVE, NULL);
  lp_channel_update_reading(ch); // the head's channelActive: read if autoRead
  lp_channel_unref(ch);
}

// ---- reading -------------------------------------------------------------

void lp_channel_update_reading(lp_channel *ch) {
  uint32_t f = ch->flags;
  bool want = false;
  if ((f & (LP_CH_ACTIVE | LP_CH_CLOSED | LP_CH_INPUT_SHUTDOWN)) == LP_CH_ACTIVE && ch->fd >= 0) {
    bool backpressured = ch->config.auto_backpressure && (f & (LP_CH_UNWRITABLE | LP_CH_INPUT_HELD));
    want = (f & LP_CH_READ_PENDING) || (ch->config.auto_read && !backpressured);
    if (f & LP_CH_DRAINING) want = true; // input is discarded until the peer closes
  }
  if (want && !ev_is_active(&ch->read_watcher)) ev_io_start(ch->loop->ev, &ch->read_watcher);
  else if (!want && ev_is_active(&ch->read_watcher)) ev_io_stop(ch->loop->ev, &ch->read_watcher);
}

static void input_eof(lp_channel *ch) {
  if (!ch->config.allow_half_closure || (ch->flags & LP_CH_OUTPUT_SHUTDOWN)) {
    lp_channel_set_close_cause(ch, LP_CLOSE_EOF, 0);
    close_after_flush(ch); // a FIN never discards what was written to the peer
    return;
  }
  ch->flags |= LP_CH_INPUT_SHUTDOWN;
  lp_channel_update_reading(ch);
  static const lp_event_info ev = {"inputShutdown", NULL, -1, NULL, 0};
  lp_msg m = lp_msg_event(&ev);
  lp_channel_fire(ch, LP_EV_USER_EVENT, &m);
}

static int close_cause_of(int err) {
  return err == ECONNRESET || err == EPIPE ? LP_CLOSE_RESET : err == ETIMEDOUT ? LP_CLOSE_TIMEOUT : LP_CLOSE_ERROR;
}

static void read_loop(lp_channel *ch) {
  lp_pool *pool = ch->loop->pool;
  const uint32_t max = ch->config.max_messages_per_read ? ch->config.max_messages_per_read : 1;
  uint32_t nmsg = 0;
  size_t total = 0;
  int err = 0;
  bool eof = false;
  lp_channel_ref(ch);
  lp_pipeline_enter(&ch->pipeline);
  ch->flags |= LP_CH_IN_READ;
  while (nmsg < max) {
    uint32_t f = ch->flags;
    if (f & (LP_CH_CLOSED | LP_CH_INPUT_SHUTDOWN)) break;
    if (f & LP_CH_READ_PENDING) ch->flags &= ~(uint32_t)LP_CH_READ_PENDING;
    else if (!ch->config.auto_read || (ch->config.auto_backpressure && (f & (LP_CH_UNWRITABLE | LP_CH_INPUT_HELD))))
      break;
    lp_buf *b = lp_buf_new(pool, (size_t)1 << (LP_POOL_MIN_SHIFT + ch->alloc_idx));
    if (!b) {
      err = ENOMEM;
      break;
    }
    ssize_t n;
    do n = read(ch->fd, b->data, b->cap);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
      int e = errno;
      lp_buf_unref(b);
      if (n == 0) eof = true;
      else if (e != EAGAIN && e != EWOULDBLOCK) err = e;
      break;
    }
    size_t cap = b->cap;
    b->wr = (size_t)n;
    nmsg++;
    total += (size_t)n;
    lp_msg m = lp_msg_buf(b);
    lp_pipeline_fire(&ch->pipeline, LP_EV_READ, &m);
    if ((size_t)n < cap) break; // the socket is drained, most likely: skip the EAGAIN read
    if (ch->alloc_idx < ALLOC_MAX_IDX) ch->alloc_idx++;
  }
  ch->flags &= ~(uint32_t)LP_CH_IN_READ;
  if (nmsg) {
    ch->bytes_in += total;
    if (LP_LIKELY(ch->flags & LP_CH_IN_STATS)) {
      LP_STAT_ADD(&ch->loop->stats, reads, nmsg);
      LP_STAT_ADD(&ch->loop->stats, bytes_in, total);
    }
  }
  if (nmsg && !(ch->flags & LP_CH_CLOSED)) lp_pipeline_fire(&ch->pipeline, LP_EV_READ_COMPLETE, NULL);
  // Shrink slowly: two events in a row that used under half the guess.
  if (nmsg && ch->alloc_idx > 0 && total < ((size_t)1 << (LP_POOL_MIN_SHIFT + ch->alloc_idx - 1))) {
    if (++ch->shrink_votes >= 2) {
      ch->alloc_idx--;
      ch->shrink_votes = 0;
    }
  } else if (nmsg) {
    ch->shrink_votes = 0;
  }
  if (!(ch->flags & LP_CH_CLOSED)) {
    if (err) {
      lp_channel_set_close_cause(ch, close_cause_of(err), err);
      lp_error e;
      lp_error_sys(&e, err, "read");
      lp_msg m = lp_msg_err(&e);
      lp_pipeline_fire(&ch->pipeline, LP_EV_EXCEPTION, &m);
      lp_channel_close_now(ch);
    } else if (eof) {
      input_eof(ch);
    } else {
      lp_channel_update_reading(ch);
    }
  }
  lp_pipeline_leave(&ch->pipeline);
  lp_channel_unref(ch);
}

static void on_readable(struct ev_loop *ev, ev_io *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_channel *ch = lp_container_of(w, lp_channel, read_watcher);
  if (LP_UNLIKELY(ch->flags & LP_CH_DRAINING)) drain_input(ch);
  else read_loop(ch);
}

// ---- writing -------------------------------------------------------------

void lp_channel_update_writability(lp_channel *ch) {
  bool unwritable = ch->flags & LP_CH_UNWRITABLE;
  if (!unwritable && ch->out.pending > ch->config.high_water) {
    ch->flags |= LP_CH_UNWRITABLE;
  } else if (unwritable && ch->out.pending <= ch->config.low_water) {
    ch->flags &= ~(uint32_t)LP_CH_UNWRITABLE;
    trim_after_peak(ch);
  } else {
    if (unwritable && ch->out.pending > ch->out.peak) ch->out.peak = ch->out.pending;
    return;
  }
  if (ch->flags & LP_CH_CLOSED) return;
  lp_channel_fire(ch, LP_EV_WRITABILITY, NULL);
  if (!(ch->flags & LP_CH_IN_READ)) lp_channel_update_reading(ch);
}

static void report_unobserved(lp_future *f, void *ud) {
  lp_channel *ch = ud;
  if (!f->cause) return;
  if (!ch->pipeline.destroyed) {
    lp_msg m = lp_msg_err(f->cause);
    lp_channel_fire(ch, LP_EV_EXCEPTION, &m);
  } else {
    lp_log(LP_LOG_INFO, ch->id, "a write failed and nobody listened: %s", f->cause->message);
  }
}

static void drop_channel_ref(void *ud) { lp_channel_unref(ud); }

lp_future *lp_channel_new_promise(lp_channel *ch) {
  lp_future *f = lp_future_new(ch->loop);
  if (f) f->host = ch->host;
  if (f) lp_future_on_unobserved(f, report_unobserved, drop_channel_ref, lp_channel_ref(ch));
  return f;
}

void lp_channel_fail_promise(lp_channel *ch, lp_future *promise, const lp_error *err) {
  if (promise) {
    lp_future_fail(promise, err);
    return;
  }
  lp_future *f = lp_channel_new_promise(ch);
  if (!f) {
    lp_log(LP_LOG_WARN, ch->id, "a write failed: %s", err->message);
    return;
  }
  lp_future_fail(f, err);
  lp_future_unref(f);
}

static void fail_closed(lp_channel *ch, lp_future *promise) {
  lp_error e;
  lp_error_named(&e, LP_ECLOSED, "channel #%llu is closed", (unsigned long long)ch->id);
  lp_channel_fail_promise(ch, promise, &e);
}

static void do_flush(lp_channel *ch);

// The outbound buffer let go of megabytes (writable again, or closed): that
// memory is free now but still in the process (see lp_loop_trim_soon).
static void trim_after_peak(lp_channel *ch) {
  if (LP_UNLIKELY(ch->out.peak >= TRIM_AFTER_PEAK)) lp_loop_trim_soon(ch->loop);
  ch->out.peak = 0;
}

static void finish_shutdown_output(lp_channel *ch) {
  if (ch->fd >= 0 && shutdown(ch->fd, SHUT_WR) < 0 && errno != ENOTCONN)
    lp_log(LP_LOG_DEBUG, ch->id, "shutdown(SHUT_WR): %s", strerror(errno));
  if (ch->flags & LP_CH_INPUT_SHUTDOWN) lp_channel_close_now(ch);
}

static void do_flush(lp_channel *ch) {
  for (int spin = 0; spin < LP_WRITE_SPIN_COUNT && lp_outbound_has_flushed(&ch->out); spin++) {
    bool would_block;
    ssize_t w = lp_outbound_write(&ch->out, ch->fd, &would_block);
    if (w > 0) {
      ch->bytes_out += (uint64_t)w;
      if (LP_LIKELY(ch->flags & LP_CH_IN_STATS)) {
        LP_STAT_ADD(&ch->loop->stats, writes, 1);
        LP_STAT_ADD(&ch->loop->stats, bytes_out, (uint64_t)w);
      }
    } else if (w < 0) {
      lp_channel_set_close_cause(ch, close_cause_of((int)-w), (int)-w);
      lp_error e;
      if (w == LP_EFILESHORT) // the stream would have a hole: fail the region and close
        lp_error_named(&e, LP_EFILESHORT, "the file ended with %zu bytes of the region still to send (channel #%llu)",
                       ch->out.head->bytes.len, (unsigned long long)ch->id);
      else lp_error_sys(&e, (int)-w, "write");
      // Writes made without a promise: the channel reports the failure itself.
      if (!lp_outbound_fail(&ch->out, &e, true, false)) lp_channel_fail_promise(ch, NULL, &e);
      lp_channel_close_now(ch);
      return;
    }
    if (would_block) break;
  }
  bool more = lp_outbound_has_flushed(&ch->out);
  if (more && !ev_is_active(&ch->write_watcher)) ev_io_start(ch->loop->ev, &ch->write_watcher);
  else if (!more && ev_is_active(&ch->write_watcher)) ev_io_stop(ch->loop->ev, &ch->write_watcher);
  if (!more && (ch->flags & LP_CH_OUTPUT_SHUTDOWN) && !ch->out.head) finish_shutdown_output(ch);
  if (!(ch->flags & LP_CH_CLOSED)) lp_channel_update_writability(ch);
  if (!more && (ch->flags & LP_CH_DRAINING)) drain_progress(ch);
}

static void sock_write(lp_channel *ch, lp_msg *m, lp_future *promise) {
  if (ch->flags & (LP_CH_CLOSED | LP_CH_OUTPUT_SHUTDOWN)) {
    lp_msg_release(m);
    fail_closed(ch, promise);
    return;
  }
  lp_bytes b = {0};
  lp_error e;
  if (m->kind == LP_MSG_BUF) {
    b.buf = m->u.buf;
    m->kind = LP_MSG_NONE;
  } else if (m->kind == LP_MSG_HOST && ch->loop->host_ops && ch->loop->host_ops->to_bytes) {
    if (ch->loop->host_ops->to_bytes(ch, m, &b, &e) != 0) {
      lp_channel_fail_promise(ch, promise, &e);
      return;
    }
  } else {
    static const char *const kinds[] = {"nothing", "buffer", "value", "error", "event", "pointer", "datagram"};
    lp_error_named(&e, LP_EUNSUPPORTED, "cannot write %s to channel #%llu: add an encoder", kinds[m->kind],
                   (unsigned long long)ch->id);
    lp_msg_release(m);
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  // Once a write could not be queued, none after it is: the peer sees a
  // prefix of what was written, never a stream with a hole in it.
  if (ch->flags & LP_CH_OUTPUT_FAILED) {
    lp_error_named(&e, LP_EWRITEFULL, "channel #%llu takes no more writes since an earlier one failed",
                   (unsigned long long)ch->id);
    lp_bytes_release(&b);
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  // The cap stops growth: a write is refused once what is pending has reached
  // it. The write that crosses it is taken whole, so that one message larger
  // than the cap (a big reply, already in memory) still goes out; memory
  // stays within maxPendingBytes plus one message.
  // File regions count toward the water marks (bytes the peer has yet to
  // take) but not here: they hold a descriptor, not memory.
  if (ch->out.pending - ch->out.file_pending >= ch->config.max_pending) {
    lp_error_named(&e, LP_EWRITEFULL, "%zu bytes pending on channel #%llu, limit %zu (maxPendingBytes)",
                   ch->out.pending, (unsigned long long)ch->id, ch->config.max_pending);
    e.limit = (long long)ch->config.max_pending;
    e.length = (long long)(ch->out.pending + lp_outbound_cost(&b));
    ch->flags |= LP_CH_OUTPUT_FAILED;
    lp_bytes_release(&b);
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  if (lp_outbound_add(&ch->out, &b, promise) != 0) {
    ch->flags |= LP_CH_OUTPUT_FAILED;
    lp_error_sys(&e, ENOMEM, "write");
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  lp_channel_update_writability(ch);
}

static void sock_flush(lp_channel *ch) {
  lp_outbound_add_flush(&ch->out);
  if ((ch->flags & (LP_CH_CLOSED | LP_CH_CONNECTING)) || ch->fd < 0 || ev_is_active(&ch->write_watcher)) return;
  if (!(ch->flags & LP_CH_ACTIVE)) return; // written when the connection is up
  do_flush(ch);
}

static void sock_read(lp_channel *ch) {
  ch->flags |= LP_CH_READ_PENDING;
  if (!(ch->flags & LP_CH_IN_READ)) lp_channel_update_reading(ch);
}

static void sock_close(lp_channel *ch, lp_future *promise) {
  lp_channel_close_now(ch);
  if (promise) lp_future_succeed(promise);
}

static void on_writable(struct ev_loop *ev, ev_io *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_channel *ch = lp_container_of(w, lp_channel, write_watcher);
  lp_channel_ref(ch);
  if (ch->flags & LP_CH_CONNECTING) lp_connect_writable(ch);
  else do_flush(ch);
  lp_channel_unref(ch);
}

void lp_channel_flush_now(lp_channel *ch) { do_flush(ch); }

const lp_transport lp_socket_transport = {
    "socket", sock_write, sock_flush, sock_read, sock_close, lp_connect_op, lp_connect_free, NULL,
};

// ---- closing -------------------------------------------------------------

lp_future *lp_channel_close_future(lp_channel *ch) {
  if (!ch->close_future) {
    ch->close_future = lp_future_new(ch->loop);
    if (ch->close_future && (ch->flags & LP_CH_CLOSED)) lp_future_succeed(ch->close_future);
  }
  return ch->close_future;
}

void lp_channel_close_now(lp_channel *ch) {
  if (ch->flags & LP_CH_CLOSED) return;
  ch->flags |= LP_CH_CLOSED;
  ch->flags &= ~(uint32_t)LP_CH_ACTIVE;
  lp_channel_ref(ch);
  if (ev_is_active(&ch->read_watcher)) ev_io_stop(ch->loop->ev, &ch->read_watcher);
  if (ev_is_active(&ch->write_watcher)) ev_io_stop(ch->loop->ev, &ch->write_watcher);
  if (ch->transport == &lp_socket_transport) lp_connect_abort(ch);
  drain_stop(ch);
  if (ch->fd >= 0) {
    close(ch->fd);
    ch->fd = -1;
  }
  lp_error e;
  lp_error_named(&e, LP_ECLOSED, "channel #%llu closed before the write completed", (unsigned long long)ch->id);
  lp_outbound_fail(&ch->out, &e, false, true);
  trim_after_peak(ch);
  if (ch->close_future) lp_future_succeed(ch->close_future);
  count_closed(ch);
  ch->teardown.run = teardown;
  lp_loop_defer(ch->loop, &ch->teardown);
  // The loop's reference now belongs to the teardown task.
  lp_channel_unref(ch);
}

static void teardown(lp_task *t, lp_loop *loop) {
  lp_channel *ch = lp_container_of(t, lp_channel, teardown);
  lp_pipeline *p = &ch->pipeline;
  lp_pipeline_enter(p);
  if (ch->flags & LP_CH_WAS_ACTIVE) lp_pipeline_fire(p, LP_EV_INACTIVE, NULL);
  if (ch->flags & LP_CH_REGISTERED) lp_pipeline_fire(p, LP_EV_UNREGISTERED, NULL);
  lp_pipeline_leave(p);
  lp_pipeline_destroy(p);
  // Anything written by handlers during inactive/unregistered has failed already.
  ch->flags |= LP_CH_TORN_DOWN;
  if (!lp_list_empty(&ch->link)) {
    lp_list_remove(&ch->link);
    if (!(ch->flags & LP_CH_UNCOUNTED) && --loop->nchannels == 0) lp_loop_trim_soon(loop); // the pool's cache too
  }
  if (loop->host_ops && loop->host_ops->channel_teardown) loop->host_ops->channel_teardown(ch);
  lp_channel_unref(ch); // the loop's reference
}

void lp_channel_close_all(lp_loop *loop) {
  lp_list *n = loop->channels.next;
  while (n != &loop->channels) {
    lp_channel *ch = lp_container_of(n, lp_channel, link);
    n = n->next;
    lp_channel_close_now(ch);
  }
}

// ---- entry points ----------------------------------------------------------

void lp_channel_head_op(lp_channel *ch, int op, lp_msg *m, lp_future *promise) {
  const lp_transport *u = ch->transport;
  switch (op) {
  case LP_OP_WRITE: u->write(ch, m, promise); break;
  case LP_OP_FLUSH: u->flush(ch); break;
  case LP_OP_READ: u->read(ch); break;
  case LP_OP_CLOSE: u->close(ch, promise); break;
  case LP_OP_CONNECT:
    if (u->connect) u->connect(ch, m, promise);
    else if (promise) lp_future_fail_code(promise, -EOPNOTSUPP, "connect");
    break;
  default: break;
  }
}

void lp_channel_write(lp_channel *ch, lp_msg *m, lp_future *promise) {
  lp_pipeline_enter(&ch->pipeline);
  lp_pipeline_op(&ch->pipeline, LP_OP_WRITE, m, promise);
  lp_pipeline_leave(&ch->pipeline);
}

void lp_channel_flush(lp_channel *ch) {
  lp_pipeline_enter(&ch->pipeline);
  lp_pipeline_op(&ch->pipeline, LP_OP_FLUSH, NULL, NULL);
  lp_pipeline_leave(&ch->pipeline);
}

void lp_channel_read(lp_channel *ch) {
  lp_pipeline_enter(&ch->pipeline);
  lp_pipeline_op(&ch->pipeline, LP_OP_READ, NULL, NULL);
  lp_pipeline_leave(&ch->pipeline);
}

void lp_channel_close(lp_channel *ch, lp_future *promise) {
  if (ch->pipeline.destroyed) {
    lp_channel_close_now(ch);
    if (promise) lp_future_succeed(promise);
    return;
  }
  lp_pipeline_enter(&ch->pipeline);
  lp_pipeline_op(&ch->pipeline, LP_OP_CLOSE, NULL, promise);
  lp_pipeline_leave(&ch->pipeline);
}

void lp_channel_set_auto_read(lp_channel *ch, bool on) {
  bool was = ch->config.auto_read;
  ch->config.auto_read = on;
  // Switched on: a read() through the pipeline, as Netty does, so that a
  // handler holding messages (a decoder while reading was off) delivers them.
  if (on && !was && !(ch->flags & LP_CH_CLOSED) && !ch->pipeline.destroyed) lp_channel_read(ch);
  else if (!(ch->flags & LP_CH_IN_READ)) lp_channel_update_reading(ch);
}

int lp_channel_shutdown_output(lp_channel *ch, lp_future *promise) {
  if (ch->flags & LP_CH_CLOSED) {
    if (promise) lp_future_fail_code(promise, LP_ECLOSED, "channel is closed");
    return LP_ECLOSED;
  }
  if (!(ch->flags & LP_CH_OUTPUT_SHUTDOWN)) {
    ch->flags |= LP_CH_OUTPUT_SHUTDOWN;
    // What was written before goes out first; the FIN follows the last byte.
    lp_outbound_add_flush(&ch->out);
    if (!ch->out.head) finish_shutdown_output(ch);
    else if (!ev_is_active(&ch->write_watcher) && (ch->flags & LP_CH_ACTIVE)) do_flush(ch);
  }
  if (promise) lp_future_succeed(promise);
  return 0;
}

int lp_channel_set_water_marks(lp_channel *ch, size_t low, size_t high) {
  if (low > high) return -EINVAL;
  ch->config.low_water = low;
  ch->config.high_water = high;
  if (!(ch->flags & LP_CH_CLOSED)) lp_channel_update_writability(ch);
  return 0;
}

// ---- graceful close (shutdown) -----------------------------------------------
// Input stops reaching the pipeline and is read and dropped; everything written
// is flushed; once the last byte is in the kernel the FIN follows it, and the
// channel closes when the peer closes its side. Reading on until then keeps
// the kernel from answering late input with a RST, which would discard what
// is still in the send buffer. Whoever drains bounds the wait (a deadline that
// closes what is left).

void lp_channel_close_gracefully(lp_channel *ch) {
  if (ch->flags & (LP_CH_CLOSED | LP_CH_DRAINING)) return;
  if ((ch->flags & (LP_CH_ACTIVE | LP_CH_CONNECTING)) != LP_CH_ACTIVE || ch->fd < 0 ||
      ch->transport != &lp_socket_transport) {
    lp_channel_close_now(ch);
    return;
  }
  ch->flags |= LP_CH_DRAINING;
  lp_channel_ref(ch);
  lp_channel_update_reading(ch);
  lp_outbound_add_flush(&ch->out);
  if (!ev_is_active(&ch->write_watcher)) do_flush(ch); // else EV_WRITE finishes it (do_flush -> drain_progress)
  lp_channel_unref(ch);
}

// Called when nothing flushed is left to write.
static void drain_progress(lp_channel *ch) {
  if (ch->flags & LP_CH_CLOSED) return;
  if (!(ch->flags & LP_CH_OUTPUT_SHUTDOWN)) {
    ch->flags |= LP_CH_OUTPUT_SHUTDOWN; // later writes fail: the FIN is on its way
    if (shutdown(ch->fd, SHUT_WR) < 0) {
      lp_channel_close_now(ch);
      return;
    }
  }
  if (ch->flags & LP_CH_INPUT_SHUTDOWN) lp_channel_close_now(ch);
}

// ---- closing after the peer's EOF ----------------------------------------------------
// Without allowHalfClosure (or with the output already shut down) the peer's
// FIN ends the channel, but only once what it was given has gone out: input
// is off (nothing more can come), everything written is flushed, the FIN
// follows the last byte (drain_progress) and the channel closes. drainTimeout
// bounds the wait for a peer that never reads; what it cuts off is logged.

struct lp_drain {
  ev_timer timer;
  lp_channel *ch; // not a reference: the channel stops and frees this when it closes
};

static void drain_stop(lp_channel *ch) {
  if (!ch->drain) return;
  ev_timer_stop(ch->loop->ev, &ch->drain->timer);
  free(ch->drain);
  ch->drain = NULL;
}

static void on_drain_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_channel *ch = lp_container_of(w, struct lp_drain, timer)->ch;
  size_t unsent = lp_outbound_payload(&ch->out);
  if (unsent)
    lp_log(LP_LOG_WARN, ch->id, "closing with %zu bytes unsent: the peer did not read them within %g s (drainTimeout)",
           unsent, ch->config.drain_timeout);
  else // a lingering close: all was sent, the peer did not close its side
    lp_log(LP_LOG_DEBUG, ch->id, "closing: the peer did not close within %g s (drainTimeout)", ch->config.drain_timeout);
  if (ch->close_cause == LP_CLOSE_EOF) ch->close_cause = LP_CLOSE_NONE; // the peer closed, then did not read: a timeout
  lp_channel_set_close_cause(ch, LP_CLOSE_TIMEOUT, 0);
  lp_channel_close_now(ch); // frees ch->drain (and w)
}

// Bound a drain by drainTimeout (0: no bound). false when out of memory (the channel is closed).
static bool drain_timer_start(lp_channel *ch) {
  if (ch->config.drain_timeout <= 0 || ch->drain) return true;
  ch->drain = malloc(sizeof *ch->drain);
  if (!ch->drain) {
    lp_channel_close_now(ch);
    return false;
  }
  ch->drain->ch = ch;
  ev_timer_init(&ch->drain->timer, on_drain_timeout, ch->config.drain_timeout, 0.);
  ev_timer_start(ch->loop->ev, &ch->drain->timer);
  return true;
}

void lp_channel_close_lingering(lp_channel *ch) {
  if (ch->flags & (LP_CH_CLOSED | LP_CH_DRAINING)) return;
  lp_channel_ref(ch);
  lp_channel_close_gracefully(ch);
  if ((ch->flags & (LP_CH_DRAINING | LP_CH_CLOSED)) == LP_CH_DRAINING) drain_timer_start(ch);
  lp_channel_unref(ch);
}

static void close_after_flush(lp_channel *ch) {
  ch->flags |= LP_CH_INPUT_SHUTDOWN;
  lp_outbound_add_flush(&ch->out);
  if (!ch->out.head || (ch->flags & LP_CH_DRAINING) || ch->fd < 0) {
    lp_channel_close_now(ch); // nothing left to write (a shutdown drain sees the FIN in drain_input)
    return;
  }
  ch->flags |= LP_CH_DRAINING;
  lp_channel_update_reading(ch); // off: the input has ended
  if (!drain_timer_start(ch)) return;
  if (!ev_is_active(&ch->write_watcher)) do_flush(ch); // else EV_WRITE finishes it (do_flush -> drain_progress)
}

static void drain_input(lp_channel *ch) {
  char sink[16384];
  for (int i = 0; i < 16; i++) {
    ssize_t n = read(ch->fd, sink, sizeof sink);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) { // reset: nothing more can be delivered
      lp_channel_set_close_cause(ch, close_cause_of(errno), errno);
      lp_channel_close_now(ch);
      return;
    }
    ch->flags |= LP_CH_INPUT_SHUTDOWN; // EOF: the peer may still read what is left to write
    lp_channel_update_reading(ch);
    if (!lp_outbound_has_flushed(&ch->out)) drain_progress(ch);
    return;
  }
}

// ---- descriptions ------------------------------------------------------------

void lp_channel_addresses(const lp_channel *ch, char *out, size_t outlen) {
  char l[LP_ADDR_STRLEN], r[LP_ADDR_STRLEN];
  if (ch->transport == &lp_udp_transport) { // "udp 127.0.0.1:5000", and "<-> peer" when connected
    lp_chaddr_format(&ch->local, l, sizeof l);
    lp_chaddr_format(&ch->remote, r, sizeof r);
    bool connected = lp_chaddr_family(&ch->remote) != 0;
    snprintf(out, outlen, "udp %s%s%s", l, connected ? " <-> " : "", connected ? r : "");
    return;
  }
  if (ch->transport != &lp_socket_transport) {
    snprintf(out, outlen, "%s", ch->transport->kind);
    return;
  }
  lp_chaddr_format(&ch->local, l, sizeof l);
  lp_chaddr_format(&ch->remote, r, sizeof r);
  snprintf(out, outlen, "%s <- %s", l, r);
}

void lp_channel_describe(const lp_channel *ch, char *out, size_t outlen) {
  char a[2 * LP_ADDR_STRLEN + 8];
  lp_channel_addresses(ch, a, sizeof a);
  snprintf(out, outlen, "#%llu %s", (unsigned long long)ch->id, a);
}

void lp_channel_describe_msg(const lp_channel *ch, const lp_msg *m, char *out, size_t outlen) {
  switch (m ? m->kind : LP_MSG_NONE) {
  case LP_MSG_ERROR: snprintf(out, outlen, "%s", m->u.err->message); break;
  case LP_MSG_BUF: snprintf(out, outlen, "a buffer of %zu bytes", lp_buf_readable(m->u.buf)); break;
  case LP_MSG_EVENT: snprintf(out, outlen, "event %s", m->u.event->kind); break;
  case LP_MSG_DGRAM: {
    const lp_dgram *d = m->u.ptr;
    char a[64];
    snprintf(out, outlen, "a datagram of %zu bytes from %s", lp_buf_readable(d->buf), lp_addr_format(&d->addr, a, sizeof a));
    break;
  }
  case LP_MSG_HOST:
    if (ch->loop->host_ops && ch->loop->host_ops->describe) {
      ch->loop->host_ops->describe(ch, m, out, outlen);
      break;
    }
    /* fallthrough */
  default: snprintf(out, outlen, "(no detail)"); break;
  }
}
