// group.c: boss and workers. The boss (the caller's thread) accepts until
// EAGAIN and hands each descriptor to the next worker, round robin, as a task
// posted to that worker's loop; the worker builds the channel on its thread.
// With reuse_port each worker accepts on its own listener instead (the boss
// opens them before run; from then on only the worker's thread touches them).
// See group.h for the threads' rules and the shutdown sequence.
//
// Ownership: the group owns the worker loops it creates (freed in destroy,
// after the threads are joined) and the accept tasks (freed by whoever runs
// them). A descriptor belongs to the boss until its task runs, then to the
// host. Embedded tasks (shutdown, force) are posted at most once each.
#include "group.h"

#include "channel.h"
#include "future.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct accept_task {
  lp_task task;
  lp_worker *w;
  int fd;
  lp_sockaddr peer;
} accept_task;

// The group that SIGINT/SIGTERM/SIGHUP reach (at most one at a time), and what
// the handlers were before it took them. SIGHUP is counted apart: it asks for
// a reload (logged and ignored by an inline group, where its default would
// kill the process with no drain and no word).
static lp_group *_Atomic signal_group;
static struct sigaction saved_int, saved_term, saved_hup;
static atomic_int hangups; // SIGHUPs received, not yet logged

// ---- on a worker's thread ----------------------------------------------------

static void uncount(lp_group *g) {
  if (g->cfg.max_connections) atomic_fetch_sub(&g->open, 1);
}

static void on_child_closed(lp_future *f, void *ud) {
  LP_UNUSED(f);
  uncount(ud);
}

static void register_fd(lp_worker *w, int fd, const lp_sockaddr *peer) {
  lp_group *g = w->group;
  if (w->state != LP_WORKER_RUNNING) { // shutting down: accepted before the listener closed
    close(fd);
    uncount(g);
    LP_STAT_ADD(&w->loop->stats, accepted, 1);
    lp_stats_closed(w->loop, LP_CLOSE_SHUTDOWN, NULL, "accepted while shutting down");
    return;
  }
  lp_channel *ch = g->ops->accept(w, fd, peer);
  if (!g->cfg.max_connections) return;
  lp_future *cf = ch ? lp_channel_close_future(ch) : NULL;
  if (!cf || lp_future_add_listener(cf, on_child_closed, g) != 0) uncount(g);
}

static void run_accept(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  accept_task *a = lp_container_of(t, accept_task, task);
  lp_worker *w = a->w;
  register_fd(w, a->fd, &a->peer);
  free(a);
}

// maxConnections: count the new connection in, or refuse it (false: the
// caller closes it). Any accepting thread: the count is the process's, taken
// with a compare-and-swap so that workers accepting at once never overshoot.
static bool admit(lp_group *g, lp_server *s, lp_admission *adm) {
  if (!g->cfg.max_connections) return true;
  uint_fast64_t open = atomic_load(&g->open);
  do {
    if (open >= g->cfg.max_connections) {
      s->dropped++;
      adm->refused++;
      if (!adm->refusing) {
        adm->refusing = true;
        lp_log(LP_LOG_WARN, 0, "maxConnections (%llu) reached: closing new connections until some close",
               (unsigned long long)g->cfg.max_connections);
      }
      // counted on the accepting loop (the boss, or a worker with its own listener);
      // the close line replaces the old debug line
      LP_STAT_ADD(&s->loop->stats, accepted, 1);
      lp_stats_closed(s->loop, LP_CLOSE_MAXCONN, NULL, NULL);
      return false;
    }
  } while (!atomic_compare_exchange_weak(&g->open, &open, open + 1));
  if (adm->refusing) {
    lp_log(LP_LOG_INFO, 0, "under maxConnections again; %llu connection(s) were closed at once",
           (unsigned long long)adm->refused);
    adm->refusing = false;
    adm->refused = 0;
  }
  return true;
}

