// http_parser.c: the HTTP/1.1 message parser of http.h (RFC 9112), a state
// machine over the cumulation.
//
// Invariants:
// - Nothing of a head (or of a chunk line, or of a trailer section) is
//   consumed until it is complete, so the fields recorded while it arrives
//   (offsets from the reader index) stay valid however the cumulation moves.
//   Complete lines are parsed once: p->pos marks the end of the last one, and
//   p->scanned how far past it the search for the next LF already went.
// - Split invariance: every decision depends only on bytes up to a fixed bound
//   from where the current line starts (the end of the line, or the limit), so
//   a prefix either gives the same answer as the whole input or asks for more.
//   Within a message, errors are found in stream order.
// - Memory: while a head is incomplete the cumulation holds at most
//   max_line + 2 + max_header + 2 bytes of it (a longer one is an error); body
//   bytes are consumed as they come; after a message that ends the connection
//   later bytes are dropped.
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  S_START,      // between messages: skipping empty lines
  S_HEAD,       // start line and header fields
  S_END,        // END is next (a message without body bytes left)
  S_BODY,       // Content-Length body: p->remaining bytes left
  S_CHUNK_LINE, // chunk size and extensions
  S_CHUNK_DATA, // chunk data: p->remaining bytes left
  S_CHUNK_CRLF, // the CRLF after chunk data
  S_TRAILERS,   // trailer section after the last chunk
  S_BODY_EOF,   // response body until the input ends
  S_UPGRADED,   // the stream belongs to another protocol
  S_CLOSED,     // the connection ends after the last message: input dropped
  S_ERROR,
};

// Character classes (RFC 9110 5.6.2 tchar, 5.5 field-vchar with SP/HTAB and
// obs-text, 3986 characters of a request target, HEXDIG, 5.6.4 qdtext).
enum { C_TCHAR = 1, C_VALUE = 2, C_TARGET = 4, C_HEX = 8, C_QDTEXT = 16 };
static const uint8_t cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  18, 0,  0,  0,  0,  0,  0,  //
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  //
    18, 23, 2,  19, 23, 23, 23, 23, 22, 22, 23, 23, 22, 23, 23, 22, //  !"#$%&'()*+,-./
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 22, 22, 18, 22, 18, 22, // 0-9 :;<=>?
    22, 31, 31, 31, 31, 31, 31, 23, 23, 23, 23, 23, 23, 23, 23, 23, // @A-O
    23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 22, 2,  22, 19, 23, // P-Z [\]^_
    19, 31, 31, 31, 31, 31, 31, 23, 23, 23, 23, 23, 23, 23, 23, 23, // `a-o
    23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 18, 19, 18, 23, 0,  // p-z {|}~ DEL
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, // obs-text
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, //
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, //
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, //
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, //
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, //
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, //
    18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, //
};

static bool is_ows(uint8_t c) { return c == ' ' || c == '\t'; }
static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

// Case-insensitive compare of n bytes of s with lower-case lit. Safe for field
// names and values: the only bytes c with c|0x20 a lower-case letter, digit or
// '-' are letters, digits, '-' and control characters, which never get here.
static bool eq_lower(const uint8_t *s, size_t n, const char *lit) {
  for (size_t i = 0; i < n; i++)
    if ((s[i] | 0x20) != (uint8_t)lit[i]) return false;
  return lit[n] == 0;
}

// ---- configuration ----------------------------------------------------------------------

void lp_http_config_default(lp_http_config *c, bool response) {
  c->response = response;
  c->max_line = LP_HTTP_DEFAULT_MAX_LINE;
  c->max_header = LP_HTTP_DEFAULT_MAX_HEADER;
  c->max_headers = LP_HTTP_DEFAULT_MAX_HEADERS;
  c->max_body = LP_HTTP_DEFAULT_MAX_BODY;
  c->max_chunk_line = LP_HTTP_DEFAULT_MAX_CHUNK_LINE;
}

