// test_resp.c: RESP requests and replies, whole and split at every byte, with
// Redis's limits and error texts.
#include "check.h"
#include "resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Parse every request of s, fed as a growing prefix split at `split` (0: all
// at once), into a flat description "argc:arg,arg;..." or "E:<err>".
static void requests(const char *s, size_t n, size_t split, char *out, size_t outlen) {
  lp_resp_req r;
  lp_resp_req_init(&r, NULL);
  size_t off = 0, avail = split ? (split < n ? split : n) : n;
  out[0] = 0;
  size_t o = 0;
  for (int guard = 0; guard < 100000; guard++) {
    size_t used;
    int rc = lp_resp_req_parse(&r, s + off, avail - off, &used);
    if (rc == LP_RESP_DONE) {
      if (r.nargs) {
        o += (size_t)snprintf(out + o, outlen - o, "%zu:", r.nargs);
        for (size_t i = 0; i < r.nargs && o < outlen; i++)
          o += (size_t)snprintf(out + o, outlen - o, "%.*s%s", (int)r.args[i].len, r.args[i].p, i + 1 < r.nargs ? "," : ";");
      }
      off += used;
      continue;
    }
    if (rc == LP_RESP_ERROR) {
      snprintf(out + o, outlen - o, "E:%s", r.err);
      break;
    }
    if (avail == n) break;
    avail++; // one more byte
  }
  lp_resp_req_free(&r);
}

// describe (requests or replies) gives want for s whole and for s split at
// every byte.
typedef void describe_fn(const char *s, size_t n, size_t split, char *out, size_t outlen);
static void split_same(describe_fn *describe, const char *s, size_t n, const char *want) {
  char whole[4096], split[4096];
  describe(s, n, 0, whole, sizeof whole);
  if (strcmp(whole, want) != 0) fprintf(stderr, "got  %s\nwant %s\n", whole, want);
  CHECK(strcmp(whole, want) == 0);
  for (size_t k = 1; k < n; k++) {
    describe(s, n, k, split, sizeof split);
    if (strcmp(split, want) != 0) fprintf(stderr, "split %zu: %s\n", k, split);
    CHECK(strcmp(split, want) == 0);
  }
}

static void req_same(const char *s, const char *want) { split_same(requests, s, strlen(s), want); }

static void test_requests(void) {
  req_same("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n*1\r\n$4\r\nPING\r\n", "3:SET,k,value;1:PING;");
  req_same("*1\r\n$0\r\n\r\n", "1:;");
  req_same("*0\r\n*-1\r\n*1\r\n$1\r\nx\r\n", "1:x;"); // empty multibulks are ignored
  req_same("PING\r\nset k  v\n\r\n   \r\nGET k\r\n", "1:PING;3:set,k,v;2:GET,k;");
  req_same("SET \"a b\" \"x\\x41\\n\\\"\" 'it\\'s'\r\n", "4:SET,a b,xA\n\",it's;");
  req_same("SET \"a\"b\r\n", "E:Protocol error: unbalanced quotes in request");
  req_same("SET \"ab\r\n", "E:Protocol error: unbalanced quotes in request");
  req_same("*1\r\nx\r\n", "E:Protocol error: expected '$', got 'x'");
  req_same("*1099511627776\r\n", "E:Protocol error: invalid multibulk length");
  req_same("*1000000000\r\n", "E:Protocol error: invalid multibulk length");
  req_same("*1048577\r\n", "E:Protocol error: invalid multibulk length");
  req_same("*x\r\n", "E:Protocol error: invalid multibulk length");
  req_same("*1\r\n$1099511627776\r\n", "E:Protocol error: invalid bulk length");
  req_same("*1\r\n$-1\r\n", "E:Protocol error: invalid bulk length");
  req_same("*1\r\n$+1\r\n", "E:Protocol error: invalid bulk length");

  // limits that need many bytes: no CR within 64 KiB
  size_t big = LP_RESP_MAX_INLINE + 10;
  char *s = malloc(big + 8);
  memset(s, 'a', big);
  char out[256];
  requests(s, big, 0, out, sizeof out);
  CHECK(strcmp(out, "E:Protocol error: too big inline request") == 0);
  s[0] = '*';
  requests(s, big, 0, out, sizeof out);
  CHECK(strcmp(out, "E:Protocol error: too big mbulk count string") == 0);
  memcpy(s, "*1\r\n$", 5);
  requests(s, big, 0, out, sizeof out);
  CHECK(strcmp(out, "E:Protocol error: too big bulk count string") == 0);
  free(s);

  // a configured bulk limit
  lp_resp_limits lim;
  lp_resp_limits_default(&lim);
  lim.max_bulk = 4;
  lp_resp_req r;
  lp_resp_req_init(&r, &lim);
  size_t used;
  CHECK(lp_resp_req_parse(&r, "*1\r\n$4\r\nabcd\r\n", 14, &used) == LP_RESP_DONE && used == 14);
  CHECK(lp_resp_req_parse(&r, "*1\r\n$5\r\nabcde\r\n", 15, &used) == LP_RESP_ERROR);
  lp_resp_req_free(&r);

  // a multibulk of many elements arriving in pieces resumes: each call scans only new bytes
  size_t count = 100000;
  size_t cap = count * 12 + 32, n = 0;
  char *m = malloc(cap);
  n += (size_t)snprintf(m + n, cap - n, "*%zu\r\n", count);
  for (size_t i = 0; i < count; i++) n += (size_t)snprintf(m + n, cap - n, "$1\r\n%c\r\n", 'a' + (int)(i % 26));
  lp_resp_req_init(&r, NULL);
  int rc = LP_RESP_NEED;
  for (size_t avail = 1000; rc == LP_RESP_NEED; avail = avail + 1000 > n ? n : avail + 1000)
    rc = lp_resp_req_parse(&r, m, avail, &used);
  CHECK(rc == LP_RESP_DONE && r.nargs == count && used == n && r.args[count - 1].p[0] == 'a' + (int)((count - 1) % 26));
  lp_resp_req_free(&r);
  free(m);
}

