// test_http.c: the HTTP/1.1 parser (src/codec/http_parser.c) as a pure function.
// Every input is parsed whole, byte by byte, split at every one boundary (and
// every two, for inputs up to 300 bytes) and at random ones, and must give the
// same trace: heads with their fields and framing, body bytes (joined across
// BODY events), ends with trailers, upgrades with the bytes left for the next
// protocol, and errors with their status and exact text. Covers requests
// (pipelining, chunked with extensions and trailers, 100-continue, Upgrade,
// CONNECT, keep-alive), the request smuggling cases, limits at their boundary,
// and responses (Content-Length, chunked, until close, HEAD, 1xx, 204, 304).
#include "buffer.h"
#include "check.h"
#include "str.h"
#include "codec.h"
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lp_pool *pool;


// Printable form of p[0..n): bytes outside 0x20..0x7e (and \) as \xx.
static void show(str *t, const void *v, size_t n) {
  const uint8_t *p = v;
  for (size_t i = 0; i < n; i++) {
    char b[8];
    if (p[i] >= 32 && p[i] < 127 && p[i] != '\\') put(t, p + i, 1);
    else snprintf(b, sizeof b, "\\%02x", p[i]), puts_(t, b);
  }
}

static void show_fields(str *t, const uint8_t *base, const lp_http_header *h, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    puts_(t, "{");
    show(t, lp_http_at(base, h[i].name), h[i].name.len);
    puts_(t, "=");
    show(t, lp_http_at(base, h[i].value), h[i].value.len);
    puts_(t, "}");
  }
}

static void show_head(str *t, const lp_http_head *h, bool response) {
  char b[64];
  puts_(t, "[");
  if (response) {
    snprintf(b, sizeof b, "%d ", h->status);
    puts_(t, b);
    show(t, lp_http_at(h->base, h->reason), h->reason.len);
  } else {
    show(t, lp_http_at(h->base, h->method_name), h->method_name.len);
    if (h->method == LP_HTTP_M_OTHER) puts_(t, "?");
    puts_(t, " ");
    show(t, lp_http_at(h->base, h->target), h->target.len);
  }
  snprintf(b, sizeof b, " %d ", h->version);
  puts_(t, b);
  show_fields(t, h->base, h->headers, h->nheaders);
  if (h->content_length >= 0) snprintf(b, sizeof b, " cl=%lld", (long long)h->content_length), puts_(t, b);
  if (h->chunked) puts_(t, " chunked");
  if (h->until_close) puts_(t, " eof");
  if (h->no_body) puts_(t, " nobody");
  if (!h->keep_alive) puts_(t, " close");
  if (h->expect_continue) puts_(t, " continue");
  if (h->upgrade) puts_(t, " upgrade");
  puts_(t, "]");
}

