// stats.c: the per-loop statistics, their sampler and the close log (see
// stats.h for the threads' rules and what the lag means).
#include "stats.h"
#include "stats_query.h"

#include "channel.h"
#include "host.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const lp_close_cause_name[LP_CLOSE_COUNT] = {
    "local", "eof", "reset", "timeout", "exception", "maxConnections", "EMFILE", "shutdown", "local", "error",
};

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define STORE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

// Gauges that are cheaper to compute now and then than to keep up to date on
// every write: a walk over the loop's channels.
static void sample_gauges(lp_loop *loop) {
  lp_stats *st = &loop->stats;
  uint64_t pending = 0, unwritable = 0;
  for (lp_list *n = loop->channels.next; n != &loop->channels; n = n->next) {
    const lp_channel *ch = lp_container_of(n, lp_channel, link);
    if (!(ch->flags & LP_CH_IN_STATS)) continue;
    pending += ch->out.pending;
    if (ch->flags & LP_CH_UNWRITABLE) unwritable++;
  }
  STORE(st->pending, pending);
  STORE(st->unwritable, unwritable);
  if (loop->host_ops && loop->host_ops->memory) STORE(st->host_memory, loop->host_ops->memory(loop));
}

static void flush_suppressed(lp_stats *st, double now) {
  if (now - st->log_window < 1.0) return;
  for (int c = 0; c < LP_CLOSE_COUNT; c++) {
    if (st->suppressed[c])
      lp_log(LP_LOG_INFO, 0, "suppressed %llu more '%s' close line(s) in the last %.0f s",
             (unsigned long long)st->suppressed[c], lp_close_cause_name[c], now - st->log_window);
    st->suppressed[c] = 0;
    st->logged[c] = 0;
  }
  st->log_window = now;
}

static void arm(lp_loop *loop) {
  lp_stats *st = &loop->stats;
  st->due = ev_now(loop->ev) + LP_STATS_TICK; // what libev schedules the timer for
  ev_timer_set(&st->sampler, LP_STATS_TICK, 0.);
  ev_timer_start(loop->ev, &st->sampler);
}

static void on_tick(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(revents);
  lp_loop *loop = ev_userdata(ev);
  lp_stats *st = lp_container_of(w, lp_stats, sampler);
  double now = ev_time(), lag = now - st->due;
  uint64_t n = LOAD(st->lag_count);
  uint64_t us = lag > 0 ? (uint64_t)(lag * 1e6) : 0;
  STORE(st->lag_us[n % LP_STATS_LAG_SAMPLES], us > UINT32_MAX ? UINT32_MAX : (uint32_t)us);
  STORE(st->lag_count, n + 1);
  if (++st->ticks % LP_STATS_GAUGE_TICKS == 0) sample_gauges(loop);
  flush_suppressed(st, ev_now(ev));
  ev_ref(ev); // stopped by itself: keep the loop's count of active watchers as it was
  arm(loop);
  ev_unref(ev);
}

void lp_stats_start(lp_loop *loop) {
  lp_stats *st = &loop->stats;
  st->log_window = ev_now(loop->ev);
  ev_init(&st->sampler, on_tick);
  arm(loop);
  ev_unref(loop->ev); // the sampler alone does not keep a loop running
}

