// workpool.h: blocking work off the event loops (Netty's EventExecutorGroup,
// libuv's work queue). A pool of threads runs works submitted from loops; each
// work's completion runs back on the loop that submitted it.
//
// Who runs what, where:
//   - run(w, tctx) on a pool thread, with that thread's context (the binding's
//     Lua state, made by ops->thread_start on the thread itself);
//   - complete(w, status) on the submitting loop's thread, exactly once per
//     accepted work: status 0 (it ran), LP_WORK_CANCELLED (it never ran: its
//     client detached or the pool stopped while it was queued; or its client
//     detached after it ran), or LP_WORK_ABANDONED (its client detached while
//     it was running). After 0 or CANCELLED the work belongs to complete (free
//     it there); after ABANDONED the pool still runs it and calls free(w) from
//     the pool thread when run returns: complete must drop what belongs to the
//     loop (futures) and leave the rest to free.
//
// A client is one loop's membership of the pool: the pool posts completions to
// its loop only while it is attached. Detach it on the loop's thread before the
// loop is freed; completions already posted then run as CANCELLED when the
// loop drains its tasks (lp_loop_free does).
//
// Limits: max_jobs bounds the works queued or running (submit fails with
// -EAGAIN past it), so a producer faster than the pool gets an error instead of
// unbounded memory. A work that never returns holds its thread for good, and
// lp_workpool_free waits for it: that is the caller's bug (documented).
#ifndef LP_WORKPOOL_H
#define LP_WORKPOOL_H

#include "common.h"
#include "loop.h"

#define LP_WORKPOOL_MAX_THREADS 256

enum { LP_WORK_CANCELLED = 1, LP_WORK_ABANDONED = 2 };

typedef struct lp_work lp_work;
typedef struct lp_workpool lp_workpool;
typedef struct lp_work_client lp_work_client;

struct lp_work {
  // Set by the submitter.
  void (*run)(lp_work *w, void *tctx);
  void (*complete)(lp_work *w, int status);
  void (*free)(lp_work *w); // only after LP_WORK_ABANDONED; any thread
  // The pool's (zeroed by submit).
  lp_work *next;
  lp_task task;
  lp_work_client *client;
  bool cancelled; // posted back without running (the pool stopped)
  bool abandoned; // its client detached while it ran
};

typedef struct lp_workpool_ops {
  // On each pool thread as it starts and before it ends; tctx may be NULL.
  void *(*thread_start)(void *ud);
  void (*thread_stop)(void *tctx, void *ud);
} lp_workpool_ops;

typedef struct lp_workpool_config {
  int threads;     // 1..LP_WORKPOOL_MAX_THREADS
  size_t max_jobs; // queued + running, at least 1
} lp_workpool_config;

// Start the threads. NULL with *err (a negative errno) on failure; the caller
// frees with lp_workpool_free. ops and ud must outlive the pool.
lp_workpool *lp_workpool_new(const lp_workpool_config *cfg, const lp_workpool_ops *ops, void *ud, int *err);
// Stop and join every thread (waiting for running works), then free. Works
// still queued are posted back as LP_WORK_CANCELLED to their clients' loops
// (clients should have detached first; any still attached stay valid until
// they detach, which then only drops their memory). Any thread but a pool thread.
void lp_workpool_free(lp_workpool *p);
// Change the thread count and max_jobs of an idle pool: 0, -EBUSY when works
// are queued or running, -EINVAL, or a negative errno when threads could not
// start (those that did stay). Shrinking joins the threads it stops.
int lp_workpool_configure(lp_workpool *p, const lp_workpool_config *cfg);

// A client for loop; NULL on ENOMEM. On the loop's thread.
lp_work_client *lp_workpool_attach(lp_workpool *p, lp_loop *loop);
// On the loop's thread: cancel its queued works (complete CANCELLED, now),
// abandon its running ones (complete ABANDONED, now), stop posting to the loop.
// The client is freed once no posted completion refers to it.
void lp_workpool_detach(lp_work_client *c);

// Queue w for a pool thread; on the client loop's thread. 0, -EAGAIN when
// max_jobs works are queued or running, -ESHUTDOWN when the pool is stopping
// or the client detached. On an error w is untouched and still the caller's.
int lp_workpool_submit(lp_work_client *c, lp_work *w);

// Counts, for tests and stats (a snapshot).
typedef struct lp_workpool_stats {
  size_t queued, running;
  int threads, clients;
  bool stopping; // lp_workpool_free has begun
} lp_workpool_stats;
void lp_workpool_get_stats(lp_workpool *p, lp_workpool_stats *out);

#endif
