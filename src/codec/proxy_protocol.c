// proxy_protocol.c: the PROXY protocol header (v1 text, v2 binary) as a pure
// step over the first bytes of a connection: no pipeline, loop or host.
//
// Rules it keeps (the fuzz target checks them):
// - Split invariance: the answer depends on the bytes only. Every check runs
//   on a part of the header whose extent the bytes already fix (the first
//   byte, the signature, v1's first "\n" within 107 bytes, v2's 16-byte fixed
//   part), so an answer other than NONE never changes with more bytes.
// - Bounded: a v1 line is at most 107 bytes, a v2 header at most 16 +
//   LP_PROXY_V2_MAX_LEN; past that it is an error, not a wait.
// - TLVs after a v2 address block are skipped, never interpreted.
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

const uint8_t lp_proxy_v2_sig[LP_PROXY_V2_SIG_LEN] = {'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};
static const char v1_sig[] = "PROXY ";

static int bad(lp_error *err, int rc, const char *text) {
  lp_error_named(err, LP_EPROXY, "%s", text);
  return rc;
}

// A port: 1 to 5 digits, no leading zero, at most 65535.
static bool port_of(const char *s, uint16_t *out) {
  size_t n = strlen(s);
  if (n < 1 || n > 5 || (n > 1 && s[0] == '0')) return false;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v > 65535) return false;
  *out = (uint16_t)v;
  return true;
}

static bool addr_of(int family, const char *host, uint16_t port, lp_sockaddr *out) {
  memset(out, 0, sizeof *out);
  if (family == AF_INET) {
    out->in4.sin_family = AF_INET;
    out->in4.sin_port = htons(port);
    return inet_pton(AF_INET, host, &out->in4.sin_addr) == 1;
  }
  out->in6.sin6_family = AF_INET6;
  out->in6.sin6_port = htons(port);
  return inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1;
}

// "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN ...".
static int decode_v1(const uint8_t *p, size_t n, lp_proxy_header *h, lp_error *err) {
  size_t look = n < LP_PROXY_V1_MAX ? n : LP_PROXY_V1_MAX;
  const uint8_t *nl = memchr(p, '\n', look);
  if (!nl) {
    if (n >= LP_PROXY_V1_MAX) return bad(err, LP_PROXY_ERROR, "v1 header longer than 107 bytes");
    return LP_PROXY_NONE;
  }
  size_t len = (size_t)(nl - p) + 1;
  if (len < 2 || p[len - 2] != '\r') return bad(err, LP_PROXY_ERROR, "v1 header does not end with \\r\\n");
  char line[LP_PROXY_V1_MAX + 1];
  memcpy(line, p, len - 2);
  line[len - 2] = 0;
  if (strlen(line) != len - 2) return bad(err, LP_PROXY_ERROR, "v1 header holds a NUL byte");
  memset(h, 0, sizeof *h);
  h->version = 1;
  h->length = len;
  // Split on single spaces: the specification allows exactly one between fields.
  char *f[7];
  int nf = 0;
  char *s = line + strlen(v1_sig);
  for (;;) {
    if (nf == 7) break;
    f[nf++] = s;
    char *sp = strchr(s, ' ');
    if (!sp) break;
    *sp = 0;
    s = sp + 1;
  }
  if (strcmp(f[0], "UNKNOWN") == 0) return LP_PROXY_OK; // whatever follows is ignored
  int family;
  if (strcmp(f[0], "TCP4") == 0) family = AF_INET;
  else if (strcmp(f[0], "TCP6") == 0) family = AF_INET6;
  else return bad(err, LP_PROXY_ERROR, "v1 protocol must be TCP4, TCP6 or UNKNOWN");
  if (nf != 5) return bad(err, LP_PROXY_ERROR, "v1 header must have 4 fields after the protocol");
  uint16_t sport, dport;
  if (!port_of(f[3], &sport) || !port_of(f[4], &dport)) return bad(err, LP_PROXY_ERROR, "v1 header has a bad port");
  if (!addr_of(family, f[1], sport, &h->source) || !addr_of(family, f[2], dport, &h->destination))
    return bad(err, LP_PROXY_ERROR, family == AF_INET ? "v1 header has a bad IPv4 address" : "v1 header has a bad IPv6 address");
  h->has_addresses = true;
  return LP_PROXY_OK;
}