// A worker's own listener (reuse_port): no hop, the channel is made here.
static void on_worker_accept(lp_server *s, int fd, const lp_sockaddr *peer) {
  lp_worker *w = s->ud;
  if (!admit(w->group, s, &w->admission)) {
    close(fd);
    return;
  }
  register_fd(w, fd, peer);
}

static void close_listeners(lp_worker *w) {
  for (int i = 0; w->listeners && i < w->group->nlisteners; i++) lp_server_close(&w->listeners[i]);
}

static void run_listen(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  lp_worker *w = lp_container_of(t, lp_worker, listen_task);
  if (w->state != LP_WORKER_RUNNING) return;
  for (int i = 0; i < w->group->nlisteners; i++) lp_server_start(&w->listeners[i]);
}

static void worker_finish(lp_worker *w) {
  lp_group *g = w->group;
  ev_timer_stop(w->loop->ev, &w->deadline);
  ev_check_stop(w->loop->ev, &w->drained);
  w->state = LP_WORKER_STOPPED;
  g->ops->stop(w);
  if (w->threaded) {
    lp_loop_stop(w->loop); // worker_main frees the host, then tells the boss
  } else {
    atomic_fetch_add(&g->finished, 1);
    ev_async_send(g->boss->ev, &g->ctl);
  }
}

// Shutdown closes ch (gracefully, or now when forced): the cause it ends with.
static void close_for_shutdown(lp_channel *ch, bool now) {
  lp_channel_set_close_cause(ch, LP_CLOSE_SHUTDOWN, 0);
  if (now) lp_channel_close_now(ch);
  else lp_channel_close_gracefully(ch);
}

static void close_all_for_shutdown(lp_loop *loop) {
  for (lp_list *n = loop->channels.next; n != &loop->channels;) {
    lp_channel *ch = lp_container_of(n, lp_channel, link);
    n = n->next; // closing never unlinks at once (teardown is deferred)
    close_for_shutdown(ch, true);
  }
}

// Draining: close gracefully what opened meanwhile (clients made by
// handlers); finish when no channel is left.
static void check_drained(lp_worker *w) {
  if (w->state != LP_WORKER_DRAINING) return;
  lp_loop *loop = w->loop;
  for (lp_list *n = loop->channels.next; n != &loop->channels;) {
    lp_channel *ch = lp_container_of(n, lp_channel, link);
    n = n->next; // closing never unlinks at once (teardown is deferred)
    if (!(ch->flags & (LP_CH_CLOSED | LP_CH_DRAINING))) close_for_shutdown(ch, false);
  }
  if (loop->nchannels == 0) worker_finish(w);
}

static void on_drained_check(struct ev_loop *ev, ev_check *c, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  check_drained(lp_container_of(c, lp_worker, drained));
}

static void on_deadline(struct ev_loop *ev, ev_timer *t, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_worker *w = lp_container_of(t, lp_worker, deadline);
  lp_log(LP_LOG_WARN, 0, "shutdown deadline (%g s) reached: closing %zu channel(s) with data still unsent",
         w->group->cfg.shutdown_timeout, w->loop->nchannels);
  close_all_for_shutdown(w->loop);
}

static void run_shutdown(lp_task *t, lp_loop *loop) {
  lp_worker *w = lp_container_of(t, lp_worker, shutdown_task);
  if (w->state != LP_WORKER_RUNNING) return;
  close_listeners(w); // its own listeners first: no new connection while draining
  w->state = LP_WORKER_DRAINING;
  if (loop->nchannels)
    lp_log(LP_LOG_INFO, 0, "draining %zu channel(s), at most %g s", loop->nchannels, w->group->cfg.shutdown_timeout);
  for (lp_list *n = loop->channels.next; n != &loop->channels;) {
    lp_channel *ch = lp_container_of(n, lp_channel, link);
    n = n->next;
    close_for_shutdown(ch, false);
  }
  ev_now_update(loop->ev); // a long handler may have run since the last poll: time the deadline from now
  ev_timer_init(&w->deadline, on_deadline, w->group->cfg.shutdown_timeout, 0.);
  ev_timer_start(loop->ev, &w->deadline);
  ev_check_init(&w->drained, on_drained_check);
  ev_check_start(loop->ev, &w->drained);
  check_drained(w);
}

