// future.c: futures and their deferred notification.
#include "future.h"

#include "host.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void notify(lp_task *t, lp_loop *loop);

#define FUTURE_CACHE_MAX 1024

// Futures are made and freed on their loop's thread: a per-loop free list
// keeps the write path off malloc.
// The loop's free list goes with the loop (an lp_loop_on_free hook).
static void cache_drain(lp_loop *loop) {
  while (loop->free_futures) {
    lp_future *f = loop->free_futures;
    loop->free_futures = (lp_future *)(void *)f->listeners;
    free(f);
  }
  loop->nfree_futures = 0;
}

lp_future *lp_future_new(lp_loop *loop) {
  lp_future *f = loop ? loop->free_futures : NULL;
  if (f) {
    loop->free_futures = (lp_future *)(void *)f->listeners;
    loop->nfree_futures--;
    memset(f, 0, sizeof *f);
  } else if ((loop && lp_loop_on_free(loop, LP_LOOP_GONE, cache_drain)) || !(f = calloc(1, sizeof *f))) {
    return NULL; // a future made here may end in the loop's free list: drained with it
  }
  f->loop = loop;
  f->refs = 1;
  f->host_ref = -1;
  f->notify.run = notify;
  return f;
}

static void drop_unobserved(lp_future *f) {
  if (f->unobserved_drop) f->unobserved_drop(f->unobserved_ud);
  f->unobserved = NULL;
  f->unobserved_drop = NULL;
  f->unobserved_ud = NULL;
}

void lp_future_unref(lp_future *f) {
  if (!f || --f->refs) return;
  while (f->listeners) {
    lp_listener *l = f->listeners;
    f->listeners = l->next;
    free(l);
  }
  drop_unobserved(f);
  if (f->value_drop) f->value_drop(f->value);
  if (f->host_ref >= 0 && f->loop && f->loop->host_ops && f->loop->host_ops->future_free)
    f->loop->host_ops->future_free(f);
  free(f->cause);
  lp_loop *loop = f->loop;
  if (loop && loop->nfree_futures < FUTURE_CACHE_MAX) {
    f->listeners = (lp_listener *)(void *)loop->free_futures;
    loop->free_futures = f;
    loop->nfree_futures++;
  } else {
    free(f);
  }
}

static void schedule(lp_future *f) {
  if (f->queued || !f->loop) return;
  f->queued = true;
  lp_future_ref(f);
  lp_loop_defer(f->loop, &f->notify);
}

static void notify(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  lp_future *f = lp_container_of(t, lp_future, notify);
  f->queued = false;
  if (!f->listeners && f->state == LP_FUTURE_FAILED && !f->observed && !f->quiet && f->unobserved) {
    void (*fn)(lp_future *, void *) = f->unobserved;
    f->unobserved = NULL;
    fn(f, f->unobserved_ud);
  }
  // Listeners added while these run are queued again by add_listener.
  while (f->listeners) {
    lp_listener *l = f->listeners;
    f->listeners = l->next;
    l->fn(f, l->ud);
    free(l);
  }
  drop_unobserved(f);
  lp_future_unref(f);
}

static bool wants_notify(const lp_future *f) {
  return f->listeners || (f->state == LP_FUTURE_FAILED && f->unobserved && !f->quiet);
}

int lp_future_succeed(lp_future *f) {
  if (f->state != LP_FUTURE_PENDING) return -EALREADY;
  f->state = LP_FUTURE_SUCCESS;
  if (f->listeners) schedule(f);
  else drop_unobserved(f);
  return 0;
}

int lp_future_fail(lp_future *f, const lp_error *cause) {
  if (f->state != LP_FUTURE_PENDING) return -EALREADY;
  f->state = LP_FUTURE_FAILED;
  f->cause = malloc(sizeof *f->cause);
  if (f->cause) *f->cause = *cause;
  if (wants_notify(f)) schedule(f);
  else drop_unobserved(f);
  return 0;
}

int lp_future_fail_code(lp_future *f, int code, const char *what) {
  lp_error e;
  if (code < 0 && code > -10000) lp_error_sys(&e, -code, what);
  else lp_error_named(&e, code, "%s", what ? what : "operation failed");
  return lp_future_fail(f, &e);
}

int lp_future_add_listener(lp_future *f, lp_future_cb fn, void *ud) {
  lp_listener *l = malloc(sizeof *l);
  if (!l) return -ENOMEM;
  l->fn = fn;
  l->ud = ud;
  l->next = NULL;
  lp_listener **p = &f->listeners;
  while (*p) p = &(*p)->next;
  *p = l;
  if (f->state != LP_FUTURE_PENDING) schedule(f);
  return 0;
}

void lp_future_on_unobserved(lp_future *f, void (*fn)(lp_future *, void *), void (*drop)(void *), void *ud) {
  drop_unobserved(f);
  f->unobserved = fn;
  f->unobserved_drop = drop;
  f->unobserved_ud = ud;
}
