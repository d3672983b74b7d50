// l_flat.h: the flat copy of Lua values between states of different threads
// (l_flat.c): encode into malloc'd bytes on one thread, decode on another.
#ifndef LP_L_FLAT_H
#define LP_L_FLAT_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#define L_FLAT_ERR_MAX 256

typedef struct l_blob { // owns data (malloc'd); free with l_blob_free
  char *data;
  size_t len, cap;
  bool oom;
} l_blob;

// What goes where, for messages: "argument #3" to the pool, "result #1" back.
typedef struct l_crossing {
  const char *api;   // "lupine.blocking", "lupine.broadcast"
  const char *what;  // "argument", "result"
  const char *where; // "to the pool", "back from the pool", "to other workers"
  int n;
  char *err;         // L_FLAT_ERR_MAX bytes
} l_crossing;

typedef struct l_reader {
  const char *p, *end;
} l_reader;

void l_blob_put(l_blob *b, const void *p, size_t n); // sets b->oom instead of failing
void l_blob_free(l_blob *b);
// Append the value at idx; false with x->err set when it cannot cross. Never
// raises (the caller holds malloc'd memory): no conversions, no metamethods.
// Out of memory shows as b->oom.
bool l_flat_encode(lua_State *L, int idx, l_blob *b, l_crossing *x);
// Push the next value of r; raises only when out of memory (run it protected).
void l_flat_decode(lua_State *L, l_reader *r);

#endif