static void run_force(lp_task *t, lp_loop *loop) {
  lp_worker *w = lp_container_of(t, lp_worker, force_task);
  if (w->state == LP_WORKER_DRAINING) close_all_for_shutdown(loop);
}

// The boss's reload phases reach the worker here: one task, which the boss
// posts again only after every worker has answered the phase before (the task
// is then off every queue, and the phase is read before answering).
static void run_reload(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  lp_worker *w = lp_container_of(t, lp_worker, reload_task);
  lp_group *g = w->group;
  int phase = w->reload_phase;
  if (phase != LP_RELOAD_PREPARE) {
    g->ops->reload_finish(w, phase == LP_RELOAD_COMMIT);
  } else {
    char err[LP_GROUP_ERR_MAX] = "";
    int rc = -1;
    if (w->state == LP_WORKER_RUNNING) rc = g->ops->reload_prepare(w, err, sizeof err);
    else snprintf(err, sizeof err, "the server is shutting down");
    if (rc) {
      pthread_mutex_lock(&g->lock);
      if (!g->reload_err[0]) snprintf(g->reload_err, sizeof g->reload_err, "%s", err);
      pthread_mutex_unlock(&g->lock);
      atomic_store(&g->reload_failed, true);
    }
  }
  atomic_fetch_add(&g->reload_answers, 1);
  ev_async_send(g->boss->ev, &g->ctl);
}

static void *worker_main(void *arg) {
  lp_worker *w = arg;
  lp_group *g = w->group;
  lp_log_set_worker(w->id);
  w->loop->thread = pthread_self();
  char err[LP_GROUP_ERR_MAX - 32] = ""; // room for "worker N: " in front
  int rc = g->ops->start(w, err, sizeof err);
  pthread_mutex_lock(&g->lock);
  w->state = rc ? LP_WORKER_FAILED : LP_WORKER_RUNNING;
  if (rc && !g->start_err[0]) snprintf(g->start_err, sizeof g->start_err, "worker %d: %s", w->id, err);
  g->started++;
  pthread_cond_broadcast(&g->cond);
  pthread_mutex_unlock(&g->lock);
  if (rc) return NULL;
  ev_ref(w->loop->ev); // run with no channel at all, until shutdown stops the loop
  for (;;) {
    lp_loop_run(w->loop);
    if (w->state == LP_WORKER_STOPPED) break;
    // Stopped from inside (loop:stop() in a handler): as inline, that asks
    // for a shutdown, which this loop must keep running to take part in.
    atomic_store(&g->stop_asked, true);
    ev_async_send(g->boss->ev, &g->ctl);
  }
  ev_unref(w->loop->ev);
  g->ops->free(w);
  atomic_fetch_add(&g->finished, 1);
  ev_async_send(g->boss->ev, &g->ctl);
  return NULL;
}

// ---- on the boss's thread ------------------------------------------------------

static void on_accept(lp_server *s, int fd, const lp_sockaddr *peer) {
  lp_group *g = s->ud;
  if (!admit(g, s, &g->admission)) {
    close(fd);
    return;
  }
  lp_worker *w = &g->workers[g->next++ % (unsigned)g->nworkers]; // Netty's next()
  if (!w->threaded) {
    register_fd(w, fd, peer);
    return;
  }
  accept_task *a = malloc(sizeof *a);
  if (!a) {
    lp_log(LP_LOG_ERROR, 0, "out of memory: a new connection was closed");
    close(fd);
    uncount(g);
    return;
  }
  a->task.run = run_accept;
  a->w = w;
  a->fd = fd;
  a->peer = *peer;
  lp_loop_post(w->loop, &a->task);
}