int lp_http_config_check(const lp_http_config *c, char *why, size_t whylen) {
  const char *w = NULL;
  if (c->max_line < 16 || c->max_line > LP_HTTP_LIMIT_MAX) w = "maxInitialLineLength must be from 16 to 67108864";
  else if (c->max_header < 2 || c->max_header > LP_HTTP_LIMIT_MAX) w = "maxHeaderSize must be from 2 to 67108864";
  else if (c->max_headers < 1 || c->max_headers > LP_HTTP_MAX_HEADERS_MAX) w = "maxHeaders must be from 1 to 65536";
  else if (c->max_chunk_line < 1 || c->max_chunk_line > LP_HTTP_LIMIT_MAX) w = "maxChunkLine must be from 1 to 67108864";
  else if (c->max_body > (uint64_t)INT64_MAX) w = "maxBody is too large";
  if (!w) return 0;
  if (why && whylen) snprintf(why, whylen, "%s", w);
  return -EINVAL;
}

void lp_http_parser_init(lp_http_parser *p, const lp_http_config *c) {
  memset(p, 0, sizeof *p);
  p->cfg = *c;
  p->state = S_START;
  p->request_method = LP_HTTP_M_GET;
}

void lp_http_parser_free(lp_http_parser *p) {
  free(p->fields);
  p->fields = NULL;
  p->hcap = 0;
}

void lp_http_parser_resume(lp_http_parser *p) {
  if (p->state == S_UPGRADED) p->state = p->head.keep_alive ? S_START : S_CLOSED;
}

static const char *const method_names[] = {NULL,      "GET",     "HEAD",  "POST",  "PUT",
                                           "DELETE",  "CONNECT", "OPTIONS", "TRACE", "PATCH"};

const char *lp_http_method_name(int m) {
  return m > 0 && m < (int)LP_ARRAY_LEN(method_names) ? method_names[m] : NULL;
}

const lp_http_header *lp_http_find(const lp_http_head *h, const char *name) {
  size_t n = strlen(name);
  for (uint32_t i = 0; i < h->nheaders; i++) {
    const lp_http_header *f = &h->headers[i];
    if (f->name.len != n) continue;
    const uint8_t *s = h->base + f->name.at;
    size_t k = 0;
    while (k < n && (s[k] | 0x20) == ((uint8_t)name[k] | 0x20)) k++;
    if (k == n) return f;
  }
  return NULL;
}

// ---- errors -------------------------------------------------------------------------------

static const char *kind_of(const lp_http_parser *p, int status) {
  switch (status) {
  case 413: return "HttpBodyTooLarge";
  case 414: return "HttpUriTooLong";
  case 417: return "HttpExpectationFailed";
  case 431: return "HttpHeaderTooLarge";
  case 501: return "HttpNotImplemented";
  case 505: return "HttpVersionNotSupported";
  default: return p->cfg.response ? "HttpBadResponse" : "HttpBadRequest";
  }
}

// The parser fails for good: ERROR now and on every later call.
static int fail(lp_http_parser *p, int status, const char *fmt, ...) LP_PRINTF(3, 4);
static int fail(lp_http_parser *p, int status, const char *fmt, ...) {
  p->state = S_ERROR;
  p->status = status;
  va_list ap;
  va_start(ap, fmt);
  lp_error_vkind(&p->error, LP_EHTTP, kind_of(p, status), fmt, ap);
  va_end(ap);
  return LP_HTTP_ERROR;
}

static int fail_limit(lp_http_parser *p, int status, size_t limit, const char *what) {
  fail(p, status, "%s over %zu bytes", what, limit);
  p->error.limit = (long long)limit;
  return LP_HTTP_ERROR;
}

// A byte that may not be where it is.
static int bad_byte(lp_http_parser *p, uint8_t c, const char *where) {
  if (c == '\r') return fail(p, 400, "bare CR in %s", where);
  if (c < 0x20 || c == 0x7f) return fail(p, 400, "control character 0x%02x in %s", c, where);
  return fail(p, 400, "character 0x%02x in %s", c, where);
}

// ---- start lines --------------------------------------------------------------------------

static int version(lp_http_parser *p, const uint8_t *v, size_t n, const char *where) {
  if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !is_digit(v[5]) || v[6] != '.' || !is_digit(v[7])) {
    for (size_t i = 0; i < n; i++)
      if (!(cls[v[i]] & C_VALUE) || v[i] == '\t') return bad_byte(p, v[i], where);
    return fail(p, 400, "malformed HTTP version in %s", where);
  }
  if (v[5] != '1') return fail(p, 505, "HTTP/%c.%c is not supported", v[5], v[7]);
  p->head.version = v[7] == '0' ? 10 : 11;
  return 0;
}

