// test_workpool.c: the blocking-work pool without Lua. An inline loop in this
// thread submits works; checks: each runs on a pool thread with that thread's
// context and completes on the loop's thread with status 0; max_jobs counts
// queued and running works (-EAGAIN past it); detaching cancels queued works
// and abandons running ones (freed by the pool thread when they return); a
// completion posted before a detach arrives as CANCELLED; configure grows and
// shrinks an idle pool and refuses a busy one; freeing a pool with a client
// still attached posts its queued works back as CANCELLED.
#include "check.h"
#include "loop.h"
#include "workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct tctx {
  int magic;
} tctx;

static atomic_int thread_starts, thread_stops, wrong_ud;
static pthread_t loop_thread;

static void *t_start(void *ud) {
  if (ud != (void *)&thread_starts) atomic_fetch_add(&wrong_ud, 1); // CHECK is for this thread only
  atomic_fetch_add(&thread_starts, 1);
  tctx *t = malloc(sizeof *t);
  t->magic = 4242;
  return t;
}

static void t_stop(void *t, void *ud) {
  LP_UNUSED(ud);
  atomic_fetch_add(&thread_stops, 1);
  free(t);
}

static const lp_workpool_ops ops = {t_start, t_stop};

// A gate that works wait on until the test opens it.
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void gate_set(bool open) {
  pthread_mutex_lock(&gate_lock);
  gate_open = open;
  pthread_cond_broadcast(&gate_cond);
  pthread_mutex_unlock(&gate_lock);
}

typedef struct job {
  lp_work work;
  long in, out;
  bool gated;
  bool ran_with_ctx;
  bool off_loop;
  int status; // -1 until complete
  bool freed_by_pool;
} job;

static atomic_int pool_frees;

static void job_run(lp_work *w, void *t) {
  job *j = lp_container_of(w, job, work);
  j->ran_with_ctx = t && ((tctx *)t)->magic == 4242;
  j->off_loop = !pthread_equal(pthread_self(), loop_thread);
  if (j->gated) {
    pthread_mutex_lock(&gate_lock);
    while (!gate_open) pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
  }
  j->out = j->in * j->in;
}

static int completions, wrong_thread;

static void job_complete(lp_work *w, int status) {
  job *j = lp_container_of(w, job, work);
  if (!pthread_equal(pthread_self(), loop_thread)) wrong_thread++;
  j->status = status;
  completions++;
}

static void job_free(lp_work *w) {
  job *j = lp_container_of(w, job, work);
  j->freed_by_pool = true;
  atomic_fetch_add(&pool_frees, 1);
}

