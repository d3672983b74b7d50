// connect.c: connecting a client channel. Two layers:
// - the head's connect operation (lp_connect_op, for socket channels): a
//   non-blocking connect to the address the operation carries, then to the
//   fallbacks in turn when one is refused or unreachable, all within one time
//   limit (ConnectTimeout); on success channelActive, and the writes queued
//   meanwhile go out.
// - lp_channel_connect_host, Netty's Bootstrap.connect after the channel is
//   registered: a numeric address goes straight to the connect operation; a
//   name is resolved first (resolver.c), then the operation carries the first
//   address and the head tries the others. One time limit covers the lookup
//   and every attempt.
//
// While a name resolves, a job owns the promise. It is referenced by the
// lookup (until its result or the timeout) and by a listener on the channel's
// close future (so that closing the channel meanwhile fails the promise at
// once); whichever finishes first completes the promise, the last frees it.
#include "connect.h"

#include "future.h"
#include "resolver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- the head's connect operation ----------------------------------------------

typedef struct connect_state {
  lp_future *promise;
  ev_timer timer;
  lp_channel *ch;
  double timeout;          // seconds from prepare_connect to connected; 0: no limit
  double deadline;         // loop time when it runs out
  uint8_t nalts, next_alt; // addresses to try in turn when one fails
  lp_sockaddr alts[LP_CONNECT_MAX_FALLBACKS];
} connect_state;

static void attempt(lp_channel *ch, const lp_sockaddr *addr);

static void connect_done(lp_channel *ch, int err, int code) {
  connect_state *cs = ch->kind_state;
  if (err && !code && cs && cs->next_alt < cs->nalts && !(ch->flags & LP_CH_CLOSED)) {
    // Refused or unreachable: the next address, within the same time limit.
    if (ev_is_active(&ch->write_watcher)) ev_io_stop(ch->loop->ev, &ch->write_watcher);
    ch->flags &= ~(uint32_t)LP_CH_CONNECTING;
    if (ch->fd >= 0) close(ch->fd);
    ch->fd = -1;
    attempt(ch, &cs->alts[cs->next_alt++]);
    return;
  }
  lp_future *promise = cs ? cs->promise : NULL;
  if (cs) {
    cs->promise = NULL;
    ev_timer_stop(ch->loop->ev, &cs->timer);
  }
  ch->flags &= ~(uint32_t)LP_CH_CONNECTING;
  if (ev_is_active(&ch->write_watcher)) ev_io_stop(ch->loop->ev, &ch->write_watcher);
  if (err || code) {
    lp_error e;
    char addr[LP_ADDR_STRLEN];
    lp_chaddr_format(&ch->remote, addr, sizeof addr);
    if (code) lp_error_named(&e, code, "connect to %s timed out after %g s", addr, cs ? cs->timeout : 0.);
    else lp_error_sys(&e, err, "connect");
    if (!code) snprintf(e.message, sizeof e.message, "%s: %s (connect to %s)", e.kind, strerror(err), addr);
    lp_channel_close_now(ch);
    if (promise) lp_future_fail(promise, &e);
  } else {
    lp_sockaddr a;
    if (lp_sock_local(ch->fd, &a) == 0) lp_chaddr_set(&ch->local, &a);
    lp_channel_apply_socket_options(ch);
    if (promise) lp_future_succeed(promise);
    lp_channel_activate(ch);
    if (!(ch->flags & LP_CH_CLOSED) && lp_outbound_has_flushed(&ch->out)) lp_channel_flush_now(ch);
  }
  if (promise) lp_future_unref(promise);
}

static void on_connect_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  connect_state *cs = lp_container_of(w, connect_state, timer);
  lp_channel *ch = cs->ch;
  lp_channel_ref(ch);
  connect_done(ch, 0, LP_ECONNTIMEOUT);
  lp_channel_unref(ch);
}

// Start a non-blocking connect to addr; an address that fails at once
// (unreachable network, no such family) moves on to the next one.
static void attempt(lp_channel *ch, const lp_sockaddr *addr) {
  connect_state *cs = ch->kind_state;
  for (;;) {
    lp_chaddr_set(&ch->remote, addr);
    int fd = -1;
    int rc = lp_sock_connect_start(addr, &fd);
    if (rc == 0 || rc == -EINPROGRESS) {
      ch->fd = fd;
      ev_io_set(&ch->read_watcher, fd, EV_READ);
      ev_io_set(&ch->write_watcher, fd, EV_WRITE);
      if (rc == 0) {
        connect_done(ch, 0, 0);
      } else {
        ch->flags |= LP_CH_CONNECTING;
        ev_io_start(ch->loop->ev, &ch->write_watcher);
      }
      return;
    }
    if (fd >= 0) close(fd);
    if (!cs || cs->next_alt >= cs->nalts) {
      connect_done(ch, -rc, 0);
      return;
    }
    addr = &cs->alts[cs->next_alt++];
  }
}