static void finish_run(lp_group *g) {
  g->done = true;
  if (ev_is_active(&g->hard_stop)) ev_timer_stop(g->boss->ev, &g->hard_stop);
  lp_loop_stop(g->boss);
}

// Post one phase to every running worker and expect as many answers.
static void post_reload(lp_group *g, int phase) {
  atomic_store(&g->reload_answers, 0); // no worker answers before the posts below
  g->reload_phase = phase;
  g->reload_expect = 0;
  for (int i = 0; i < g->nworkers; i++) {
    lp_worker *w = &g->workers[i];
    if (!w->ok) continue;
    w->reload_phase = phase;
    w->reload_task.run = run_reload;
    g->reload_expect++;
    lp_loop_post(w->loop, &w->reload_task);
  }
}

// Boss thread: once every worker has answered the prepare phase, commit or
// abort everywhere; once every worker has done that, start the next reload
// asked for meanwhile.
static void reload_step(lp_group *g) {
  if (g->reload_expect) {
    if (atomic_load(&g->reload_answers) < g->reload_expect) return;
    g->reload_expect = 0;
    if (g->reload_phase == LP_RELOAD_PREPARE) {
      if (atomic_load(&g->reload_failed) || g->stopping) {
        post_reload(g, LP_RELOAD_ABORT);
        pthread_mutex_lock(&g->lock);
        if (!g->stopping) lp_log(LP_LOG_ERROR, 0, "reload failed, the old code stays: %s", g->reload_err);
        pthread_mutex_unlock(&g->lock);
      } else {
        post_reload(g, LP_RELOAD_COMMIT);
        g->reloads++;
        lp_log(LP_LOG_INFO, 0, "reload %u: new connections get the new code; open ones finish on the old", g->reloads);
      }
      return; // the next reload waits until every worker has switched (or dropped)
    }
  }
  if (atomic_load(&g->reload_asked) == 0 || g->stopping) return;
  atomic_store(&g->reload_asked, 0); // the requests so far: one reload serves them all
  atomic_store(&g->reload_failed, false);
  g->reload_err[0] = 0; // no worker writes it before the posts below
  post_reload(g, LP_RELOAD_PREPARE);
}

int lp_group_reload(lp_group *g) {
  if (!g->cfg.workers || !g->ops->reload_prepare || !g->ops->reload_finish) return -ENOTSUP;
  atomic_fetch_add(&g->reload_asked, 1);
  ev_async_send(g->boss->ev, &g->ctl);
  return 0;
}

static void on_ctl(struct ev_loop *ev, ev_async *a, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_group *g = lp_container_of(a, lp_group, ctl);
  if (atomic_exchange(&hangups, 0) > 0) {
    if (g->stopping) lp_log(LP_LOG_INFO, 0, "SIGHUP ignored: shutting down");
    else if (lp_group_reload(g) == 0) lp_log(LP_LOG_INFO, 0, "SIGHUP: reloading the app");
    else lp_log(LP_LOG_WARN, 0, "SIGHUP ignored: reloading needs worker threads (this server runs inline, -w 0)");
  }
  reload_step(g);
  int n = atomic_exchange(&g->signals, 0);
  if (n > 0) {
    const char *name = sigabbrev_np(atomic_load(&g->last_signal));
    if (!g->stopping) {
      lp_log(LP_LOG_INFO, 0, "SIG%s: shutting down (at most %g s; again to close every connection now)",
             name ? name : "?", g->cfg.shutdown_timeout);
      lp_group_shutdown(g, false);
      n--;
    }
    if (n > 0 && !g->forcing) {
      lp_log(LP_LOG_WARN, 0, "SIG%s again: closing every connection now", name ? name : "?");
      lp_group_shutdown(g, true);
    }
  }
  if (atomic_exchange(&g->stop_asked, false) && !g->stopping) {
    lp_log(LP_LOG_INFO, 0, "a worker stopped its loop: shutting down (at most %g s)", g->cfg.shutdown_timeout);
    lp_group_shutdown(g, false);
  }
  if (!g->done && atomic_load(&g->finished) == g->nworkers) finish_run(g);
}

