// pingpong.c: a ping-pong load generator for echo servers, loopback only.
//
//   pingpong -p PORT [-h 127.0.0.1] [-c 50] [-s 64] [-d 5] [-w 0.5] [-t 1]
//
// Opens CONNS connections (all connected before timing starts); each sends a
// SIZE-byte message, waits until all SIZE bytes came back, checks every byte,
// and sends the next one. The first WARMUP seconds are not counted; round
// trips finished within the next SECONDS are. Connections are split across
// THREADS threads, each with its own epoll set.
//
// Prints one line on stdout:
//   pingpong: conns=50 size=64 threads=1 secs=5.000 round_trips=N rt_per_s=R p50_us=A p99_us=B
// Exit status: 0 ok; 1 a connection failed, closed, stalled (no progress for
// STALL_S seconds) or echoed other bytes; 2 usage.
//
// Each message carries its connection number and sequence number in a
// pattern, so a reply meant for another connection or an earlier message is
// caught. Latency percentiles come from a log-scale histogram (about 3% wide
// buckets), so their resolution is a few percent.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 10000
#define MAX_THREADS 64
#define MAX_SIZE (1 << 20)
#define STALL_S 5.0
#define CONNECT_TIMEOUT_S 10.0
#define HIST_BUCKETS 512 // log scale: bucket b covers [1.03^b, 1.03^(b+1)) microseconds
#define EVENTS 128

typedef struct conn {
  int fd;
  uint32_t id, seq;
  size_t sent, got;     // bytes of the current message
  double started;       // when the current message was first sent
  uint8_t *msg;         // the current message (SIZE bytes)
} conn;

typedef struct worker {
  pthread_t thread;
  int index;
  conn *conns;
  int nconns;
  int ep;
  uint64_t rts;         // round trips finished in the measured window
  uint64_t hist[HIST_BUCKETS];
  char err[256];        // first error, empty when none
} worker;

static struct {
  struct sockaddr_storage addr;
  socklen_t addrlen;
  int conns, threads;
  size_t size;
  double secs, warmup;
  double t_start, t_end; // the measured window (monotonic seconds)
} cfg;

static atomic_bool stop_all;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(worker *w, const char *fmt, ...) {
  if (!w->err[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
  }
  atomic_store(&stop_all, true);
}

// The message of connection id, number seq: a byte pattern that differs for
// every (id, seq) pair in its first 8 bytes and keeps varying after.
static void fill(uint8_t *m, size_t size, uint32_t id, uint32_t seq) {
  uint32_t x = id * 2654435761u ^ seq * 40503u ^ 0x9e3779b9u;
  for (size_t i = 0; i < size; i++) {
    if (i < 4) m[i] = (uint8_t)(id >> (8 * i));
    else if (i < 8) m[i] = (uint8_t)(seq >> (8 * (i - 4)));
    else {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      m[i] = (uint8_t)x;
    }
  }
}

static int bucket(double us) {
  if (us < 1) return 0;
  // log(us) / log(1.03)
  int b = (int)(log(us) / 0.0295588022);
  return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

static double bucket_us(int b) { return exp((b + 0.5) * 0.0295588022); }

static int open_conn(worker *w, conn *c) {
  int fd = socket(cfg.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(w, "socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&cfg.addr, cfg.addrlen) < 0 && errno != EINPROGRESS) {
    fail(w, "connect: %s", strerror(errno));
    close(fd);
    return -1;
  }
  c->fd = fd;
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
    fail(w, "epoll_ctl: %s", strerror(errno));
    return -1;
  }
  return 0;
}

// Wait until every connection of w has connected (EPOLLOUT, SO_ERROR 0).
static int connect_all(worker *w) {
  int pending = w->nconns;
  double deadline = now() + CONNECT_TIMEOUT_S;
  struct epoll_event evs[EVENTS];
  while (pending > 0) {
    if (now() > deadline) {
      fail(w, "%d connection(s) still not established after %g s", pending, CONNECT_TIMEOUT_S);
      return -1;
    }
    int n = epoll_wait(w->ep, evs, EVENTS, 100);
    if (n < 0 && errno != EINTR) {
      fail(w, "epoll_wait: %s", strerror(errno));
      return -1;
    }
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err) {
        fail(w, "connect: %s", strerror(err));
        return -1;
      }
      struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
      epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
      pending--;
    }
  }
  return 0;
}

