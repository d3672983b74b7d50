// idle.h: time in the pipeline, as native handlers (Netty's IdleStateHandler,
// ReadTimeoutHandler and WriteTimeoutHandler).
//
//   idle state    fires a user event { kind = "idle", state = "reader" |
//                 "writer" | "all", first = bool } when nothing was read,
//                 written, or either, for the given seconds; `first` is true
//                 for the first event after activity, false for the repeats
//                 (one per further period of silence).
//   read timeout  nothing read for the given seconds: exceptionCaught with
//                 ReadTimeout, then close.
//   write timeout a write not done within the given seconds: exceptionCaught
//                 with WriteTimeout, then close.
//
// A write counts when it completes (its bytes reached the kernel), as in
// Netty: the handler passes each write on with a promise of its own and hands
// the outcome to the caller's promise, so a failure nobody listens to is still
// reported. Timers run while the channel is active and stop when it closes or
// the handler is removed; none outlives its channel.
#ifndef LP_IDLE_H
#define LP_IDLE_H

#include "pipeline.h"

// New contexts, not linked (lp_pipeline_add), or NULL on ENOMEM. Seconds > 0;
// for idle state, 0 turns that kind off.
lp_ctx *lp_idle_state_new(lp_pipeline *p, const char *name, double reader, double writer, double all);
lp_ctx *lp_read_timeout_new(lp_pipeline *p, const char *name, double timeout);
lp_ctx *lp_write_timeout_new(lp_pipeline *p, const char *name, double timeout);

#endif
