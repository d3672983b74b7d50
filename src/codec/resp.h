// resp.h: the Redis serialization protocol (RESP2 and RESP3), parsing and
// encoding, in plain C (no loop, no Lua): testable and fuzzable alone.
//
// Two parsers over bytes that arrive in pieces (a cumulation: the caller
// keeps unconsumed bytes and calls again with more appended):
//   - requests (a server's side): a multibulk array of bulk strings, or an
//     inline command (what telnet/nc users type: words, "quoted" with
//     escapes, 'single'). Redis's limits and error texts: a multibulk count
//     over max_multibulk, a bulk length over max_bulk (proto-max-bulk-len),
//     an inline line over max_inline. A large multibulk resumes where it
//     stopped (the elements already complete are not scanned again).
//   - replies (a client's side): any RESP2/RESP3 value, nested up to
//     LP_RESP_MAX_DEPTH, flattened into nodes in pre-order.
// Both are pure functions of the bytes seen: the same stream split anywhere
// gives the same results (fuzz/fuzz_resp.c checks it).
//
// Offsets, not pointers, are kept between calls (the caller's buffer may
// move); the results point into the buffer of the call that returned them
// (or into the parser's scratch for inline commands) until the next call.
#ifndef LP_RESP_H
#define LP_RESP_H

#include "buffer.h"
#include "common.h"
#include "shdict.h"

#define LP_RESP_DEFAULT_MAX_BULK ((size_t)512 << 20)  // Redis's proto-max-bulk-len
#define LP_RESP_DEFAULT_MAX_MULTIBULK ((size_t)1 << 20) // Redis: 1024*1024 per request
#define LP_RESP_MAX_INLINE ((size_t)64 << 10)          // PROTO_INLINE_MAX_SIZE
#define LP_RESP_MAX_DEPTH 32
#define LP_RESP_ERR_MAX 128

typedef struct lp_resp_limits {
  size_t max_bulk;      // bytes of one bulk string
  size_t max_multibulk; // elements of one request, or of one aggregate in a reply
  size_t max_inline;    // bytes of an inline command line, or of a reply's simple line
} lp_resp_limits;
void lp_resp_limits_default(lp_resp_limits *l);

enum { LP_RESP_NEED = 0, LP_RESP_DONE = 1, LP_RESP_ERROR = -1, LP_RESP_NOMEM = -2 };

typedef struct lp_resp_arg {
  const char *p;
  size_t len;
} lp_resp_arg;

typedef struct lp_resp_req {
  lp_resp_limits lim;
  // results of the last LP_RESP_DONE
  lp_resp_arg *args;
  size_t nargs;
  bool inline_cmd;      // the request was an inline command
  char err[LP_RESP_ERR_MAX]; // after LP_RESP_ERROR: Redis's text, "Protocol error: invalid bulk length"
  // resumption of a multibulk (offsets from the start of the unconsumed bytes)
  size_t want;          // elements of the multibulk in progress (0: none)
  size_t got;           // of which complete
  size_t pos;           // where its next element starts
  size_t *offs, *lens;  // its complete elements
  size_t cap;
  char *scratch;        // inline arguments, unescaped
  size_t scap;
} lp_resp_req;

void lp_resp_req_init(lp_resp_req *r, const lp_resp_limits *lim);
void lp_resp_req_free(lp_resp_req *r);
// Parse one request from buf[0..len): LP_RESP_DONE with *used bytes consumed
// and args/nargs set (nargs 0: an empty request to ignore, as Redis does with
// a blank line or "*0"); LP_RESP_NEED (consume nothing, call again with more);
// LP_RESP_ERROR with err set (Redis answers "-ERR <err>" and closes);
// LP_RESP_NOMEM.
int lp_resp_req_parse(lp_resp_req *r, const char *buf, size_t len, size_t *used);

