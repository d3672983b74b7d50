// resp_store.c: a server's most common commands answered straight from a
// shared dictionary, with no host language in between (resp.h: the list).
// What each answers, including its error texts, is what
// examples/redis_lite.lua answers for the same command, so that a server may
// answer a command here or in its own handler and the client cannot tell:
// every case whose answer would need more than the dictionary and these
// texts (an option, another arity, a float or boolean value, a key the
// dictionary's Lua API refuses) is LP_RESP_STORE_PASS, decided before
// anything is changed.
#include "resp.h"

#include <errno.h>
#include <string.h>

#define KEY_MAX 65535 // as lupine.shared's keys (src/lua/l_shared.c)

static const char OOM[] = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
static const char WRONGTYPE[] = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
static const char NOTINT[] = "-ERR value is not an integer or out of range\r\n";
static const char OVERFLOW[] = "-ERR increment or decrement would overflow\r\n";

// a is the command name (upper case letters): compared without regard to case.
static bool is(const lp_resp_arg *a, const char *name, size_t n) {
  if (a->len != n) return false;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)a->p[i] & 0xdf) != (unsigned char)name[i]) return false;
  return true;
}
#define IS(a, lit) is(a, lit, sizeof lit - 1)

static int put(lp_buf *out, const char *p, size_t n) { return lp_buf_write(out, p, n) == 0 ? LP_RESP_STORE_DONE : -ENOMEM; }
#define PUT(out, lit) put(out, lit, sizeof lit - 1)

// type, then v in decimal, then CRLF.
static int put_num(lp_buf *out, char type, int64_t v) {
  if (lp_buf_reserve(out, LP_RESP_INT_MAX + 3) != 0) return -ENOMEM;
  char *w = (char *)lp_buf_wptr(out);
  size_t n = 0;
  w[n++] = type;
  n += lp_resp_fmt_int(w + n, v);
  w[n++] = '\r';
  w[n++] = '\n';
  out->wr += n;
  return LP_RESP_STORE_DONE;
}

static int put_bulk(lp_buf *out, const char *p, size_t len) {
  if (lp_buf_reserve(out, LP_RESP_INT_MAX + 5 + len) != 0) return -ENOMEM;
  char *w = (char *)lp_buf_wptr(out);
  size_t n = 0;
  w[n++] = '$';
  n += lp_resp_fmt_int(w + n, (int64_t)len);
  w[n++] = '\r';
  w[n++] = '\n';
  if (len) memcpy(w + n, p, len);
  n += len;
  w[n++] = '\r';
  w[n++] = '\n';
  out->wr += n;
  return LP_RESP_STORE_DONE;
}

static bool key_ok(const lp_resp_arg *k) { return k->len > 0 && k->len <= KEY_MAX; }

static int get(lp_shdict *d, const lp_resp_arg *k, lp_buf *out, lp_shscratch *sc) {
  lp_shval v;
  int rc = lp_shdict_get(d, k->p, k->len, &v, sc, NULL);
  if (rc == LP_SHD_NOTFOUND) return PUT(out, "$-1\r\n");
  if (rc == LP_SHD_ISLIST) return PUT(out, WRONGTYPE);
  if (rc != 0) return -ENOMEM; // the scratch could not grow
  if (v.type == LP_SHV_STR) return put_bulk(out, v.str, v.len);
  if (v.type == LP_SHV_INT) {
    char num[LP_RESP_INT_MAX];
    return put_bulk(out, num, lp_resp_fmt_int(num, v.i));
  }
  return LP_RESP_STORE_PASS; // a float or a boolean: the handler's text for it
}

static int incr(lp_shdict *d, const lp_resp_arg *k, int64_t delta, lp_buf *out) {
  lp_shval dv = {.type = LP_SHV_INT, .i = delta}, init = {.type = LP_SHV_INT, .i = 0}, res;
  bool evicted;
  int rc = lp_shdict_incr(d, k->p, k->len, &dv, &init, 0, &res, &evicted);
  switch (rc) {
  case 0: return res.type == LP_SHV_INT ? put_num(out, ':', res.i) : PUT(out, NOTINT);
  case LP_SHD_NOMEM: return PUT(out, OOM);
  case LP_SHD_NOTNUM: return PUT(out, NOTINT);
  case LP_SHD_OVERFLOW: return PUT(out, OVERFLOW);
  case LP_SHD_NOTLIST: case LP_SHD_ISLIST: return PUT(out, WRONGTYPE);
  default: return LP_RESP_STORE_PASS; // not reached: absent keys start at init
  }
}

int lp_resp_store_exec(lp_shdict *d, const lp_resp_arg *a, size_t n, lp_buf *out, lp_shscratch *sc) {
  if (n == 0 || n > 3) return LP_RESP_STORE_PASS;
  const lp_resp_arg *name = &a[0];
  switch (name->len) {
  case 3:
    if (n == 2 && IS(name, "GET") && key_ok(&a[1])) return get(d, &a[1], out, sc);
    if (n == 3 && IS(name, "SET") && key_ok(&a[1])) {
      lp_shval v = {.type = LP_SHV_STR, .str = a[2].p, .len = a[2].len};
      bool evicted;
      int rc = lp_shdict_set(d, a[1].p, a[1].len, &v, 0, LP_SHSET_ANY, &evicted);
      return rc == 0 ? PUT(out, "+OK\r\n") : PUT(out, OOM); // "no memory" is its only refusal
    }
    break;
  case 4:
    if (IS(name, "PING")) {
      if (n == 1) return PUT(out, "+PONG\r\n");
      if (n == 2) return put_bulk(out, a[1].p, a[1].len);
    } else if (n == 2 && IS(name, "ECHO")) {
      return put_bulk(out, a[1].p, a[1].len);
    } else if (n == 2 && IS(name, "INCR") && key_ok(&a[1])) {
      return incr(d, &a[1], 1, out);
    } else if (n == 2 && IS(name, "DECR") && key_ok(&a[1])) {
      return incr(d, &a[1], -1, out);
    }
    break;
  case 6:
    if (n == 3 && (IS(name, "INCRBY") || IS(name, "DECRBY")) && key_ok(&a[1])) {
      int64_t by;
      bool decr = (name->p[0] & 0xdf) == 'D';
      if (!lp_resp_to_ll(a[2].p, a[2].len, &by) || (decr && by == INT64_MIN)) return PUT(out, NOTINT);
      return incr(d, &a[1], decr ? -by : by, out);
    }
    break;
  default: break;
  }
  return LP_RESP_STORE_PASS;
}
