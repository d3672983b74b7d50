// host.h: what the embedding (the Lua binding, src/lua/) provides to the core.
// The core never sees Lua: a message from the host is an opaque LP_MSG_HOST,
// and the hooks below turn it into bytes, describe it, and drop the host's
// references when core objects go. All hooks are optional; a loop without a
// host (C tests) works on native messages only. The hooks that read a message
// get its channel: the host may run several states on one loop (a reload),
// and a message lives in the state that owns the channel (ch->host).
#ifndef LP_HOST_H
#define LP_HOST_H

#include "common.h"

struct lp_msg;
struct lp_bytes;
struct lp_error;
union lp_sockaddr;

typedef struct lp_host_ops {
  // Turn a host message reaching the head into bytes; 0, or -1 with err set
  // (the message is released either way).
  int (*to_bytes)(lp_channel *ch, struct lp_msg *m, struct lp_bytes *out, struct lp_error *err);
  // Turn a host message into an LP_MSG_BUF in place (a Buffer handed off, or a
  // string copied), for native handlers that need bytes; 0, or -1 with err set
  // and the message left as it was.
  int (*to_buf)(lp_channel *ch, struct lp_msg *m, struct lp_error *err);
  // One line describing a host message, for logs.
  void (*describe)(const lp_channel *ch, const struct lp_msg *m, char *out, size_t outlen);
  // A channel finished its teardown: drop the host's strong references to it.
  void (*channel_teardown)(lp_channel *ch);
  // A context left its pipeline (after handlerRemoved): drop the host's cached handle.
  void (*ctx_removed)(lp_ctx *ctx);
  // A context is being freed: drop the host's reference to its handler.
  void (*ctx_free)(lp_ctx *ctx);
  // A future with a host reference (host_ref >= 0) is being freed.
  void (*future_free)(lp_future *f);
  // The error code a host message carries (a native error passed on from the
  // host: its code), or 0.
  int (*error_code)(const lp_channel *ch, const struct lp_msg *m);
  // A host message reaching a UDP channel's head: its bytes, and the address
  // it is for when it names one (*has_to; else the connected peer). 0, or -1
  // with err set (the message is released either way).
  int (*to_datagram)(lp_channel *ch, struct lp_msg *m, struct lp_bytes *out, union lp_sockaddr *to, bool *has_to,
                     struct lp_error *err);
  // Bytes of memory the host's state for this loop uses (its Lua state: the
  // newest one, new connections', when a reload left older ones draining), for
  // statistics; called on the loop's thread.
  size_t (*memory)(lp_loop *loop);
} lp_host_ops;

#endif
