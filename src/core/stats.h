// stats.h: per-loop statistics (lupine.stats(), the admin listener's /stats
// and /metrics) and the per-cause close log.
//
// Threads: every loop owns one lp_stats (in lp_loop). Only the loop's own
// thread writes it: counters with LP_STAT_ADD (a relaxed load and store, so no
// locked instruction on the hot path), gauges from its sampler. Any thread
// reads it through lp_stats_read, with relaxed loads: a reader sees each
// counter whole, possibly a moment old, never torn. Handler names are
// published with a release store of their count and never change after.
//
// Event-loop lag: a one-shot timer is started every LP_STATS_TICK seconds; its
// due time is ev_now() + tick, exactly what libev schedules it for. When it
// runs, lag = ev_time() - due: how late the loop handled an event that was
// ready, which counts the callbacks that ran before it in the same iteration
// (a handler that computes for 300 ms makes the next sample at least 200 ms,
// since the timer was due at most one tick into it) plus the poll's timer
// granularity (under 1 ms with epoll). The last LP_STATS_LAG_SAMPLES samples
// (a window of tick * samples seconds) give p50, p99 and max.
//
// Gauges (pending outbound bytes, unwritable channels, the host's memory) are
// sampled every LP_STATS_GAUGE_TICKS ticks, and at once when the loop reads
// its own statistics.
#ifndef LP_STATS_H
#define LP_STATS_H

#include "common.h"

#include <ev.h>
#include <stdatomic.h>

// Why a connection ended: the first cause recorded wins (a read error fires
// exceptionCaught, whose tail then closes: the cause is the reset).
enum {
  LP_CLOSE_NONE,      // not recorded: counted as LP_CLOSE_LOCAL
  LP_CLOSE_EOF,       // the peer's FIN
  LP_CLOSE_RESET,     // ECONNRESET / EPIPE from the peer
  LP_CLOSE_TIMEOUT,   // readTimeout, writeTimeout, drainTimeout
  LP_CLOSE_EXCEPTION, // an exception reached the tail (closeOnException) or exceptionCaught raised
  LP_CLOSE_MAXCONN,   // maxConnections: closed at once by the boss
  LP_CLOSE_EMFILE,    // out of descriptors: accepted with the spare and closed
  LP_CLOSE_SHUTDOWN,  // the server shut down
  LP_CLOSE_LOCAL,     // the app closed it (ctx:close(), ch:close())
  LP_CLOSE_ERROR,     // another I/O error (the errno is in the log line)
  LP_CLOSE_COUNT
};
extern const char *const lp_close_cause_name[LP_CLOSE_COUNT]; // "eof", "reset", ...

#define LP_STATS_TICK 0.1
#define LP_STATS_LAG_SAMPLES 100 // 10 s window
#define LP_STATS_GAUGE_TICKS 10  // gauges once a second
#define LP_STATS_HANDLERS 32     // distinct handler names counted; the rest go to "(other)"
#define LP_STATS_NAME_MAX 48
#define LP_STATS_LOG_BURST 5     // close lines per cause per second per loop; then one "suppressed" line

typedef struct lp_stats {
  // Counters (owner writes with LP_STAT_ADD).
  atomic_uint_fast64_t accepted;  // connections accepted (including those closed at once)
  atomic_uint_fast64_t connected; // client connections established (lupine.connect)
  atomic_uint_fast64_t active;    // open connections now
  atomic_uint_fast64_t closed[LP_CLOSE_COUNT];
  atomic_uint_fast64_t bytes_in, bytes_out, reads, writes; // reads: read() calls that returned data; writes: writev() calls
  atomic_uint_fast64_t handler_errors_other;
  atomic_uint handler_names; // slots of handler[] published (release)
  struct {
    char name[LP_STATS_NAME_MAX];
    atomic_uint_fast64_t count;
  } handler[LP_STATS_HANDLERS];
  // Gauges (owner's sampler).
  atomic_uint_fast64_t pending, unwritable, host_memory;
  atomic_uint_fast32_t lag_us[LP_STATS_LAG_SAMPLES];
  atomic_uint_fast64_t lag_count; // samples taken so far (the ring holds the last LP_STATS_LAG_SAMPLES)
  // Owner only.
  ev_timer sampler;
  double due;
  unsigned ticks;
  double log_window;                   // start of the current second of close lines
  uint32_t logged[LP_CLOSE_COUNT];     // close lines written in this window
  uint64_t suppressed[LP_CLOSE_COUNT]; // close lines not written in this window
} lp_stats;

#define LP_STAT_ADD(st, field, n)                                                                                  \
  atomic_store_explicit(&(st)->field, atomic_load_explicit(&(st)->field, memory_order_relaxed) + (n),             \
                        memory_order_relaxed)
#define LP_STAT_SUB(st, field, n)                                                                                  \
  atomic_store_explicit(&(st)->field, atomic_load_explicit(&(st)->field, memory_order_relaxed) - (n),             \
                        memory_order_relaxed)

// A copy of one loop's statistics, for any thread (plain values).
typedef struct lp_stats_snapshot {
  int loop_id;
  uint64_t accepted, connected, active, closed[LP_CLOSE_COUNT], bytes_in, bytes_out, reads, writes;
  uint64_t pending, unwritable, host_memory;
  double lag_p50, lag_p99, lag_max; // seconds, over the window
  unsigned lag_samples;
  unsigned nhandlers;
  struct {
    char name[LP_STATS_NAME_MAX];
    uint64_t count;
  } handler[LP_STATS_HANDLERS];
  uint64_t handler_errors_other;
} lp_stats_snapshot;

// The loop's own thread, from lp_loop_new / lp_loop_free.
void lp_stats_start(lp_loop *loop);
void lp_stats_stop(lp_loop *loop);
// Copy loop's statistics; own is true when called on loop's thread (gauges
// are then sampled first). Any thread, while loop is not freed.
void lp_stats_read(lp_loop *loop, bool own, lp_stats_snapshot *out);
// A handler raised (loop thread): count it under its name.
void lp_stats_handler_error(lp_loop *loop, const char *name);
// A connection ended (loop thread): count it under cause and log one line
// for every cause but EOF (info; the app's own close at debug), at most
// LP_STATS_LOG_BURST a second per cause, then one line saying how many were
// suppressed. ch: the channel (NULL when the boss closed a descriptor);
// detail: what happened, or NULL.
void lp_stats_closed(lp_loop *loop, int cause, const lp_channel *ch, const char *detail);

#endif
