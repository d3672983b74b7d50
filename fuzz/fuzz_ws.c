// fuzz_ws.c: libFuzzer target for the WebSocket frame decoder (src/codec/ws_codec.c;
// fuzz/run builds and runs it as target "ws"). Beyond what ASan and UBSan
// catch, each input checks the decoder's promises, aborting on a violation:
//  - split invariance: the stream decoded whole, byte by byte and in chunks of
//    fuzzer-chosen sizes gives the same events: messages with type and bytes,
//    control frames, close codes and reasons, errors with code and text;
//  - boundedness: when the decoder needs more bytes, the cumulation holds at
//    most max(maxMessageSize, 125) + 14 bytes and the message in progress at most
//    maxMessageSize; no message is longer than maxMessageSize;
//  - text messages and close reasons are UTF-8 (by a byte-at-a-time oracle),
//    control payloads at most 125 bytes, and an error is final.
//
// Input layout: 1 configuration byte (bit 0: the server side; bits 1-3 pick
// maxMessageSize; bit 4: permessage-deflate, bit 5: the peer without context
// takeover; bit 6: fragments delivered as they come), 4 bytes seeding the chunk sizes, then the stream.
#include "buffer.h"
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"
#include "utf8_oracle.h" // tests/: fuzz/run passes -Itests

static void fail(const char *what) {
  fprintf(stderr, "fuzz_ws: %s\n", what);
  abort();
}

// Decode the stream fed in pieces: chunk 0 = whole, 1 = byte by byte, else
// sizes from the seed.
static void run(const lp_ws_config *c, const uint8_t *in, size_t n, int mode, uint32_t seed, trace *t) {
  lp_ws_decoder d;
  lp_ws_decoder_init(&d, c);
  lp_buf *cum = lp_buf_new(NULL, 64);
  size_t from = 0;
  bool failed = false;
  while (from < n && !failed) {
    size_t k = mode == 0 ? n - from : mode == 1 ? 1 : 1 + (seed = seed * 1103515245u + 12345u) % 97;
    if (k > n - from) k = n - from;
    if (lp_buf_write(cum, in + from, k) != 0) fail("write");
    from += k;
    for (;;) {
      size_t before = lp_buf_readable(cum);
      int rc = lp_ws_decode(&d, cum);
      if (rc == LP_WS_NEED) {
        size_t frame_max = c->max_message > LP_WS_MAX_CONTROL ? c->max_message : LP_WS_MAX_CONTROL;
        if (lp_buf_readable(cum) > frame_max + LP_WS_MAX_HEADER) fail("cumulation past its bound");
        if (d.msg && lp_buf_readable(d.msg) > c->max_message) fail("message in progress past maxMessageSize");
        break;
      }
      if (rc == LP_WS_ERROR) {
        trace_u64(t, 0xeeee);
        trace_u64(t, (uint64_t)d.close_code);
        trace_put(t, d.error.message, strlen(d.error.message));
        if (lp_ws_decode(&d, cum) != LP_WS_ERROR) fail("an error is not final");
        failed = true;
        break;
      }
      if (lp_buf_readable(cum) >= before) fail("an event without progress");
      const uint8_t *p = lp_buf_rptr(d.payload);
      size_t len = lp_buf_readable(d.payload);
      if (rc == LP_WS_FRAGMENT) {
        if (len > c->max_message) fail("fragment past maxMessageSize");
      } else if (rc == LP_WS_MESSAGE) {
        if (len > c->max_message) fail("message past maxMessageSize");
        if (d.opcode == LP_WS_TEXT && !utf8_oracle(p, len)) fail("text message that is not UTF-8");
      } else {
        if (len > LP_WS_MAX_CONTROL) fail("control payload over 125 bytes");
        if (d.opcode == LP_WS_CLOSE && !utf8_oracle(p, len)) fail("close reason that is not UTF-8");
      }
      trace_u64(t, (uint64_t)rc);
      trace_u64(t, (uint64_t)d.opcode);
      trace_u64(t, (uint64_t)d.close_code);
      trace_u64(t, rc == LP_WS_FRAGMENT ? (uint64_t)d.fin : 2);
      trace_u64(t, len);
      trace_put(t, p, len);
      lp_buf_unref(d.payload);
    }
    if (lp_buf_readable(cum) == 0) lp_buf_discard_read(cum);
  }
  lp_buf_unref(cum);
  lp_ws_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5) return 0;
  static const size_t maxes[8] = {1, 5, 125, 126, 200, 4096, 65536, 1 << 20};
  lp_ws_config c;
  lp_ws_config_default(&c, data[0] & 1);
  c.max_message = maxes[(data[0] >> 1) & 7];
  c.deflate = data[0] & 0x10;
  c.peer_no_context = data[0] & 0x20;
  c.fragments = data[0] & 0x40;
  uint32_t seed;
  memcpy(&seed, data + 1, 4);
  const uint8_t *in = data + 5;
  size_t n = size - 5;
  trace a = {0}, b = {0}, t3 = {0};
  run(&c, in, n, 0, seed, &a);
  run(&c, in, n, 1, seed, &b);
  run(&c, in, n, 2, seed, &t3);
  if (a.len != b.len || (a.len && memcmp(a.bytes, b.bytes, a.len) != 0)) fail("byte by byte differs from whole");
  if (a.len != t3.len || (a.len && memcmp(a.bytes, t3.bytes, a.len) != 0)) fail("chunks differ from whole");
  free(a.bytes);
  free(b.bytes);
  free(t3.bytes);
  return 0;
}
