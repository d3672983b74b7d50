// shdict.c: the shared dictionary (see shdict.h for the threading and memory
// rules). Each stripe owns its entries: a chained hash table for lookups and
// an LRU list (most recent first) for eviction, both under the stripe's
// mutex. An entry is one malloc (struct, key, string value); a list value owns
// its items, one malloc each. d->used counts every entry's and item's cost
// and is changed only through reserve() (before allocating) and release()
// (after freeing), so it never exceeds capacity.
#include "shdict.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INITIAL_BUCKETS 16

typedef struct item {
  lp_list link;
  uint8_t type;
  union {
    bool b;
    int64_t i;
    double d;
  };
  size_t len;
  char data[]; // string bytes
} item;

typedef struct entry {
  struct entry *hnext;  // bucket chain
  lp_list lru;          // stripe's LRU list
  uint64_t hash;
  uint64_t expire;      // ms on the dictionary's clock; 0: never
  size_t cost;          // what it counts against the budget, items included
  uint32_t klen;
  uint8_t type;
  union {
    bool b;
    int64_t i;
    double d;
    size_t len;         // LP_SHV_STR: value bytes after the key
    struct {
      lp_list items;
      size_t n;
    } list;
  } v;
  char data[];          // key, then a string value
} entry;

typedef struct stripe {
  pthread_mutex_t lock;
  entry **buckets;
  size_t nbuckets, count;
  lp_list lru;          // head.next: most recently used
} stripe;

struct lp_shdict {
  char name[LP_SHDICT_NAME_MAX];
  size_t capacity;
  atomic_size_t used;
  atomic_uint_fast64_t fixed_clock; // tests; 0: CLOCK_MONOTONIC
  stripe stripes[LP_SHDICT_STRIPES];
};

const char *lp_shdict_strerror(int rc) {
  switch (rc) {
  case LP_SHD_OK: return "ok";
  case LP_SHD_NOMEM: return "no memory";
  case LP_SHD_EXISTS: return "exists";
  case LP_SHD_NOTFOUND: return "not found";
  case LP_SHD_NOTNUM: return "not a number";
  case LP_SHD_NOTLIST: return "value not a list";
  case LP_SHD_OVERFLOW: return "increment would overflow";
  case LP_SHD_ISLIST: return "value is a list";
  default: return "unknown error";
  }
}

uint64_t lp_shdict_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  // +1: a real time is never 0, which means "never expires" in an entry.
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 1;
}

void lp_shdict_set_clock(lp_shdict *d, uint64_t now_ms) { atomic_store(&d->fixed_clock, now_ms); }

static uint64_t now_of(lp_shdict *d) {
  uint64_t f = atomic_load_explicit(&d->fixed_clock, memory_order_relaxed);
  return f ? f : lp_shdict_now_ms();
}

