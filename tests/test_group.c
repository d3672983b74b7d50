// test_group.c: the boss/worker group without Lua. A native host gives each
// worker a tiny protocol handler; a client thread drives real sockets while
// this thread runs the boss. Checks: round robin across worker threads, echo,
// SIGTERM draining every written byte before the FIN, channelInactive and
// stop()/free() once per worker, the shutdown deadline against a peer that
// never reads, start-up failure, maxConnections, the inline mode, and reload
// (all workers switch or none, asked from another thread, coalesced).
#include "buffer.h"
#include "channel.h"
#include "check.h"
#include "group.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BULK (12u * 1024 * 1024)

static atomic_int starts, stops, frees, inactive, stop_with_channels;
static int fail_id = -1;
// reload: prepares, commits and aborts seen; each worker's generation (its own thread's)
static atomic_int prepares, commits, aborts, overlaps, reload_fail_id = -1;
static int generation[8];
static bool prepared[8]; // a worker's new generation awaits its commit or abort
static atomic_bool slow_prepare; // prepares take 50 ms: requests arrive during one


static uint8_t pattern(size_t i) { return (uint8_t)(i * 7 + (i >> 12)); }

// The protocol, per read: 'w' -> one byte, the worker id as a digit; 'b' ->
// BULK bytes of pattern(); anything else is echoed.
static void proto_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  lp_worker *w = ctx->state;
  if (ev == LP_EV_INACTIVE) atomic_fetch_add(&inactive, 1);
  if (ev != LP_EV_READ || m->kind != LP_MSG_BUF) {
    lp_ctx_fire(ctx, ev, m);
    return;
  }
  lp_buf *in = m->u.buf;
  uint8_t first = lp_buf_readable(in) ? lp_buf_rptr(in)[0] : 0;
  lp_msg out;
  if (first == 'w' || first == 'b' || first == 'g') {
    lp_buf_unref(in);
    lp_buf *b;
    if (first != 'b') { // 'g': the generation this worker serves new connections from
      uint8_t id = (uint8_t)('0' + (first == 'w' ? w->id : generation[w->id]));
      b = lp_buf_from(lp_ctx_channel(ctx)->loop->pool, &id, 1);
    } else {
      b = lp_buf_new(NULL, BULK);
      for (size_t i = 0; i < BULK; i++) b->data[i] = pattern(i);
      b->wr = BULK;
    }
    out = lp_msg_buf(b);
  } else {
    out = *m;
  }
  lp_ctx_op(ctx, LP_OP_WRITE, &out, NULL);
  lp_ctx_op(ctx, LP_OP_FLUSH, NULL, NULL);
}

static const lp_handler_ops proto_ops = {"proto", LP_MASK(LP_EV_READ) | LP_MASK(LP_EV_INACTIVE), NULL, NULL,
                                         proto_inbound, NULL, NULL};

static int h_start(lp_worker *w, char *err, size_t errlen) {
  atomic_fetch_add(&starts, 1);
  if (w->id == fail_id) {
    snprintf(err, errlen, "refused by the test");
    return -1;
  }
  return 0;
}

static lp_channel *h_accept(lp_worker *w, int fd, const lp_sockaddr *peer) {
  LP_UNUSED(peer);
  lp_channel *ch = lp_channel_new(w->loop, &lp_socket_transport, fd, NULL);
  if (!ch) return NULL;
  lp_ctx *c = lp_ctx_new(&ch->pipeline, &proto_ops, w, "proto");
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, c);
  lp_channel_register(ch);
  return ch;
}

static void h_stop(lp_worker *w) {
  atomic_fetch_add(&stops, 1);
  if (w->loop->nchannels) atomic_fetch_add(&stop_with_channels, 1);
}

static void h_free(lp_worker *w) {
  LP_UNUSED(w);
  atomic_fetch_add(&frees, 1);
}

static const lp_worker_ops ops = {h_start, h_accept, h_stop, h_free, NULL, NULL};