static void on_hard_stop(struct ev_loop *ev, ev_timer *t, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_group *g = lp_container_of(t, lp_group, hard_stop);
  lp_log(LP_LOG_ERROR, 0, "shutdown: %d worker(s) still busy %g s after the deadline; giving up on them",
         g->nworkers - atomic_load(&g->finished), LP_GROUP_HARD_STOP_S);
  g->status = -ETIMEDOUT;
  finish_run(g);
}

void lp_group_shutdown(lp_group *g, bool force) {
  if (!g->stopping) {
    g->stopping = true;
    for (int i = 0; i < g->nservers; i++) lp_server_close(&g->servers[i]); // stop accepting
    for (int i = 0; i < g->nworkers; i++) {
      lp_worker *w = &g->workers[i];
      if (!w->ok || w->shutdown_posted) continue;
      w->shutdown_posted = true;
      w->shutdown_task.run = run_shutdown;
      lp_loop_post(w->loop, &w->shutdown_task);
    }
    ev_timer_set(&g->hard_stop, g->cfg.shutdown_timeout + LP_GROUP_HARD_STOP_S, 0.);
    ev_timer_start(g->boss->ev, &g->hard_stop);
  }
  if (force && !g->forcing) {
    g->forcing = true;
    for (int i = 0; i < g->nworkers; i++) {
      lp_worker *w = &g->workers[i];
      if (!w->ok || w->force_posted) continue;
      w->force_posted = true;
      w->force_task.run = run_force;
      lp_loop_post(w->loop, &w->force_task);
    }
    ev_timer_stop(g->boss->ev, &g->hard_stop);
    ev_timer_set(&g->hard_stop, LP_GROUP_HARD_STOP_S, 0.);
    ev_timer_start(g->boss->ev, &g->hard_stop);
  }
}

int lp_group_init(lp_group *g, lp_loop *boss, const lp_group_config *cfg, const lp_worker_ops *ops, void *ud) {
  memset(g, 0, sizeof *g);
  if (cfg->workers < 0 || cfg->workers > LP_GROUP_MAX_WORKERS) return -EINVAL;
  g->boss = boss;
  g->cfg = *cfg;
  g->ops = ops;
  g->ud = ud;
  g->nworkers = cfg->workers ? cfg->workers : 1;
  g->workers = calloc((size_t)g->nworkers, sizeof *g->workers);
  if (!g->workers) return -ENOMEM;
  for (int i = 0; i < g->nworkers; i++) {
    lp_worker *w = &g->workers[i];
    w->group = g;
    w->id = cfg->workers ? i + 1 : 0;
    w->threaded = cfg->workers > 0;
    w->loop = w->threaded ? NULL : boss;
  }
  atomic_init(&g->open, 0);
  atomic_init(&g->signals, 0);
  atomic_init(&g->last_signal, 0);
  atomic_init(&g->finished, 0);
  atomic_init(&g->stop_asked, false);
  atomic_init(&g->reload_asked, 0);
  atomic_init(&g->reload_answers, 0);
  atomic_init(&g->reload_failed, false);
  pthread_mutex_init(&g->lock, NULL);
  pthread_cond_init(&g->cond, NULL);
  ev_async_init(&g->ctl, on_ctl);
  ev_timer_init(&g->hard_stop, on_hard_stop, 1., 0.);
  boss->group = g;
  return 0;
}

