// fuzz_http_diff.c: differential libFuzzer target, lupine's HTTP parser
// (src/codec/http_parser.c) against Debian's libhttp-parser (nodejs/http-parser
// 2.9, libhttp-parser-dev) as an oracle, on requests. fuzz/run builds it as
// target "http_diff" when that library is installed.
//
// Our parser is the stricter one, so the oracle may accept what we refuse.
// The converse is what matters for request smuggling: every request we
// accept, up to the first we refuse, must be one the oracle parses the same
// way: the same method, target, fields (trailers included, values compared
// without surrounding whitespace) and body bytes, so that both agree where
// each request ends. Comparison stops at a request whose method the oracle
// does not know, and after an upgrade. Input layout: that of fuzz_http.c
// (12 bytes it ignores, then the stream), so both share fuzz/seeds/http.
#include "buffer.h"
#include "http.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STREAM 8192
#define MAX_MSGS 64

static void fail(const char *what) {
  fprintf(stderr, "fuzz_http_diff: %s\n", what);
  abort();
}

// One request, serialized: method SP target, then "\n" name ":" value per
// field (value trimmed), then "\n\n" and the body bytes.
typedef struct {
  char *s;
  size_t len, cap;
} str;

static void put(str *t, const void *p, size_t n) {
  if (n == 0) return;
  if (t->len + n > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    while (cap < t->len + n) cap *= 2;
    t->s = realloc(t->s, cap);
    if (!t->s) fail("out of memory");
    t->cap = cap;
  }
  memcpy(t->s + t->len, p, n);
  t->len += n;
}

static void put_trimmed(str *t, const char *p, size_t n) {
  while (n && (p[0] == ' ' || p[0] == '\t')) p++, n--;
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
  put(t, p, n);
}

typedef struct {
  str msgs[MAX_MSGS];
  int n;       // complete messages
  bool stop;   // comparison ends after message n (unknown method, upgrade)
  // oracle parsing state
  str field, value;
  int in_field; // 0 none, 1 name, 2 value
  str body;
} side;

static void reset(side *s) {
  for (int i = 0; i < MAX_MSGS; i++) s->msgs[i].len = 0;
  s->n = 0;
  s->stop = false;
  s->field.len = s->value.len = s->body.len = 0;
  s->in_field = 0;
}

// ---- the oracle -------------------------------------------------------------------------------

static side ours, theirs;

static void flush_field(side *s) {
  if (s->in_field == 0) return;
  str *m = &s->msgs[s->n];
  put(m, "\n", 1);
  put(m, s->field.s, s->field.len);
  put(m, ":", 1);
  put_trimmed(m, s->value.s, s->value.len);
  s->field.len = s->value.len = 0;
  s->in_field = 0;
}

static int on_begin(http_parser *hp) {
  (void)hp;
  if (theirs.n >= MAX_MSGS) return 1;
  theirs.msgs[theirs.n].len = 0;
  theirs.body.len = 0;
  return 0;
}
static int on_url(http_parser *hp, const char *p, size_t n) {
  str *m = &theirs.msgs[theirs.n];
  if (m->len == 0) {
    const char *meth = http_method_str((enum http_method)hp->method);
    put(m, meth, strlen(meth));
    put(m, " ", 1);
  }
  put(m, p, n);
  return 0;
}
static int on_field(http_parser *hp, const char *p, size_t n) {
  (void)hp;
  if (theirs.in_field == 2) flush_field(&theirs);
  theirs.in_field = 1;
  put(&theirs.field, p, n);
  return 0;
}
static int on_value(http_parser *hp, const char *p, size_t n) {
  (void)hp;
  theirs.in_field = 2;
  put(&theirs.value, p, n);
  return 0;
}
static int on_headers_complete(http_parser *hp) {
  (void)hp;
  flush_field(&theirs);
  return 0;
}
static int on_body(http_parser *hp, const char *p, size_t n) {
  (void)hp;
  put(&theirs.body, p, n);
  return 0;
}
static int on_complete(http_parser *hp) {
  flush_field(&theirs); // the last trailer
  str *m = &theirs.msgs[theirs.n];
  put(m, "\n\n", 2);
  put(m, theirs.body.s, theirs.body.len);
  theirs.n++;
  if (hp->upgrade) return 1;
  return 0;
}

static void run_theirs(const uint8_t *s, size_t n) {
  http_parser_settings st;
  http_parser_settings_init(&st);
  st.on_message_begin = on_begin;
  st.on_url = on_url;
  st.on_header_field = on_field;
  st.on_header_value = on_value;
  st.on_headers_complete = on_headers_complete;
  st.on_body = on_body;
  st.on_message_complete = on_complete;
  http_parser hp;
  http_parser_init(&hp, HTTP_REQUEST);
  http_parser_execute(&hp, &st, (const char *)s, n);
}

// ---- ours -------------------------------------------------------------------------------------