static int method_id(const uint8_t *m, size_t n) {
  switch (n) {
  case 3:
    if (memcmp(m, "GET", 3) == 0) return LP_HTTP_M_GET;
    if (memcmp(m, "PUT", 3) == 0) return LP_HTTP_M_PUT;
    break;
  case 4:
    if (memcmp(m, "POST", 4) == 0) return LP_HTTP_M_POST;
    if (memcmp(m, "HEAD", 4) == 0) return LP_HTTP_M_HEAD;
    break;
  case 5:
    if (memcmp(m, "PATCH", 5) == 0) return LP_HTTP_M_PATCH;
    if (memcmp(m, "TRACE", 5) == 0) return LP_HTTP_M_TRACE;
    break;
  case 6:
    if (memcmp(m, "DELETE", 6) == 0) return LP_HTTP_M_DELETE;
    break;
  case 7:
    if (memcmp(m, "OPTIONS", 7) == 0) return LP_HTTP_M_OPTIONS;
    if (memcmp(m, "CONNECT", 7) == 0) return LP_HTTP_M_CONNECT;
    break;
  }
  return LP_HTTP_M_OTHER;
}

// The request target's form (RFC 9112 3.2), its characters already checked.
static int target_form(lp_http_parser *p, const uint8_t *t, size_t n) {
  int m = p->head.method;
  if (m == LP_HTTP_M_CONNECT) { // authority-form: host:port
    if (memchr(t, ':', n) == NULL || memchr(t, '/', n) || memchr(t, '?', n) || memchr(t, '@', n) || t[0] == ':')
      return fail(p, 400, "CONNECT needs a host:port target");
    return 0;
  }
  if (t[0] == '/') return 0; // origin-form
  if (n == 1 && t[0] == '*') {
    if (m != LP_HTTP_M_OPTIONS) return fail(p, 400, "asterisk-form target is for OPTIONS only");
    return 0;
  }
  // absolute-form: scheme "://" authority ... (the hierarchical form of http and
  // https URIs; "h:43" would be an absolute URI too, but serves nobody)
  size_t i = 0;
  if ((t[0] | 0x20) >= 'a' && (t[0] | 0x20) <= 'z')
    while (i < n && (((t[i] | 0x20) >= 'a' && (t[i] | 0x20) <= 'z') || is_digit(t[i]) || t[i] == '+' || t[i] == '-' ||
                     t[i] == '.'))
      i++;
  if (i == 0 || n - i < 4 || memcmp(t + i, "://", 3) != 0 || t[i + 3] == '/')
    return fail(p, 400, "malformed request target");
  return 0;
}

static int request_line(lp_http_parser *p, const uint8_t *l, size_t len) {
  lp_http_head *h = &p->head;
  size_t i = 0;
  while (i < len && (cls[l[i]] & C_TCHAR)) i++;
  if (i < len && l[i] != ' ') return bad_byte(p, l[i], "method");
  if (i == 0 || i == len) return fail(p, 400, "malformed request line");
  h->method_name = (lp_http_slice){0, (uint32_t)i};
  h->method = method_id(l, i);
  size_t t = ++i;
  while (i < len && (cls[l[i]] & C_TARGET)) i++;
  if (i < len && l[i] != ' ') return bad_byte(p, l[i], "request target");
  if (i == t || i == len) return fail(p, 400, "malformed request line");
  h->target = (lp_http_slice){(uint32_t)t, (uint32_t)(i - t)};
  if (version(p, l + i + 1, len - i - 1, "request line") < 0) return LP_HTTP_ERROR;
  return target_form(p, l + t, i - t);
}

static int status_line(lp_http_parser *p, const uint8_t *l, size_t len) {
  lp_http_head *h = &p->head;
  if (len < 12 || l[8] != ' ') {
    if (len >= 8 && version(p, l, 8, "status line") < 0) return LP_HTTP_ERROR;
    return fail(p, 400, "malformed status line");
  }
  if (version(p, l, 8, "status line") < 0) return LP_HTTP_ERROR;
  if (!is_digit(l[9]) || !is_digit(l[10]) || !is_digit(l[11]) || l[9] == '0')
    return fail(p, 400, "malformed status code");
  h->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
  // The SP before an empty reason may be missing (seen in the wild; harmless).
  if (len > 12 && l[12] != ' ') return fail(p, 400, "malformed status line");
  for (size_t i = 13; i < len; i++)
    if (!(cls[l[i]] & C_VALUE)) return bad_byte(p, l[i], "reason phrase");
  h->reason = len > 12 ? (lp_http_slice){13, (uint32_t)(len - 13)} : (lp_http_slice){12, 0};
  return 0;
}

