// test_client.c: the client side without Lua: the resolver (numeric names and
// localhost without a lookup, failures, cancel, freed with lookups pending),
// connecting by name with fallbacks, and idle timers that never outlive their
// channel (the loop runs dry once the channel is closed).
#include "buffer.h"
#include "channel.h"
#include "connect.h"
#include "check.h"
#include "future.h"
#include "idle.h"
#include "loop.h"
#include "resolver.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int calls;
  bool failed;
  char message[LP_ERROR_MESSAGE_MAX];
  size_t n;
  char first[64], second[64];
} outcome;

static void on_result(void *ud, const lp_error *err, const lp_sockaddr *addrs, size_t n) {
  outcome *o = ud;
  o->calls++;
  o->failed = err != NULL;
  if (err) snprintf(o->message, sizeof o->message, "%s", err->message);
  o->n = n;
  if (n > 0) lp_addr_format(&addrs[0], o->first, sizeof o->first);
  if (n > 1) lp_addr_format(&addrs[1], o->second, sizeof o->second);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// Run the loop until cond or the deadline.
#define RUN_UNTIL(loop, cond, secs)                                                   \
  do {                                                                              \
    double until_ = now() + (secs);                                                 \
    while (!(cond) && now() < until_) lp_loop_run_once((loop), !(cond));            \
  } while (0)

static void test_resolve_without_lookup(void) {
  lp_loop *loop = lp_loop_new(0);
  outcome a = {0}, b = {0}, c = {0}, d = {0};
  CHECK(lp_resolve(loop, "127.0.0.1", 80, on_result, &a) != NULL);
  CHECK(lp_resolve(loop, "[::1]", 81, on_result, &b) != NULL);
  CHECK(lp_resolve(loop, "LOCALHOST", 82, on_result, &c) != NULL);
  lp_resolve_req *r = lp_resolve(loop, "10.0.0.1", 83, on_result, &d);
  lp_resolve_cancel(r);
  CHECK(a.calls == 0 && b.calls == 0); // never from inside lp_resolve
  lp_loop_run_tasks(loop);
  CHECK(a.calls == 1 && !a.failed && a.n == 1 && strcmp(a.first, "127.0.0.1:80") == 0);
  CHECK(b.calls == 1 && b.n == 1 && strcmp(b.first, "[::1]:81") == 0);
  CHECK(c.calls == 1 && c.n == 2 && strcmp(c.first, "127.0.0.1:82") == 0 && strcmp(c.second, "[::1]:82") == 0);
  CHECK(d.calls == 0); // cancelled
  CHECK(loop->resolver == NULL); // no lookup: no c-ares channel either
  lp_loop_free(loop);
}

static void test_resolve_failures(void) {
  lp_loop *loop = lp_loop_new(0);
  // A DNS "server" on a port nobody listens on, over TCP: refused at once.
  lp_resolver_config cfg = {"127.0.0.1:1", true, 500, 1};
  CHECK(lp_resolver_configure(loop, &cfg) == 0);
  lp_resolver_config bad = {"not a server", false, 0, 0};
  CHECK(lp_resolver_configure(loop, &bad) == -EINVAL);
  outcome a = {0}, b = {0};
  CHECK(lp_resolve(loop, "name.lupine.test", 80, on_result, &a) != NULL);
  RUN_UNTIL(loop, a.calls == 1, 5);
  CHECK(a.calls == 1 && a.failed);
  CHECK(strcmp(a.message, "UnknownHost: cannot resolve 'name.lupine.test': Could not contact DNS servers") == 0);
  // Freed with a lookup pending: it fails with Shutdown, once.
  lp_resolver_config blackhole = {"127.0.0.1:1", false, 5000, 4};
  CHECK(lp_resolver_configure(loop, &blackhole) == 0);
  CHECK(lp_resolve(loop, "other.lupine.test", 80, on_result, &b) != NULL);
  lp_loop_free(loop);
  CHECK(b.calls == 1 && b.failed);
  CHECK(strcmp(b.message, "Shutdown: the resolver closed before 'other.lupine.test' resolved") == 0);
}

static void test_connect_by_name_falls_back(void) {
  lp_loop *loop = lp_loop_new(0);
  lp_sockaddr any;
  lp_addr_parse("127.0.0.1", 0, &any);
  int lfd = lp_sock_listen(&any, 8, false);
  CHECK(lfd >= 0);
  lp_sockaddr bound;
  lp_sock_local(lfd, &bound);
  lp_channel *ch = lp_channel_new(loop, &lp_socket_transport, -1, NULL);
  lp_channel_register(ch);
  lp_future *f = lp_future_new(loop);
  // "localhost" is 127.0.0.1 then ::1: the first answers.
  lp_channel_connect_host(ch, "localhost", lp_addr_port(&bound), 5, f);
  RUN_UNTIL(loop, lp_future_done(f), 5);
  CHECK(lp_future_ok(f));
  CHECK(lp_channel_is_active(ch));
  lp_future_unref(f);
  lp_channel_close_now(ch);
  close(lfd);
  // A name with several addresses where only the last listens: the head tries
  // them in turn (the connect operation carries the first).
  lfd = lp_sock_listen(&any, 8, false);
  lp_sock_local(lfd, &bound);
  int port = lp_addr_port(&bound);
  lp_sockaddr addrs[3];
  lp_addr_parse("127.0.0.2", port, &addrs[0]);
  lp_addr_parse("127.0.0.3", port, &addrs[1]);
  lp_addr_parse("127.0.0.1", port, &addrs[2]);
  ch = lp_channel_new(loop, &lp_socket_transport, -1, NULL);
  lp_channel_register(ch);
  CHECK(lp_channel_prepare_connect(ch, 5) == 0);
  CHECK(lp_channel_set_connect_fallbacks(ch, addrs + 1, 2) == 0);
  f = lp_future_new(loop);
  lp_msg m = {.kind = LP_MSG_PTR, .u.ptr = &addrs[0]};
  lp_pipeline_op(&ch->pipeline, LP_OP_CONNECT, &m, f);
  RUN_UNTIL(loop, lp_future_done(f), 5);
  CHECK(lp_future_ok(f));
  char r[64];
  CHECK(strcmp(lp_chaddr_format(&ch->remote, r, sizeof r), lp_addr_format(&addrs[2], r + 32, 32)) == 0);
  lp_future_unref(f);
  lp_channel_close_now(ch);
  close(lfd);
  lp_loop_free(loop);
}

static void test_idle_timers_end_with_channel(void) {
  lp_loop *loop = lp_loop_new(0);
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  lp_channel *ch = lp_channel_new(loop, &lp_socket_transport, sv[0], NULL);
  lp_ctx *idle = lp_idle_state_new(&ch->pipeline, NULL, 30, 30, 30);
  lp_ctx *wt = lp_write_timeout_new(&ch->pipeline, NULL, 30);
  CHECK(idle && wt && strcmp(idle->name, "idleState#0") == 0);
  CHECK(lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, idle) == 0);
  CHECK(lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, wt) == 0);
  lp_channel_register(ch); // active: the timers run (30 s)
  lp_msg m = lp_msg_buf(lp_buf_from(loop->pool, "x", 1));
  lp_future *w = lp_future_new(loop);
  lp_channel_write(ch, &m, w); // pending write with its own 30 s timer
  lp_channel_close_now(ch);
  // Nothing left active: the loop runs dry at once instead of waiting 30 s.
  double t0 = now();
  lp_loop_run(loop);
  CHECK(now() - t0 < 5);
  CHECK(lp_future_done(w) && !lp_future_ok(w));
  lp_future_unref(w);
  close(sv[1]);
  lp_loop_free(loop);
}

int main(void) {
  test_resolve_without_lookup();
  test_resolve_failures();
  test_connect_by_name_falls_back();
  test_idle_timers_end_with_channel();
  return check_report();
}
