// group.h: a boss loop that accepts and worker loops that own the connections
// (Netty's parent and child EventLoopGroups). Each worker is a thread running
// its own lp_loop; the host (the Lua binding) gives each worker its own state
// through lp_worker_ops. With zero workers the boss loop is also the only
// worker, in the caller's thread: the inline mode, through the same code.
//
// Threads meet only here, and only through:
//   - tasks posted to a worker's loop (a new connection, shutdown, force);
//   - atomics and one ev_async on the boss (signals, workers finished);
//   - a mutex and condition variable during start-up.
// Nothing the host owns crosses threads.
//
// Life: lp_group_init, lp_group_start (every worker's start() has succeeded,
// or none is left running), lp_group_listen (one or more addresses), then
// lp_group_run, which returns once a shutdown (a signal, lp_group_shutdown, or
// a loop stopped from inside, lp_loop_stop) has drained every worker;
// lp_group_destroy.
//
// Reload (lp_group_reload, SIGHUP; worker threads only): the boss asks every
// worker to prepare a new generation of its host state (reload_prepare, on the
// worker's thread, beside the running one), waits for every answer, then tells
// every worker to commit (new connections go to the new generation) or, when
// any failed, to abort (each drops what it prepared): all workers switch, or
// none. The listeners stay open throughout. Requests that come during a reload
// make one more after it, once every worker has answered its commit or abort. Old generations drain in the
// host, which owns them.
//
// Shutdown: listeners close; each worker closes its channels gracefully
// (lp_channel_close_gracefully: input dropped, what was written delivered,
// FIN, close) and at the deadline closes whatever is left; once it has no
// channel left it runs stop() and its loop ends. A second request forces every
// channel closed at once.
#ifndef LP_GROUP_H
#define LP_GROUP_H

#include "common.h"
#include "loop.h"
#include "server.h"

#include <stdatomic.h>

#define LP_GROUP_MAX_WORKERS 1024
#define LP_GROUP_MAX_SERVERS 8
#define LP_GROUP_ERR_MAX 512

typedef struct lp_group lp_group;
typedef struct lp_worker lp_worker;

// What the host does for each worker, always on that worker's thread.
typedef struct lp_worker_ops {
  // Before the worker's loop runs: build the host state (load the app, run
  // workerInit). 0, or -1 with a one-line reason in err. After a failure
  // nothing else is called for this worker.
  int (*start)(lp_worker *w, char *err, size_t errlen);
  // A new connection: build its channel (the host owns fd from here); peer is
  // the address accept() returned. Returns the channel (borrowed), or NULL
  // when it was closed at once.
  lp_channel *(*accept)(lp_worker *w, int fd, const lp_sockaddr *peer);
  // Shutdown: the last channel has closed (workerExit); the loop ends next.
  void (*stop)(lp_worker *w);
  // The loop has ended: free the host state. The loop itself is freed later.
  void (*free)(lp_worker *w);
  // Reload (both NULL: not supported). prepare: build the next generation
  // beside the running one; 0, or -1 with a one-line reason in err. Then
  // exactly one finish: commit (switch to it) or not (drop it). A worker whose
  // loop ends between the two drops it in free().
  int (*reload_prepare)(lp_worker *w, char *err, size_t errlen);
  void (*reload_finish)(lp_worker *w, bool commit);
} lp_worker_ops;

typedef struct lp_group_config {
  int workers;              // 0: inline (the boss loop serves too)
  double shutdown_timeout;  // seconds a worker may spend draining
  uint64_t max_connections; // 0: no limit; over it, new connections are closed at once
  bool handle_signals;      // SIGINT/SIGTERM shut down (a second one forces); SIGHUP reloads
  // Per-worker listeners: each worker binds its own socket with SO_REUSEPORT
  // and accepts on its own loop (the kernel spreads connections; no hop
  // through the boss). TCP only; with workers = 0 the one loop listens as usual.
  bool reuse_port;
} lp_group_config;

// maxConnections bookkeeping of one accepting thread (the boss, or a worker
// with its own listeners): one log line per burst of refusals.
typedef struct lp_admission {
  uint64_t refused;
  bool refusing;
} lp_admission;

enum { LP_RELOAD_PREPARE = 1, LP_RELOAD_COMMIT, LP_RELOAD_ABORT };
enum { LP_WORKER_NEW, LP_WORKER_RUNNING, LP_WORKER_DRAINING, LP_WORKER_STOPPED, LP_WORKER_FAILED };

