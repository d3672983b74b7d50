// idle.c: the idle-state, read-timeout and write-timeout handlers (idle.h).
//
// One state per context (ctx->state, freed by ops->free). Timers are ev_timers
// of the channel's loop, armed while the channel is active; a timer callback
// comes from libev, outside any propagation, so it holds a channel reference
// and brackets the pipeline (enter/leave) around what it fires.
//
// Tracked writes: each write passes on with a promise of ours (`mine`); its
// listener records the time, stops the write's timer and hands the outcome to
// the caller's promise. A tracked write is linked to the state while both
// live; the handler going away unlinks them, so a late completion touches only
// the write itself.
#include "idle.h"

#include "channel.h"
#include "future.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { MODE_IDLE, MODE_READ_TIMEOUT, MODE_WRITE_TIMEOUT };

typedef struct timer_state {
  lp_ctx *ctx;
  int mode;
  double reader, writer, all; // seconds, 0: off (read timeout: reader; write timeout: writer)
  double last_read, last_write;
  ev_timer rt, wt, at;
  lp_list writes;             // tracked_write.link
  bool started, stopped;
  bool reading;               // between channelRead and channelReadComplete
  bool first_reader, first_writer, first_all;
  bool fired;                 // a timeout was raised (once per channel)
} timer_state;

typedef struct tracked_write {
  lp_list link;
  timer_state *st; // NULL once the handler went away
  lp_channel *ch;  // a reference
  lp_future *orig; // the caller's promise (a reference), or NULL
  ev_timer timer;  // write timeout only
} tracked_write;

static inline lp_loop *loop_of(const timer_state *st) { return lp_ctx_channel(st->ctx)->loop; }

static void arm(timer_state *st, ev_timer *t, double after) {
  ev_timer_stop(loop_of(st)->ev, t);
  ev_timer_set(t, after, 0.);
  ev_timer_start(loop_of(st)->ev, t);
}

static void detach_write(tracked_write *tw) {
  if (!tw->st) return;
  ev_timer_stop(loop_of(tw->st)->ev, &tw->timer);
  lp_list_remove(&tw->link);
  tw->st = NULL;
}

// Cancel everything; the handler keeps passing events on.
static void stop(timer_state *st) {
  if (st->stopped) return;
  st->stopped = true;
  struct ev_loop *ev = loop_of(st)->ev;
  ev_timer_stop(ev, &st->rt);
  ev_timer_stop(ev, &st->wt);
  ev_timer_stop(ev, &st->at);
  while (!lp_list_empty(&st->writes)) detach_write(lp_container_of(st->writes.next, tracked_write, link));
}

static void start(timer_state *st) {
  if (st->started || st->stopped) return;
  st->started = true;
  double now = lp_loop_now(loop_of(st));
  st->last_read = st->last_write = now;
  if (st->mode == MODE_WRITE_TIMEOUT) return; // timers per write
  if (st->reader > 0) arm(st, &st->rt, st->reader);
  if (st->writer > 0) arm(st, &st->wt, st->writer);
  if (st->all > 0) arm(st, &st->at, st->all);
}

// The channel closed under a timer (its inactive event has not come yet).
static bool gone(timer_state *st) {
  if ((lp_ctx_channel(st->ctx)->flags & LP_CH_CLOSED) || st->ctx->removed) {
    stop(st);
    return true;
  }
  return false;
}

// Raise a timeout once: exceptionCaught from this handler on, then close.
static void raise_timeout(timer_state *st, int code, double secs) {
  if (st->fired) return;
  st->fired = true;
  lp_error e;
  if (code == LP_EREADTIMEOUT) lp_error_named(&e, code, "nothing read for %g s", secs);
  else lp_error_named(&e, code, "a write did not complete within %g s", secs);
  lp_msg m = lp_msg_err(&e);
  lp_channel_set_close_cause(lp_ctx_channel(st->ctx), LP_CLOSE_TIMEOUT, 0); // the close below follows, whatever the handlers do
  lp_ctx_fire(st->ctx, LP_EV_EXCEPTION, &m);
  lp_ctx_op(st->ctx, LP_OP_CLOSE, NULL, NULL);
}