void lp_connect_op(lp_channel *ch, lp_msg *m, lp_future *promise) {
  const lp_sockaddr *addr = m->kind == LP_MSG_PTR ? m->u.ptr : NULL;
  int err = 0;
  if (!addr) err = EINVAL;
  else if (ch->flags & LP_CH_CLOSED) err = EBADF;
  else if (ch->flags & LP_CH_CONNECTING) err = EALREADY;
  else if (ch->fd >= 0) err = EISCONN;
  else if (!ch->kind_state && lp_channel_prepare_connect(ch, 0) != 0) err = ENOMEM;
  if (err) {
    if (promise) lp_future_fail_code(promise, -err, "connect");
    return;
  }
  connect_state *cs = ch->kind_state;
  if (cs->promise) lp_future_unref(cs->promise);
  cs->promise = promise ? lp_future_ref(promise) : NULL;
  if (cs->timeout > 0) { // what is left of it: a name may have been resolved meanwhile
    double left = cs->deadline - lp_loop_now(ch->loop);
    ev_timer_set(&cs->timer, left > 0.001 ? left : 0.001, 0.);
    ev_timer_start(ch->loop->ev, &cs->timer);
  }
  lp_channel_ref(ch);
  attempt(ch, addr);
  lp_channel_unref(ch);
}

void lp_connect_free(lp_channel *ch) {
  connect_state *cs = ch->kind_state;
  if (!cs) return;
  if (cs->promise) lp_future_unref(cs->promise);
  free(cs);
  ch->kind_state = NULL;
}

// Prepare a client channel (no fd yet) so that connect can time out.
int lp_channel_prepare_connect(lp_channel *ch, double timeout) {
  connect_state *cs = ch->kind_state;
  if (!cs) {
    if (!(cs = calloc(1, sizeof *cs))) return -ENOMEM;
    cs->ch = ch;
    ev_timer_init(&cs->timer, on_connect_timeout, 0., 0.);
    ch->kind_state = cs;
  }
  cs->timeout = timeout > 0 ? timeout : 0;
  ev_now_update(ch->loop->ev); // the deadline counts from now, not from the loop's last wakeup
  cs->deadline = lp_loop_now(ch->loop) + cs->timeout;
  return 0;
}

int lp_channel_set_connect_fallbacks(lp_channel *ch, const lp_sockaddr *addrs, size_t n) {
  connect_state *cs = ch->kind_state;
  if (!cs || (ch->flags & (LP_CH_CONNECTING | LP_CH_CLOSED)) || ch->fd >= 0) return -EINVAL;
  if (n > LP_CONNECT_MAX_FALLBACKS) n = LP_CONNECT_MAX_FALLBACKS;
  memcpy(cs->alts, addrs, n * sizeof *addrs);
  cs->nalts = (uint8_t)n;
  cs->next_alt = 0;
  return 0;
}

void lp_connect_writable(lp_channel *ch) { connect_done(ch, -lp_sock_error(ch->fd), 0); }

void lp_connect_abort(lp_channel *ch) {
  connect_state *cs = ch->kind_state;
  if (!cs) return;
  ev_timer_stop(ch->loop->ev, &cs->timer);
  if (cs->promise) {
    lp_future *p = cs->promise;
    cs->promise = NULL;
    lp_error e;
    lp_error_named(&e, LP_ECLOSED, "channel #%llu closed before it connected", (unsigned long long)ch->id);
    lp_future_fail(p, &e);
    lp_future_unref(p);
  }
}

// ---- connect to host:port (a name or a number) ----------------------------------

typedef struct connect_job {
  lp_channel *ch;      // a reference
  lp_future *promise;  // a reference, or NULL
  lp_resolve_req *req; // while the lookup runs
  ev_timer timer;
  double timeout;
  int port;
  int refs;
  bool finished;       // the promise has its outcome, or the connect operation has it
  char host[];
} connect_job;

static void fail_closed(lp_channel *ch, lp_future *promise) {
  if (!promise) return;
  lp_error e;
  lp_error_named(&e, LP_ECLOSED, "channel #%llu closed before it connected", (unsigned long long)ch->id);
  lp_future_fail(promise, &e);
}

