/* json_numbers.c - fast numeric arrays inside a cJSON document (see
 * json_numbers.h). Placeholders are strings made of the Unicode
 * noncharacter U+FDD0 (reserved for internal use) followed by an index. */
#include "json_numbers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "numconv.h"
#include "strbuf.h"

#define PLACEHOLDER_UTF8 "\xEF\xB7\x90"
#define PLACEHOLDER_JSON "\\ufdd0"

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

static int grow(struct num_array *a, size_t *cap)
{
    size_t grown = *cap ? *cap * 2 : 16;
    double *values = realloc(a->values, grown * sizeof *values);
    if (values == NULL)
        return -1;
    a->values = values;
    if (a->exact_ints) {
        int64_t *ints = realloc(a->exact_ints, grown * sizeof *ints);
        if (ints == NULL)
            return -1;
        a->exact_ints = ints;
    }
    *cap = grown;
    return 0;
}

/* The int64 of element i from its double (fractions are refused later, by
 * the v != floor(v) check); out of range marks the first overflow. */
static int64_t exact_from_double(struct num_array *a, size_t i, double v)
{
    if (v >= -9223372036854775808.0 && v < 9223372036854775808.0)
        return (int64_t)v;
    if (!a->int64_overflow) {
        a->int64_overflow = true;
        a->int64_overflow_index = i;
    }
    return 0;
}

/* From the first integer a double cannot hold exactly (beyond 2^53) on,
 * every element also keeps its exact int64 value, so that INT64 tensors
 * lose nothing. Returns 0 or -1 (out of memory). */
static int keep_exact_int(struct num_array *a, size_t cap, const char *token, size_t len, double v)
{
    if (a->exact_ints == NULL) {
        if (!(fabs(v) >= 9007199254740992.0) || memchr(token, '.', len) ||
            memchr(token, 'e', len) || memchr(token, 'E', len))
            return 0;
        a->exact_ints = malloc((cap ? cap : 1) * sizeof *a->exact_ints);
        if (a->exact_ints == NULL)
            return -1;
        for (size_t i = 0; i < a->count; i++) /* earlier values were exact */
            a->exact_ints[i] = exact_from_double(a, i, a->values[i]);
    }
    long long exact = 0;
    int rc = numconv_parse_int64(token, token + len, &exact);
    if (rc > 0)
        a->exact_ints[a->count] = exact;
    else if (rc < 0)
        a->exact_ints[a->count] = exact_from_double(a, a->count, HUGE_VAL);
    else /* 2.0, 1e2, true: the double says it */
        a->exact_ints[a->count] = exact_from_double(a, a->count, v);
    return 0;
}

static int push_value(struct num_array *a, size_t *cap, double v, const char *token, size_t len)
{
    if (a->count == *cap && grow(a, cap) != 0)
        return -1;
    if (keep_exact_int(a, *cap, token, len, v) != 0)
        return -1;
    a->values[a->count++] = v;
    return 0;
}

static void describe_index(const int64_t *index, int depth, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d <= depth && n < len; d++)
        n += (size_t)snprintf(buf + n, len - n, d ? ",%lld" : "%lld", (long long)index[d]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
}

static size_t fail(struct num_array *a, const int64_t *index, int depth, const char *what)
{
    char where[96];
    describe_index(index, depth, where, sizeof where);
    snprintf(a->error, sizeof a->error, "%s at index %s", what, where);
    free(a->values);
    free(a->exact_ints);
    a->values = NULL;
    a->exact_ints = NULL;
    a->count = 0;
    return 0;
}

/* One element (number, true, false) at p; returns bytes used or 0. */
static size_t parse_scalar(const char *p, const char *end, double *v, bool *is_bool)
{
    *is_bool = false;
    if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
        *is_bool = true;
        *v = 1.0;
        return 4;
    }
    if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
        *is_bool = true;
        *v = 0.0;
        return 5;
    }
    return numconv_parse_double(p, end, v);
}