// Replies: describe the nodes of each value.
static void replies(const char *s, size_t n, size_t split, char *out, size_t outlen) {
  lp_resp_reply r;
  lp_resp_reply_init(&r, NULL);
  size_t off = 0, avail = split ? (split < n ? split : n) : n, o = 0;
  out[0] = 0;
  for (int guard = 0; guard < 100000; guard++) {
    size_t used;
    int rc = lp_resp_reply_parse(&r, s + off, avail - off, &used);
    if (rc == LP_RESP_DONE) {
      for (size_t i = 0; i < r.nnodes && o < outlen; i++) {
        lp_resp_node *nd = &r.nodes[i];
        switch (nd->type) {
        case ':': case '#': case '*': case '%': case '~': case '>': case '|':
          o += (size_t)snprintf(out + o, outlen - o, "%c%lld ", nd->type, (long long)nd->i);
          break;
        case ',': o += (size_t)snprintf(out + o, outlen - o, ",%g ", nd->d); break;
        default: o += (size_t)snprintf(out + o, outlen - o, "%c%.*s ", nd->type, (int)nd->len, nd->p); break;
        }
      }
      if (o < outlen) o += (size_t)snprintf(out + o, outlen - o, "; ");
      off += used;
      continue;
    }
    if (rc == LP_RESP_ERROR) {
      snprintf(out + o, outlen - o, "E:%s", r.err);
      break;
    }
    if (avail == n) break;
    avail++;
  }
  lp_resp_reply_free(&r);
}

#define REP(lit, want) split_same(replies, lit, sizeof(lit) - 1, want)