// ---- header fields ------------------------------------------------------------------------

// The next element of a comma-separated list (RFC 9110 5.6.1) from v[*i..n):
// 1 with the token at [*tok, *tok + *tlen) and *params set when parameters
// follow it; 0 at the end; -1 on a malformed element (empty elements included).
static int list_next(const uint8_t *v, size_t n, size_t *i, size_t *tok, size_t *tlen, bool *params) {
  size_t k = *i;
  if (k >= n) return 0;
  while (k < n && is_ows(v[k])) k++;
  size_t t = k;
  while (k < n && (cls[v[k]] & C_TCHAR)) k++;
  if (k == t) return -1;
  *tok = t;
  *tlen = k - t;
  while (k < n && is_ows(v[k])) k++;
  *params = k < n && v[k] == ';';
  if (*params)
    while (k < n && v[k] != ',') k++;
  if (k < n) {
    if (v[k] != ',') return -1;
    k++;
    if (k == n) return -1; // a trailing comma: an empty element
  }
  *i = k;
  return 1;
}

// What the fields that frame the message say, as each arrives.
static int field_meaning(lp_http_parser *p, const uint8_t *name, size_t nlen, const uint8_t *v, size_t vlen) {
  size_t i = 0, t, tl;
  bool params;
  int rc;
  switch (nlen) {
  case 4:
    if (eq_lower(name, 4, "host")) p->nhost++;
    return 0;
  case 6:
    if (p->cfg.response || !eq_lower(name, 6, "expect")) return 0;
    if (!eq_lower(v, vlen, "100-continue")) return fail(p, 417, "unsupported expectation");
    if (p->head.version == 11) p->head.expect_continue = true; // HTTP/1.0: ignored (RFC 9110 10.1.1)
    return 0;
  case 7:
    if (eq_lower(name, 7, "upgrade")) p->has_upgrade = true;
    return 0;
  case 10:
    if (!eq_lower(name, 10, "connection")) return 0;
    while ((rc = list_next(v, vlen, &i, &t, &tl, &params)) > 0) {
      if (eq_lower(v + t, tl, "close")) p->conn_close = true;
      else if (eq_lower(v + t, tl, "keep-alive")) p->conn_keep_alive = true;
      else if (eq_lower(v + t, tl, "upgrade")) p->conn_upgrade = true;
    }
    if (rc < 0) return fail(p, 400, "malformed Connection header");
    return 0;
  case 14: {
    if (!eq_lower(name, 14, "content-length")) return 0;
    if (vlen == 0) return fail(p, 400, "malformed Content-Length");
    uint64_t x = 0;
    for (size_t k = 0; k < vlen; k++) {
      if (!is_digit(v[k])) return fail(p, 400, "malformed Content-Length");
      if (x > ((uint64_t)INT64_MAX - (uint64_t)(v[k] - '0')) / 10) return fail(p, 400, "Content-Length overflows");
      x = x * 10 + (uint64_t)(v[k] - '0');
    }
    // Identical repeats are allowed by RFC 9110 8.6, but refused here as by
    // nginx and llhttp: two parsers on a path must not disagree about them.
    if (p->cl_seen)
      return fail(p, 400, (uint64_t)p->head.content_length != x ? "differing Content-Length values" : "repeated Content-Length");
    p->cl_seen = true;
    p->head.content_length = (int64_t)x;
    return 0;
  }
  case 17:
    if (!eq_lower(name, 17, "transfer-encoding")) return 0;
    p->te_seen = true;
    if (vlen == 0) return fail(p, 400, "malformed Transfer-Encoding");
    while ((rc = list_next(v, vlen, &i, &t, &tl, &params)) > 0) {
      if (eq_lower(v + t, tl, "chunked")) {
        if (params) return fail(p, 400, "malformed Transfer-Encoding");
        p->te_chunked++;
        p->te_last_chunked = true;
      } else {
        p->te_last_chunked = false;
        p->te_other = true;
      }
    }
    if (rc < 0) return fail(p, 400, "malformed Transfer-Encoding");
    return 0;
  default: return 0;
  }
}