size_t num_array_parse(const char *start, const char *end, struct num_array *a)
{
    int64_t index[NUM_ARRAY_MAX_DIMS] = {0};
    bool shape_known[NUM_ARRAY_MAX_DIMS] = {false};
    int depth = 0, leaf_depth = -1;
    size_t cap = 0;
    const char *p = start;

    memset(a, 0, sizeof *a);
    if (p >= end || *p != '[')
        return fail(a, index, 0, "expected an array");
    p++;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end)
            return fail(a, index, depth, "unterminated array");
        if (*p == ']') {
            if (index[depth] == 0)
                return fail(a, index, depth, "empty array");
            if (shape_known[depth] && a->shape[depth] != index[depth])
                return fail(a, index, depth, "ragged nested array: sub-arrays differ in length");
            a->shape[depth] = index[depth];
            shape_known[depth] = true;
            p++;
            if (depth == 0)
                break;
            index[depth] = 0;
            depth--;
            index[depth]++;
        } else {
            if (index[depth] > 0) {
                if (*p != ',')
                    return fail(a, index, depth, "expected ',' or ']'");
                p = skip_ws(p + 1, end);
                if (p >= end)
                    return fail(a, index, depth, "unterminated array");
            }
            if (*p == '[') {
                if (leaf_depth >= 0 && depth >= leaf_depth)
                    return fail(a, index, depth,
                                "ragged nested array: array where a number was expected");
                if (depth + 1 >= NUM_ARRAY_MAX_DIMS)
                    return fail(a, index, depth, "array nested too deeply (at most 8 levels)");
                depth++;
                p++;
                continue;
            }
            if (leaf_depth >= 0 && depth != leaf_depth)
                return fail(a, index, depth,
                            "ragged nested array: number where an array was expected");
            double v;
            bool is_bool;
            size_t used = parse_scalar(p, end, &v, &is_bool);
            if (used == 0)
                return fail(a, index, depth,
                            *p == '"' || *p == 'n' || *p == '{'
                                ? "non-numeric element"
                                : "not a JSON number (NaN and Infinity are not JSON)");
            leaf_depth = depth;
            if (is_bool)
                a->has_bool = true;
            else
                a->has_number = true;
            if (push_value(a, &cap, v, p, used) != 0)
                return fail(a, index, depth, "out of memory");
            index[depth]++;
            p += used;
        }
    }
    a->ndim = leaf_depth + 1;
    return (size_t)(p - start);
}

/* Skip one string literal starting at p ('"'); returns the byte after the
 * closing quote, or NULL if unterminated. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Does the array at p start like a numeric one: '[' then a number, a bool or
 * another such array? */
static bool looks_numeric(const char *p, const char *end)
{
    while (p < end && *p == '[')
        p = skip_ws(p + 1, end);
    if (p >= end)
        return false;
    return *p == '-' || (*p >= '0' && *p <= '9') || *p == 't' || *p == 'f' || *p == 'N' ||
           *p == 'I';
}

