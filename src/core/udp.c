// udp.c: the UDP transport (see udp.h): opening the socket, the batched read
// loop (recvmmsg) and flush (sendmmsg), and datagram messages.
//
// Rules kept:
// - Every datagram received in a batch is copied out of the receive area
//   into its own pooled buffer before any event fires: a handler may run a
//   nested loop that reads this channel again (the area is reused).
// - As in channel.c, after each fire the code re-checks LP_CH_CLOSED before
//   touching the fd, and holds a reference across it.
// - Each outbound entry is exactly one datagram. An entry addressed to a
//   recipient carries it in its bytes' release context (struct addressed);
//   an entry without one goes to the connected peer.
#include "udp.h"

#include "buffer.h"
#include "future.h"
#include "host.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// The transport's state (ch->kind_state, owned; freed by udp_free).
typedef struct udp_state {
  lp_udp_config cfg;
  uint8_t *area;  // the receive area: vlen slots of cfg.max_datagram bytes, made on first read
  unsigned vlen;  // datagrams per recvmmsg
  struct mmsghdr hdr[LP_UDP_BATCH];
  struct iovec iov[LP_UDP_BATCH];
  lp_sockaddr from[LP_UDP_BATCH];
} udp_state;

// An outbound datagram with a recipient: the bytes (a buffer or pinned host
// memory) and the address, both owned, released with the entry.
typedef struct addressed {
  lp_bytes inner;
  lp_sockaddr to;
} addressed;

static void on_readable(struct ev_loop *ev, ev_io *w, int revents);
static void on_writable(struct ev_loop *ev, ev_io *w, int revents);

lp_dgram *lp_dgram_new(lp_buf *buf, const lp_sockaddr *addr) {
  lp_dgram *d = malloc(sizeof *d);
  if (!d) {
    lp_buf_unref(buf);
    return NULL;
  }
  d->buf = buf;
  d->addr = *addr;
  return d;
}

void lp_dgram_free(lp_dgram *d) {
  if (d->buf) lp_buf_unref(d->buf);
  free(d);
}

void lp_udp_config_default(lp_udp_config *u) {
  u->max_datagram = LP_UDP_MAX_DATAGRAM;
  u->as_string = false;
}

void lp_udp_channel_defaults(lp_channel_config *c) {
  c->close_on_exception = false;
  c->max_messages_per_read = 64;
}

int lp_udp_parse_addr(const char *s, lp_sockaddr *out) {
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || !colon[1]) return -EINVAL;
  char host[64];
  size_t n = (size_t)(colon - s);
  if (n >= sizeof host) return -EINVAL;
  memcpy(host, s, n);
  host[n] = 0;
  if (strchr(host, ':') && host[0] != '[') return -EINVAL; // IPv6 needs brackets: "[::1]:5000"
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535 || colon[1] == '-' || colon[1] == '+') return -EINVAL;
  return lp_addr_parse(host, (int)port, out);
}

// ---- opening ---------------------------------------------------------------------