// Parse in[0..n) fed in chunks ending at cuts[0..ncuts) (then the rest), then
// signal the end of the input. The trace: heads "[...]", body bytes "(...)",
// ends "." with trailers "{name=value}" after it, "^" for an upgrade with the
// bytes left "<...>" at the end, errors "!status message", and what the end
// of the input gave: "$." or "$!status message".
static void run(const lp_http_config *cfg, int req_method, const uint8_t *in, size_t n, const size_t *cuts,
                size_t ncuts, str *out) {
  lp_http_parser p;
  lp_http_parser_init(&p, cfg);
  lp_http_parser_set_request_method(&p, req_method);
  lp_buf *cum = NULL;
  out->len = 0;
  puts_(out, "");
  size_t at = 0;
  bool in_body = false, upgraded = false, failed = false;
  size_t bound = cfg->max_line + cfg->max_header + 4;
  if (cfg->max_chunk_line + 2 > bound) bound = cfg->max_chunk_line + 2;
  char b[300];
  for (size_t k = 0; k <= ncuts && !failed; k++) {
    size_t end = k < ncuts && cuts[k] < n ? cuts[k] : n;
    if (end < at) continue;
    CHECK(lp_cumulate(pool, &cum, lp_buf_from(pool, in + at, end - at)) == 0);
    at = end;
    for (;;) {
      int rc = lp_http_parse(&p, cum);
      if (rc == LP_HTTP_NEED) {
        CHECK(lp_buf_readable(cum) <= bound); // the cumulation stays bounded
        break;
      }
      if (rc != LP_HTTP_BODY && in_body) puts_(out, ")"), in_body = false;
      if (rc == LP_HTTP_HEAD) show_head(out, &p.head, cfg->response);
      else if (rc == LP_HTTP_BODY) {
        if (!in_body) puts_(out, "("), in_body = true;
        CHECK(p.body_index + p.body_len == cum->rd);
        show(out, cum->data + p.body_index, p.body_len);
      } else if (rc == LP_HTTP_END) {
        puts_(out, ".");
        show_fields(out, p.trailers.base, p.trailers.headers, p.trailers.nheaders);
      } else if (rc == LP_HTTP_UPGRADE) {
        if (!upgraded) puts_(out, "^");
        upgraded = true;
        break;
      } else {
        CHECK(rc == LP_HTTP_ERROR && p.error.code == LP_EHTTP);
        snprintf(b, sizeof b, "!%d %s", p.status, p.error.message);
        puts_(out, b);
        CHECK(lp_http_parse(&p, cum) == LP_HTTP_ERROR); // and stays so
        failed = true;
        break;
      }
    }
  }
  if (in_body) puts_(out, ")");
  if (upgraded) {
    puts_(out, "<");
    show(out, lp_buf_rptr(cum), lp_buf_readable(cum));
    puts_(out, ">");
  } else if (!failed) {
    int rc = lp_http_finish(&p, cum);
    if (rc == LP_HTTP_END) puts_(out, "$.");
    else if (rc == LP_HTTP_ERROR) snprintf(b, sizeof b, "$!%d %s", p.status, p.error.message), puts_(out, b);
  }
  lp_buf_unref(cum);
  lp_http_parser_free(&p);
}

static int failures_shown;

static bool same_or_say(const str *a, const str *whole, const char *how) {
  if (strcmp(a->s, whole->s) == 0) return true;
  if (failures_shown++ < 5) fprintf(stderr, "%s: %s\n  whole: %s\n", how, a->s, whole->s);
  return false;
}

static void check_with(const lp_http_config *cfg, int req_method, const char *input, size_t n, const char *want) {
  static str whole, split;
  const uint8_t *in = (const uint8_t *)input;
  run(cfg, req_method, in, n, NULL, 0, &whole);
  if (strcmp(whole.s, want) != 0) fprintf(stderr, "want %s\ngot  %s\n", want, whole.s);
  CHECK(strcmp(whole.s, want) == 0);
  size_t *cuts = malloc((n + 2) * sizeof *cuts);
  bool same = true;
  char how[64];
  for (size_t i = 0; i < n; i++) cuts[i] = i + 1;
  run(cfg, req_method, in, n, cuts, n, &split);
  same = same_or_say(&split, &whole, "byte by byte");
  for (size_t i = 0; i <= n && same; i++) {
    cuts[0] = i;
    run(cfg, req_method, in, n, cuts, 1, &split);
    snprintf(how, sizeof how, "split at %zu", i);
    same = same_or_say(&split, &whole, how);
    for (size_t j = i + 1; j <= n && same && n <= 300; j++) {
      cuts[1] = j;
      run(cfg, req_method, in, n, cuts, 2, &split);
      snprintf(how, sizeof how, "split at %zu,%zu", i, j);
      same = same_or_say(&split, &whole, how);
    }
  }
  for (int r = 0; r < 100 && same; r++) {
    size_t k = 0, at = 0;
    while (at < n) cuts[k++] = at += 1 + (size_t)rand() % (r < 50 ? 7 : 300);
    run(cfg, req_method, in, n, cuts, k, &split);
    same = same_or_say(&split, &whole, "random split");
  }
  CHECK(same);
  free(cuts);
}

static lp_http_config reqcfg, respcfg;
#define S(lit) lit, sizeof lit - 1
static void req(const char *in, size_t n, const char *want) { check_with(&reqcfg, LP_HTTP_M_GET, in, n, want); }
static void resp(int method, const char *in, size_t n, const char *want) { check_with(&respcfg, method, in, n, want); }

