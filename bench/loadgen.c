// loadgen.c: the load generator of the benchmarks. One thread, epoll, loopback
// only. Every byte that comes back is checked against what was sent.
//
//   loadgen -p PORT [-m pingpong|stream|idle|short|flood] [-c CONNS] [-s SIZE]
//           [-d SECONDS] [-w WARMUP] [-n COUNT] [-i INFLIGHT] [-P SERVER_PID] [-W] [-u]
//
//   -W        WebSocket frames (pingpong and stream; the server speaks
//             WebSocket from the first byte, no handshake): each chunk is one
//             masked text frame of SIZE ASCII bytes (SIZE < 65536), and what
//             comes back must be the same message as an unmasked frame.
//
//   pingpong  each connection sends SIZE bytes, waits for all SIZE back,
//             repeats: round trips/s, p50/p99 latency from recorded samples
//   stream    each connection keeps writing SIZE-byte chunks with at most
//             INFLIGHT bytes (default max(256 KiB, 4 chunks)) sent but not
//             yet echoed: MB/s echoed (a "round trip" is one chunk fully
//             echoed; its latency is from queueing the chunk to its echo)
//   short     short connections: each of CONNS slots connects, sends SIZE
//             bytes, waits for them back, closes, and connects again: a
//             "round trip" is one whole connection (accepts/s); its latency
//             is from the connect to the echo
//   idle      open CONNS connections, echo SIZE bytes once on each (so the
//             server has surely accepted it; -s 0: none), print
//             `connected=N` and keep them idle until killed or -d passes;
//             any byte or EOF from the server then is an error
//
//   -u        UDP (bench/udp.sh): CONNS sockets connected to 127.0.0.1:PORT,
//             each datagram SIZE bytes (8..65507), its echo checked whole:
//     -m pingpong  INFLIGHT datagrams outstanding per socket (-i, default
//                  16); each echo sends the next; a socket that hears nothing
//                  for 0.2 s counts what is outstanding as lost and sends a
//                  fresh window. Echoes/s (rt_per_s) and latency.
//     -m flood     one way as fast as the kernel takes them: each socket
//                  sends INFLIGHT datagrams per turn (default 64) whatever
//                  comes back, and reads the echoes between turns; rt_per_s
//                  counts the echoes, i.e. what the server received and
//                  answered; sent= and lost= say what was offered.
//
// A run connects everything first, then warms up for WARMUP seconds (not
// measured), then measures for SECONDS; with -n it instead stops after COUNT
// round trips in total (no warm-up unless -w is given; -d is then a time
// limit, default 60 s). Afterwards it lets what is in flight come back,
// checks it, and closes. With -P the server's CPU time (utime+stime from
// /proc/PID/stat, all its threads) over the measured window is reported too.
//
// Output, one line on stdout:
//   mode=pingpong conns=50 size=64 secs=5.000 rts=... rt_per_s=... mb_per_s=...
//   p50_us=... p99_us=... srv_cpu_s=... srv_cpu_us_per_rt=... srv_util=... lg_util=...
// (MB = 10^6 bytes echoed back; srv_util/lg_util: CPU seconds per wall second of
// the server / this process; srv_* are -1 without -P.)
// Exit status: 0 ok, 1 any connection error, echo mismatch or time limit, 2 usage.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
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

#define MAX_CONNS 60000
#define MAX_SIZE (1 << 20)        // largest message / chunk
#define PATTERN_PERIOD 65521      // prime, so chunks of any size shift across it
#define RBUF (64 * 1024)          // one read() at most
#define READS_PER_EVENT 16        // reads per readiness event, at most
#define WRITES_PER_EVENT 64       // write() calls per flush, at most
#define MAX_SAMPLES (1u << 22)    // latency samples kept (reservoir beyond)
#define CONNECTS_IN_FLIGHT 64     // pending connects (and idle-mode first echoes)
#define CONNECT_TIMEOUT_S 20.0
#define DRAIN_TIMEOUT_S 10.0
#define EVENTS 256
#define STREAM_INFLIGHT (256 * 1024) // default -i for stream: a socket buffer's worth