// The oracle matches some field names by prefix ("Transfer-Encodingx" counts
// as Transfer-Encoding there), and interprets framing fields in trailers too.
// Such names end the comparison (in trailers, also the exact names).
static bool oracle_quirk(const uint8_t *base, const lp_http_header *h, uint32_t n, bool trailers) {
  static const char *const names[] = {"transfer-encoding", "content-length", "connection", "upgrade", "proxy-connection"};
  for (uint32_t i = 0; i < n; i++)
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
      size_t l = strlen(names[k]);
      if (h[i].name.len < l || (h[i].name.len == l && !trailers)) continue;
      const char *s = lp_http_at(base, h[i].name);
      size_t j = 0;
      while (j < l && (s[j] | 0x20) == names[k][j]) j++;
      if (j == l) return true;
    }
  return false;
}

static void run_ours(const uint8_t *s, size_t n) {
  lp_http_config c;
  lp_http_config_default(&c, false);
  c.max_body = 0;
  c.max_header = 80 * 1024 - 100; // within the oracle's HTTP_MAX_HEADER_SIZE
  lp_http_parser p;
  lp_http_parser_init(&p, &c);
  lp_buf *b = lp_buf_from(NULL, s, n);
  if (!b) fail("out of memory");
  size_t start = 0; // where the current message began
  for (;;) {
    int rc = lp_http_parse(&p, b);
    if (rc == LP_HTTP_HEAD) {
      const lp_http_head *h = &p.head;
      if (ours.n >= MAX_MSGS) break;
      // The oracle knows a fixed list of methods.
      start = (size_t)(h->base - b->data);
      if (h->method == LP_HTTP_M_OTHER || oracle_quirk(h->base, h->headers, h->nheaders, false)) {
        ours.stop = true;
        break;
      }
      str *m = &ours.msgs[ours.n];
      m->len = 0;
      put(m, lp_http_at(h->base, h->method_name), h->method_name.len);
      put(m, " ", 1);
      put(m, lp_http_at(h->base, h->target), h->target.len);
      for (uint32_t i = 0; i < h->nheaders; i++) {
        put(m, "\n", 1);
        put(m, lp_http_at(h->base, h->headers[i].name), h->headers[i].name.len);
        put(m, ":", 1);
        put(m, lp_http_at(h->base, h->headers[i].value), h->headers[i].value.len);
      }
      ours.body.len = 0;
      if (h->upgrade) { // CONNECT or Upgrade: comparison ends with this message
        ours.stop = true;
        if (!h->chunked && h->content_length <= 0) { // no body: the oracle ends it at its head
          put(m, "\n\n", 2);
          ours.n++;
          break;
        } // else both read the body first (an Upgrade request with content), then stop at its end
      }
    } else if (rc == LP_HTTP_BODY) {
      put(&ours.body, b->data + p.body_index, p.body_len);
    } else if (rc == LP_HTTP_END) {
      // The oracle takes HTAB in fewer places than RFC 9110's OWS and BWS
      // (after a Content-Length, before a chunk extension's ';').
      if (oracle_quirk(p.trailers.base, p.trailers.headers, p.trailers.nheaders, true) ||
          memchr(b->data + start, '\t', b->rd - start)) {
        ours.stop = true;
        break;
      }
      str *m = &ours.msgs[ours.n];
      for (uint32_t i = 0; i < p.trailers.nheaders; i++) {
        put(m, "\n", 1);
        put(m, lp_http_at(p.trailers.base, p.trailers.headers[i].name), p.trailers.headers[i].name.len);
        put(m, ":", 1);
        put(m, lp_http_at(p.trailers.base, p.trailers.headers[i].value), p.trailers.headers[i].value.len);
      }
      put(m, "\n\n", 2);
      put(m, ours.body.s, ours.body.len);
      ours.n++;
      if (ours.stop) break;
    } else {
      break; // NEED, ERROR, UPGRADE
    }
  }
  lp_buf_unref(b);
  lp_http_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 12) return 0;
  data += 12; // the layout of fuzz_http.c (whose seeds this target shares); no configuration here
  size -= 12;
  size_t n = size < MAX_STREAM ? size : MAX_STREAM;
  reset(&ours);
  reset(&theirs);
  run_ours(data, n);
  run_theirs(data, n);
  for (int i = 0; i < ours.n; i++) {
    if (i >= theirs.n) {
      fprintf(stderr, "request %d: ours\n%.*s\n-- the oracle parsed only %d\n", i, (int)ours.msgs[i].len, ours.msgs[i].s,
              theirs.n);
      fail("a request we accept is not one the oracle accepts");
    }
    if (ours.msgs[i].len != theirs.msgs[i].len || memcmp(ours.msgs[i].s, theirs.msgs[i].s, ours.msgs[i].len) != 0) {
      fprintf(stderr, "request %d: ours\n%.*s\n-- oracle\n%.*s\n", i, (int)ours.msgs[i].len, ours.msgs[i].s,
              (int)theirs.msgs[i].len, theirs.msgs[i].s);
      fail("a request we accept parses differently in the oracle");
    }
  }
  return 0;
}
