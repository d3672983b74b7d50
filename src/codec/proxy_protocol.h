// proxy_protocol.h: the PROXY protocol (HAProxy's, versions 1 and 2), the
// header a load balancer puts in front of a connection to say whom it came
// from. Two layers, like codec.h:
//  - lp_proxy_decode (proxy_protocol.c): a pure step over the bytes at the
//    start of a connection, no pipeline, loop or host (the C tests and fuzz/
//    drive it directly);
//  - the handler (proxy_handler.c): a cumulating decoder (codec.c) that runs
//    that step once, sets the channel's addresses to the ones the header
//    carries, fires a user event "proxyProtocol" and removes itself, handing
//    the bytes after the header to the next handler.
#ifndef LP_PROXY_PROTOCOL_H
#define LP_PROXY_PROTOCOL_H

#include "buffer.h"
#include "error.h"
#include "pipeline.h"
#include "socket.h"

#define LP_PROXY_V1_MAX 107      // the longest v1 line, "\r\n" included (the specification's bound)
#define LP_PROXY_V2_SIG_LEN 12
#define LP_PROXY_V2_MAX_LEN 4096 // largest v2 address + TLV block accepted (the field allows 65535)

extern const uint8_t lp_proxy_v2_sig[LP_PROXY_V2_SIG_LEN];

typedef struct lp_proxy_header {
  int version;        // 1 or 2
  bool has_addresses; // false: v1 UNKNOWN, v2 LOCAL, or a family other than IPv4/IPv6 (keep the socket's)
  bool local;         // v2 LOCAL (a health check of the proxy itself)
  lp_sockaddr source, destination; // when has_addresses
  size_t length;      // bytes of the header
} lp_proxy_header;

enum { LP_PROXY_NONE = 0, LP_PROXY_OK = 1, LP_PROXY_ERROR = -1, LP_PROXY_ABSENT = -2 };
// Look at p[0..n), the first bytes of a connection. LP_PROXY_OK: a header, *h
// filled (h->length bytes of it); LP_PROXY_NONE: a header may still follow,
// give more bytes; LP_PROXY_ABSENT: these bytes cannot begin a header (err
// set, as for an error: the caller decides whether that is one);
// LP_PROXY_ERROR: a malformed header, err set (ProxyProtocolError). The
// answer depends only on the bytes, never on how they were split: a prefix of
// a valid header is always NONE, and an answer other than NONE stays the same
// for any longer input.
int lp_proxy_decode(const uint8_t *p, size_t n, lp_proxy_header *h, lp_error *err);

// The handler. optional: a connection whose first bytes cannot begin a
// header goes on without one (its addresses stay the socket's). NULL on ENOMEM.
lp_ctx *lp_proxy_ctx_new(lp_pipeline *p, const char *name, bool optional);

#endif
