// pipeline.c: context list, masks and propagation.
//
// Invariants: head and tail live inside the pipeline and are never removed;
// head handles every outbound op (it hands them to the channel), tail every
// inbound event. A context is in the list (removed == false) or in the
// graveyard/held by a host handle (removed == true); its memory goes when refs
// is 0 and no propagation runs on the pipeline.
#include "pipeline.h"

#include "buffer.h"
#include "channel.h"
#include "host.h"
#include "log.h"
#include "udp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const lp_event_name[LP_EV_COUNT] = {
    "channelRegistered", "channelUnregistered", "channelActive",
    "channelInactive",   "channelRead",         "channelReadComplete",
    "userEventTriggered", "channelWritabilityChanged", "exceptionCaught",
    "connect",           "read",                "write",
    "flush",             "close",
};

void lp_msg_release(lp_msg *m) {
  if (m->kind == LP_MSG_BUF && m->u.buf) lp_buf_unref(m->u.buf);
  else if (m->kind == LP_MSG_DGRAM && m->u.ptr) lp_dgram_free(m->u.ptr);
  m->kind = LP_MSG_NONE;
}

// ---- head and tail -------------------------------------------------------

static void head_outbound(lp_ctx *ctx, int op, lp_msg *m, lp_future *promise) {
  lp_channel_head_op(lp_ctx_channel(ctx), op, m, promise);
}

static void tail_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  lp_channel *ch = lp_ctx_channel(ctx);
  if (ch->transport->tail && ch->transport->tail(ch, ev, m)) return;
  switch (ev) {
  case LP_EV_READ:
    if (LP_LOG_ENABLED(LP_LOG_DEBUG))
      lp_log(LP_LOG_DEBUG, ch->id, "discarded an inbound message that reached the tail of the pipeline");
    lp_msg_release(m);
    break;
  case LP_EV_EXCEPTION: lp_pipeline_tail_exception(ctx->pipeline, m); break;
  case LP_EV_USER_EVENT: lp_msg_release(m); break;
  default: break;
  }
}

static const lp_handler_ops head_ops = {"head", LP_MASK_OUTBOUND, NULL, NULL, NULL, head_outbound, NULL};
static const lp_handler_ops tail_ops = {"tail", LP_MASK_INBOUND, NULL, NULL, tail_inbound, NULL, NULL};

// A peer that resets or times out a connection is routine on any busy server
// (clients killed, load generators closing with SO_LINGER 0): not a warning.
static bool routine_peer_error(const lp_channel *ch, const lp_msg *m) {
  int code = 0;
  if (m && m->kind == LP_MSG_ERROR) code = m->u.err->code;
  else if (m && m->kind == LP_MSG_HOST && ch->loop->host_ops && ch->loop->host_ops->error_code)
    code = ch->loop->host_ops->error_code(ch, m);
  return code == -ECONNRESET || code == -EPIPE || code == -ETIMEDOUT;
}

void lp_pipeline_tail_exception(lp_pipeline *p, lp_msg *m) {
  lp_channel *ch = p->channel;
  bool closing = ch->config.close_on_exception && !(ch->flags & LP_CH_CLOSED);
  int level = routine_peer_error(ch, m) ? LP_LOG_DEBUG : LP_LOG_WARN;
  if (LP_LOG_ENABLED(level)) {
    char what[LP_ERROR_MESSAGE_MAX * 4];
    lp_channel_describe_msg(ch, m, what, sizeof what);
    char addr[160];
    lp_channel_addresses(ch, addr, sizeof addr);
    lp_log(level, ch->id, "%s: unhandled exception reached the tail of the pipeline%s: %s", addr,
           closing ? " (closing the channel)" : "", what);
  }
  lp_msg_release(m);
  if (closing) {
    lp_channel_set_close_cause(ch, LP_CLOSE_EXCEPTION, 0);
    lp_channel_close(ch, NULL);
  }
}

// ---- contexts ------------------------------------------------------------

void lp_pipeline_init(lp_pipeline *p, lp_channel *ch) {
  memset(p, 0, sizeof *p);
  p->channel = ch;
  p->head.pipeline = p->tail.pipeline = p;
  p->head.ops = &head_ops;
  p->tail.ops = &tail_ops;
  p->head.mask = head_ops.mask;
  p->tail.mask = tail_ops.mask;
  p->head.name = (char *)"head";
  p->tail.name = (char *)"tail";
  p->head.host_ref = p->tail.host_ref = p->head.box_ref = p->tail.box_ref = -1;
  p->head.next = &p->tail;
  p->tail.prev = &p->head;
  p->head.refs = p->tail.refs = 1;
}