enum mode { PINGPONG, STREAM, IDLE, SHORT, FLOOD };
enum state { UNUSED, CONNECTING, READY, DONE };

typedef struct conn {
  int fd;
  int idx;
  enum state state;
  uint32_t events;     // the epoll mask now registered
  uint64_t base;       // offset of this connection's stream in the pattern
  uint64_t goal;       // bytes that should be written
  uint64_t sent;       // bytes written
  uint64_t recvd;      // bytes read back and verified
  uint64_t igoal;      // bytes that should come back (goal, unless -W)
  double *stamps;      // send time of each chunk in flight (ring), chunk = SIZE bytes
  uint32_t ring_cap, ring_head, ring_len;
  double t_connect;    // short: when this connection's connect started
} conn;

static struct {
  enum mode mode;
  int port, conns;
  size_t size, inflight;
  double secs, warmup;
  long long count; // -n; 0: by duration
  int srv_pid;
} opt = {PINGPONG, -1, 1, 64, 0, 5.0, 1.0, 0, 0};

static unsigned char *pattern; // PATTERN_PERIOD + max(RBUF, MAX_SIZE) bytes
// Bytes per chunk out and back: SIZE, or with -W one frame each way (every
// chunk the same frame: ws_out sent, ws_in expected).
static size_t osz, isz;
static int ws;
static unsigned char *ws_out, *ws_in;
static unsigned char rbuf[RBUF];
static conn *conns;
static int epfd;

