/* log.c - buffered, asynchronous log lines (see log.h). The buffer and its
 * writer thread are the process's logging state, set up once by log_start. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "strbuf.h"

#define LOG_BUFFER_BYTES (1 << 20)

static struct {
    enum log_level level;
    enum log_format format;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t writer;
    bool running, stopping;
    char buffer[LOG_BUFFER_BYTES];
    size_t used;
    atomic_uint_least64_t dropped;
} logger = {
    .level = LOG_INFO,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w <= 0)
            return; /* stdout is gone: nothing sensible left to do */
        p += w;
        n -= (size_t)w;
    }
}

/* After a wake-up the writer lets lines gather this long before one
 * write(), so that a busy server pays one wake-up and one system call per
 * many lines rather than per line. */
#define LOG_GATHER_NS 5000000L

static void *writer_main(void *arg)
{
    static char out[LOG_BUFFER_BYTES];
    (void)arg;
    pthread_mutex_lock(&logger.lock);
    for (;;) {
        while (logger.used == 0 && !logger.stopping)
            pthread_cond_wait(&logger.wake, &logger.lock);
        if (logger.used == 0 && logger.stopping)
            break;
        if (!logger.stopping && logger.used < LOG_BUFFER_BYTES / 2) {
            pthread_mutex_unlock(&logger.lock);
            struct timespec gather = {0, LOG_GATHER_NS};
            nanosleep(&gather, NULL);
            pthread_mutex_lock(&logger.lock);
        }
        size_t n = logger.used;
        memcpy(out, logger.buffer, n);
        logger.used = 0;
        pthread_mutex_unlock(&logger.lock);
        write_all(out, n);
        pthread_mutex_lock(&logger.lock);
    }
    pthread_mutex_unlock(&logger.lock);
    return NULL;
}

int log_start(enum log_level level, enum log_format format)
{
    logger.level = level;
    logger.format = format;
    logger.stopping = false;
    if (pthread_create(&logger.writer, NULL, writer_main, NULL) != 0)
        return -1;
    logger.running = true;
    return 0;
}

void log_stop(void)
{
    if (!logger.running)
        return;
    pthread_mutex_lock(&logger.lock);
    logger.stopping = true;
    pthread_cond_signal(&logger.wake);
    pthread_mutex_unlock(&logger.lock);
    pthread_join(logger.writer, NULL);
    logger.running = false;
}

int log_enabled(enum log_level level)
{
    return level >= logger.level;
}

uint64_t log_dropped_lines(void)
{
    return atomic_load(&logger.dropped);
}

static void emit(const char *line, size_t n)
{
    if (!logger.running) {
        write_all(line, n);
        return;
    }
    pthread_mutex_lock(&logger.lock);
    if (logger.used + n > sizeof logger.buffer) {
        atomic_fetch_add(&logger.dropped, 1);
    } else {
        /* The writer sleeps only on an empty buffer: wake it only then. */
        bool was_empty = logger.used == 0;
        memcpy(logger.buffer + logger.used, line, n);
        logger.used += n;
        if (was_empty)
            pthread_cond_signal(&logger.wake);
    }
    pthread_mutex_unlock(&logger.lock);
}

/* Append n's decimal digits, at least width of them (zero-padded). */
static void append_uint(struct strbuf *sb, uint64_t n, int width)
{
    char digits[24];
    int i = (int)sizeof digits;
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0 || (int)sizeof digits - i < width);
    strbuf_append(sb, digits + i, sizeof digits - (size_t)i);
}

/* "2026-11-27T16:40:01.123Z". The part up to the seconds is formatted once
 * per second per thread. */
static void append_timestamp(struct strbuf *sb)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[32];
    static _Thread_local size_t cached_len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        cached_len = strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    strbuf_append(sb, cached, cached_len);
    strbuf_puts(sb, ".");
    append_uint(sb, (uint64_t)ts.tv_nsec / 1000000u, 3);
    strbuf_puts(sb, "Z");
}

/* A duration in ns as milliseconds with 3 decimals (as "%.3f" prints it,
 * rounded to the microsecond). */
static void append_ms(struct strbuf *sb, int64_t ns)
{
    if (ns < 0) {
        strbuf_printf(sb, "%.3f", (double)ns / 1e6);
        return;
    }
    uint64_t us = ((uint64_t)ns + 500u) / 1000u;
    append_uint(sb, us / 1000u, 1);
    strbuf_puts(sb, ".");
    append_uint(sb, us % 1000u, 3);
}