lp_ctx *lp_ctx_new(lp_pipeline *p, const lp_handler_ops *ops, void *state, const char *name) {
  lp_ctx *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  char gen[96];
  if (!name) {
    lp_pipeline_gen_name(p, ops->type_name ? ops->type_name : "handler", gen, sizeof gen);
    name = gen;
  }
  c->name = strdup(name);
  if (!c->name) {
    free(c);
    return NULL;
  }
  c->pipeline = p;
  c->ops = ops;
  c->state = state;
  c->mask = ops->mask;
  c->refs = 1;
  c->removed = true; // until linked
  c->host_ref = c->box_ref = -1;
  return c;
}

static bool is_end(const lp_ctx *c) { return c == &c->pipeline->head || c == &c->pipeline->tail; }

static void ctx_free(lp_ctx *c) {
  lp_loop *loop = c->pipeline->channel->loop;
  // A removed context kept its neighbours alive (see unlink_ctx).
  if (c->held_next) lp_ctx_unref(c->held_next);
  if (c->held_prev) lp_ctx_unref(c->held_prev);
  if (loop->host_ops && loop->host_ops->ctx_free) loop->host_ops->ctx_free(c);
  if (c->ops->free) c->ops->free(c);
  free(c->name);
  free(c);
}

static void bury(lp_pipeline *p, lp_ctx *c) {
  c->grave_next = p->graveyard;
  p->graveyard = c;
}

static void reap(lp_pipeline *p) {
  lp_ctx *c = p->graveyard;
  p->graveyard = NULL;
  while (c) {
    lp_ctx *next = c->grave_next;
    ctx_free(c);
    c = next;
  }
}

void lp_pipeline_leave(lp_pipeline *p) {
  if (--p->depth == 0 && p->graveyard) reap(p);
}

void lp_ctx_unref(lp_ctx *c) {
  if (is_end(c) || --c->refs) return;
  lp_pipeline *p = c->pipeline;
  if (p->depth) bury(p, c);
  else ctx_free(c);
}

static bool name_taken(lp_pipeline *p, const char *name) {
  for (lp_ctx *c = p->head.next; c != &p->tail; c = c->next)
    if (strcmp(c->name, name) == 0) return true;
  return false;
}

void lp_pipeline_gen_name(lp_pipeline *p, const char *base, char *out, size_t outlen) {
  do snprintf(out, outlen, "%s#%u", base, p->name_seq++);
  while (name_taken(p, out));
}

