// test_proxy_protocol.c: the PROXY protocol step (proxy_protocol.c) as a pure
// function: v1 and v2 headers, their errors by exact text, and every split:
// each prefix of an input answers "need more" or exactly what the whole input
// answers, and once it answered it never changes. Then the handler
// (proxy_handler.c) in a pipeline without Lua, the input split into two reads
// at every place and fed byte by byte: the same event, addresses and bytes
// handed on, or the same error and close.
#include "buffer.h"
#include "channel.h"
#include "check.h"
#include "future.h"
#include "loop.h"
#include "pipeline.h"
#include "proxy_protocol.h"

#include <stdio.h>
#include <string.h>

// The answer for p[0..n) as text: "none", "absent: msg", "error: msg", or
// "v1 src dst +len" / "v2 local +len".
static void answer(const uint8_t *p, size_t n, char *out, size_t outlen) {
  lp_proxy_header h;
  lp_error err;
  int rc = lp_proxy_decode(p, n, &h, &err);
  if (rc == LP_PROXY_NONE) snprintf(out, outlen, "none");
  else if (rc == LP_PROXY_ABSENT) snprintf(out, outlen, "absent: %s", err.message);
  else if (rc == LP_PROXY_ERROR) snprintf(out, outlen, "error: %s", err.message);
  else if (!h.has_addresses) snprintf(out, outlen, "v%d%s +%zu", h.version, h.local ? " local" : "", h.length);
  else {
    char s[80], d[80];
    snprintf(out, outlen, "v%d %s %s +%zu", h.version, lp_addr_format(&h.source, s, sizeof s),
             lp_addr_format(&h.destination, d, sizeof d), h.length);
  }
}

// The whole input answers want; every prefix answers "none" until the first
// that answers, and from there on the same as the whole.
static void check(const char *input, size_t n, const char *want) {
  char whole[300], part[300];
  answer((const uint8_t *)input, n, whole, sizeof whole);
  if (strcmp(whole, want) != 0) fprintf(stderr, "want %s\ngot  %s\n", want, whole);
  CHECK(strcmp(whole, want) == 0);
  bool answered = false;
  for (size_t k = 0; k <= n; k++) {
    answer((const uint8_t *)input, k, part, sizeof part);
    if (strcmp(part, "none") == 0) {
      if (answered) fprintf(stderr, "prefix %zu of %s: none after an answer\n", k, want);
      CHECK(!answered);
      continue;
    }
    answered = true;
    if (strcmp(part, whole) != 0) fprintf(stderr, "prefix %zu: %s\nwhole: %s\n", k, part, whole);
    CHECK(strcmp(part, whole) == 0);
  }
}
#define CHECKS(lit, want) check(lit, sizeof lit - 1, want)

// ---- the handler in a pipeline --------------------------------------------------------------

static char trace[4096];
static void note(const char *t) { strncat(trace, t, sizeof trace - strlen(trace) - 1); }

static void fake_write(lp_channel *ch, lp_msg *m, lp_future *f) {
  (void)ch;
  lp_msg_release(m);
  if (f) lp_future_succeed(f);
}
static void fake_flush(lp_channel *ch) { (void)ch; }
static void fake_read(lp_channel *ch) { (void)ch; }
static void fake_close(lp_channel *ch, lp_future *f) {
  note(" close");
  lp_channel_close_now(ch);
  if (f) lp_future_succeed(f);
}
// What reaches the tail: the bytes as they come (read boundaries left out, so
// that every split gives the same trace), "<v2 source destination local>" for
// the event, "!message" for errors.
static bool fake_tail(lp_channel *ch, int ev, lp_msg *m) {
  (void)ch;
  if (ev == LP_EV_READ && m->kind == LP_MSG_BUF) {
    size_t o = strlen(trace), n = lp_buf_readable(m->u.buf);
    if (o + n < sizeof trace) {
      memcpy(trace + o, lp_buf_rptr(m->u.buf), n);
      trace[o + n] = 0;
    }
  } else if (ev == LP_EV_USER_EVENT && m->kind == LP_MSG_EVENT) {
    const lp_event_info *e = m->u.event;
    char t[200];
    snprintf(t, sizeof t, "<%s v%lld %s %s%s>", e->kind, e->fields[0].integer, e->fields[1].str ? e->fields[1].str : "-",
             e->fields[2].str ? e->fields[2].str : "-", e->fields[3].boolean ? " local" : "");
    note(t);
  } else if (ev == LP_EV_EXCEPTION && m->kind == LP_MSG_ERROR) {
    note("!");
    note(m->u.err->message);
  }
  if (m) lp_msg_release(m);
  return true;
}
static const lp_transport fake_transport = {"fake", fake_write, fake_flush, fake_read, fake_close, NULL, NULL, fake_tail};

