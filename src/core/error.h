// error.h: how the core describes a failure. A failure is a code (a negative
// errno, or one of the named LP_E* codes below), a kind ("ECONNREFUSED",
// "TooLongFrame") and a one-line message. Codec errors also carry the limit and
// the length seen. Errors are values: callers keep them on the stack.
#ifndef LP_ERROR_H
#define LP_ERROR_H

#include "common.h"

#include <stdarg.h>

enum {
  LP_ECLOSED = -10001,      // ClosedChannel: operation on a closed channel
  LP_EWRITEFULL = -10002,   // WriteBufferFull: maxPendingBytes exceeded
  LP_ETOOLONG = -10003,     // TooLongFrame: a frame over its limit
  LP_ECORRUPT = -10004,     // CorruptedFrame: impossible length field
  LP_EUNSUPPORTED = -10005, // UnsupportedMessage: a message the head cannot write
  LP_EREADTIMEOUT = -10006, // ReadTimeout
  LP_EWRITETIMEOUT = -10007,// WriteTimeout
  LP_ECONNTIMEOUT = -10008, // ConnectTimeout
  LP_EDECODER = -10009,     // DecoderError: a decoder broke its contract
  LP_EHOST = -10010,        // HostError: raised by a handler (Lua error)
  LP_ESHUTDOWN = -10011,    // Shutdown: the loop is shutting down
  LP_EUNKNOWNHOST = -10012, // UnknownHost: a name did not resolve
  LP_EPROXY = -10013,       // ProxyProtocolError: a missing or malformed PROXY protocol header
  LP_EFILESHORT = -10014,   // FileTooShort: a file ended before the region being sent from it
};
// The codecs' codes have ranges of their own: TLS -10100 (below), WebSocket -10200
// (src/codec/ws.h), HTTP -10300 (src/codec/http.h). A new range goes here first.
// TLS (tls.c), a range of their own so other named codes can grow above.
enum {
  LP_ETLSHANDSHAKE = -10100, // TlsHandshakeFailed: OpenSSL's reason
  LP_ETLSTIMEOUT = -10101,   // TlsHandshakeTimeout
  LP_ETLS = -10102,          // TlsError: a bad record after the handshake
  LP_ETLSTRUNCATED = -10103, // TlsTruncated: closed without close_notify
};

#define LP_ERROR_MESSAGE_MAX 200

typedef struct lp_error {
  int code;
  const char *kind; // static string
  char message[LP_ERROR_MESSAGE_MAX];
  long long limit, length; // -1 when not applicable
} lp_error;

// Fill e for a system error: kind "ECONNREFUSED", message
// "ECONNREFUSED: Connection refused" (with "what: " in front when what != NULL).
void lp_error_sys(lp_error *e, int err /* positive errno */, const char *what);
// Fill e for a named error; the message is "Kind: <formatted text>".
void lp_error_named(lp_error *e, int code, const char *fmt, ...) LP_PRINTF(3, 4);
// The same with a kind of the caller's (a codec's own names for one code):
// message "kind: text".
void lp_error_vkind(lp_error *e, int code, const char *kind, const char *fmt, va_list ap) LP_PRINTF(4, 0);
// The static kind name of a code: "ClosedChannel", "EPIPE", ...
const char *lp_error_kind(int code);
// "ECONNREFUSED" for ECONNREFUSED; never NULL.
const char *lp_errno_name(int err);

#endif
