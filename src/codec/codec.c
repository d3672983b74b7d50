// codec.c: the cumulating decoder handler (Netty's ByteToMessageDecoder) and
// the length-field prepender handler.
//
// The decoder, per context:
// - channelRead(bytes): a host message is turned into a buffer first
//   (host_ops->to_buf); anything that is not bytes passes on untouched. The
//   bytes join the cumulation; then decode runs while it makes progress, and
//   what it decoded is fired in order after each call.
// - A step that decodes nothing and consumes nothing waits for more bytes; one
//   that decodes without consuming is an error (DecoderError), since calling it
//   again would loop forever.
// - autoRead off: a read() demand gets at most one message. Bytes that come
//   for a read deliver one message and the rest is held; a later read() that
//   passes this handler is served from what is held (in a task, never inside
//   the read() call) instead of reading the socket; a read that brought no
//   whole message reads on at channelReadComplete. When autoRead is switched
//   on again (a read() through the pipeline), everything held goes out.
// - autoBackpressure: while the channel cannot write, decoding stops (the
//   bytes wait in the cumulation), as reading does: one read of 64 KiB of
//   newlines must not become 64K replies queued at once. Writable again,
//   decoding resumes in a task, followed by channelReadComplete. Until the
//   bytes held are decoded the channel does not read (ch->input_holds), or
//   the cumulation would grow by a read each time the channel is writable.
// - channelInactive / inputShutdown: one last call (decodeLast), then fire
//   everything held and drop the bytes nobody could decode.
// - Removed or replaced: messages held and the cumulation go to the next
//   handler (channelRead, then channelReadComplete). Removal from inside its
//   own decode, or from a handler it fired to, waits until the decode loop
//   unwinds (d->decoding), so no step ever runs on a cumulation handed on.
// - Bytes that arrive while decode is on the stack (a handler it fired to
//   fires into the pipeline again) wait in a backlog, joined after the step.
#include "codec.h"

#include "channel.h"
#include "host.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_MIN 8

static inline lp_loop *loop_of(const lp_decoder *d) { return lp_ctx_channel(d->ctx)->loop; }
static inline bool holding(const lp_decoder *d) { return !d->ctx->removed && !lp_ctx_channel(d->ctx)->config.auto_read; }

static void handover(lp_decoder *d);

// The channel cannot write and wants its input paused (autoBackpressure).
static inline bool backpressured(const lp_decoder *d) {
  const lp_channel *ch = lp_ctx_channel(d->ctx);
  return ch->config.auto_backpressure && (ch->flags & (LP_CH_UNWRITABLE | LP_CH_CLOSED)) == LP_CH_UNWRITABLE;
}

// Paused with bytes left: the channel reads nothing more until they are decoded.
static void hold_input(lp_decoder *d) {
  if (d->holds_input) return;
  d->holds_input = true;
  lp_channel *ch = lp_ctx_channel(d->ctx);
  ch->input_holds++;
  ch->flags |= LP_CH_INPUT_HELD;
}

static void release_input(lp_decoder *d) {
  if (!d->holds_input) return;
  d->holds_input = false;
  lp_channel *ch = lp_ctx_channel(d->ctx);
  if (--ch->input_holds) return;
  ch->flags &= ~(uint32_t)LP_CH_INPUT_HELD;
  if (!(ch->flags & LP_CH_IN_READ)) lp_channel_update_reading(ch);
}

static void enter(lp_decoder *d) { d->decoding++; }
static void leave(lp_decoder *d) {
  if (--d->decoding == 0 && d->ctx->removed && !d->handed_off) handover(d);
}

// ---- the queue of decoded messages ------------------------------------------------------------

int lp_decoder_reserve(lp_decoder *d, uint32_t n) {
  if (d->qcap - d->qlen >= n) return 0;
  uint32_t cap = d->qcap ? d->qcap : QUEUE_MIN;
  while (cap - d->qlen < n) {
    if (cap > UINT32_MAX / 2) return -ENOMEM;
    cap *= 2;
  }
  lp_msg *q = malloc(cap * sizeof *q);
  if (!q) return -ENOMEM;
  for (uint32_t i = 0; i < d->qlen; i++) q[i] = d->q[(d->qhead + i) % d->qcap];
  free(d->q);
  d->q = q;
  d->qhead = 0;
  d->qcap = cap;
  return 0;
}

