// http_codec.h: encoding HTTP/1.1 responses (the server side of the codec;
// parsing is http.h). Pure functions over lp_buf, no pipeline, loop or host:
// the C tests drive them directly, and the Lua binding (src/lua/l_http.c)
// builds the server's codec handler and its request/response objects on them.
//
// Framing is the encoder's, never the caller's: a response head carries
// Content-Length when the body's length is known, Transfer-Encoding: chunked
// when it is streamed to an HTTP/1.1 client, and neither (the body runs to the
// close) for an HTTP/1.0 client; Connection says keep-alive or close as the
// version needs. Header names must be tokens and values must hold no CR, LF
// or NUL (response splitting): lp_http_field_check refuses the rest.
#ifndef LP_HTTP_CODEC_H
#define LP_HTTP_CODEC_H

#include "buffer.h"

#define LP_HTTP_DATE_LEN 29 // "Sun, 06 Nov 1994 08:49:37 GMT"

typedef struct lp_http_field {
  const char *name, *value;
  size_t name_len, value_len;
} lp_http_field;

typedef struct lp_http_response {
  int version;             // the request's: 10 or 11
  int status;              // 100..999
  const char *reason;      // NULL: the standard reason phrase (lp_http_reason)
  size_t reason_len;
  const lp_http_field *fields; // the caller's fields, in order, checked (lp_http_field_check)
  size_t nfields;
  int64_t content_length;  // >= 0: Content-Length; -1: streamed (chunked for 1.1, until close for 1.0)
  bool keep_alive;         // false: Connection: close (and the caller closes after the response)
  bool no_length;          // no framing field at all (1xx, 204, 304)
  bool date;               // add a Date field (lp_http_date)
  double now;              // for Date: seconds since the epoch (the loop's clock); 0: time(NULL)
} lp_http_response;

// The standard reason phrase of a status ("Not Found"); "Unknown" for others.
const char *lp_http_reason(int status);
// The IMF-fixdate of the second now (seconds since the epoch), LP_HTTP_DATE_LEN
// bytes, NUL-terminated: a per-thread cache (one loop per thread) rewritten only
// when the second changes. Valid until the next call on this thread.
const char *lp_http_date(double now);
// 0 when name is a token and value holds no CR, LF or NUL; -EINVAL otherwise.
int lp_http_field_check(const char *name, size_t name_len, const char *value, size_t value_len);
// ASCII case-insensitive equality of a field name with a lower-case literal.
bool lp_http_name_is(const char *name, size_t len, const char *lower);
// Append the status line and fields of r, through the empty line. 0 or -ENOMEM.
int lp_http_encode_head(lp_buf *b, const lp_http_response *r);
// Append one chunk (n > 0; an empty chunk would end the body) or the last chunk. 0 or -ENOMEM.
int lp_http_encode_chunk(lp_buf *b, const void *p, size_t n);
int lp_http_encode_last_chunk(lp_buf *b);
// Append a decimal number. 0 or -ENOMEM.
int lp_http_write_u64(lp_buf *b, uint64_t v);

#endif
