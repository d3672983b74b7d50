// test_proxy_protocol.c: the PROXY protocol step (proxy_protocol.c) as a pure
// function: v1 and v2 headers, their errors by exact text, and every split:
// each prefix of an input answers "need more" or exactly what the whole input
// answers, and once it answered it never changes.
#include "check.h"
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

int main(void) {
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
