// test_http_codec.c: the response encoder (http_codec.c): heads byte for byte,
// chunks, the Date cache, field checks.
#include "check.h"
#include "http_codec.h"

#include <string.h>

static bool equals(lp_buf *b, const char *s) {
  size_t n = strlen(s);
  bool ok = lp_buf_readable(b) == n && memcmp(lp_buf_rptr(b), s, n) == 0;
  if (!ok) fprintf(stderr, "got: %.*s\nwant: %s\n", (int)lp_buf_readable(b), (const char *)lp_buf_rptr(b), s);
  return ok;
}

int main(void) {
  // Date: the IMF-fixdate of the second, cached
  CHECK(strcmp(lp_http_date(784111777.0), "Sun, 06 Nov 1994 08:49:37 GMT") == 0);
  CHECK(strcmp(lp_http_date(784111777.9), "Sun, 06 Nov 1994 08:49:37 GMT") == 0);
  CHECK(strcmp(lp_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT") == 0);
  CHECK(strlen(lp_http_date(4102444800.0)) == LP_HTTP_DATE_LEN); // 2100

  lp_buf *b = lp_buf_new(NULL, 16);
  lp_http_response r = {.version = 11, .status = 200, .content_length = 6, .keep_alive = true};
  CHECK(lp_http_encode_head(b, &r) == 0);
  CHECK(equals(b, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"));
  lp_buf_unref(b);

  // HTTP/1.0 keep-alive says so; close says so; streamed to 1.0: no framing field
  lp_http_field f[2] = {{"Content-Type", "text/plain", 12, 10}, {"X-A", "", 3, 0}};
  b = lp_buf_new(NULL, 0);
  r = (lp_http_response){.version = 10, .status = 404, .fields = f, .nfields = 2, .content_length = -1,
                         .keep_alive = false};
  CHECK(lp_http_encode_head(b, &r) == 0);
  CHECK(equals(b, "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: text/plain\r\nX-A: \r\n\r\n"));
  lp_buf_unref(b);
  b = lp_buf_new(NULL, 0);
  r = (lp_http_response){.version = 10, .status = 200, .content_length = 0, .keep_alive = true};
  CHECK(lp_http_encode_head(b, &r) == 0);
  CHECK(equals(b, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"));
  lp_buf_unref(b);
  // chunked for 1.1 streams; 204 without framing; own reason; Date present
  b = lp_buf_new(NULL, 0);
  r = (lp_http_response){.version = 11, .status = 299, .reason = "Fine", .reason_len = 4, .content_length = -1,
                         .keep_alive = true, .date = true};
  CHECK(lp_http_encode_head(b, &r) == 0);
  CHECK(lp_buf_readable(b) == strlen("HTTP/1.1 299 Fine\r\nDate: \r\nTransfer-Encoding: chunked\r\n\r\n") + LP_HTTP_DATE_LEN);
  CHECK(memcmp(lp_buf_rptr(b), "HTTP/1.1 299 Fine\r\nDate: ", 25) == 0);
  lp_buf_unref(b);
  b = lp_buf_new(NULL, 0);
  r = (lp_http_response){.version = 11, .status = 204, .no_length = true, .content_length = -1, .keep_alive = true};
  CHECK(lp_http_encode_head(b, &r) == 0);
  CHECK(equals(b, "HTTP/1.1 204 No Content\r\n\r\n"));
  lp_buf_unref(b);
  // Date from the caller's clock (the loop's)
  b = lp_buf_new(NULL, 0);
  r = (lp_http_response){.version = 11, .status = 200, .content_length = 0, .keep_alive = true, .date = true,
                         .now = 784111777.5};
  CHECK(lp_http_encode_head(b, &r) == 0);
  CHECK(equals(b, "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n"));
  lp_buf_unref(b);
  CHECK(strcmp(lp_http_reason(431), "Request Header Fields Too Large") == 0);
  CHECK(strcmp(lp_http_reason(599), "Unknown") == 0);

  // chunks
  b = lp_buf_new(NULL, 0);
  char big[300];
  memset(big, 'x', sizeof big);
  CHECK(lp_http_encode_chunk(b, "hello", 5) == 0);
  CHECK(lp_http_encode_chunk(b, big, sizeof big) == 0);
  CHECK(lp_http_encode_last_chunk(b) == 0);
  CHECK(lp_buf_readable(b) == 3 + 5 + 2 + 5 + 300 + 2 + 5);
  CHECK(memcmp(lp_buf_rptr(b), "5\r\nhello\r\n12c\r\nxx", 17) == 0);
  CHECK(memcmp(lp_buf_rptr(b) + lp_buf_readable(b) - 7, "\r\n0\r\n\r\n", 7) == 0);
  lp_buf_unref(b);

  // field checks: response splitting refused
  CHECK(lp_http_field_check("X-Ok", 4, "a b\tc", 5) == 0);
  CHECK(lp_http_field_check("X-Bad", 5, "a\r\nSet-Cookie: x", 16) != 0);
  CHECK(lp_http_field_check("X-Bad", 5, "a\nb", 3) != 0);
  CHECK(lp_http_field_check("X-Bad", 5, "a\0b", 3) != 0);
  CHECK(lp_http_field_check("X Bad", 5, "a", 1) != 0);
  CHECK(lp_http_field_check("X:Bad", 5, "a", 1) != 0);
  CHECK(lp_http_field_check("", 0, "a", 1) != 0);
  CHECK(lp_http_name_is("Content-LENGTH", 14, "content-length"));
  CHECK(!lp_http_name_is("Content-Lengthx", 15, "content-length"));
  CHECK(!lp_http_name_is("Content-Lengt", 13, "content-length"));

  b = lp_buf_new(NULL, 0);
  CHECK(lp_http_write_u64(b, 0) == 0 && lp_http_write_u64(b, 18446744073709551615ull) == 0);
  CHECK(equals(b, "018446744073709551615"));
  lp_buf_unref(b);
  return check_report();
}
