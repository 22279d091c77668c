/* encoding.c - gzip and deflate bodies with zlib (see encoding.h). */
#include "encoding.h"

#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

struct inflater {
    z_stream zs;
    enum encoding coding;
    size_t limit;
    bool started;          /* inflateInit2 done */
    bool ended;            /* the last stream (member) ended */
    bool broken;           /* an error was reported: take nothing more */
    unsigned char head[2]; /* a deflate body's first bytes, before the format is known */
    int n_head;
};

/* [start, end) of value without surrounding blanks. */
static void trim(const char **start, const char **end)
{
    while (*start < *end && isspace((unsigned char)**start))
        (*start)++;
    while (*end > *start && isspace((unsigned char)(*end)[-1]))
        (*end)--;
}

static bool token_is(const char *p, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

int encoding_parse(const char *value, enum encoding *out)
{
    const char *start = value, *end = value + strlen(value);
    trim(&start, &end);
    size_t n = (size_t)(end - start);
    if (token_is(start, n, "gzip") || token_is(start, n, "x-gzip"))
        *out = ENCODING_GZIP;
    else if (token_is(start, n, "deflate"))
        *out = ENCODING_DEFLATE;
    else if (token_is(start, n, "identity"))
        *out = ENCODING_IDENTITY;
    else
        return -1;
    return 0;
}

const char *encoding_name(enum encoding coding)
{
    switch (coding) {
    case ENCODING_IDENTITY: return "identity";
    case ENCODING_GZIP: return "gzip";
    case ENCODING_DEFLATE: return "deflate";
    }
    return "?";
}

/* Whether the parameters of one Accept-Encoding element, [p, end), set
 * q=0 (q=0, 0.0, 0.00, 0.000). */
static bool q_is_zero(const char *p, const char *end)
{
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        const char *a = p, *b = stop;
        trim(&a, &b);
        if (b - a >= 2 && (a[0] == 'q' || a[0] == 'Q')) {
            const char *v = a + 1;
            while (v < b && isspace((unsigned char)*v))
                v++;
            if (v < b && *v == '=') {
                v++;
                while (v < b && isspace((unsigned char)*v))
                    v++;
                bool zero = v < b && *v == '0';
                for (const char *d = v + 1; zero && d < b; d++)
                    zero = *d == '0' || (*d == '.' && d == v + 1);
                return zero;
            }
        }
        p = semi ? semi + 1 : end;
    }
    return false;
}

bool encoding_accepts_gzip(const char *accept_encoding)
{
    if (accept_encoding == NULL)
        return false;
    int gzip = -1, star = -1; /* -1: not listed, 0: refused, 1: accepted */
    const char *p = accept_encoding;
    while (*p) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *a = p, *b = semi ? semi : end;
        trim(&a, &b);
        int verdict = semi && q_is_zero(semi + 1, end) ? 0 : 1;
        if (token_is(a, (size_t)(b - a), "gzip") || token_is(a, (size_t)(b - a), "x-gzip"))
            gzip = gzip == 1 ? 1 : verdict;
        else if (token_is(a, (size_t)(b - a), "*"))
            star = verdict;
        p = comma ? comma + 1 : end;
    }
    return gzip >= 0 ? gzip == 1 : star == 1;
}

struct inflater *inflater_new(enum encoding coding, size_t limit)
{
    if (coding == ENCODING_IDENTITY)
        return NULL;
    struct inflater *z = calloc(1, sizeof *z);
    if (z == NULL)
        return NULL;
    z->coding = coding;
    z->limit = limit;
    return z;
}

static int fail(struct inflater *z, int status, char *err, size_t err_len, const char *fmt,
                const char *detail)
{
    z->broken = true;
    snprintf(err, err_len, fmt, detail ? detail : "");
    return status;
}

/* Start zlib for the coding; a deflate body's first two bytes say whether
 * it is the zlib format (a valid header) or raw deflate. */
static int start(struct inflater *z, const unsigned char *first2, char *err, size_t err_len)
{
    int window = 15 + 16; /* gzip only */
    if (z->coding == ENCODING_DEFLATE) {
        unsigned cmf = first2[0], flg = first2[1];
        bool zlib_header = (cmf & 0x0f) == 8 && (cmf >> 4) <= 7 && (cmf * 256 + flg) % 31 == 0;
        window = zlib_header ? 15 : -15;
    }
    int rc = inflateInit2(&z->zs, window);
    if (rc == Z_MEM_ERROR)
        return fail(z, INFLATE_NO_MEMORY, err, err_len, "out of memory inflating the body%s", NULL);
    if (rc != Z_OK)
        return fail(z, INFLATE_CORRUPT, err, err_len, "zlib cannot start: %s", z->zs.msg);
    z->started = true;
    return INFLATE_OK;
}

/* Room for more output: grow to at most limit + 2 bytes (the limit, one byte
 * past it to see it passed, the NUL). Returns 0 or -1. */
static int grow(struct inflater *z, char **buf, size_t *len, size_t *cap)
{
    size_t most = z->limit + 2;
    if (*buf != NULL && *len + 1 < *cap)
        return 0;
    size_t want = *cap ? *cap * 2 : 16384;
    if (want < *len + 2)
        want = *len + 2;
    if (want > most)
        want = most;
    char *grown = realloc(*buf, want);
    if (grown == NULL)
        return -1;
    *buf = grown;
    *cap = want;
    return 0;
}

