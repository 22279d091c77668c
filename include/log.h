/* log.h - leveled log lines (text or JSON) written to stdout by a background
 * thread, so that a slow stdout never blocks a worker: when the buffer is
 * full, lines are dropped and counted instead. */
#ifndef INFERD_LOG_H
#define INFERD_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "strbuf.h"

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

/* Every string in a line (the message, keys, values) goes through
 * log_append_escaped, so that no client byte reaches the log raw: control
 * bytes (newline, tab, escape, DEL...) become \\n, \\t or \\u00XX, bytes that
 * are not well-formed UTF-8 become \\u00XX, and quoted adds the quotes and
 * escapes '"' and '\\' as JSON does. A text-format value is quoted when it
 * is empty or holds a space, '"', '=', '\\', a control byte or non-ASCII.
 * Returns 0, or -1 when out of memory (sb->failed is set). */
int log_append_escaped(struct strbuf *sb, const char *s, bool quoted);
/* Append one whole line, as log_fields writes it, in format. */
void log_render(struct strbuf *sb, enum log_format format, enum log_level level, const char *msg,
                const struct log_field *fields, int n_fields);

#endif