// Workers that started but will never run (start-up failed elsewhere, or
// listen failed): stop them through the same shutdown path, and join.
static void stop_unrun(lp_group *g) {
  for (int i = 0; i < g->nworkers; i++) {
    lp_worker *w = &g->workers[i];
    if (!w->ok) continue;
    w->ok = false;
    if (!w->threaded) { // no channel yet: nothing to drain
      w->state = LP_WORKER_STOPPED;
      g->ops->stop(w);
      g->ops->free(w);
      continue;
    }
    w->shutdown_posted = true;
    w->shutdown_task.run = run_shutdown;
    lp_loop_post(w->loop, &w->shutdown_task);
  }
  for (int i = 0; i < g->nworkers; i++) {
    lp_worker *w = &g->workers[i];
    if (w->joinable) pthread_join(w->thread, NULL);
    w->joinable = false;
  }
}

int lp_group_start(lp_group *g, char *err, size_t errlen) {
  if (!g->cfg.workers) {
    lp_worker *w = &g->workers[0];
    if (g->ops->start(w, err, errlen) != 0) {
      w->state = LP_WORKER_FAILED;
      return -1;
    }
    w->state = LP_WORKER_RUNNING;
    w->ok = true;
    return 0;
  }
  // Worker threads never take SIGINT/SIGTERM/SIGHUP: the boss's thread handles them.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  int launched = 0;
  char failure[LP_GROUP_ERR_MAX] = "";
  // Every loop exists before any thread starts: a worker may read the others'
  // statistics from its first line on (lupine.stats() in workerInit).
  for (int i = 0; i < g->nworkers && !failure[0]; i++) {
    lp_worker *w = &g->workers[i];
    w->loop = lp_loop_new(w->id);
    if (!w->loop)
      snprintf(failure, sizeof failure, "cannot create the event loop of worker %d (out of memory or descriptors)", w->id);
    else w->loop->group = g;
  }
  for (int i = 0; i < g->nworkers && !failure[0]; i++) {
    lp_worker *w = &g->workers[i];
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc) {
      snprintf(failure, sizeof failure, "cannot start the thread of worker %d: %s", w->id, strerror(rc));
      break;
    }
    w->joinable = true;
    launched++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_mutex_lock(&g->lock);
  while (g->started < launched) pthread_cond_wait(&g->cond, &g->lock);
  for (int i = 0; i < g->nworkers; i++) g->workers[i].ok = g->workers[i].state == LP_WORKER_RUNNING;
  if (!failure[0] && g->start_err[0]) snprintf(failure, sizeof failure, "%s", g->start_err);
  pthread_mutex_unlock(&g->lock);
  if (!failure[0]) return 0;
  snprintf(err, errlen, "%s", failure);
  stop_unrun(g);
  return -1;
}

// One listener per worker on addr, all with SO_REUSEPORT.
static int listen_per_worker(lp_group *g, const lp_sockaddr *addr, const lp_listen_opts *o, lp_sockaddr *bound) {
  if (addr->sa.sa_family == AF_UNIX) return -EAFNOSUPPORT;
  if (g->nlisteners == LP_GROUP_MAX_SERVERS) return -ENOSPC;
  lp_listen_opts opts = *o;
  opts.reuse_port = true;
  lp_sockaddr a = *addr;
  int k = g->nlisteners, rc = 0, opened = 0;
  for (int i = 0; i < g->nworkers && !rc; i++, opened++) {
    lp_worker *w = &g->workers[i];
    if (!w->listeners && !(w->listeners = calloc(LP_GROUP_MAX_SERVERS, sizeof *w->listeners))) {
      rc = -ENOMEM;
      break;
    }
    rc = lp_server_open(&w->listeners[k], w->loop, &a, &opts, on_worker_accept, w);
    if (i == 0 && !rc) a = w->listeners[k].addr; // port 0: the others take the port the first got
  }
  if (rc) {
    for (int i = 0; i < opened && i < g->nworkers; i++)
      if (g->workers[i].listeners) lp_server_close(&g->workers[i].listeners[k]);
    return rc;
  }
  g->nlisteners++;
  if (bound) *bound = a;
  return 0;
}

