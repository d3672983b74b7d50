// fuzz_proxy_protocol.c: libFuzzer target for the PROXY protocol step
// (src/codec/proxy_protocol.c); fuzz/run builds it as target proxy_protocol.
// Beyond what ASan and UBSan catch, each input checks the step's promises,
// aborting on a violation:
//  - split invariance: every prefix of the input answers "need more" or
//    exactly what the whole input answers (the same header, the same error
//    text), and once a prefix answered, every longer one answers the same;
//  - boundedness: "need more" never comes past 107 bytes (v1) or the v2
//    fixed part plus LP_PROXY_V2_MAX_LEN;
//  - a header's length is within the input, at least its fixed part.
// The first input byte picks a prefix (none, the v1 or the v2 signature) so
// that the fuzzer spends its time past the signatures.
#include "proxy_protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STREAM 8192

static void fail(const char *what) {
  fprintf(stderr, "fuzz_proxy_protocol: %s\n", what);
  abort();
}

typedef struct {
  int rc;
  lp_proxy_header h;
  char message[LP_ERROR_MESSAGE_MAX];
} answer;

static void decode(const uint8_t *p, size_t n, answer *a) {
  lp_error err;
  memset(a, 0, sizeof *a);
  a->rc = lp_proxy_decode(p, n, &a->h, &err);
  if (a->rc == LP_PROXY_ERROR || a->rc == LP_PROXY_ABSENT) {
    if (strcmp(err.kind, "ProxyProtocolError") != 0) fail("error of another kind");
    memcpy(a->message, err.message, sizeof a->message);
  }
  if (a->rc != LP_PROXY_OK) memset(&a->h, 0, sizeof a->h);
}

static bool same(const answer *a, const answer *b) {
  return a->rc == b->rc && memcmp(&a->h, &b->h, sizeof a->h) == 0 && strcmp(a->message, b->message) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static uint8_t stream[MAX_STREAM];
  size_t n = 0;
  switch (data[0] % 3) {
  case 1: memcpy(stream, "PROXY ", 6), n = 6; break;
  case 2: memcpy(stream, lp_proxy_v2_sig, LP_PROXY_V2_SIG_LEN), n = LP_PROXY_V2_SIG_LEN; break;
  default: break;
  }
  size_t rest = size - 1 < MAX_STREAM - n ? size - 1 : MAX_STREAM - n;
  memcpy(stream + n, data + 1, rest);
  n += rest;
  answer whole, part;
  decode(stream, n, &whole);
  if (whole.rc == LP_PROXY_NONE) {
    bool v1 = n > 0 && stream[0] == 'P';
    if (n >= (v1 ? LP_PROXY_V1_MAX : 16 + LP_PROXY_V2_MAX_LEN)) fail("needs more bytes past the bound");
  }
  if (whole.rc == LP_PROXY_OK) {
    if (whole.h.length > n) fail("header longer than the input");
    if (whole.h.length < (whole.h.version == 1 ? 8u : 16u)) fail("header shorter than its fixed part");
    if (whole.h.version == 1 && whole.h.length > LP_PROXY_V1_MAX) fail("v1 header over 107 bytes");
  }
  bool answered = false;
  for (size_t k = 0; k <= n; k++) {
    decode(stream, k, &part);
    if (part.rc == LP_PROXY_NONE) {
      if (answered) fail("need more after an answer");
      continue;
    }
    answered = true;
    if (!same(&part, &whole)) fail("a prefix answers differently from the whole input");
  }
  return 0;
}