/* The length of the well-formed UTF-8 sequence at p (2 to 4), or 0 when
 * p[0] does not start one (a stray continuation, an overlong form, a
 * surrogate, past U+10FFFF, or cut short). */
static size_t utf8_sequence(const unsigned char *p)
{
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* Whether a text-format value must be quoted: empty, or holding a space,
 * '"', '=', '\\', a control byte or anything but ASCII. */
static bool needs_quotes(const char *s)
{
    if (s[0] == '\0')
        return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7F || *p == '"' || *p == '=' || *p == '\\')
            return true;
    return false;
}

int log_append_escaped(struct strbuf *sb, const char *s, bool quoted)
{
    int rc = quoted ? strbuf_puts(sb, "\"") : 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && rc == 0; p++) {
        /* A run of printable ASCII that needs nothing goes in at once. */
        const unsigned char *run = p;
        while (*run >= 0x20 && *run < 0x7F && *run != '"' && *run != '\\')
            run++;
        if (run > p) {
            rc = strbuf_append(sb, p, (size_t)(run - p));
            p = run - 1;
            continue;
        }
        const char *out = NULL;
        char esc[8];
        switch (*p) {
        case '"': out = quoted ? "\\\"" : NULL; break;
        case '\\': out = quoted ? "\\\\" : NULL; break;
        case '\n': out = "\\n"; break;
        case '\r': out = "\\r"; break;
        case '\t': out = "\\t"; break;
        default:
            if (*p < 0x20 || *p == 0x7F) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                out = esc;
            } else if (*p >= 0x80) {
                size_t n = utf8_sequence(p);
                if (n > 0) {
                    rc = strbuf_append(sb, p, n);
                    p += n - 1;
                    continue;
                }
                /* Not UTF-8: the byte as the code point of the same value. */
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                out = esc;
            }
        }
        rc = out ? strbuf_puts(sb, out) : strbuf_append(sb, p, 1);
    }
    if (rc == 0 && quoted)
        rc = strbuf_puts(sb, "\"");
    return rc;
}

static void append_value(struct strbuf *sb, const struct log_field *f, bool json)
{
    const char *s = f->str ? f->str : "";
    switch (f->type) {
    case LOG_STR: log_append_escaped(sb, s, json || needs_quotes(s)); break;
    case LOG_INT:
        if (f->num < 0)
            strbuf_puts(sb, "-");
        append_uint(sb, f->num < 0 ? 0u - (uint64_t)f->num : (uint64_t)f->num, 1);
        break;
    case LOG_MS: append_ms(sb, f->num); break;
    }
}

void log_render(struct strbuf *sb, enum log_format format, enum log_level level, const char *msg,
                const struct log_field *fields, int n_fields)
{
    bool json = format == LOG_FORMAT_JSON;
    if (json) {
        strbuf_puts(sb, "{\"ts\":\"");
        append_timestamp(sb);
        strbuf_puts(sb, "\",\"level\":\"");
        strbuf_puts(sb, log_level_name(level));
        strbuf_puts(sb, "\",\"msg\":");
        log_append_escaped(sb, msg, true);
    } else {
        append_timestamp(sb);
        strbuf_printf(sb, " %-5s ", log_level_name(level));
        log_append_escaped(sb, msg, false); /* free text: control bytes escaped */
    }
    for (int i = 0; i < n_fields; i++) {
        if (json) {
            strbuf_puts(sb, ",");
            log_append_escaped(sb, fields[i].key, true);
            strbuf_puts(sb, ":");
        } else {
            strbuf_puts(sb, " ");
            log_append_escaped(sb, fields[i].key, false);
            strbuf_puts(sb, "=");
        }
        append_value(sb, &fields[i], json);
    }
    strbuf_puts(sb, json ? "}\n" : "\n");
}

void log_fields(enum log_level level, const char *msg, const struct log_field *fields, int n_fields)
{
    if (!log_enabled(level))
        return;
    struct strbuf sb = {0};
    strbuf_reserve(&sb, 512); /* most lines: one allocation */
    log_render(&sb, logger.format, level, msg, fields, n_fields);
    if (!sb.failed)
        emit(sb.data, sb.len);
    strbuf_free(&sb);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    log_fields(level, text, NULL, 0);
}