// Feed input split at cuts (ascending; then the rest), then end the input;
// the trace, then " remote=... local=..." as the channel saw them at the end.
static void run_handler(lp_loop *loop, bool optional, const char *in, size_t n, const size_t *cuts, size_t ncuts,
                        char *out, size_t outlen) {
  lp_channel *ch = lp_channel_new(loop, &fake_transport, -1, NULL);
  ch->flags |= LP_CH_CONNECTED;
  lp_sockaddr a;
  lp_addr_parse("127.0.0.1", 40000, &a); // the balancer's connection
  lp_chaddr_set(&ch->remote, &a);
  lp_addr_parse("127.0.0.1", 9001, &a);
  lp_chaddr_set(&ch->local, &a);
  lp_channel_register(ch);
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_proxy_ctx_new(&ch->pipeline, "proxy", optional));
  trace[0] = 0;
  size_t at = 0;
  for (size_t k = 0; k <= ncuts && !(ch->flags & LP_CH_CLOSED); k++) {
    size_t end = k < ncuts ? cuts[k] : n;
    if (end <= at) continue;
    lp_msg m = lp_msg_buf(lp_buf_from(loop->pool, in + at, end - at));
    at = end;
    lp_channel_fire(ch, LP_EV_READ, &m);
    lp_channel_fire(ch, LP_EV_READ_COMPLETE, NULL);
  }
  char r[80], l[80];
  snprintf(out, outlen, "%s remote=%s local=%s%s", trace, lp_chaddr_format(&ch->remote, r, sizeof r),
           lp_chaddr_format(&ch->local, l, sizeof l), ch->pipeline.count ? " (still there)" : "");
  if (!(ch->flags & LP_CH_CLOSED)) lp_channel_close_now(ch);
  lp_loop_run_tasks(loop);
}

static void check_handler(lp_loop *loop, bool optional, const char *in, size_t n, const char *want) {
  static char whole[4096], part[4096];
  run_handler(loop, optional, in, n, NULL, 0, whole, sizeof whole);
  if (strcmp(whole, want) != 0) fprintf(stderr, "want %s\ngot  %s\n", want, whole);
  CHECK(strcmp(whole, want) == 0);
  for (size_t cut = 1; cut < n; cut++) { // two reads, split at every place
    run_handler(loop, optional, in, n, &cut, 1, part, sizeof part);
    if (strcmp(part, whole) != 0) fprintf(stderr, "split at %zu: %s\nwhole: %s\n", cut, part, whole);
    CHECK(strcmp(part, whole) == 0);
  }
  size_t cuts[512];
  for (size_t i = 0; i < n && i < 512; i++) cuts[i] = i + 1; // a byte per read
  run_handler(loop, optional, in, n, cuts, n < 512 ? n : 512, part, sizeof part);
  CHECK(strcmp(part, whole) == 0);
}
#define CHECK_HANDLER(opt, lit, want) check_handler(loop, opt, lit, sizeof lit - 1, want)

static void test_handler(void) {
  lp_loop *loop = lp_loop_new(0);
  CHECK_HANDLER(false, "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nhello\nworld",
                "<proxyProtocol v1 192.0.2.7:56324 198.51.100.1:443>hello\nworld remote=192.0.2.7:56324 local=198.51.100.1:443");
  CHECK_HANDLER(false, "\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c\xcb\0\x71\x09\x0a\0\0\x01\x9c\x40\x1f\x90GET /",
                "<proxyProtocol v2 203.0.113.9:40000 10.0.0.1:8080>GET / remote=203.0.113.9:40000 local=10.0.0.1:8080");
  CHECK_HANDLER(false, "\r\n\r\n\0\r\nQUIT\n\x20\0\0\0",
                "<proxyProtocol v2 - - local> remote=127.0.0.1:40000 local=127.0.0.1:9001");
  CHECK_HANDLER(false, "PROXY UNKNOWN\r\nx", "<proxyProtocol v1 - ->x remote=127.0.0.1:40000 local=127.0.0.1:9001");
  CHECK_HANDLER(false, "GET / HTTP/1.1\r\n",
                "!ProxyProtocolError: no PROXY protocol header at the start of the connection close remote=127.0.0.1:40000 "
                "local=127.0.0.1:9001 (still there)");
  CHECK_HANDLER(false, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                "!ProxyProtocolError: v1 header does not end with \\r\\n close remote=127.0.0.1:40000 local=127.0.0.1:9001 (still there)");
  // Optional: no header, the bytes go on untouched; a header still counts.
  CHECK_HANDLER(true, "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\n remote=127.0.0.1:40000 local=127.0.0.1:9001");
  CHECK_HANDLER(true, "PROXY TCP6 ::1 ::2 1 2\r\nz", "<proxyProtocol v1 [::1]:1 [::2]:2>z remote=[::1]:1 local=[::2]:2");
  lp_loop_free(loop);
}