int lp_group_listen(lp_group *g, const lp_sockaddr *addr, const lp_listen_opts *o, lp_sockaddr *bound) {
  if (g->cfg.reuse_port && g->cfg.workers > 0) return listen_per_worker(g, addr, o, bound);
  if (g->nservers == LP_GROUP_MAX_SERVERS) return -ENOSPC;
  lp_server *s = &g->servers[g->nservers];
  int rc = lp_server_open(s, g->boss, addr, o, on_accept, g);
  if (rc) return rc;
  s->ud = g;
  g->nservers++;
  if (bound) *bound = s->addr;
  return 0;
}

static void on_signal(int sig) {
  int saved = errno;
  lp_group *g = atomic_load(&signal_group);
  if (g) {
    if (sig == SIGHUP) {
      atomic_fetch_add(&hangups, 1);
    } else {
      atomic_store(&g->last_signal, sig);
      atomic_fetch_add(&g->signals, 1);
    }
    ev_async_send(g->boss->ev, &g->ctl); // async-signal-safe (libev)
  }
  errno = saved;
}

static bool take_signals(lp_group *g) {
  lp_group *none = NULL;
  if (!atomic_compare_exchange_strong(&signal_group, &none, g)) return false; // another group has them
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &saved_int);
  sigaction(SIGTERM, &sa, &saved_term);
  sigaction(SIGHUP, &sa, &saved_hup);
  signal(SIGPIPE, SIG_IGN); // writes use MSG_NOSIGNAL; this covers everything else
  return true;
}

static void give_back_signals(void) {
  sigaction(SIGINT, &saved_int, NULL);
  sigaction(SIGTERM, &saved_term, NULL);
  sigaction(SIGHUP, &saved_hup, NULL);
  atomic_store(&signal_group, NULL);
}

int lp_group_run(lp_group *g) {
  ev_async_start(g->boss->ev, &g->ctl); // also keeps the boss loop running until done
  bool signals = g->cfg.handle_signals && take_signals(g);
  g->running = true;
  for (int i = 0; i < g->nservers; i++) lp_server_start(&g->servers[i]);
  for (int i = 0; i < g->nworkers && g->nlisteners; i++) {
    lp_worker *w = &g->workers[i];
    if (!w->ok) continue;
    w->listen_task.run = run_listen;
    lp_loop_post(w->loop, &w->listen_task);
  }
  while (!g->done) {
    lp_loop_run(g->boss);
    // Stopped from outside (loop:stop() in an inline handler): shut down.
    if (!g->done && !g->stopping) lp_group_shutdown(g, false);
  }
  if (signals) give_back_signals();
  ev_async_stop(g->boss->ev, &g->ctl);
  if (g->status) return g->status; // threads still busy: leave them be
  for (int i = 0; i < g->nworkers; i++) {
    lp_worker *w = &g->workers[i];
    if (w->joinable) pthread_join(w->thread, NULL);
    w->joinable = false;
    if (!w->threaded && w->ok) g->ops->free(w);
    w->ok = false;
  }
  return 0;
}

void lp_group_destroy(lp_group *g) {
  if (!g->workers) return;
  for (int i = 0; i < g->nservers; i++) lp_server_close(&g->servers[i]);
  if (g->status) return; // worker threads may still run: their memory goes with the process
  if (!g->running) stop_unrun(g);
  for (int i = 0; i < g->nworkers; i++) { // threads joined: their listeners are ours to close
    lp_worker *w = &g->workers[i];
    close_listeners(w);
    free(w->listeners);
    w->listeners = NULL;
    if (w->threaded && w->loop) lp_loop_free(w->loop);
  }
  if (ev_is_active(&g->hard_stop)) ev_timer_stop(g->boss->ev, &g->hard_stop);
  if (g->boss->group == g) g->boss->group = NULL;
  free(g->workers);
  g->workers = NULL;
  pthread_mutex_destroy(&g->lock);
  pthread_cond_destroy(&g->cond);
}
