// log.h: one line per event on stderr: time, level, worker id, channel id,
// text and optional fields; as text (the default) or as JSON lines.
// The level and the format are process-wide; the worker id is per thread (set
// by each loop thread).
//
//   text  2026-11-30T08:58:42.068Z info  w1 #7 connection closed: reset ... cause=reset
//   json  {"time":"2026-11-30T08:58:42.068Z","level":"info","worker":1,"channel":7,
//          "message":"connection closed: reset ...","fields":{"cause":"reset"}}
#ifndef LP_LOG_H
#define LP_LOG_H

#include "common.h"

enum { LP_LOG_DEBUG, LP_LOG_INFO, LP_LOG_WARN, LP_LOG_ERROR, LP_LOG_OFF };
enum { LP_LOG_TEXT, LP_LOG_JSON };

#define LP_LOG_LINE_MAX 4096 // longer lines are cut (JSON stays well formed)

void lp_log_set_level(int level);
int lp_log_level(void);
// "debug" | "info" | "warn" | "error" | "off" -> level, or -1.
int lp_log_parse_level(const char *name);
const char *lp_log_level_name(int level);
void lp_log_set_format(int format);
int lp_log_format(void);
// "text" | "json" -> format, or -1.
int lp_log_parse_format(const char *name);
void lp_log_set_worker(int worker_id); // this thread's id in log lines

// A field of a log line: value is a string, or with raw a JSON number or
// boolean literal written as it is ("42", "true").
typedef struct lp_log_field {
  const char *key;
  const char *value;
  bool raw;
} lp_log_field;

// channel_id 0: no channel.
void lp_log(int level, uint64_t channel_id, const char *fmt, ...) LP_PRINTF(3, 4);
void lp_log_fields(int level, uint64_t channel_id, const lp_log_field *fields, size_t nfields, const char *fmt, ...)
    LP_PRINTF(5, 6);

#define LP_LOG_ENABLED(lvl) ((lvl) >= lp_log_level())

#endif
