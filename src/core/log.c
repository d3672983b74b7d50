// log.c: formats log lines and writes each with one write(2), so lines from
// several worker threads never interleave.
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int level = LP_LOG_INFO;
static _Thread_local int worker_id = 0;
static const char *const names[] = {"debug", "info", "warn", "error", "off"};

void lp_log_set_level(int l) { atomic_store(&level, l); }
int lp_log_level(void) { return atomic_load_explicit(&level, memory_order_relaxed); }
void lp_log_set_worker(int id) { worker_id = id; }
const char *lp_log_level_name(int l) { return l >= 0 && l <= LP_LOG_OFF ? names[l] : "?"; }

int lp_log_parse_level(const char *name) {
  for (int i = 0; i <= LP_LOG_OFF; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

void lp_log(int lvl, uint64_t channel_id, const char *fmt, ...) {
  if (lvl < lp_log_level()) return;
  char line[1024];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  int k = snprintf(line + n, sizeof line - n, ".%03ldZ %-5s w%d", ts.tv_nsec / 1000000L,
                   names[lvl], worker_id);
  if (k > 0) n += (size_t)k;
  if (channel_id) {
    k = snprintf(line + n, sizeof line - n, " #%llu", (unsigned long long)channel_id);
    if (k > 0) n += (size_t)k;
  }
  line[n++] = ' ';
  va_list ap;
  va_start(ap, fmt);
  k = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  if (k > 0) n += (size_t)k < sizeof line - n - 1 ? (size_t)k : sizeof line - n - 2;
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}
