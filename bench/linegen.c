// linegen.c: a line load generator for the codec benchmarks (bench/lines.sh).
// One thread, epoll, 127.0.0.1 only. Each connection keeps INFLIGHT lines of
// SIZE bytes (the last one '\n') sent and not yet echoed back, and checks every
// byte that comes back against what it sent; it counts lines echoed. It works
// against any server that echoes bytes (a raw echo, or a line echo that writes
// each line back as it was).
//
//   linegen -p PORT [-c CONNS=50] [-s SIZE=64] [-i INFLIGHT=16] [-d SECONDS=5]
//           [-w WARMUP=1] [-P SERVER_PID]
//
// Output, one line: conns=50 size=64 inflight=16 secs=5.000 lines=... lines_per_s=...
//   mb_per_s=... srv_cpu_s=... srv_cpu_us_per_line=... srv_util=... lg_util=...
// (srv_* are -1 without -P: the server's utime+stime from /proc/PID/stat over
// the measured window.) Exit status: 0 ok, 1 a connection error, an echo
// mismatch or a stall, 2 usage.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proc_cpu.h"

#define MAX_CONNS 10000
#define MAX_SIZE 65536
#define RBUF (64 * 1024)
#define WBUF (64 * 1024)
#define EVENTS 256
#define STALL_S 10.0

typedef struct {
  int fd;
  uint64_t sent, recvd; // bytes
  bool want_out;
} conn;

static int size = 64, inflight = 16;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// Byte `off` of connection i's stream: lines of `size` bytes ending in '\n'.
static inline uint8_t byte_at(int i, uint64_t off) {
  uint64_t line = off / (uint64_t)size, pos = off % (uint64_t)size;
  if (pos == (uint64_t)size - 1) return '\n';
  return (uint8_t)('a' + (line * 7 + pos + (uint64_t)i) % 26);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "linegen: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static double self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void set_out(int ep, conn *c, int i, bool on) {
  if (c->want_out == on) return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)i};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
  c->want_out = on;
}

// Write until INFLIGHT lines are out or the socket is full.
static void fill(int ep, conn *c, int i) {
  static uint8_t wbuf[WBUF];
  const uint64_t window = (uint64_t)inflight * (uint64_t)size;
  while (c->sent - c->recvd < window) {
    size_t n = (size_t)(window - (c->sent - c->recvd));
    if (n > WBUF) n = WBUF;
    for (size_t k = 0; k < n; k++) wbuf[k] = byte_at(i, c->sent + k);
    ssize_t w = write(c->fd, wbuf, n);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        set_out(ep, c, i, true);
        return;
      }
      die("connection %d: write: %s", i, strerror(errno));
    }
    c->sent += (uint64_t)w;
    if ((size_t)w < n) {
      set_out(ep, c, i, true);
      return;
    }
  }
  set_out(ep, c, i, false);
}

static void drain(int ep, conn *c, int i) {
  static uint8_t rbuf[RBUF];
  for (;;) {
    ssize_t n = read(c->fd, rbuf, sizeof rbuf);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      die("connection %d: read: %s", i, strerror(errno));
    }
    if (n == 0) die("connection %d: closed by the server after %llu bytes", i, (unsigned long long)c->recvd);
    if (c->recvd + (uint64_t)n > c->sent) die("connection %d: more bytes back than sent", i);
    for (ssize_t k = 0; k < n; k++)
      if (rbuf[k] != byte_at(i, c->recvd + (uint64_t)k))
        die("echo mismatch at byte %llu of connection %d", (unsigned long long)(c->recvd + (uint64_t)k), i);
    c->recvd += (uint64_t)n;
    if (n < (ssize_t)sizeof rbuf) break;
  }
  fill(ep, c, i);
}

static uint64_t lines_of(const conn *cs, int n) {
  uint64_t t = 0;
  for (int i = 0; i < n; i++) t += cs[i].recvd / (uint64_t)size;
  return t;
}

