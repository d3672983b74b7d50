// log.h: one line per event on stderr: time, level, worker id, channel id, text.
// The level is process-wide; the worker id is per thread (set by each loop thread).
#ifndef LP_LOG_H
#define LP_LOG_H

#include "common.h"

enum { LP_LOG_DEBUG, LP_LOG_INFO, LP_LOG_WARN, LP_LOG_ERROR, LP_LOG_OFF };

void lp_log_set_level(int level);
int lp_log_level(void);
// "debug" | "info" | "warn" | "error" | "off" -> level, or -1.
int lp_log_parse_level(const char *name);
const char *lp_log_level_name(int level);
void lp_log_set_worker(int worker_id); // this thread's id in log lines
// channel_id 0: no channel.
void lp_log(int level, uint64_t channel_id, const char *fmt, ...) LP_PRINTF(3, 4);

#define LP_LOG_ENABLED(lvl) ((lvl) >= lp_log_level())

#endif