int lp_udp_open(lp_loop *loop, const lp_sockaddr *local, const lp_sockaddr *remote, bool reuse_port,
                const lp_channel_config *cfg, const lp_udp_config *ucfg, lp_channel **out, const char **step) {
  *out = NULL;
  *step = "socket";
  int family = local ? local->sa.sa_family : remote->sa.sa_family;
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = 0;
  if (reuse_port) rc = lp_sock_set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  if (!rc && family == AF_INET6) rc = lp_sock_set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0); // dual stack, as servers
  if (!rc && cfg->rcvbuf > 0) rc = lp_sock_set_int(fd, SOL_SOCKET, SO_RCVBUF, cfg->rcvbuf);
  if (!rc && cfg->sndbuf > 0) rc = lp_sock_set_int(fd, SOL_SOCKET, SO_SNDBUF, cfg->sndbuf);
  if (!rc && local) {
    *step = "bind";
    if (bind(fd, &local->sa, lp_addr_len(local)) < 0) rc = -errno;
  }
  if (!rc && remote) {
    *step = "connect";
    if (connect(fd, &remote->sa, lp_addr_len(remote)) < 0) rc = -errno;
  }
  udp_state *u = rc ? NULL : calloc(1, sizeof *u);
  if (!rc && !u) rc = -ENOMEM;
  lp_channel *ch = rc ? NULL : lp_channel_new(loop, &lp_udp_transport, fd, cfg);
  if (!rc && !ch) rc = -ENOMEM;
  if (rc) {
    free(u);
    close(fd);
    return rc;
  }
  u->cfg = *ucfg;
  size_t per = u->cfg.max_datagram ? u->cfg.max_datagram : 1;
  size_t fit = LP_UDP_RECV_AREA_MAX / per;
  u->vlen = fit < 1 ? 1 : fit > LP_UDP_BATCH ? LP_UDP_BATCH : (unsigned)fit;
  ch->kind_state = u;
  // lp_channel_new took the fd as connected (LP_CH_CONNECTED: active once
  // registered, as Netty's bound DatagramChannel) and asked for the peer,
  // which only a connected socket has; the watchers are ours.
  if (!remote) lp_chaddr_free(&ch->remote); // (zeroes it: no peer)
  lp_channel_stats_off(ch); // a UDP socket is no connection: out of the connection counts (stats.h)
  ev_io_init(&ch->read_watcher, on_readable, fd, EV_READ);
  ev_io_init(&ch->write_watcher, on_writable, fd, EV_WRITE);
  *out = ch;
  return 0;
}

static void udp_free(lp_channel *ch) {
  udp_state *u = ch->kind_state;
  if (!u) return;
  free(u->area);
  free(u);
  ch->kind_state = NULL;
}

// ---- reading ---------------------------------------------------------------------

// Errors a datagram socket reports for one exchange (ICMP on a connected
// socket): reported, and reading goes on.
static bool transient(int err) {
  switch (err) {
  case ECONNREFUSED: case EHOSTUNREACH: case ENETUNREACH: case EHOSTDOWN: case ENETDOWN: case EPROTO:
  case EMSGSIZE: case ETIMEDOUT: case ECONNRESET:
    return true;
  default: return false;
  }
}

static void peer_error(lp_channel *ch, lp_error *e, int err, const char *op) {
  char a[LP_ADDR_STRLEN];
  lp_error_sys(e, err, NULL);
  size_t n = strlen(e->message);
  if (lp_chaddr_family(&ch->remote))
    snprintf(e->message + n, sizeof e->message - n, " (%s, peer %s)", op, lp_chaddr_format(&ch->remote, a, sizeof a));
  else
    snprintf(e->message + n, sizeof e->message - n, " (%s)", op);
}

static bool make_area(udp_state *u) {
  if (u->area) return true;
  u->area = malloc(u->vlen * u->cfg.max_datagram + 1); // + 1: a zero maxDatagramSize still has an address
  if (!u->area) return false;
  for (unsigned i = 0; i < u->vlen; i++) {
    u->iov[i].iov_base = u->area + i * u->cfg.max_datagram;
    u->iov[i].iov_len = u->cfg.max_datagram;
    struct msghdr *h = &u->hdr[i].msg_hdr;
    h->msg_name = &u->from[i];
    h->msg_iov = &u->iov[i];
    h->msg_iovlen = 1;
  }
  return true;
}

// Fire one received datagram (or the report of a truncated one) at the pipeline.
static void deliver(lp_channel *ch, udp_state *u, unsigned i, lp_dgram *d) {
  if (d) {
    lp_msg m = lp_msg_dgram(d);
    if (u->cfg.as_string) m.flags = LP_MSGF_STRING;
    lp_pipeline_fire(&ch->pipeline, LP_EV_READ, &m);
    return;
  }
  char a[64];
  lp_error e;
  lp_error_named(&e, LP_ETOOLONG, "a datagram of %u bytes from %s exceeds maxDatagramSize %zu: dropped",
                 u->hdr[i].msg_len, lp_addr_format(&u->from[i], a, sizeof a), u->cfg.max_datagram);
  e.limit = (long long)u->cfg.max_datagram;
  e.length = (long long)u->hdr[i].msg_len;
  lp_msg m = lp_msg_err(&e);
  lp_pipeline_fire(&ch->pipeline, LP_EV_EXCEPTION, &m);
}

