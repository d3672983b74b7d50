// ref_echo.c: the reference the benchmarks compare lupine with: a plain,
// single-threaded libev echo server, written the way a careful C programmer
// would write one, with nothing lupine-specific in it.
//
//   ref_echo [-p PORT]     listen on 127.0.0.1:PORT (0 = any free port) and
//                          print `listening on 127.0.0.1:PORT` on stdout
//
// Per connection: a non-blocking socket with TCP_NODELAY and a 16 KiB read
// buffer owned by the connection. One read() per readiness event (level
// triggered, so a busy socket is simply reported again), the bytes written
// back at once; on a partial write the rest stays in the buffer, reading
// stops and the watcher waits for EV_WRITE until the buffer is empty. The
// listener accepts until EAGAIN. SIGPIPE is ignored; SIGTERM/SIGINT kill it
// (the default action), which is how the benchmark scripts stop it.
#include <ev.h>

#include "ref_args.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef READ_BUF
#define READ_BUF 16384 // the buffer per connection (-DREAD_BUF=65536 to try another)
#endif

typedef struct conn {
  ev_io io;      // first member: the watcher pointer is the connection
  size_t off;    // unwritten bytes are buf[off, len)
  size_t len;
  char buf[READ_BUF];
} conn;

static void conn_close(struct ev_loop *loop, conn *c) {
  ev_io_stop(loop, &c->io);
  close(c->io.fd);
  free(c);
}

static void watch(struct ev_loop *loop, conn *c, int events) {
  ev_io_stop(loop, &c->io);
  ev_io_modify(&c->io, events); // same fd: libev only changes the epoll mask
  ev_io_start(loop, &c->io);
}

// Writes buf[off, len); returns 0 when all was written or the socket is full
// (the rest stays), -1 on an error.
static int flush_pending(conn *c) {
  while (c->off < c->len) {
    ssize_t n = write(c->io.fd, c->buf + c->off, c->len - c->off);
    if (n > 0) {
      c->off += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
  }
  return 0;
}

static void on_conn(struct ev_loop *loop, ev_io *w, int revents) {
  conn *c = (conn *)w;
  if (revents & EV_WRITE) {
    if (flush_pending(c) < 0) {
      conn_close(loop, c);
    } else if (c->off == c->len) {
      c->off = c->len = 0;
      watch(loop, c, EV_READ);
    }
    return;
  }
  ssize_t n = read(c->io.fd, c->buf, READ_BUF);
  if (n > 0) {
    c->off = 0;
    c->len = (size_t)n;
    if (flush_pending(c) < 0) {
      conn_close(loop, c);
    } else if (c->off < c->len) {
      watch(loop, c, EV_WRITE); // stop reading until the peer takes the rest
    }
  } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    conn_close(loop, c);
  }
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  for (;;) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) perror("ref_echo: accept");
      return; // EAGAIN, or EMFILE and friends: try again on the next event
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn *c = malloc(sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->off = c->len = 0;
    ev_io_init(&c->io, on_conn, fd, EV_READ);
    ev_io_start(loop, &c->io);
  }
}

int main(int argc, char **argv) {
  int port = ref_port(argc, argv, "ref_echo");
  if (port < 0) return 2;
  signal(SIGPIPE, SIG_IGN);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t salen = sizeof sa;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, SOMAXCONN) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
    perror("ref_echo: listen");
    return 1;
  }
  struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
  if (!loop) {
    fprintf(stderr, "ref_echo: cannot create the libev loop\n");
    return 1;
  }
  ev_io accept_io;
  ev_io_init(&accept_io, on_accept, fd, EV_READ);
  ev_io_start(loop, &accept_io);
  printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
  fflush(stdout);
  ev_run(loop, 0);
  return 0;
}
