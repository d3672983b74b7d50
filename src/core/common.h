// common.h: small definitions every core file shares. No Lua here (see STYLE.md).
#ifndef LP_COMMON_H
#define LP_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define LP_VERSION "0.1.0"

#define lp_container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))
#define LP_UNUSED(x) ((void)(x))
#define LP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define LP_LIKELY(x) __builtin_expect(!!(x), 1)
#define LP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LP_LIKELY(x) (x)
#define LP_UNLIKELY(x) (x)
#define LP_PRINTF(a, b)
#endif

typedef struct lp_loop lp_loop;
typedef struct lp_channel lp_channel;
typedef struct lp_ctx lp_ctx;
typedef struct lp_pipeline lp_pipeline;
typedef struct lp_future lp_future;
typedef struct lp_buf lp_buf;
typedef struct lp_pool lp_pool;

// An intrusive doubly linked list node; a list is a node whose next/prev point
// to itself when empty.
typedef struct lp_list {
  struct lp_list *next, *prev;
} lp_list;

static inline void lp_list_init(lp_list *l) { l->next = l->prev = l; }
static inline bool lp_list_empty(const lp_list *l) { return l->next == l; }
static inline void lp_list_push(lp_list *l, lp_list *n) {
  n->prev = l->prev;
  n->next = l;
  l->prev->next = n;
  l->prev = n;
}
static inline void lp_list_remove(lp_list *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = n;
}

#endif