void lp_stats_stop(lp_loop *loop) {
  lp_stats *st = &loop->stats;
  if (!ev_is_active(&st->sampler)) return;
  ev_ref(loop->ev);
  ev_timer_stop(loop->ev, &st->sampler);
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

void lp_stats_read(lp_loop *loop, bool own, lp_stats_snapshot *out) {
  lp_stats *st = &loop->stats;
  if (own) sample_gauges(loop);
  memset(out, 0, sizeof *out);
  out->loop_id = loop->id;
  out->accepted = LOAD(st->accepted);
  out->connected = LOAD(st->connected);
  out->active = LOAD(st->active);
  for (int c = 0; c < LP_CLOSE_COUNT; c++) out->closed[c] = LOAD(st->closed[c]);
  out->closed[LP_CLOSE_LOCAL] += out->closed[LP_CLOSE_NONE];
  out->closed[LP_CLOSE_NONE] = 0;
  out->bytes_in = LOAD(st->bytes_in);
  out->bytes_out = LOAD(st->bytes_out);
  out->reads = LOAD(st->reads);
  out->writes = LOAD(st->writes);
  out->pending = LOAD(st->pending);
  out->unwritable = LOAD(st->unwritable);
  out->host_memory = LOAD(st->host_memory);
  out->handler_errors_other = LOAD(st->handler_errors_other);
  unsigned nh = atomic_load_explicit(&st->handler_names, memory_order_acquire);
  for (unsigned i = 0; i < nh; i++) {
    memcpy(out->handler[i].name, st->handler[i].name, LP_STATS_NAME_MAX);
    out->handler[i].count = LOAD(st->handler[i].count);
  }
  out->nhandlers = nh;
  uint64_t taken = LOAD(st->lag_count);
  unsigned n = taken < LP_STATS_LAG_SAMPLES ? (unsigned)taken : LP_STATS_LAG_SAMPLES;
  uint32_t lag[LP_STATS_LAG_SAMPLES];
  for (unsigned i = 0; i < n; i++) lag[i] = (uint32_t)LOAD(st->lag_us[i]);
  out->lag_samples = n;
  if (n) {
    qsort(lag, n, sizeof lag[0], cmp_u32);
    // Nearest rank: the smallest sample with at least p of them at or below it.
    out->lag_p50 = lag[(n * 50 + 99) / 100 - 1] / 1e6;
    out->lag_p99 = lag[(n * 99 + 99) / 100 - 1] / 1e6;
    out->lag_max = lag[n - 1] / 1e6;
  }
}

void lp_stats_handler_error(lp_loop *loop, const char *name) {
  lp_stats *st = &loop->stats;
  unsigned nh = atomic_load_explicit(&st->handler_names, memory_order_relaxed); // the owner's own count
  for (unsigned i = 0; i < nh; i++) {
    if (strncmp(st->handler[i].name, name, LP_STATS_NAME_MAX - 1) == 0) {
      LP_STAT_ADD(st, handler[i].count, 1);
      return;
    }
  }
  if (nh == LP_STATS_HANDLERS) {
    LP_STAT_ADD(st, handler_errors_other, 1);
    return;
  }
  snprintf(st->handler[nh].name, LP_STATS_NAME_MAX, "%s", name);
  STORE(st->handler[nh].count, 1);
  atomic_store_explicit(&st->handler_names, nh + 1, memory_order_release); // the name is complete before it is seen
}

void lp_stats_closed(lp_loop *loop, int cause, const lp_channel *ch, const char *detail) {
  lp_stats *st = &loop->stats;
  if (cause == LP_CLOSE_NONE) cause = LP_CLOSE_LOCAL;
  LP_STAT_ADD(st, closed[cause], 1);
  if (cause == LP_CLOSE_EOF) return;
  int level = cause == LP_CLOSE_LOCAL ? LP_LOG_DEBUG : LP_LOG_INFO;
  if (!LP_LOG_ENABLED(level)) return;
  double now = ev_now(loop->ev);
  flush_suppressed(st, now);
  if (st->logged[cause] >= LP_STATS_LOG_BURST) {
    st->suppressed[cause]++;
    return;
  }
  st->logged[cause]++;
  char addr[160] = "";
  if (ch) lp_channel_addresses(ch, addr, sizeof addr);
  lp_log_field f = {"cause", lp_close_cause_name[cause], false};
  lp_log_fields(level, ch ? ch->id : 0, &f, 1,
                "connection closed: %s%s%s%s%s", lp_close_cause_name[cause], addr[0] ? " " : "", addr,
                detail ? ": " : "", detail ? detail : "");
}

// ---- live channels across loops ----------------------------------------------------

static void query_unref(lp_chan_query *q) {
  if (atomic_fetch_sub(&q->refs, 1) != 1) return;
  for (int i = 0; i < q->nparts; i++) free(q->parts[i].infos);
  free(q);
}

static void query_finish(lp_chan_query *q) {
  if (q->done) return;
  q->done = true;
  if (ev_is_active(&q->timer)) ev_timer_stop(q->asker->ev, &q->timer);
  q->fn(q, q->ud);
  query_unref(q); // the asker's reference
}

static void on_query_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  query_finish(lp_container_of(w, lp_chan_query, timer));
}

