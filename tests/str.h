// tests/str.h: a growing, NUL-terminated byte string for the C tests' traces
// (what a decode produced, written out so that two runs can be compared).
#ifndef LP_TESTS_STR_H
#define LP_TESTS_STR_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *s; // owned: free(t.s) when done
  size_t len, cap;
} str;

static inline void put(str *t, const void *p, size_t n) {
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    while (cap < t->len + n + 1) cap *= 2;
    t->s = realloc(t->s, cap);
    if (!t->s) {
      fprintf(stderr, "tests: out of memory\n");
      abort();
    }
    t->cap = cap;
  }
  memcpy(t->s + t->len, p, n);
  t->len += n;
  t->s[t->len] = 0;
}

static inline void puts_(str *t, const char *s) { put(t, s, strlen(s)); }

#endif