static int decode_v2(const uint8_t *p, size_t n, lp_proxy_header *h, lp_error *err) {
  if (n < 16) return LP_PROXY_NONE;
  char text[LP_ERROR_MESSAGE_MAX];
  int version = p[12] >> 4, command = p[12] & 15, family = p[13] >> 4, proto = p[13] & 15;
  size_t len = (size_t)p[14] << 8 | p[15];
  if (version != 2) {
    snprintf(text, sizeof text, "v2 header has version %d", version);
    return bad(err, LP_PROXY_ERROR, text);
  }
  if (command > 1) {
    snprintf(text, sizeof text, "v2 header has command %d (LOCAL is 0, PROXY 1)", command);
    return bad(err, LP_PROXY_ERROR, text);
  }
  if (family > 3 || proto > 2) {
    snprintf(text, sizeof text, "v2 header has address family %d, protocol %d", family, proto);
    return bad(err, LP_PROXY_ERROR, text);
  }
  if (len > LP_PROXY_V2_MAX_LEN) {
    snprintf(text, sizeof text, "v2 header of %zu bytes exceeds %d", len, LP_PROXY_V2_MAX_LEN);
    return bad(err, LP_PROXY_ERROR, text);
  }
  static const size_t need[] = {0, 12, 36, 216}; // UNSPEC, INET, INET6, UNIX address blocks
  if (command == 1 && len < need[family]) {
    snprintf(text, sizeof text, "v2 address block of %zu bytes is shorter than its family's %zu", len, need[family]);
    return bad(err, LP_PROXY_ERROR, text);
  }
  if (n < 16 + len) return LP_PROXY_NONE;
  memset(h, 0, sizeof *h);
  h->version = 2;
  h->length = 16 + len;
  h->local = command == 0;
  if (command == 0 || (family != 1 && family != 2)) return LP_PROXY_OK; // LOCAL, UNSPEC, UNIX: the socket's addresses
  const uint8_t *a = p + 16;
  if (family == 1) {
    h->source.in4.sin_family = h->destination.in4.sin_family = AF_INET;
    memcpy(&h->source.in4.sin_addr, a, 4);
    memcpy(&h->destination.in4.sin_addr, a + 4, 4);
    memcpy(&h->source.in4.sin_port, a + 8, 2); // both in network order already
    memcpy(&h->destination.in4.sin_port, a + 10, 2);
  } else {
    h->source.in6.sin6_family = h->destination.in6.sin6_family = AF_INET6;
    memcpy(&h->source.in6.sin6_addr, a, 16);
    memcpy(&h->destination.in6.sin6_addr, a + 16, 16);
    memcpy(&h->source.in6.sin6_port, a + 32, 2);
    memcpy(&h->destination.in6.sin6_port, a + 34, 2);
  }
  h->has_addresses = true;
  return LP_PROXY_OK;
}

int lp_proxy_decode(const uint8_t *p, size_t n, lp_proxy_header *h, lp_error *err) {
  if (n == 0) return LP_PROXY_NONE;
  const uint8_t *sig = p[0] == 'P' ? (const uint8_t *)v1_sig : lp_proxy_v2_sig;
  size_t siglen = p[0] == 'P' ? strlen(v1_sig) : LP_PROXY_V2_SIG_LEN;
  size_t k = n < siglen ? n : siglen;
  if (memcmp(p, sig, k) != 0) return bad(err, LP_PROXY_ABSENT, "no PROXY protocol header at the start of the connection");
  if (n < siglen) return LP_PROXY_NONE;
  return p[0] == 'P' ? decode_v1(p, n, h, err) : decode_v2(p, n, h, err);
}
