// server.c: accepting connections, with descriptor exhaustion handled.
#include "server.h"

#include "error.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define ACCEPTS_PER_EVENT 64
#define EMFILE_PAUSE_S 0.1

static int open_spare(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

static void on_pause_end(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(revents);
  lp_server *s = lp_container_of(w, lp_server, pause);
  if (s->spare_fd < 0) s->spare_fd = open_spare();
  if (!s->closed) ev_io_start(ev, &s->io);
}

// Out of descriptors: shed one pending connection with the spare, or pause.
static bool shed(lp_server *s, int err) {
  if (!s->in_burst) {
    s->in_burst = true;
    lp_log(LP_LOG_WARN, 0, "accept: %s (%s); closing new connections until descriptors free up",
           lp_errno_name(err), strerror(err));
  }
  if (s->spare_fd >= 0) {
    close(s->spare_fd);
    s->spare_fd = -1;
    int fd = accept(s->fd, NULL, NULL);
    if (fd >= 0) {
      close(fd);
      s->dropped++;
      LP_STAT_ADD(&s->loop->stats, accepted, 1);
      lp_stats_closed(s->loop, LP_CLOSE_EMFILE, NULL, err == EMFILE ? NULL : lp_errno_name(err));
    }
    s->spare_fd = open_spare();
    if (fd >= 0 && s->spare_fd >= 0) return true; // try the next one
  }
  ev_io_stop(s->loop->ev, &s->io);
  ev_timer_set(&s->pause, EMFILE_PAUSE_S, 0.);
  ev_timer_start(s->loop->ev, &s->pause);
  return false;
}

static void on_acceptable(struct ev_loop *ev, ev_io *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_server *s = lp_container_of(w, lp_server, io);
  for (int i = 0; i < ACCEPTS_PER_EVENT && !s->closed; i++) {
    lp_sockaddr peer;
    int fd = lp_sock_accept(s->fd, &peer);
    if (fd >= 0) {
      if (s->in_burst) {
        lp_log(LP_LOG_INFO, 0, "accepting again; %llu connection(s) were closed for want of descriptors",
               (unsigned long long)s->dropped);
        s->in_burst = false;
      }
      s->accepted++;
      s->on_accept(s, fd, &peer);
      continue;
    }
    int err = -fd;
    if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      if (shed(s, err)) continue;
      return;
    }
    lp_log(LP_LOG_ERROR, 0, "accept: %s (%s)", lp_errno_name(err), strerror(err));
    return;
  }
}

int lp_server_open(lp_server *s, lp_loop *loop, const lp_sockaddr *addr, const lp_listen_opts *o, lp_accept_fn fn,
                   void *ud) {
  memset(s, 0, sizeof *s);
  s->fd = -1;
  s->spare_fd = -1;
  int fd = lp_sock_listen_opts(addr, o, &s->owner);
  if (fd < 0) return fd;
  s->loop = loop;
  s->fd = fd;
  s->on_accept = fn;
  s->ud = ud;
  lp_sock_local(fd, &s->addr);
  s->spare_fd = open_spare();
  ev_io_init(&s->io, on_acceptable, fd, EV_READ);
  ev_timer_init(&s->pause, on_pause_end, EMFILE_PAUSE_S, 0.);
  return 0;
}

void lp_server_start(lp_server *s) {
  if (!s->closed && s->fd >= 0 && !ev_is_active(&s->io)) ev_io_start(s->loop->ev, &s->io);
}

void lp_server_stop(lp_server *s) {
  if (s->loop && ev_is_active(&s->io)) ev_io_stop(s->loop->ev, &s->io);
  if (s->loop && ev_is_active(&s->pause)) ev_timer_stop(s->loop->ev, &s->pause);
}

void lp_server_close(lp_server *s) {
  if (s->closed) return;
  lp_server_stop(s);
  s->closed = true;
  if (s->fd >= 0) close(s->fd);
  if (s->spare_fd >= 0) close(s->spare_fd);
  lp_sock_unlink_owned(&s->addr, &s->owner);
  s->fd = s->spare_fd = -1;
}
