// stats_query.h: listing live channels across loops (the admin listener's
// /channels), implemented in stats.c.
#ifndef LP_STATS_QUERY_H
#define LP_STATS_QUERY_H

#include "loop.h"

// ---- live channels across loops (the admin listener's /channels) ----------------
// The asking loop posts a task to each loop; each lists its counted channels
// (at most max_per_loop) on its own thread and posts the answer back. fn runs
// once on the asking loop: when every loop answered, or at the timeout with
// what came (a stopped worker never answers). Loops that answer late only drop
// their reference. The query is freed when the asker and every task let go.
#define LP_CHAN_ADDR_MAX 128 // "unix:" and a 107-byte path fit
#define LP_CHAN_HANDLERS_MAX 256

typedef struct lp_chan_info {
  uint64_t id;
  char local[LP_CHAN_ADDR_MAX], remote[LP_CHAN_ADDR_MAX];
  double age;                         // seconds since it was made
  uint64_t bytes_in, bytes_out, pending;
  bool unwritable;
  char handlers[LP_CHAN_HANDLERS_MAX]; // the pipeline's handler names, comma-separated (cut when long)
} lp_chan_info;

typedef struct lp_chan_query lp_chan_query;
typedef void (*lp_chan_query_fn)(lp_chan_query *q, void *ud);

typedef struct lp_chan_part {
  lp_task ask, reply;
  lp_chan_query *q;
  lp_loop *loop;
  int loop_id;
  lp_chan_info *infos; // owned by the query; written by loop's thread before its reply
  size_t n;
  bool truncated;      // more than max_per_loop channels
  bool answered;       // the asker's thread only: the reply arrived before fn ran
} lp_chan_part;

struct lp_chan_query {
  lp_loop *asker;
  atomic_int refs;
  int nparts, nanswered;
  size_t max_per_loop;
  ev_timer timer;
  bool done;
  lp_chan_query_fn fn;
  void *ud;
  lp_chan_part parts[];
};

// On asker's thread. NULL on ENOMEM (nothing started).
lp_chan_query *lp_chan_query_start(lp_loop *asker, lp_loop *const *loops, int n, size_t max_per_loop, double timeout,
                                   lp_chan_query_fn fn, void *ud);

#endif
