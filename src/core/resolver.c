// resolver.c: name lookups on c-ares, driven by the loop's own watchers.
//
// c-ares tells us which sockets it wants watched (sock_state_cb) and when it
// next needs a call for its timeouts (ares_timeout); one ev_io per socket and
// one ev_timer per resolver do the rest. Everything runs on the loop thread;
// each loop has its own ares channel, never shared.
//
// A request is owned by the resolver. It is freed once c-ares has let go of it
// (its callback ran) and its result was delivered (a deferred task), whichever
// comes last; cancelling only stops the delivery.
#include "resolver.h"

#include "loop.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct lp_resolver {
  lp_loop *loop;
  ares_channel ares;
  ev_timer timer; // c-ares' next timeout
  lp_list socks;  // sock_watch.link
  bool destroying;
};

typedef struct sock_watch {
  ev_io io;
  lp_list link;
  lp_resolver *r;
} sock_watch;

struct lp_resolve_req {
  lp_loop *loop;
  lp_task task;
  lp_resolve_cb cb;
  void *ud;
  int port;
  bool in_ares;   // c-ares holds it: its callback has not run yet
  bool cancelled;
  bool failed;
  lp_error err;
  size_t n;
  lp_sockaddr addrs[LP_RESOLVE_MAX_ADDRS];
  char host[];
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_status;

static void lib_init(void) { lib_status = ares_library_init(ARES_LIB_INIT_ALL); }

// ---- delivery ------------------------------------------------------------

static void deliver(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  lp_resolve_req *req = lp_container_of(t, lp_resolve_req, task);
  if (!req->cancelled) req->cb(req->ud, req->failed ? &req->err : NULL, req->addrs, req->n);
  free(req);
}

static void queue(lp_resolve_req *req) {
  req->task.run = deliver;
  lp_loop_defer(req->loop, &req->task);
}

static void fail(lp_resolve_req *req, int code, const char *why) {
  req->failed = true;
  req->n = 0;
  if (code == LP_ESHUTDOWN) lp_error_named(&req->err, code, "the resolver closed before '%s' resolved", req->host);
  else lp_error_named(&req->err, code, "cannot resolve '%s': %s", req->host, why);
}

static void add_addr(lp_resolve_req *req, const struct sockaddr *sa) {
  if (req->n == LP_RESOLVE_MAX_ADDRS) return;
  lp_sockaddr a;
  memset(&a, 0, sizeof a);
  if (sa->sa_family == AF_INET) {
    memcpy(&a.in4, sa, sizeof a.in4);
    a.in4.sin_port = htons((uint16_t)req->port);
  } else if (sa->sa_family == AF_INET6) {
    memcpy(&a.in6, sa, sizeof a.in6);
    a.in6.sin6_port = htons((uint16_t)req->port);
  } else {
    return;
  }
  for (size_t i = 0; i < req->n; i++) // c-ares may list an address once per socket type
    if (memcmp(&req->addrs[i], &a, lp_addr_len(&a)) == 0) return;
  req->addrs[req->n++] = a;
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res) {
  LP_UNUSED(timeouts);
  lp_resolve_req *req = arg;
  req->in_ares = false;
  if (req->cancelled) {
    if (res) ares_freeaddrinfo(res);
    free(req);
    return;
  }
  if (status == ARES_SUCCESS && res) {
    for (struct ares_addrinfo_node *n = res->nodes; n; n = n->ai_next)
      if (n->ai_addr) add_addr(req, n->ai_addr);
    if (req->n == 0) fail(req, LP_EUNKNOWNHOST, ares_strerror(ARES_ENODATA));
  } else if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
    fail(req, LP_ESHUTDOWN, NULL);
  } else {
    fail(req, LP_EUNKNOWNHOST, ares_strerror(status));
  }
  if (res) ares_freeaddrinfo(res);
  queue(req);
}

// ---- c-ares on libev ---------------------------------------------------------

static void update_timer(lp_resolver *r) {
  if (r->destroying) return;
  struct timeval tv;
  struct timeval *next = ares_timeout(r->ares, NULL, &tv);
  ev_timer_stop(r->loop->ev, &r->timer);
  if (next) {
    ev_timer_set(&r->timer, (double)next->tv_sec + (double)next->tv_usec / 1e6, 0.);
    ev_timer_start(r->loop->ev, &r->timer);
  }
}