static int add_field(lp_http_parser *p, lp_http_header f) {
  if (p->head.nheaders == p->hcap) {
    uint32_t cap = p->hcap ? p->hcap * 2 : 16;
    if (cap > p->cfg.max_headers) cap = p->cfg.max_headers;
    lp_http_header *a = realloc(p->fields, cap * sizeof *a);
    if (!a) {
      lp_error_sys(&p->error, ENOMEM, "http");
      p->state = S_ERROR;
      p->status = 500;
      return LP_HTTP_ERROR;
    }
    p->fields = a;
    p->hcap = cap;
  }
  p->fields[p->head.nheaders++] = f;
  return 0;
}

// One field line l[0..len) at offset at of the section.
static int field_line(lp_http_parser *p, const uint8_t *l, size_t len, size_t at, bool trailer) {
  const char *where = trailer ? "trailer section" : "header section";
  if (is_ows(l[0])) return fail(p, 400, "line folding (obs-fold) or whitespace before a field in %s", where);
  size_t i = 0;
  while (i < len && (cls[l[i]] & C_TCHAR)) i++;
  if (i == len) return fail(p, 400, "field without a colon in %s", where);
  if (l[i] != ':') {
    if (is_ows(l[i])) return fail(p, 400, "whitespace before the colon in %s", where);
    return bad_byte(p, l[i], trailer ? "trailer name" : "header name");
  }
  if (i == 0) return fail(p, 400, "empty field name in %s", where);
  size_t v = i + 1;
  while (v < len && is_ows(l[v])) v++;
  // Field values: most bytes are printable ASCII; check 8 at a time, then byte by byte.
  size_t k = v;
  for (; k + 8 <= len; k += 8) {
    uint64_t w;
    memcpy(&w, l + k, 8);
    // Any byte below 0x20 (HTAB included: rare, left to the byte loop) or equal
    // to 0x7f? The "has less than" test is exact for "any" (not for "which").
    uint64_t x = w ^ 0x7f7f7f7f7f7f7f7full;
    if ((((w - 0x2020202020202020ull) & ~w) | ((x - 0x0101010101010101ull) & ~x)) & 0x8080808080808080ull) break;
  }
  for (; k < len; k++)
    if (!(cls[l[k]] & C_VALUE)) return bad_byte(p, l[k], trailer ? "trailer value" : "header value");
  size_t e = len;
  while (e > v && is_ows(l[e - 1])) e--;
  if (add_field(p, (lp_http_header){{(uint32_t)at, (uint32_t)i}, {(uint32_t)(at + v), (uint32_t)(e - v)}}) < 0)
    return LP_HTTP_ERROR;
  return trailer ? 0 : field_meaning(p, l, i, l + v, e - v);
}

// ---- the end of a head ---------------------------------------------------------------------

static void after_end(lp_http_parser *p) {
  const lp_http_head *h = &p->head;
  if (h->upgrade) p->state = S_UPGRADED;
  else if (p->cfg.response && h->status < 200) p->state = S_START; // interim: the final response follows
  else if (!h->keep_alive) p->state = S_CLOSED;
  else p->state = S_START;
}

