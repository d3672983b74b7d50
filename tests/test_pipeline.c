// test_pipeline.c: the pipeline without Lua: propagation order, masks,
// modification during propagation, names, and context lifetimes (ASan checks
// that removed contexts are freed exactly once, never under a running event).
#include "buffer.h"
#include "channel.h"
#include "check.h"
#include "future.h"
#include "loop.h"
#include "pipeline.h"

#include <errno.h>
#include <string.h>

static char trace[1024];

static void note(const char *s) {
  strncat(trace, s, sizeof trace - strlen(trace) - 1);
}

// A recording handler: state is its one-letter tag.
typedef struct {
  const char *tag;
  int remove_self_on;   // event at which it removes itself (-1 never)
  lp_ctx *remove_other; // removed when it sees a read
  bool stop;            // do not pass events on
} rec;

static void rec_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  rec *r = ctx->state;
  note(r->tag);
  note(ev == LP_EV_READ ? "r " : ev == LP_EV_ACTIVE ? "a " : "e ");
  if (r->remove_self_on == ev) lp_pipeline_remove(ctx->pipeline, ctx);
  if (ev == LP_EV_READ && r->remove_other) {
    lp_pipeline_remove(ctx->pipeline, r->remove_other);
    r->remove_other = NULL;
  }
  if (!r->stop) lp_ctx_fire(ctx, ev, m);
  else if (m) lp_msg_release(m);
}

static void rec_outbound(lp_ctx *ctx, int op, lp_msg *m, lp_future *f) {
  rec *r = ctx->state;
  note(r->tag);
  note(op == LP_OP_WRITE ? "w " : "f ");
  lp_ctx_op(ctx, op, m, f);
}

static void rec_added(lp_ctx *ctx) {
  note("+");
  note(((rec *)ctx->state)->tag);
  note(" ");
}

static void rec_removed(lp_ctx *ctx) {
  note("-");
  note(((rec *)ctx->state)->tag);
  note(" ");
}

static const lp_handler_ops full_ops = {"rec", LP_MASK_INBOUND | LP_MASK_OUTBOUND, rec_added, rec_removed,
                                        rec_inbound, rec_outbound, NULL};
static const lp_handler_ops read_only_ops = {"reader", LP_MASK(LP_EV_READ), NULL, NULL, rec_inbound, NULL, NULL};

// The head's I/O: record what reached it.
static int head_writes, head_flushes;
static void fake_write(lp_channel *ch, lp_msg *m, lp_future *f) {
  (void)ch, (void)f;
  head_writes++;
  note("H ");
  lp_msg_release(m);
}
static void fake_flush(lp_channel *ch) { (void)ch, head_flushes++; }
static void fake_read(lp_channel *ch) { (void)ch; }
static void fake_close(lp_channel *ch, lp_future *f) {
  lp_channel_close_now(ch);
  if (f) lp_future_succeed(f);
}
static const lp_transport fake_transport = {"fake", fake_write, fake_flush, fake_read, fake_close, NULL, NULL, NULL};

static lp_ctx *add(lp_pipeline *p, const lp_handler_ops *ops, rec *r, const char *name) {
  lp_ctx *c = lp_ctx_new(p, ops, r, name);
  CHECK(c != NULL);
  CHECK(lp_pipeline_add(p, LP_ADD_LAST, NULL, c) == 0);
  return c;
}

static void fire_read(lp_channel *ch) {
  lp_msg m = lp_msg_buf(lp_buf_from(ch->loop->pool, "x", 1));
  lp_channel_fire(ch, LP_EV_READ, &m);
}

