// loop.h: an event loop is an ev_loop, two task queues and a buffer pool.
//   - posted tasks come from any thread (mutex-guarded list + ev_async wakeup);
//   - deferred tasks come from the loop's own thread and run before the loop
//     next blocks (future notifications, pipeline teardown, execute()).
// Tasks are intrusive: the caller embeds an lp_task and owns its memory until
// its run function is called (run once, on the loop's thread).
#ifndef LP_LOOP_H
#define LP_LOOP_H

#include "common.h"
#include "outbound.h"
#include "stats.h"
#include <ev.h>
#include <pthread.h>

typedef struct lp_task lp_task;
typedef void (*lp_task_fn)(lp_task *t, lp_loop *loop);
struct lp_task {
  lp_task *next;
  lp_task_fn run;
};

struct lp_host_ops; // host.h

// What lp_loop_free runs for the owners of per-loop state (channels, the
// resolver, the entry and future caches), which register it themselves: the
// loop knows none of them. CLOSING hooks run first, in the order registered,
// while the loop still runs tasks (what they defer runs before it goes);
// GONE hooks run after the event loop is destroyed (caches).
enum { LP_LOOP_CLOSING, LP_LOOP_GONE };
#define LP_LOOP_MAX_HOOKS 8 // owners of per-loop state (4 today)
typedef void (*lp_loop_hook)(lp_loop *loop);

struct lp_loop {
  struct ev_loop *ev;
  int id;                  // worker id for logs: 0 inline/boss, 1..N workers
  ev_async wakeup;
  ev_prepare prepare;
  ev_idle idle;            // active while deferred tasks wait: keeps poll from blocking
  pthread_mutex_t lock;
  lp_task *posted, **posted_tail;
  lp_task *deferred, **deferred_tail;
  lp_pool *pool;
  lp_out_cache out_cache;  // outbound entries, reused
  lp_future *free_futures; // future structs, reused (linked through ->listeners)
  unsigned nfree_futures;
  lp_list channels;        // open channels of this loop (lp_channel.link)
  size_t nchannels;
  struct lp_resolver *resolver; // name lookups (resolver.c), made on first use
  const struct lp_host_ops *host_ops; // the binding's hooks (host.h)
  void *host;              // the binding's per-loop state (lua_State holder)
  ev_timer trim;           // lp_loop_trim_soon: memory back to the system, once per burst
  pthread_t thread;        // the thread that runs this loop
  bool stop_requested;
  uint8_t nhooks;
  uint8_t hook_phase[LP_LOOP_MAX_HOOKS];
  lp_loop_hook hooks[LP_LOOP_MAX_HOOKS];
  struct lp_group *group;  // the group this loop serves in (group.c sets it; NULL: none)
  lp_stats stats;          // written by this loop's thread only (stats.h)
};

lp_loop *lp_loop_new(int id);    // NULL on ENOMEM; caller frees with lp_loop_free
void lp_loop_free(lp_loop *loop); // runs the hooks below (open channels close first)
// Run fn(loop) when the loop is freed, in phase LP_LOOP_CLOSING or LP_LOOP_GONE.
// Once per fn: registering it again does nothing. Loop thread only. 0, or
// -ENOSPC past LP_LOOP_MAX_HOOKS (a new owner needs the limit raised).
int lp_loop_on_free(lp_loop *loop, int phase, lp_loop_hook fn);
// Run until lp_loop_stop or until nothing active is left.
void lp_loop_run(lp_loop *loop);
// One iteration; blocks for events when block is true.
void lp_loop_run_once(lp_loop *loop, bool block);
void lp_loop_stop(lp_loop *loop);
void lp_loop_post(lp_loop *loop, lp_task *t);   // any thread
void lp_loop_defer(lp_loop *loop, lp_task *t);  // loop thread only
// Run the deferred tasks now (embedded channels, tests). Returns how many ran.
size_t lp_loop_run_tasks(lp_loop *loop);
double lp_loop_now(lp_loop *loop);
// Much memory was let go (a channel closed, an outbound buffer that held
// megabytes drained): in a second, give what is free back to the system (the
// pool's cache when no channel is left, then malloc_trim). Bursts coalesce.
void lp_loop_trim_soon(lp_loop *loop);
bool lp_loop_in_thread(const lp_loop *loop);

#endif
