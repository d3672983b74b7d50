// http.h: an HTTP/1.1 message parser (RFC 9112), for requests (the server) and
// responses (the client), as a pure step over a cumulation buffer like the
// frame decoders of codec.h: no pipeline, loop or host. It needs buffer.c and
// error.c only, so the C tests and fuzz/ drive it directly.
//
// Each call of lp_http_parse looks at the readable bytes of the cumulation and
// returns one event:
//   LP_HTTP_NEED     more bytes are needed (nothing more to say yet)
//   LP_HTTP_HEAD     a message head: p->head (start line, header fields, framing)
//   LP_HTTP_BODY     body bytes: in[p->body_index, +p->body_len), already consumed
//   LP_HTTP_END      the message ended: p->trailers holds its trailer fields (chunked)
//   LP_HTTP_UPGRADE  the stream now belongs to another protocol (Upgrade, CONNECT,
//                    101): the readable bytes of in are its, untouched; every later
//                    call says UPGRADE again, until lp_http_parser_resume
//   LP_HTTP_ERROR    the message breaks HTTP/1.1 or a limit: p->status is the status to
//                    answer (400, 413, 414, 417, 431, 501, 505), p->error the named
//                    error; answer it and close. Every later call says ERROR again.
// Call it until NEED (or UPGRADE/ERROR), then again when bytes were appended.
// Events do not depend on how the input was split into reads, except how body
// bytes divide into BODY events (their concatenation is the same).
//
// Zero copy: header names and values, the method, target and reason are
// slices of the cumulation, given as offsets from head.base (trailers: from
// trailers.base). A head's bytes are consumed when HEAD is returned, but stay
// where they are: the slices are valid until the caller changes the buffer
// (appends, discards read bytes or releases it) or calls lp_http_parse again.
// Offsets rather than pointers because the parser records fields while the
// head is incomplete, and appending may move the cumulation (lp_cumulate).
//
// Costs: a partial head is never scanned again from its start (complete lines
// are parsed once; within a line, the search for its end resumes where it
// stopped); character classes are table lookups; the only allocation is the
// parser's header array, grown on demand up to maxHeaders and kept.
//
// Strictness (each a 400 and close unless noted): both Content-Length and
// Transfer-Encoding; two Content-Length fields (even equal), a list or a
// malformed value; Transfer-Encoding whose last coding is not chunked,
// chunked twice, or in an HTTP/1.0 message; another coding before chunked in
// a request (501); obs-fold and whitespace before the first field; whitespace
// between a field name and its colon; a bare CR or LF where CRLF is required;
// NUL and other control characters (HTAB allowed in values); a chunk size over
// 2^63-1; an HTTP/1.1 request without Host, or with two; an HTTP version other
// than 1.x (505); an Expect other than 100-continue (417); a request target
// that is not origin-form, absolute-form (scheme://authority...),
// authority-form (CONNECT only) or "*" (OPTIONS only), or holds a character
// outside RFC 3986's; a CONNECT with Content-Length or Transfer-Encoding (it has
// no content: what follows is the tunnel's). Responses follow the same rules (kind HttpBadResponse
// for 400), except that a Transfer-Encoding not ending in chunked, or no
// length at all, makes the body run to the end of the input, and codings
// before chunked are left to the caller. After a message that ends the
// connection (keep_alive false) later bytes are dropped. Out of memory for the
// header array: ERROR with status 500 and error ENOMEM.
#ifndef LP_HTTP_H
#define LP_HTTP_H

#include "buffer.h"
#include "error.h"

// The error code of every HTTP parse error (kinds: HttpBadRequest,
// HttpBadResponse, HttpUriTooLong, HttpHeaderTooLarge, HttpBodyTooLarge,
// HttpNotImplemented, HttpVersionNotSupported, HttpExpectationFailed).
#define LP_EHTTP (-10300)

#define LP_HTTP_DEFAULT_MAX_LINE 8192         // maxInitialLineLength: request/status line, without CRLF (414)
#define LP_HTTP_DEFAULT_MAX_HEADER 16384      // maxHeaderSize: field lines with their CRLFs (431); trailers too
#define LP_HTTP_DEFAULT_MAX_HEADERS 100       // maxHeaders: field lines per head or trailer section (431)
#define LP_HTTP_DEFAULT_MAX_BODY (1u << 20)   // maxBody: body bytes, declared, chunked or until close (413); 0: no limit
#define LP_HTTP_DEFAULT_MAX_CHUNK_LINE 4096   // maxChunkLine: chunk size and extensions, without CRLF (400)
#define LP_HTTP_LIMIT_MAX ((size_t)1 << 26)   // largest line/header limits (offsets fit 32 bits)
#define LP_HTTP_MAX_HEADERS_MAX 65536

enum { // methods (LP_HTTP_M_OTHER: another token, see head.method_name)
  LP_HTTP_M_OTHER, LP_HTTP_M_GET, LP_HTTP_M_HEAD, LP_HTTP_M_POST, LP_HTTP_M_PUT, LP_HTTP_M_DELETE,
  LP_HTTP_M_CONNECT, LP_HTTP_M_OPTIONS, LP_HTTP_M_TRACE, LP_HTTP_M_PATCH,
};

