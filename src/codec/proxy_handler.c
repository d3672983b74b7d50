// proxy_handler.c: the PROXY protocol handler, a cumulating decoder (codec.c)
// whose step is lp_proxy_decode, run at the start of a connection only.
//
// Once the header is whole: the channel's remote and local addresses become
// the ones it carries (v1 UNKNOWN, v2 LOCAL and non-IP families keep the
// socket's), a user event { kind = "proxyProtocol", version, source,
// destination, local } goes down the pipeline, and the handler removes
// itself: the decoder hands the bytes after the header to the next handler
// (codec.c's handover), so a client's first request may share a read with it.
// A malformed or missing header fires exceptionCaught (ProxyProtocolError)
// and closes the channel; with optional, a connection whose first bytes
// cannot begin a header goes on without one. A connection that ends before
// sending a byte is no error (a load balancer's connect-only health check).
#include "proxy_protocol.h"

#include "channel.h"
#include "codec.h"

#include <stdlib.h>

typedef struct {
  lp_decoder d; // first: the step gets an lp_decoder *
  bool optional;
  bool done;    // decided: later calls (before the removal took effect) do nothing
} proxy_decoder;

static void fail(lp_decoder *d, lp_error *err) {
  lp_msg m = lp_msg_err(err);
  lp_ctx_fire(d->ctx, LP_EV_EXCEPTION, &m);
  if (!(lp_ctx_channel(d->ctx)->flags & LP_CH_CLOSED)) lp_ctx_op(d->ctx, LP_OP_CLOSE, NULL, NULL);
}

static void fire_event(lp_decoder *d, const lp_proxy_header *h) {
  char src[80], dst[80];
  lp_event_field f[] = {
      {"version", NULL, -1, true, h->version},
      {"source", h->has_addresses ? lp_addr_format(&h->source, src, sizeof src) : NULL, -1, false, 0},
      {"destination", h->has_addresses ? lp_addr_format(&h->destination, dst, sizeof dst) : NULL, -1, false, 0},
      {"local", NULL, h->local, false, 0},
  };
  lp_event_info ev = {"proxyProtocol", NULL, -1, f, (int)LP_ARRAY_LEN(f)};
  lp_msg m = lp_msg_event(&ev);
  lp_ctx_fire(d->ctx, LP_EV_USER_EVENT, &m);
}

static void finish(proxy_decoder *pd) {
  pd->done = true;
  lp_pipeline_remove(pd->d.ctx->pipeline, pd->d.ctx); // hands the rest on once the decode loop unwinds
}

static int proxy_step(lp_decoder *d, lp_buf *in, bool last, lp_error *err) {
  proxy_decoder *pd = (proxy_decoder *)d;
  size_t n = in ? lp_buf_readable(in) : 0;
  if (pd->done || n == 0) return LP_DECODE_OK;
  lp_proxy_header h;
  int rc = lp_proxy_decode(lp_buf_rptr(in), n, &h, err);
  if (rc == LP_PROXY_NONE && !last) return LP_DECODE_OK;
  if (rc == LP_PROXY_OK) {
    in->rd += h.length;
    lp_channel *ch = lp_ctx_channel(d->ctx);
    if (h.has_addresses) {
      lp_chaddr_set(&ch->remote, &h.source);
      lp_chaddr_set(&ch->local, &h.destination);
    }
    fire_event(d, &h);
    finish(pd);
    return LP_DECODE_OK;
  }
  if (pd->optional && (rc == LP_PROXY_ABSENT || rc == LP_PROXY_NONE)) {
    finish(pd); // no header: the bytes go on as they came
    return LP_DECODE_OK;
  }
  if (rc == LP_PROXY_NONE)
    lp_error_named(err, LP_EPROXY, "the connection ended inside the PROXY protocol header (%zu bytes)", n);
  pd->done = true;
  fail(d, err);
  return LP_DECODE_REPORTED;
}

static void proxy_free(lp_decoder *d) { free(d); }

static const lp_decoder_ops proxy_ops = {proxy_step, NULL, NULL, proxy_free, NULL, 0};

lp_ctx *lp_proxy_ctx_new(lp_pipeline *p, const char *name, bool optional) {
  proxy_decoder *pd = calloc(1, sizeof *pd);
  if (!pd) return NULL;
  pd->d.ops = &proxy_ops;
  pd->optional = optional;
  return lp_decoder_ctx_new(p, name, &pd->d);
}
