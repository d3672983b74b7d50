// resolver.h: host names to addresses without blocking the loop. Numeric
// addresses ("127.0.0.1", "::1", "[::1]") and "localhost" resolve without a
// lookup; other names go through the loop's c-ares channel, whose sockets are
// libev watchers of that loop, so a slow DNS server stalls no other channel.
//
// Results always arrive later, as a deferred task of the loop (never inside
// lp_resolve), like future notifications. Each loop has its own resolver,
// made on first use and freed with the loop (lp_loop_free).
#ifndef LP_RESOLVER_H
#define LP_RESOLVER_H

#include "common.h"
#include "error.h"
#include "socket.h"

#define LP_RESOLVE_MAX_ADDRS 8 // addresses kept per name, in the resolver's order

typedef struct lp_resolver lp_resolver;
typedef struct lp_resolve_req lp_resolve_req;

typedef struct lp_resolver_config {
  const char *servers; // "127.0.0.1:53,[::1]:5353"; NULL: the system's (/etc/resolv.conf)
  bool tcp;            // ask over TCP only
  int timeout_ms;      // per try; 0: c-ares' default
  int tries;           // 0: c-ares' default
} lp_resolver_config;

// The outcome of one lookup: err is NULL and 1 <= n <= LP_RESOLVE_MAX_ADDRS
// addresses (with the port asked for), or err says why not (UnknownHost,
// Shutdown when the resolver went away first).
typedef void (*lp_resolve_cb)(void *ud, const lp_error *err, const lp_sockaddr *addrs, size_t n);

// Start resolving host. Returns a handle good only for lp_resolve_cancel until
// cb has run (the resolver owns it), or NULL on ENOMEM (cb will not run).
lp_resolve_req *lp_resolve(lp_loop *loop, const char *host, int port, lp_resolve_cb cb, void *ud);
// cb will not run; what the request holds is freed when c-ares lets go of it.
void lp_resolve_cancel(lp_resolve_req *req);

// Replace the loop's resolver with one using cfg (NULL: the system's
// settings). Lookups still running on the old one fail with Shutdown.
// 0, -EINVAL (servers not understood) or -ENOMEM.
int lp_resolver_configure(lp_loop *loop, const lp_resolver_config *cfg);
// Lookups still running fail with Shutdown (their callbacks run as deferred tasks).
void lp_resolver_free(lp_resolver *r);

#endif