enum { LP_HTTP_ERROR = -1, LP_HTTP_NEED = 0, LP_HTTP_HEAD, LP_HTTP_BODY, LP_HTTP_END, LP_HTTP_UPGRADE };

typedef struct lp_http_config {
  bool response;        // parse responses (the client side) rather than requests
  size_t max_line;      // LP_HTTP_DEFAULT_MAX_LINE
  size_t max_header;    // LP_HTTP_DEFAULT_MAX_HEADER
  uint32_t max_headers; // LP_HTTP_DEFAULT_MAX_HEADERS
  uint64_t max_body;    // LP_HTTP_DEFAULT_MAX_BODY; 0: unlimited (streaming)
  size_t max_chunk_line;// LP_HTTP_DEFAULT_MAX_CHUNK_LINE
} lp_http_config;

typedef struct lp_http_slice {
  uint32_t at, len; // bytes [base + at, base + at + len)
} lp_http_slice;

typedef struct lp_http_header {
  lp_http_slice name, value; // value without leading and trailing whitespace
} lp_http_header;

typedef struct lp_http_head {
  const uint8_t *base;        // the head's first byte (the start line) in the cumulation
  size_t length;              // bytes of the head, through the empty line's CRLF
  int version;                // 10 or 11 (HTTP/1.2 and later minors count as 11)
  // requests
  int method;                 // LP_HTTP_M_GET, ...; LP_HTTP_M_OTHER: see method_name
  lp_http_slice method_name, target;
  // responses
  int status;                 // 100..999
  lp_http_slice reason;
  lp_http_header *headers;    // in the order received (the parser's array)
  uint32_t nheaders;
  // framing and connection
  int64_t content_length;     // -1: none given (or no body for this response)
  bool chunked;               // body in chunks (then content_length is -1)
  bool until_close;           // response body delimited by the end of the input
  bool no_body;               // a response without body whatever its fields say (1xx, 204, 304,
                              // to HEAD, 2xx to CONNECT); content_length is then only informative
  bool keep_alive;            // another message may follow on this connection
  bool expect_continue;       // Expect: 100-continue (HTTP/1.1 requests)
  bool upgrade;               // after this message the stream changes protocol (UPGRADE follows END)
} lp_http_head;

typedef struct lp_http_trailers {
  const uint8_t *base;
  lp_http_header *headers;
  uint32_t nheaders;
} lp_http_trailers;

typedef struct lp_http_parser {
  lp_http_config cfg;
  int state;
  // the head or trailer section in progress (offsets from its first byte, the reader index)
  uint32_t pos;       // bytes of complete lines parsed
  uint32_t scanned;   // bytes after pos known to hold no LF
  uint32_t block;     // field-line bytes so far (with CRLFs), against max_header
  bool line_done;     // the start line is parsed
  // facts gathered from the fields of the head in progress
  uint32_t nhost;
  bool cl_seen, te_seen, te_last_chunked, te_other, conn_close, conn_keep_alive, conn_upgrade, has_upgrade;
  uint32_t te_chunked;
  int request_method; // responses: the method of the request answered (HEAD, CONNECT matter)
  uint64_t remaining; // body bytes left (content length or current chunk)
  uint64_t body_total;// chunked body bytes so far, against max_body
  lp_http_header *fields; // the header array (owned, malloc), hcap entries
  uint32_t hcap;
  // the event's results
  lp_http_head head;            // HEAD (valid until the head's bytes move)
  size_t body_index, body_len;  // BODY
  lp_http_trailers trailers;    // END
  int status;                   // ERROR: the status to answer
  lp_error error;               // ERROR
} lp_http_parser;

void lp_http_config_default(lp_http_config *c, bool response);
// Check a configuration: 0, or -EINVAL with a one-line reason in why.
int lp_http_config_check(const lp_http_config *c, char *why, size_t whylen);
void lp_http_parser_init(lp_http_parser *p, const lp_http_config *c);
void lp_http_parser_free(lp_http_parser *p); // the header array; p may be initialised again
// One step over the readable bytes of in; see the top of this file.
int lp_http_parse(lp_http_parser *p, lp_buf *in);
// The input ended (EOF, after parsing until NEED): LP_HTTP_END when a body
// delimited by the end of the input is complete; LP_HTTP_NEED when no message
// had begun (bytes in in, if any, only blank lines); LP_HTTP_ERROR (400) inside
// a message; UPGRADE or ERROR again in those states.
int lp_http_finish(lp_http_parser *p, lp_buf *in);
// After UPGRADE: the upgrade did not happen (the server declined it); parse on as HTTP.
void lp_http_parser_resume(lp_http_parser *p);
// Responses: the method of the request the next response answers (default GET).
static inline void lp_http_parser_set_request_method(lp_http_parser *p, int method) { p->request_method = method; }

static inline const char *lp_http_at(const uint8_t *base, lp_http_slice s) { return (const char *)base + s.at; }
// The first header named name (case-insensitive), or NULL.
const lp_http_header *lp_http_find(const lp_http_head *h, const char *name);
const char *lp_http_method_name(int method); // "GET", ...; NULL for LP_HTTP_M_OTHER

#endif