static int h_prepare(lp_worker *w, char *err, size_t errlen) {
  atomic_fetch_add(&prepares, 1);
  if (prepared[w->id]) atomic_fetch_add(&overlaps, 1); // a prepare before the last one's finish
  prepared[w->id] = true;
  if (atomic_load(&slow_prepare)) usleep(50 * 1000);
  if (w->id != atomic_load(&reload_fail_id)) return 0;
  snprintf(err, errlen, "app.lua:3: broken");
  return -1;
}

static void h_finish(lp_worker *w, bool commit) {
  prepared[w->id] = false;
  if (commit) generation[w->id]++;
  atomic_fetch_add(commit ? &commits : &aborts, 1);
}

static const lp_worker_ops reload_ops = {h_start, h_accept, h_stop, h_free, h_prepare, h_finish};

// ---- the client side (its own thread, SIGINT/SIGTERM blocked) ----------------

static int port;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int ask_worker(int fd) {
  char c;
  if (send(fd, "w", 1, MSG_NOSIGNAL) != 1 || recv(fd, &c, 1, MSG_WAITALL) != 1) return -1;
  return c - '0';
}

// Read until EOF; the byte count, or -1 on an error (a reset, a timeout).
static long long read_to_eof(int fd, bool check_pattern, bool *pattern_ok) {
  static uint8_t buf[65536];
  long long total = 0;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) return total;
    if (n < 0) return errno == EINTR ? total : -1;
    if (check_pattern)
      for (ssize_t i = 0; i < n; i++)
        if (buf[i] != pattern((size_t)total + (size_t)i)) *pattern_ok = false;
    total += n;
  }
}

static struct {
  int ids[4];
  bool echo_ok;
  long long bulk_bytes, echo_eof;
  bool pattern_ok;
} threaded;

static void *client_threaded(void *arg) {
  LP_UNUSED(arg);
  int fds[4];
  for (int i = 0; i < 4; i++) {
    fds[i] = dial(0);
    threaded.ids[i] = fds[i] >= 0 ? ask_worker(fds[i]) : -1;
  }
  char buf[6] = {0};
  threaded.echo_ok = send(fds[0], "hello", 5, MSG_NOSIGNAL) == 5 && recv(fds[0], buf, 5, MSG_WAITALL) == 5 &&
                     memcmp(buf, "hello", 5) == 0;
  int bulk = dial(0);
  send(bulk, "b", 1, MSG_NOSIGNAL);
  usleep(100 * 1000); // the server has written what the socket takes, and queued the rest
  kill(getpid(), SIGTERM);
  threaded.pattern_ok = true;
  threaded.bulk_bytes = read_to_eof(bulk, true, &threaded.pattern_ok);
  threaded.echo_eof = 0;
  for (int i = 0; i < 4; i++) threaded.echo_eof += read_to_eof(fds[i], false, NULL) == 0;
  for (int i = 0; i < 4; i++) close(fds[i]);
  close(bulk);
  return NULL;
}

static double signalled_at;
static atomic_bool run_returned;
static long long deadline_bytes;

static void *client_deadline(void *arg) {
  LP_UNUSED(arg);
  int fd = dial(4096);
  send(fd, "b", 1, MSG_NOSIGNAL);
  usleep(100 * 1000);
  signalled_at = now();
  kill(getpid(), SIGTERM);
  // Read nothing until the server has given up on this peer.
  for (int i = 0; i < 1000 && !atomic_load(&run_returned); i++) usleep(10 * 1000);
  bool ok = true;
  deadline_bytes = read_to_eof(fd, true, &ok);
  close(fd);
  return NULL;
}

static int maxconn_results[3];

// Connection 1 stays open; 2 is over the limit (closed at once: EOF); once 1
// closes, 3 is served.
static void *client_maxconn(void *arg) {
  LP_UNUSED(arg);
  int a = dial(0);
  maxconn_results[0] = ask_worker(a);
  int b = dial(0);
  maxconn_results[1] = ask_worker(b); // -1: closed
  close(b);
  close(a);
  maxconn_results[2] = -1;
  for (int i = 0; i < 100 && maxconn_results[2] < 0; i++) { // until the close is counted
    usleep(10 * 1000);
    int c = dial(0);
    maxconn_results[2] = ask_worker(c);
    close(c);
  }
  kill(getpid(), SIGINT);
  return NULL;
}