static void job_init(job *j, long in, bool gated) {
  memset(j, 0, sizeof *j);
  j->work.run = job_run;
  j->work.complete = job_complete;
  j->work.free = job_free;
  j->in = in;
  j->gated = gated;
  j->status = -1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// Run the loop's tasks until *count reaches want (bounded: 10 s).
static bool run_until(lp_loop *loop, int *count, int want) {
  double deadline = now() + 10;
  while (*count < want && now() < deadline) {
    lp_loop_run_once(loop, false);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return *count >= want;
}

// Wait until the pool shows running/queued counts (bounded: 10 s).
static bool wait_stats(lp_workpool *p, size_t running, size_t queued) {
  double deadline = now() + 10;
  lp_workpool_stats st;
  do {
    lp_workpool_get_stats(p, &st);
    if (st.running == running && st.queued == queued) return true;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  } while (now() < deadline);
  return false;
}

static void test_runs_and_completes(lp_loop *loop) {
  int err = 1;
  lp_workpool_config cfg = {3, 100};
  lp_workpool *p = lp_workpool_new(&cfg, &ops, &thread_starts, &err);
  CHECK(p && err == 0);
  lp_work_client *c = lp_workpool_attach(p, loop);
  enum { N = 50 };
  static job jobs[N];
  completions = 0;
  for (int i = 0; i < N; i++) {
    job_init(&jobs[i], i, false);
    CHECK(lp_workpool_submit(c, &jobs[i].work) == 0);
  }
  CHECK(run_until(loop, &completions, N));
  int ok = 0;
  for (int i = 0; i < N; i++)
    ok += jobs[i].status == 0 && jobs[i].out == (long)i * i && jobs[i].ran_with_ctx && jobs[i].off_loop;
  CHECK(ok == N);
  CHECK(wrong_thread == 0);
  lp_workpool_stats st;
  lp_workpool_get_stats(p, &st);
  CHECK(st.threads == 3 && st.clients == 1 && st.queued == 0 && st.running == 0);
  lp_workpool_detach(c);
  lp_workpool_free(p);
  CHECK(atomic_load(&thread_starts) == 3 && atomic_load(&thread_stops) == 3);
}

static void test_max_jobs(lp_loop *loop) {
  int err;
  lp_workpool_config cfg = {1, 3};
  lp_workpool *p = lp_workpool_new(&cfg, &ops, &thread_starts, &err);
  lp_work_client *c = lp_workpool_attach(p, loop);
  static job jobs[4];
  gate_set(false);
  completions = 0;
  for (int i = 0; i < 4; i++) job_init(&jobs[i], i, i == 0);
  CHECK(lp_workpool_submit(c, &jobs[0].work) == 0);
  CHECK(lp_workpool_submit(c, &jobs[1].work) == 0);
  CHECK(lp_workpool_submit(c, &jobs[2].work) == 0);
  // Queued or running: the first runs (gated) or waits, the count is the same.
  CHECK(lp_workpool_submit(c, &jobs[3].work) == -EAGAIN);
  CHECK(jobs[3].work.client == NULL); // refused: untouched
  CHECK(wait_stats(p, 1, 2));
  gate_set(true);
  CHECK(run_until(loop, &completions, 3));
  CHECK(jobs[0].status == 0 && jobs[1].status == 0 && jobs[2].status == 0 && jobs[3].status == -1);
  CHECK(lp_workpool_submit(c, &jobs[3].work) == 0); // room again
  CHECK(run_until(loop, &completions, 4));
  lp_workpool_detach(c);
  lp_workpool_free(p);
}

static void test_detach(lp_loop *loop) {
  int err;
  lp_workpool_config cfg = {1, 100};
  lp_workpool *p = lp_workpool_new(&cfg, &ops, &thread_starts, &err);
  lp_work_client *c = lp_workpool_attach(p, loop);
  lp_work_client *other = lp_workpool_attach(p, loop);
  static job running, queued1, queued2, theirs;
  gate_set(false);
  completions = 0;
  atomic_store(&pool_frees, 0);
  job_init(&running, 2, true);
  job_init(&queued1, 3, false);
  job_init(&theirs, 5, false);
  job_init(&queued2, 4, false);
  CHECK(lp_workpool_submit(c, &running.work) == 0);
  CHECK(lp_workpool_submit(c, &queued1.work) == 0);
  CHECK(lp_workpool_submit(other, &theirs.work) == 0);
  CHECK(lp_workpool_submit(c, &queued2.work) == 0);
  CHECK(wait_stats(p, 1, 3));
  lp_workpool_detach(c); // now, on this thread: cancelled and abandoned
  CHECK(running.status == LP_WORK_ABANDONED);
  CHECK(queued1.status == LP_WORK_CANCELLED && queued2.status == LP_WORK_CANCELLED);
  CHECK(completions == 3);
  lp_workpool_stats st;
  lp_workpool_get_stats(p, &st);
  CHECK(st.queued == 1 && st.running == 1 && st.clients == 1); // the other client's work stays queued
  gate_set(true);
  CHECK(run_until(loop, &completions, 4)); // the other client's work ran
  CHECK(theirs.status == 0 && theirs.out == 25);
  CHECK(wait_stats(p, 0, 0));
  CHECK(atomic_load(&pool_frees) == 1 && running.freed_by_pool && running.out == 4);
  CHECK(completions == 4); // the abandoned work never completed twice
  lp_workpool_detach(other);
  lp_workpool_free(p);
}

static void test_posted_then_detached(lp_loop *loop) {
  int err;
  lp_workpool_config cfg = {1, 100};
  lp_workpool *p = lp_workpool_new(&cfg, &ops, &thread_starts, &err);
  lp_work_client *c = lp_workpool_attach(p, loop);
  static job j;
  completions = 0;
  job_init(&j, 6, false);
  CHECK(lp_workpool_submit(c, &j.work) == 0);
  CHECK(wait_stats(p, 0, 0)); // ran and posted (the count drops under the lock that posts)
  lp_workpool_detach(c);
  CHECK(completions == 0); // still on the loop's queue
  CHECK(run_until(loop, &completions, 1));
  CHECK(j.status == LP_WORK_CANCELLED && j.out == 36);
  lp_workpool_free(p);
}

static void test_configure(lp_loop *loop) {
  int err;
  int starts0 = atomic_load(&thread_starts), stops0 = atomic_load(&thread_stops);
  lp_workpool_config cfg = {2, 100};
  lp_workpool *p = lp_workpool_new(&cfg, &ops, &thread_starts, &err);
  lp_work_client *c = lp_workpool_attach(p, loop);
  lp_workpool_config bigger = {4, 5}, smaller = {1, 100}, bad = {0, 100};
  CHECK(lp_workpool_configure(p, &bad) == -EINVAL);
  CHECK(lp_workpool_configure(p, &bigger) == 0);
  lp_workpool_stats st;
  lp_workpool_get_stats(p, &st);
  CHECK(st.threads == 4);
  // Four gated works occupy the four threads at once.
  static job jobs[6];
  gate_set(false);
  completions = 0;
  for (int i = 0; i < 6; i++) job_init(&jobs[i], i, true);
  for (int i = 0; i < 5; i++) CHECK(lp_workpool_submit(c, &jobs[i].work) == 0);
  CHECK(lp_workpool_submit(c, &jobs[5].work) == -EAGAIN); // max_jobs 5 now
  CHECK(wait_stats(p, 4, 1));
  CHECK(lp_workpool_configure(p, &smaller) == -EBUSY);
  gate_set(true);
  CHECK(run_until(loop, &completions, 5));
  CHECK(wait_stats(p, 0, 0));
  CHECK(lp_workpool_configure(p, &smaller) == 0);
  lp_workpool_get_stats(p, &st);
  CHECK(st.threads == 1);
  CHECK(atomic_load(&thread_stops) - stops0 == 3);
  job_init(&jobs[5], 9, false);
  CHECK(lp_workpool_submit(c, &jobs[5].work) == 0);
  CHECK(run_until(loop, &completions, 6) && jobs[5].out == 81);
  lp_workpool_detach(c);
  lp_workpool_free(p);
  CHECK(atomic_load(&thread_starts) - starts0 == 4 && atomic_load(&thread_stops) - stops0 == 4);
}

// Opens the gate once the pool is stopping, so that the queued work is
// certainly still queued when the running one returns.
static void *open_when_stopping(void *arg) {
  lp_workpool *p = arg;
  double deadline = now() + 10;
  lp_workpool_stats st;
  do {
    lp_workpool_get_stats(p, &st);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  } while (!st.stopping && now() < deadline);
  gate_set(true);
  return NULL;
}

static void test_free_with_client(lp_loop *loop) {
  int err;
  lp_workpool_config cfg = {1, 100};
  lp_workpool *p = lp_workpool_new(&cfg, &ops, &thread_starts, &err);
  lp_work_client *c = lp_workpool_attach(p, loop);
  static job first, queued;
  gate_set(false);
  completions = 0;
  job_init(&first, 7, true);
  job_init(&queued, 8, false);
  CHECK(lp_workpool_submit(c, &first.work) == 0);
  CHECK(lp_workpool_submit(c, &queued.work) == 0);
  CHECK(wait_stats(p, 1, 1));
  pthread_t opener;
  pthread_create(&opener, NULL, open_when_stopping, p);
  lp_workpool_free(p); // waits for the running work, then cancels the queued one
  pthread_join(opener, NULL);
  CHECK(run_until(loop, &completions, 2));
  CHECK(first.status == 0 && first.out == 49);
  CHECK(queued.status == LP_WORK_CANCELLED && queued.out == 0);
  job late;
  job_init(&late, 1, false);
  CHECK(lp_workpool_submit(c, &late.work) == -ESHUTDOWN);
  lp_workpool_detach(c); // only frees the client now
}

int main(void) {
  loop_thread = pthread_self();
  lp_loop *loop = lp_loop_new(0);
  CHECK(loop != NULL);
  int err = 0;
  lp_workpool_config bad = {0, 10};
  CHECK(lp_workpool_new(&bad, &ops, NULL, &err) == NULL && err == -EINVAL);
  test_runs_and_completes(loop);
  test_max_jobs(loop);
  test_detach(loop);
  test_posted_then_detached(loop);
  test_configure(loop);
  test_free_with_client(loop);
  lp_loop_free(loop);
  CHECK(atomic_load(&wrong_ud) == 0);
  return check_report();
}
