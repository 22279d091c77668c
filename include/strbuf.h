/* strbuf.h - a growable byte buffer for building response bodies. */
#ifndef INFERD_STRBUF_H
#define INFERD_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *data;
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed: the content is incomplete */
};

/* Make room for extra more bytes. Returns 0, or -1 (and sets failed) when
 * memory runs out. */
int strbuf_reserve(struct strbuf *sb, size_t extra);
/* Append bytes / a NUL-terminated string / formatted text. Return 0 or -1. */
int strbuf_append(struct strbuf *sb, const void *bytes, size_t n);
int strbuf_puts(struct strbuf *sb, const char *s);
int strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string literal, with quotes and escapes. */
int strbuf_json_string(struct strbuf *sb, const char *s);
/* Hand the buffer to the caller (NUL-terminated) and reset sb. */
char *strbuf_detach(struct strbuf *sb, size_t *len);
void strbuf_free(struct strbuf *sb);

#endif
