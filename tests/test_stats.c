// test_stats.c: a loop's statistics written on its own thread while another
// thread reads them (lp_stats_read) and asks for its channels (the
// cross-loop query): counts that must come out exact, handler names that are
// whole when seen, lag samples from the sampler. scripts/test also runs this
// file under ThreadSanitizer.
#include "check.h"
#include "channel.h"
#include "loop.h"
#include "log.h"
#include "stats.h"
#include "stats_query.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 20000

typedef struct {
  lp_loop *loop;
  atomic_bool started;
  lp_task stop;
} worker;

static void run_stop(lp_task *t, lp_loop *loop) {
  LP_UNUSED(t);
  lp_loop_stop(loop);
}

// On the worker's thread: count, then keep the loop running (the sampler
// ticks) until the main thread posts stop.
static void *worker_main(void *arg) {
  worker *w = arg;
  lp_loop *loop = w->loop;
  loop->thread = pthread_self();
  atomic_store(&w->started, true);
  char name[16];
  for (int i = 0; i < ROUNDS; i++) {
    LP_STAT_ADD(&loop->stats, accepted, 1);
    LP_STAT_ADD(&loop->stats, bytes_in, 3);
    snprintf(name, sizeof name, "h%d", i % 40); // 40 names: 32 slots, the rest in "(other)"
    lp_stats_handler_error(loop, name);
    lp_stats_closed(loop, i % 2 ? LP_CLOSE_RESET : LP_CLOSE_EOF, NULL, NULL);
  }
  ev_ref(loop->ev); // run until stopped
  lp_loop_run(loop);
  ev_unref(loop->ev);
  return NULL;
}

static int answers;
static size_t listed;
static void on_channels(lp_chan_query *q, void *ud) {
  LP_UNUSED(ud);
  answers = q->nanswered;
  for (int i = 0; i < q->nparts; i++)
    if (q->parts[i].answered) listed += q->parts[i].n;
}

int main(void) {
  lp_log_set_level(LP_LOG_OFF);
  worker w = {.loop = lp_loop_new(1)};
  CHECK(w.loop != NULL);
  atomic_init(&w.started, false);
  pthread_t t;
  pthread_create(&t, NULL, worker_main, &w);
  while (!atomic_load(&w.started)) sched_yield();

  // Read while it writes: counters only grow, names are whole.
  uint64_t last = 0;
  bool monotonic = true, names_ok = true;
  lp_stats_snapshot *s = calloc(1, sizeof *s);
  for (int i = 0; i < 2000; i++) {
    lp_stats_read(w.loop, false, s);
    if (s->accepted < last) monotonic = false;
    last = s->accepted;
    for (unsigned k = 0; k < s->nhandlers; k++)
      if (s->handler[k].name[0] != 'h' || s->handler[k].count == 0) names_ok = false;
  }
  CHECK(monotonic);
  CHECK(names_ok);

  // Ask the worker's loop for its channels (it has none) from a loop of this thread.
  lp_loop *asker = lp_loop_new(0);
  lp_loop *loops[1] = {w.loop};
  CHECK(lp_chan_query_start(asker, loops, 1, 100, 5.0, on_channels, NULL) != NULL);
  for (int i = 0; i < 500 && !answers; i++) lp_loop_run_once(asker, true);
  CHECK(answers == 1);
  CHECK(listed == 0);

  // Let the sampler take a few lag samples, then stop the worker.
  struct timespec nap = {0, 350 * 1000 * 1000};
  nanosleep(&nap, NULL);
  w.stop.run = run_stop;
  lp_loop_post(w.loop, &w.stop);
  pthread_join(t, NULL);

  lp_stats_read(w.loop, false, s);
  CHECK(s->accepted == ROUNDS);
  CHECK(s->bytes_in == 3 * ROUNDS);
  CHECK(s->closed[LP_CLOSE_EOF] == ROUNDS / 2 && s->closed[LP_CLOSE_RESET] == ROUNDS / 2);
  CHECK(s->nhandlers == LP_STATS_HANDLERS);
  uint64_t errors = s->handler_errors_other;
  for (unsigned k = 0; k < s->nhandlers; k++) errors += s->handler[k].count;
  CHECK(errors == ROUNDS);
  CHECK(s->handler[0].count == ROUNDS / 40 && strcmp(s->handler[0].name, "h0") == 0);
  CHECK(s->lag_samples >= 2);
  CHECK(s->lag_p50 <= s->lag_p99 && s->lag_p99 <= s->lag_max);
  free(s);
  lp_loop_free(asker);
  lp_loop_free(w.loop);
  return check_report();
}