static int inline_id;

static void *client_inline(void *arg) {
  LP_UNUSED(arg);
  int fd = dial(0);
  inline_id = ask_worker(fd);
  kill(getpid(), SIGINT);
  read_to_eof(fd, false, NULL);
  close(fd);
  return NULL;
}

static lp_group *reload_group;
static int reload_gens[4][2]; // per step, the generation each worker answers

static void wait_for(atomic_int *v, int n) {
  for (int i = 0; i < 500 && atomic_load(v) < n; i++) usleep(10 * 1000);
}

// Generations of both workers, one new connection each (round robin).
static void both_gens(int step) {
  for (int i = 0; i < 2; i++) {
    int fd = dial(0);
    int id = ask_worker(fd);
    char c = 0;
    if (id >= 1 && id <= 2 && send(fd, "g", 1, MSG_NOSIGNAL) == 1 && recv(fd, &c, 1, MSG_WAITALL) == 1)
      reload_gens[step][id - 1] = c - '0';
    close(fd);
  }
}

static void *client_reload(void *arg) {
  LP_UNUSED(arg);
  both_gens(0);
  atomic_store(&reload_fail_id, 2); // worker 2 fails: neither switches
  lp_group_reload(reload_group);    // from this thread, not the boss's
  wait_for(&aborts, 2);
  both_gens(1);
  atomic_store(&reload_fail_id, -1);
  lp_group_reload(reload_group);
  wait_for(&commits, 2);
  both_gens(2);
  atomic_store(&slow_prepare, true);
  lp_group_reload(reload_group);
  wait_for(&prepares, 5); // a prepare is under way: these make one more reload, after it
  for (int i = 0; i < 4; i++) lp_group_reload(reload_group);
  wait_for(&commits, 6);
  usleep(200 * 1000); // no further reload comes
  both_gens(3);
  kill(getpid(), SIGINT);
  return NULL;
}

static pthread_t spawn(void *(*fn)(void *)) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old); // the boss (this thread) takes the signals
  pthread_t t;
  pthread_create(&t, NULL, fn, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return t;
}

static void reset(void) {
  atomic_store(&starts, 0), atomic_store(&stops, 0), atomic_store(&frees, 0);
  atomic_store(&inactive, 0), atomic_store(&stop_with_channels, 0);
  fail_id = -1;
}

static int serve_ops(lp_loop *boss, const lp_worker_ops *o, int workers, double timeout, uint64_t maxconn,
                     void *(*client)(void *)) {
  lp_group g;
  lp_group_config cfg = {workers, timeout, maxconn, true, false};
  CHECK(lp_group_init(&g, boss, &cfg, o, NULL) == 0);
  reload_group = &g;
  char err[LP_GROUP_ERR_MAX];
  CHECK(lp_group_start(&g, err, sizeof err) == 0);
  lp_sockaddr addr, bound;
  lp_addr_parse("127.0.0.1", 0, &addr);
  lp_listen_opts lo = {128, false, -1};
  CHECK(lp_group_listen(&g, &addr, &lo, &bound) == 0);
  port = lp_addr_port(&bound);
  pthread_t t = spawn(client);
  int rc = lp_group_run(&g);
  atomic_store(&run_returned, true);
  pthread_join(t, NULL);
  lp_group_destroy(&g);
  return rc;
}

static int serve(lp_loop *boss, int workers, double timeout, uint64_t maxconn, void *(*client)(void *)) {
  return serve_ops(boss, &ops, workers, timeout, maxconn, client);
}

