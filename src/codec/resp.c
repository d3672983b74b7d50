// resp.c: RESP parsing and encoding (see resp.h). The error texts of the
// request parser are Redis's own (networking.c), so that clients and scripts
// that look at them see what they would from Redis.
#include "resp.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lp_resp_limits_default(lp_resp_limits *l) {
  l->max_bulk = LP_RESP_DEFAULT_MAX_BULK;
  l->max_multibulk = LP_RESP_DEFAULT_MAX_MULTIBULK;
  l->max_inline = LP_RESP_MAX_INLINE;
}

// A decimal integer as Redis's string2ll reads one: optional '-', no '+', no
// leading zeros, no spaces, fits in int64.
bool lp_resp_to_ll(const char *p, size_t n, int64_t *out) {
  if (n == 0 || n > 20) return false;
  size_t i = 0;
  bool neg = false;
  if (p[0] == '-') {
    neg = true;
    if (++i == n) return false;
  }
  if (p[i] == '0') {
    if (n - i > 1 || neg) return false;
    *out = 0;
    return true;
  }
  uint64_t v = 0;
  bool small = n - i <= 18; // 18 digits cannot overflow: no check per digit (lengths are short)
  for (; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return false;
    uint64_t d = (uint64_t)(p[i] - '0');
    if (!small && v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return false;
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return true;
}

static const char *find_cr(const char *p, size_t n) { return memchr(p, '\r', n); }

// ---- requests ------------------------------------------------------------------------------

void lp_resp_req_init(lp_resp_req *r, const lp_resp_limits *lim) {
  memset(r, 0, sizeof *r);
  if (lim) r->lim = *lim;
  else lp_resp_limits_default(&r->lim);
}

void lp_resp_req_free(lp_resp_req *r) {
  free(r->args);
  free(r->offs);
  free(r->lens);
  free(r->scratch);
  memset(r, 0, sizeof *r);
}

static int req_error(lp_resp_req *r, const char *fmt, int c) {
  snprintf(r->err, sizeof r->err, fmt, c);
  r->want = 0;
  return LP_RESP_ERROR;
}

static bool grow_elems(lp_resp_req *r, size_t n) {
  if (n <= r->cap) return true;
  size_t cap = r->cap ? r->cap : 8;
  while (cap < n) cap *= 2;
  size_t *o = realloc(r->offs, cap * sizeof *o);
  if (!o) return false;
  r->offs = o;
  size_t *l = realloc(r->lens, cap * sizeof *l);
  if (!l) return false;
  r->lens = l;
  lp_resp_arg *a = realloc(r->args, cap * sizeof *a);
  if (!a) return false;
  r->args = a;
  r->cap = cap;
  return true;
}

static bool is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Split an inline line as Redis's sdssplitargs does (the line ends at its
// first NUL, as the C string Redis makes of it). Arguments go to scratch.
static int split_inline(lp_resp_req *r, const char *line, size_t n) {
  const char *nul = memchr(line, 0, n);
  if (nul) n = (size_t)(nul - line);
  if (n + 1 > r->scap) {
    char *s = realloc(r->scratch, n + 1);
    if (!s) return LP_RESP_NOMEM;
    r->scratch = s;
    r->scap = n + 1;
  }
  size_t i = 0, out = 0, argc = 0;
  while (1) {
    while (i < n && is_space((unsigned char)line[i])) i++;
    if (i >= n) break;
    size_t start = out;
    bool inq = false, insq = false, done = false;
    while (!done) {
      int c = i < n ? (unsigned char)line[i] : 0;
      int c1 = i + 1 < n ? (unsigned char)line[i + 1] : 0;
      if (inq) {
        if (c == '\\' && c1 == 'x' && i + 3 < n && hexval((unsigned char)line[i + 2]) >= 0 &&
            hexval((unsigned char)line[i + 3]) >= 0) {
          r->scratch[out++] = (char)(hexval((unsigned char)line[i + 2]) * 16 + hexval((unsigned char)line[i + 3]));
          i += 3;
        } else if (c == '\\' && c1) {
          i++;
          int e = c1;
          switch (c1) {
          case 'n': e = '\n'; break;
          case 'r': e = '\r'; break;
          case 't': e = '\t'; break;
          case 'b': e = '\b'; break;
          case 'a': e = '\a'; break;
          default: break;
          }
          r->scratch[out++] = (char)e;
        } else if (c == '"') {
          if (c1 && !is_space(c1)) return req_error(r, "Protocol error: unbalanced quotes in request%c", 0);
          done = true;
        } else if (!c) {
          return req_error(r, "Protocol error: unbalanced quotes in request%c", 0);
        } else {
          r->scratch[out++] = (char)c;
        }
      } else if (insq) {
        if (c == '\\' && c1 == '\'') {
          i++;
          r->scratch[out++] = '\'';
        } else if (c == '\'') {
          if (c1 && !is_space(c1)) return req_error(r, "Protocol error: unbalanced quotes in request%c", 0);
          done = true;
        } else if (!c) {
          return req_error(r, "Protocol error: unbalanced quotes in request%c", 0);
        } else {
          r->scratch[out++] = (char)c;
        }
      } else {
        switch (c) {
        case ' ': case '\n': case '\r': case '\t': case 0: done = true; break;
        case '"': inq = true; break;
        case '\'': insq = true; break;
        default: r->scratch[out++] = (char)c; break;
        }
      }
      if (i < n) i++;
    }
    if (!grow_elems(r, argc + 1)) return LP_RESP_NOMEM;
    r->offs[argc] = start;
    r->lens[argc] = out - start;
    argc++;
  }
  for (size_t k = 0; k < argc; k++) r->args[k] = (lp_resp_arg){r->scratch + r->offs[k], r->lens[k]};
  r->nargs = argc;
  return LP_RESP_DONE;
}

static int parse_inline(lp_resp_req *r, const char *buf, size_t len, size_t *used) {
  // The limit applies wherever the line ends, so that the answer does not
  // depend on how the bytes were split into reads.
  const char *nl = memchr(buf, '\n', len);
  if ((nl ? (size_t)(nl - buf) : len) > r->lim.max_inline)
    return req_error(r, "Protocol error: too big inline request%c", 0);
  if (!nl) return LP_RESP_NEED;
  size_t n = (size_t)(nl - buf);
  if (n && buf[n - 1] == '\r') n--;
  int rc = split_inline(r, buf, n);
  if (rc != LP_RESP_DONE) return rc;
  r->inline_cmd = true;
  *used = (size_t)(nl - buf) + 1;
  return LP_RESP_DONE;
}

int lp_resp_req_parse(lp_resp_req *r, const char *buf, size_t len, size_t *used) {
  *used = 0;
  r->nargs = 0;
  r->inline_cmd = false;
  if (len == 0) return LP_RESP_NEED;
  if (r->want == 0) {
    if (buf[0] != '*') return parse_inline(r, buf, len, used);
    const char *cr = find_cr(buf, len);
    if ((cr ? (size_t)(cr - buf) : len) > r->lim.max_inline)
      return req_error(r, "Protocol error: too big mbulk count string%c", 0);
    if (!cr) return LP_RESP_NEED;
    if ((size_t)(cr - buf) + 2 > len) return LP_RESP_NEED; // the byte after CR (Redis skips it unseen)
    int64_t ll;
    if (!lp_resp_to_ll(buf + 1, (size_t)(cr - buf - 1), &ll) || ll > INT32_MAX || (ll > 0 && (uint64_t)ll > r->lim.max_multibulk))
      return req_error(r, "Protocol error: invalid multibulk length%c", 0);
    size_t pos = (size_t)(cr - buf) + 2;
    if (ll <= 0) { // "*0", "*-1": nothing to do, as Redis
      *used = pos;
      return LP_RESP_DONE;
    }
    if (!grow_elems(r, (size_t)ll < 1024 ? (size_t)ll : 1024)) return LP_RESP_NOMEM;
    r->want = (size_t)ll;
    r->pos = pos;
    r->nargs = 0;
  }
  while (r->got < r->want) {
    size_t pos = r->pos;
    if (pos >= len) return LP_RESP_NEED;
    const char *cr = find_cr(buf + pos, len - pos);
    if ((cr ? (size_t)(cr - buf) - pos : len - pos) > r->lim.max_inline)
      return req_error(r, "Protocol error: too big bulk count string%c", 0);
    if (!cr) return LP_RESP_NEED;
    if ((size_t)(cr - buf) + 2 > len) return LP_RESP_NEED;
    if (buf[pos] != '$') return req_error(r, "Protocol error: expected '$', got '%c'", (unsigned char)buf[pos]);
    int64_t ll;
    if (!lp_resp_to_ll(buf + pos + 1, (size_t)(cr - buf - pos - 1), &ll) || ll < 0 || (uint64_t)ll > r->lim.max_bulk)
      return req_error(r, "Protocol error: invalid bulk length%c", 0);
    size_t start = (size_t)(cr - buf) + 2;
    if (len - start < (size_t)ll + 2) return LP_RESP_NEED; // the bulk and its CRLF (Redis skips those two unseen)
    if (!grow_elems(r, r->got + 1)) return LP_RESP_NOMEM;
    r->offs[r->got] = start;
    r->lens[r->got] = (size_t)ll;
    r->got++;
    r->pos = start + (size_t)ll + 2;
  }
  for (size_t k = 0; k < r->got; k++) r->args[k] = (lp_resp_arg){buf + r->offs[k], r->lens[k]};
  r->nargs = r->got;
  *used = r->pos;
  r->want = r->got = r->pos = 0;
  return LP_RESP_DONE;
}

// ---- replies --------------------------------------------------------------------------------

void lp_resp_reply_init(lp_resp_reply *r, const lp_resp_limits *lim) {
  memset(r, 0, sizeof *r);
  if (lim) r->lim = *lim;
  else lp_resp_limits_default(&r->lim);
}

void lp_resp_reply_free(lp_resp_reply *r) {
  free(r->nodes);
  memset(r, 0, sizeof *r);
}

typedef struct rcur {
  lp_resp_reply *r;
  const char *buf;
  size_t len, pos;
} rcur;

static int rep_error(lp_resp_reply *r, const char *fmt, int c) {
  snprintf(r->err, sizeof r->err, fmt, c);
  return LP_RESP_ERROR;
}

static lp_resp_node *new_node(rcur *c) {
  lp_resp_reply *r = c->r;
  if (r->nnodes == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    lp_resp_node *n = realloc(r->nodes, cap * sizeof *n);
    if (!n) return NULL;
    r->nodes = n;
    r->cap = cap;
  }
  lp_resp_node *n = &r->nodes[r->nnodes++];
  memset(n, 0, sizeof *n);
  return n;
}

// The line after the type byte: [*p, *p + *n) up to CRLF. NEED, ERROR or DONE.
static int line(rcur *c, const char **p, size_t *n) {
  size_t start = c->pos + 1;
  size_t avail = c->len - start;
  const char *cr = find_cr(c->buf + start, avail);
  if ((cr ? (size_t)(cr - c->buf) - start : avail) > c->r->lim.max_inline)
    return rep_error(c->r, "Protocol error: too big reply line%c", 0);
  if (!cr) return LP_RESP_NEED;
  size_t end = (size_t)(cr - c->buf);
  if (end + 1 >= c->len) return LP_RESP_NEED;
  if (c->buf[end + 1] != '\n') return rep_error(c->r, "Protocol error: expected LF after CR%c", 0);
  *p = c->buf + start;
  *n = end - start;
  c->pos = end + 2;
  return LP_RESP_DONE;
}

static int value(rcur *c, int depth) {
  if (depth > LP_RESP_MAX_DEPTH) return rep_error(c->r, "Protocol error: nested deeper than %d", LP_RESP_MAX_DEPTH);
  if (c->pos >= c->len) return LP_RESP_NEED;
  int type = (unsigned char)c->buf[c->pos];
  const char *p;
  size_t n;
  int rc;
  switch (type) {
  case '+': case '-': case ':': case ',': case '#': case '_': case '(': {
    if ((rc = line(c, &p, &n)) != LP_RESP_DONE) return rc;
    lp_resp_node *nd = new_node(c);
    if (!nd) return LP_RESP_NOMEM;
    nd->type = type;
    nd->p = p;
    nd->len = n;
    if (type == ':' && !lp_resp_to_ll(p, n, &nd->i)) return rep_error(c->r, "Protocol error: invalid integer%c", 0);
    if (type == '#') {
      if (n != 1 || (p[0] != 't' && p[0] != 'f')) return rep_error(c->r, "Protocol error: invalid boolean%c", 0);
      nd->i = p[0] == 't';
    }
    if (type == '_' && n != 0) return rep_error(c->r, "Protocol error: invalid null%c", 0);
    if (type == ',') {
      char tmp[64];
      if (n == 0 || n >= sizeof tmp) return rep_error(c->r, "Protocol error: invalid double%c", 0);
      memcpy(tmp, p, n);
      tmp[n] = 0;
      char *end;
      if (strcmp(tmp, "inf") == 0) nd->d = INFINITY;
      else if (strcmp(tmp, "-inf") == 0) nd->d = -INFINITY;
      else if (strcmp(tmp, "nan") == 0) nd->d = NAN;
      else {
        nd->d = strtod(tmp, &end);
        if (*end) return rep_error(c->r, "Protocol error: invalid double%c", 0);
      }
    }
    return LP_RESP_DONE;
  }
  case '$': case '=': case '!': {
    if ((rc = line(c, &p, &n)) != LP_RESP_DONE) return rc;
    int64_t ll;
    if (!lp_resp_to_ll(p, n, &ll) || ll < -1 || (ll >= 0 && (uint64_t)ll > c->r->lim.max_bulk))
      return rep_error(c->r, "Protocol error: invalid bulk length%c", 0);
    lp_resp_node *nd = new_node(c);
    if (!nd) return LP_RESP_NOMEM;
    if (ll == -1) {
      nd->type = LP_RESP_T_NULL;
      return LP_RESP_DONE;
    }
    if (c->len - c->pos < (size_t)ll + 2) return LP_RESP_NEED;
    if (c->buf[c->pos + (size_t)ll] != '\r' || c->buf[c->pos + (size_t)ll + 1] != '\n')
      return rep_error(c->r, "Protocol error: bulk string not followed by CRLF%c", 0);
    nd->type = type;
    nd->p = c->buf + c->pos;
    nd->len = (size_t)ll;
    if (type == '=') { // "txt:" in front
      if (ll < 4 || nd->p[3] != ':') return rep_error(c->r, "Protocol error: invalid verbatim string%c", 0);
      nd->p += 4;
      nd->len -= 4;
    }
    c->pos += (size_t)ll + 2;
    return LP_RESP_DONE;
  }
  case '*': case '%': case '~': case '>': case '|': {
    if ((rc = line(c, &p, &n)) != LP_RESP_DONE) return rc;
    int64_t ll;
    if (!lp_resp_to_ll(p, n, &ll) || ll < -1 || (ll >= 0 && (uint64_t)ll > c->r->lim.max_multibulk))
      return rep_error(c->r, "Protocol error: invalid multibulk length%c", 0);
    size_t at = c->r->nnodes;
    lp_resp_node *nd = new_node(c);
    if (!nd) return LP_RESP_NOMEM;
    if (ll == -1) {
      if (type != '*') return rep_error(c->r, "Protocol error: invalid multibulk length%c", 0);
      nd->type = LP_RESP_T_NULL;
      return LP_RESP_DONE;
    }
    nd->type = type;
    nd->i = ll;
    size_t elems = (size_t)ll * ((type == '%' || type == '|') ? 2 : 1);
    for (size_t k = 0; k < elems; k++)
      if ((rc = value(c, depth + 1)) != LP_RESP_DONE) return rc;
    (void)at;
    if (type == '|') return value(c, depth); // the value the attributes belong to
    return LP_RESP_DONE;
  }
  default:
    return rep_error(c->r, "Protocol error: unexpected reply type byte '%c'", type >= 32 && type < 127 ? type : '?');
  }
}

int lp_resp_reply_parse(lp_resp_reply *r, const char *buf, size_t len, size_t *used) {
  *used = 0;
  r->nnodes = 0;
  rcur c = {r, buf, len, 0};
  int rc = value(&c, 0);
  if (rc == LP_RESP_DONE) *used = c.pos;
  else if (rc == LP_RESP_NEED) r->nnodes = 0;
  return rc;
}

// ---- encoding -------------------------------------------------------------------------------

void lp_resp_out_free(lp_resp_out *o) {
  free(o->data);
  memset(o, 0, sizeof *o);
}

void lp_resp_put_raw(lp_resp_out *o, const void *p, size_t n) {
  if (o->oom) return;
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap : 64;
    while (cap < o->len + n) cap *= 2;
    char *d = realloc(o->data, cap);
    if (!d) {
      o->oom = true;
      return;
    }
    o->data = d;
    o->cap = cap;
  }
  if (n) memcpy(o->data + o->len, p, n);
  o->len += n;
}

size_t lp_resp_fmt_int(char *dst, int64_t v) {
  char tmp[LP_RESP_INT_MAX];
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  size_t k = 0;
  if (v < 0) dst[k++] = '-';
  while (n) dst[k++] = tmp[--n];
  return k;
}

void lp_resp_put_int(lp_resp_out *o, char type, int64_t v) {
  char tmp[LP_RESP_INT_MAX + 3];
  tmp[0] = type;
  size_t n = 1 + lp_resp_fmt_int(tmp + 1, v);
  tmp[n++] = '\r';
  tmp[n++] = '\n';
  lp_resp_put_raw(o, tmp, n);
}

void lp_resp_put_bulk(lp_resp_out *o, const char *p, size_t n) {
  char tmp[LP_RESP_INT_MAX + 3];
  tmp[0] = '$';
  size_t h = 1 + lp_resp_fmt_int(tmp + 1, (int64_t)n);
  tmp[h++] = '\r';
  tmp[h++] = '\n';
  lp_resp_put_raw(o, tmp, h);
  lp_resp_put_raw(o, p, n);
  lp_resp_put_raw(o, "\r\n", 2);
}

void lp_resp_put_line(lp_resp_out *o, char type, const char *p, size_t n) {
  lp_resp_put_raw(o, &type, 1);
  size_t at = o->len;
  lp_resp_put_raw(o, p, n);
  if (!o->oom)
    for (size_t i = at; i < o->len; i++)
      if (o->data[i] == '\r' || o->data[i] == '\n') o->data[i] = ' '; // a line must stay one line
  lp_resp_put_raw(o, "\r\n", 2);
}

void lp_resp_put_double(lp_resp_out *o, double v) {
  char tmp[64];
  int n;
  if (isinf(v)) n = snprintf(tmp, sizeof tmp, ",%s\r\n", v > 0 ? "inf" : "-inf");
  else if (isnan(v)) n = snprintf(tmp, sizeof tmp, ",nan\r\n");
  else n = snprintf(tmp, sizeof tmp, ",%.17g\r\n", v);
  lp_resp_put_raw(o, tmp, (size_t)n);
}