static int end_head(lp_http_parser *p, lp_buf *in, const uint8_t *b) {
  lp_http_head *h = &p->head;
  bool resp = p->cfg.response;
  if (!resp) {
    if (p->nhost > 1) return fail(p, 400, "more than one Host header");
    if (h->version == 11 && p->nhost == 0) return fail(p, 400, "missing Host header");
  }
  if (p->te_seen) {
    if (p->cl_seen) return fail(p, 400, "both Content-Length and Transfer-Encoding");
    if (h->version == 10) return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 message");
    if (p->te_chunked > 1) return fail(p, 400, "chunked applied more than once");
    if (p->te_last_chunked) {
      if (!resp && p->te_other) return fail(p, 501, "transfer codings other than chunked are not supported");
      h->chunked = true;
    } else if (!resp) {
      return fail(p, 400, "Transfer-Encoding does not end with chunked");
    } else {
      h->until_close = true;
    }
  }
  h->keep_alive = h->version == 11 ? !p->conn_close : p->conn_keep_alive && !p->conn_close;
  bool no_body = false;
  if (!resp) {
    // RFC 9110 9.3.6: a CONNECT request has no content; what follows its head
    // is the tunnel's, so a length or coding for it is refused, not read.
    if (h->method == LP_HTTP_M_CONNECT && (p->cl_seen || p->te_seen))
      return fail(p, 400, "CONNECT with Content-Length or Transfer-Encoding");
    h->upgrade = h->method == LP_HTTP_M_CONNECT || (p->has_upgrade && p->conn_upgrade && h->version == 11);
  } else {
    bool tunnel = p->request_method == LP_HTTP_M_CONNECT && h->status / 100 == 2;
    h->upgrade = h->status == 101 || tunnel;
    no_body = h->status < 200 || h->status == 204 || h->status == 304 || p->request_method == LP_HTTP_M_HEAD || tunnel;
    h->no_body = no_body;
    if (no_body) h->chunked = h->until_close = false;
    else if (!h->chunked && !p->cl_seen) h->until_close = true;
    if (h->until_close) h->keep_alive = false;
  }
  if (!no_body && p->cl_seen && p->cfg.max_body && (uint64_t)h->content_length > p->cfg.max_body) {
    fail(p, 413, "Content-Length %lld over %llu bytes", (long long)h->content_length,
         (unsigned long long)p->cfg.max_body);
    p->error.limit = (long long)p->cfg.max_body;
    p->error.length = h->content_length;
    return LP_HTTP_ERROR;
  }
  h->base = b;
  h->length = p->pos;
  h->headers = p->fields;
  in->rd += p->pos;
  p->pos = p->scanned = p->block = 0;
  if (no_body) p->state = S_END;
  else if (h->chunked) p->state = S_CHUNK_LINE, p->body_total = 0;
  else if (h->until_close) p->state = S_BODY_EOF, p->body_total = 0;
  else if (p->cl_seen && h->content_length > 0) p->state = S_BODY, p->remaining = (uint64_t)h->content_length;
  else p->state = S_END;
  return LP_HTTP_HEAD;
}

static int end_trailers(lp_http_parser *p, lp_buf *in, const uint8_t *b) {
  p->trailers = (lp_http_trailers){b, p->fields, p->head.nheaders};
  in->rd += p->pos;
  p->pos = p->scanned = p->block = 0;
  after_end(p);
  return LP_HTTP_END;
}

// Find the end of the line starting at b[pos], within bound bytes (with its
// LF): 1 with *len its length before the LF (the caller checks for the CR), 0
// when more bytes are needed, -1 when no line ends within the bound.
static int find_line(lp_http_parser *p, const uint8_t *b, size_t n, size_t pos, size_t bound, size_t *len) {
  size_t avail = n - pos, lim = avail < bound ? avail : bound;
  const uint8_t *lf = p->scanned < lim ? memchr(b + pos + p->scanned, '\n', lim - p->scanned) : NULL;
  if (!lf) {
    if (avail >= bound) return -1;
    p->scanned = (uint32_t)lim;
    return 0;
  }
  p->scanned = 0;
  *len = (size_t)(lf - (b + pos));
  return 1;
}