// The connect operation, through the pipeline to the head (prepared already).
static void connect_op(lp_channel *ch, const lp_sockaddr *addrs, size_t n, lp_future *promise) {
  if (n > 1) lp_channel_set_connect_fallbacks(ch, addrs + 1, n - 1);
  lp_msg m = {.kind = LP_MSG_PTR, .u.ptr = (void *)(uintptr_t)addrs};
  lp_pipeline_enter(&ch->pipeline);
  lp_pipeline_op(&ch->pipeline, LP_OP_CONNECT, &m, promise);
  lp_pipeline_leave(&ch->pipeline);
}

static void job_unref(connect_job *j) {
  if (--j->refs) return;
  lp_channel_unref(j->ch);
  if (j->promise) lp_future_unref(j->promise);
  free(j);
}

// Callers hold a reference of their own: the lookup's may go here.
static void job_finish(connect_job *j) {
  j->finished = true;
  ev_timer_stop(j->ch->loop->ev, &j->timer);
  lp_resolve_req *req = j->req;
  j->req = NULL;
  if (req) {
    lp_resolve_cancel(req); // its callback will not run: drop its reference
    job_unref(j);
  }
}

static void on_resolved(void *ud, const lp_error *err, const lp_sockaddr *addrs, size_t n) {
  connect_job *j = ud;
  lp_channel *ch = j->ch;
  j->req = NULL; // delivered: the lookup's reference is ours to drop below
  if (j->finished) {
    job_unref(j);
    return;
  }
  job_finish(j);
  lp_channel_ref(ch);
  if (ch->flags & LP_CH_CLOSED) {
    fail_closed(ch, j->promise);
  } else if (err) {
    lp_channel_close_now(ch);
    if (j->promise) lp_future_fail(j->promise, err);
  } else {
    connect_op(ch, addrs, n, j->promise); // within what is left of the time limit
  }
  lp_channel_unref(ch);
  job_unref(j);
}

static void on_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  connect_job *j = lp_container_of(w, connect_job, timer);
  lp_channel *ch = j->ch;
  j->refs++;
  job_finish(j);
  lp_error e;
  lp_error_named(&e, LP_ECONNTIMEOUT, "connect to %s:%d timed out after %g s (resolving the name)", j->host, j->port,
                 j->timeout);
  lp_channel_close_now(ch);
  if (j->promise) lp_future_fail(j->promise, &e);
  job_unref(j);
}

static void on_closed(lp_future *f, void *ud) {
  LP_UNUSED(f);
  connect_job *j = ud; // this listener's reference
  if (!j->finished) {
    job_finish(j);
    fail_closed(j->ch, j->promise);
  }
  job_unref(j);
}

void lp_channel_connect_host(lp_channel *ch, const char *host, int port, double timeout, lp_future *promise) {
  if (ch->flags & LP_CH_CLOSED) {
    fail_closed(ch, promise);
    return;
  }
  if (lp_channel_prepare_connect(ch, timeout) != 0) {
    lp_channel_close_now(ch);
    if (promise) lp_future_fail_code(promise, -ENOMEM, "connect");
    return;
  }
  lp_sockaddr addr;
  int rc = strcmp(host, "localhost") != 0 ? lp_addr_parse(host, port, &addr) : -EINVAL;
  if (rc == 0) {
    connect_op(ch, &addr, 1, promise); // numeric or a Unix socket: no lookup
    return;
  }
  if (lp_addr_is_unix_text(host)) { // never a DNS name
    lp_channel_close_now(ch);
    if (promise) lp_future_fail_code(promise, rc, "connect");
    return;
  }
  size_t len = strlen(host);
  connect_job *j = calloc(1, sizeof *j + len + 1);
  lp_future *cf = lp_channel_close_future(ch);
  if (!j || !cf) {
    free(j);
    lp_channel_close_now(ch);
    if (promise) lp_future_fail_code(promise, -ENOMEM, "connect");
    return;
  }
  memcpy(j->host, host, len + 1);
  j->ch = lp_channel_ref(ch);
  j->promise = promise ? lp_future_ref(promise) : NULL;
  j->timeout = timeout > 0 ? timeout : 0;
  j->port = port;
  j->refs = 1; // the lookup's
  ev_timer_init(&j->timer, on_timeout, j->timeout, 0.);
  if (lp_future_add_listener(cf, on_closed, j) == 0) j->refs++;
  j->req = lp_resolve(ch->loop, host, port, on_resolved, j);
  if (!j->req) {
    j->finished = true;
    lp_channel_close_now(ch);
    if (promise) lp_future_fail_code(promise, -ENOMEM, "connect");
    job_unref(j);
    return;
  }
  if (j->timeout > 0) ev_timer_start(ch->loop->ev, &j->timer);
}
