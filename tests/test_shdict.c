// test_shdict.c: the shared dictionary alone, then from many threads at once
// (counts that must add up exactly, eviction under a small budget, lists).
// scripts/test also runs this file under ThreadSanitizer.
#include "check.h"
#include "shdict.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lp_shval str(const char *s) { return (lp_shval){.type = LP_SHV_STR, .str = s, .len = strlen(s)}; }
static lp_shval num(int64_t i) { return (lp_shval){.type = LP_SHV_INT, .i = i}; }

static int set(lp_shdict *d, const char *k, lp_shval v, uint64_t ttl, int mode) {
  bool ev;
  return lp_shdict_set(d, k, strlen(k), &v, ttl, mode, &ev);
}

static void basics(void) {
  lp_shdict *d = lp_shdict_new("t", 1 << 20);
  lp_shscratch sc = {0};
  lp_shval out;
  CHECK(lp_shdict_get(d, "a", 1, &out, &sc, NULL) == LP_SHD_NOTFOUND);
  CHECK(set(d, "a", str("hello"), 0, LP_SHSET_ANY) == 0);
  CHECK(lp_shdict_get(d, "a", 1, &out, &sc, NULL) == 0 && out.type == LP_SHV_STR && out.len == 5 &&
        memcmp(out.str, "hello", 5) == 0);
  CHECK(set(d, "a", str("x"), 0, LP_SHSET_ADD) == LP_SHD_EXISTS);
  CHECK(set(d, "b", str("x"), 0, LP_SHSET_REPLACE) == LP_SHD_NOTFOUND);
  CHECK(set(d, "a", num(7), 0, LP_SHSET_REPLACE) == 0);
  CHECK(lp_shdict_get(d, "a", 1, &out, &sc, NULL) == 0 && out.type == LP_SHV_INT && out.i == 7);
  lp_shval one = num(1), r;
  bool ev;
  CHECK(lp_shdict_incr(d, "a", 1, &one, NULL, 0, &r, &ev) == 0 && r.i == 8);
  CHECK(lp_shdict_incr(d, "n", 1, &one, NULL, 0, &r, &ev) == LP_SHD_NOTFOUND);
  lp_shval init = num(10);
  CHECK(lp_shdict_incr(d, "n", 1, &one, &init, 0, &r, &ev) == 0 && r.type == LP_SHV_INT && r.i == 11);
  CHECK(set(d, "s", str("41"), 0, LP_SHSET_ANY) == 0);
  CHECK(lp_shdict_incr(d, "s", 1, &one, NULL, 0, &r, &ev) == 0 && r.i == 42);
  CHECK(set(d, "s", str("4x"), 0, LP_SHSET_ANY) == 0);
  CHECK(lp_shdict_incr(d, "s", 1, &one, NULL, 0, &r, &ev) == LP_SHD_NOTNUM);
  CHECK(set(d, "big", num(INT64_MAX), 0, LP_SHSET_ANY) == 0);
  CHECK(lp_shdict_incr(d, "big", 3, &one, NULL, 0, &r, &ev) == LP_SHD_OVERFLOW);
  lp_shval half = {.type = LP_SHV_FLOAT, .d = 0.5};
  CHECK(lp_shdict_incr(d, "a", 1, &half, NULL, 0, &r, &ev) == 0 && r.type == LP_SHV_FLOAT && r.d == 8.5);
  CHECK(lp_shdict_delete(d, "a", 1) == 0 && lp_shdict_delete(d, "a", 1) == LP_SHD_NOTFOUND);

  // expiry at the boundary, on a fixed clock
  lp_shdict_set_clock(d, 1000);
  CHECK(set(d, "e", str("v"), 100, LP_SHSET_ANY) == 0);
  uint64_t ttl = 0;
  CHECK(lp_shdict_ttl(d, "e", 1, &ttl) == 0 && ttl == 100);
  lp_shdict_set_clock(d, 1099);
  CHECK(lp_shdict_get(d, "e", 1, &out, &sc, &ttl) == 0 && ttl == 1);
  lp_shdict_set_clock(d, 1100); // expires at exactly now + ttl
  CHECK(lp_shdict_get(d, "e", 1, &out, &sc, NULL) == LP_SHD_NOTFOUND);
  CHECK(set(d, "e", str("v"), 0, LP_SHSET_ANY) == 0 && lp_shdict_ttl(d, "e", 1, &ttl) == 0 && ttl == 0);
  CHECK(lp_shdict_expire(d, "e", 1, 5) == 0);
  CHECK(set(d, "f", str("v"), 5, LP_SHSET_ANY) == 0);
  lp_shdict_set_clock(d, 1105);
  CHECK(lp_shdict_count(d) == 3); // n, s, big (e and f expired)
  CHECK(lp_shdict_flush_expired(d, 0) == 2);
  CHECK(lp_shdict_expire(d, "e", 1, 5) == LP_SHD_NOTFOUND);
  lp_shdict_set_clock(d, 0);

  // lists
  size_t len = 0;
  CHECK(lp_shdict_push(d, "l", 1, &(lp_shval){.type = LP_SHV_STR, .str = "b", .len = 1}, true, &len, &ev) == 0 &&
        len == 1);
  CHECK(lp_shdict_push(d, "l", 1, &(lp_shval){.type = LP_SHV_STR, .str = "a", .len = 1}, true, &len, &ev) == 0);
  CHECK(lp_shdict_push(d, "l", 1, &(lp_shval){.type = LP_SHV_INT, .i = 3}, false, &len, &ev) == 0 && len == 3);
  CHECK(lp_shdict_push(d, "n", 1, &(lp_shval){.type = LP_SHV_INT, .i = 3}, false, &len, &ev) == LP_SHD_NOTLIST);
  CHECK(lp_shdict_get(d, "l", 1, &out, &sc, NULL) == LP_SHD_ISLIST && out.len == 3);
  CHECK(lp_shdict_llen(d, "l", 1, &len) == 0 && len == 3);
  CHECK(lp_shdict_pop(d, "l", 1, true, &out, &sc) == 0 && out.type == LP_SHV_STR && out.str[0] == 'a');
  CHECK(lp_shdict_pop(d, "l", 1, false, &out, &sc) == 0 && out.type == LP_SHV_INT && out.i == 3);
  CHECK(lp_shdict_pop(d, "l", 1, false, &out, &sc) == 0 && out.str[0] == 'b');
  CHECK(lp_shdict_pop(d, "l", 1, false, &out, &sc) == LP_SHD_NOTFOUND); // an empty list is gone
  CHECK(lp_shdict_llen(d, "l", 1, &len) == 0 && len == 0);

  size_t *lens, n;
  char **keys = lp_shdict_keys(d, 0, &lens, &n);
  CHECK(keys && n == 3);
  lp_shdict_keys_free(keys, lens, n);
  keys = lp_shdict_keys(d, 2, &lens, &n);
  CHECK(keys && n == 2);
  lp_shdict_keys_free(keys, lens, n);
  lp_shdict_flush_all(d);
  CHECK(lp_shdict_count(d) == 0 && lp_shdict_free_space(d) == lp_shdict_capacity(d));
  free(sc.data);
  lp_shdict_free(d);
}

