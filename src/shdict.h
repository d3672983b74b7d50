// shdict.h: a shared dictionary (OpenResty's lua_shared_dict): a key-value
// store in the process's memory that every thread may use at once. Values are
// strings, integers, floats, booleans, or lists of those.
//
// Threads: lock striping. A key's hash picks one of LP_SHDICT_STRIPES stripes,
// each with its own mutex, hash table and LRU list, so threads working on
// different keys rarely meet. The memory budget is one atomic counter for the
// whole dictionary: a write that would go over it evicts least recently used
// entries of its own stripe first, then of other stripes it can lock without
// waiting (trylock: a stripe lock is never held while waiting for another, so
// there is no lock order to keep). The LRU is thus per stripe: approximate,
// as Redis's is.
//
// Memory: every entry costs its struct, its key and its value bytes (a list
// item its node and bytes), counted against the budget; the buckets arrays are
// not counted (a small fixed fraction). A value larger than the whole budget
// is refused ("no memory") without evicting anything.
//
// Time: expiry times are milliseconds on CLOCK_MONOTONIC (lp_shdict_now_ms);
// an expired entry is gone for every reader the moment it expires and its
// memory is reclaimed when touched, evicted, or by flush_expired.
//
// Values read out are copied (the store never lends its memory): out->str
// points into the caller's scratch buffer, which the call grows as needed.
//
// Registry: named dictionaries of the process (lp_shdict_declare/lookup) live
// until lp_shdict_registry_clear (tests), or until the code is unloaded or the
// process exits (a destructor frees them: no thread may use them then).
#ifndef LP_SHDICT_H
#define LP_SHDICT_H

#include "common.h"

#include <stdatomic.h>
#include <pthread.h>

#define LP_SHDICT_STRIPES 32
#define LP_SHDICT_NAME_MAX 64
#define LP_SHDICT_MIN_SIZE 8192

typedef struct lp_shdict lp_shdict;

enum { LP_SHV_NIL, LP_SHV_BOOL, LP_SHV_INT, LP_SHV_FLOAT, LP_SHV_STR, LP_SHV_LIST };

typedef struct lp_shval {
  int type;
  union {
    bool b;
    int64_t i;
    double d;
  };
  const char *str; // LP_SHV_STR: len bytes (not NUL-terminated)
  size_t len;
} lp_shval;

// Outcomes, as negative numbers; lp_shdict_strerror names them (OpenResty's texts).
enum {
  LP_SHD_OK = 0,
  LP_SHD_NOMEM = -1,     // "no memory"
  LP_SHD_EXISTS = -2,    // "exists"
  LP_SHD_NOTFOUND = -3,  // "not found"
  LP_SHD_NOTNUM = -4,    // "not a number"
  LP_SHD_NOTLIST = -5,   // "value not a list"
  LP_SHD_OVERFLOW = -6,  // "increment would overflow"
  LP_SHD_ISLIST = -7,    // "value is a list"
};
const char *lp_shdict_strerror(int rc);

// A scratch buffer for values read out (the caller's; free with free(s->data)).
typedef struct lp_shscratch {
  char *data;
  size_t cap;
} lp_shscratch;

// How set-like calls behave.
enum { LP_SHSET_ANY, LP_SHSET_ADD /* only if absent */, LP_SHSET_REPLACE /* only if present */ };

uint64_t lp_shdict_now_ms(void);
// Tests: a fixed clock (ms) for this dictionary instead of CLOCK_MONOTONIC; 0: the real one.
void lp_shdict_set_clock(lp_shdict *d, uint64_t now_ms);

// A new dictionary of capacity bytes (>= LP_SHDICT_MIN_SIZE). Caller frees
// with lp_shdict_free. NULL when out of memory.
lp_shdict *lp_shdict_new(const char *name, size_t capacity);
void lp_shdict_free(lp_shdict *d);
const char *lp_shdict_name(const lp_shdict *d);

// Store key => v (LP_SHV_NIL deletes) with ttl_ms (0: never expires). mode:
// LP_SHSET_*. 0 or LP_SHD_*; *evicted is set when live entries were evicted
// to make room.
int lp_shdict_set(lp_shdict *d, const char *key, size_t klen, const lp_shval *v, uint64_t ttl_ms, int mode,
                  bool *evicted);