int lp_decoder_add(lp_decoder *d, lp_msg *m) {
  if (lp_decoder_reserve(d, 1) != 0) {
    if (m->kind == LP_MSG_HOST) d->ops->drop_host(d);
    else lp_msg_release(m);
    return -ENOMEM;
  }
  d->q[(d->qhead + d->qlen) % d->qcap] = *m;
  d->qlen++;
  m->kind = LP_MSG_NONE;
  return 0;
}

static lp_msg pop(lp_decoder *d) {
  lp_msg m = d->q[d->qhead];
  d->qhead = (d->qhead + 1) % d->qcap;
  d->qlen--;
  return m;
}

static void fire_one(lp_decoder *d, lp_msg *m) {
  if (m->kind == LP_MSG_HOST) d->ops->fire_host(d);
  else lp_ctx_fire(d->ctx, LP_EV_READ, m);
}

// Fire queued messages: all of them, or as far as autoRead allows. Returns how many.
static uint32_t drain(lp_decoder *d, bool all) {
  uint32_t fired = 0;
  while (d->qlen) {
    if (!all && holding(d)) {
      if (!d->want_frame) break;
      d->want_frame = false;
    }
    lp_msg m = pop(d);
    fire_one(d, &m);
    fired++;
  }
  return fired;
}

static void clear_queue(lp_decoder *d, bool host_too) {
  while (d->qlen) {
    lp_msg m = pop(d);
    if (m.kind != LP_MSG_HOST) lp_msg_release(&m);
    else if (host_too) d->ops->drop_host(d);
  }
}

// ---- decoding ------------------------------------------------------------------------------------

static void fire_error(lp_decoder *d, lp_error *err) {
  lp_msg m = lp_msg_err(err);
  lp_ctx_fire(d->ctx, LP_EV_EXCEPTION, &m);
}

static void fire_enomem(lp_decoder *d, const char *what) {
  lp_error e;
  lp_error_sys(&e, ENOMEM, what);
  fire_error(d, &e);
}

static void join_backlog(lp_decoder *d) {
  lp_buf *b = d->backlog;
  d->backlog = NULL;
  if (lp_cumulate(loop_of(d)->pool, &d->cum, b) != 0) fire_enomem(d, "cumulating input");
}

// Returns how many messages it fired.
static uint32_t call_decode(lp_decoder *d, bool last) {
  lp_ctx *ctx = d->ctx;
  uint32_t fired = 0;
  enter(d);
  d->paused = false;
  for (;;) {
    if (d->backlog) join_backlog(d);
    size_t before = d->cum ? lp_buf_readable(d->cum) : 0;
    if (before == 0 && !last) break;
    if (!last && backpressured(d)) { // the rest waits for writability (resume_task)
      d->paused = true;
      hold_input(d);
      break;
    }
    if (d->max_cumulation && before > d->max_cumulation) {
      // A step that never consumes would let the cumulation grow without end.
      lp_error e;
      lp_error_named(&e, LP_ETOOLONG, "%zu bytes not decoded exceed maxCumulation %zu of handler '%s', discarding them",
                     before, d->max_cumulation, ctx->name);
      e.limit = (long long)d->max_cumulation;
      e.length = (long long)before;
      lp_buf_unref(d->cum);
      d->cum = NULL;
      fire_error(d, &e);
      break;
    }
    uint32_t q0 = d->qlen;
    lp_error err;
    int rc = d->ops->decode(d, d->cum, last, &err);
    if (d->drop_cum) {
      d->drop_cum = false;
      if (d->cum) lp_buf_unref(d->cum);
      d->cum = NULL;
    }
    size_t after = d->cum ? lp_buf_readable(d->cum) : 0;
    if (rc == LP_DECODE_OK && d->qlen > q0 && after == before && before > 0 && !last) {
      rc = LP_DECODE_ERROR;
      lp_error_named(&err, LP_EDECODER, "handler '%s': decode produced a message without consuming any bytes", ctx->name);
    }
    if (rc == LP_DECODE_REPORTED && d->cum) {
      // A step that raised ends the loop, and the bytes it left go with it:
      // decoding them again (the next read, decodeLast) would raise again on
      // the same input, one bad input reported twice.
      lp_buf_unref(d->cum);
      d->cum = NULL;
    }
    fired += drain(d, last);
    if (rc == LP_DECODE_ERROR) fire_error(d, &err);
    if (ctx->removed || last || rc == LP_DECODE_REPORTED) break;
    if (after == before && !d->backlog) break; // needs more bytes (or failed without progress)
  }
  if (d->cum && lp_buf_readable(d->cum) == 0) {
    lp_buf_unref(d->cum);
    d->cum = NULL;
  }
  if (!d->paused) release_input(d);
  leave(d);
  return fired;
}