static void budget(void) {
  lp_shdict *d = lp_shdict_new("small", 64 * 1024);
  char big[100 * 1024];
  memset(big, 'x', sizeof big);
  bool ev = false;
  lp_shval v = {.type = LP_SHV_STR, .str = big, .len = sizeof big};
  CHECK(lp_shdict_set(d, "big", 3, &v, 0, LP_SHSET_ANY, &ev) == LP_SHD_NOMEM && !ev);
  // 1 KiB values: the 64 KiB budget takes about 60; the first ones get evicted (LRU)
  v.len = 1024;
  bool any = false;
  char k[32];
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof k, "k%d", i);
    CHECK(lp_shdict_set(d, k, strlen(k), &v, 0, LP_SHSET_ANY, &ev) == 0);
    any |= ev;
    CHECK(lp_shdict_free_space(d) <= lp_shdict_capacity(d));
  }
  CHECK(any);
  lp_shdict_free(d);
}

// ---- many threads -------------------------------------------------------------------------

#define THREADS 8
#define ROUNDS 20000

typedef struct {
  lp_shdict *d;
  int id;
} targ;

static void *hammer(void *p) {
  targ *a = p;
  lp_shscratch sc = {0};
  lp_shval one = num(1), zero = num(0), out, r;
  bool ev;
  char k[32], val[64];
  for (int i = 0; i < ROUNDS; i++) {
    lp_shdict_incr(a->d, "counter", 7, &one, &zero, 0, &r, &ev); // every thread, one key
    snprintf(k, sizeof k, "c%d", i % 64);                         // shared keys, many stripes
    lp_shdict_incr(a->d, k, strlen(k), &one, &zero, 0, &r, &ev);
    snprintf(k, sizeof k, "t%d-%d", a->id, i % 500);
    snprintf(val, sizeof val, "value %d of %d", i, a->id);
    lp_shval v = str(val);
    lp_shdict_set(a->d, k, strlen(k), &v, (i % 3) ? 0 : 1, LP_SHSET_ANY, &ev);
    lp_shdict_get(a->d, k, strlen(k), &out, &sc, NULL);
    size_t len;
    lp_shdict_push(a->d, "q", 1, &v, i & 1, &len, &ev);
    lp_shdict_pop(a->d, "q", 1, !(i & 1), &out, &sc);
    if (i % 5000 == 0) {
      size_t *lens, n;
      char **keys = lp_shdict_keys(a->d, 100, &lens, &n);
      lp_shdict_keys_free(keys, lens, n);
      lp_shdict_flush_expired(a->d, 10);
    }
  }
  free(sc.data);
  return NULL;
}