static void read_loop(lp_channel *ch) {
  udp_state *u = ch->kind_state;
  const uint32_t max = ch->config.max_messages_per_read ? ch->config.max_messages_per_read : 1;
  uint32_t nmsg = 0;
  int err = 0;
  lp_channel_ref(ch);
  lp_pipeline_enter(&ch->pipeline);
  ch->flags |= LP_CH_IN_READ;
  if (!make_area(u)) err = ENOMEM;
  while (!err && nmsg < max) {
    uint32_t f = ch->flags;
    if (f & LP_CH_CLOSED) break;
    if (f & LP_CH_READ_PENDING) ch->flags &= ~(uint32_t)LP_CH_READ_PENDING;
    else if (!ch->config.auto_read || (ch->config.auto_backpressure && (f & (LP_CH_UNWRITABLE | LP_CH_INPUT_HELD))))
      break;
    unsigned want = max - nmsg < u->vlen ? max - nmsg : u->vlen;
    for (unsigned i = 0; i < want; i++) u->hdr[i].msg_hdr.msg_namelen = sizeof u->from[i];
    // MSG_TRUNC: msg_len is the datagram's real length, so a truncated one can say how long it was.
    int n = recvmmsg(ch->fd, u->hdr, want, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    if (n > 0) { // bytes and reads count (a recvmmsg is one read); datagrams are no connections (stats.h)
      uint64_t bytes = 0;
      for (int i = 0; i < n; i++) bytes += u->hdr[i].msg_len;
      ch->bytes_in += bytes;
      LP_STAT_ADD(&ch->loop->stats, reads, 1);
      LP_STAT_ADD(&ch->loop->stats, bytes_in, bytes);
    }
    lp_dgram *got[LP_UDP_BATCH];
    int ready = 0;
    for (; ready < n; ready++) {
      got[ready] = NULL;
      unsigned len = u->hdr[ready].msg_len;
      if ((u->hdr[ready].msg_hdr.msg_flags & MSG_TRUNC) || len > u->cfg.max_datagram) continue;
      lp_buf *b = lp_buf_from(ch->loop->pool, u->iov[ready].iov_base, len);
      if (!b || !(got[ready] = lp_dgram_new(b, &u->from[ready]))) {
        err = ENOMEM; // what was copied is delivered, the rest of the batch is lost
        break;
      }
    }
    for (int i = 0; i < ready; i++) {
      if (ch->flags & LP_CH_CLOSED) {
        if (got[i]) lp_dgram_free(got[i]);
        continue;
      }
      deliver(ch, u, (unsigned)i, got[i]);
    }
    nmsg += (uint32_t)n;
    if ((unsigned)n < want) break; // drained, most likely: skip the EAGAIN call
  }
  ch->flags &= ~(uint32_t)LP_CH_IN_READ;
  if (nmsg && !(ch->flags & LP_CH_CLOSED)) lp_pipeline_fire(&ch->pipeline, LP_EV_READ_COMPLETE, NULL);
  if (!(ch->flags & LP_CH_CLOSED)) {
    if (err) {
      lp_error e;
      peer_error(ch, &e, err, "receive");
      lp_msg m = lp_msg_err(&e);
      lp_pipeline_fire(&ch->pipeline, LP_EV_EXCEPTION, &m);
      if (!transient(err)) lp_channel_close_now(ch);
    }
    if (!(ch->flags & LP_CH_CLOSED)) lp_channel_update_reading(ch);
  }
  lp_pipeline_leave(&ch->pipeline);
  lp_channel_unref(ch);
}

static void on_readable(struct ev_loop *ev, ev_io *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  read_loop(lp_container_of(w, lp_channel, read_watcher));
}

static void udp_read(lp_channel *ch) {
  ch->flags |= LP_CH_READ_PENDING;
  if (!(ch->flags & LP_CH_IN_READ)) lp_channel_update_reading(ch);
}

// ---- writing ---------------------------------------------------------------------

static void addressed_release(void *ud, int tag) {
  LP_UNUSED(tag);
  addressed *a = ud;
  lp_bytes_release(&a->inner);
  free(a);
}

static const lp_sockaddr *recipient_of(const lp_out_entry *e) {
  return e->bytes.release == addressed_release ? &((const addressed *)e->bytes.ud)->to : NULL;
}

static void send_batch(lp_channel *ch) {
  lp_outbound *ob = &ch->out;
  for (int spin = 0; spin < LP_WRITE_SPIN_COUNT && lp_outbound_has_flushed(ob); spin++) {
    struct mmsghdr hdr[LP_UDP_BATCH];
    struct iovec iov[LP_UDP_BATCH];
    unsigned n = 0;
    for (lp_out_entry *e = ob->head; n < ob->flushed && n < LP_UDP_BATCH; e = e->next, n++) {
      iov[n].iov_base = (void *)e->bytes.p;
      iov[n].iov_len = e->bytes.len;
      const lp_sockaddr *to = recipient_of(e);
      hdr[n].msg_hdr = (struct msghdr){
          .msg_name = (void *)to, .msg_namelen = to ? lp_addr_len(to) : 0, .msg_iov = &iov[n], .msg_iovlen = 1};
    }
    int k = sendmmsg(ch->fd, hdr, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (k < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) break; // EV_WRITE resumes
      // The first datagram was refused: it alone fails (ECONNREFUSED after an
      // ICMP port unreachable, EMSGSIZE, EAFNOSUPPORT for the wrong family).
      lp_error e;
      char a[64];
      const lp_sockaddr *to = recipient_of(ob->head);
      if (to) {
        lp_error_sys(&e, err, NULL);
        size_t len = strlen(e.message);
        snprintf(e.message + len, sizeof e.message - len, " (send to %s)", lp_addr_format(to, a, sizeof a));
      } else {
        peer_error(ch, &e, err, "send");
      }
      if (!lp_outbound_fail_head(ob, &e)) lp_channel_fail_promise(ch, NULL, &e);
      if (ch->flags & LP_CH_CLOSED) return;
      continue;
    }
    uint64_t bytes = 0;
    for (int i = 0; i < k; i++) bytes += iov[i].iov_len;
    ch->bytes_out += bytes;
    LP_STAT_ADD(&ch->loop->stats, writes, 1);
    LP_STAT_ADD(&ch->loop->stats, bytes_out, bytes);
    for (int i = 0; i < k; i++) lp_outbound_done_head(ob);
  }
  if (ch->flags & LP_CH_CLOSED) return;
  bool more = lp_outbound_has_flushed(ob);
  if (more && !ev_is_active(&ch->write_watcher)) ev_io_start(ch->loop->ev, &ch->write_watcher);
  else if (!more && ev_is_active(&ch->write_watcher)) ev_io_stop(ch->loop->ev, &ch->write_watcher);
  lp_channel_update_writability(ch);
}

static void on_writable(struct ev_loop *ev, ev_io *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_channel *ch = lp_container_of(w, lp_channel, write_watcher);
  lp_channel_ref(ch);
  send_batch(ch);
  lp_channel_unref(ch);
}

// The socket is bound (and connected) from the start: what init(ch) writes and
// flushes before registration goes out at once too.
static void udp_flush(lp_channel *ch) {
  lp_outbound_add_flush(&ch->out);
  if ((ch->flags & LP_CH_CLOSED) || ev_is_active(&ch->write_watcher)) return;
  send_batch(ch);
}

// The message as bytes and, when it names one, its recipient.
static int message_bytes(lp_channel *ch, lp_msg *m, lp_bytes *b, lp_sockaddr *to, bool *has_to, lp_error *e) {
  *has_to = false;
  if (m->kind == LP_MSG_BUF) {
    b->buf = m->u.buf;
    m->kind = LP_MSG_NONE;
    return 0;
  }
  if (m->kind == LP_MSG_DGRAM) {
    lp_dgram *d = m->u.ptr;
    b->buf = d->buf;
    d->buf = NULL;
    *to = d->addr;
    *has_to = true;
    lp_msg_release(m);
    return 0;
  }
  const lp_host_ops *host = ch->loop->host_ops;
  if (m->kind == LP_MSG_HOST && host && host->to_datagram) return host->to_datagram(ch, m, b, to, has_to, e);
  static const char *const kinds[] = {"nothing", "buffer", "value", "error", "event", "pointer", "datagram"};
  lp_error_named(e, LP_EUNSUPPORTED, "cannot write %s to UDP channel #%llu: write a datagram, a Buffer or a string",
                 kinds[m->kind], (unsigned long long)ch->id);
  lp_msg_release(m);
  return -1;
}

static void udp_write(lp_channel *ch, lp_msg *m, lp_future *promise) {
  lp_error e;
  if (ch->flags & LP_CH_CLOSED) {
    lp_msg_release(m);
    lp_error_named(&e, LP_ECLOSED, "channel #%llu is closed", (unsigned long long)ch->id);
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  lp_bytes b = {0};
  lp_sockaddr to;
  bool has_to;
  if (message_bytes(ch, m, &b, &to, &has_to, &e) != 0) {
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  size_t len = b.buf ? lp_buf_readable(b.buf) : b.len;
  udp_state *u = ch->kind_state;
  if (!has_to && !lp_chaddr_family(&ch->remote)) {
    lp_error_sys(&e, EDESTADDRREQ, NULL);
    size_t n = strlen(e.message);
    snprintf(e.message + n, sizeof e.message - n,
             " (UDP channel #%llu is not connected: write lupine.datagram(data, \"host:port\"))", (unsigned long long)ch->id);
  } else if (len > u->cfg.max_datagram) {
    lp_error_sys(&e, EMSGSIZE, NULL);
    size_t n = strlen(e.message);
    snprintf(e.message + n, sizeof e.message - n, " (a datagram of %zu bytes, over maxDatagramSize %zu)", len,
             u->cfg.max_datagram);
    e.limit = (long long)u->cfg.max_datagram;
    e.length = (long long)len;
  } else if (ch->out.pending >= ch->config.max_pending) {
    // Datagrams are independent: one refused leaves no hole in a stream, so
    // later writes are taken again once the queue has drained below the cap.
    lp_error_named(&e, LP_EWRITEFULL, "%zu bytes pending on channel #%llu, limit %zu (maxPendingBytes)",
                   ch->out.pending, (unsigned long long)ch->id, ch->config.max_pending);
    e.limit = (long long)ch->config.max_pending;
    e.length = (long long)(ch->out.pending + lp_outbound_cost(&b));
  } else {
    e.code = 0;
  }
  if (e.code) {
    lp_bytes_release(&b);
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  // The entry counts the payload and a host entry's overhead (outbound.h);
  // the addressed wrapper and a buffer's unused capacity are not counted:
  // datagram buffers are cut to their size when received.
  if (has_to) { // the recipient travels with the bytes (see recipient_of)
    addressed *a = malloc(sizeof *a);
    if (!a) {
      lp_bytes_release(&b);
      lp_error_sys(&e, ENOMEM, "write");
      lp_channel_fail_promise(ch, promise, &e);
      return;
    }
    a->inner = b;
    a->to = to;
    b = (lp_bytes){.p = b.buf ? lp_buf_rptr(b.buf) : b.p, .len = len, .release = addressed_release, .ud = a};
  }
  if (lp_outbound_add(&ch->out, &b, promise) != 0) {
    lp_error_sys(&e, ENOMEM, "write");
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  lp_channel_update_writability(ch);
}

static void udp_close(lp_channel *ch, lp_future *promise) {
  lp_channel_close_now(ch);
  if (promise) lp_future_succeed(promise);
}

const lp_transport lp_udp_transport = {
    "udp", udp_write, udp_flush, udp_read, udp_close, NULL, udp_free, NULL,
};