static void fire_idle(timer_state *st, const char *state, bool first) {
  lp_channel *ch = lp_channel_ref(lp_ctx_channel(st->ctx));
  lp_pipeline_enter(&ch->pipeline);
  if (st->mode == MODE_READ_TIMEOUT) {
    raise_timeout(st, LP_EREADTIMEOUT, st->reader);
  } else {
    lp_event_info ev = {"idle", state, first, NULL, 0};
    lp_msg m = lp_msg_event(&ev);
    lp_ctx_fire(st->ctx, LP_EV_USER_EVENT, &m);
  }
  lp_pipeline_leave(&ch->pipeline);
  lp_channel_unref(ch);
}

// Netty's rule: the next check comes `period` after the last activity; an
// event fires once a whole period passed with none, then once per period.
static void check(timer_state *st, ev_timer *t, double period, double last, bool busy, bool *first, const char *state) {
  if (gone(st)) return;
  double next = busy ? period : period - (lp_loop_now(loop_of(st)) - last);
  if (next > 0) {
    arm(st, t, next);
    return;
  }
  arm(st, t, period);
  bool was_first = *first;
  *first = false;
  fire_idle(st, state, was_first);
}

static void on_reader(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  timer_state *st = lp_container_of(w, timer_state, rt);
  check(st, w, st->reader, st->last_read, st->reading, &st->first_reader, "reader");
}

static void on_writer(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  timer_state *st = lp_container_of(w, timer_state, wt);
  check(st, w, st->writer, st->last_write, false, &st->first_writer, "writer");
}

static void on_all(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  timer_state *st = lp_container_of(w, timer_state, at);
  double last = st->last_read > st->last_write ? st->last_read : st->last_write;
  check(st, w, st->all, last, st->reading, &st->first_all, "all");
}

// ---- tracked writes ---------------------------------------------------------------

static void on_write_done(lp_future *mine, void *ud) {
  tracked_write *tw = ud;
  timer_state *st = tw->st;
  if (st) {
    st->last_write = lp_loop_now(loop_of(st));
    st->first_writer = st->first_all = true;
    detach_write(tw);
  }
  if (tw->orig) {
    if (lp_future_ok(mine)) {
      lp_future_succeed(tw->orig);
    } else {
      tw->orig->quiet = tw->orig->quiet || mine->quiet;
      if (mine->cause) lp_future_fail(tw->orig, mine->cause);
      else lp_future_fail_code(tw->orig, -ENOMEM, "write");
    }
  } else if (!lp_future_ok(mine) && !mine->quiet) { // reported as the write itself would have been
    lp_error e;
    if (mine->cause) e = *mine->cause;
    else lp_error_sys(&e, ENOMEM, "write");
    lp_channel_fail_promise(tw->ch, NULL, &e);
  }
  lp_channel_unref(tw->ch);
  if (tw->orig) lp_future_unref(tw->orig);
  free(tw);
}

static void on_write_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  tracked_write *tw = lp_container_of(w, tracked_write, timer);
  timer_state *st = tw->st;
  if (!st || gone(st)) return;
  detach_write(tw); // its completion still reaches the caller's promise
  lp_channel *ch = lp_channel_ref(lp_ctx_channel(st->ctx));
  lp_pipeline_enter(&ch->pipeline);
  raise_timeout(st, LP_EWRITETIMEOUT, st->writer);
  lp_pipeline_leave(&ch->pipeline);
  lp_channel_unref(ch);
}

// Pass a write on with our own promise; false when out of memory (the write
// then passes on untracked).
static bool track_write(timer_state *st, lp_msg *m, lp_future *promise) {
  lp_channel *ch = lp_ctx_channel(st->ctx);
  tracked_write *tw = calloc(1, sizeof *tw);
  lp_future *mine = lp_future_new(ch->loop);
  if (!tw || !mine || lp_future_add_listener(mine, on_write_done, tw) != 0) {
    free(tw);
    if (mine) lp_future_unref(mine);
    return false;
  }
  tw->st = st;
  tw->ch = lp_channel_ref(ch);
  tw->orig = promise ? lp_future_ref(promise) : NULL;
  lp_list_push(&st->writes, &tw->link);
  ev_timer_init(&tw->timer, on_write_timeout, st->writer, 0.);
  if (st->mode == MODE_WRITE_TIMEOUT && !st->stopped) ev_timer_start(ch->loop->ev, &tw->timer);
  lp_ctx_op(st->ctx, LP_OP_WRITE, m, mine);
  lp_future_unref(mine); // the pipeline holds it until the write is done
  return true;
}