static void threads(void) {
  lp_shdict *d = lp_shdict_new("mt", 8 << 20);
  pthread_t th[THREADS];
  targ args[THREADS];
  for (int i = 0; i < THREADS; i++) {
    args[i] = (targ){d, i};
    pthread_create(&th[i], NULL, hammer, &args[i]);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  lp_shscratch sc = {0};
  lp_shval out;
  CHECK(lp_shdict_get(d, "counter", 7, &out, &sc, NULL) == 0 && out.i == THREADS * ROUNDS);
  int64_t sum = 0;
  char k[32];
  for (int i = 0; i < 64; i++) {
    snprintf(k, sizeof k, "c%d", i);
    if (lp_shdict_get(d, k, strlen(k), &out, &sc, NULL) == 0) sum += out.i;
  }
  CHECK(sum == THREADS * ROUNDS);
  size_t len = 99;
  CHECK(lp_shdict_llen(d, "q", 1, &len) == 0 && len == 0); // every push had its pop
  free(sc.data);
  lp_shdict_free(d);

  // a budget too small for all: eviction from many threads at once stays within it
  d = lp_shdict_new("mt-small", 256 * 1024);
  for (int i = 0; i < THREADS; i++) {
    args[i] = (targ){d, i};
    pthread_create(&th[i], NULL, hammer, &args[i]);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  CHECK(lp_shdict_free_space(d) <= lp_shdict_capacity(d));
  lp_shdict_flush_all(d);
  CHECK(lp_shdict_free_space(d) == lp_shdict_capacity(d)); // the count came back to zero exactly
  lp_shdict_free(d);
}

static void registry(void) {
  lp_shdict *a = lp_shdict_declare("cache", 1 << 20);
  CHECK(a && lp_shdict_declare("cache", 2 << 20) == a && lp_shdict_capacity(a) == 1 << 20);
  CHECK(lp_shdict_lookup("cache") == a && lp_shdict_lookup("nope") == NULL);
  lp_shdict_registry_clear();
  CHECK(lp_shdict_lookup("cache") == NULL);
}

int main(void) {
  basics();
  budget();
  threads();
  registry();
  return check_report();
}
