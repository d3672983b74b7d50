// future.h: the result of an asynchronous operation (write, close, connect).
// Reference counted; lives on one loop. A future completes once. Listeners are
// never called from inside the call that completes the future or adds the
// listener: notification is a deferred task of the loop, so a listener never
// runs in the middle of the operation that completed it, and addListener never
// races with completion.
//
// A failed future that nobody listens to by the time it is notified is reported
// through its `unobserved` hook (the channel uses it to fire exceptionCaught),
// unless its cause was marked quiet (writes failed because the channel closed).
#ifndef LP_FUTURE_H
#define LP_FUTURE_H

#include "common.h"
#include "error.h"
#include "loop.h"

typedef void (*lp_future_cb)(lp_future *f, void *ud);

enum { LP_FUTURE_PENDING, LP_FUTURE_SUCCESS, LP_FUTURE_FAILED };

typedef struct lp_listener {
  struct lp_listener *next;
  lp_future_cb fn;
  void *ud;
} lp_listener;

struct lp_future {
  lp_loop *loop;
  uint32_t refs;
  uint8_t state;
  bool queued;      // notify task is on the loop's deferred queue
  bool observed;    // someone asked for the result (isDone, cause, ...)
  bool quiet;       // failure not worth reporting when unobserved
  lp_error *cause;  // set when failed (owned)
  lp_listener *listeners;
  lp_task notify;
  // Unobserved-failure hook: called once from notification when failed, no
  // listener and not observed. ud is held by the future (see unobserved_drop).
  void (*unobserved)(lp_future *f, void *ud);
  void (*unobserved_drop)(void *ud);
  void *unobserved_ud;
  // Result: a native object (a channel for connect) released with value_drop
  // when the future goes, or a host reference (host_ref >= 0).
  void *value;
  void (*value_drop)(void *value);
  int host_ref;
  void *host;       // the host's owner of host_ref (the binding: a Lua state's host)
  // A promise serves one operation (the binding enforces it): the operation
  // that took it ("write", "close", "connect"; NULL: none yet), and the
  // handler context holding it now (one the operation reached, which may
  // pass it on or complete it), NULL when none does.
  const char *taken_by;
  const void *holder;
};

lp_future *lp_future_new(lp_loop *loop); // refs 1; NULL on ENOMEM
static inline lp_future *lp_future_ref(lp_future *f) { f->refs++; return f; }
void lp_future_unref(lp_future *f);

// Complete the future; 0, or -EALREADY when it was already done.
int lp_future_succeed(lp_future *f);
int lp_future_fail(lp_future *f, const lp_error *cause);
int lp_future_fail_code(lp_future *f, int code, const char *what);
// Add a listener; fn(f, ud) runs later on the loop. -ENOMEM when out of memory.
int lp_future_add_listener(lp_future *f, lp_future_cb fn, void *ud);
void lp_future_on_unobserved(lp_future *f, void (*fn)(lp_future *, void *), void (*drop)(void *), void *ud);

static inline bool lp_future_done(const lp_future *f) { return f->state != LP_FUTURE_PENDING; }
static inline bool lp_future_ok(const lp_future *f) { return f->state == LP_FUTURE_SUCCESS; }

#endif
