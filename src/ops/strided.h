/* Internal: walking several same-shaped strided operands together. Dimensions that are
 * contiguous in every operand are merged first, so dense operands become one row. */
#ifndef EMBER_STRIDED_H
#define EMBER_STRIDED_H

#include "ember/tensor.h"

#define EM_STRIDED_MAX_OPS 3

typedef struct em_strided {
    int ndim;
    int nops;
    int64_t shape[EM_MAX_DIMS];
    int64_t stride[EM_STRIDED_MAX_OPS][EM_MAX_DIMS];
} em_strided;

/* strides[k] has ndim entries for operand k (0 where it broadcasts). */
void em_strided_init(em_strided *it, int ndim, const int64_t *shape, int nops,
                     const int64_t *const *strides);

/* Calls row(ctx, offsets, n, inner_strides) for every innermost row, where offsets[k] is
 * the element offset of the row's first element in operand k. */
typedef void (*em_row_fn)(void *ctx, const int64_t *offsets, int64_t n, const int64_t *inner);
void em_strided_rows(const em_strided *it, em_row_fn row, void *ctx);

/* Strides of t aligned right to an ndim-dimensional broadcast shape: 0 where t has
 * size 1 or lacks the dimension. */
void em_broadcast_strides(const em_tensor *t, int ndim, const int64_t *shape, int64_t *strides);
/* Row-major dense strides of a shape. */
void em_dense_strides(int ndim, const int64_t *shape, int64_t *strides);

/* dst (strided, shape) += src (dense in shape's row-major order). */
void em_accumulate_strided(float *dst, const int64_t *dst_strides, int ndim, const int64_t *shape,
                           const float *src);

#endif