// The start line and header fields (or, for trailer, the trailer section).
static int parse_fields(lp_http_parser *p, lp_buf *in, bool trailer) {
  const uint8_t *b = lp_buf_rptr(in);
  size_t n = lp_buf_readable(in);
  const lp_http_config *c = &p->cfg;
  for (;;) {
    size_t pos = p->pos, len;
    bool first = !trailer && !p->line_done;
    size_t bound = first ? c->max_line + 2 : c->max_header - p->block + 2;
    int rc = find_line(p, b, n, pos, bound, &len);
    if (rc == 0) return LP_HTTP_NEED;
    if (rc < 0) {
      if (first) return fail_limit(p, c->response ? 400 : 414, c->max_line, c->response ? "status line" : "request line");
      return fail_limit(p, 431, c->max_header, trailer ? "trailer section" : "header section");
    }
#define WHAT (first ? (c->response ? "status line" : "request line") : trailer ? "trailer section" : "header section")
    if (len == 0 || b[pos + len - 1] != '\r') return fail(p, 400, "bare LF in %s", WHAT);
    len--;
    const uint8_t *l = b + pos;
    if (first) {
      if (len > c->max_line)
        return fail_limit(p, c->response ? 400 : 414, c->max_line, c->response ? "status line" : "request line");
      if ((c->response ? status_line(p, l, len) : request_line(p, l, len)) < 0) return LP_HTTP_ERROR;
      p->line_done = true;
      p->pos = (uint32_t)(pos + len + 2);
      continue;
    }
    if (len == 0) {
      p->pos = (uint32_t)(pos + 2);
      return trailer ? end_trailers(p, in, b) : end_head(p, in, b);
    }
    if (p->block + len + 2 > c->max_header) return fail_limit(p, 431, c->max_header, WHAT);
    if (p->head.nheaders == c->max_headers)
      return fail(p, 431, "more than %u fields in %s", (unsigned)c->max_headers, WHAT);
#undef WHAT
    size_t at = pos;
    if (field_line(p, l, len, at, trailer) < 0) return LP_HTTP_ERROR;
    p->block += (uint32_t)(len + 2);
    p->pos = (uint32_t)(pos + len + 2);
  }
}

// ---- chunks -------------------------------------------------------------------------------

// chunk-size [ chunk-ext ] (RFC 9112 7.1.1), l[0..len) without CRLF.
static int chunk_line(lp_http_parser *p, const uint8_t *l, size_t len) {
  size_t i = 0;
  uint64_t x = 0;
  while (i < len && (cls[l[i]] & C_HEX)) {
    if (x >> 59) return fail(p, 400, "chunk size overflows");
    uint8_t d = l[i] <= '9' ? (uint8_t)(l[i] - '0') : (uint8_t)((l[i] | 0x20) - 'a' + 10);
    x = x << 4 | d;
    i++;
  }
  if (i == 0) return i < len ? bad_byte(p, l[i], "chunk size") : fail(p, 400, "empty chunk size");
  while (i < len) { // *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
    while (i < len && is_ows(l[i])) i++;
    if (i == len || l[i] != ';') goto bad;
    i++;
    while (i < len && is_ows(l[i])) i++;
    size_t t = i;
    while (i < len && (cls[l[i]] & C_TCHAR)) i++;
    if (i == t) goto bad;
    size_t save = i;
    while (i < len && is_ows(l[i])) i++;
    if (i == len || l[i] != '=') {
      i = save;
      continue;
    }
    i++;
    while (i < len && is_ows(l[i])) i++;
    if (i < len && l[i] == '"') {
      i++;
      for (;;) {
        if (i == len) goto bad;
        if (l[i] == '"') break;
        if (l[i] == '\\') {
          if (++i == len || !(cls[l[i]] & C_VALUE)) goto bad;
        } else if (!(cls[l[i]] & C_QDTEXT)) {
          goto bad;
        }
        i++;
      }
      i++;
    } else {
      t = i;
      while (i < len && (cls[l[i]] & C_TCHAR)) i++;
      if (i == t) goto bad;
    }
  }
  if (i < len) goto bad;
  if (x == 0) {
    p->state = S_TRAILERS;
    p->head.nheaders = 0;
    return 0;
  }
  if (p->cfg.max_body && x > p->cfg.max_body - p->body_total) {
    fail(p, 413, "chunked body over %llu bytes", (unsigned long long)p->cfg.max_body);
    p->error.limit = (long long)p->cfg.max_body;
    return LP_HTTP_ERROR;
  }
  p->body_total += x;
  p->remaining = x;
  p->state = S_CHUNK_DATA;
  return 0;
bad:
  for (size_t k = 0; k < len; k++)
    if (!(cls[l[k]] & C_VALUE)) return bad_byte(p, l[k], "chunk line");
  return fail(p, 400, "malformed chunk extension");
}

// ---- the step -----------------------------------------------------------------------------

static int body(lp_http_parser *p, lp_buf *in, int next) {
  size_t n = lp_buf_readable(in);
  if (n == 0) return LP_HTTP_NEED;
  size_t k = p->remaining < n ? (size_t)p->remaining : n;
  p->body_index = in->rd;
  p->body_len = k;
  in->rd += k;
  p->remaining -= k;
  if (p->remaining == 0) p->state = next;
  return LP_HTTP_BODY;
}

