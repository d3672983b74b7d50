// server.h: a listening socket on a loop (the boss). Each readiness event
// accepts until EAGAIN (bounded per event) and hands every new descriptor to
// on_accept, which owns it from then on (builds a channel here, or posts it to
// a worker loop), with the peer's address as accept() returned it (read
// later, it may be gone: a peer that resets at once).
//
// A Unix socket file the server bound is removed when it closes, if the path
// still names that file (socket.h: lp_unix_owner).
//
// Out of descriptors (EMFILE/ENFILE): a spare descriptor is closed to accept
// and close the pending connection, so the backlog does not spin the loop;
// when even that fails, accepting pauses briefly. One log line per burst.
#ifndef LP_SERVER_H
#define LP_SERVER_H

#include "common.h"
#include "loop.h"
#include "socket.h"

typedef struct lp_server lp_server;
typedef void (*lp_accept_fn)(lp_server *s, int fd, const lp_sockaddr *peer);

struct lp_server {
  lp_loop *loop;
  int fd;
  int spare_fd;
  ev_io io;
  ev_timer pause;
  lp_sockaddr addr;        // the bound address (port filled in when 0 was asked)
  lp_unix_owner owner;     // the socket file to remove on close
  lp_accept_fn on_accept;
  void *ud;
  uint64_t accepted;
  uint64_t dropped;        // connections closed for want of descriptors or over the limit
  bool in_burst;           // an EMFILE burst is being logged
  bool closed;
};

// Bind and listen on addr; 0 or -errno (EADDRINUSE, EACCES, ...).
int lp_server_open(lp_server *s, lp_loop *loop, const lp_sockaddr *addr, const lp_listen_opts *o, lp_accept_fn fn,
                   void *ud);
void lp_server_start(lp_server *s); // begin accepting
void lp_server_stop(lp_server *s);  // stop accepting (the socket stays bound)
void lp_server_close(lp_server *s); // idempotent

#endif
