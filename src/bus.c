// bus.c: see bus.h. Each message is one malloc (task, topic, bytes), owned by
// the bus from publish until its task has run on the endpoint's loop (a loop
// being freed runs its posted tasks, so none is lost or leaked).
#include "bus.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct topic_count {
  char *name;
  size_t len;
  size_t subscribers;
} topic_count;

struct lp_bus_ep {
  lp_list link;            // g_eps, under g_lock
  lp_loop *loop;
  lp_bus_deliver fn;
  void *ud;
  bool attached;           // loop thread (deliveries) and g_lock (publish) both read it
  atomic_size_t queued;    // posted, not yet run
  atomic_size_t max_queued;
  atomic_int refs;         // 1 while attached, +1 per posted message
  topic_count *topics;     // under g_lock
  size_t ntopics, cap;
};

typedef struct msg {
  lp_task task;
  lp_bus_ep *ep;
  size_t tlen, len;
  char bytes[];            // topic, then data
} msg;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static lp_list g_eps = {&g_eps, &g_eps};

static void unref(lp_bus_ep *ep) {
  if (atomic_fetch_sub(&ep->refs, 1) != 1) return;
  for (size_t i = 0; i < ep->ntopics; i++) free(ep->topics[i].name);
  free(ep->topics);
  free(ep);
}

lp_bus_ep *lp_bus_attach(lp_loop *loop, lp_bus_deliver fn, void *ud, size_t max_queued) {
  lp_bus_ep *ep = calloc(1, sizeof *ep);
  if (!ep) return NULL;
  ep->loop = loop;
  ep->fn = fn;
  ep->ud = ud;
  ep->attached = true;
  atomic_init(&ep->queued, 0);
  atomic_init(&ep->max_queued, max_queued ? max_queued : LP_BUS_DEFAULT_QUEUE);
  atomic_init(&ep->refs, 1);
  pthread_mutex_lock(&g_lock);
  lp_list_push(&g_eps, &ep->link);
  pthread_mutex_unlock(&g_lock);
  return ep;
}

void lp_bus_detach(lp_bus_ep *ep) {
  if (!ep) return;
  pthread_mutex_lock(&g_lock);
  lp_list_remove(&ep->link);
  ep->attached = false;
  pthread_mutex_unlock(&g_lock);
  unref(ep);
}

void lp_bus_set_max_queued(lp_bus_ep *ep, size_t max_queued) {
  atomic_store(&ep->max_queued, max_queued ? max_queued : LP_BUS_DEFAULT_QUEUE);
}

size_t lp_bus_queued(const lp_bus_ep *ep) { return atomic_load(&((lp_bus_ep *)ep)->queued); }

int lp_bus_subscribe(lp_bus_ep *ep, const char *topic, size_t tlen, int delta) {
  if (tlen > LP_BUS_TOPIC_MAX) return -EINVAL;
  int rc = 0;
  pthread_mutex_lock(&g_lock);
  size_t i = 0;
  while (i < ep->ntopics && !(ep->topics[i].len == tlen && memcmp(ep->topics[i].name, topic, tlen) == 0)) i++;
  if (i == ep->ntopics && delta > 0) {
    if (ep->ntopics == ep->cap) {
      size_t cap = ep->cap ? ep->cap * 2 : 4;
      topic_count *t = realloc(ep->topics, cap * sizeof *t);
      if (!t) rc = -ENOMEM;
      else {
        ep->topics = t;
        ep->cap = cap;
      }
    }
    char *name = rc ? NULL : malloc(tlen ? tlen : 1);
    if (!rc && !name) rc = -ENOMEM;
    if (!rc) {
      memcpy(name, topic, tlen);
      ep->topics[ep->ntopics++] = (topic_count){name, tlen, 0};
    }
  }
  if (!rc && i < ep->ntopics) {
    topic_count *t = &ep->topics[i];
    if (delta > 0) t->subscribers++;
    else if (t->subscribers > 0 && --t->subscribers == 0) {
      free(t->name);
      ep->topics[i] = ep->topics[--ep->ntopics];
    }
  }
  pthread_mutex_unlock(&g_lock);
  return rc;
}

static void run_msg(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  msg *m = lp_container_of(t, msg, task);
  lp_bus_ep *ep = m->ep;
  atomic_fetch_sub(&ep->queued, 1);
  // attached is written on this thread (detach) or read under g_lock: no race here.
  if (ep->attached) ep->fn(ep->ud, m->bytes, m->tlen, m->bytes + m->tlen, m->len);
  free(m);
  unref(ep);
}

int lp_bus_publish(const char *topic, size_t tlen, const char *data, size_t len, size_t *receivers,
                   size_t *dropped) {
  *receivers = *dropped = 0;
  int rc = 0;
  pthread_mutex_lock(&g_lock);
  for (lp_list *l = g_eps.next; l != &g_eps && !rc; l = l->next) {
    lp_bus_ep *ep = lp_container_of(l, lp_bus_ep, link);
    size_t subs = 0;
    for (size_t i = 0; i < ep->ntopics; i++)
      if (ep->topics[i].len == tlen && memcmp(ep->topics[i].name, topic, tlen) == 0) subs = ep->topics[i].subscribers;
    if (!subs) continue;
    if (atomic_load(&ep->queued) >= atomic_load(&ep->max_queued)) {
      (*dropped)++;
      continue;
    }
    msg *m = malloc(sizeof *m + tlen + len);
    if (!m) {
      rc = -ENOMEM;
      break;
    }
    m->task.run = run_msg;
    m->task.next = NULL;
    m->ep = ep;
    m->tlen = tlen;
    m->len = len;
    if (tlen) memcpy(m->bytes, topic, tlen);
    if (len) memcpy(m->bytes + tlen, data, len);
    atomic_fetch_add(&ep->refs, 1);
    atomic_fetch_add(&ep->queued, 1);
    lp_loop_post(ep->loop, &m->task);
    *receivers += subs;
  }
  pthread_mutex_unlock(&g_lock);
  return rc;
}