static uint64_t hash_key(const char *k, size_t n) {
  uint64_t h = 1469598103934665603ull; // FNV-1a, then a final mix so both ends of the word are good
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

static stripe *stripe_of(lp_shdict *d, uint64_t h) { return &d->stripes[h >> 59 & (LP_SHDICT_STRIPES - 1)]; }

lp_shdict *lp_shdict_new(const char *name, size_t capacity) {
  if (capacity < LP_SHDICT_MIN_SIZE) capacity = LP_SHDICT_MIN_SIZE;
  lp_shdict *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  snprintf(d->name, sizeof d->name, "%s", name ? name : "");
  d->capacity = capacity;
  atomic_init(&d->used, 0);
  atomic_init(&d->fixed_clock, 0);
  for (int i = 0; i < LP_SHDICT_STRIPES; i++) {
    stripe *s = &d->stripes[i];
    pthread_mutex_init(&s->lock, NULL);
    lp_list_init(&s->lru);
    s->buckets = calloc(INITIAL_BUCKETS, sizeof *s->buckets);
    if (!s->buckets) {
      for (int j = 0; j <= i; j++) {
        free(d->stripes[j].buckets);
        pthread_mutex_destroy(&d->stripes[j].lock);
      }
      free(d);
      return NULL;
    }
    s->nbuckets = INITIAL_BUCKETS;
  }
  return d;
}

const char *lp_shdict_name(const lp_shdict *d) { return d->name; }
size_t lp_shdict_capacity(const lp_shdict *d) { return d->capacity; }
size_t lp_shdict_free_space(const lp_shdict *d) {
  size_t u = atomic_load(&((lp_shdict *)d)->used);
  return u >= d->capacity ? 0 : d->capacity - u;
}

// ---- entries (stripe locked) ----------------------------------------------------------

static void release(lp_shdict *d, size_t n) { atomic_fetch_sub(&d->used, n); }

static void free_entry(lp_shdict *d, entry *e) {
  if (e->type == LP_SHV_LIST) {
    while (!lp_list_empty(&e->v.list.items)) {
      item *it = lp_container_of(e->v.list.items.next, item, link);
      lp_list_remove(&it->link);
      free(it);
    }
  }
  release(d, e->cost);
  free(e);
}

// Take e out of its stripe (chain and LRU), then free it.
static void drop(lp_shdict *d, stripe *s, entry *e) {
  entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  lp_list_remove(&e->lru);
  s->count--;
  free_entry(d, e);
}

static bool expired(const entry *e, uint64_t now) { return e->expire && e->expire <= now; }

// The live entry for key, moved to the LRU front; an expired one is reclaimed.
static entry *find(lp_shdict *d, stripe *s, const char *k, size_t n, uint64_t h, uint64_t now) {
  for (entry *e = s->buckets[h & (s->nbuckets - 1)]; e; e = e->hnext) {
    if (e->hash == h && e->klen == n && memcmp(e->data, k, n) == 0) {
      if (expired(e, now)) {
        drop(d, s, e);
        return NULL;
      }
      lp_list_remove(&e->lru);
      lp_list_push(s->lru.next, &e->lru); // before the old first: the front
      return e;
    }
  }
  return NULL;
}

static void grow(stripe *s) {
  size_t nb = s->nbuckets * 2;
  entry **b = calloc(nb, sizeof *b);
  if (!b) return; // longer chains, still correct
  for (size_t i = 0; i < s->nbuckets; i++) {
    entry *e = s->buckets[i];
    while (e) {
      entry *next = e->hnext;
      e->hnext = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
      e = next;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = nb;
}

static void link_entry(stripe *s, entry *e) {
  entry **slot = &s->buckets[e->hash & (s->nbuckets - 1)];
  e->hnext = *slot;
  *slot = e;
  lp_list_push(s->lru.next, &e->lru);
  if (++s->count > s->nbuckets) grow(s);
}

// Evict the least recently used entry of s other than keep; whether it did.
static bool evict_one(lp_shdict *d, stripe *s, const entry *keep, uint64_t now, bool *evicted) {
  for (lp_list *l = s->lru.prev; l != &s->lru; l = l->prev) {
    entry *e = lp_container_of(l, entry, lru);
    if (e == keep) continue;
    if (!expired(e, now) && evicted) *evicted = true;
    drop(d, s, e);
    return true;
  }
  return false;
}

// Count need more bytes, credit of which come back when the caller frees
// an entry it holds (keep): evict from s (locked), then from other stripes
// that can be locked at once. true when reserved.
// A new entry's fixed part: zeroed, then its key, hash, cost and expiry (0: none).
static void init_entry(entry *e, uint64_t h, const void *key, size_t klen, size_t cost, uint64_t expire) {
  memset(e, 0, sizeof *e);
  e->hash = h;
  e->klen = (uint32_t)klen;
  e->cost = cost;
  e->expire = expire;
  memcpy(e->data, key, klen);
}

static bool reserve(lp_shdict *d, stripe *s, size_t need, size_t credit, const entry *keep, uint64_t now,
                    bool *evicted) {
  if (need > d->capacity + credit) return false;
  int other = 0;
  for (;;) {
    size_t cur = atomic_load(&d->used);
    if (cur + need <= d->capacity + credit) {
      if (atomic_compare_exchange_weak(&d->used, &cur, cur + need)) return true;
      continue;
    }
    if (evict_one(d, s, keep, now, evicted)) continue;
    // Our stripe has nothing left to give: other stripes, without waiting.
    bool got = false;
    for (; other < LP_SHDICT_STRIPES && !got; other++) {
      stripe *o = &d->stripes[other];
      if (o == s || pthread_mutex_trylock(&o->lock) != 0) continue;
      got = evict_one(d, o, NULL, now, evicted);
      pthread_mutex_unlock(&o->lock);
      if (got) other--; // that stripe may have more
    }
    if (!got) return false;
  }
}

static size_t entry_cost(size_t klen, size_t vlen) { return sizeof(entry) + klen + vlen; }
static size_t item_cost(size_t len) { return sizeof(item) + len; }

static void set_scalar(entry *e, const lp_shval *v) {
  e->type = (uint8_t)v->type;
  switch (v->type) {
  case LP_SHV_BOOL: e->v.b = v->b; break;
  case LP_SHV_INT: e->v.i = v->i; break;
  case LP_SHV_FLOAT: e->v.d = v->d; break;
  case LP_SHV_STR:
    e->v.len = v->len;
    if (v->len) memcpy(e->data + e->klen, v->str, v->len);
    break;
  default: break;
  }
}

static bool scratch_fit(lp_shscratch *sc, size_t n) {
  if (n <= sc->cap) return true;
  size_t cap = sc->cap ? sc->cap : 256;
  while (cap < n) cap *= 2;
  char *p = realloc(sc->data, cap);
  if (!p) return false;
  sc->data = p;
  sc->cap = cap;
  return true;
}

static int copy_out(uint8_t type, bool b, int64_t i, double dd, const char *str, size_t len, lp_shval *out,
                    lp_shscratch *sc) {
  memset(out, 0, sizeof *out);
  out->type = type;
  switch (type) {
  case LP_SHV_BOOL: out->b = b; break;
  case LP_SHV_INT: out->i = i; break;
  case LP_SHV_FLOAT: out->d = dd; break;
  case LP_SHV_STR:
    if (!scratch_fit(sc, len ? len : 1)) return LP_SHD_NOMEM;
    if (len) memcpy(sc->data, str, len);
    out->str = sc->data;
    out->len = len;
    break;
  default: break;
  }
  return 0;
}

static int copy_entry(const entry *e, lp_shval *out, lp_shscratch *sc) {
  if (e->type == LP_SHV_LIST) {
    memset(out, 0, sizeof *out);
    out->type = LP_SHV_LIST;
    out->len = e->v.list.n;
    return LP_SHD_ISLIST;
  }
  // Read only the union member the type says (another one may hold any bits).
  return copy_out(e->type, e->type == LP_SHV_BOOL && e->v.b, e->type == LP_SHV_INT ? e->v.i : 0,
                  e->type == LP_SHV_FLOAT ? e->v.d : 0, e->data + e->klen, e->type == LP_SHV_STR ? e->v.len : 0, out,
                  sc);
}

// ---- operations -----------------------------------------------------------------------------

int lp_shdict_set(lp_shdict *d, const char *key, size_t klen, const lp_shval *v, uint64_t ttl_ms, int mode,
                  bool *evicted) {
  if (evicted) *evicted = false;
  if (klen > UINT32_MAX) return LP_SHD_NOMEM;
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *old = find(d, s, key, klen, h, now);
  int rc = 0;
  if (mode == LP_SHSET_ADD && old) rc = LP_SHD_EXISTS;
  else if (mode == LP_SHSET_REPLACE && !old) rc = LP_SHD_NOTFOUND;
  else if (v->type == LP_SHV_NIL) {
    if (old) drop(d, s, old);
  } else {
    size_t vlen = v->type == LP_SHV_STR ? v->len : 0, cost = entry_cost(klen, vlen);
    entry *e = NULL;
    if (!reserve(d, s, cost, old ? old->cost : 0, old, now, evicted)) {
      rc = LP_SHD_NOMEM;
    } else if (!(e = malloc(cost))) {
      release(d, cost);
      rc = LP_SHD_NOMEM;
    } else {
      init_entry(e, h, key, klen, cost, ttl_ms ? now + ttl_ms : 0);
      set_scalar(e, v);
      if (old) drop(d, s, old);
      link_entry(s, e);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int lp_shdict_get(lp_shdict *d, const char *key, size_t klen, lp_shval *out, lp_shscratch *sc, uint64_t *ttl_ms) {
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  int rc = e ? copy_entry(e, out, sc) : LP_SHD_NOTFOUND;
  if (e && ttl_ms) *ttl_ms = e->expire ? e->expire - now : 0;
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int lp_shdict_take(lp_shdict *d, const char *key, size_t klen, lp_shval *out, lp_shscratch *sc) {
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  int rc = e ? copy_entry(e, out, sc) : LP_SHD_NOTFOUND;
  if (rc == 0) drop(d, s, e);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int lp_shdict_delete(lp_shdict *d, const char *key, size_t klen) {
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  if (e) drop(d, s, e);
  pthread_mutex_unlock(&s->lock);
  return e ? 0 : LP_SHD_NOTFOUND;
}

// A decimal integer string as Redis reads one (no spaces, no '+', no leading zeros).
static bool parse_int(const char *p, size_t n, int64_t *out) {
  if (n == 0 || n > 20) return false;
  size_t i = 0;
  bool neg = p[0] == '-';
  if (neg && ++i == n) return false;
  if (p[i] == '0' && n - i > 1) return false;
  uint64_t v = 0;
  for (; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return false;
    uint64_t dgt = (uint64_t)(p[i] - '0');
    if (v > (UINT64_MAX - dgt) / 10) return false;
    v = v * 10 + dgt;
  }
  if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return false;
  if (neg && v == 0 && n > 1) return false; // "-0"
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return true;
}

static int add_vals(const lp_shval *a, const lp_shval *b, lp_shval *out) {
  memset(out, 0, sizeof *out);
  if (a->type == LP_SHV_INT && b->type == LP_SHV_INT) {
    int64_t r;
    if (__builtin_add_overflow(a->i, b->i, &r)) return LP_SHD_OVERFLOW;
    out->type = LP_SHV_INT;
    out->i = r;
    return 0;
  }
  out->type = LP_SHV_FLOAT;
  out->d = (a->type == LP_SHV_INT ? (double)a->i : a->d) + (b->type == LP_SHV_INT ? (double)b->i : b->d);
  return 0;
}

int lp_shdict_incr(lp_shdict *d, const char *key, size_t klen, const lp_shval *delta, const lp_shval *init,
                   uint64_t init_ttl_ms, lp_shval *out, bool *evicted) {
  if (evicted) *evicted = false;
  if (delta->type != LP_SHV_INT && delta->type != LP_SHV_FLOAT) return LP_SHD_NOTNUM;
  if (init && init->type != LP_SHV_INT && init->type != LP_SHV_FLOAT) return LP_SHD_NOTNUM;
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  int rc = 0;
  if (!e) {
    if (!init) rc = LP_SHD_NOTFOUND;
    else if ((rc = add_vals(init, delta, out)) == 0) {
      size_t cost = entry_cost(klen, 0);
      entry *n = NULL;
      if (!reserve(d, s, cost, 0, NULL, now, evicted)) rc = LP_SHD_NOMEM;
      else if (!(n = malloc(cost))) {
        release(d, cost);
        rc = LP_SHD_NOMEM;
      } else {
        init_entry(n, h, key, klen, cost, init_ttl_ms ? now + init_ttl_ms : 0);
        set_scalar(n, out);
        link_entry(s, n);
      }
    }
  } else {
    lp_shval cur = {.type = e->type};
    if (e->type == LP_SHV_INT) cur.i = e->v.i;
    else if (e->type == LP_SHV_FLOAT) cur.d = e->v.d;
    else if (e->type == LP_SHV_STR && parse_int(e->data + e->klen, e->v.len, &cur.i)) cur.type = LP_SHV_INT;
    else rc = LP_SHD_NOTNUM;
    if (rc == 0 && (rc = add_vals(&cur, delta, out)) == 0) {
      if (e->type == LP_SHV_STR) {
        // The number takes less room than the string did: shrink in place (cost goes down).
        size_t cost = entry_cost(e->klen, 0);
        release(d, e->cost - cost);
        e->cost = cost;
      }
      set_scalar(e, out);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int lp_shdict_ttl(lp_shdict *d, const char *key, size_t klen, uint64_t *ttl_ms) {
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  if (e) *ttl_ms = e->expire ? e->expire - now : 0;
  pthread_mutex_unlock(&s->lock);
  return e ? 0 : LP_SHD_NOTFOUND;
}

int lp_shdict_expire(lp_shdict *d, const char *key, size_t klen, uint64_t ttl_ms) {
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  if (e) e->expire = ttl_ms ? now + ttl_ms : 0;
  pthread_mutex_unlock(&s->lock);
  return e ? 0 : LP_SHD_NOTFOUND;
}

int lp_shdict_push(lp_shdict *d, const char *key, size_t klen, const lp_shval *v, bool left, size_t *len,
                   bool *evicted) {
  if (evicted) *evicted = false;
  if (v->type == LP_SHV_NIL || v->type == LP_SHV_LIST) return LP_SHD_NOTNUM;
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  int rc = 0;
  size_t vlen = v->type == LP_SHV_STR ? v->len : 0;
  size_t icost = item_cost(vlen), ecost = e ? 0 : entry_cost(klen, 0);
  item *it = NULL;
  if (e && e->type != LP_SHV_LIST) rc = LP_SHD_NOTLIST;
  else if (!reserve(d, s, icost + ecost, 0, e, now, evicted)) rc = LP_SHD_NOMEM;
  else if (!(it = malloc(icost)) || (!e && !(e = malloc(ecost)))) {
    free(it);
    release(d, icost + ecost);
    e = NULL;
    rc = LP_SHD_NOMEM;
  } else {
    if (ecost) {
      init_entry(e, h, key, klen, ecost, 0);
      e->type = LP_SHV_LIST;
      lp_list_init(&e->v.list.items);
      link_entry(s, e);
    }
    memset(it, 0, sizeof *it);
    it->type = (uint8_t)v->type;
    if (v->type == LP_SHV_BOOL) it->b = v->b;
    else if (v->type == LP_SHV_INT) it->i = v->i;
    else if (v->type == LP_SHV_FLOAT) it->d = v->d;
    it->len = vlen;
    if (vlen) memcpy(it->data, v->str, vlen);
    if (left) lp_list_push(e->v.list.items.next, &it->link);
    else lp_list_push(&e->v.list.items, &it->link);
    e->v.list.n++;
    e->cost += icost;
    *len = e->v.list.n;
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int lp_shdict_pop(lp_shdict *d, const char *key, size_t klen, bool left, lp_shval *out, lp_shscratch *sc) {
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  int rc = 0;
  if (!e) rc = LP_SHD_NOTFOUND;
  else if (e->type != LP_SHV_LIST) rc = LP_SHD_NOTLIST;
  else {
    lp_list *l = left ? e->v.list.items.next : e->v.list.items.prev;
    item *it = lp_container_of(l, item, link);
    rc = copy_out(it->type, it->type == LP_SHV_BOOL && it->b, it->type == LP_SHV_INT ? it->i : 0,
                  it->type == LP_SHV_FLOAT ? it->d : 0, it->data, it->len, out, sc);
    if (rc == 0) {
      lp_list_remove(&it->link);
      size_t c = item_cost(it->len);
      free(it);
      e->cost -= c;
      release(d, c);
      if (--e->v.list.n == 0) drop(d, s, e);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int lp_shdict_llen(lp_shdict *d, const char *key, size_t klen, size_t *len) {
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  int rc = 0;
  *len = 0;
  if (e && e->type != LP_SHV_LIST) rc = LP_SHD_NOTLIST;
  else if (e) *len = e->v.list.n;
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int lp_shdict_lrange(lp_shdict *d, const char *key, size_t klen, int64_t start, int64_t stop,
                     void (*fn)(void *ud, const lp_shval *v), void *ud) {
  uint64_t h = hash_key(key, klen), now = now_of(d);
  stripe *s = stripe_of(d, h);
  pthread_mutex_lock(&s->lock);
  entry *e = find(d, s, key, klen, h, now);
  int rc = 0;
  if (e && e->type != LP_SHV_LIST) rc = LP_SHD_NOTLIST;
  else if (e) {
    int64_t n = (int64_t)e->v.list.n;
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    if (start < 0) start = 0;
    if (stop >= n) stop = n - 1;
    int64_t i = 0;
    for (lp_list *l = e->v.list.items.next; l != &e->v.list.items && i <= stop; l = l->next, i++) {
      if (i < start) continue;
      item *it = lp_container_of(l, item, link);
      lp_shval v = {.type = it->type, .str = it->data, .len = it->len};
      if (it->type == LP_SHV_BOOL) v.b = it->b;
      else if (it->type == LP_SHV_INT) v.i = it->i;
      else if (it->type == LP_SHV_FLOAT) v.d = it->d;
      fn(ud, &v);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

void lp_shdict_keys_free(char **keys, size_t *lens, size_t count) {
  if (keys)
    for (size_t i = 0; i < count; i++) free(keys[i]);
  free(keys);
  free(lens);
}

char **lp_shdict_keys(lp_shdict *d, size_t max, size_t **lensp, size_t *count) {
  size_t n = 0, cap = 16;
  char **keys = malloc((cap + 1) * sizeof *keys);
  size_t *lens = malloc(cap * sizeof *lens);
  bool oom = !keys || !lens;
  uint64_t now = now_of(d);
  for (int i = 0; i < LP_SHDICT_STRIPES && !oom && (!max || n < max); i++) {
    stripe *s = &d->stripes[i];
    pthread_mutex_lock(&s->lock);
    for (lp_list *l = s->lru.next; l != &s->lru && !oom && (!max || n < max); l = l->next) {
      entry *e = lp_container_of(l, entry, lru);
      if (expired(e, now)) continue;
      if (n == cap) {
        cap *= 2;
        char **k2 = realloc(keys, (cap + 1) * sizeof *keys);
        if (k2) keys = k2;
        size_t *l2 = k2 ? realloc(lens, cap * sizeof *lens) : NULL;
        if (l2) lens = l2;
        if (!k2 || !l2) {
          oom = true;
          break;
        }
      }
      char *k = malloc(e->klen + 1u);
      if (!k) {
        oom = true;
        break;
      }
      memcpy(k, e->data, e->klen);
      k[e->klen] = 0;
      keys[n] = k;
      lens[n++] = e->klen;
    }
    pthread_mutex_unlock(&s->lock);
  }
  if (oom) {
    lp_shdict_keys_free(keys, lens, n);
    return NULL;
  }
  keys[n] = NULL;
  *lensp = lens;
  *count = n;
  return keys;
}

size_t lp_shdict_count(lp_shdict *d) {
  size_t n = 0;
  uint64_t now = now_of(d);
  for (int i = 0; i < LP_SHDICT_STRIPES; i++) {
    stripe *s = &d->stripes[i];
    pthread_mutex_lock(&s->lock);
    for (lp_list *l = s->lru.next; l != &s->lru; l = l->next)
      if (!expired(lp_container_of(l, entry, lru), now)) n++;
    pthread_mutex_unlock(&s->lock);
  }
  return n;
}

void lp_shdict_flush_all(lp_shdict *d) {
  for (int i = 0; i < LP_SHDICT_STRIPES; i++) {
    stripe *s = &d->stripes[i];
    pthread_mutex_lock(&s->lock);
    while (!lp_list_empty(&s->lru)) drop(d, s, lp_container_of(s->lru.next, entry, lru));
    pthread_mutex_unlock(&s->lock);
  }
}

size_t lp_shdict_flush_expired(lp_shdict *d, size_t max) {
  size_t n = 0;
  uint64_t now = now_of(d);
  for (int i = 0; i < LP_SHDICT_STRIPES && (!max || n < max); i++) {
    stripe *s = &d->stripes[i];
    pthread_mutex_lock(&s->lock);
    for (lp_list *l = s->lru.next; l != &s->lru && (!max || n < max);) {
      entry *e = lp_container_of(l, entry, lru);
      l = l->next;
      if (expired(e, now)) {
        drop(d, s, e);
        n++;
      }
    }
    pthread_mutex_unlock(&s->lock);
  }
  return n;
}

void lp_shdict_free(lp_shdict *d) {
  if (!d) return;
  lp_shdict_flush_all(d);
  for (int i = 0; i < LP_SHDICT_STRIPES; i++) {
    free(d->stripes[i].buckets);
    pthread_mutex_destroy(&d->stripes[i].lock);
  }
  free(d);
}

// ---- registry -----------------------------------------------------------------------------

#define REGISTRY_MAX 256

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static lp_shdict *g_dicts[REGISTRY_MAX];
static int g_count;

lp_shdict *lp_shdict_declare(const char *name, size_t capacity) {
  if (strlen(name) >= LP_SHDICT_NAME_MAX) return NULL;
  pthread_mutex_lock(&g_lock);
  lp_shdict *d = NULL;
  for (int i = 0; i < g_count && !d; i++)
    if (strcmp(g_dicts[i]->name, name) == 0) d = g_dicts[i];
  if (!d && g_count < REGISTRY_MAX && (d = lp_shdict_new(name, capacity))) g_dicts[g_count++] = d;
  pthread_mutex_unlock(&g_lock);
  return d;
}

lp_shdict *lp_shdict_lookup(const char *name) {
  pthread_mutex_lock(&g_lock);
  lp_shdict *d = NULL;
  for (int i = 0; i < g_count && !d; i++)
    if (strcmp(g_dicts[i]->name, name) == 0) d = g_dicts[i];
  pthread_mutex_unlock(&g_lock);
  return d;
}

// The registry goes with the code that holds it: when the module is unloaded
// (lua_close of the state that loaded it, after every worker has stopped) or
// the launcher exits normally. Nothing may use a dictionary after that.
__attribute__((destructor)) static void registry_at_exit(void) { lp_shdict_registry_clear(); }

void lp_shdict_registry_clear(void) {
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < g_count; i++) lp_shdict_free(g_dicts[i]);
  g_count = 0;
  pthread_mutex_unlock(&g_lock);
}