// Write what is left of c's message; false on a fatal error.
static bool send_rest(worker *w, conn *c) {
  while (c->sent < cfg.size) {
    ssize_t n = send(c->fd, c->msg + c->sent, cfg.size - c->sent, MSG_NOSIGNAL);
    if (n > 0) {
      c->sent += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
      epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
      return true;
    }
    fail(w, "connection %u: send: %s", c->id, strerror(errno));
    return false;
  }
  return true;
}

static bool start_message(worker *w, conn *c, double t) {
  c->seq++;
  c->sent = c->got = 0;
  c->started = t;
  fill(c->msg, cfg.size, c->id, c->seq);
  return send_rest(w, c);
}

static bool on_readable(worker *w, conn *c, uint8_t *buf) {
  for (;;) {
    size_t want = cfg.size - c->got;
    if (want == 0) break;
    ssize_t n = recv(c->fd, buf, want, 0);
    if (n == 0) {
      fail(w, "connection %u: the server closed it (message %u, %zu of %zu bytes back)", c->id, c->seq, c->got,
           cfg.size);
      return false;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      fail(w, "connection %u: recv: %s", c->id, strerror(errno));
      return false;
    }
    if (c->got + (size_t)n > c->sent) {
      fail(w, "connection %u: %zu bytes back but only %zu sent", c->id, c->got + (size_t)n, c->sent);
      return false;
    }
    if (memcmp(buf, c->msg + c->got, (size_t)n) != 0) {
      fail(w, "connection %u: message %u came back with other bytes (at offset %zu)", c->id, c->seq, c->got);
      return false;
    }
    c->got += (size_t)n;
  }
  double t = now();
  if (c->started >= cfg.t_start && t <= cfg.t_end) {
    w->rts++;
    w->hist[bucket((t - c->started) * 1e6)]++;
  }
  if (t >= cfg.t_end || atomic_load(&stop_all)) return true; // done: send nothing more
  return start_message(w, c, t);
}

