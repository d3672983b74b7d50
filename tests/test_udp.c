// test_udp.c: the UDP transport without Lua: "host:port" parsing, a native
// echo handler answering each datagram (LP_MSG_DGRAM written back as it came,
// to its sender), a datagram over maxDatagramSize dropped and reported while
// the next one is still answered, writes refused without a recipient and
// over the limit, and a port in use.
#include "buffer.h"
#include "channel.h"
#include "check.h"
#include "future.h"
#include "loop.h"
#include "udp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
  int reads, completes, errors;
  char error[LP_ERROR_MESSAGE_MAX];
  long long limit, length;
} echo_state;

// Each datagram goes back to its sender as it is; flushed once per batch.
static void echo_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  echo_state *s = ctx->state;
  if (ev == LP_EV_READ) {
    s->reads++;
    CHECK(m->kind == LP_MSG_DGRAM);
    lp_ctx_op(ctx, LP_OP_WRITE, m, NULL);
  } else if (ev == LP_EV_READ_COMPLETE) {
    s->completes++;
    lp_ctx_op(ctx, LP_OP_FLUSH, NULL, NULL);
  } else if (ev == LP_EV_EXCEPTION) {
    s->errors++;
    snprintf(s->error, sizeof s->error, "%s", m->u.err->message);
    s->limit = m->u.err->limit;
    s->length = m->u.err->length;
  }
}

static const lp_handler_ops echo_ops = {
    "echo", LP_MASK(LP_EV_READ) | LP_MASK(LP_EV_READ_COMPLETE) | LP_MASK(LP_EV_EXCEPTION), NULL, NULL, echo_inbound,
    NULL, NULL};

static void test_parse(void) {
  lp_sockaddr a;
  char s[64];
  CHECK(lp_udp_parse_addr("127.0.0.1:5000", &a) == 0 && strcmp(lp_addr_format(&a, s, sizeof s), "127.0.0.1:5000") == 0);
  CHECK(lp_udp_parse_addr("[::1]:53", &a) == 0 && strcmp(lp_addr_format(&a, s, sizeof s), "[::1]:53") == 0);
  CHECK(lp_udp_parse_addr("localhost:0", &a) == 0 && strcmp(lp_addr_format(&a, s, sizeof s), "127.0.0.1:0") == 0);
  const char *bad[] = {"", ":5", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+5",
                       "127.0.0.1:5x", "::1:5", "example.com:5", "[::1]5"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = lp_udp_parse_addr(bad[i], &a);
    CHECK(rc == -EINVAL);
    if (rc != -EINVAL) fprintf(stderr, "  accepted '%s'\n", bad[i]);
  }
}

// Send from a plain socket and wait (running the loop) for the answer; returns its length or -1.
static ssize_t ask(lp_loop *loop, int fd, const void *p, size_t n, char *reply, size_t cap) {
  CHECK(send(fd, p, n, 0) == (ssize_t)n);
  double until = now() + 5;
  while (now() < until) {
    lp_loop_run_once(loop, false);
    ssize_t r = recv(fd, reply, cap, MSG_DONTWAIT);
    if (r >= 0) return r;
    usleep(1000);
  }
  return -1;
}

static void test_echo(void) {
  lp_loop *loop = lp_loop_new(0);
  lp_sockaddr local;
  lp_addr_parse("127.0.0.1", 0, &local);
  lp_channel_config cfg;
  lp_channel_config_default(&cfg);
  lp_udp_channel_defaults(&cfg);
  lp_udp_config ucfg;
  lp_udp_config_default(&ucfg);
  ucfg.max_datagram = 100;
  lp_channel *ch;
  const char *step;
  CHECK(lp_udp_open(loop, &local, NULL, false, &cfg, &ucfg, &ch, &step) == 0);
  echo_state st = {0};
  CHECK(lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_ctx_new(&ch->pipeline, &echo_ops, &st, "echo")) == 0);
  lp_channel_register(ch);
  CHECK(lp_channel_is_active(ch));
  char desc[160], expect[160];
  lp_sockaddr bound;
  lp_chaddr_get(&ch->local, &bound);
  lp_channel_describe(ch, desc, sizeof desc);
  snprintf(expect, sizeof expect, "#%llu udp 127.0.0.1:%d", (unsigned long long)ch->id, lp_addr_port(&bound));
  CHECK(strcmp(desc, expect) == 0);

  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0 && connect(fd, &bound.sa, lp_addr_len(&bound)) == 0);
  char reply[256];
  CHECK(ask(loop, fd, "hello", 5, reply, sizeof reply) == 5 && memcmp(reply, "hello", 5) == 0);
  CHECK(ask(loop, fd, "", 0, reply, sizeof reply) == 0); // an empty datagram is one too
  CHECK(st.reads == 2 && st.completes == 2);

  // Over maxDatagramSize: dropped and reported; the channel goes on.
  char big[101];
  memset(big, 'b', sizeof big);
  lp_sockaddr me;
  char mine[64];
  lp_sock_local(fd, &me);
  CHECK(send(fd, big, sizeof big, 0) == (ssize_t)sizeof big);
  for (double until = now() + 5; st.errors == 0 && now() < until; usleep(1000)) lp_loop_run_once(loop, false);
  CHECK(st.errors == 1 && st.reads == 2); // reported, not delivered
  snprintf(expect, sizeof expect, "TooLongFrame: a datagram of 101 bytes from %s exceeds maxDatagramSize 100: dropped",
           lp_addr_format(&me, mine, sizeof mine));
  CHECK(strcmp(st.error, expect) == 0);
  CHECK(st.limit == 100 && st.length == 101);
  CHECK(ask(loop, fd, big, 100, reply, sizeof reply) == 100);
  CHECK(lp_channel_is_active(ch));

  // A plain Buffer on an unconnected channel has nowhere to go; over the limit is refused.
  lp_future *f = lp_future_new(loop);
  lp_msg m = lp_msg_buf(lp_buf_from(loop->pool, "x", 1));
  lp_channel_write(ch, &m, f);
  CHECK(lp_future_done(f) && f->cause && f->cause->code == -EDESTADDRREQ);
  lp_future_unref(f);
  f = lp_future_new(loop);
  m = lp_msg_dgram(lp_dgram_new(lp_buf_from(loop->pool, big, sizeof big), &me));
  lp_channel_write(ch, &m, f);
  CHECK(lp_future_done(f) && f->cause &&
        strcmp(f->cause->message, "EMSGSIZE: Message too long (a datagram of 101 bytes, over maxDatagramSize 100)") == 0);
  lp_future_unref(f);

  // The port is taken now.
  lp_channel *again;
  CHECK(lp_udp_open(loop, &bound, NULL, false, &cfg, &ucfg, &again, &step) == -EADDRINUSE);
  CHECK(strcmp(step, "bind") == 0 && again == NULL);

  close(fd);
  lp_channel_close_now(ch);
  lp_loop_run_tasks(loop);
  lp_loop_free(loop);
}

int main(void) {
  test_parse();
  test_echo();
  return check_report();
}