static const char *coding_msg(const struct inflater *z)
{
    return z->zs.msg ? z->zs.msg : "bad data";
}

/* Inflate [data, data + n) into *buf. */
static int inflate_bytes(struct inflater *z, const unsigned char *data, size_t n, char **buf,
                         size_t *len, size_t *cap, char *err, size_t err_len)
{
    const char *name = encoding_name(z->coding);
    while (n > 0) {
        uInt chunk = n > UINT_MAX ? UINT_MAX : (uInt)n;
        z->zs.next_in = (unsigned char *)data;
        z->zs.avail_in = chunk;
        for (;;) {
            if (z->ended) {
                /* Another gzip member may follow (RFC 1952); nothing may
                 * follow a zlib or raw deflate stream. */
                if (z->coding != ENCODING_GZIP || inflateReset(&z->zs) != Z_OK)
                    return fail(z, INFLATE_CORRUPT, err, err_len,
                                "data after the end of the %s stream", name);
                z->ended = false;
            }
            if (grow(z, buf, len, cap) != 0)
                return fail(z, INFLATE_NO_MEMORY, err, err_len,
                            "out of memory inflating the body%s", NULL);
            size_t room = *cap - *len - 1;
            size_t allowed = z->limit + 1 - *len;
            z->zs.next_out = (unsigned char *)*buf + *len;
            z->zs.avail_out = (uInt)(room < allowed ? room : allowed);
            uInt before = z->zs.avail_out;
            int rc = inflate(&z->zs, Z_NO_FLUSH);
            *len += before - z->zs.avail_out;
            (*buf)[*len] = '\0';
            if (*len > z->limit) {
                z->broken = true;
                snprintf(err, err_len, "the %s body inflates to more than %zu bytes", name,
                         z->limit);
                return INFLATE_TOO_BIG;
            }
            if (rc == Z_STREAM_END) {
                z->ended = true;
                if (z->zs.avail_in == 0)
                    break;
                continue;
            }
            if (rc == Z_MEM_ERROR)
                return fail(z, INFLATE_NO_MEMORY, err, err_len,
                            "out of memory inflating the body%s", NULL);
            if (rc != Z_OK && rc != Z_BUF_ERROR) {
                char why[160];
                snprintf(why, sizeof why, "%s: %s", name, coding_msg(z));
                return fail(z, INFLATE_CORRUPT, err, err_len, "the body is not valid %s", why);
            }
            if (z->zs.avail_out == 0)
                continue; /* more output may be pending */
            if (z->zs.avail_in == 0)
                break;
            if (rc == Z_BUF_ERROR) /* no progress with room and input: cannot happen */
                return fail(z, INFLATE_CORRUPT, err, err_len, "the body is not valid %s", name);
        }
        data += chunk;
        n -= chunk;
    }
    return INFLATE_OK;
}

int inflater_feed(struct inflater *z, const void *data, size_t n, char **buf, size_t *len,
                  size_t *cap, char *err, size_t err_len)
{
    if (z->broken)
        return fail(z, INFLATE_CORRUPT, err, err_len, "the body was already refused%s", NULL);
    const unsigned char *p = data;
    if (!z->started) {
        /* Hold bytes until the first two are known. */
        while (z->n_head < 2 && n > 0) {
            z->head[z->n_head++] = *p++;
            n--;
        }
        if (z->n_head < 2)
            return INFLATE_OK;
        int rc = start(z, z->head, err, err_len);
        if (rc == INFLATE_OK)
            rc = inflate_bytes(z, z->head, 2, buf, len, cap, err, err_len);
        if (rc != INFLATE_OK)
            return rc;
    }
    return inflate_bytes(z, p, n, buf, len, cap, err, err_len);
}

int inflater_finish(struct inflater *z, char *err, size_t err_len)
{
    if (z->broken)
        return fail(z, INFLATE_CORRUPT, err, err_len, "the body was already refused%s", NULL);
    if (!z->started || !z->ended) {
        z->broken = true;
        snprintf(err, err_len, "the %s body ended before its stream did (truncated?)",
                 encoding_name(z->coding));
        return INFLATE_CORRUPT;
    }
    return INFLATE_OK;
}

void inflater_free(struct inflater *z)
{
    if (z == NULL)
        return;
    if (z->started)
        inflateEnd(&z->zs);
    free(z);
}

int encoding_gzip(const void *data, size_t len, int level, char **out, size_t *out_len)
{
    if (len > UINT_MAX / 2)
        return -1;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong bound = deflateBound(&zs, (uLong)len) + 32; /* + the gzip header and trailer */
    char *buf = malloc(bound);
    if (buf == NULL) {
        deflateEnd(&zs);
        return -1;
    }
    zs.next_in = (unsigned char *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = (unsigned char *)buf;
    zs.avail_out = (uInt)bound;
    int rc = deflate(&zs, Z_FINISH);
    size_t produced = zs.total_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = produced;
    return 0;
}
