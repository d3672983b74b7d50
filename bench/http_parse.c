// http_parse.c: microbenchmark of the HTTP/1.1 parser (src/http_parser.c,
// compiled in; no loop, no sockets). One keep-alive connection's parser is
// fed the same request N times, as one read each (HEAD, END, NEED), and the
// time per request is printed. Requests: "wrk" (what wrk sends by default),
// "browser" (a GET with 9 header fields, about 500 bytes), "chunked" (a small
// chunked POST with a trailer).
//
//   build/bench/http_parse [wrk|browser|chunked] [N]
//   # instructions per request: two runs under callgrind, the difference over N2-N1
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null build/bench/http_parse wrk 1000 2>&1 | grep refs
#include "buffer.h"
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char wrk[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
static const char browser[] =
    "GET /static/app/main.css?v=1234 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: text/css,*/*;q=0.1\r\n"
    "Accept-Language: en-GB,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/index.html\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; lang=en\r\n"
    "Cache-Control: max-age=0\r\n"
    "\r\n";
static const char chunked[] = "POST /api HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n";

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "wrk";
  long n = argc > 2 ? atol(argv[2]) : 5000000;
  const char *req = strcmp(which, "browser") == 0 ? browser : strcmp(which, "chunked") == 0 ? chunked : wrk;
  size_t len = strlen(req);
  lp_buf *b = lp_buf_from(NULL, req, len);
  lp_http_config cfg;
  lp_http_config_default(&cfg, false);
  lp_http_parser p;
  lp_http_parser_init(&p, &cfg);
  size_t heads = 0, fields = 0, body = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) {
    b->rd = 0; // the next read brings the same request
    int rc;
    while ((rc = lp_http_parse(&p, b)) > 0) {
      if (rc == LP_HTTP_HEAD) heads++, fields += p.head.nheaders;
      else if (rc == LP_HTTP_BODY) body += p.body_len;
    }
    if (rc != LP_HTTP_NEED || b->rd != len) {
      fprintf(stderr, "http_parse: unexpected result %d (%s)\n", rc, rc < 0 ? p.error.message : "");
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
  printf("request=%s bytes=%zu n=%ld ns_per_request=%.1f mb_per_s=%.0f heads=%zu fields=%zu body=%zu\n", which, len, n,
         ns / (double)n, (double)len * (double)n / ns * 1e3, heads, fields, body);
  lp_http_parser_free(&p);
  lp_buf_unref(b);
  return 0;
}