int lp_http_parse(lp_http_parser *p, lp_buf *in) {
  for (;;) {
    const uint8_t *b = lp_buf_rptr(in);
    size_t n = lp_buf_readable(in);
    switch (p->state) {
    case S_START: {
      size_t k = 0; // empty lines before a request (RFC 9112 2.2)
      while (n - k >= 2 && b[k] == '\r' && b[k + 1] == '\n') k += 2;
      in->rd += k;
      n -= k;
      if (n == 0 || (n == 1 && b[k] == '\r')) return LP_HTTP_NEED;
      lp_http_head *h = &p->head;
      memset(h, 0, sizeof *h);
      h->content_length = -1;
      p->trailers = (lp_http_trailers){NULL, NULL, 0};
      p->pos = p->scanned = p->block = 0;
      p->line_done = false;
      p->nhost = p->te_chunked = 0;
      p->cl_seen = p->te_seen = p->te_last_chunked = p->te_other = false;
      p->conn_close = p->conn_keep_alive = p->conn_upgrade = p->has_upgrade = false;
      p->state = S_HEAD;
      break;
    }
    case S_HEAD: return parse_fields(p, in, false);
    case S_END:
      after_end(p);
      return LP_HTTP_END;
    case S_BODY: return body(p, in, S_END);
    case S_CHUNK_DATA: return body(p, in, S_CHUNK_CRLF);
    case S_CHUNK_LINE: {
      size_t len;
      int rc = find_line(p, b, n, 0, p->cfg.max_chunk_line + 2, &len);
      if (rc == 0) return LP_HTTP_NEED;
      if (rc < 0) return fail_limit(p, 400, p->cfg.max_chunk_line, "chunk line");
      if (len == 0 || b[len - 1] != '\r') return fail(p, 400, "bare LF in chunk line");
      len--;
      if (len > p->cfg.max_chunk_line) return fail_limit(p, 400, p->cfg.max_chunk_line, "chunk line");
      if (chunk_line(p, b, len) < 0) return LP_HTTP_ERROR;
      in->rd += len + 2;
      break;
    }
    case S_CHUNK_CRLF:
      if (n >= 1 && b[0] != '\r') return fail(p, 400, "chunk data not followed by CRLF");
      if (n >= 2 && b[1] != '\n') return fail(p, 400, "bare CR after chunk data");
      if (n < 2) return LP_HTTP_NEED;
      in->rd += 2;
      p->state = S_CHUNK_LINE;
      break;
    case S_TRAILERS: return parse_fields(p, in, true);
    case S_BODY_EOF: {
      // No length to check up front: maxBody counts the bytes as they come.
      uint64_t room = p->cfg.max_body ? p->cfg.max_body - p->body_total : UINT64_MAX;
      if (n > 0 && room == 0) {
        fail(p, 413, "body over %llu bytes", (unsigned long long)p->cfg.max_body);
        p->error.limit = (long long)p->cfg.max_body;
        return LP_HTTP_ERROR;
      }
      p->remaining = room;
      int rc = body(p, in, S_BODY_EOF);
      if (rc == LP_HTTP_BODY) p->body_total += p->body_len;
      p->state = S_BODY_EOF;
      return rc;
    }
    case S_UPGRADED: return LP_HTTP_UPGRADE;
    case S_CLOSED:
      in->rd = in->wr; // nothing may follow: dropped
      return LP_HTTP_NEED;
    default: return LP_HTTP_ERROR;
    }
  }
}

int lp_http_finish(lp_http_parser *p, lp_buf *in) {
  switch (p->state) {
  case S_START:
    if (in == NULL || lp_buf_readable(in) == 0) return LP_HTTP_NEED;
    return fail(p, 400, "the input ended inside a message");
  case S_BODY_EOF:
    p->trailers = (lp_http_trailers){NULL, NULL, 0};
    p->state = S_CLOSED;
    return LP_HTTP_END;
  case S_END: return lp_http_parse(p, in);
  case S_UPGRADED: return LP_HTTP_UPGRADE;
  case S_CLOSED: return LP_HTTP_NEED;
  case S_ERROR: return LP_HTTP_ERROR;
  default: return fail(p, 400, "the input ended inside a message");
  }
}
