/* encoding.h - HTTP content codings (zlib): gzip and deflate request bodies
 * inflated as they arrive, with a cap on the inflated size that stops a zip
 * bomb as soon as it is passed, and gzip for replies. */
#ifndef INFERD_ENCODING_H
#define INFERD_ENCODING_H

#include <stdbool.h>
#include <stddef.h>

enum encoding { ENCODING_IDENTITY, ENCODING_GZIP, ENCODING_DEFLATE };

/* Read a Content-Encoding value: "gzip" (or "x-gzip"), "deflate" or
 * "identity", any case, blanks around ignored. Returns 0 with *out set, or
 * -1 when it names another coding or a list of them. */
int encoding_parse(const char *value, enum encoding *out);

/* The coding's name, e.g. "gzip". */
const char *encoding_name(enum encoding coding);

/* Whether an Accept-Encoding value takes gzip: "gzip", "x-gzip" or "*"
 * listed without q=0 (and gzip not refused by its own q=0). */
bool encoding_accepts_gzip(const char *accept_encoding);

enum inflate_status {
    INFLATE_OK = 0,
    INFLATE_TOO_BIG = -1,   /* the inflated body passed the limit */
    INFLATE_CORRUPT = -2,   /* not a valid stream of its coding */
    INFLATE_NO_MEMORY = -3, /* out of memory */
};

/* A body being inflated (opaque). */
struct inflater;

/* A decoder for a body in coding (gzip or deflate) whose inflated size may
 * not pass limit bytes. "deflate" is the zlib format (RFC 9110); a raw
 * deflate stream, which some clients send, is recognised by its first
 * bytes. Returns NULL when out of memory or for ENCODING_IDENTITY. */
struct inflater *inflater_new(enum encoding coding, size_t limit);

/* Inflate n more bytes of the body, appending the output to *buf (*len
 * bytes used of *cap, grown with realloc, kept NUL-terminated; *buf may
 * start NULL). Stops as soon as the output passes the limit. Returns
 * INFLATE_OK, or another inflate_status with err set; after an error the
 * inflater takes nothing more. */
int inflater_feed(struct inflater *z, const void *data, size_t n, char **buf, size_t *len,
                  size_t *cap, char *err, size_t err_len);

/* The body has ended. Returns INFLATE_OK when its coded stream ended too,
 * else INFLATE_CORRUPT with err set (a truncated or empty body). */
int inflater_finish(struct inflater *z, char *err, size_t err_len);

void inflater_free(struct inflater *z);

/* Compress len bytes of data as one gzip member at zlib level level
 * (1 fastest .. 9 smallest). Returns 0 with *out (malloc'd) and *out_len
 * set, or -1 when out of memory or zlib fails. */
int encoding_gzip(const void *data, size_t len, int level, char **out, size_t *out_len);

#endif