// 0 (out filled; strings in scratch), LP_SHD_NOTFOUND, LP_SHD_ISLIST (a list:
// out->type LP_SHV_LIST, out->len its length), or LP_SHD_NOMEM (scratch).
// ttl_ms, when not NULL: remaining ms, 0 when it never expires.
int lp_shdict_get(lp_shdict *d, const char *key, size_t klen, lp_shval *out, lp_shscratch *scratch,
                  uint64_t *ttl_ms);
// Get then delete, atomically (Redis's GETDEL): as lp_shdict_get.
int lp_shdict_take(lp_shdict *d, const char *key, size_t klen, lp_shval *out, lp_shscratch *scratch);
// 0 (deleted) or LP_SHD_NOTFOUND.
int lp_shdict_delete(lp_shdict *d, const char *key, size_t klen);
// Add delta: integers stay integers (LP_SHD_OVERFLOW past int64), a float on
// either side makes a float. A string holding a decimal integer counts as that
// integer (as Redis's INCR). Absent key: LP_SHD_NOTFOUND unless init is given
// (init + delta is stored, with init_ttl_ms). Result in *out.
int lp_shdict_incr(lp_shdict *d, const char *key, size_t klen, const lp_shval *delta, const lp_shval *init,
                   uint64_t init_ttl_ms, lp_shval *out, bool *evicted);
// Remaining ms in *ttl_ms (0: never expires): 0 or LP_SHD_NOTFOUND.
int lp_shdict_ttl(lp_shdict *d, const char *key, size_t klen, uint64_t *ttl_ms);
// Set a new ttl (0: never expires): 0 or LP_SHD_NOTFOUND.
int lp_shdict_expire(lp_shdict *d, const char *key, size_t klen, uint64_t ttl_ms);
// Lists. push: the new length in *len, or LP_SHD_NOTLIST/NOMEM. pop: the item
// (in scratch), LP_SHD_NOTFOUND when absent, LP_SHD_NOTLIST. A list that
// becomes empty is deleted.
int lp_shdict_push(lp_shdict *d, const char *key, size_t klen, const lp_shval *v, bool left, size_t *len,
                   bool *evicted);
int lp_shdict_pop(lp_shdict *d, const char *key, size_t klen, bool left, lp_shval *out, lp_shscratch *scratch);
int lp_shdict_llen(lp_shdict *d, const char *key, size_t klen, size_t *len); // 0 for an absent key
// Items start..stop (inclusive, 0-based, negative from the end, as LRANGE) of
// a list: fn is called for each under the stripe lock (it must only copy).
// 0, LP_SHD_NOTLIST; an absent key calls fn never and returns 0.
int lp_shdict_lrange(lp_shdict *d, const char *key, size_t klen, int64_t start, int64_t stop,
                     void (*fn)(void *ud, const lp_shval *v), void *ud);
// Up to max live keys (0: all), each malloc'd into a NULL-terminated array
// the caller frees with lp_shdict_keys_free (lens[i] their lengths). NULL when
// out of memory. Stripe by stripe: a snapshot of each stripe, not of the whole.
char **lp_shdict_keys(lp_shdict *d, size_t max, size_t **lens, size_t *count);
void lp_shdict_keys_free(char **keys, size_t *lens, size_t count);
// Live entries (expired ones not yet reclaimed are not counted).
size_t lp_shdict_count(lp_shdict *d);
void lp_shdict_flush_all(lp_shdict *d);
size_t lp_shdict_flush_expired(lp_shdict *d, size_t max); // how many were freed (max 0: all)
size_t lp_shdict_capacity(const lp_shdict *d);
size_t lp_shdict_free_space(const lp_shdict *d);

// ---- the process's named dictionaries ----
// Declare name with capacity: the existing dictionary when it was declared
// already (its capacity stays what it was), else a new one. NULL when out of
// memory or the name is too long.
lp_shdict *lp_shdict_declare(const char *name, size_t capacity);
lp_shdict *lp_shdict_lookup(const char *name); // NULL when not declared
void lp_shdict_registry_clear(void);            // frees every dictionary (tests; no user left)

#endif
