#include "ops/strided.h"

#include <string.h>

void em_dense_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d];
    }
}

void em_broadcast_strides(const em_tensor *t, int ndim, const int64_t *shape, int64_t *strides)
{
    int shift = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        int td = d - shift;
        strides[d] = (td < 0 || t->shape[td] == 1 || shape[d] == 1) ? 0 : t->stride[td];
    }
}

void em_strided_init(em_strided *it, int ndim, const int64_t *shape, int nops,
                     const int64_t *const *strides)
{
    memset(it, 0, sizeof *it);
    it->nops = nops;
    /* Drop size-1 dims, then merge d into d+1 when every operand steps contiguously. */
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1)
            continue;
        if (n > 0) {
            bool mergeable = true;
            for (int k = 0; k < nops; k++)
                if (it->stride[k][n - 1] != strides[k][d] * shape[d])
                    mergeable = false;
            if (mergeable) {
                it->shape[n - 1] *= shape[d];
                for (int k = 0; k < nops; k++)
                    it->stride[k][n - 1] = strides[k][d];
                continue;
            }
        }
        it->shape[n] = shape[d];
        for (int k = 0; k < nops; k++)
            it->stride[k][n] = strides[k][d];
        n++;
    }
    if (n == 0) {
        it->shape[0] = 1;
        for (int k = 0; k < nops; k++)
            it->stride[k][0] = 1;
        n = 1;
    }
    it->ndim = n;
}

void em_strided_rows(const em_strided *it, em_row_fn row, void *ctx)
{
    int last = it->ndim - 1;
    int64_t inner[EM_STRIDED_MAX_OPS];
    int64_t offsets[EM_STRIDED_MAX_OPS] = {0};
    int64_t idx[EM_MAX_DIMS] = {0};
    for (int k = 0; k < it->nops; k++)
        inner[k] = it->stride[k][last];
    int64_t rows = 1;
    for (int d = 0; d < last; d++)
        rows *= it->shape[d];
    for (int64_t r = 0; r < rows; r++) {
        row(ctx, offsets, it->shape[last], inner);
        for (int d = last - 1; d >= 0; d--) {
            for (int k = 0; k < it->nops; k++)
                offsets[k] += it->stride[k][d];
            if (++idx[d] < it->shape[d])
                break;
            for (int k = 0; k < it->nops; k++)
                offsets[k] -= it->stride[k][d] * it->shape[d];
            idx[d] = 0;
        }
    }
}

typedef struct accumulate_ctx {
    float *dst;
    const float *src;
} accumulate_ctx;

static void accumulate_row(void *p, const int64_t *off, int64_t n, const int64_t *inner)
{
    accumulate_ctx *c = p;
    float *d = c->dst + off[0];
    const float *s = c->src + off[1];
    if (inner[0] == 1 && inner[1] == 1) {
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            d[i * inner[0]] += s[i * inner[1]];
    }
}

void em_accumulate_strided(float *dst, const int64_t *dst_strides, int ndim, const int64_t *shape,
                           const float *src)
{
    int64_t dense[EM_MAX_DIMS];
    em_dense_strides(ndim, shape, dense);
    const int64_t *strides[2] = {dst_strides, dense};
    em_strided it;
    em_strided_init(&it, ndim, shape, 2, strides);
    accumulate_ctx c = {dst, src};
    em_strided_rows(&it, accumulate_row, &c);
}
