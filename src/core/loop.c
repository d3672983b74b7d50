// loop.c: the event loop. Deferred tasks run from an ev_prepare watcher, that
// is after the callbacks of one poll and before the next poll blocks; a task
// that defers another makes the next poll non-blocking (ev_idle) rather than
// looping here, so I/O is never starved by a task that keeps rescheduling.
#include "loop.h"

#include "buffer.h"

#include <errno.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define TASKS_PER_TURN 1024
#define TRIM_DELAY 1.0                // seconds: closes and drains within it make one trim
#define TRIM_POOL_KEEP (256u << 10)   // pool cache kept by a loop without channels
#define TRIM_MIN_FREE (128u << 10)    // free heap bytes that make a malloc_trim worth it (glibc's own trim threshold)

static void take_posted(lp_loop *loop) {
  // A racy peek is enough: a task posted after it also sent the wakeup, which
  // brings us back here.
  if (!__atomic_load_n(&loop->posted, __ATOMIC_RELAXED)) return;
  pthread_mutex_lock(&loop->lock);
  lp_task *head = loop->posted;
  lp_task **tail = loop->posted_tail;
  loop->posted = NULL;
  loop->posted_tail = &loop->posted;
  pthread_mutex_unlock(&loop->lock);
  if (!head) return;
  *loop->deferred_tail = head;
  loop->deferred_tail = tail;
}

size_t lp_loop_run_tasks(lp_loop *loop) {
  take_posted(loop);
  size_t n = 0;
  while (loop->deferred && n < TASKS_PER_TURN) {
    lp_task *t = loop->deferred;
    loop->deferred = t->next;
    if (!loop->deferred) loop->deferred_tail = &loop->deferred;
    t->next = NULL;
    t->run(t, loop);
    n++;
  }
  return n;
}

static void on_prepare(struct ev_loop *ev, ev_prepare *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_loop *loop = lp_container_of(w, lp_loop, prepare);
  // Tasks that ran may have changed what a caller of run_once waits for: poll
  // without blocking once so control returns to it.
  if (lp_loop_run_tasks(loop) || loop->deferred) {
    if (!ev_is_active(&loop->idle)) ev_idle_start(loop->ev, &loop->idle);
  } else if (ev_is_active(&loop->idle)) {
    ev_idle_stop(loop->ev, &loop->idle);
  }
}

static void on_idle(struct ev_loop *ev, ev_idle *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(w), LP_UNUSED(revents);
}

static void on_wakeup(struct ev_loop *ev, ev_async *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  take_posted(lp_container_of(w, lp_loop, wakeup));
}

// glibc gives freed memory back to the system only from the top of each
// arena; what a burst of small allocations (outbound entries, buffers, Lua
// strings) left in the middle stays in RSS until malloc_trim.
static void on_trim(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(revents);
  lp_loop *loop = lp_container_of(w, lp_loop, trim);
  ev_ref(ev); // it stopped by itself; lp_loop_trim_soon unref'd it
  if (loop->nchannels == 0) lp_pool_trim(loop->pool, TRIM_POOL_KEEP);
#ifdef __GLIBC__
  struct mallinfo2 mi = mallinfo2();
  if (mi.fordblks >= TRIM_MIN_FREE) malloc_trim(0);
#endif
}

void lp_loop_trim_soon(lp_loop *loop) {
  if (ev_is_active(&loop->trim)) return;
  ev_timer_set(&loop->trim, TRIM_DELAY, 0.);
  ev_timer_start(loop->ev, &loop->trim);
  ev_unref(loop->ev); // a pending trim does not keep the loop running
}

