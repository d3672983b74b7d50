// fuzz/trace.h: what the split-invariance targets compare. A run serialises
// the events it decoded into a trace; the whole input, byte by byte and in
// fuzzer-chosen chunks, must give the same bytes.
#ifndef FUZZ_TRACE_H
#define FUZZ_TRACE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t *bytes; // owned: free(t.bytes) when done
  size_t len, cap;
} trace;

static void trace_put(trace *t, const void *p, size_t n) {
  if (t->len + n > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    while (cap < t->len + n) cap *= 2;
    t->bytes = realloc(t->bytes, cap);
    if (!t->bytes) {
      fprintf(stderr, "fuzz: out of memory\n");
      abort();
    }
    t->cap = cap;
  }
  memcpy(t->bytes + t->len, p, n);
  t->len += n;
}

static inline void trace_u64(trace *t, uint64_t v) { trace_put(t, &v, sizeof v); }

#endif