static const char *skip_array(const char *p, const char *end)
{
    int depth = 0;
    while (p < end) {
        if (*p == '"') {
            p = skip_string(p, end);
            if (p == NULL)
                return NULL;
            continue;
        }
        if (*p == '[')
            depth++;
        else if (*p == ']' && --depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}

static int add_array(struct json_doc *doc, size_t *index)
{
    if (doc->n_arrays == doc->cap) {
        size_t cap = doc->cap ? doc->cap * 2 : 4;
        struct num_array *arrays = realloc(doc->arrays, cap * sizeof *arrays);
        if (arrays == NULL)
            return -1;
        doc->arrays = arrays;
        doc->cap = cap;
    }
    *index = doc->n_arrays++;
    return 0;
}

/* Does the string literal [p, end) spell U+FDD0, raw or escaped? Such a
 * string could pose as a placeholder, so requests may not contain one. */
static bool mentions_placeholder(const char *p, const char *end)
{
    for (; p < end; p++) {
        if (end - p >= 3 && memcmp(p, PLACEHOLDER_UTF8, 3) == 0)
            return true;
        if (end - p >= 6 && p[0] == '\\' && p[1] == 'u' && strncasecmp(p + 2, "fdd0", 4) == 0)
            return true;
    }
    return false;
}

/* Copy the document into skeleton, replacing numeric arrays. Returns 0, -1
 * when out of memory, -2 when a string holds the reserved U+FDD0, -3 when
 * there are more numeric arrays than the value budget. */
static int extract_arrays(const char *p, const char *end, struct json_doc *doc,
                          struct strbuf *skeleton)
{
    const char *copied = p;
    while (p < end) {
        if (*p == '"') {
            const char *next = skip_string(p, end);
            if (next == NULL)
                break; /* cJSON will report it */
            if (mentions_placeholder(p, next))
                return -2;
            p = next;
            continue;
        }
        if (*p != '[') {
            p++;
            continue;
        }
        if (!looks_numeric(p, end)) {
            /* every '[' of this run gives the same answer: skip them all */
            while (p < end && (*p == '[' || *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
                p++;
            continue;
        }
        size_t slot;
        if (doc->n_arrays >= JSON_DOC_MAX_VALUES)
            return -3;
        if (add_array(doc, &slot) != 0)
            return -1;
        struct num_array *a = &doc->arrays[slot];
        size_t used = num_array_parse(p, end, a);
        const char *after = used ? p + used : skip_array(p, end);
        if (after == NULL) {
            doc->n_arrays--; /* unbalanced: leave the text for cJSON */
            break;
        }
        if (strbuf_append(skeleton, copied, (size_t)(p - copied)) != 0 ||
            strbuf_printf(skeleton, "\"" PLACEHOLDER_JSON "%zu\"", slot) != 0)
            return -1;
        p = copied = after;
    }
    return strbuf_append(skeleton, copied, (size_t)(end - copied));
}

int json_check_budget(const char *text, size_t len, size_t max_values, char *err, size_t err_len)
{
    /* cJSON makes one node for the document and one per element of each
     * array or object: an element per ',' and one more in each non-empty
     * container (an opener counts one, taken back when it closes at once). */
    const char *p = text, *end = text + len;
    size_t values = 1;
    int depth = 0;
    bool just_opened = false;
    for (; p < end; p++) {
        char c = *p;
        if ((unsigned char)c <= ' ')
            continue; /* cJSON skips every control byte as whitespace */
        if (c == '"') {
            p = skip_string(p, end);
            if (p == NULL)
                return 0; /* unterminated: cJSON refuses it, allocating little */
            p--;
        } else if (c == '{' || c == '[') {
            if (++depth > JSON_DOC_MAX_DEPTH) {
                snprintf(err, err_len,
                         "the request's JSON is nested more than %d deep (a limit of inferd's)",
                         JSON_DOC_MAX_DEPTH);
                return -1;
            }
            values++;
        } else if (c == '}' || c == ']') {
            depth--;
            if (just_opened)
                values--;
        } else if (c == ',') {
            values++;
        }
        just_opened = c == '{' || c == '[';
        if (values > max_values + (just_opened ? 1 : 0)) {
            snprintf(err, err_len,
                     "the request's JSON has more than %zu values outside numeric arrays (a limit "
                     "of inferd's: tensors go in numeric arrays or as binary data)",
                     max_values);
            return -1;
        }
    }
    return 0;
}

int json_doc_parse(const char *body, size_t len, struct json_doc *doc, char *err, size_t err_len)
{
    struct strbuf skeleton = {0};
    memset(doc, 0, sizeof *doc);
    int rc = extract_arrays(body, body + len, doc, &skeleton);
    if (rc != 0) {
        strbuf_free(&skeleton);
        json_doc_free(doc);
        if (rc == -3)
            snprintf(err, err_len,
                     "the request's JSON has more than %d numeric arrays (a limit of inferd's)",
                     JSON_DOC_MAX_VALUES);
        else
            snprintf(err, err_len, "%s",
                     rc == -2 ? "strings may not contain U+FDD0 (a Unicode noncharacter)"
                              : "out of memory parsing the request");
        return -1;
    }
    const char *text = skeleton.data ? skeleton.data : "";
    if (json_check_budget(text, skeleton.len, JSON_DOC_MAX_VALUES, err, err_len) != 0) {
        strbuf_free(&skeleton);
        json_doc_free(doc);
        return -1;
    }
    const char *parse_end = NULL;
    doc->root = cJSON_ParseWithLengthOpts(text, skeleton.len, &parse_end, 0);
    /* Only whitespace may follow the document. */
    while (doc->root && parse_end && parse_end < text + skeleton.len &&
           (*parse_end == ' ' || *parse_end == '\n' || *parse_end == '\r' || *parse_end == '\t'))
        parse_end++;
    if (doc->root && parse_end != text + skeleton.len) {
        cJSON_Delete(doc->root);
        doc->root = NULL;
    }
    if (doc->root == NULL) {
        snprintf(err, err_len, "malformed JSON in the request body");
        strbuf_free(&skeleton);
        json_doc_free(doc);
        return -1;
    }
    strbuf_free(&skeleton);
    return 0;
}

const struct num_array *json_doc_array(const struct json_doc *doc, const cJSON *item)
{
    if (!cJSON_IsString(item) || item->valuestring == NULL ||
        strncmp(item->valuestring, PLACEHOLDER_UTF8, 3) != 0)
        return NULL;
    char *end = NULL;
    const char *digits = item->valuestring + 3;
    unsigned long slot = strtoul(digits, &end, 10);
    if (end == digits || *end != '\0' || slot >= doc->n_arrays)
        return NULL;
    return &doc->arrays[slot];
}

void json_doc_free(struct json_doc *doc)
{
    for (size_t i = 0; i < doc->n_arrays; i++) {
        free(doc->arrays[i].values);
        free(doc->arrays[i].exact_ints);
    }
    free(doc->arrays);
    cJSON_Delete(doc->root);
    memset(doc, 0, sizeof *doc);
}
