// pipeline.h: a channel's handler contexts, a doubly linked list between a
// native head and tail. Inbound events move head -> tail, outbound operations
// tail -> head, skipping contexts whose mask lacks the event (no call at all).
//
// Modification during propagation: a removed context keeps its next/prev links
// so an event passing through it continues; removed contexts are freed only
// when no propagation is in progress on the pipeline (depth == 0), or later
// when a host handle to them goes away (refs).
#ifndef LP_PIPELINE_H
#define LP_PIPELINE_H

#include "common.h"
#include "error.h"

enum lp_event {
  // inbound
  LP_EV_REGISTERED,
  LP_EV_UNREGISTERED,
  LP_EV_ACTIVE,
  LP_EV_INACTIVE,
  LP_EV_READ,
  LP_EV_READ_COMPLETE,
  LP_EV_USER_EVENT,
  LP_EV_WRITABILITY,
  LP_EV_EXCEPTION,
  // outbound
  LP_OP_CONNECT,
  LP_OP_READ,
  LP_OP_WRITE,
  LP_OP_FLUSH,
  LP_OP_CLOSE,
  LP_EV_COUNT
};
#define LP_EV_FIRST_OUTBOUND LP_OP_CONNECT
#define LP_MASK(e) (1u << (e))
#define LP_MASK_INBOUND ((1u << LP_EV_FIRST_OUTBOUND) - 1)
#define LP_MASK_OUTBOUND (((1u << LP_EV_COUNT) - 1) & ~LP_MASK_INBOUND)

// Lua method names, indexed by lp_event: "channelRead", ..., "write", "close".
extern const char *const lp_event_name[LP_EV_COUNT];

// More fields of a user event: a string (str != NULL), else a boolean
// (boolean >= 0), else an integer (is_integer), else left out.
typedef struct lp_event_field {
  const char *name;
  const char *str;
  int boolean;
  bool is_integer;
  long long integer;
} lp_event_field;

// A native user event (idle states, input shutdown, TLS); the host turns it
// into a table { kind = ..., state = ..., first = ..., <fields> }.
typedef struct lp_event_info {
  const char *kind;
  const char *state; // NULL when none
  int first;         // -1 when none, else 0/1
  const lp_event_field *fields; // nfields more (NULL, 0: none)
  int nfields;
} lp_event_info;

enum { LP_MSG_NONE, LP_MSG_BUF, LP_MSG_HOST, LP_MSG_ERROR, LP_MSG_EVENT, LP_MSG_PTR, LP_MSG_DGRAM };
// lp_msg.flags
enum { LP_MSGF_STRING = 1 }; // a BUF the host delivers as a string (frame decoders' asString)

// A message or event argument moving through the pipeline. BUF transfers one
// buffer reference with the message, DGRAM one lp_dgram (udp.h). HOST is a value of the host language at
// stack slot `host`, valid only while the call that made it is running.
typedef struct lp_msg {
  int kind;
  int host;
  union {
    lp_buf *buf;
    const lp_error *err;
    const lp_event_info *event;
    void *ptr;
  } u;
  int flags; // LP_MSGF_*; 0 unless set by the message's maker
} lp_msg;

static inline lp_msg lp_msg_buf(lp_buf *b) { lp_msg m = {.kind = LP_MSG_BUF, .u.buf = b}; return m; }
static inline lp_msg lp_msg_err(const lp_error *e) { lp_msg m = {.kind = LP_MSG_ERROR, .u.err = e}; return m; }
static inline lp_msg lp_msg_event(const lp_event_info *e) { lp_msg m = {.kind = LP_MSG_EVENT, .u.event = e}; return m; }
void lp_msg_release(lp_msg *m); // drop what the message owns (a BUF's reference)

