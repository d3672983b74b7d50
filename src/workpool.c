// workpool.c: the blocking-work pool (see workpool.h for the contract).
//
// Locking: one mutex guards the queue, the counts, each thread's current work,
// the client list and each work's `abandoned` flag. A client's `attached` is
// written only on its loop's thread (detach), under the mutex, so the loop's
// thread may read it without the mutex; its reference count is atomic because
// the last reference may go on the loop's thread after the pool is freed (a
// completion posted before the pool stopped). Lock order: the pool's mutex,
// then a loop's (lp_loop_post); no loop calls into the pool with its own lock held.
//
// Ownership: the pool owns its threads and the queued list's links; each work
// belongs to its submitter except while queued or running; a client is freed by
// its last reference (the attachment, plus one per accepted work until that
// work's complete or free has been called).
#include "workpool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

struct lp_work_client {
  lp_workpool *pool; // NULL once the pool is gone
  lp_loop *loop;
  atomic_size_t refs;
  bool attached;
  lp_list link; // in pool->clients while attached
};

typedef struct pool_thread {
  lp_workpool *pool;
  int index;
  pthread_t id;
  lp_work *current; // the work it runs now (guarded by pool->lock)
} pool_thread;

struct lp_workpool {
  pthread_mutex_t lock;
  pthread_cond_t cond; // work queued, or stopping
  lp_work *head, **tail;
  size_t nqueued, nrunning, max_jobs;
  bool stopping;
  int nthreads;  // threads started and not joined: slots [0, nthreads)
  int wanted;    // threads at index >= wanted exit when idle (shrinking)
  int nclients;
  pthread_mutex_t config_lock; // one configure at a time
  lp_list clients;
  const lp_workpool_ops *ops;
  void *ud;
  pool_thread threads[LP_WORKPOOL_MAX_THREADS];
};

static void client_unref(lp_work_client *c) {
  if (atomic_fetch_sub(&c->refs, 1) == 1) free(c);
}

// On the client loop's thread: the work's result (or its cancellation) is back.
static void on_posted(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  lp_work *w = lp_container_of(t, lp_work, task);
  lp_work_client *c = w->client;
  int status = w->cancelled || !c->attached ? LP_WORK_CANCELLED : 0;
  w->client = NULL;
  client_unref(c);
  w->complete(w, status);
}

static void *thread_main(void *arg) {
  pool_thread *th = arg;
  lp_workpool *p = th->pool;
  void *tctx = p->ops && p->ops->thread_start ? p->ops->thread_start(p->ud) : NULL;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (!p->head && !p->stopping && th->index < p->wanted) pthread_cond_wait(&p->cond, &p->lock);
    if (p->stopping || th->index >= p->wanted) break;
    lp_work *w = p->head;
    p->head = w->next;
    if (!p->head) p->tail = &p->head;
    w->next = NULL;
    p->nqueued--;
    p->nrunning++;
    th->current = w;
    pthread_mutex_unlock(&p->lock);

    w->run(w, tctx);

    pthread_mutex_lock(&p->lock);
    th->current = NULL;
    p->nrunning--;
    bool abandoned = w->abandoned;
    // Posting under the lock: a detach cannot slip in between the check and
    // the post, so an attached client's loop is still alive here.
    if (!abandoned) lp_loop_post(w->client->loop, &w->task);
    pthread_mutex_unlock(&p->lock);
    if (abandoned) {
      lp_work_client *c = w->client;
      w->free(w);
      client_unref(c);
    }
    pthread_mutex_lock(&p->lock);
  }
  pthread_mutex_unlock(&p->lock);
  if (p->ops && p->ops->thread_stop) p->ops->thread_stop(tctx, p->ud);
  return NULL;
}

static void stop_threads(lp_workpool *p, int n) {
  pthread_mutex_lock(&p->lock);
  p->stopping = true;
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; i < n; i++) pthread_join(p->threads[i].id, NULL);
}

