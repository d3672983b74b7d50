// test_ws.c: the WebSocket frame codec (src/codec/ws_codec.c) as pure functions.
// Every input is decoded whole, byte by byte, split at every one boundary
// (and every two, for inputs up to 200 bytes) and at random ones, and must
// give the same trace: messages with their type and bytes, control frames,
// close codes and reasons, and errors with their exact text. Covers masking
// both ways, fragmentation with control frames between fragments, every
// protocol violation the codec names, maxMessageSize at its boundary, and the
// UTF-8 validator (incremental across pieces, against a byte-at-a-time oracle).
#include "buffer.h"
#include "check.h"
#include "str.h"
#include "utf8_oracle.h"
#include "ws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lp_pool *pool;

static void show(str *t, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char b[8];
    if (p[i] >= 32 && p[i] < 127 && p[i] != '\\') put(t, p + i, 1);
    else snprintf(b, sizeof b, "\\%02x", p[i]), puts_(t, b);
  }
}

// One decoder over the input cut at the given points: the trace of events.
static char *decode_split(const lp_ws_config *c, const uint8_t *in, size_t n, const size_t *cuts, int ncuts) {
  lp_ws_decoder d;
  lp_ws_decoder_init(&d, c);
  lp_buf *cum = lp_buf_new(pool, 16);
  str t = {0};
  size_t from = 0;
  bool failed = false;
  for (int k = 0; k <= ncuts && !failed; k++) {
    size_t to = k < ncuts ? cuts[k] : n;
    if (to < from) to = from;
    lp_buf_write(cum, in + from, to - from);
    from = to;
    for (;;) {
      int rc = lp_ws_decode(&d, cum);
      char b[64];
      if (rc == LP_WS_NEED) break;
      if (rc == LP_WS_ERROR) {
        puts_(&t, "E ");
        puts_(&t, d.error.message);
        snprintf(b, sizeof b, " [%d]\n", d.close_code);
        puts_(&t, b);
        failed = true;
        break;
      }
      if (rc == LP_WS_CONTROL && d.opcode == LP_WS_CLOSE) snprintf(b, sizeof b, "C%d ", d.close_code);
      else if (rc == LP_WS_FRAGMENT) snprintf(b, sizeof b, "F%d%s ", d.opcode, d.fin ? "." : "");
      else snprintf(b, sizeof b, "%c%d ", rc == LP_WS_MESSAGE ? 'M' : 'C', d.opcode);
      puts_(&t, b);
      show(&t, lp_buf_rptr(d.payload), lp_buf_readable(d.payload));
      puts_(&t, "\n");
      lp_buf_unref(d.payload);
    }
    if (lp_buf_readable(cum) == 0) lp_buf_discard_read(cum);
  }
  lp_buf_unref(cum);
  lp_ws_decoder_free(&d);
  if (!t.s) puts_(&t, "");
  return t.s;
}

static unsigned rnd_state = 12345;
static unsigned rnd(void) {
  rnd_state = rnd_state * 1103515245u + 12345u;
  return rnd_state >> 8;
}

// The trace of in, checked to be the same however it is split; returns it (caller frees).
static char *decode_all(const lp_ws_config *c, const uint8_t *in, size_t n) {
  char *whole = decode_split(c, in, n, NULL, 0);
  size_t cuts[64];
  for (size_t i = 0; i < n && i < 64; i++) cuts[i] = i + 1;
  if (n <= 64) {
    char *t = decode_split(c, in, n, cuts, (int)n);
    CHECK(strcmp(t, whole) == 0);
    if (strcmp(t, whole)) fprintf(stderr, "byte by byte:\n%s\nwhole:\n%s\n", t, whole);
    free(t);
  }
  for (size_t i = 1; i < n; i++) {
    char *t = decode_split(c, in, n, &i, 1);
    if (strcmp(t, whole)) fprintf(stderr, "split at %zu:\n%s\nwhole:\n%s\n", i, t, whole);
    CHECK(strcmp(t, whole) == 0);
    free(t);
  }
  if (n <= 200)
    for (size_t i = 1; i < n; i++)
      for (size_t j = i + 1; j < n; j++) {
        size_t two[2] = {i, j};
        char *t = decode_split(c, in, n, two, 2);
        if (strcmp(t, whole)) fprintf(stderr, "split at %zu,%zu:\n%s\nwhole:\n%s\n", i, j, t, whole);
        CHECK(strcmp(t, whole) == 0);
        free(t);
      }
  for (int r = 0; r < 50 && n > 1; r++) {
    int k = (int)(rnd() % 16);
    for (int i = 0; i < k; i++) cuts[i] = rnd() % n;
    for (int i = 1; i < k; i++) // sort
      for (int j = i; j > 0 && cuts[j] < cuts[j - 1]; j--) {
        size_t x = cuts[j];
        cuts[j] = cuts[j - 1];
        cuts[j - 1] = x;
      }
    char *t = decode_split(c, in, n, cuts, k);
    CHECK(strcmp(t, whole) == 0);
    free(t);
  }
  return whole;
}

