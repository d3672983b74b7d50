// bootstrap.c: connecting a client channel to host:port, Netty's
// Bootstrap.connect after the channel is registered. A numeric address goes
// straight to the connect operation; a name is resolved first (resolver.c),
// then the connect operation carries the first address and the head tries the
// others in turn (lp_channel_set_connect_fallbacks). One time limit covers the
// lookup and every attempt.
//
// While a name resolves, a job owns the promise. It is referenced by the
// lookup (until its result or the timeout) and by a listener on the channel's
// close future (so that closing the channel meanwhile fails the promise at
// once); whichever finishes first completes the promise, the last frees it.
#include "channel.h"
#include "future.h"
#include "resolver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  if (strcmp(host, "localhost") != 0 && lp_addr_parse(host, port, &addr) == 0) {
    connect_op(ch, &addr, 1, promise); // numeric: no lookup
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