static void on_timer(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  lp_resolver *r = lp_container_of(w, lp_resolver, timer);
  ares_process_fd(r->ares, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  update_timer(r);
}

static void on_sock(struct ev_loop *ev, ev_io *w, int revents) {
  LP_UNUSED(ev);
  sock_watch *s = lp_container_of(w, sock_watch, io);
  lp_resolver *r = s->r; // s may be freed by the call below (sock_state_cb)
  int fd = w->fd;
  ares_process_fd(r->ares, (revents & EV_READ) ? fd : ARES_SOCKET_BAD, (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
  update_timer(r);
}

static void drop_watch(lp_resolver *r, sock_watch *s) {
  ev_io_stop(r->loop->ev, &s->io);
  lp_list_remove(&s->link);
  free(s);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable) {
  lp_resolver *r = data;
  sock_watch *s = NULL;
  for (lp_list *n = r->socks.next; n != &r->socks; n = n->next) {
    sock_watch *c = lp_container_of(n, sock_watch, link);
    if (c->io.fd == fd) {
      s = c;
      break;
    }
  }
  if (!readable && !writable) {
    if (s) drop_watch(r, s);
    return;
  }
  if (!s) {
    // Out of memory: the socket goes unwatched and its lookup ends by timeout.
    if (!(s = calloc(1, sizeof *s))) return;
    s->r = r;
    ev_io_init(&s->io, on_sock, fd, 0);
    lp_list_push(&r->socks, &s->link);
  } else {
    ev_io_stop(r->loop->ev, &s->io);
  }
  ev_io_set(&s->io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
  ev_io_start(r->loop->ev, &s->io);
}

static int resolver_new(lp_loop *loop, const lp_resolver_config *cfg, lp_resolver **out) {
  pthread_once(&lib_once, lib_init);
  if (lib_status != ARES_SUCCESS) return -ENOMEM;
  lp_resolver *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->loop = loop;
  lp_list_init(&r->socks);
  ev_timer_init(&r->timer, on_timer, 0., 0.);
  struct ares_options o;
  memset(&o, 0, sizeof o);
  int mask = ARES_OPT_SOCK_STATE_CB;
  o.sock_state_cb = on_sock_state;
  o.sock_state_cb_data = r;
  if (cfg && cfg->tcp) {
    o.flags = ARES_FLAG_USEVC;
    mask |= ARES_OPT_FLAGS;
  }
  if (cfg && cfg->timeout_ms > 0) {
    o.timeout = cfg->timeout_ms;
    mask |= ARES_OPT_TIMEOUTMS;
  }
  if (cfg && cfg->tries > 0) {
    o.tries = cfg->tries;
    mask |= ARES_OPT_TRIES;
  }
  int rc = ares_init_options(&r->ares, &o, mask);
  if (rc != ARES_SUCCESS) {
    free(r);
    return rc == ARES_ENOMEM ? -ENOMEM : -EINVAL;
  }
  if (cfg && cfg->servers) {
    rc = *cfg->servers ? ares_set_servers_ports_csv(r->ares, cfg->servers) : ARES_EBADSTR;
    if (rc != ARES_SUCCESS) {
      ares_destroy(r->ares);
      free(r);
      return rc == ARES_ENOMEM ? -ENOMEM : -EINVAL;
    }
  }
  *out = r;
  return 0;
}

void lp_resolver_free(lp_resolver *r) {
  if (!r) return;
  r->destroying = true;
  ev_timer_stop(r->loop->ev, &r->timer);
  ares_destroy(r->ares); // pending lookups call back with ARES_EDESTRUCTION
  while (!lp_list_empty(&r->socks)) drop_watch(r, lp_container_of(r->socks.next, sock_watch, link));
  free(r);
}

// The loop's resolver goes with the loop (an lp_loop_on_free hook): lookups
// still running fail, as deferred tasks.
static void free_loop_resolver(lp_loop *loop) {
  lp_resolver_free(loop->resolver);
  loop->resolver = NULL;
}

int lp_resolver_configure(lp_loop *loop, const lp_resolver_config *cfg) {
  lp_resolver *r = NULL;
  if (cfg) {
    int rc = lp_loop_on_free(loop, LP_LOOP_CLOSING, free_loop_resolver);
    if (!rc) rc = resolver_new(loop, cfg, &r);
    if (rc) return rc;
  }
  lp_resolver *old = loop->resolver;
  loop->resolver = r; // NULL: the system's settings, made again on first use
  lp_resolver_free(old);
  return 0;
}

// ---- lookups -------------------------------------------------------------------

lp_resolve_req *lp_resolve(lp_loop *loop, const char *host, int port, lp_resolve_cb cb, void *ud) {
  size_t len = strlen(host);
  lp_resolve_req *req = calloc(1, sizeof *req + len + 1);
  if (!req) return NULL;
  memcpy(req->host, host, len + 1);
  req->loop = loop;
  req->cb = cb;
  req->ud = ud;
  req->port = port;
  lp_sockaddr a;
  if (len == 0) {
    fail(req, LP_EUNKNOWNHOST, "empty name");
  } else if (strcasecmp(host, "localhost") == 0) {
    // No lookup: IPv4 first, since servers here listen on 127.0.0.1 by default.
    lp_addr_parse("127.0.0.1", port, &req->addrs[0]);
    lp_addr_parse("::1", port, &req->addrs[1]);
    req->n = 2;
  } else if (lp_addr_parse(host, port, &a) == 0) {
    req->addrs[0] = a;
    req->n = 1;
  } else if (lp_addr_is_unix_text(host)) { // a bad Unix socket address: never a DNS name
    fail(req, LP_EUNKNOWNHOST, "not a Unix socket address (unix:/path or unix:@name, a path up to 107 bytes)");
  } else if (len > 253) {
    fail(req, LP_EUNKNOWNHOST, "name longer than 253 characters");
  } else {
    if (!loop->resolver) {
      int rc = lp_loop_on_free(loop, LP_LOOP_CLOSING, free_loop_resolver);
      if (!rc) rc = resolver_new(loop, NULL, &loop->resolver);
      if (rc) {
        free(req);
        return NULL;
      }
    }
    lp_resolver *r = loop->resolver;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    req->in_ares = true;
    ares_getaddrinfo(r->ares, host, NULL, &hints, on_addrinfo, req); // may call back at once
    update_timer(r);
    return req;
  }
  queue(req);
  return req;
}

void lp_resolve_cancel(lp_resolve_req *req) { req->cancelled = true; }
