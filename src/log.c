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
        memcpy(logger.buffer + logger.used, line, n);
        logger.used += n;
        pthread_cond_signal(&logger.wake);
    }
    pthread_mutex_unlock(&logger.lock);
}

static void timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void append_value(struct strbuf *sb, const struct log_field *f, bool json)
{
    switch (f->type) {
    case LOG_STR:
        if (json)
            strbuf_json_string(sb, f->str ? f->str : "");
        else if (f->str && f->str[0] && strpbrk(f->str, " \"=") == NULL)
            strbuf_puts(sb, f->str);
        else
            strbuf_json_string(sb, f->str ? f->str : "");
        break;
    case LOG_INT: strbuf_printf(sb, "%lld", (long long)f->num); break;
    case LOG_MS: strbuf_printf(sb, "%.3f", (double)f->num / 1e6); break;
    }
}

void log_fields(enum log_level level, const char *msg, const struct log_field *fields, int n_fields)
{
    if (!log_enabled(level))
        return;
    char ts[40];
    struct strbuf sb = {0};
    bool json = logger.format == LOG_FORMAT_JSON;
    timestamp(ts, sizeof ts);
    if (json) {
        strbuf_printf(&sb, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, log_level_name(level));
        strbuf_json_string(&sb, msg);
    } else {
        strbuf_printf(&sb, "%s %-5s %s", ts, log_level_name(level), msg);
    }
    for (int i = 0; i < n_fields; i++) {
        if (json) {
            strbuf_puts(&sb, ",");
            strbuf_json_string(&sb, fields[i].key);
            strbuf_puts(&sb, ":");
        } else {
            strbuf_printf(&sb, " %s=", fields[i].key);
        }
        append_value(&sb, &fields[i], json);
    }
    strbuf_puts(&sb, json ? "}\n" : "\n");
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