// On the asker's thread: one loop answered.
static void run_reply(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  lp_chan_part *part = lp_container_of(t, lp_chan_part, reply);
  lp_chan_query *q = part->q;
  if (!q->done) {
    part->answered = true;
    if (++q->nanswered == q->nparts) query_finish(q);
  }
  query_unref(q); // the task's reference
}

static void describe_handlers(const lp_channel *ch, char *out, size_t outlen) {
  size_t n = 0;
  out[0] = 0;
  if (ch->pipeline.destroyed) return;
  for (const lp_ctx *c = ch->pipeline.head.next; c && c != &ch->pipeline.tail && n + 1 < outlen; c = c->next) {
    int k = snprintf(out + n, outlen - n, "%s%s", n ? "," : "", c->name ? c->name : "?");
    if (k < 0) break;
    n += (size_t)k < outlen - n ? (size_t)k : outlen - n - 1;
  }
}

// On the asked loop's thread: list its channels, then answer.
static void run_ask(lp_task *t, lp_loop *loop) {
  lp_chan_part *part = lp_container_of(t, lp_chan_part, ask);
  lp_chan_query *q = part->q;
  size_t cap = q->max_per_loop < loop->nchannels ? q->max_per_loop : loop->nchannels, seen = 0;
  part->infos = cap ? calloc(cap, sizeof *part->infos) : NULL; // NULL (out of memory): an answer with none
  double now = ev_now(loop->ev);
  for (lp_list *n = loop->channels.next; n != &loop->channels; n = n->next) {
    const lp_channel *ch = lp_container_of(n, lp_channel, link);
    if (!(ch->flags & LP_CH_IN_STATS)) continue;
    seen++;
    if (part->n == cap || !part->infos) continue; // counted, not listed
    lp_chan_info *ci = &part->infos[part->n++];
    ci->id = ch->id;
    lp_chaddr_format(&ch->local, ci->local, sizeof ci->local);
    lp_chaddr_format(&ch->remote, ci->remote, sizeof ci->remote);
    ci->age = now - ch->created;
    ci->bytes_in = ch->bytes_in;
    ci->bytes_out = ch->bytes_out;
    ci->pending = ch->out.pending;
    ci->unwritable = ch->flags & LP_CH_UNWRITABLE;
    describe_handlers(ch, ci->handlers, sizeof ci->handlers);
  }
  part->truncated = seen > part->n;
  part->reply.run = run_reply;
  lp_loop_post(q->asker, &part->reply);
}

lp_chan_query *lp_chan_query_start(lp_loop *asker, lp_loop *const *loops, int n, size_t max_per_loop, double timeout,
                                   lp_chan_query_fn fn, void *ud) {
  lp_chan_query *q = calloc(1, sizeof *q + (size_t)n * sizeof q->parts[0]);
  if (!q) return NULL;
  q->asker = asker;
  q->nparts = n;
  q->max_per_loop = max_per_loop;
  q->fn = fn;
  q->ud = ud;
  atomic_init(&q->refs, 1 + n);
  ev_timer_init(&q->timer, on_query_timeout, n ? timeout : 0., 0.);
  ev_timer_start(asker->ev, &q->timer);
  for (int i = 0; i < n; i++) {
    lp_chan_part *part = &q->parts[i];
    part->q = q;
    part->loop = loops[i];
    part->loop_id = loops[i]->id;
    part->ask.run = run_ask;
    lp_loop_post(loops[i], &part->ask);
  }
  return q;
}