// ---- building frames ----------------------------------------------------------------

typedef struct {
  uint8_t b[70000];
  size_t n;
} stream;

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

static void frame(stream *s, int b0, const void *p, size_t n, bool masked) {
  size_t start = s->n;
  s->n += lp_ws_header(s->b + s->n, b0 & 0x0f, b0 & 0x80, n, masked ? KEY : NULL);
  s->b[start] |= (uint8_t)(b0 & 0x70); // reserved bits
  if (masked) lp_ws_mask(s->b + s->n, p, n, KEY);
  else memcpy(s->b + s->n, p, n);
  s->n += n;
}
static void raw(stream *s, const void *p, size_t n) {
  memcpy(s->b + s->n, p, n);
  s->n += n;
}

static lp_ws_config server_cfg(size_t max) {
  lp_ws_config c;
  lp_ws_config_default(&c, true);
  if (max) c.max_message = max;
  return c;
}

// Decode (a server unless client) and compare the trace with want.
static void expect(bool server, size_t max, stream *s, const char *want) {
  lp_ws_config c = server_cfg(max);
  c.server = server;
  char *t = decode_all(&c, s->b, s->n);
  if (strcmp(t, want)) fprintf(stderr, "got:\n%s\nwant:\n%s\n", t, want);
  CHECK(strcmp(t, want) == 0);
  free(t);
  s->n = 0;
}

static stream s;

static void test_messages(void) {
  frame(&s, 0x81, "hello", 5, true);
  frame(&s, 0x82, "\0\1\2", 3, true);
  frame(&s, 0x81, "", 0, true);
  expect(true, 0, &s, "M1 hello\nM2 \\00\\01\\02\nM1 \n");

  // the client side: unmasked frames from the server
  frame(&s, 0x81, "hi", 2, false);
  expect(false, 0, &s, "M1 hi\n");

  // 16-bit and 64-bit lengths (the encoder picks the shortest form)
  static uint8_t big[66000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)('a' + i % 26);
  frame(&s, 0x81, big, 300, true);
  lp_ws_config c = server_cfg(0);
  char *t = decode_split(&c, s.b, s.n, NULL, 0);
  CHECK(strncmp(t, "M1 abcdefghijklmnopqrstuvwxyzabc", 32) == 0 && strlen(t) == 3 + 300 + 1);
  free(t);
  s.n = 0;
  frame(&s, 0x82, big, sizeof big, true);
  CHECK(s.b[1] == (0x80 | 127));
  t = decode_split(&c, s.b, s.n, NULL, 0);
  CHECK(strlen(t) == 3 + sizeof big + 1);
  size_t mid[3] = {5, 9000, 65999};
  char *t2 = decode_split(&c, s.b, s.n, mid, 3);
  CHECK(strcmp(t, t2) == 0);
  free(t);
  free(t2);
  s.n = 0;
}

static void test_fragments(void) {
  // text in three fragments, a ping and a pong between them
  frame(&s, 0x01, "hel", 3, true);
  frame(&s, 0x89, "p1", 2, true);
  frame(&s, 0x00, "lo ", 3, true);
  frame(&s, 0x8a, "", 0, true);
  frame(&s, 0x80, "world", 5, true);
  frame(&s, 0x02, "\xff", 1, true);
  frame(&s, 0x80, "\xfe", 1, true);
  expect(true, 0, &s, "C9 p1\nC10 \nM1 hello world\nM2 \\ff\\fe\n");
  // a UTF-8 character split across fragments is fine
  frame(&s, 0x01, "\xe2\x82", 2, true);
  frame(&s, 0x80, "\xac!", 2, true);
  expect(true, 0, &s, "M1 \\e2\\82\\ac!\n");
  // empty fragments
  frame(&s, 0x01, "", 0, true);
  frame(&s, 0x00, "", 0, true);
  frame(&s, 0x80, "", 0, true);
  expect(true, 0, &s, "M1 \n");
}