// Measurement state.
static int running;               // short: past the first connects, connections cycle
static int measuring;             // samples and counters only while set
static int stopping;              // no new chunks once set
static long long issued;          // chunks started (for -n)
static long long rts;             // chunks fully echoed while measuring
static uint64_t bytes_echoed;     // while measuring
static uint32_t *samples;         // latencies in ns
static uint32_t nsamples;
static uint64_t seen_samples;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t xorshift(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void record(double lat_s) {
  double ns = lat_s * 1e9;
  uint32_t v = ns < 0 ? 0 : ns > 4e9 ? 4000000000u : (uint32_t)ns;
  seen_samples++;
  if (nsamples < MAX_SAMPLES) {
    samples[nsamples++] = v;
  } else {
    uint64_t j = xorshift() % seen_samples; // reservoir: every sample equally likely kept
    if (j < MAX_SAMPLES) samples[j] = v;
  }
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static double percentile_us(double q) {
  if (nsamples == 0) return 0;
  size_t i = (size_t)(q * (double)(nsamples - 1) + 0.5);
  return samples[i] / 1000.0;
}

static void set_events(conn *c, uint32_t ev) {
  if (c->events == ev) return;
  struct epoll_event e = {.events = ev, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) die("conn %d: epoll_ctl: %s", c->idx, strerror(errno));
  c->events = ev;
}

static void start_connect(conn *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s (raise ulimit -n?)", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
    die("conn %d: connect to 127.0.0.1:%d: %s", c->idx, opt.port, strerror(errno));
  c->fd = fd;
  c->state = CONNECTING;
  c->t_connect = now_s();
  c->events = EPOLLOUT;
  struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl: %s", strerror(errno));
}

// Queue one more chunk of SIZE bytes at time t.
static void add_chunk(conn *c, double t) {
  c->goal += osz;
  c->igoal += isz;
  c->stamps[(c->ring_head + c->ring_len) % c->ring_cap] = opt.mode == SHORT ? c->t_connect : t;
  c->ring_len++;
  issued++;
}

// Whether the connection may start another chunk now.
static int wants_chunk(const conn *c) {
  if (stopping || opt.size == 0) return 0;
  if (opt.count && issued >= opt.count) return 0;
  switch (opt.mode) {
  case PINGPONG: return c->recvd == c->igoal;
  case STREAM: return c->igoal - c->recvd + isz <= opt.inflight;
  case IDLE: return c->goal == 0; // one echo, then idle
  case SHORT: return c->goal == 0 && c->state == READY; // one exchange per connection
  case FLOOD: return 0;              // UDP's (udp_main)
  }
  return 0;
}

// Writes toward the goal until done, the socket is full or the cap is hit.
static void flush_out(conn *c) {
  for (int i = 0; i < WRITES_PER_EVENT && c->sent < c->goal; i++) {
    uint64_t want = c->goal - c->sent;
    size_t len = want > MAX_SIZE ? MAX_SIZE : (size_t)want;
    const unsigned char *p = pattern + (c->base + c->sent) % PATTERN_PERIOD;
    if (ws) {
      p = ws_out + c->sent % osz;
      if (len > osz - c->sent % osz) len = osz - c->sent % osz;
    }
    ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
    if (n > 0) {
      c->sent += (uint64_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      die("conn %d: write: %s", c->idx, n < 0 ? strerror(errno) : "wrote nothing");
    }
  }
  set_events(c, c->sent < c->goal ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

// short: the exchange is done: close, and connect again unless stopping.
static void cycle(conn *c) {
  close(c->fd); // also leaves the epoll set
  c->fd = -1;
  c->goal = c->sent = c->recvd = c->igoal = 0;
  c->ring_head = c->ring_len = 0;
  c->events = 0;
  c->state = DONE;
  if (!stopping) start_connect(c);
}

static void fill(conn *c, double t) {
  while (wants_chunk(c)) add_chunk(c, t);
  flush_out(c);
}

static void on_readable(conn *c) {
  for (int i = 0; i < READS_PER_EVENT; i++) {
    ssize_t n = recv(c->fd, rbuf, RBUF, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      die("conn %d: read: %s", c->idx, strerror(errno));
    }
    if (n == 0) die("conn %d: closed by the server after %llu of %llu bytes echoed", c->idx,
                    (unsigned long long)c->recvd, (unsigned long long)c->sent);
    if (c->recvd + (uint64_t)n > c->igoal)
      die("conn %d: the server sent %llu bytes more than it was sent", c->idx,
          (unsigned long long)(c->recvd + (uint64_t)n - c->igoal));
    if (ws) { // compare frame by frame (every echoed frame is ws_in)
      for (size_t k = 0; k < (size_t)n;) {
        size_t at = (c->recvd + k) % isz, len = isz - at < (size_t)n - k ? isz - at : (size_t)n - k;
        if (memcmp(rbuf + k, ws_in + at, len) != 0)
          die("conn %d: echo mismatch in the frame at byte %llu of the stream", c->idx, (unsigned long long)(c->recvd + k));
        k += len;
      }
    }
    const unsigned char *want = pattern + (c->base + c->recvd) % PATTERN_PERIOD;
    if (!ws && memcmp(rbuf, want, (size_t)n) != 0) {
      size_t k = 0;
      while (rbuf[k] == want[k]) k++;
      die("conn %d: echo mismatch at byte %llu of the stream (got 0x%02x, sent 0x%02x)", c->idx,
          (unsigned long long)(c->recvd + k), rbuf[k], want[k]);
    }
    c->recvd += (uint64_t)n;
    if (measuring) bytes_echoed += (uint64_t)n;
    // Chunks completed by these bytes.
    double t = 0;
    while (c->ring_len && c->recvd >= c->igoal - (uint64_t)(c->ring_len - 1) * isz) {
      if (t == 0) t = now_s();
      if (measuring) {
        record(t - c->stamps[c->ring_head]);
        rts++;
      }
      c->ring_head = (c->ring_head + 1) % c->ring_cap;
      c->ring_len--;
    }
    if (opt.mode == SHORT && c->recvd == c->igoal) {
      cycle(c);
      return;
    }
    if (t != 0) fill(c, t);
    if ((size_t)n < RBUF) break; // drained, most likely: skip the EAGAIN read
  }
}

static void on_connected(conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err) die("conn %d: connect to 127.0.0.1:%d: %s", c->idx, opt.port, strerror(err));
  c->state = READY;
  set_events(c, EPOLLIN);
}

// Runs the loop until done() or the deadline; dies past the deadline when fatal.
static void run_until(int (*done)(void), double deadline, const char *what) {
  struct epoll_event evs[EVENTS];
  for (;;) {
    if (done()) return;
    double t = now_s();
    if (t >= deadline) {
      if (what) die("%s", what);
      return;
    }
    double wait_ms = (deadline - t) * 1000.0;
    int timeout = wait_ms > 100 ? 100 : (int)wait_ms + 1;
    int n = epoll_wait(epfd, evs, EVENTS, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      uint32_t ev = evs[i].events;
      if (c->state == CONNECTING) {
        on_connected(c);
        if (opt.mode == SHORT && running) fill(c, now_s());
        if (opt.mode != IDLE) continue;
        fill(c, now_s());
        continue;
      }
      if (opt.mode == IDLE && c->state == DONE) {
        die("conn %d: %s while idle", c->idx, (ev & (EPOLLRDHUP | EPOLLHUP)) ? "closed by the server" : "data from the server");
      }
      if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
      if (ev & EPOLLOUT) flush_out(c);
    }
  }
}

// ---- phases ------------------------------------------------------------------
static int next_to_connect, nready;

static int connect_done(void) {
  // Keep a bounded number of connects (and, idle mode, first echoes) pending.
  int pending = 0;
  nready = 0;
  for (int i = 0; i < next_to_connect; i++) {
    conn *c = &conns[i];
    int ready = c->state == READY && (opt.mode != IDLE || c->recvd == c->goal);
    if (ready && opt.mode == IDLE) {
      c->state = DONE;
      set_events(c, EPOLLIN | EPOLLRDHUP);
    }
    if (ready || c->state == DONE) nready++;
    else pending++;
  }
  while (pending < CONNECTS_IN_FLIGHT && next_to_connect < opt.conns) {
    start_connect(&conns[next_to_connect++]);
    pending++;
  }
  return nready == opt.conns;
}

static int never(void) { return 0; }

static int count_done(void) { return opt.count && rts >= opt.count; }

static int drained(void) {
  for (int i = 0; i < opt.conns; i++)
    if (conns[i].recvd != conns[i].igoal) return 0;
  return 1;
}

// ---- UDP (-u) -----------------------------------------------------------------
// A datagram: its sequence number on its socket (8 bytes, host order) and then
// the pattern from an offset the number picks, so every echo is checked whole.
#define U_RING 4096          // send times kept per socket, by sequence number
#define U_LOSS_TIMEOUT 0.2   // pingpong: silence after which the outstanding are lost
#define U_READS 64           // reads per readiness event, at most

typedef struct uconn {
  int fd;
  uint64_t seq;      // datagrams sent
  uint64_t out;      // outstanding (pingpong)
  double last;       // last echo (or window start)
  double stamp[U_RING];
  uint64_t stamp_seq[U_RING]; // which datagram stamp[] is for; UINT64_MAX once echoed
} uconn;

static uconn *uconns;
static long long u_sent, u_lost;
static unsigned char ubuf[65536];

static const unsigned char *u_payload(uint64_t seq) { return pattern + (seq * 7919) % PATTERN_PERIOD; }

// Send one datagram; 0, or -1 when the kernel takes none now.
static int u_send(uconn *u, double t) {
  memcpy(ubuf, &u->seq, 8);
  memcpy(ubuf + 8, u_payload(u->seq), opt.size - 8);
  ssize_t n;
  do n = send(u->fd, ubuf, opt.size, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return -1;
    die("udp %d: send: %s", (int)(u - uconns), strerror(errno));
  }
  u->stamp[u->seq % U_RING] = t;
  u->stamp_seq[u->seq % U_RING] = u->seq;
  u->seq++;
  u->out++;
  if (measuring) u_sent++;
  return 0;
}

static void u_read(uconn *u) {
  for (int i = 0; i < U_READS; i++) {
    ssize_t n = recv(u->fd, rbuf, RBUF, MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      die("udp %d: receive: %s", (int)(u - uconns), strerror(errno)); // ECONNREFUSED: no server
    }
    uint64_t seq;
    if ((size_t)n != opt.size) die("udp %d: an echo of %zd bytes, sent %zu", (int)(u - uconns), n, opt.size);
    memcpy(&seq, rbuf, 8);
    if (seq >= u->seq || memcmp(rbuf + 8, u_payload(seq), opt.size - 8) != 0)
      die("udp %d: echo mismatch (datagram %llu)", (int)(u - uconns), (unsigned long long)seq);
    double t = now_s();
    uint64_t *slot = &u->stamp_seq[seq % U_RING];
    if (*slot == seq) { // else echoed already (a duplicate) or too old to time
      *slot = UINT64_MAX;
      if (measuring) record(t - u->stamp[seq % U_RING]);
    }
    if (measuring) {
      rts++;
      bytes_echoed += (uint64_t)n;
    }
    if (u->out) u->out--;
    u->last = t;
    if (opt.mode == PINGPONG && !stopping) u_send(u, t);
  }
}

static void u_refill(uconn *u, double t) {
  while (u->out < opt.inflight && !stopping)
    if (u_send(u, t) < 0) break;
  u->last = t;
}

// Run until deadline; in pingpong, until everything outstanding came back when stopping.
static void u_run(double deadline) {
  struct epoll_event evs[EVENTS];
  for (;;) {
    double t = now_s();
    if (t >= deadline) return;
    if (opt.mode == FLOOD && !stopping) {
      for (int i = 0; i < opt.conns; i++)
        for (size_t k = 0; k < opt.inflight; k++)
          if (u_send(&uconns[i], t) < 0) break;
    }
    int timeout = opt.mode == FLOOD && !stopping ? 0 : 50;
    int n = epoll_wait(epfd, evs, EVENTS, timeout);
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) u_read(evs[i].data.ptr);
    if (opt.mode != PINGPONG) continue;
    t = now_s();
    int outstanding = 0;
    for (int i = 0; i < opt.conns; i++) {
      uconn *u = &uconns[i];
      if (u->out && t - u->last > U_LOSS_TIMEOUT) {
        if (measuring) u_lost += (long long)u->out;
        u->out = 0;
        u_refill(u, t);
      }
      outstanding += u->out > 0;
    }
    if (stopping && !outstanding) return;
  }
}

static int udp_main(void) {
  if (opt.mode != PINGPONG && opt.mode != FLOOD) {
    fprintf(stderr, "loadgen: -u takes -m pingpong or flood\n");
    return 2;
  }
  if (opt.size < 8 || opt.size > 65507) {
    fprintf(stderr, "loadgen: -u needs -s from 8 to 65507\n");
    return 2;
  }
  if (opt.inflight == 0) opt.inflight = opt.mode == FLOOD ? 64 : 16;
  uconns = calloc((size_t)opt.conns, sizeof *uconns);
  if (!uconns) die("out of memory");
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  for (int i = 0; i < opt.conns; i++) {
    uconn *u = &uconns[i];
    u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u->fd < 0 || connect(u->fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("udp socket: %s", strerror(errno));
    for (int k = 0; k < U_RING; k++) u->stamp_seq[k] = UINT64_MAX;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = u};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, u->fd, &e) < 0) die("epoll_ctl: %s", strerror(errno));
  }
  double t = now_s();
  if (opt.mode == PINGPONG)
    for (int i = 0; i < opt.conns; i++) u_refill(&uconns[i], t);
  if (opt.warmup > 0) u_run(t + opt.warmup);
  measuring = 1;
  double m0 = now_s(), srv0 = opt.srv_pid ? proc_cpu_s(opt.srv_pid) : -1, self0 = self_cpu_s();
  if (opt.srv_pid && srv0 < 0) die("cannot read /proc/%d/stat", opt.srv_pid);
  u_run(m0 + opt.secs);
  double m1 = now_s(), srv1 = opt.srv_pid ? proc_cpu_s(opt.srv_pid) : -1, self1 = self_cpu_s();
  measuring = 0;
  long long m_rts = rts;
  stopping = 1;
  u_run(m1 + 1.0); // what is still on its way (flood: echoes of the last turns)
  double secs = m1 - m0;
  if (m_rts == 0) die("no echo in %.3f s", secs);
  if (opt.mode == FLOOD) u_lost = u_sent - m_rts > 0 ? u_sent - m_rts : 0;
  qsort(samples, nsamples, sizeof *samples, cmp_u32);
  double srv = opt.srv_pid ? srv1 - srv0 : -1;
  printf("mode=udp-%s conns=%d size=%zu window=%zu secs=%.3f rts=%lld rt_per_s=%.0f mb_per_s=%.2f p50_us=%.1f "
         "p99_us=%.1f sent=%lld lost=%lld srv_cpu_s=%.3f srv_cpu_us_per_rt=%.3f srv_util=%.2f lg_util=%.2f\n",
         opt.mode == FLOOD ? "flood" : "pingpong", opt.conns, opt.size, opt.inflight, secs, m_rts,
         (double)m_rts / secs, (double)m_rts * (double)opt.size / secs / 1e6, percentile_us(0.50),
         percentile_us(0.99), u_sent, u_lost, srv, opt.srv_pid ? srv * 1e6 / (double)m_rts : -1,
         opt.srv_pid ? srv / secs : -1, (self1 - self0) / secs);
  for (int i = 0; i < opt.conns; i++) close(uconns[i].fd);
  free(uconns);
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: loadgen -p PORT [-m pingpong|stream|idle|short|flood] [-c CONNS] [-s SIZE] [-d SECONDS]\n"
                  "               [-w WARMUP_SECONDS] [-n COUNT] [-i INFLIGHT] [-P SERVER_PID] [-W] [-u]\n");
  return 2;
}

