// log.c: formats log lines and writes each with one write(2), so lines from
// several worker threads never interleave. A line longer than
// LP_LOG_LINE_MAX is cut; in JSON the cut falls inside a string, which is
// then closed, so every line still parses.
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int level = LP_LOG_INFO;
static atomic_int format = LP_LOG_TEXT;
static _Thread_local int worker_id = 0;
static const char *const names[] = {"debug", "info", "warn", "error", "off"};
static const char *const formats[] = {"text", "json"};

void lp_log_set_level(int l) { atomic_store(&level, l); }
int lp_log_level(void) { return atomic_load_explicit(&level, memory_order_relaxed); }
void lp_log_set_format(int f) { atomic_store(&format, f); }
int lp_log_format(void) { return atomic_load_explicit(&format, memory_order_relaxed); }
void lp_log_set_worker(int id) { worker_id = id; }
const char *lp_log_level_name(int l) { return l >= 0 && l <= LP_LOG_OFF ? names[l] : "?"; }

int lp_log_parse_level(const char *name) {
  for (int i = 0; i <= LP_LOG_OFF; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

int lp_log_parse_format(const char *name) {
  for (int i = 0; i < (int)LP_ARRAY_LEN(formats); i++)
    if (strcmp(name, formats[i]) == 0) return i;
  return -1;
}

// A line being built; room is kept at the end for the closing bytes.
#define CLOSING_ROOM 8
typedef struct {
  char buf[LP_LOG_LINE_MAX];
  size_t n;
  bool cut; // something did not fit
} line;

static void add(line *l, const char *s, size_t len) {
  size_t room = sizeof l->buf - CLOSING_ROOM - l->n;
  if (len > room) {
    len = room;
    l->cut = true;
  }
  memcpy(l->buf + l->n, s, len);
  l->n += len;
}
static void adds(line *l, const char *s) { add(l, s, strlen(s)); }

// s as the inside of a JSON string: quotes, backslashes and control bytes
// escaped; other bytes as they are (a message is UTF-8 or it is the app's).
static void add_json(line *l, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c;
      add(l, esc, 2);
    } else if (c == '\n') {
      add(l, "\\n", 2);
    } else if (c == '\t') {
      add(l, "\\t", 2);
    } else if (c < 0x20 || c == 0x7f) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      add(l, esc, 6);
    } else {
      add(l, (const char *)&c, 1);
    }
    if (l->n >= sizeof l->buf - CLOSING_ROOM - 6) { // no half escape at the cut
      l->cut = s[1] != 0;
      break;
    }
  }
}

// A text field value: as it is, or quoted when it has spaces, quotes or '='.
static void add_text_value(line *l, const char *v) {
  if (*v && !strpbrk(v, " \t\"=\n")) {
    adds(l, v);
    return;
  }
  add(l, "\"", 1);
  add_json(l, v);
  add(l, "\"", 1);
}

static void emit(int lvl, uint64_t channel_id, const lp_log_field *fields, size_t nfields, const char *fmt, va_list ap) {
  char msg[LP_LOG_LINE_MAX];
  vsnprintf(msg, sizeof msg, fmt, ap);
  line l;
  l.n = 0;
  l.cut = false;
  char stamp[48], num[32];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t k = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(stamp + k, sizeof stamp - k, ".%03ldZ", ts.tv_nsec / 1000000L);
  if (lp_log_format() == LP_LOG_JSON) {
    adds(&l, "{\"time\":\"");
    adds(&l, stamp);
    adds(&l, "\",\"level\":\"");
    adds(&l, names[lvl]);
    snprintf(num, sizeof num, "\",\"worker\":%d,\"channel\":", worker_id);
    adds(&l, num);
    if (channel_id) snprintf(num, sizeof num, "%llu", (unsigned long long)channel_id);
    else snprintf(num, sizeof num, "null");
    adds(&l, num);
    adds(&l, ",\"message\":\"");
    add_json(&l, msg);
    adds(&l, "\"");
    // A cut inside the fields goes back to the last whole field (or to no
    // fields at all); a cut before them leaves a string open, closed below.
    bool cut_in_fields = false;
    if (nfields && !l.cut) {
      size_t before = l.n; // no fields at all
      adds(&l, ",\"fields\":{");
      size_t good = l.cut ? before : l.n; // where the last whole field (or the "{") ends
      for (size_t i = 0; i < nfields && !l.cut; i++) {
        adds(&l, i ? ",\"" : "\"");
        add_json(&l, fields[i].key);
        adds(&l, "\":");
        if (fields[i].raw) {
          adds(&l, fields[i].value);
        } else {
          adds(&l, "\"");
          add_json(&l, fields[i].value);
          adds(&l, "\"");
        }
        if (!l.cut) good = l.n;
      }
      if (!l.cut) adds(&l, "}");
      if (l.cut) {
        cut_in_fields = true;
        l.n = good;
        if (good != before) l.buf[l.n++] = '}';
      }
    }
    if (l.cut && !cut_in_fields) { // cut in the message: close its string
      bool in_string = false;
      for (size_t i = 0; i < l.n; i++) {
        if (l.buf[i] == '\\') i++;
        else if (l.buf[i] == '"') in_string = !in_string;
      }
      if (in_string) l.buf[l.n++] = '"';
    }
    l.buf[l.n++] = '}';
  } else {
    adds(&l, stamp);
    snprintf(num, sizeof num, " %-5s w%d", names[lvl], worker_id);
    adds(&l, num);
    if (channel_id) {
      snprintf(num, sizeof num, " #%llu", (unsigned long long)channel_id);
      adds(&l, num);
    }
    adds(&l, " ");
    adds(&l, msg);
    for (size_t i = 0; i < nfields; i++) {
      adds(&l, " ");
      adds(&l, fields[i].key);
      adds(&l, "=");
      if (fields[i].raw) adds(&l, fields[i].value);
      else add_text_value(&l, fields[i].value);
    }
  }
  l.buf[l.n++] = '\n';
  ssize_t w = write(STDERR_FILENO, l.buf, l.n);
  (void)w;
}

void lp_log(int lvl, uint64_t channel_id, const char *fmt, ...) {
  if (lvl < lp_log_level()) return;
  va_list ap;
  va_start(ap, fmt);
  emit(lvl, channel_id, NULL, 0, fmt, ap);
  va_end(ap);
}

void lp_log_fields(int lvl, uint64_t channel_id, const lp_log_field *fields, size_t nfields, const char *fmt, ...) {
  if (lvl < lp_log_level()) return;
  va_list ap;
  va_start(ap, fmt);
  emit(lvl, channel_id, fields, nfields, fmt, ap);
  va_end(ap);
}