// ---- handler ops ----------------------------------------------------------------

static void on_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  timer_state *st = ctx->state;
  switch (ev) {
  case LP_EV_ACTIVE: start(st); break;
  case LP_EV_REGISTERED:
    if (lp_channel_is_active(lp_ctx_channel(ctx))) start(st);
    break;
  case LP_EV_INACTIVE: stop(st); break;
  case LP_EV_READ:
    st->reading = true;
    st->first_reader = st->first_all = true;
    break;
  case LP_EV_READ_COMPLETE:
    if (st->reading) {
      st->last_read = lp_loop_now(loop_of(st));
      st->reading = false;
    }
    break;
  default: break;
  }
  lp_ctx_fire(ctx, ev, m);
}

static void on_outbound(lp_ctx *ctx, int op, lp_msg *m, lp_future *promise) {
  timer_state *st = ctx->state;
  if (op == LP_OP_WRITE && !st->stopped && track_write(st, m, promise)) return;
  lp_ctx_op(ctx, op, m, promise);
}

static void on_added(lp_ctx *ctx) {
  lp_channel *ch = lp_ctx_channel(ctx);
  if ((ch->flags & LP_CH_REGISTERED) && lp_channel_is_active(ch)) start(ctx->state);
}

static void on_removed(lp_ctx *ctx) { stop(ctx->state); }

static void on_free(lp_ctx *ctx) {
  timer_state *st = ctx->state;
  if (!st) return;
  stop(st);
  free(st);
  ctx->state = NULL;
}

#define INBOUND_MASK                                                                                     \
  (LP_MASK(LP_EV_REGISTERED) | LP_MASK(LP_EV_ACTIVE) | LP_MASK(LP_EV_INACTIVE) | LP_MASK(LP_EV_READ) |  \
   LP_MASK(LP_EV_READ_COMPLETE))

static const lp_handler_ops idle_ops = {"idleState", INBOUND_MASK | LP_MASK(LP_OP_WRITE), on_added, on_removed,
                                        on_inbound,  on_outbound, on_free};
static const lp_handler_ops read_timeout_ops = {"readTimeout", INBOUND_MASK, on_added, on_removed,
                                                on_inbound,    on_outbound, on_free};
static const lp_handler_ops write_timeout_ops = {"writeTimeout", INBOUND_MASK | LP_MASK(LP_OP_WRITE), on_added, on_removed,
                                                 on_inbound,     on_outbound, on_free};

static lp_ctx *make(lp_pipeline *p, const lp_handler_ops *ops, const char *name, int mode, double reader, double writer,
                    double all) {
  timer_state *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  st->mode = mode;
  st->reader = reader > 0 ? reader : 0;
  st->writer = writer > 0 ? writer : 0;
  st->all = all > 0 ? all : 0;
  st->first_reader = st->first_writer = st->first_all = true;
  lp_list_init(&st->writes);
  ev_timer_init(&st->rt, on_reader, 0., 0.);
  ev_timer_init(&st->wt, on_writer, 0., 0.);
  ev_timer_init(&st->at, on_all, 0., 0.);
  lp_ctx *ctx = lp_ctx_new(p, ops, st, name);
  if (!ctx) {
    free(st);
    return NULL;
  }
  st->ctx = ctx;
  // Writes are tracked only when something waits for them.
  if (mode == MODE_IDLE && st->writer == 0 && st->all == 0) ctx->mask &= ~LP_MASK(LP_OP_WRITE);
  return ctx;
}

lp_ctx *lp_idle_state_new(lp_pipeline *p, const char *name, double reader, double writer, double all) {
  return make(p, &idle_ops, name, MODE_IDLE, reader, writer, all);
}

lp_ctx *lp_read_timeout_new(lp_pipeline *p, const char *name, double timeout) {
  return make(p, &read_timeout_ops, name, MODE_READ_TIMEOUT, timeout, 0, 0);
}

lp_ctx *lp_write_timeout_new(lp_pipeline *p, const char *name, double timeout) {
  return make(p, &write_timeout_ops, name, MODE_WRITE_TIMEOUT, 0, timeout, 0);
}