// Start threads [nthreads, n); returns 0 or a positive errno (those started stay).
static int start_threads(lp_workpool *p, int n) {
  // Pool threads never take the signals the launcher's boss thread handles.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  int rc = 0;
  pthread_mutex_lock(&p->lock);
  p->wanted = n;
  int from = p->nthreads;
  pthread_mutex_unlock(&p->lock);
  int started = from;
  for (int i = from; i < n; i++) {
    p->threads[i].pool = p;
    p->threads[i].index = i;
    if ((rc = pthread_create(&p->threads[i].id, NULL, thread_main, &p->threads[i])) != 0) break;
    started++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_mutex_lock(&p->lock);
  p->nthreads = started;
  p->wanted = started;
  pthread_mutex_unlock(&p->lock);
  return rc;
}

lp_workpool *lp_workpool_new(const lp_workpool_config *cfg, const lp_workpool_ops *ops, void *ud, int *err) {
  if (cfg->threads < 1 || cfg->threads > LP_WORKPOOL_MAX_THREADS || cfg->max_jobs < 1) {
    *err = -EINVAL;
    return NULL;
  }
  lp_workpool *p = calloc(1, sizeof *p);
  if (!p) {
    *err = -ENOMEM;
    return NULL;
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->cond, NULL);
  p->tail = &p->head;
  p->max_jobs = cfg->max_jobs;
  p->ops = ops;
  p->ud = ud;
  lp_list_init(&p->clients);
  pthread_mutex_init(&p->config_lock, NULL);
  int rc = start_threads(p, cfg->threads);
  if (rc) {
    stop_threads(p, p->nthreads);
    pthread_mutex_destroy(&p->config_lock);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
    *err = -rc;
    return NULL;
  }
  *err = 0;
  return p;
}

void lp_workpool_free(lp_workpool *p) {
  if (!p) return;
  stop_threads(p, p->nthreads);
  // The threads are gone: nothing else touches the pool now.
  lp_work *w = p->head;
  p->head = NULL;
  p->tail = &p->head;
  p->nqueued = 0;
  while (w) {
    lp_work *next = w->next;
    w->next = NULL;
    w->cancelled = true;
    lp_loop_post(w->client->loop, &w->task); // queued works' clients are attached
    w = next;
  }
  while (!lp_list_empty(&p->clients)) {
    lp_work_client *c = lp_container_of(p->clients.next, lp_work_client, link);
    lp_list_remove(&c->link);
    c->pool = NULL;
  }
  pthread_mutex_destroy(&p->config_lock);
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

int lp_workpool_configure(lp_workpool *p, const lp_workpool_config *cfg) {
  if (cfg->threads < 1 || cfg->threads > LP_WORKPOOL_MAX_THREADS || cfg->max_jobs < 1) return -EINVAL;
  pthread_mutex_lock(&p->config_lock);
  pthread_mutex_lock(&p->lock);
  if (p->nqueued || p->nrunning) {
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->config_lock);
    return -EBUSY;
  }
  p->max_jobs = cfg->max_jobs;
  int old = p->nthreads, rc = 0;
  if (cfg->threads < old) {
    // The threads past the new count leave once idle (a work submitted since
    // the check above is done first by whichever thread took it).
    p->wanted = cfg->threads;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = cfg->threads; i < old; i++) pthread_join(p->threads[i].id, NULL);
    pthread_mutex_lock(&p->lock);
    p->nthreads = cfg->threads;
    pthread_mutex_unlock(&p->lock);
  } else {
    pthread_mutex_unlock(&p->lock);
    if (cfg->threads > old) rc = -start_threads(p, cfg->threads);
  }
  pthread_mutex_unlock(&p->config_lock);
  return rc;
}

lp_work_client *lp_workpool_attach(lp_workpool *p, lp_loop *loop) {
  lp_work_client *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->pool = p;
  c->loop = loop;
  atomic_init(&c->refs, 1);
  c->attached = true;
  pthread_mutex_lock(&p->lock);
  lp_list_push(&p->clients, &c->link);
  p->nclients++;
  pthread_mutex_unlock(&p->lock);
  return c;
}

void lp_workpool_detach(lp_work_client *c) {
  if (!c) return;
  lp_workpool *p = c->pool;
  lp_work *cancelled = NULL, **ctail = &cancelled;
  if (p) {
    pthread_mutex_lock(&p->lock);
    c->attached = false;
    lp_list_remove(&c->link);
    p->nclients--;
    for (lp_work **pw = &p->head; *pw;) { // take its queued works out, in order
      lp_work *w = *pw;
      if (w->client != c) {
        pw = &w->next;
        continue;
      }
      *pw = w->next;
      w->next = NULL;
      *ctail = w;
      ctail = &w->next;
      p->nqueued--;
    }
    p->tail = &p->head;
    while (*p->tail) p->tail = &(*p->tail)->next;
    // Its running works finish on their threads, which then free them instead
    // of posting; what the loop owns in them is dropped now, on its thread.
    for (int i = 0; i < LP_WORKPOOL_MAX_THREADS; i++) { // every slot: threads may be starting
      lp_work *w = p->threads[i].current;
      if (w && w->client == c && !w->abandoned) {
        w->abandoned = true;
        w->complete(w, LP_WORK_ABANDONED);
      }
    }
    pthread_mutex_unlock(&p->lock);
  } else {
    c->attached = false;
  }
  while (cancelled) {
    lp_work *w = cancelled;
    cancelled = w->next;
    w->next = NULL;
    w->client = NULL;
    client_unref(c);
    w->complete(w, LP_WORK_CANCELLED);
  }
  client_unref(c);
}

int lp_workpool_submit(lp_work_client *c, lp_work *w) {
  lp_workpool *p = c->pool;
  if (!p || !c->attached) return -ESHUTDOWN;
  pthread_mutex_lock(&p->lock);
  int rc = 0;
  if (p->stopping) {
    rc = -ESHUTDOWN;
  } else if (p->nqueued + p->nrunning >= p->max_jobs) {
    rc = -EAGAIN;
  } else {
    w->next = NULL;
    w->task.next = NULL;
    w->task.run = on_posted;
    w->client = c;
    w->cancelled = w->abandoned = false;
    atomic_fetch_add(&c->refs, 1);
    *p->tail = w;
    p->tail = &w->next;
    p->nqueued++;
    pthread_cond_signal(&p->cond);
  }
  pthread_mutex_unlock(&p->lock);
  return rc;
}

void lp_workpool_get_stats(lp_workpool *p, lp_workpool_stats *out) {
  pthread_mutex_lock(&p->lock);
  out->queued = p->nqueued;
  out->running = p->nrunning;
  out->threads = p->nthreads;
  out->clients = p->nclients;
  out->stopping = p->stopping;
  pthread_mutex_unlock(&p->lock);
}
