// channel.h: a connection (or an embedded, socket-less stand-in) with its
// pipeline and outbound buffer. A channel lives on one loop for its whole life
// and is touched only from that loop's thread.
//
// Lifetime: lp_channel_new returns a channel holding one reference for the
// loop, dropped when its teardown (channelInactive, channelUnregistered,
// pipeline destroyed) has run after close. Host handles take their own
// references with lp_channel_ref.
#ifndef LP_CHANNEL_H
#define LP_CHANNEL_H

#include "common.h"
#include "error.h"
#include "loop.h"
#include "outbound.h"
#include "pipeline.h"
#include "socket.h"

typedef struct lp_channel_config {
  bool tcp_nodelay;        // default true
  bool keepalive;          // default false
  bool auto_read;          // default true
  bool allow_half_closure; // default false
  bool auto_backpressure;  // default true: stop reading while unwritable
  bool close_on_exception; // default true: an exception at the tail closes
  int rcvbuf, sndbuf;      // 0: the system's default
  uint32_t max_messages_per_read; // default 16
  size_t high_water, low_water;   // default 64 KiB / 32 KiB
  size_t max_pending;      // default 16 MiB: writes past it fail (WriteBufferFull)
  double drain_timeout;    // default 30 s: after the peer's EOF, time to write out what is queued; 0: no limit
} lp_channel_config;

void lp_channel_config_default(lp_channel_config *c);

enum {
  LP_CH_REGISTERED = 1 << 0,
  LP_CH_ACTIVE = 1 << 1,
  LP_CH_CLOSED = 1 << 2,
  LP_CH_TORN_DOWN = 1 << 3,
  LP_CH_INPUT_SHUTDOWN = 1 << 4,
  LP_CH_OUTPUT_SHUTDOWN = 1 << 5,
  LP_CH_READ_PENDING = 1 << 6, // a read() demand not yet served
  LP_CH_UNWRITABLE = 1 << 7,
  LP_CH_CONNECTING = 1 << 8,
  LP_CH_WAS_ACTIVE = 1 << 9,   // fire channelInactive at teardown
  LP_CH_IN_READ = 1 << 10,     // inside the read loop
  LP_CH_CONNECTED = 1 << 11,   // the fd is a connected socket
  LP_CH_UNCOUNTED = 1 << 12,   // listed on its loop (closed with it) but not in nchannels: embedded channels
  LP_CH_OUTPUT_FAILED = 1 << 13, // a write failed to queue (maxPendingBytes, ENOMEM): no later one is taken
  LP_CH_INPUT_HELD = 1 << 14,  // input_holds > 0: a decoder paused by autoBackpressure holds bytes, no reading
  LP_CH_DRAINING = 1 << 15,    // closing gracefully: input read and dropped, output flushed (lp_channel_close_gracefully)
  LP_CH_ACCEPTED = 1 << 16,    // set by the host: accepted by a listener (a reload's migrate moves only these)
  LP_CH_HOST_COUNTED = 1 << 17, // set by the host: counted by its owner (ch->host) until teardown
  LP_CH_IN_STATS = 1 << 18,    // counted in the loop's statistics as accepted or connected, and active (stats.h)
  LP_CH_STATS_OFF = 1 << 19,   // never counted (the admin listener's own connections)
};

// A transport: what the head does for each outbound op (Netty's Channel.Unsafe):
// socket I/O, or an embedded channel's queues.
typedef struct lp_transport {
  const char *kind;
  void (*write)(lp_channel *ch, lp_msg *m, lp_future *promise);
  void (*flush)(lp_channel *ch);
  void (*read)(lp_channel *ch);
  void (*close)(lp_channel *ch, lp_future *promise);
  void (*connect)(lp_channel *ch, lp_msg *m, lp_future *promise);
  void (*free)(lp_channel *ch); // release kind-specific state
  // Optional: an inbound event reached the tail (a message nobody consumed, an
  // unhandled exception). Returns true when it took the event (an embedded
  // channel queues it); false lets the tail do what it does for sockets.
  bool (*tail)(lp_channel *ch, int ev, lp_msg *m);
} lp_transport;

extern const lp_transport lp_socket_transport;

struct lp_channel {
  lp_loop *loop;
  const lp_transport *transport;
  uint64_t id;
  int fd;
  uint32_t refs;
  uint32_t flags;
  uint8_t alloc_idx;      // adaptive receive size: 1 << (LP_POOL_MIN_SHIFT + alloc_idx)
  uint8_t shrink_votes;
  ev_io read_watcher, write_watcher; // EV_READ and EV_WRITE on fd
  lp_outbound out;
  lp_pipeline pipeline;
  lp_future *close_future; // created on first request or at close
  lp_chaddr local, remote; // lp_chaddr_get for an lp_sockaddr; freed with the channel
  lp_channel_config config;
  lp_list link;            // in loop->channels while open
  lp_task teardown;
  void *kind_state;        // the transport's own (connect state, embedded queue)
  int host_ref;            // host's strong reference to its handle, -1 none
  void *host;              // the host's owner of this channel (the binding: its Lua state's
                           // host; the loop's host until the binding sets it; a reload may move it)
  struct lp_drain *drain;  // the drainTimeout timer while closing after the peer's EOF, else NULL (owned)
  uint32_t input_holds;    // decoders paused by autoBackpressure with bytes left (LP_CH_INPUT_HELD while > 0)
  uint8_t close_cause;     // LP_CLOSE_*: why it ended, recorded before or at close (first one wins)
  int close_errno;         // with LP_CLOSE_RESET / LP_CLOSE_ERROR: the errno
  double created;          // loop time when made
  uint64_t bytes_in, bytes_out; // read from and written to the socket
};