static int num(const char *s, double min, double max, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  int o;
  double v;
  int have_secs = 0, have_warmup = 0, udp = 0;
  while ((o = getopt(argc, argv, "p:m:c:s:d:w:n:i:P:Wu")) != -1) {
    switch (o) {
    case 'p': if (num(optarg, 1, 65535, &v)) return usage(); opt.port = (int)v; break;
    case 'm':
      if (!strcmp(optarg, "pingpong")) opt.mode = PINGPONG;
      else if (!strcmp(optarg, "stream")) opt.mode = STREAM;
      else if (!strcmp(optarg, "idle")) opt.mode = IDLE;
      else if (!strcmp(optarg, "short")) opt.mode = SHORT;
      else if (!strcmp(optarg, "flood")) opt.mode = FLOOD;
      else return usage();
      break;
    case 'c': if (num(optarg, 1, MAX_CONNS, &v)) return usage(); opt.conns = (int)v; break;
    case 's': if (num(optarg, 0, MAX_SIZE, &v)) return usage(); opt.size = (size_t)v; break;
    case 'd': if (num(optarg, 0.01, 86400, &v)) return usage(); opt.secs = v; have_secs = 1; break;
    case 'w': if (num(optarg, 0, 3600, &v)) return usage(); opt.warmup = v; have_warmup = 1; break;
    case 'n': if (num(optarg, 1, 1e15, &v)) return usage(); opt.count = (long long)v; break;
    case 'i': if (num(optarg, 1, 1 << 30, &v)) return usage(); opt.inflight = (size_t)v; break;
    case 'P': if (num(optarg, 1, 1 << 30, &v)) return usage(); opt.srv_pid = (int)v; break;
    case 'W': ws = 1; break;
    case 'u': udp = 1; break;
    default: return usage();
    }
  }
  if (optind != argc || opt.port < 0) return usage();
  if (udp || opt.mode == FLOOD) {
    if (!udp || ws || opt.count) {
      fprintf(stderr, "loadgen: flood is UDP's (-u); -u takes neither -W nor -n\n");
      return 2;
    }
    size_t plen = PATTERN_PERIOD + 65536;
    pattern = malloc(plen);
    samples = malloc(sizeof *samples * MAX_SAMPLES);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!pattern || !samples || epfd < 0) die("out of memory");
    for (size_t i = 0; i < PATTERN_PERIOD; i++) pattern[i] = (unsigned char)(xorshift() >> 24);
    for (size_t i = PATTERN_PERIOD; i < plen; i++) pattern[i] = pattern[i - PATTERN_PERIOD];
    int rc = udp_main();
    free(samples);
    free(pattern);
    return rc;
  }
  if (opt.size == 0 && opt.mode != IDLE) {
    fprintf(stderr, "loadgen: -s 0 only makes sense with -m idle\n");
    return 2;
  }
  if (opt.count && opt.mode == IDLE) {
    fprintf(stderr, "loadgen: -n does not apply to -m idle\n");
    return 2;
  }
  if (opt.count) {
    if (have_warmup && opt.warmup > 0) {
      fprintf(stderr, "loadgen: -n counts every round trip from the start: no warm-up (-w 0)\n");
      return 2;
    }
    opt.warmup = 0;
    if (!have_secs) opt.secs = 60;
  }
  if (opt.mode == SHORT && (ws || opt.count)) {
    fprintf(stderr, "loadgen: -m short takes neither -W nor -n\n");
    return 2;
  }
  if (ws && (opt.mode == IDLE || opt.size >= 65536)) {
    fprintf(stderr, "loadgen: -W takes -m pingpong or stream and -s below 65536\n");
    return 2;
  }
  if (opt.mode == IDLE && !have_secs) opt.secs = 86400; // until killed
  if (opt.inflight == 0) opt.inflight = opt.mode != STREAM ? opt.size : 4 * opt.size > STREAM_INFLIGHT ? 4 * opt.size : STREAM_INFLIGHT;
  if (opt.inflight < opt.size) {
    fprintf(stderr, "loadgen: -i must be at least the chunk size\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  // Enough descriptors for every connection, if the hard limit allows.
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.conns + 32) {
    rl.rlim_cur = rl.rlim_max < (rlim_t)opt.conns + 32 ? rl.rlim_max : (rlim_t)opt.conns + 32;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  size_t plen = PATTERN_PERIOD + (RBUF > MAX_SIZE ? RBUF : MAX_SIZE);
  pattern = malloc(plen);
  samples = malloc(sizeof *samples * MAX_SAMPLES);
  conns = calloc((size_t)opt.conns, sizeof *conns);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (!pattern || !samples || !conns || epfd < 0) die("out of memory");
  for (size_t i = 0; i < PATTERN_PERIOD; i++) pattern[i] = (unsigned char)(xorshift() >> 24);
  for (size_t i = PATTERN_PERIOD; i < plen; i++) pattern[i] = pattern[i - PATTERN_PERIOD]; // any window is contiguous
  osz = isz = opt.size;
  if (ws) { // one masked text frame out, the same message unmasked back
    size_t h = opt.size < 126 ? 2 : 4;
    osz = h + 4 + opt.size;
    isz = h + opt.size;
    ws_out = malloc(osz);
    ws_in = malloc(isz);
    if (!ws_out || !ws_in) die("out of memory");
    ws_out[0] = ws_in[0] = 0x81;
    if (h == 2) {
      ws_out[1] = (unsigned char)(0x80 | opt.size);
      ws_in[1] = (unsigned char)opt.size;
    } else {
      ws_out[1] = 0x80 | 126;
      ws_in[1] = 126;
      ws_out[2] = ws_in[2] = (unsigned char)(opt.size >> 8);
      ws_out[3] = ws_in[3] = (unsigned char)opt.size;
    }
    unsigned char key[4];
    for (int i = 0; i < 4; i++) key[i] = ws_out[h + i] = (unsigned char)(xorshift() >> 24);
    for (size_t i = 0; i < opt.size; i++) {
      unsigned char b = (unsigned char)('a' + pattern[i] % 26);
      ws_in[h + i] = b;
      ws_out[h + 4 + i] = b ^ key[i % 4];
    }
  }
  uint32_t ring = opt.size ? (uint32_t)(opt.inflight / opt.size + 2) : 1; // enough for -W's larger chunks too
  for (int i = 0; i < opt.conns; i++) {
    conns[i].idx = i;
    conns[i].fd = -1;
    conns[i].base = (uint64_t)i * 7919 % PATTERN_PERIOD;
    conns[i].ring_cap = ring;
    conns[i].stamps = malloc(sizeof(double) * ring);
    if (!conns[i].stamps) die("out of memory");
  }

  double t0 = now_s();
  run_until(connect_done, t0 + CONNECT_TIMEOUT_S, "timed out connecting (is the server listening?)");
  if (opt.mode == IDLE) {
    printf("connected=%d\n", opt.conns);
    fflush(stdout);
    run_until(never, now_s() + opt.secs, NULL);
    printf("mode=idle conns=%d size=%zu secs=%.3f\n", opt.conns, opt.size, opt.secs);
    return 0;
  }

  running = 1;
  if (opt.warmup > 0) {
    double start = now_s();
    for (int i = 0; i < opt.conns; i++) fill(&conns[i], start);
    run_until(never, start + opt.warmup, NULL);
  }
  // The measured window: chunks already in flight count when they complete.
  measuring = 1;
  double m0 = now_s(), srv0 = opt.srv_pid ? proc_cpu_s(opt.srv_pid) : -1, self0 = self_cpu_s();
  if (opt.srv_pid && srv0 < 0) die("cannot read /proc/%d/stat", opt.srv_pid);
  if (opt.warmup <= 0)
    for (int i = 0; i < opt.conns; i++) fill(&conns[i], m0);
  if (opt.count) {
    run_until(count_done, m0 + opt.secs, "time limit reached before -n round trips completed");
  } else {
    run_until(never, m0 + opt.secs, NULL);
  }
  double m1 = now_s(), srv1 = opt.srv_pid ? proc_cpu_s(opt.srv_pid) : -1, self1 = self_cpu_s();
  measuring = 0;
  long long m_rts = rts;
  uint64_t m_bytes = bytes_echoed;
  stopping = 1;
  run_until(drained, m1 + DRAIN_TIMEOUT_S, "timed out waiting for the last echoes");
  for (int i = 0; i < opt.conns; i++)
    if (conns[i].fd >= 0) close(conns[i].fd);

  double secs = m1 - m0;
  if (m_rts == 0) die("no round trip completed in %.3f s", secs);
  qsort(samples, nsamples, sizeof *samples, cmp_u32);
  double srv = opt.srv_pid ? srv1 - srv0 : -1;
  printf("mode=%s conns=%d size=%zu secs=%.3f rts=%lld rt_per_s=%.0f mb_per_s=%.2f p50_us=%.1f p99_us=%.1f "
         "srv_cpu_s=%.3f srv_cpu_us_per_rt=%.3f srv_util=%.2f lg_util=%.2f\n",
         opt.mode == SHORT ? "short" : opt.mode == PINGPONG ? (ws ? "ws-pingpong" : "pingpong") : (ws ? "ws-stream" : "stream"), opt.conns, opt.size, secs, m_rts, (double)m_rts / secs,
         (double)m_bytes / secs / 1e6, percentile_us(0.50), percentile_us(0.99), srv,
         opt.srv_pid && m_rts ? srv * 1e6 / (double)m_rts : -1, opt.srv_pid ? srv / secs : -1,
         (self1 - self0) / secs);
  for (int i = 0; i < opt.conns; i++) free(conns[i].stamps);
  free(conns);
  free(samples);
  free(pattern);
  free(ws_out);
  free(ws_in);
  return 0;
}