static void *run_worker(void *arg) {
  worker *w = arg;
  uint8_t *buf = malloc(cfg.size);
  if (!buf) {
    fail(w, "out of memory");
    return NULL;
  }
  struct epoll_event evs[EVENTS];
  double t = now();
  for (int i = 0; i < w->nconns && !atomic_load(&stop_all); i++)
    if (!start_message(w, &w->conns[i], t)) break;
  double last_progress = now();
  while (!atomic_load(&stop_all)) {
    t = now();
    if (t >= cfg.t_end) break;
    if (t - last_progress > STALL_S) {
      fail(w, "no echo for %g s: the server stalled", STALL_S);
      break;
    }
    int n = epoll_wait(w->ep, evs, EVENTS, 100);
    if (n < 0 && errno != EINTR) {
      fail(w, "epoll_wait: %s", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (evs[i].events & EPOLLOUT) {
        if (!send_rest(w, c)) break;
        if (c->sent == cfg.size) {
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
      }
      if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        size_t before = c->got;
        uint32_t seq = c->seq;
        if (!on_readable(w, c, buf)) break;
        if (c->got != before || c->seq != seq) last_progress = now();
      }
    }
  }
  free(buf);
  return NULL;
}

static int usage(void) {
  fprintf(stderr, "usage: pingpong -p PORT [-h 127.0.0.1|::1] [-c CONNS=50] [-s SIZE=64] [-d SECONDS=5]\n"
                  "                [-w WARMUP=0.5] [-t THREADS=1]\n");
  return 2;
}

static bool parse_num(const char *s, double min, double max, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= min && v <= max)) return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  double port = -1, conns = 50, size = 64, threads = 1;
  cfg.secs = 5;
  cfg.warmup = 0.5;
  int opt;
  while ((opt = getopt(argc, argv, "h:p:c:s:d:w:t:")) != -1) {
    bool ok = true;
    switch (opt) {
    case 'h': host = optarg; break;
    case 'p': ok = parse_num(optarg, 1, 65535, &port); break;
    case 'c': ok = parse_num(optarg, 1, MAX_CONNS, &conns); break;
    case 's': ok = parse_num(optarg, 8, MAX_SIZE, &size); break;
    case 'd': ok = parse_num(optarg, 0.01, 3600, &cfg.secs); break;
    case 'w': ok = parse_num(optarg, 0, 3600, &cfg.warmup); break;
    case 't': ok = parse_num(optarg, 1, MAX_THREADS, &threads); break;
    default: return usage();
    }
    if (!ok) {
      fprintf(stderr, "pingpong: bad value '%s' for -%c\n", optarg, opt);
      return usage();
    }
  }
  if (port < 0 || optind != argc) return usage();
  memset(&cfg.addr, 0, sizeof cfg.addr);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&cfg.addr;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&cfg.addr;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127) {
      fprintf(stderr, "pingpong: %s is not a loopback address (127.0.0.0/8 or ::1 only)\n", host);
      return 2;
    }
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    cfg.addrlen = sizeof *a4;
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) {
      fprintf(stderr, "pingpong: %s is not a loopback address (127.0.0.0/8 or ::1 only)\n", host);
      return 2;
    }
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    cfg.addrlen = sizeof *a6;
  } else {
    fprintf(stderr, "pingpong: '%s' is not a numeric address\n", host);
    return 2;
  }
  cfg.conns = (int)conns;
  cfg.size = (size_t)size;
  cfg.threads = (int)threads < cfg.conns ? (int)threads : cfg.conns;

  conn *all = calloc((size_t)cfg.conns, sizeof *all);
  uint8_t *msgs = malloc((size_t)cfg.conns * cfg.size);
  worker *ws = calloc((size_t)cfg.threads, sizeof *ws);
  if (!all || !msgs || !ws) {
    fprintf(stderr, "pingpong: out of memory\n");
    return 1;
  }
  int status = 0;
  for (int t = 0; t < cfg.threads; t++) ws[t].ep = -1;
  for (int i = 0; i < cfg.conns; i++) {
    all[i].fd = -1;
    all[i].id = (uint32_t)i;
    all[i].msg = msgs + (size_t)i * cfg.size;
  }
  for (int t = 0, first = 0; t < cfg.threads; t++) {
    worker *w = &ws[t];
    w->index = t;
    w->nconns = cfg.conns / cfg.threads + (t < cfg.conns % cfg.threads);
    w->conns = all + first;
    first += w->nconns;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0) {
      fprintf(stderr, "pingpong: epoll_create1: %s\n", strerror(errno));
      return 1;
    }
    for (int i = 0; i < w->nconns; i++)
      if (open_conn(w, &w->conns[i]) != 0) break;
    if (!w->err[0]) connect_all(w);
    if (w->err[0]) {
      fprintf(stderr, "pingpong: %s\n", w->err);
      status = 1;
      break;
    }
  }
  if (!status) {
    double t0 = now();
    cfg.t_start = t0 + cfg.warmup;
    cfg.t_end = cfg.t_start + cfg.secs;
    for (int t = 0; t < cfg.threads; t++) pthread_create(&ws[t].thread, NULL, run_worker, &ws[t]);
    for (int t = 0; t < cfg.threads; t++) pthread_join(ws[t].thread, NULL);
    uint64_t rts = 0, hist[HIST_BUCKETS] = {0};
    for (int t = 0; t < cfg.threads; t++) {
      if (ws[t].err[0]) {
        fprintf(stderr, "pingpong: %s\n", ws[t].err);
        status = 1;
      }
      rts += ws[t].rts;
      for (int b = 0; b < HIST_BUCKETS; b++) hist[b] += ws[t].hist[b];
    }
    double p50 = 0, p99 = 0;
    uint64_t seen = 0;
    for (int b = 0; b < HIST_BUCKETS && rts; b++) {
      seen += hist[b];
      if (!p50 && seen * 2 >= rts) p50 = bucket_us(b);
      if (!p99 && seen * 100 >= rts * 99) p99 = bucket_us(b);
    }
    if (!status && rts == 0) {
      fprintf(stderr, "pingpong: no round trip finished in the measured window\n");
      status = 1;
    }
    printf("pingpong: conns=%d size=%zu threads=%d secs=%.3f round_trips=%llu rt_per_s=%.1f p50_us=%.0f p99_us=%.0f\n",
           cfg.conns, cfg.size, cfg.threads, cfg.secs, (unsigned long long)rts, (double)rts / cfg.secs, p50, p99);
  }
  for (int i = 0; i < cfg.conns; i++)
    if (all[i].fd >= 0) close(all[i].fd);
  for (int t = 0; t < cfg.threads; t++)
    if (ws[t].ep >= 0) close(ws[t].ep);
  free(all);
  free(msgs);
  free(ws);
  return status;
}