lp_loop *lp_loop_new(int id) {
  lp_loop *loop = calloc(1, sizeof *loop);
  if (!loop) return NULL;
  // A loop of its own, never libev's default loop: signals are handled by
  // the launcher's thread (group.c), not through libev.
  loop->ev = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  loop->pool = lp_pool_new();
  if (!loop->ev || !loop->pool) {
    if (loop->ev) ev_loop_destroy(loop->ev);
    lp_pool_free(loop->pool);
    free(loop);
    return NULL;
  }
  loop->id = id;
  pthread_mutex_init(&loop->lock, NULL);
  loop->posted_tail = &loop->posted;
  loop->deferred_tail = &loop->deferred;
  lp_list_init(&loop->channels);
  loop->thread = pthread_self();
  ev_set_userdata(loop->ev, loop);
  ev_async_init(&loop->wakeup, on_wakeup);
  ev_async_start(loop->ev, &loop->wakeup);
  ev_unref(loop->ev); // tasks alone do not keep the loop running
  ev_prepare_init(&loop->prepare, on_prepare);
  ev_prepare_start(loop->ev, &loop->prepare);
  ev_unref(loop->ev);
  ev_idle_init(&loop->idle, on_idle);
  ev_timer_init(&loop->trim, on_trim, TRIM_DELAY, 0.);
  lp_stats_start(loop);
  return loop;
}

int lp_loop_on_free(lp_loop *loop, int phase, lp_loop_hook fn) {
  for (int i = 0; i < loop->nhooks; i++)
    if (loop->hooks[i] == fn) return 0;
  if (loop->nhooks == LP_LOOP_MAX_HOOKS) return -ENOSPC;
  loop->hook_phase[loop->nhooks] = (uint8_t)phase;
  loop->hooks[loop->nhooks++] = fn;
  return 0;
}

static void run_hooks(lp_loop *loop, int phase) {
  for (int i = 0; i < loop->nhooks; i++)
    if (loop->hook_phase[i] == phase) loop->hooks[i](loop);
}

void lp_loop_free(lp_loop *loop) {
  if (!loop) return;
  run_hooks(loop, LP_LOOP_CLOSING); // channels close, lookups fail: as deferred tasks
  // Teardown of closed channels runs as deferred tasks: let them finish.
  for (int i = 0; i < 64 && (loop->deferred || loop->posted); i++) lp_loop_run_tasks(loop);
  ev_ref(loop->ev);
  ev_async_stop(loop->ev, &loop->wakeup);
  ev_ref(loop->ev);
  ev_prepare_stop(loop->ev, &loop->prepare);
  if (ev_is_active(&loop->idle)) ev_idle_stop(loop->ev, &loop->idle);
  lp_stats_stop(loop);
  if (ev_is_active(&loop->trim)) {
    ev_ref(loop->ev);
    ev_timer_stop(loop->ev, &loop->trim);
  }
  ev_loop_destroy(loop->ev);
  run_hooks(loop, LP_LOOP_GONE);
  lp_pool_free(loop->pool);
  pthread_mutex_destroy(&loop->lock);
  free(loop);
}

void lp_loop_run(lp_loop *loop) {
  loop->stop_requested = false;
  loop->thread = pthread_self();
  while (!loop->stop_requested) {
    if (!ev_run(loop->ev, 0)) {
      // Nothing active; tasks deferred by the last callbacks may start more.
      if (!loop->deferred && !loop->posted) break;
      lp_loop_run_tasks(loop);
    }
  }
}

void lp_loop_run_once(lp_loop *loop, bool block) {
  loop->thread = pthread_self();
  ev_run(loop->ev, block ? EVRUN_ONCE : EVRUN_NOWAIT);
  if (!block) lp_loop_run_tasks(loop);
}

void lp_loop_stop(lp_loop *loop) {
  loop->stop_requested = true;
  ev_break(loop->ev, EVBREAK_ALL);
}

void lp_loop_post(lp_loop *loop, lp_task *t) {
  t->next = NULL;
  pthread_mutex_lock(&loop->lock);
  __atomic_store_n(loop->posted_tail, t, __ATOMIC_RELAXED); // take_posted peeks at loop->posted unlocked
  loop->posted_tail = &t->next;
  pthread_mutex_unlock(&loop->lock);
  ev_async_send(loop->ev, &loop->wakeup); // the only off-thread libev call
}

void lp_loop_defer(lp_loop *loop, lp_task *t) {
  t->next = NULL;
  *loop->deferred_tail = t;
  loop->deferred_tail = &t->next;
  if (!ev_is_active(&loop->idle)) ev_idle_start(loop->ev, &loop->idle);
}

double lp_loop_now(lp_loop *loop) { return ev_now(loop->ev); }

bool lp_loop_in_thread(const lp_loop *loop) { return pthread_equal(loop->thread, pthread_self()); }