lp_ctx *lp_pipeline_get(lp_pipeline *p, const char *name) {
  for (lp_ctx *c = p->head.next; c != &p->tail; c = c->next)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

lp_ctx *lp_pipeline_first(lp_pipeline *p) { return p->head.next == &p->tail ? NULL : p->head.next; }
lp_ctx *lp_pipeline_next(lp_pipeline *p, lp_ctx *c) { return c->next == &p->tail ? NULL : c->next; }

static void link_after(lp_ctx *prev, lp_ctx *c) {
  c->prev = prev;
  c->next = prev->next;
  prev->next->prev = c;
  prev->next = c;
  c->removed = false;
}

static void call_added(lp_pipeline *p, lp_ctx *c) {
  c->added = true;
  if (c->ops->added) {
    p->depth++;
    c->ops->added(c);
    lp_pipeline_leave(p);
  }
}

int lp_pipeline_add(lp_pipeline *p, int where, const char *base, lp_ctx *c) {
  if (p->destroyed) return -EINVAL;
  if (name_taken(p, c->name)) return -EEXIST;
  lp_ctx *at;
  switch (where) {
  case LP_ADD_FIRST: at = &p->head; break;
  case LP_ADD_LAST: at = p->tail.prev; break;
  case LP_ADD_BEFORE:
  case LP_ADD_AFTER:
    at = lp_pipeline_get(p, base);
    if (!at) return -ENOENT;
    if (where == LP_ADD_BEFORE) at = at->prev;
    break;
  default: return -EINVAL;
  }
  link_after(at, c);
  p->count++;
  call_added(p, c);
  return 0;
}

static void hold(lp_ctx **slot, lp_ctx *c) {
  if (*slot) lp_ctx_unref(*slot);
  *slot = c;
  if (!is_end(c)) c->refs++;
}

static void unlink_ctx(lp_pipeline *p, lp_ctx *c) {
  // Keep c->next/prev, and keep them alive: an event passing through c now, or
  // started later from a handle to c, continues from there. No cycle can form:
  // a context only holds neighbours that were still linked when it left.
  c->prev->next = c->next;
  c->next->prev = c->prev;
  hold(&c->held_next, c->next);
  hold(&c->held_prev, c->prev);
  c->removed = true;
  p->count--;
}

static void call_removed_and_drop(lp_pipeline *p, lp_ctx *c) {
  p->depth++;
  if (c->added && c->ops->removed) c->ops->removed(c);
  c->added = false;
  const lp_host_ops *host = p->channel->loop->host_ops;
  if (host && host->ctx_removed) host->ctx_removed(c);
  lp_ctx_unref(c); // the link's reference
  lp_pipeline_leave(p);
}

int lp_pipeline_remove(lp_pipeline *p, lp_ctx *c) {
  if (c->removed || c == &p->head || c == &p->tail || c->pipeline != p) return -ENOENT;
  unlink_ctx(p, c);
  call_removed_and_drop(p, c);
  return 0;
}

int lp_pipeline_replace(lp_pipeline *p, lp_ctx *old, lp_ctx *c) {
  if (p->destroyed) return -EINVAL;
  if (old->removed || old == &p->head || old == &p->tail || old->pipeline != p) return -ENOENT;
  if (strcmp(old->name, c->name) != 0 && name_taken(p, c->name)) return -EEXIST;
  link_after(old, c);
  p->count++;
  unlink_ctx(p, old); // old->next is c: an event passing through old reaches c
  call_added(p, c);
  call_removed_and_drop(p, old);
  return 0;
}

void lp_pipeline_destroy(lp_pipeline *p) {
  if (p->destroyed) return;
  p->destroyed = true;
  p->depth++;
  // Netty removes from the tail side first for inbound order symmetry; any order
  // is fine as long as each handlerRemoved sees a consistent list.
  while (p->tail.prev != &p->head) {
    lp_ctx *c = p->tail.prev;
    unlink_ctx(p, c);
    call_removed_and_drop(p, c);
  }
  lp_pipeline_leave(p);
}

// ---- propagation -----------------------------------------------------------

static inline lp_ctx *next_inbound(lp_ctx *c, uint32_t bit) {
  do c = c->next;
  while (c->removed || !(c->mask & bit));
  return c;
}

static inline lp_ctx *prev_outbound(lp_ctx *c, uint32_t bit) {
  do c = c->prev;
  while (c->removed || !(c->mask & bit));
  return c;
}

void lp_ctx_fire(lp_ctx *from, int ev, lp_msg *m) {
  lp_pipeline *p = from->pipeline;
  if (LP_UNLIKELY(from == &p->tail)) { // nothing after the tail
    if (m) lp_msg_release(m);
    return;
  }
  lp_ctx *c = next_inbound(from, LP_MASK(ev));
  p->depth++;
  c->ops->inbound(c, ev, m);
  if (--p->depth == 0 && p->graveyard) reap(p);
}

void lp_pipeline_fire(lp_pipeline *p, int ev, lp_msg *m) { lp_ctx_fire(&p->head, ev, m); }

void lp_ctx_op(lp_ctx *from, int op, lp_msg *m, lp_future *promise) {
  lp_pipeline *p = from->pipeline;
  if (LP_UNLIKELY(from == &p->head)) { // the head itself asked: do it
    p->depth++;
    head_outbound(from, op, m, promise);
    lp_pipeline_leave(p);
    return;
  }
  lp_ctx *c = prev_outbound(from, LP_MASK(op));
  p->depth++;
  c->ops->outbound(c, op, m, promise);
  if (--p->depth == 0 && p->graveyard) reap(p);
}

void lp_pipeline_op(lp_pipeline *p, int op, lp_msg *m, lp_future *promise) { lp_ctx_op(&p->tail, op, m, promise); }