int main(void) {
  lp_log_set_level(LP_LOG_OFF);
  lp_loop *boss = lp_loop_new(0);

  // Two workers: round robin, echo, and SIGTERM draining 12 MiB to a reader.
  reset();
  CHECK(serve(boss, 2, 10.0, 0, client_threaded) == 0);
  CHECK(threaded.ids[0] == 1 && threaded.ids[1] == 2 && threaded.ids[2] == 1 && threaded.ids[3] == 2);
  CHECK(threaded.echo_ok);
  CHECK(threaded.bulk_bytes == (long long)BULK); // every byte written before the signal arrived
  CHECK(threaded.pattern_ok);
  CHECK(threaded.echo_eof == 4);                 // idle channels got a clean FIN
  CHECK(atomic_load(&starts) == 2 && atomic_load(&stops) == 2 && atomic_load(&frees) == 2);
  CHECK(atomic_load(&stop_with_channels) == 0);
  CHECK(atomic_load(&inactive) == 5);            // channelInactive for every channel

  // A peer that never reads: the worker closes it at the deadline (1 s).
  reset();
  atomic_store(&run_returned, false);
  CHECK(serve(boss, 1, 1.0, 0, client_deadline) == 0);
  double took = now() - signalled_at;
  CHECK(took >= 0.9 && took < 1.0 + LP_GROUP_HARD_STOP_S);
  CHECK(deadline_bytes >= 0 && deadline_bytes < (long long)BULK); // the rest was dropped at the deadline
  CHECK(atomic_load(&inactive) == 1);

  // maxConnections = 1.
  reset();
  CHECK(serve(boss, 2, 5.0, 1, client_maxconn) == 0);
  CHECK(maxconn_results[0] >= 1);
  CHECK(maxconn_results[1] == -1);
  CHECK(maxconn_results[2] >= 1);

  // Inline: the boss loop is the worker (id 0), in this thread.
  reset();
  CHECK(serve(boss, 0, 5.0, 0, client_inline) == 0);
  CHECK(inline_id == 0);
  CHECK(atomic_load(&starts) == 1 && atomic_load(&stops) == 1 && atomic_load(&frees) == 1);

  // Reload: all or nothing, asked from another thread; requests during a
  // reload make one more, after every worker finished the one before.
  reset();
  CHECK(serve_ops(boss, &reload_ops, 2, 5.0, 0, client_reload) == 0);
  CHECK(reload_gens[0][0] == 0 && reload_gens[0][1] == 0);
  CHECK(atomic_load(&aborts) == 2 && reload_gens[1][0] == 0 && reload_gens[1][1] == 0); // worker 1 dropped its new one too
  CHECK(reload_gens[2][0] == 1 && reload_gens[2][1] == 1);
  int c = atomic_load(&commits);
  CHECK(c == 2 * 3 && c % 2 == 0); // two more (the burst coalesced into one), never one worker alone
  CHECK(reload_gens[3][0] == c / 2 && reload_gens[3][1] == c / 2);
  CHECK(atomic_load(&prepares) == atomic_load(&commits) + atomic_load(&aborts));
  CHECK(atomic_load(&overlaps) == 0); // each phase reached each worker once, in order

  // Without worker threads, or without the host's hooks, no reload.
  lp_group g;
  lp_group_config cfg = {0, 5.0, 0, false, false};
  CHECK(lp_group_init(&g, boss, &cfg, &reload_ops, NULL) == 0);
  CHECK(lp_group_reload(&g) == -ENOTSUP);
  lp_group_destroy(&g);
  cfg.workers = 2;
  CHECK(lp_group_init(&g, boss, &cfg, &ops, NULL) == 0);
  CHECK(lp_group_reload(&g) == -ENOTSUP);
  lp_group_destroy(&g);

  // Start-up failure of worker 2 of 3: reported, the others stopped and joined.
  reset();
  fail_id = 2;
  cfg.workers = 3;
  CHECK(lp_group_init(&g, boss, &cfg, &ops, NULL) == 0);
  char err[LP_GROUP_ERR_MAX] = "";
  CHECK(lp_group_start(&g, err, sizeof err) == -1);
  CHECK(strcmp(err, "worker 2: refused by the test") == 0);
  lp_group_destroy(&g);
  CHECK(atomic_load(&starts) == 3 && atomic_load(&stops) == 2 && atomic_load(&frees) == 2);

  // Bad worker counts.
  cfg.workers = -1;
  CHECK(lp_group_init(&g, boss, &cfg, &ops, NULL) == -EINVAL);
  lp_group_destroy(&g);

  lp_loop_free(boss);
  return check_report();
}