static void on_read(lp_decoder *d, lp_msg *m) {
  lp_ctx *ctx = d->ctx;
  lp_loop *loop = loop_of(d);
  if (m->kind == LP_MSG_HOST) {
    lp_error e;
    if (!loop->host_ops || !loop->host_ops->to_buf || loop->host_ops->to_buf(lp_ctx_channel(ctx), m, &e) != 0) {
      lp_ctx_fire(ctx, LP_EV_READ, m); // not bytes: for a handler further on
      return;
    }
  }
  if (m->kind != LP_MSG_BUF) {
    lp_ctx_fire(ctx, LP_EV_READ, m);
    return;
  }
  lp_buf *in = m->u.buf;
  m->kind = LP_MSG_NONE;
  if (d->decoding) { // re-entered from a handler this decoder fired to
    if (lp_cumulate(loop->pool, &d->backlog, in) != 0) fire_enomem(d, "cumulating input");
    return;
  }
  if (holding(d)) d->want_frame = true; // these bytes came for a read() demand
  if (lp_cumulate(loop->pool, &d->cum, in) != 0) {
    fire_enomem(d, "cumulating input");
    return;
  }
  call_decode(d, false);
}

// The input ended: one last call (every ordinary call that could make
// progress has run already), then everything held goes out. Returns whether
// anything was fired.
static bool input_closed(lp_decoder *d) {
  if (d->handed_off || d->input_ended) return false;
  d->input_ended = true;
  uint32_t fired = call_decode(d, true);
  if (!d->ctx->removed) {
    enter(d);
    fired += drain(d, true);
    if (d->cum) {
      if (LP_LOG_ENABLED(LP_LOG_DEBUG))
        lp_log(LP_LOG_DEBUG, lp_ctx_channel(d->ctx)->id, "handler '%s': %zu bytes left undecoded at the end of the input",
               d->ctx->name, lp_buf_readable(d->cum));
      lp_buf_unref(d->cum);
      d->cum = NULL;
    }
    leave(d);
  }
  return fired > 0;
}

// Removed: what is held, then the bytes not decoded, go to the next handler.
static void handover(lp_decoder *d) {
  d->handed_off = true;
  d->paused = false;
  release_input(d);
  lp_ctx *ctx = d->ctx;
  bool gone = ctx->pipeline->destroyed;
  d->decoding++;
  uint32_t fired = 0;
  if (gone) clear_queue(d, true);
  else fired = drain(d, true);
  if (d->backlog) join_backlog(d);
  lp_buf *rest = d->cum;
  d->cum = NULL;
  if (rest && lp_buf_readable(rest) && !gone) {
    lp_msg m = lp_msg_buf(rest);
    lp_ctx_fire(ctx, LP_EV_READ, &m);
    fired++;
  } else if (rest) {
    lp_buf_unref(rest);
  }
  if (fired) lp_ctx_fire(ctx, LP_EV_READ_COMPLETE, NULL);
  d->decoding--;
}

// ---- read() demands while autoRead is off ------------------------------------------------------

static void deliver_task(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  lp_decoder *d = lp_container_of(t, lp_decoder, task);
  lp_ctx *ctx = d->ctx;
  lp_channel *ch = lp_ctx_channel(ctx);
  lp_pipeline *p = ctx->pipeline;
  d->task_queued = false;
  if (!ctx->removed && !p->destroyed) {
    lp_pipeline_enter(p);
    enter(d);
    uint32_t n = d->deliveries, fired = 0;
    d->deliveries = 0;
    while (n-- && d->qlen) {
      lp_msg m = pop(d);
      fire_one(d, &m);
      fired++;
    }
    if (fired) lp_ctx_fire(ctx, LP_EV_READ_COMPLETE, NULL);
    leave(d);
    lp_pipeline_leave(p);
  }
  lp_ctx_unref(ctx);
  lp_channel_unref(ch);
}

static void resume_task(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  lp_decoder *d = lp_container_of(t, lp_decoder, resume);
  lp_ctx *ctx = d->ctx;
  lp_channel *ch = lp_ctx_channel(ctx);
  lp_pipeline *p = ctx->pipeline;
  d->resume_queued = false;
  if (d->paused && !ctx->removed && !p->destroyed && !d->decoding && !(ch->flags & LP_CH_CLOSED) && !backpressured(d)) {
    d->paused = false;
    lp_pipeline_enter(p);
    if (call_decode(d, false) && !ctx->removed && !(ch->flags & LP_CH_CLOSED)) lp_ctx_fire(ctx, LP_EV_READ_COMPLETE, NULL);
    lp_pipeline_leave(p);
  }
  lp_ctx_unref(ctx);
  lp_channel_unref(ch);
}