static void usage(void) {
  fprintf(stderr, "usage: linegen -p PORT [-c CONNS] [-s SIZE] [-i INFLIGHT] [-d SECONDS] [-w WARMUP] [-P SERVER_PID]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int port = 0, nconns = 50, srv_pid = 0, opt;
  double secs = 5, warmup = 1;
  while ((opt = getopt(argc, argv, "p:c:s:i:d:w:P:")) != -1) {
    switch (opt) {
    case 'p': port = atoi(optarg); break;
    case 'c': nconns = atoi(optarg); break;
    case 's': size = atoi(optarg); break;
    case 'i': inflight = atoi(optarg); break;
    case 'd': secs = atof(optarg); break;
    case 'w': warmup = atof(optarg); break;
    case 'P': srv_pid = atoi(optarg); break;
    default: usage();
    }
  }
  if (port <= 0 || port > 65535 || nconns < 1 || nconns > MAX_CONNS || size < 2 || size > MAX_SIZE || inflight < 1 ||
      secs <= 0 || warmup < 0)
    usage();
  signal(SIGPIPE, SIG_IGN);
  conn *cs = calloc((size_t)nconns, sizeof *cs);
  int ep = epoll_create1(0);
  if (!cs || ep < 0) die("setup: %s", strerror(errno));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(0x7f000001)};
  for (int i = 0; i < nconns; i++) { // blocking connects, then non-blocking I/O
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) die("fcntl: %s", strerror(errno));
    cs[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
  }
  for (int i = 0; i < nconns; i++) fill(ep, &cs[i], i);
  struct epoll_event evs[EVENTS];
  double t0 = now(), start = t0 + warmup, end = start + secs, last_progress = t0;
  uint64_t lines0 = 0, prev = 0;
  double srv0 = -1, lg0 = 0;
  bool measuring = false;
  for (;;) {
    double t = now();
    if (!measuring && t >= start) {
      measuring = true;
      lines0 = lines_of(cs, nconns);
      srv0 = srv_pid ? proc_cpu_s(srv_pid) : -1;
      lg0 = self_cpu();
      start = t;
      end = t + secs;
    }
    if (measuring && t >= end) break;
    int n = epoll_wait(ep, evs, EVENTS, 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait: %s", strerror(errno));
    }
    for (int k = 0; k < n; k++) {
      int i = (int)evs[k].data.u32;
      if (evs[k].events & (EPOLLERR | EPOLLHUP)) die("connection %d: error or hang-up", i);
      if (evs[k].events & EPOLLIN) drain(ep, &cs[i], i);
      if (evs[k].events & EPOLLOUT) fill(ep, &cs[i], i);
    }
    uint64_t l = lines_of(cs, nconns);
    if (l != prev) prev = l, last_progress = now();
    else if (now() - last_progress > STALL_S) die("no line echoed for %.0f s", STALL_S);
  }
  double t1 = now(), wall = t1 - start;
  uint64_t lines = lines_of(cs, nconns) - lines0;
  double srv = srv_pid && srv0 >= 0 ? proc_cpu_s(srv_pid) - srv0 : -1;
  double lg = self_cpu() - lg0;
  printf("conns=%d size=%d inflight=%d secs=%.3f lines=%llu lines_per_s=%.0f mb_per_s=%.2f srv_cpu_s=%.3f "
         "srv_cpu_us_per_line=%.3f srv_util=%.2f lg_util=%.2f\n",
         nconns, size, inflight, wall, (unsigned long long)lines, (double)lines / wall,
         (double)lines * size / wall / 1e6, srv, srv >= 0 && lines ? srv * 1e6 / (double)lines : -1,
         srv >= 0 ? srv / wall : -1, lg / wall);
  for (int i = 0; i < nconns; i++) close(cs[i].fd);
  free(cs);
  return 0;
}
