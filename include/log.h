/* log.h - leveled log lines (text or JSON) written to stdout by a background
 * thread, so that a slow stdout never blocks a worker: when the buffer is
 * full, lines are dropped and counted instead. */
#ifndef INFERD_LOG_H
#define INFERD_LOG_H

#include <stdint.h>

#include "config.h"

/* One key/value field of a structured log line. */
struct log_field {
    const char *key;
    enum { LOG_STR, LOG_INT, LOG_MS } type;
    const char *str;
    int64_t num; /* LOG_INT: the value; LOG_MS: nanoseconds, printed as ms */
};

/* Start the writer thread. Returns 0 or -1 (then lines go straight to
 * stdout). Call once, before other threads log. */
int log_start(enum log_level level, enum log_format format);
/* Flush what is buffered and stop the writer thread. */
void log_stop(void);

int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A structured line: msg plus fields, rendered as key=value or JSON. */
void log_fields(enum log_level level, const char *msg, const struct log_field *fields,
                int n_fields);
uint64_t log_dropped_lines(void);

#endif
