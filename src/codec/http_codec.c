// http_codec.c: HTTP/1.1 response encoding (see http_codec.h). The hot path is
// one lp_buf_reserve for the whole head, then plain copies: a typical
// response head is about 100 bytes.
#include "http_codec.h"

#include <errno.h>
#include <string.h>
#include <time.h>

const char *lp_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Content";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

// One loop per thread: a thread-local cache is a per-loop cache.
static _Thread_local struct {
  long long sec;
  char text[LP_HTTP_DATE_LEN + 1];
} date_cache = {-1, {0}};

const char *lp_http_date(double now) {
  long long sec = (long long)now;
  if (sec != date_cache.sec) {
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    // Formatted by hand: strftime's %a/%b follow the locale.
    char *o = date_cache.text;
    memcpy(o, days[tm.tm_wday], 3);
    o[3] = ',';
    o[4] = ' ';
    o[5] = (char)('0' + tm.tm_mday / 10);
    o[6] = (char)('0' + tm.tm_mday % 10);
    o[7] = ' ';
    memcpy(o + 8, months[tm.tm_mon], 3);
    o[11] = ' ';
    int y = tm.tm_year + 1900;
    o[12] = (char)('0' + y / 1000 % 10);
    o[13] = (char)('0' + y / 100 % 10);
    o[14] = (char)('0' + y / 10 % 10);
    o[15] = (char)('0' + y % 10);
    o[16] = ' ';
    o[17] = (char)('0' + tm.tm_hour / 10);
    o[18] = (char)('0' + tm.tm_hour % 10);
    o[19] = ':';
    o[20] = (char)('0' + tm.tm_min / 10);
    o[21] = (char)('0' + tm.tm_min % 10);
    o[22] = ':';
    o[23] = (char)('0' + tm.tm_sec / 10);
    o[24] = (char)('0' + tm.tm_sec % 10);
    memcpy(o + 25, " GMT", 5);
    date_cache.sec = sec;
  }
  return date_cache.text;
}

static bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int lp_http_field_check(const char *name, size_t name_len, const char *value, size_t value_len) {
  if (name_len == 0) return -EINVAL;
  for (size_t i = 0; i < name_len; i++)
    if (!is_tchar((unsigned char)name[i])) return -EINVAL;
  for (size_t i = 0; i < value_len; i++) {
    unsigned char c = (unsigned char)value[i];
    if (c == '\r' || c == '\n' || c == 0) return -EINVAL;
  }
  return 0;
}

bool lp_http_name_is(const char *name, size_t len, const char *lower) {
  size_t i = 0;
  for (; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
    if (lower[i] != (char)c) return false;
  }
  return lower[i] == 0;
}

static size_t format_u64(char *out, uint64_t v) { // out: 20 bytes at least
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

int lp_http_write_u64(lp_buf *b, uint64_t v) {
  char tmp[20];
  return lp_buf_write(b, tmp, format_u64(tmp, v));
}

#define PUT(lit) (memcpy(o, lit, sizeof lit - 1), o += sizeof lit - 1)

int lp_http_encode_head(lp_buf *b, const lp_http_response *r) {
  const char *reason = r->reason ? r->reason : lp_http_reason(r->status);
  size_t reason_len = r->reason ? r->reason_len : strlen(reason);
  // Bound the whole head first, so that what follows cannot fail.
  size_t need = 13 + reason_len + 2 + (LP_HTTP_DATE_LEN + 8) + 40 + 24 + 2;
  for (size_t i = 0; i < r->nfields; i++) need += r->fields[i].name_len + r->fields[i].value_len + 4;
  int rc = lp_buf_reserve(b, need);
  if (rc != 0) return rc == -ENOSPC ? -ENOMEM : rc;
  char *start = (char *)lp_buf_wptr(b), *o = start;
  PUT("HTTP/1.1 ");
  int s = r->status;
  o[0] = (char)('0' + s / 100 % 10);
  o[1] = (char)('0' + s / 10 % 10);
  o[2] = (char)('0' + s % 10);
  o[3] = ' ';
  o += 4;
  memcpy(o, reason, reason_len);
  o += reason_len;
  PUT("\r\n");
  if (r->date) {
    PUT("Date: ");
    memcpy(o, lp_http_date(r->now > 0 ? r->now : (double)time(NULL)), LP_HTTP_DATE_LEN);
    o += LP_HTTP_DATE_LEN;
    PUT("\r\n");
  }
  if (!r->no_length) {
    if (r->content_length >= 0) {
      PUT("Content-Length: ");
      o += format_u64(o, (uint64_t)r->content_length);
      PUT("\r\n");
    } else if (r->version >= 11) {
      PUT("Transfer-Encoding: chunked\r\n");
    }
  }
  // HTTP/1.1 keeps the connection unless told; HTTP/1.0 closes unless told.
  if (!r->keep_alive) PUT("Connection: close\r\n");
  else if (r->version < 11) PUT("Connection: keep-alive\r\n");
  for (size_t i = 0; i < r->nfields; i++) {
    const lp_http_field *f = &r->fields[i];
    memcpy(o, f->name, f->name_len);
    o += f->name_len;
    *o++ = ':';
    *o++ = ' ';
    memcpy(o, f->value, f->value_len);
    o += f->value_len;
    PUT("\r\n");
  }
  PUT("\r\n");
  b->wr += (size_t)(o - start);
  return 0;
}

int lp_http_encode_chunk(lp_buf *b, const void *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  int rc = lp_buf_reserve(b, n + 24);
  if (rc != 0) return rc == -ENOSPC ? -ENOMEM : rc;
  char tmp[16];
  size_t k = 0;
  for (size_t v = n; k == 0 || v; v >>= 4) tmp[k++] = hex[v & 15];
  char *start = (char *)lp_buf_wptr(b), *o = start;
  while (k) *o++ = tmp[--k];
  PUT("\r\n");
  memcpy(o, p, n);
  o += n;
  PUT("\r\n");
  b->wr += (size_t)(o - start);
  return 0;
}

int lp_http_encode_last_chunk(lp_buf *b) { return lp_buf_write(b, "0\r\n\r\n", 5); }