typedef struct lp_handler_ops {
  const char *type_name;        // base of generated names: "<type>#0"
  uint32_t mask;                // events handled; the host may set ctx->mask itself
  void (*added)(lp_ctx *ctx);   // after linking
  void (*removed)(lp_ctx *ctx); // after unlinking
  void (*inbound)(lp_ctx *ctx, int ev, lp_msg *m);
  void (*outbound)(lp_ctx *ctx, int op, lp_msg *m, lp_future *promise);
  void (*free)(lp_ctx *ctx);    // release ctx->state (the host's own refs go via host ops)
} lp_handler_ops;

struct lp_ctx {
  lp_ctx *next, *prev;
  lp_pipeline *pipeline;
  const lp_handler_ops *ops;
  char *name;
  void *state;          // the handler's own data
  uint32_t mask;
  uint32_t refs;        // 1 for the link, +1 per host handle
  bool removed;
  bool added;           // handlerAdded ran
  int host_ref;         // host's handler reference (Lua registry ref), -1 none
  int box_ref;          // host's cached handle to this context, -1 none
  lp_ctx *grave_next;
  lp_ctx *held_next, *held_prev; // neighbours kept alive after removal
};

struct lp_pipeline {
  lp_channel *channel;
  lp_ctx head, tail;
  uint32_t depth;       // propagation in progress
  uint32_t count;       // contexts between head and tail
  uint32_t name_seq;    // for generated names
  lp_ctx *graveyard;    // unlinked, waiting for depth 0
  bool destroyed;
};

void lp_pipeline_init(lp_pipeline *p, lp_channel *ch);
// Unlink every context (handlerRemoved each) and free what can be freed.
void lp_pipeline_destroy(lp_pipeline *p);

// New context, not linked; name NULL generates one. NULL on ENOMEM.
lp_ctx *lp_ctx_new(lp_pipeline *p, const lp_handler_ops *ops, void *state, const char *name);
void lp_ctx_unref(lp_ctx *ctx);
static inline lp_channel *lp_ctx_channel(const lp_ctx *ctx) { return ctx->pipeline->channel; }

enum { LP_ADD_FIRST, LP_ADD_LAST, LP_ADD_BEFORE, LP_ADD_AFTER };
// Link ctx; 0, -EEXIST (duplicate name), -ENOENT (base not found), -EINVAL
// (destroyed pipeline). handlerAdded runs before this returns.
int lp_pipeline_add(lp_pipeline *p, int where, const char *base, lp_ctx *ctx);
int lp_pipeline_remove(lp_pipeline *p, lp_ctx *ctx);     // 0 or -ENOENT
// Put ctx in old's place (handlerAdded on the new, then handlerRemoved on the old).
int lp_pipeline_replace(lp_pipeline *p, lp_ctx *old, lp_ctx *ctx);
lp_ctx *lp_pipeline_get(lp_pipeline *p, const char *name);
lp_ctx *lp_pipeline_first(lp_pipeline *p); // NULL when empty
lp_ctx *lp_pipeline_next(lp_pipeline *p, lp_ctx *c); // NULL after the last
// Generate a name "<base>#N" unique in p into out.
void lp_pipeline_gen_name(lp_pipeline *p, const char *base, char *out, size_t outlen);

// Inbound: from the head (pipeline) or from the context after ctx.
void lp_pipeline_fire(lp_pipeline *p, int ev, lp_msg *m);
void lp_ctx_fire(lp_ctx *ctx, int ev, lp_msg *m);
// Outbound: from the tail (pipeline) or from the context before ctx. The
// promise (may be NULL) is completed by whoever finishes the operation.
void lp_pipeline_op(lp_pipeline *p, int op, lp_msg *m, lp_future *promise);
void lp_ctx_op(lp_ctx *ctx, int op, lp_msg *m, lp_future *promise);

// Bracket calls that run handlers from outside the pipeline (timers, the host)
// so that contexts removed meanwhile are not freed under them.
static inline void lp_pipeline_enter(lp_pipeline *p) { p->depth++; }
void lp_pipeline_leave(lp_pipeline *p);

// What the tail does with an exception nobody handled: log it (a routine peer
// reset at debug) and close the channel when closeOnException is set.
void lp_pipeline_tail_exception(lp_pipeline *p, lp_msg *m);

#endif
