/* shape.h - tensor shapes as dims arrays: element counts, text, reading a
 * request's "shape" array, and fitting a decoded input's shape to the shape
 * a model declares (-1: any size; dim 0 is the batch when it batches). The
 * one place these rules live, for every request format. */
#ifndef INFERD_SHAPE_H
#define INFERD_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Product of the dims, or -1 on a negative dim or overflow. */
int64_t shape_numel(const int64_t *shape, int ndim);
/* The checked element count and byte size of a tensor of this shape whose
 * elements take elem bytes: every size computed from a client's shape comes
 * from here (or shape_numel). Returns 0 with *numel and *nbytes set (either
 * may be NULL), or -1 on a negative dim, or a count or byte size that
 * overflows. */
int shape_size(const int64_t *shape, int ndim, size_t elem, int64_t *numel, size_t *nbytes);
/* "[1,28,28]" into buf. */
void shape_format(const int64_t *shape, int ndim, char *buf, size_t len);

struct num_array; /* json_numbers.h */

enum shape_parse {
    SHAPE_OK,
    SHAPE_NOT_LIST, /* not a flat array of at most max_dims numbers */
    SHAPE_BAD_DIM,  /* a dim that is not an integer in [min_dim, 1e12] */
};

/* Read a decoded JSON array as dims (each at least min_dim). Returns a
 * shape_parse; dims and *ndim are set for SHAPE_OK. a may be NULL (not an
 * array of numbers). */
enum shape_parse shape_from_array(const struct num_array *a, int64_t min_dim, int max_dims,
                                  int64_t *dims, int *ndim);

/* Fit a decoded input's shape (shape, *ndim) to the shape an input called
 * name declares (want, want_ndim): keep it when the ranks match, prepend a
 * batch dim of 1 to a single sample (batching models), or reshape a flat
 * array to [-1, dims...]. Then check every fixed dim. shape has room for
 * want_ndim dims. Returns 0, or -1 with err saying what does not fit. */
int shape_fit(const char *name, const int64_t *want, int want_ndim, bool batching, int64_t *shape,
              int *ndim, char *err, size_t err_len);

/* Whether shape has want's rank and every fixed dim of want. */
bool shape_matches(const int64_t *want, int want_ndim, const int64_t *shape, int ndim);

#endif