static void test_close(void) {
  frame(&s, 0x88, "\x03\xe8" "bye", 5, true);
  frame(&s, 0x81, "ignored", 7, true);
  raw(&s, "garbage after close", 19);
  expect(true, 0, &s, "C1000 bye\n");
  frame(&s, 0x88, "", 0, true);
  expect(true, 0, &s, "C1005 \n");
  frame(&s, 0x88, "\x0f\xa0", 2, true); // 4000: a private code
  expect(true, 0, &s, "C4000 \n");
  // a close in the middle of a fragmented message drops the message
  frame(&s, 0x01, "part", 4, true);
  frame(&s, 0x88, "\x03\xe9", 2, true);
  expect(true, 0, &s, "C1001 \n");
}

static void test_violations(void) {
  frame(&s, 0x81, "x", 1, false);
  expect(true, 0, &s, "E WsProtocolError: unmasked client frame (1002) [1002]\n");
  frame(&s, 0x81, "x", 1, true);
  expect(false, 0, &s, "E WsProtocolError: masked server frame (1002) [1002]\n");
  frame(&s, 0xc1, "x", 1, true);
  expect(true, 0, &s, "E WsProtocolError: reserved bits set (0x40) with no extension negotiated (1002) [1002]\n");
  frame(&s, 0x83, "x", 1, true);
  expect(true, 0, &s, "E WsProtocolError: unknown opcode 0x3 (1002) [1002]\n");
  frame(&s, 0x8b, "x", 1, true);
  expect(true, 0, &s, "E WsProtocolError: unknown opcode 0xb (1002) [1002]\n");
  frame(&s, 0x09, "x", 1, true);
  expect(true, 0, &s, "E WsProtocolError: fragmented control frame (opcode 0x9) (1002) [1002]\n");
  static uint8_t p126[126];
  frame(&s, 0x89, p126, 126, true);
  expect(true, 0, &s, "E WsProtocolError: control frame (opcode 0x9) longer than 125 bytes (1002) [1002]\n");
  frame(&s, 0x89, p126, 125, true);
  CHECK(s.n == 2 + 4 + 125);
  s.n = 0;
  frame(&s, 0x80, "x", 1, true);
  expect(true, 0, &s, "E WsProtocolError: continuation frame with no message to continue (1002) [1002]\n");
  frame(&s, 0x01, "a", 1, true);
  frame(&s, 0x82, "b", 1, true);
  expect(true, 0, &s, "E WsProtocolError: binary frame inside a fragmented text message (1002) [1002]\n");
  frame(&s, 0x88, "\x03", 1, true);
  expect(true, 0, &s, "E WsProtocolError: close frame with a 1-byte payload (1002) [1002]\n");
  frame(&s, 0x88, "\x03\xed", 2, true); // 1005 may not be sent
  expect(true, 0, &s, "E WsProtocolError: close code 1005 may not be sent (1002) [1002]\n");
  frame(&s, 0x88, "\x03\xe7", 2, true); // 999
  expect(true, 0, &s, "E WsProtocolError: close code 999 may not be sent (1002) [1002]\n");
  frame(&s, 0x88, "\x03\xe8\xc0\x80", 4, true);
  expect(true, 0, &s, "E WsInvalidPayload: close reason is not UTF-8 (1007) [1007]\n");
  // a length with the high bit set, and 2^63 exactly
  raw(&s, "\x82\xff\x80\0\0\0\0\0\0\0", 10);
  expect(true, 0, &s, "E WsProtocolError: frame length with the high bit set (1002) [1002]\n");
  raw(&s, "\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10);
  expect(true, 0, &s, "E WsProtocolError: frame length with the high bit set (1002) [1002]\n");
  // 2^63 - 1: too big, known from the header alone
  raw(&s, "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff", 10);
  expect(true, 0, &s,
         "E WsMessageTooBig: message of 9223372036854775807 bytes exceeds maxMessageSize 1048576 (1009) [1009]\n");
  // text that is not UTF-8, in one frame and across fragments
  frame(&s, 0x81, "ok\xff", 3, true);
  expect(true, 0, &s, "E WsInvalidPayload: text message is not UTF-8 (1007) [1007]\n");
  frame(&s, 0x01, "ab", 2, true);
  frame(&s, 0x00, "\xed\xa0\x80", 3, true); // a surrogate: fails at the fragment, before the end
  frame(&s, 0x80, "z", 1, true);
  expect(true, 0, &s, "E WsInvalidPayload: text message is not UTF-8 (1007) [1007]\n");
  frame(&s, 0x01, "ab", 2, true);
  frame(&s, 0x80, "\xe2\x82", 2, true);
  expect(true, 0, &s, "E WsInvalidPayload: text message ends inside a UTF-8 sequence (1007) [1007]\n");
  // binary is not validated
  frame(&s, 0x82, "\xff", 1, true);
  expect(true, 0, &s, "M2 \\ff\n");
  // messages before the error still come out
  frame(&s, 0x81, "fine", 4, true);
  frame(&s, 0x81, "x", 1, false);
  frame(&s, 0x81, "never", 5, true);
  expect(true, 0, &s, "M1 fine\nE WsProtocolError: unmasked client frame (1002) [1002]\n");
}

static void test_limits(void) {
  static uint8_t p[200];
  memset(p, 'a', sizeof p);
  char want[110] = "M1 ";
  memset(want + 3, 'a', 100);
  strcpy(want + 103, "\n");
  frame(&s, 0x81, p, 100, true);
  expect(true, 100, &s, want);
  frame(&s, 0x81, p, 101, true);
  expect(true, 100, &s, "E WsMessageTooBig: message of 101 bytes exceeds maxMessageSize 100 (1009) [1009]\n");
  frame(&s, 0x01, p, 60, true);
  frame(&s, 0x80, p, 41, true);
  expect(true, 100, &s, "E WsMessageTooBig: message of at least 101 bytes exceeds maxMessageSize 100 (1009) [1009]\n");
  // control frames do not count toward the message
  frame(&s, 0x01, p, 60, true);
  frame(&s, 0x89, p, 100, true);
  frame(&s, 0x80, p, 40, true);
  lp_ws_config c = server_cfg(100);
  char *t = decode_all(&c, s.b, s.n);
  CHECK(strncmp(t, "C9 ", 3) == 0 && strstr(t, "\nM1 ") && strlen(t) == 3 + 100 + 1 + 3 + 100 + 1);
  free(t);
  s.n = 0;
  // the error is known from the header: no need to wait for the payload
  lp_ws_decoder d;
  lp_ws_decoder_init(&d, &c);
  lp_buf *b = lp_buf_from(pool, "\x82\xfe\x10\x00", 4); // 4096 bytes announced
  CHECK(lp_ws_decode(&d, b) == LP_WS_ERROR && d.close_code == 1009 && d.error.limit == 100 && d.error.length == 4096);
  CHECK(lp_ws_decode(&d, b) == LP_WS_ERROR); // and stays failed
  lp_buf_unref(b);
  lp_ws_decoder_free(&d);
}

// ---- UTF-8 ----------------------------------------------------------------------------

// The oracle (tests/utf8_oracle.h) decodes code points one at a time, by the definition.

static void test_utf8(void) {
  CHECK(lp_utf8_valid("", 0));
  CHECK(lp_utf8_valid("plain ascii text, long enough for words", 39));
  CHECK(lp_utf8_valid("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11)); // κόσμε
  CHECK(lp_utf8_valid("\xf4\x8f\xbf\xbf", 4));                           // U+10FFFF
  CHECK(!lp_utf8_valid("\xf4\x90\x80\x80", 4));                          // past it
  CHECK(!lp_utf8_valid("\xc0\xaf", 2));                                  // overlong
  CHECK(!lp_utf8_valid("\xe0\x80\xaf", 3));
  CHECK(!lp_utf8_valid("\xed\xbf\xbf", 3)); // surrogate
  CHECK(!lp_utf8_valid("abcdefgh\x80", 9));
  CHECK(lp_utf8_step(0, (const uint8_t *)"\xe2", 1) != 0);
  // random bytes and random splits against the oracle
  uint8_t buf[40];
  for (int r = 0; r < 200000; r++) {
    size_t n = rnd() % sizeof buf;
    for (size_t i = 0; i < n; i++) {
      unsigned x = rnd() % 8;
      buf[i] = x < 3 ? (uint8_t)(rnd() % 0x80) : x < 6 ? (uint8_t)(0x80 + rnd() % 0x40) : (uint8_t)(0xc0 + rnd() % 0x40);
    }
    bool want = utf8_oracle(buf, n);
    CHECK(lp_utf8_valid(buf, n) == want);
    size_t cut = n ? rnd() % n : 0;
    uint32_t st = lp_utf8_step(0, buf, cut);
    st = lp_utf8_step(st, buf + cut, n - cut);
    CHECK((st == 0) == want);
  }
}

static void test_encode(void) {
  uint8_t h[LP_WS_MAX_HEADER];
  CHECK(lp_ws_header(h, LP_WS_TEXT, true, 5, NULL) == 2 && h[0] == 0x81 && h[1] == 5);
  CHECK(lp_ws_header(h, LP_WS_BINARY, false, 126, NULL) == 4 && h[0] == 0x02 && h[1] == 126 && h[2] == 0 && h[3] == 126);
  CHECK(lp_ws_header(h, LP_WS_BINARY, true, 65536, KEY) == 14 && h[1] == (0x80 | 127) && h[7] == 1 && h[10] == 0x37);
  // masking is its own inverse, at every length and alignment
  uint8_t a[40], b[40], c[40];
  for (size_t i = 0; i < sizeof a; i++) a[i] = (uint8_t)(i * 7);
  for (size_t n = 0; n < 30; n++) {
    lp_ws_mask(b, a + 3, n, KEY);
    bool ok = true;
    for (size_t i = 0; i < n; i++) ok &= b[i] == (a[3 + i] ^ KEY[i % 4]);
    CHECK(ok);
    lp_ws_mask(c, b, n, KEY);
    CHECK(memcmp(c, a + 3, n) == 0);
  }
  lp_buf *f;
  CHECK(lp_ws_encode(pool, LP_WS_PING, "abc", 3, NULL, &f) == 0);
  CHECK(lp_buf_readable(f) == 5 && memcmp(lp_buf_rptr(f), "\x89\x03" "abc", 5) == 0);
  lp_buf_unref(f);
  // what the encoder makes, the decoder reads back (the client masks, the server reads)
  CHECK(lp_ws_encode(pool, LP_WS_TEXT, "round trip", 10, KEY, &f) == 0);
  lp_ws_config sc = server_cfg(0);
  char *t = decode_all(&sc, lp_buf_rptr(f), lp_buf_readable(f));
  CHECK(strcmp(t, "M1 round trip\n") == 0);
  free(t);
  lp_buf_unref(f);

  uint8_t cp[125];
  char why[100];
  CHECK(lp_ws_close_payload(cp, 1000, "bye", 3, why, sizeof why) == 5 && cp[0] == 0x03 && cp[1] == 0xe8);
  CHECK(lp_ws_close_payload(cp, 1005, "", 0, why, sizeof why) == 0);
  CHECK(lp_ws_close_payload(cp, 1006, "", 0, why, sizeof why) == -EINVAL);
  CHECK(strcmp(why, "close code 1006 may not be sent (1000-1003, 1007-1014, 3000-4999)") == 0);
  static char long_reason[124];
  memset(long_reason, 'r', sizeof long_reason);
  CHECK(lp_ws_close_payload(cp, 1000, long_reason, 124, why, sizeof why) == -EINVAL);
  CHECK(strcmp(why, "close reason of 124 bytes is over 123") == 0);
  CHECK(lp_ws_close_payload(cp, 1000, long_reason, 123, why, sizeof why) == 125);
  CHECK(lp_ws_close_payload(cp, 1000, "\xff", 1, why, sizeof why) == -EINVAL);
  CHECK(strcmp(why, "close reason is not UTF-8") == 0);

  lp_ws_config bad = server_cfg(0);
  bad.max_message = 0;
  CHECK(lp_ws_config_check(&bad, why, sizeof why) == -EINVAL);
  CHECK(strcmp(why, "maxMessageSize must be from 1 to 1073741824") == 0);
}

// ---- permessage-deflate ----------------------------------------------------------------

// The compressed payload of message p[0..n) (RSV1 frame's payload), into s at its end.
static size_t deflated(lp_ws_deflater *df, const void *p, size_t n, uint8_t *out) {
  lp_buf *f;
  CHECK(lp_ws_encode_deflate(df, pool, LP_WS_TEXT, p, n, NULL, &f) == 0);
  const uint8_t *b = lp_buf_rptr(f);
  CHECK((b[0] & 0x40) && !(b[1] & 0x80));
  size_t len = b[1] & 0x7f, h = 2;
  if (len == 126) len = (size_t)lp_load_uint(b + 2, 2, true), h = 4;
  else if (len == 127) len = (size_t)lp_load_uint(b + 2, 8, true), h = 10;
  CHECK(h + len == lp_buf_readable(f));
  memcpy(out, b + h, len);
  lp_buf_unref(f);
  return len;
}

static void expect_deflate(size_t max, bool peer_no_context, stream *st, const char *want) {
  lp_ws_config c = server_cfg(max);
  c.deflate = true;
  c.peer_no_context = peer_no_context;
  char *t = decode_all(&c, st->b, st->n);
  if (strcmp(t, want)) fprintf(stderr, "got:\n%s\nwant:\n%s\n", t, want);
  CHECK(strcmp(t, want) == 0);
  free(t);
  st->n = 0;
}

static void test_deflate(void) {
  static uint8_t z[70000];
  lp_ws_deflater df;
  lp_ws_deflater_init(&df, 15, false);
  // one compressed frame; then a second message using the first one's context
  size_t n = deflated(&df, "hello hello hello", 17, z);
  frame(&s, 0xc1, z, n, true);
  n = deflated(&df, "hello hello hello", 17, z);
  CHECK(n < 8); // back-references into the previous message
  frame(&s, 0xc1, z, n, true);
  frame(&s, 0x81, "plain", 5, true); // uncompressed messages still pass
  expect_deflate(0, false, &s, "M1 hello hello hello\nM1 hello hello hello\nM1 plain\n");
  lp_ws_deflater_free(&df);

  // without context takeover every message stands alone; fragments of a compressed message
  lp_ws_deflater_init(&df, 9, true);
  static const char text[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 compressed across fragments";
  size_t tl = sizeof text - 1;
  n = deflated(&df, text, tl, z);
  size_t n2 = deflated(&df, text, tl, z + n);
  CHECK(n == n2 && memcmp(z, z + n, n) == 0);
  frame(&s, 0x41, z, 3, true); // RSV1 on the first frame only
  frame(&s, 0x89, "", 0, true);
  frame(&s, 0x00, z + 3, n - 3 - 2, true);
  frame(&s, 0x80, z + n - 2, 2, true);
  char want[200];
  str w = {0};
  puts_(&w, "C9 \nM1 ");
  show(&w, (const uint8_t *)text, tl);
  puts_(&w, "\n");
  snprintf(want, sizeof want, "%s", w.s);
  free(w.s);
  expect_deflate(0, true, &s, want);
  lp_ws_deflater_free(&df);

  // a compressed bomb: 8 MiB of zeros in a few KiB ends in 1009 at 1 MiB, never in 8 MiB of memory
  uint8_t *zeros = calloc(1, 8u << 20);
  lp_ws_deflater_init(&df, 15, false);
  lp_buf *f;
  CHECK(lp_ws_encode_deflate(&df, pool, LP_WS_BINARY, zeros, 8u << 20, KEY, &f) == 0);
  CHECK(lp_buf_readable(f) < 20000);
  lp_ws_config c = server_cfg(0);
  c.deflate = true;
  lp_ws_decoder d;
  lp_ws_decoder_init(&d, &c);
  CHECK(lp_ws_decode(&d, f) == LP_WS_ERROR && d.close_code == 1009);
  CHECK(strcmp(d.error.message, "WsMessageTooBig: inflated message exceeds maxMessageSize 1048576 (1009)") == 0);
  lp_ws_decoder_free(&d);
  lp_buf_unref(f);
  // at the limit exactly it passes (a fresh compressor: the decoder is a fresh one too)
  lp_ws_deflater_free(&df);
  lp_ws_deflater_init(&df, 15, false);
  CHECK(lp_ws_encode_deflate(&df, pool, LP_WS_BINARY, zeros, 1u << 20, KEY, &f) == 0);
  lp_ws_decoder_init(&d, &c);
  CHECK(lp_ws_decode(&d, f) == LP_WS_MESSAGE && lp_buf_readable(d.payload) == (1u << 20));
  lp_buf_unref(d.payload);
  lp_ws_decoder_free(&d);
  lp_buf_unref(f);
  lp_ws_deflater_free(&df);
  free(zeros);

  // violations
  frame(&s, 0xc9, "", 0, true);
  expect_deflate(0, false, &s, "E WsProtocolError: compressed bit (RSV1) on a control frame (1002) [1002]\n");
  frame(&s, 0x01, "a", 1, true);
  frame(&s, 0xc0, "b", 1, true);
  expect_deflate(0, false, &s, "E WsProtocolError: compressed bit (RSV1) on a continuation frame (1002) [1002]\n");
  frame(&s, 0xa1, "x", 1, true);
  expect_deflate(0, false, &s, "E WsProtocolError: reserved bits set (0x20) beyond permessage-deflate's (1002) [1002]\n");
  frame(&s, 0xc1, "\xff\xff\xff", 3, true);
  expect_deflate(0, false, &s, "E WsInvalidPayload: invalid compressed data (1007) [1007]\n");
  // compressed text that inflates to bad UTF-8
  lp_ws_deflater_init(&df, 15, false);
  n = deflated(&df, "ok\xff", 3, z);
  frame(&s, 0xc1, z, n, true);
  expect_deflate(0, false, &s, "E WsInvalidPayload: text message is not UTF-8 (1007) [1007]\n");
  lp_ws_deflater_free(&df);
}

static void test_fragments_mode(void) {
  lp_ws_config c = server_cfg(10);
  c.fragments = true;
  frame(&s, 0x01, "hel", 3, true);
  frame(&s, 0x89, "p1", 2, true);
  frame(&s, 0x00, "lo \xe2", 4, true); // a character split across fragments
  frame(&s, 0x80, "\x82\xac", 2, true);
  frame(&s, 0x82, "whole", 5, true); // a message in one frame: a message as usual
  frame(&s, 0x02, "", 0, true);
  frame(&s, 0x80, "b", 1, true);
  char *t = decode_all(&c, s.b, s.n);
  CHECK(strcmp(t, "F1 hel\nC9 p1\nF1 lo \\e2\nF1. \\82\\ac\nM2 whole\nF2 \nF2. b\n") == 0);
  if (strcmp(t, "F1 hel\nC9 p1\nF1 lo \\e2\nF1. \\82\\ac\nM2 whole\nF2 \nF2. b\n")) fprintf(stderr, "%s", t);
  free(t);
  s.n = 0;
  // the limit counts the whole message, the UTF-8 check spans fragments
  frame(&s, 0x01, "123456", 6, true);
  frame(&s, 0x80, "78901", 5, true);
  t = decode_all(&c, s.b, s.n);
  CHECK(strcmp(t, "F1 123456\nE WsMessageTooBig: message of at least 11 bytes exceeds maxMessageSize 10 (1009) [1009]\n") == 0);
  free(t);
  s.n = 0;
  frame(&s, 0x01, "ab\xe2", 3, true);
  frame(&s, 0x80, "z", 1, true);
  t = decode_all(&c, s.b, s.n);
  CHECK(strcmp(t, "F1 ab\\e2\nE WsInvalidPayload: text message is not UTF-8 (1007) [1007]\n") == 0);
  free(t);
  s.n = 0;
  // compressed fragments come inflated, frame by frame, within the limit
  c.deflate = true;
  c.max_message = 100;
  lp_ws_deflater df;
  lp_ws_deflater_init(&df, 15, false);
  static uint8_t z[300];
  static const char msg[] = "fragments of a compressed message, fragments of a compressed message";
  size_t n = deflated(&df, msg, sizeof msg - 1, z);
  frame(&s, 0x41, z, n / 2, true);
  frame(&s, 0x80, z + n / 2, n - n / 2, true);
  t = decode_all(&c, s.b, s.n);
  str joined = {0};
  for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
    CHECK(strncmp(line, "F1", 2) == 0);
    puts_(&joined, strchr(line, ' ') + 1);
  }
  CHECK(joined.s && strcmp(joined.s, msg) == 0);
  free(joined.s);
  free(t);
  s.n = 0;
  lp_ws_deflater_free(&df);
}

int main(void) {
  pool = lp_pool_new();
  test_messages();
  test_fragments();
  test_close();
  test_violations();
  test_limits();
  test_utf8();
  test_encode();
  test_deflate();
  test_fragments_mode();
  lp_pool_free(pool);
  return check_report();
}