static void schedule_resume(lp_decoder *d) {
  if (d->resume_queued) return;
  d->resume_queued = true;
  d->ctx->refs++; // both stay alive until the task ran
  lp_channel_ref(lp_ctx_channel(d->ctx));
  d->resume.run = resume_task;
  lp_loop_defer(loop_of(d), &d->resume);
}

static void schedule_delivery(lp_decoder *d) {
  if (d->task_queued) return;
  d->task_queued = true;
  d->ctx->refs++; // both stay alive until the task ran
  lp_channel_ref(lp_ctx_channel(d->ctx));
  d->task.run = deliver_task;
  lp_loop_defer(loop_of(d), &d->task);
}

// ---- handler ops ------------------------------------------------------------------------------------

static void decoder_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  lp_decoder *d = ctx->state;
  switch (ev) {
  case LP_EV_READ: on_read(d, m); return;
  case LP_EV_READ_COMPLETE:
    // Bytes came for a read() and made no whole message: read on, or the
    // demand would never be served.
    if (holding(d) && d->want_frame && d->qlen == 0 && !(lp_ctx_channel(ctx)->flags & LP_CH_CLOSED))
      lp_ctx_op(ctx, LP_OP_READ, NULL, NULL);
    break;
  case LP_EV_INACTIVE:
    if (input_closed(d) && !ctx->removed) lp_ctx_fire(ctx, LP_EV_READ_COMPLETE, NULL);
    break;
  case LP_EV_WRITABILITY:
    if (d->paused && !backpressured(d)) schedule_resume(d);
    break;
  case LP_EV_USER_EVENT:
    if (m && m->kind == LP_MSG_EVENT && strcmp(m->u.event->kind, "inputShutdown") == 0 && input_closed(d) &&
        !ctx->removed)
      lp_ctx_fire(ctx, LP_EV_READ_COMPLETE, NULL);
    break;
  default: break;
  }
  lp_ctx_fire(ctx, ev, m);
}

static void decoder_outbound(lp_ctx *ctx, int op, lp_msg *m, lp_future *promise) {
  lp_decoder *d = ctx->state;
  if (op != LP_OP_READ) {
    d->ops->outbound(d, op, m, promise); // only ops in op_mask reach here
    return;
  }
  if (d->qlen > d->deliveries) {
    // A read() while messages are held is served from them, not from the socket.
    if (holding(d)) {
      d->deliveries++;
      schedule_delivery(d);
      return;
    }
    // Reading is on again (setAutoRead(true) reads through the pipeline):
    // everything held goes out, ahead of what new reads decode.
    d->deliveries = d->qlen;
    schedule_delivery(d);
  }
  lp_ctx_op(ctx, op, m, promise);
}

static void decoder_removed(lp_ctx *ctx) {
  lp_decoder *d = ctx->state;
  if (d->decoding || d->handed_off) return; // the decode loop hands over when it unwinds
  handover(d);
}

static void decoder_free(lp_ctx *ctx) {
  lp_decoder *d = ctx->state;
  if (d->holds_input && --lp_ctx_channel(ctx)->input_holds == 0) // the channel is closed: no reading to restart
    lp_ctx_channel(ctx)->flags &= ~(uint32_t)LP_CH_INPUT_HELD;
  clear_queue(d, false); // host values are the implementation's to release
  free(d->q);
  if (d->cum) lp_buf_unref(d->cum);
  if (d->backlog) lp_buf_unref(d->backlog);
  d->q = NULL;
  d->cum = d->backlog = NULL;
  d->ops->free(d);
}

static const lp_handler_ops decoder_handler_ops = {
    "decoder",
    LP_MASK(LP_EV_READ) | LP_MASK(LP_EV_READ_COMPLETE) | LP_MASK(LP_EV_INACTIVE) | LP_MASK(LP_EV_USER_EVENT) |
        LP_MASK(LP_EV_WRITABILITY) | LP_MASK(LP_OP_READ),
    NULL,
    decoder_removed,
    decoder_inbound,
    decoder_outbound,
    decoder_free,
};

lp_ctx *lp_decoder_ctx_new(lp_pipeline *p, const char *name, lp_decoder *d) {
  lp_ctx *c = lp_ctx_new(p, &decoder_handler_ops, d, name);
  if (!c) {
    d->ops->free(d);
    return NULL;
  }
  d->ctx = c;
  if (d->ops->outbound) c->mask |= d->ops->op_mask & ~LP_MASK(LP_OP_READ);
  return c;
}