struct lp_worker {
  lp_group *group;
  int id;                   // 1..N; 0 for the inline worker
  lp_loop *loop;            // its own, or the boss's (inline)
  void *host;               // the host's per-worker state
  pthread_t thread;
  bool threaded, joinable;
  int state;                // touched by its own thread once started
  ev_timer deadline;        // draining: close what is left
  ev_check drained;         // draining: watch for the last channel
  lp_task shutdown_task, force_task, listen_task;
  lp_server *listeners;     // reuse_port: this worker's own (LP_GROUP_MAX_SERVERS), opened by the boss
                            // before run, started, stopped and closed by the worker's thread
  lp_admission admission;   // its own thread's, with listeners
  lp_task reload_task;      // posted by the boss, one phase at a time, answered each time
  int reload_phase;         // LP_RELOAD_*: set by the boss before each post
  bool ok;                  // boss thread: started, not yet stopped
  bool shutdown_posted, force_posted; // boss thread
};

struct lp_group {
  lp_loop *boss;
  lp_group_config cfg;
  const lp_worker_ops *ops;
  void *ud;                 // the host's
  lp_worker *workers;
  int nworkers;             // cfg.workers, or 1 for the inline worker
  unsigned next;            // round robin (boss thread)
  lp_server servers[LP_GROUP_MAX_SERVERS];
  int nservers;
  int nlisteners;           // reuse_port: listeners per worker
  // Connections accepted and not yet closed (counted when max_connections),
  // over the whole process: every accepting thread checks and counts here.
  atomic_uint_fast64_t open;
  lp_admission admission;   // the boss's
  // start-up
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int started;              // workers whose start() returned
  char start_err[LP_GROUP_ERR_MAX]; // the first failure
  // shutdown
  ev_async ctl;             // signals and finished workers wake the boss
  ev_timer hard_stop;       // workers that never finish (a stuck handler)
  atomic_int signals;       // received, not yet handled
  atomic_int last_signal;
  atomic_int finished;      // workers whose loop ended
  atomic_bool stop_asked;   // a worker's loop was stopped from inside
  bool stopping, forcing, done, running;
  int status;               // lp_group_run's result
  // reload
  atomic_int reload_asked;  // requests not yet started (any thread)
  atomic_int reload_answers; // workers that answered the prepare phase
  atomic_bool reload_failed;
  char reload_err[LP_GROUP_ERR_MAX]; // the first failure (under lock)
  int reload_expect;        // boss: answers awaited for reload_phase (0: no phase under way)
  int reload_phase;         // boss: the phase last posted (LP_RELOAD_*)
  unsigned reloads;         // boss: reloads committed
};

// Set up (no thread yet). 0, -EINVAL (worker count) or -ENOMEM.
int lp_group_init(lp_group *g, lp_loop *boss, const lp_group_config *cfg, const lp_worker_ops *ops, void *ud);
// Start the workers and wait until each has run start(). 0; or -1 with the
// first failure in err, every worker then stopped and joined.
int lp_group_start(lp_group *g, char *err, size_t errlen);
// Listen on addr (bound address in *bound when not NULL): 0 or -errno. With
// reuse_port and workers, one socket per worker on the same address (port 0:
// the first bind picks it, the others bind that one); -EAFNOSUPPORT for a
// Unix domain address then.
int lp_group_listen(lp_group *g, const lp_sockaddr *addr, const lp_listen_opts *o, lp_sockaddr *bound);
// Accept and serve until shut down and drained. 0, or -ETIMEDOUT when a
// worker did not finish within shutdown_timeout + LP_GROUP_HARD_STOP_S
// (its thread is left running: the caller should exit the process).
#define LP_GROUP_HARD_STOP_S 5.0
int lp_group_run(lp_group *g);
// Ask for shutdown (boss thread): graceful, or forced (closes at once).
void lp_group_shutdown(lp_group *g, bool force);
// Ask for a reload (any thread; what SIGHUP does): 0, or -ENOTSUP when the
// group has no worker threads or its host cannot reload. The outcome is
// logged (one line) by the boss.
int lp_group_reload(lp_group *g);
// Join the threads and free the worker loops (after run, or after start
// failed). The boss loop is the caller's.
void lp_group_destroy(lp_group *g);

#endif