static void test_replies(void) {
  REP("+OK\r\n-ERR bad\r\n:42\r\n:-7\r\n$3\r\nfoo\r\n$0\r\n\r\n$-1\r\n*-1\r\n", "+OK ; -ERR bad ; :42 ; :-7 ; $foo ; $ ; _ ; _ ; ");
  REP("*2\r\n$1\r\na\r\n*1\r\n:1\r\n", "*2 $a *1 :1 ; ");
  REP("%1\r\n+k\r\n,1.5\r\n~2\r\n#t\r\n#f\r\n_\r\n", "%1 +k ,1.5 ; ~2 #1 #0 ; _ ; ");
  REP(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", ">3 $message $ch $hi ; ");
  REP("|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n=8\r\ntxt:abcd\r\n(123456789012345678901234\r\n",
      "|1 +ttl :3 $v ; =abcd ; (123456789012345678901234 ; ");
  REP("!5\r\nERR x\r\n,inf\r\n", "!ERR x ; ,inf ; ");
  REP("?\r\n", "E:Protocol error: unexpected reply type byte '?'");
  REP(":12a\r\n", "E:Protocol error: invalid integer");
  REP("$3\r\nabcd\r\n", "E:Protocol error: bulk string not followed by CRLF");
  REP("$1099511627776\r\n", "E:Protocol error: invalid bulk length");
  REP("*1000000000\r\n", "E:Protocol error: invalid multibulk length");
  char deep[200];
  size_t n = 0;
  for (int i = 0; i < 40; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "*1\r\n");
  n += (size_t)snprintf(deep + n, sizeof deep - n, ":1\r\n");
  char out[256];
  replies(deep, n, 0, out, sizeof out);
  CHECK(strcmp(out, "E:Protocol error: nested deeper than 32") == 0);
}

static void test_encode(void) {
  lp_resp_out o = {0};
  lp_resp_put_line(&o, '+', "OK", 2);
  lp_resp_put_line(&o, '-', "ERR a\r\nb", 8);
  lp_resp_put_int(&o, ':', -12);
  lp_resp_put_int(&o, '*', 2);
  lp_resp_put_bulk(&o, "ab\0c", 4);
  lp_resp_put_double(&o, 1.5);
  const char want[] = "+OK\r\n-ERR a  b\r\n:-12\r\n*2\r\n$4\r\nab\0c\r\n,1.5\r\n";
  CHECK(o.len == sizeof want - 1 && memcmp(o.data, want, o.len) == 0);
  lp_resp_out_free(&o);
}

// One request through lp_resp_store_exec: its reply, or "PASS".
static void store_same(lp_shdict *d, const char *req, const char *want) {
  lp_resp_req r;
  lp_resp_req_init(&r, NULL);
  size_t used;
  CHECK(lp_resp_req_parse(&r, req, strlen(req), &used) == LP_RESP_DONE);
  lp_buf *out = lp_buf_new(NULL, 16);
  lp_shscratch sc = {0};
  int rc = lp_resp_store_exec(d, r.args, r.nargs, out, &sc);
  char got[256];
  if (rc == LP_RESP_STORE_PASS) snprintf(got, sizeof got, "PASS%s", lp_buf_readable(out) ? " (and wrote)" : "");
  else snprintf(got, sizeof got, "%.*s", (int)lp_buf_readable(out), (const char *)lp_buf_rptr(out));
  if (strcmp(got, want) != 0) fprintf(stderr, "store %s: got [%s] want [%s]\n", req, got, want);
  CHECK(strcmp(got, want) == 0);
  free(sc.data);
  lp_buf_unref(out);
  lp_resp_req_free(&r);
}

static void test_store(void) {
  lp_shdict *d = lp_shdict_new("resp", 64 * 1024);
  store_same(d, "PING\r\n", "+PONG\r\n");
  store_same(d, "ping hi\r\n", "$2\r\nhi\r\n");
  store_same(d, "ECHO \"\"\r\n", "$0\r\n\r\n");
  store_same(d, "GET k\r\n", "$-1\r\n");
  store_same(d, "*3\r\n$3\r\nset\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n", "+OK\r\n");
  store_same(d, "GeT k\r\n", "$4\r\na\r\nb\r\n");
  store_same(d, "INCR k\r\n", "-ERR value is not an integer or out of range\r\n");
  store_same(d, "INCR n\r\n", ":1\r\n");
  store_same(d, "INCRBY n -11\r\n", ":-10\r\n");
  store_same(d, "DECRBY n 5\r\n", ":-15\r\n");
  store_same(d, "DECR n\r\n", ":-16\r\n");
  store_same(d, "GET n\r\n", "$3\r\n-16\r\n");
  store_same(d, "INCRBY n 007\r\n", "-ERR value is not an integer or out of range\r\n");
  store_same(d, "DECRBY n -9223372036854775808\r\n", "-ERR value is not an integer or out of range\r\n");
  store_same(d, "INCRBY n 9223372036854775807\r\n", ":9223372036854775791\r\n");
  store_same(d, "INCRBY n 17\r\n", "-ERR increment or decrement would overflow\r\n");
  store_same(d, "SET big 9223372036854775807\r\n", "+OK\r\n");
  store_same(d, "INCR big\r\n", "-ERR increment or decrement would overflow\r\n");
  lp_shval item = {.type = LP_SHV_STR, .str = "x", .len = 1};
  size_t len;
  CHECK(lp_shdict_push(d, "l", 1, &item, true, &len, NULL) == 0);
  store_same(d, "GET l\r\n", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
  store_same(d, "INCR l\r\n", "-ERR value is not an integer or out of range\r\n"); // as redis_lite's Lua
  lp_shval f = {.type = LP_SHV_FLOAT, .d = 1.5};
  CHECK(lp_shdict_set(d, "f", 1, &f, 0, LP_SHSET_ANY, NULL) == 0);
  char big[70 * 1024 + 64];
  int n = snprintf(big, sizeof big, "*3\r\n$3\r\nSET\r\n$1\r\nv\r\n$%d\r\n", 70 * 1024);
  memset(big + n, 'x', 70 * 1024);
  memcpy(big + n + 70 * 1024, "\r\n", 3);
  store_same(d, big, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
  // The handler's: options, other arities, other commands, keys the dictionary refuses, floats.
  store_same(d, "GET f\r\n", "PASS");
  store_same(d, "SET k v EX 10\r\n", "PASS");
  store_same(d, "GET\r\n", "PASS");
  store_same(d, "GET a b\r\n", "PASS");
  store_same(d, "PING a b\r\n", "PASS");
  store_same(d, "GET \"\"\r\n", "PASS");
  store_same(d, "SET \"\" v\r\n", "PASS");
  store_same(d, "DEL k\r\n", "PASS");
  store_same(d, "GETS k\r\n", "PASS");
  store_same(d, "G\x45T k\r\n", "$4\r\na\r\nb\r\n");
  store_same(d, "G\x05T k\r\n", "PASS"); // not a letter: no case folding
  lp_shdict_free(d);
}

int main(void) {
  test_requests();
  test_replies();
  test_encode();
  test_store();
  return check_report();
}