lp_decoder *lp_decoder_of(lp_ctx *ctx) { return ctx->ops == &decoder_handler_ops ? ctx->state : NULL; }

lp_buf *lp_decoder_take_bytes(lp_ctx *ctx) {
  if (ctx->ops != &decoder_handler_ops) return NULL;
  lp_decoder *d = ctx->state;
  if (d->handed_off) return NULL;
  if (d->backlog) join_backlog(d);
  lp_buf *b = d->cum;
  d->cum = NULL; // a decode loop on the stack sees no bytes left and stops
  if (b && lp_buf_readable(b) == 0) {
    lp_buf_unref(b);
    b = NULL;
  }
  return b;
}

// ---- frame decoders as decoder steps ------------------------------------------------------------

typedef struct {
  lp_decoder d; // first: the step gets an lp_decoder *
  lp_frame_decoder f;
} frame_decoder;

static int frame_step(lp_decoder *d, lp_buf *in, bool last, lp_error *err) {
  LP_UNUSED(last); // Netty's frame decoders decode the last bytes as any others
  if (!in) return LP_DECODE_OK;
  frame_decoder *fd = (frame_decoder *)d;
  lp_buf *frame;
  int rc = lp_frame_decode(&fd->f, in, &frame, err);
  if (rc == LP_FRAME_ERROR) return LP_DECODE_ERROR;
  if (rc == LP_FRAME_OK) {
    lp_msg m = lp_msg_buf(frame);
    m.flags = d->msg_flags;
    if (lp_decoder_add(d, &m) != 0) {
      lp_error_sys(err, ENOMEM, "queueing a frame");
      return LP_DECODE_ERROR;
    }
  }
  return LP_DECODE_OK;
}

static void frame_free(lp_decoder *d) { free(d); }

static const lp_decoder_ops frame_ops = {frame_step, NULL, NULL, frame_free, NULL, 0};

lp_ctx *lp_frame_decoder_ctx_new(lp_pipeline *p, const char *name, const lp_frame_config *cfg, bool as_string) {
  frame_decoder *fd = calloc(1, sizeof *fd);
  if (!fd) return NULL;
  fd->d.ops = &frame_ops;
  fd->d.msg_flags = as_string ? LP_MSGF_STRING : 0;
  lp_frame_decoder_init(&fd->f, cfg);
  return lp_decoder_ctx_new(p, name, &fd->d);
}

// ---- the length-field prepender -------------------------------------------------------------------

static void prepender_outbound(lp_ctx *ctx, int op, lp_msg *m, lp_future *promise) {
  lp_channel *ch = lp_ctx_channel(ctx);
  if (op != LP_OP_WRITE) {
    lp_ctx_op(ctx, op, m, promise);
    return;
  }
  lp_error e;
  if (m->kind == LP_MSG_HOST) {
    const lp_host_ops *h = ch->loop->host_ops;
    if (!h || !h->to_buf || h->to_buf(ch, m, &e) != 0) { // not bytes: for an encoder nearer the head
      lp_ctx_op(ctx, op, m, promise);
      return;
    }
  }
  if (m->kind != LP_MSG_BUF) {
    lp_ctx_op(ctx, op, m, promise);
    return;
  }
  lp_buf *out;
  lp_buf *payload = m->u.buf;
  m->kind = LP_MSG_NONE;
  if (lp_prepend_length(ch->loop->pool, ctx->state, payload, &out, &e) != 0) {
    lp_channel_fail_promise(ch, promise, &e);
    return;
  }
  lp_msg o = lp_msg_buf(out);
  lp_ctx_op(ctx, LP_OP_WRITE, &o, promise);
}

static void prepender_free(lp_ctx *ctx) { free(ctx->state); }

static const lp_handler_ops prepender_handler_ops = {
    "lengthFieldPrepender", LP_MASK(LP_OP_WRITE), NULL, NULL, NULL, prepender_outbound, prepender_free,
};

lp_ctx *lp_prepender_ctx_new(lp_pipeline *p, const char *name, const lp_prepender_config *cfg) {
  lp_prepender_config *c = malloc(sizeof *c);
  if (!c) return NULL;
  *c = *cfg;
  lp_ctx *ctx = lp_ctx_new(p, &prepender_handler_ops, c, name);
  if (!ctx) free(c);
  return ctx;
}