int main(void) {
  lp_loop *loop = lp_loop_new(0);
  CHECK(loop != NULL);
  lp_channel *ch = lp_channel_new(loop, &fake_transport, -1, NULL);
  lp_pipeline *p = &ch->pipeline;
  rec a = {"A", -1, NULL, false}, b = {"B", -1, NULL, false}, c = {"C", -1, NULL, false};

  // Order: inbound head->tail, outbound tail->head; added callbacks on add.
  add(p, &full_ops, &a, "a");
  lp_ctx *cb = add(p, &read_only_ops, &b, "b");
  lp_ctx *cc = add(p, &full_ops, &c, "c");
  CHECK(strcmp(trace, "+A +C ") == 0);
  trace[0] = 0;
  fire_read(ch);
  CHECK(strcmp(trace, "Ar Br Cr ") == 0);
  trace[0] = 0;
  lp_msg w = lp_msg_buf(lp_buf_from(loop->pool, "y", 1));
  lp_channel_write(ch, &w, NULL);
  CHECK(strcmp(trace, "Cw Aw H ") == 0); // b has no write: skipped without a call
  CHECK(head_writes == 1);

  // The mask: b is not called for channelActive.
  trace[0] = 0;
  lp_channel_fire(ch, LP_EV_ACTIVE, NULL);
  CHECK(strcmp(trace, "Aa Ca ") == 0);

  // Names: duplicates refused, generated names unique, get/first/next.
  rec d = {"D", -1, NULL, false};
  lp_ctx *dup = lp_ctx_new(p, &full_ops, &d, "a");
  CHECK(lp_pipeline_add(p, LP_ADD_LAST, NULL, dup) == -EEXIST);
  lp_ctx_unref(dup);
  lp_ctx *g1 = lp_ctx_new(p, &read_only_ops, &d, NULL);
  CHECK(strcmp(g1->name, "reader#0") == 0);
  CHECK(lp_pipeline_add(p, LP_ADD_BEFORE, "nope", g1) == -ENOENT);
  CHECK(lp_pipeline_add(p, LP_ADD_BEFORE, "c", g1) == 0);
  CHECK(lp_pipeline_get(p, "reader#0") == g1);
  CHECK(lp_pipeline_next(p, cb) == g1 && lp_pipeline_next(p, g1) == cc);
  CHECK(lp_pipeline_first(p)->state == &a);
  CHECK(p->count == 4);
  trace[0] = 0;
  g1->refs++; // a handle (as the Lua box holds) keeps the removed context alive
  CHECK(lp_pipeline_remove(p, g1) == 0);
  CHECK(lp_pipeline_remove(p, g1) == -ENOENT); // only once
  CHECK(g1->removed);
  lp_ctx_unref(g1);
  CHECK(p->count == 3);

  // A handler that removes itself during its event: the event goes on, the
  // context is freed afterwards (ASan would report a use after free).
  trace[0] = 0;
  b.remove_self_on = LP_EV_READ;
  fire_read(ch);
  CHECK(strcmp(trace, "Ar Br Cr ") == 0);
  CHECK(lp_pipeline_get(p, "b") == NULL && p->count == 2);
  trace[0] = 0;
  fire_read(ch);
  CHECK(strcmp(trace, "Ar Cr ") == 0);

  // A handler that removes the next one while the event is on its way.
  rec e = {"E", -1, NULL, false};
  lp_ctx *ce = lp_ctx_new(p, &read_only_ops, &e, "e");
  CHECK(lp_pipeline_add(p, LP_ADD_AFTER, "a", ce) == 0);
  a.remove_other = ce;
  trace[0] = 0;
  fire_read(ch);
  CHECK(strcmp(trace, "Ar Cr ") == 0); // e was removed before the event reached it

  // Replace: the new handler takes the old one's place and sees the events.
  rec f = {"F", -1, NULL, false};
  lp_ctx *cf = lp_ctx_new(p, &full_ops, &f, "f");
  trace[0] = 0;
  CHECK(lp_pipeline_replace(p, cc, cf) == 0);
  CHECK(strcmp(trace, "+F -C ") == 0);
  trace[0] = 0;
  fire_read(ch);
  CHECK(strcmp(trace, "Ar Fr ") == 0);

  // A handler that stops propagation: the tail never sees the message and the
  // handler released it (ASan: no leak).
  f.stop = true;
  trace[0] = 0;
  fire_read(ch);
  CHECK(strcmp(trace, "Ar Fr ") == 0);

  // Destroy: handlerRemoved for everyone left, then the pipeline refuses adds.
  trace[0] = 0;
  lp_channel_ref(ch); // keep it past the teardown to look at it
  lp_channel_close_now(ch);
  lp_loop_run_tasks(loop); // the teardown task: inactive, unregistered, destroy
  CHECK(strstr(trace, "-A") != NULL && strstr(trace, "-F") != NULL);
  CHECK(p->destroyed && p->count == 0);
  lp_channel_unref(ch);
  lp_loop_free(loop);
  return check_report();
}
