/* json_numbers.h - a JSON document whose numeric arrays are parsed by a fast,
 * exact number path (numconv) instead of by cJSON.
 *
 * json_doc_parse scans the body once. Each array that starts with a number,
 * true/false or a nested array is decoded into a num_array (values in
 * row-major order plus the shape its nesting gives) and replaced, in a small
 * copy of the document, by a placeholder string; cJSON then parses that copy
 * for the structure. json_doc_array() maps a placeholder back to its array.
 *
 * Tensor numbers cost no cJSON node, so a valid request needs few: the rest
 * of a document is held to JSON_DOC_MAX_VALUES values (numeric arrays count
 * one each) nested at most JSON_DOC_MAX_DEPTH deep, checked before cJSON
 * allocates anything. Without that, 16 MiB of "{}," would be 5.6 million
 * nodes (about 460 MB).
 */
#ifndef INFERD_JSON_NUMBERS_H
#define INFERD_JSON_NUMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define NUM_ARRAY_MAX_DIMS 8
#define JSON_DOC_MAX_VALUES 16384 /* outside numeric arrays: ~1 MB of cJSON nodes */
#define JSON_DOC_MAX_DEPTH 64

struct num_array {
    double *values;
    size_t count;
    int ndim;
    int64_t shape[NUM_ARRAY_MAX_DIMS];
    int64_t *exact_ints; /* NULL, unless an integer beyond 2^53 appeared: then
                            every element's exact value (0 for non-integers) */
    bool int64_overflow; /* an integer token was beyond the INT64 range */
    size_t int64_overflow_index;
    bool has_bool;   /* some elements were true/false (stored as 1/0) */
    bool has_number; /* some elements were numbers */
    char error[160]; /* not empty: the array is not a well-formed tensor */
};

struct json_doc {
    cJSON *root;
    struct num_array *arrays;
    size_t n_arrays, cap;
};

/* Parse body[0..len). Returns 0, or -1 with err set (malformed JSON, over
 * the value or depth budget, or out of memory). On failure doc is left
 * empty; json_doc_free is still safe. */
int json_doc_parse(const char *body, size_t len, struct json_doc *doc, char *err, size_t err_len);

/* Check text[0..len), before cJSON parses it, against the budget: at most
 * max_values values (the nodes cJSON would make, counted from the commas
 * and brackets outside strings) nested at most JSON_DOC_MAX_DEPTH deep.
 * Returns 0, or -1 with err set. */
int json_check_budget(const char *text, size_t len, size_t max_values, char *err, size_t err_len);

/* The numeric array that item stands for, or NULL when item is not one. */
const struct num_array *json_doc_array(const struct json_doc *doc, const cJSON *item);

void json_doc_free(struct json_doc *doc);

/* Decode one numeric JSON array at [p, end) into out (values allocated).
 * Returns the number of bytes consumed, or 0 with out->error set. */
size_t num_array_parse(const char *p, const char *end, struct num_array *out);

#endif