int main(void) {
  test_handler();
  // v1
  CHECKS("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /", "v1 192.0.2.7:56324 198.51.100.1:443 +45");
  CHECKS("PROXY TCP6 2001:db8::1 ::1 0 65535\r\n", "v1 [2001:db8::1]:0 [::1]:65535 +36");
  CHECKS("PROXY UNKNOWN\r\n", "v1 +15");
  CHECKS("PROXY UNKNOWN whatever follows\r\nx", "v1 +32");
  CHECKS("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "error: ProxyProtocolError: v1 header has a bad port");
  CHECKS("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "error: ProxyProtocolError: v1 header has a bad port");
  CHECKS("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "error: ProxyProtocolError: v1 header must have 4 fields after the protocol");
  CHECKS("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "error: ProxyProtocolError: v1 header must have 4 fields after the protocol");
  CHECKS("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "error: ProxyProtocolError: v1 header has a bad IPv6 address");
  CHECKS("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "error: ProxyProtocolError: v1 header does not end with \\r\\n");
  CHECKS("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "error: ProxyProtocolError: v1 protocol must be TCP4, TCP6 or UNKNOWN");
  CHECKS("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", "error: ProxyProtocolError: v1 header holds a NUL byte");
  char longline[200];
  memset(longline, '1', sizeof longline);
  memcpy(longline, "PROXY TCP4 ", 11);
  check(longline, sizeof longline, "error: ProxyProtocolError: v1 header longer than 107 bytes");
  // A 107-byte line is the longest allowed.
  char maxline[LP_PROXY_V1_MAX + 1];
  memset(maxline, 'x', sizeof maxline);
  memcpy(maxline, "PROXY UNKNOWN ", 14);
  memcpy(maxline + LP_PROXY_V1_MAX - 2, "\r\n", 2);
  check(maxline, LP_PROXY_V1_MAX, "v1 +107");
  CHECKS("PROXZ TCP4", "absent: ProxyProtocolError: no PROXY protocol header at the start of the connection");
  CHECKS("GET / HTTP/1.1\r\n", "absent: ProxyProtocolError: no PROXY protocol header at the start of the connection");
  CHECKS("\r\n\r\n\0\r\nQUIX", "absent: ProxyProtocolError: no PROXY protocol header at the start of the connection");
  CHECKS("PROXY TCP4 1.2.3.4 5", "none");
  // v2
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c\xcb\0\x71\x09\x0a\0\0\x01\x9c\x40\x1f\x90rest",
         "v2 203.0.113.9:40000 10.0.0.1:8080 +28");
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x13\xcb\0\x71\x09\x0a\0\0\x01\x9c\x40\x1f\x90\x04\0\x04" "abcd",
         "v2 203.0.113.9:40000 10.0.0.1:8080 +35");
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x21\x21\0\x24"
         "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
         "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\x50\x01\xbb",
         "v2 [2001:db8::1]:80 [::1]:443 +52");
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x20\0\0\0", "v2 local +16");
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x20\x11\0\x0c\1\2\3\4\5\6\7\x08\0\1\0\2", "v2 local +28"); // LOCAL ignores the addresses
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x21\0\0\0", "v2 +16");      // PROXY over UNSPEC: the socket's addresses
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x11\x11\0\0", "error: ProxyProtocolError: v2 header has version 1");
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x22\x11\0\0", "error: ProxyProtocolError: v2 header has command 2 (LOCAL is 0, PROXY 1)");
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x21\x41\0\0", "error: ProxyProtocolError: v2 header has address family 4, protocol 1");
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x21\x11\x10\x01", "error: ProxyProtocolError: v2 header of 4097 bytes exceeds 4096");
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x21\x21\0\x0c", "error: ProxyProtocolError: v2 address block of 12 bytes is shorter than its family's 36");
  CHECKS("\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c\1\2", "none");
  return check_report();
}
