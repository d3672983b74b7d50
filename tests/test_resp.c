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

static void req_same(const char *s, const char *want) {
  size_t n = strlen(s);
  char whole[4096], split[4096];
  requests(s, n, 0, whole, sizeof whole);
  if (strcmp(whole, want) != 0) fprintf(stderr, "got  %s\nwant %s\n", whole, want);
  CHECK(strcmp(whole, want) == 0);
  for (size_t k = 1; k < n; k++) {
    requests(s, n, k, split, sizeof split);
    if (strcmp(split, want) != 0) fprintf(stderr, "split %zu: %s\n", k, split);
    CHECK(strcmp(split, want) == 0);
  }
}

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

static void rep_same(const char *s, size_t n, const char *want) {
  char whole[4096], split[4096];
  replies(s, n, 0, whole, sizeof whole);
  if (strcmp(whole, want) != 0) fprintf(stderr, "got  %s\nwant %s\n", whole, want);
  CHECK(strcmp(whole, want) == 0);
  for (size_t k = 1; k < n; k++) {
    replies(s, n, k, split, sizeof split);
    CHECK(strcmp(split, want) == 0);
  }
}
#define REP(lit, want) rep_same(lit, sizeof(lit) - 1, want)

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

int main(void) {
  test_requests();
  test_replies();
  test_encode();
  return check_report();
}