// ---- replies ----
enum {
  LP_RESP_T_SIMPLE = '+', LP_RESP_T_ERROR = '-', LP_RESP_T_INT = ':', LP_RESP_T_BULK = '$', LP_RESP_T_ARRAY = '*',
  LP_RESP_T_NULL = '_', LP_RESP_T_BOOL = '#', LP_RESP_T_DOUBLE = ',', LP_RESP_T_BIGNUM = '(',
  LP_RESP_T_VERBATIM = '=', LP_RESP_T_BLOBERR = '!', LP_RESP_T_MAP = '%', LP_RESP_T_SET = '~',
  LP_RESP_T_PUSH = '>', LP_RESP_T_ATTR = '|',
};

typedef struct lp_resp_node {
  int type;             // LP_RESP_T_*; RESP2 nulls ($-1, *-1) are LP_RESP_T_NULL
  const char *p;        // strings: bytes (verbatim: after "txt:")
  size_t len;
  int64_t i;            // INT, BOOL (0/1); aggregates: element count (a map: pairs)
  double d;             // DOUBLE
} lp_resp_node;

typedef struct lp_resp_reply {
  lp_resp_limits lim;
  lp_resp_node *nodes;  // the last value, pre-order (an aggregate is followed by its elements)
  size_t nnodes, cap;
  char err[LP_RESP_ERR_MAX];
} lp_resp_reply;

void lp_resp_reply_init(lp_resp_reply *r, const lp_resp_limits *lim);
void lp_resp_reply_free(lp_resp_reply *r);
// Parse one value (attributes in front of it are parsed and kept as
// LP_RESP_T_ATTR nodes with their pairs): as lp_resp_req_parse.
int lp_resp_reply_parse(lp_resp_reply *r, const char *buf, size_t len, size_t *used);

// ---- encoding (into a caller's growable buffer) ----
typedef struct lp_resp_out {
  char *data;
  size_t len, cap;
  bool oom;
} lp_resp_out;
void lp_resp_out_free(lp_resp_out *o);
void lp_resp_put_raw(lp_resp_out *o, const void *p, size_t n);
void lp_resp_put_bulk(lp_resp_out *o, const char *p, size_t n);        // $n\r\n...\r\n
void lp_resp_put_line(lp_resp_out *o, char type, const char *p, size_t n); // +OK\r\n, -ERR x\r\n (CR/LF become spaces)
void lp_resp_put_int(lp_resp_out *o, char type, int64_t v);            // :12\r\n, *3\r\n, %2\r\n
void lp_resp_put_double(lp_resp_out *o, double v);                     // ,1.5\r\n (RESP3)

// Numbers: a decimal integer as Redis reads one (optional '-', no '+', no
// leading zeros or spaces, fits int64); v in decimal into dst (at most
// LP_RESP_INT_MAX bytes, no NUL), returning the length.
#define LP_RESP_INT_MAX 20
bool lp_resp_to_ll(const char *p, size_t n, int64_t *out);
size_t lp_resp_fmt_int(char *dst, int64_t v);

// ---- answering from a shared dictionary (resp_store.c) ----
// The commands that map one to one onto a dictionary (src/core/shdict.h),
// answered as examples/redis_lite.lua answers them: PING, PING msg, ECHO msg,
// GET k, SET k v (no options), INCR k, DECR k, INCRBY k n, DECRBY k n.
// Returns LP_RESP_STORE_DONE with the reply appended to out,
// LP_RESP_STORE_PASS for anything else (another command, another arity, an
// empty or over-long key, a value stored as a float or boolean: the caller's
// own handler answers those, and nothing was changed), or -ENOMEM (out could
// not grow; the command may have run). Strings read out go through scratch.
enum { LP_RESP_STORE_PASS = 0, LP_RESP_STORE_DONE = 1 };
int lp_resp_store_exec(lp_shdict *d, const lp_resp_arg *args, size_t n, lp_buf *out, lp_shscratch *scratch);

#endif
