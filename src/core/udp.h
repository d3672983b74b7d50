// udp.h: datagram channels (UDP over IPv4 and IPv6). A UDP channel is an
// lp_channel with its own transport: the pipeline, contexts, futures and the
// outbound buffer (water marks, maxPendingBytes, promises) are the TCP
// channel's; only the head's reading and writing differ. Reads take up to
// LP_UDP_BATCH datagrams per recvmmsg, flushes send up to LP_UDP_BATCH per
// sendmmsg. Each inbound datagram is one message (LP_MSG_DGRAM: its bytes and
// its sender); each write is one datagram, to the address it names (a
// LP_MSG_DGRAM, or the host's datagram value) or to the connected peer.
//
// Nothing that one datagram does closes the channel: a datagram over
// maxDatagramSize (inbound: dropped and reported as TooLongFrame; outbound:
// its promise fails with EMSGSIZE), an ICMP error on a connected socket
// (ECONNREFUSED and the like: exceptionCaught from the read side, a failed
// promise from the write side). Only close() does, or an error of the socket
// itself (ENOMEM, EBADF).
#ifndef LP_UDP_H
#define LP_UDP_H

#include "channel.h"

#define LP_UDP_MAX_DATAGRAM 65507 // the largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP)
#define LP_UDP_BATCH 32           // datagrams per recvmmsg / sendmmsg at most
// The receive area is batch x maxDatagramSize bytes, capped at this: address
// space only, since the kernel writes (and so makes resident) only the pages
// that datagrams fill.
#define LP_UDP_RECV_AREA_MAX ((size_t)2 << 20)

// A datagram as a message: its bytes and the peer's address (the sender of an
// inbound one, the recipient of an outbound one). A message of kind
// LP_MSG_DGRAM owns one; lp_msg_release frees it.
typedef struct lp_dgram {
  lp_buf *buf;
  lp_sockaddr addr;
} lp_dgram;

// A new datagram taking buf's reference (NULL on ENOMEM, buf released).
lp_dgram *lp_dgram_new(lp_buf *buf, const lp_sockaddr *addr);
void lp_dgram_free(lp_dgram *d);
static inline lp_msg lp_msg_dgram(lp_dgram *d) {
  lp_msg m = {.kind = LP_MSG_DGRAM, .u.ptr = d};
  return m;
}

typedef struct lp_udp_config {
  size_t max_datagram; // receive size and send limit; default LP_UDP_MAX_DATAGRAM
  bool as_string;      // inbound data delivered as strings (LP_MSGF_STRING)
} lp_udp_config;

void lp_udp_config_default(lp_udp_config *u);
// What differs for UDP channels in the channel options' defaults: an
// exception at the tail does not close the channel (one bad datagram must not
// end a server), and more messages per read (each is one small datagram).
void lp_udp_channel_defaults(lp_channel_config *c);

extern const lp_transport lp_udp_transport;

// A UDP channel on loop: a socket bound to local (NULL: any port, of remote's
// family), connected to remote when not NULL (then writes without an address
// go there, and ICMP errors are reported). reuse_port sets SO_REUSEPORT
// before bind. The channel is not registered yet: lp_channel_register makes
// it active and reading. 0 with *out set, or -errno with *step naming the
// call that failed ("socket", "bind", "connect").
int lp_udp_open(lp_loop *loop, const lp_sockaddr *local, const lp_sockaddr *remote, bool reuse_port,
                const lp_channel_config *cfg, const lp_udp_config *ucfg, lp_channel **out, const char **step);

// Parse "host:port" or "[v6]:port" (numeric host, or localhost). 0 or -EINVAL.
int lp_udp_parse_addr(const char *s, lp_sockaddr *out);

#endif