// A channel over fd (-1 for none), not yet registered. NULL on ENOMEM.
lp_channel *lp_channel_new(lp_loop *loop, const lp_transport *transport, int fd, const lp_channel_config *cfg);
static inline lp_channel *lp_channel_ref(lp_channel *ch) { ch->refs++; return ch; }
void lp_channel_unref(lp_channel *ch);
// Apply socket options from the config to the fd (0 or -errno).
int lp_channel_apply_socket_options(lp_channel *ch);
// Register on the loop: channelRegistered; and, when the fd is connected,
// channelActive and reading (autoRead).
void lp_channel_register(lp_channel *ch);
// The connection is now established (accepted, or a connect that finished).
void lp_channel_activate(lp_channel *ch);

// Record why the channel is about to close (LP_CLOSE_*, err: an errno or 0);
// the first cause recorded before the close wins.
static inline void lp_channel_set_close_cause(lp_channel *ch, int cause, int err) {
  if (ch->close_cause || (ch->flags & LP_CH_CLOSED)) return;
  ch->close_cause = (uint8_t)cause;
  ch->close_errno = err;
}
// Leave the channel out of the loop's statistics (the admin listener's own
// connections): call before it is registered.
void lp_channel_stats_off(lp_channel *ch);

// Outbound operations through the whole pipeline (from the tail).
void lp_channel_write(lp_channel *ch, lp_msg *m, lp_future *promise);
void lp_channel_flush(lp_channel *ch);
void lp_channel_read(lp_channel *ch);
void lp_channel_close(lp_channel *ch, lp_future *promise);
// Immediate close below the pipeline (errors, shutdown): pending writes fail with ClosedChannel.
void lp_channel_close_now(lp_channel *ch);
void lp_channel_close_all(lp_loop *loop);
// Stop or resume reading (autoRead at run time).
void lp_channel_set_auto_read(lp_channel *ch, bool on);
// Shut the write side down once flushed data is written (half-close).
int lp_channel_shutdown_output(lp_channel *ch, lp_future *promise);
int lp_channel_set_water_marks(lp_channel *ch, size_t low, size_t high);

// The channel's close future (borrowed; created on demand). NULL on ENOMEM.
lp_future *lp_channel_close_future(lp_channel *ch);
// A promise for a write on ch: when it fails and nobody listens or looks, the
// failure is fired as exceptionCaught (or logged once the pipeline is gone).
lp_future *lp_channel_new_promise(lp_channel *ch);
// Fail promise (or report err when promise is NULL) as a write failure.
void lp_channel_fail_promise(lp_channel *ch, lp_future *promise, const lp_error *err);

static inline bool lp_channel_is_active(const lp_channel *ch) {
  return (ch->flags & (LP_CH_ACTIVE | LP_CH_CLOSED)) == LP_CH_ACTIVE;
}
static inline bool lp_channel_is_writable(const lp_channel *ch) {
  return !(ch->flags & (LP_CH_UNWRITABLE | LP_CH_CLOSED));
}

// Write what is flushed now (the head's flush, once connected).
void lp_channel_flush_now(lp_channel *ch);

// Fire an inbound event from the head, bracketing pipeline depth.
void lp_channel_fire(lp_channel *ch, int ev, lp_msg *m);

// Low level: the head's entry point for outbound ops (calls the transport).
void lp_channel_head_op(lp_channel *ch, int op, lp_msg *m, lp_future *promise);
// Recompute read interest after autoRead, backpressure or a read() demand.
void lp_channel_update_reading(lp_channel *ch);
// Writability from pending bytes; fires channelWritabilityChanged on a change.
void lp_channel_update_writability(lp_channel *ch);

// "127.0.0.1:5000 <- 127.0.0.1:41234" (local <- remote), for logs.
void lp_channel_addresses(const lp_channel *ch, char *out, size_t outlen);
// "#3 127.0.0.1:5000 <- 127.0.0.1:41234".
void lp_channel_describe(const lp_channel *ch, char *out, size_t outlen);
void lp_channel_describe_msg(const lp_channel *ch, const lp_msg *m, char *out, size_t outlen);

// The peer's EOF without allowHalfClosure (or after shutdownOutput) does not
// drop what was written: input stops, everything written is flushed, the FIN
// follows the last byte and the channel closes, or closes at drainTimeout with
// the rest unsent (logged). Both use LP_CH_DRAINING with the machinery below.
//
// Graceful close, for shutdown: input is read and dropped (no more events),
// everything written is flushed, a FIN follows the last byte, and the channel
// closes when the peer closes its side. Not bounded in time: the caller's
// deadline closes what is left. A channel that is not connected closes now.
void lp_channel_close_gracefully(lp_channel *ch);
// The same, bounded by drainTimeout (nginx's lingering close): for a server
// that ends a connection on its own (an HTTP error answered with Connection:
// close) while the peer may still be sending. Closing at once would make the
// kernel answer that input with a RST, which can discard the answer before
// the peer reads it. Below the pipeline: handlers' close operations do not run.
void lp_channel_close_lingering(lp_channel *ch);

#endif
