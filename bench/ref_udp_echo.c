// ref_udp_echo.c: the reference the UDP benchmark (bench/udp.sh) compares
// lupine with: a plain, single-threaded libev UDP echo server, written the
// way a careful C programmer would write one, with nothing lupine-specific.
//
//   ref_udp_echo [-p PORT]   bind 127.0.0.1:PORT (0 = any free port) and print
//                            `listening on 127.0.0.1:PORT` on stdout
//
// One socket. Per readiness event (level triggered): recvfrom() into a 64 KiB
// buffer and sendto() the datagram straight back to its sender, up to 64
// datagrams or until EAGAIN. A datagram the kernel will not take now (EAGAIN,
// ENOBUFS) is dropped, as UDP allows; so is a truncated one. SIGTERM/SIGINT
// kill it (the default action), which is how the benchmark scripts stop it.
#include <ev.h>

#include "ref_args.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_DATAGRAM 65536
#define PER_EVENT 64 // datagrams per readiness event, at most (fairness with other watchers)

static char buf[MAX_DATAGRAM];

static void on_readable(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop, (void)revents;
  for (int i = 0; i < PER_EVENT; i++) {
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    ssize_t n = recvfrom(w->fd, buf, sizeof buf, MSG_TRUNC, (struct sockaddr *)&from, &fromlen);
    if (n < 0) {
      if (errno == EINTR) continue;
      return; // EAGAIN, or an error a later datagram may not have
    }
    if ((size_t)n > sizeof buf) continue; // truncated: drop it
    while (sendto(w->fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fromlen) < 0 && errno == EINTR) {
    }
  }
}

int main(int argc, char **argv) {
  int port = ref_port(argc, argv, "ref_udp_echo");
  if (port < 0) return 2;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t salen = sizeof sa;
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
    perror("ref_udp_echo: bind");
    return 1;
  }
  struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
  if (!loop) {
    fprintf(stderr, "ref_udp_echo: cannot create the libev loop\n");
    return 1;
  }
  ev_io io;
  ev_io_init(&io, on_readable, fd, EV_READ);
  ev_io_start(loop, &io);
  printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
  fflush(stdout);
  ev_run(loop, 0);
  return 0;
}
