// connect.h: connecting client channels (connect.c): the socket head's connect
// operation, its time limit and fallback addresses, and connecting to a
// host:port that may need a lookup.
#ifndef LP_CONNECT_H
#define LP_CONNECT_H

#include "channel.h"

// A client channel (fd -1) that will connect: connect fails with
// ConnectTimeout after timeout seconds (0: no limit), counted from this call,
// over all the addresses tried (and a name's lookup, see below). 0 or -ENOMEM.
int lp_channel_prepare_connect(lp_channel *ch, double timeout);
// Addresses the head tries in turn, after the one the connect operation
// carries, when connecting fails (refused, unreachable). Copied; at most
// LP_CONNECT_MAX_FALLBACKS. After prepare_connect, before connect. 0 or -EINVAL.
#define LP_CONNECT_MAX_FALLBACKS 7
int lp_channel_set_connect_fallbacks(lp_channel *ch, const lp_sockaddr *addrs, size_t n);
// Connect a registered client channel to host:port (Netty's Bootstrap.connect
// after registration): numeric addresses connect at once, names resolve first
// (resolver.c) and every address found is tried in order. timeout bounds the
// whole (ConnectTimeout). promise (may be NULL) gets the outcome: a failed
// connect closes the channel.
void lp_channel_connect_host(lp_channel *ch, const char *host, int port, double timeout, lp_future *promise);


// The socket head's connect operation (lp_socket_transport.connect), and its state's free.
void lp_connect_op(lp_channel *ch, lp_msg *m, lp_future *promise);
void lp_connect_free(lp_channel *ch);
// The socket became writable while connecting: finish the attempt.
void lp_connect_writable(lp_channel *ch);
// The channel is closing: stop the time limit, fail a pending connect's promise.
void lp_connect_abort(lp_channel *ch);

#endif