// ---- requests ---------------------------------------------------------------------------------

static void test_requests(void) {
  // What wrk sends.
  req(S("GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"), "[GET / 11 {Host=localhost:8080}].");
  // Pipelined, with a body, leading empty lines, OWS around values, an unknown method.
  req(S("\r\n\r\nPOST /submit?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Empty:\r\nX-Pad: \t a b \t\r\n\r\nhello"
        "GET /two HTTP/1.1\r\nhost: h\r\n\r\n"
        "PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n"),
      "[POST /submit?a=1 11 {Host=h}{Content-Length=5}{X-Empty=}{X-Pad=a b} cl=5](hello)."
      "[GET /two 11 {host=h}].[PURGE? /x 11 {Host=h}].");
  // Chunked, with extensions (token and quoted values) and trailers.
  req(S("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;name=val\r\nhello\r\n"
        "6 ; a ; b = \"q\\\"x\"\r\n world\r\n"
        "000\r\nX-Sum: 1\r\nX-T: two\r\n\r\n"
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
      "[POST /c 11 {Host=h}{Transfer-Encoding=chunked} chunked](hello world).{X-Sum=1}{X-T=two}"
      "[GET / 11 {Host=h}].");
  // A chunked size in upper case hex, no trailers.
  req(S("PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n"),
      "[PUT /u 11 {Host=h}{Transfer-Encoding=Chunked} chunked](0123456789).");
  // Keep-alive by version and Connection; after a closing message later bytes are dropped.
  req(S("GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"), "[GET /a 10  close].");
  req(S("GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /c"),
      "[GET /a 10 {Connection=Keep-Alive}].[GET /b 11 {Host=h}{Connection=close} close].");
  req(S("GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n"),
      "[GET /a 11 {Host=h}{Connection=keep-alive, close} close].");
  // Expect: 100-continue (ignored in HTTP/1.0); another expectation is a 417.
  req(S("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nok"),
      "[PUT /f 11 {Host=h}{Expect=100-Continue}{Content-Length=2} cl=2 continue](ok).");
  req(S("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), "[PUT /f 10 {Expect=100-continue} close].");
  req(S("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n"), "!417 HttpExpectationFailed: unsupported expectation");
  // Upgrade: the bytes after the head belong to the next protocol.
  req(S("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"),
      "[GET /ws 11 {Host=h}{Upgrade=websocket}{Connection=Upgrade} upgrade].^<\\81\\05hello>");
  // Upgrade without "Connection: upgrade" is no upgrade.
  req(S("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"), "[GET /ws 11 {Host=h}{Upgrade=websocket}].");
  // CONNECT (authority-form), OPTIONS * (asterisk-form), absolute-form.
  req(S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nTLS"),
      "[CONNECT example.com:443 11 {Host=example.com:443} upgrade].^<TLS>");
  req(S("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), "[OPTIONS * 11 {Host=h}].");
  req(S("GET http://h/p?q HTTP/1.1\r\nHost: h\r\n\r\n"), "[GET http://h/p?q 11 {Host=h}].");
  // Header values may hold obs-text and HTAB.
  req(S("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\xe9z\r\n\r\n"), "[GET / 11 {Host=h}{X=a\\09b\\e9z}].");
  // The input ends inside a message; between messages it is fine.
  req(S("GET / HTTP/1.1\r\nHost: h\r\n"), "$!400 HttpBadRequest: the input ended inside a message");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab"),
      "[POST / 11 {Host=h}{Content-Length=3} cl=3](ab)$!400 HttpBadRequest: the input ended inside a message");
  req(S("GET / HTTP/1.1\r\nHost: h\r\n\r\n\r\n"), "[GET / 11 {Host=h}].");
}

// ---- request smuggling and malformed requests: each a 400 (or as said) ------------------------

static void test_smuggling(void) {
  req(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
      "!400 HttpBadRequest: both Content-Length and Transfer-Encoding");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"),
      "!400 HttpBadRequest: both Content-Length and Transfer-Encoding");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
      "!400 HttpBadRequest: differing Content-Length values");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
      "!400 HttpBadRequest: repeated Content-Length");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc"), "!400 HttpBadRequest: malformed Content-Length");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc"), "!400 HttpBadRequest: malformed Content-Length");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x3\r\n\r\nabc"), "!400 HttpBadRequest: malformed Content-Length");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"), "!400 HttpBadRequest: malformed Content-Length");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"),
      "!400 HttpBadRequest: Content-Length overflows");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
      "!400 HttpBadRequest: Transfer-Encoding does not end with chunked");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
      "!400 HttpBadRequest: Transfer-Encoding does not end with chunked");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"),
      "!400 HttpBadRequest: Transfer-Encoding does not end with chunked");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
      "!400 HttpBadRequest: chunked applied more than once");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"),
      "!400 HttpBadRequest: Transfer-Encoding does not end with chunked");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"),
      "!400 HttpBadRequest: malformed Transfer-Encoding");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n"), "!400 HttpBadRequest: malformed Transfer-Encoding");
  req(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
      "!501 HttpNotImplemented: transfer codings other than chunked are not supported");
  req(S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
      "!400 HttpBadRequest: Transfer-Encoding in an HTTP/1.0 message");
  // obs-fold, whitespace before the first field, whitespace before the colon.
  req(S("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
      "!400 HttpBadRequest: line folding (obs-fold) or whitespace before a field in header section");
  req(S("GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
      "!400 HttpBadRequest: line folding (obs-fold) or whitespace before a field in header section");
  req(S("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n"),
      "!400 HttpBadRequest: whitespace before the colon in header section");
  req(S("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\t: chunked\r\n\r\n"),
      "!400 HttpBadRequest: whitespace before the colon in header section");
  // Bare CR or LF where CRLF is required.
  req(S("GET / HTTP/1.1\nHost: h\r\n\r\n"), "!400 HttpBadRequest: bare LF in request line");
  req(S("GET / HTTP/1.1\r\nHost: h\n\r\n"), "!400 HttpBadRequest: bare LF in header section");
  req(S("GET / HTTP/1.1\r\nHost: h\r\n\n"), "!400 HttpBadRequest: bare LF in header section");
  req(S("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), "!400 HttpBadRequest: bare CR in header value");
  req(S("GET / HTTP/1.1\r\nHo\rst: h\r\n\r\n"), "!400 HttpBadRequest: bare CR in header name");
  req(S("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: bare CR in request target");
  req(S("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: bare CR in request line");
  req(S("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: bare LF in request line");
  req(S("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: bare CR in method");
  // NUL and control characters.
  req("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 34, "!400 HttpBadRequest: control character 0x00 in header value");
  req(S("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n"), "!400 HttpBadRequest: control character 0x7f in header value");
  req(S("GET / HTTP/1.1\r\nHost: h\r\nX: \x01\r\n\r\n"), "!400 HttpBadRequest: control character 0x01 in header value");
  req(S("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: control character 0x01 in request target");
  req(S("G\x01T / HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: control character 0x01 in method");
  req(S("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: malformed HTTP version in request line");
  req(S("GET /<a> HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: character 0x3c in request target");
  req(S("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: malformed request line");
  req(S("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: malformed HTTP version in request line");
  req(S("GET / http/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: malformed HTTP version in request line");
  req(S("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), "!505 HttpVersionNotSupported: HTTP/2.0 is not supported");
  req(S("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"), "!400 HttpBadRequest: empty field name in header section");
  req(S("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), "!400 HttpBadRequest: field without a colon in header section");
  req(S("GET / HTTP/1.1\r\nHost: h\r\nX(y): v\r\n\r\n"), "!400 HttpBadRequest: character 0x28 in header name");
  // Targets by form.
  req(S("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: asterisk-form target is for OPTIONS only");
  req(S("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: CONNECT needs a host:port target");
  req(S("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nContent-Length: 3\r\n\r\nabc"),
      "!400 HttpBadRequest: CONNECT with Content-Length or Transfer-Encoding");
  req(S("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
      "!400 HttpBadRequest: CONNECT with Content-Length or Transfer-Encoding");
  req(S("GET x/y HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: malformed request target");
  req(S("OPTIONS h:43 HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: malformed request target");
  req(S("GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: malformed request target");
  req(S("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n"), "!400 HttpBadRequest: malformed request target");
  // Host: required in HTTP/1.1, never twice.
  req(S("GET / HTTP/1.1\r\n\r\n"), "!400 HttpBadRequest: missing Host header");
  req(S("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), "!400 HttpBadRequest: more than one Host header");
  // Chunk framing.
  const char *head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  char in[512];
  static const struct {
    const char *body, *want;
  } chunks[] = {
      {"10000000000000000\r\n", "!400 HttpBadRequest: chunk size overflows"},
      {"8000000000000000\r\n", "!400 HttpBadRequest: chunk size overflows"},
      {"fffffffffffffffffffffff\r\n", "!400 HttpBadRequest: chunk size overflows"},
      {"-1\r\n", "!400 HttpBadRequest: character 0x2d in chunk size"},
      {"\r\n", "!400 HttpBadRequest: empty chunk size"},
      {"3\nabc\r\n", "!400 HttpBadRequest: bare LF in chunk line"},
      {"3\r\nabcX\r\n", "!400 HttpBadRequest: chunk data not followed by CRLF"},
      {"3\r\nabc\rX", "!400 HttpBadRequest: bare CR after chunk data"},
      {"3\r\nabc\n", "!400 HttpBadRequest: chunk data not followed by CRLF"},
      {"3 \r\nabc\r\n", "!400 HttpBadRequest: malformed chunk extension"},
      {"3;\r\nabc\r\n", "!400 HttpBadRequest: malformed chunk extension"},
      {"3;a=\"x\r\nabc\r\n", "!400 HttpBadRequest: malformed chunk extension"},
      {"0\r\nX : y\r\n\r\n", "!400 HttpBadRequest: whitespace before the colon in trailer section"},
      {"0\r\nX: y\n\r\n", "!400 HttpBadRequest: bare LF in trailer section"},
      {"0\r\nX: \x01\r\n\r\n", "!400 HttpBadRequest: control character 0x01 in trailer value"},
  };
  for (size_t i = 0; i < LP_ARRAY_LEN(chunks); i++) {
    size_t blen = strlen(chunks[i].body);
    snprintf(in, sizeof in, "%s", head);
    size_t hl = strlen(in);
    memcpy(in + hl, chunks[i].body, blen);
    char want[300];
    snprintf(want, sizeof want, "[POST / 11 {Host=h}{Transfer-Encoding=chunked} chunked]%s%s",
             strncmp(chunks[i].body, "3\r\nabc", 6) == 0 ? "(abc)" : "", chunks[i].want);
    req(in, hl + blen, want);
  }
  size_t hl = strlen(head);
  memcpy(in, head, hl);
  memcpy(in + hl, "3;a\0\r\nabc\r\n", 11);
  req(in, hl + 11, "[POST / 11 {Host=h}{Transfer-Encoding=chunked} chunked]!400 HttpBadRequest: control character 0x00 in chunk line");
}

// ---- limits at their boundary ---------------------------------------------------------------------

static void test_limits(void) {
  static char in[70000], want[70000];
  // Request line: exactly max_line bytes passes, one more is a 414 (default limits, 8192).
  for (int over = 0; over <= 1; over++) {
    size_t tl = LP_HTTP_DEFAULT_MAX_LINE - 4 - 9 + (size_t)over; // "GET " + target + " HTTP/1.1"
    size_t n = (size_t)snprintf(in, sizeof in, "GET /");
    memset(in + n, 'a', tl - 1);
    n += tl - 1;
    n += (size_t)snprintf(in + n, sizeof in - n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    if (!over) snprintf(want, sizeof want, "[GET /%.*s 11 {Host=h}].", (int)(tl - 1), in + 5);
    else snprintf(want, sizeof want, "!414 HttpUriTooLong: request line over 8192 bytes");
    req(in, n, want);
  }
  // Header section: field lines with CRLFs, exactly max_header (16384) passes, one more is a 431.
  for (int over = 0; over <= 1; over++) {
    size_t n = (size_t)snprintf(in, sizeof in, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
    size_t vl = LP_HTTP_DEFAULT_MAX_HEADER - 9 - 5 + (size_t)over; // "Host: h\r\n" + "X: " + value + "\r\n"
    memset(in + n, 'v', vl);
    n += vl;
    n += (size_t)snprintf(in + n, sizeof in - n, "\r\n\r\n");
    if (!over) snprintf(want, sizeof want, "[GET / 11 {Host=h}{X=%.*s}].", (int)vl, in + 28);
    else snprintf(want, sizeof want, "!431 HttpHeaderTooLarge: header section over 16384 bytes");
    req(in, n, want);
  }
  // Header count: 100 pass, 101 are a 431.
  for (int over = 0; over <= 1; over++) {
    size_t n = (size_t)snprintf(in, sizeof in, "GET / HTTP/1.1\r\nHost: h\r\n");
    size_t w = (size_t)snprintf(want, sizeof want, "[GET / 11 {Host=h}");
    for (int i = 1; i < 100 + over; i++) {
      n += (size_t)snprintf(in + n, sizeof in - n, "X%d: %d\r\n", i, i);
      w += (size_t)snprintf(want + w, sizeof want - w, "{X%d=%d}", i, i);
    }
    n += (size_t)snprintf(in + n, sizeof in - n, "\r\n");
    if (!over) snprintf(want + w, sizeof want - w, "].");
    else snprintf(want, sizeof want, "!431 HttpHeaderTooLarge: more than 100 fields in header section");
    req(in, n, want);
  }
  // Body: a Content-Length of maxBody passes, one more is a 413 at once.
  const char *big = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n";
  req(big, strlen(big), "!413 HttpBodyTooLarge: Content-Length 1048577 over 1048576 bytes");
  lp_http_parser p;
  lp_http_parser_init(&p, &reqcfg);
  lp_buf *b = lp_buf_from(pool, S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n"));
  CHECK(lp_http_parse(&p, b) == LP_HTTP_HEAD && p.head.content_length == 1048576);
  lp_buf_unref(b);
  lp_http_parser_free(&p);
  // The same with small limits, through every split.
  lp_http_config c = reqcfg;
  c.max_line = 17;
  c.max_header = 20;
  c.max_headers = 2;
  c.max_body = 10;
  c.max_chunk_line = 8;
  check_with(&c, 0, S("GET /123 HTTP/1.1\r\nHost: h\r\nX: 123456\r\n\r\n"), "[GET /123 11 {Host=h}{X=123456}].");
  check_with(&c, 0, S("GET /1234 HTTP/1.1\r\nHost: h\r\n\r\n"), "!414 HttpUriTooLong: request line over 17 bytes");
  check_with(&c, 0, S("GET /12345678901234567890"), "!414 HttpUriTooLong: request line over 17 bytes");
  check_with(&c, 0, S("GET /1234 HTTP/1.1\nHost: h\r\n\r\n"), "!400 HttpBadRequest: bare LF in request line");
  check_with(&c, 0, S("GET /123 HTTP/1.1\r\nHost: h\r\nX: 1234567\r\n\r\n"),
             "!431 HttpHeaderTooLarge: header section over 20 bytes");
  check_with(&c, 0, S("GET /123 HTTP/1.1\r\nHost: h\r\nX: 1234567"),
             "$!400 HttpBadRequest: the input ended inside a message");
  check_with(&c, 0, S("GET /123 HTTP/1.1\r\nHost: h\r\nX: 1234567890123"),
             "!431 HttpHeaderTooLarge: header section over 20 bytes");
  check_with(&c, 0, S("GET / HTTP/1.1\r\nHost: h\r\nA:1\r\nB:2\r\n\r\n"),
             "!431 HttpHeaderTooLarge: more than 2 fields in header section");
  c.max_header = 40;
  check_with(&c, 0, S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"),
             "[POST / 11 {Host=h}{Content-Length=10} cl=10](0123456789).");
  check_with(&c, 0, S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n0123456789"),
             "!413 HttpBodyTooLarge: Content-Length 11 over 10 bytes");
  check_with(&c, 0, S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5;a=b\r\n56789\r\n0\r\n\r\n"),
             "[POST / 11 {Host=h}{Transfer-Encoding=chunked} chunked](0123456789).");
  check_with(&c, 0, S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n567890\r\n0\r\n\r\n"),
             "[POST / 11 {Host=h}{Transfer-Encoding=chunked} chunked](01234)!413 HttpBodyTooLarge: chunked body over 10 bytes");
  check_with(&c, 0, S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=bcde\r\n01234\r\n0\r\n\r\n"),
             "[POST / 11 {Host=h}{Transfer-Encoding=chunked} chunked](01234).");
  check_with(&c, 0, S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=bcdef\r\n01234\r\n0\r\n\r\n"),
             "[POST / 11 {Host=h}{Transfer-Encoding=chunked} chunked]!400 HttpBadRequest: chunk line over 8 bytes");
  // Trailers count against the same limits.
  check_with(&c, 0, S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 123456789012345678901234567890123456\r\n\r\n"),
             "[POST / 11 {Host=h}{Transfer-Encoding=chunked} chunked]!431 HttpHeaderTooLarge: trailer section over 40 bytes");
  check_with(&c, 0, S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
             "[POST / 11 {Host=h}{Transfer-Encoding=chunked} chunked]!431 HttpHeaderTooLarge: more than 2 fields in trailer section");
  // Configuration checks.
  char why[200];
  c = reqcfg;
  CHECK(lp_http_config_check(&c, why, sizeof why) == 0);
  c.max_headers = 0;
  CHECK(lp_http_config_check(&c, why, sizeof why) < 0 && strcmp(why, "maxHeaders must be from 1 to 65536") == 0);
}

// ---- responses --------------------------------------------------------------------------------------

static void test_responses(void) {
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
       "[200 OK 11 {Content-Length=3} cl=3](abc).[404 Not Found 11 {Content-Length=0} cl=0].");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: v\r\n\r\n"),
       "[200 OK 11 {Transfer-Encoding=chunked} chunked](abc).{T=v}");
  // A coding before chunked is the caller's to undo; without chunked last, the body runs to the end.
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
       "[200 OK 11 {Transfer-Encoding=gzip, chunked} chunked](z).");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz"),
       "[200 OK 11 {Transfer-Encoding=gzip} eof close](zzz)$.");
  // Until close: the end of the input ends the body.
  resp(LP_HTTP_M_GET, S("HTTP/1.0 200 OK\r\nServer: x\r\n\r\nall of it\r\n\r\n"),
       "[200 OK 10 {Server=x} eof close](all of it\\0d\\0a\\0d\\0a)$.");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\n\r\n"), "[200 OK 11  eof close]$.");
  // No body: responses to HEAD, 204, 304, 1xx (interim: the final response follows).
  resp(LP_HTTP_M_HEAD, S("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
       "[200 OK 11 {Content-Length=1000} cl=1000 nobody].[200 OK 11 {Content-Length=0} cl=0 nobody].");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
       "[204 No Content 11  nobody].[304 Not Modified 11 {Content-Length=5} cl=5 nobody].");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nokjunk"),
       "[100 Continue 11  nobody].[200 OK 11 {Content-Length=2}{Connection=close} cl=2 close](ok).");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00"),
       "[101 Switching Protocols 11 {Upgrade=websocket}{Connection=Upgrade} nobody upgrade].^<\\81\\00>");
  resp(LP_HTTP_M_CONNECT, S("HTTP/1.1 200 Connection established\r\n\r\nraw"),
       "[200 Connection established 11  nobody upgrade].^<raw>");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), "[200  11 {Content-Length=0} cl=0].");
  // maxBody bounds a body until close as it comes (and chunked ones too).
  lp_http_config small = respcfg;
  small.max_body = 5;
  check_with(&small, LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\n\r\n12345"), "[200 OK 11  eof close](12345)$.");
  check_with(&small, LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\n\r\n123456"),
             "[200 OK 11  eof close](12345)!413 HttpBodyTooLarge: body over 5 bytes");
  check_with(&small, LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n"),
             "[200 OK 11 {Transfer-Encoding=chunked} chunked](abc)!413 HttpBodyTooLarge: chunked body over 5 bytes");
  // Malformed responses.
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
       "!400 HttpBadResponse: both Content-Length and Transfer-Encoding");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 20 OK\r\n\r\n"), "!400 HttpBadResponse: malformed status code");
  resp(LP_HTTP_M_GET, S("HTTP/1.1\r\n\r\n"), "!400 HttpBadResponse: malformed status line");
  resp(LP_HTTP_M_GET, S("HTTP/2 200 OK\r\n\r\n"), "!400 HttpBadResponse: malformed HTTP version in status line");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200OK\r\n\r\n"), "!400 HttpBadResponse: malformed status line");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200 O\x01K\r\n\r\n"), "!400 HttpBadResponse: control character 0x01 in reason phrase");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"), "!400 HttpBadResponse: bare LF in status line");
  resp(LP_HTTP_M_GET, S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab"),
       "[200 OK 11 {Content-Length=3} cl=3](ab)$!400 HttpBadResponse: the input ended inside a message");
}

// ---- helpers and in-place use -----------------------------------------------------------------------

static void test_api(void) {
  lp_http_parser p;
  lp_http_parser_init(&p, &reqcfg);
  lp_buf *b = lp_buf_from(pool, S("DELETE /x HTTP/1.1\r\nhOsT: h\r\nX-A: 1\r\n\r\n"));
  CHECK(lp_http_parse(&p, b) == LP_HTTP_HEAD);
  CHECK(p.head.method == LP_HTTP_M_DELETE && strcmp(lp_http_method_name(p.head.method), "DELETE") == 0);
  const lp_http_header *h = lp_http_find(&p.head, "x-a");
  CHECK(h && h->value.len == 1 && *lp_http_at(p.head.base, h->value) == '1');
  CHECK(lp_http_find(&p.head, "host") != NULL && lp_http_find(&p.head, "nope") == NULL);
  CHECK(p.head.length == lp_buf_readable(b) + b->rd && b->rd == p.head.length); // the head is consumed
  CHECK(lp_http_parse(&p, b) == LP_HTTP_END);
  CHECK(lp_http_parse(&p, b) == LP_HTTP_NEED);
  lp_buf_unref(b);
  // Upgrade declined: the parser goes on as HTTP.
  b = lp_buf_from(pool, S("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"));
  CHECK(lp_http_parse(&p, b) == LP_HTTP_HEAD && p.head.upgrade);
  CHECK(lp_http_parse(&p, b) == LP_HTTP_END);
  CHECK(lp_http_parse(&p, b) == LP_HTTP_UPGRADE && lp_http_parse(&p, b) == LP_HTTP_UPGRADE);
  lp_http_parser_resume(&p);
  CHECK(lp_http_parse(&p, b) == LP_HTTP_HEAD && p.head.target.len == 2 && !p.head.upgrade);
  lp_buf_unref(b);
  // Declined, on a connection that ends with it: nothing more is parsed.
  b = lp_buf_from(pool, S("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: x\r\nConnection: upgrade, close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"));
  CHECK(lp_http_parse(&p, b) == LP_HTTP_END); // the END of /2 before
  CHECK(lp_http_parse(&p, b) == LP_HTTP_HEAD && p.head.upgrade && !p.head.keep_alive);
  CHECK(lp_http_parse(&p, b) == LP_HTTP_END && lp_http_parse(&p, b) == LP_HTTP_UPGRADE);
  lp_http_parser_resume(&p);
  CHECK(lp_http_parse(&p, b) == LP_HTTP_NEED && lp_buf_readable(b) == 0);
  lp_buf_unref(b);
  lp_http_parser_free(&p);
}

int main(void) {
  srand(7);
  pool = lp_pool_new();
  lp_http_config_default(&reqcfg, false);
  lp_http_config_default(&respcfg, true);
  test_requests();
  test_smuggling();
  test_limits();
  test_responses();
  test_api();
  CHECK(lp_pool_live(pool) == 0);
  lp_pool_free(pool);
  return check_report();
}
