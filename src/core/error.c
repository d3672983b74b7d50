// error.c: error codes to kinds and messages.
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const named[] = {
    "ClosedChannel",      "WriteBufferFull", "TooLongFrame",    "CorruptedFrame",
    "UnsupportedMessage", "ReadTimeout",     "WriteTimeout",    "ConnectTimeout",
    "DecoderError",       "HostError",       "Shutdown",        "UnknownHost",
    "ProxyProtocolError", "FileTooShort",
};

static const char *const tls_named[] = {"TlsHandshakeFailed", "TlsHandshakeTimeout", "TlsError", "TlsTruncated"};

const char *lp_errno_name(int err) {
  const char *n = strerrorname_np(err);
  return n ? n : "EUNKNOWN";
}

const char *lp_error_kind(int code) {
  if (code <= LP_ECLOSED && code > LP_ECLOSED - (int)LP_ARRAY_LEN(named))
    return named[LP_ECLOSED - code];
  if (code <= LP_ETLSHANDSHAKE && code > LP_ETLSHANDSHAKE - (int)LP_ARRAY_LEN(tls_named))
    return tls_named[LP_ETLSHANDSHAKE - code];
  if (code < 0) return lp_errno_name(-code);
  return "Error";
}

void lp_error_sys(lp_error *e, int err, const char *what) {
  e->code = -err;
  e->kind = lp_errno_name(err);
  e->limit = e->length = -1;
  snprintf(e->message, sizeof e->message, "%s%s%s: %s", what ? what : "", what ? ": " : "",
           e->kind, strerror(err));
}

void lp_error_vkind(lp_error *e, int code, const char *kind, const char *fmt, va_list ap) {
  e->code = code;
  e->kind = kind;
  e->limit = e->length = -1;
  int n = snprintf(e->message, sizeof e->message, "%s: ", kind);
  if (n > 0 && (size_t)n < sizeof e->message) vsnprintf(e->message + n, sizeof e->message - (size_t)n, fmt, ap);
}

void lp_error_named(lp_error *e, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lp_error_vkind(e, code, lp_error_kind(code), fmt, ap);
  va_end(ap);
}
