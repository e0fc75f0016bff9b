/* sum, mean and max over a set of dimensions, and the whole-tensor forms. Inputs are
 * walked in their own memory layout with the output broadcast over the reduced
 * dimensions (stride 0), so any view works without a copy. Sums accumulate in double:
 * a float running sum over 10^6 terms would drift by ~1e-4 relative. */
#include <math.h>
#include <string.h>

#include "ember/error.h"
#include "ember/ops.h"
#include "ops/dense.h"
#include "ops/strided.h"

typedef enum reduce_op { REDUCE_SUM, REDUCE_MEAN, REDUCE_MAX } reduce_op;

static const char *const reduce_names[] = {"sum", "mean", "max"};

/* Context a backward pass needs. */
typedef struct reduce_saved {
    int64_t kept_shape[EM_MAX_DIMS]; /* the input's shape with reduced dims set to 1 */
    float scale;                     /* 1 for sum, 1/count for mean */
    int64_t *argmax;                 /* max: flat input index of each output's maximum */
} reduce_saved;

/* Σ x[i·stride] in double with independent partials (they vectorise for stride 1). */
static double sum_strided(const float *x, int64_t n, int64_t stride)
{
    if (stride != 1) {
        double total = 0.0;
        for (int64_t i = 0; i < n; i++)
            total += x[i * stride];
        return total;
    }
    /* 32 partials: four vector accumulators in flight hide the add latency */
    double acc[32] = {0};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 32; j++)
            acc[j] += x[i + j];
    double total = 0.0;
    for (; i < n; i++)
        total += x[i];
    for (int j = 0; j < 32; j++)
        total += acc[j];
    return total;
}

/* Blocks of a dense sum: their count depends only on n, so the result is the same
 * whatever the number of threads. */
#define SUM_MAX_BLOCKS 256
#define SUM_MIN_BLOCK (1 << 15)

static double sum_dense(const float *x, int64_t n)
{
    if (n <= EM_PARALLEL_MIN_ELEMENTS)
        return sum_strided(x, n, 1);
    int64_t block = (n + SUM_MAX_BLOCKS - 1) / SUM_MAX_BLOCKS;
    if (block < SUM_MIN_BLOCK)
        block = SUM_MIN_BLOCK;
    int64_t blocks = (n + block - 1) / block;
    double partial[SUM_MAX_BLOCKS];
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t start = b * block;
        partial[b] = sum_strided(x + start, n - start < block ? n - start : block, 1);
    }
    double total = 0.0;
    for (int64_t b = 0; b < blocks; b++)
        total += partial[b];
    return total;
}

typedef struct sum_ctx {
    double *acc;
    const float *x;
} sum_ctx;

static void sum_row(void *p, const int64_t *off, int64_t n, const int64_t *inner)
{
    sum_ctx *c = p;
    double *acc = c->acc + off[0];
    const float *x = c->x + off[1];
    if (inner[0] == 0) {
        acc[0] += sum_strided(x, n, inner[1]);
    } else if (inner[0] == 1 && inner[1] == 1) {
        for (int64_t i = 0; i < n; i++)
            acc[i] += x[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            acc[i * inner[0]] += x[i * inner[1]];
    }
}

typedef struct max_ctx {
    float *best;
    int64_t *index;
    const float *x;
} max_ctx;

/* Takes v when nothing is held yet, when it is larger, or when it is NaN (NaN wins, as
 * in PyTorch); ties keep the earlier element, which was visited first. */
#define MAX_TAKES(v, held_value, held_index)                                             \
    ((held_index) < 0 || (v) > (held_value) || ((v) != (v) && (held_value) == (held_value)))

static void max_row(void *p, const int64_t *off, int64_t n, const int64_t *inner)
{
    max_ctx *c = p;
    const float *x = c->x + off[1];
    int64_t flat = off[2];
    if (inner[0] == 0) {
        float *best = c->best + off[0];
        int64_t *index = c->index + off[0];
        for (int64_t i = 0; i < n; i++) {
            float v = x[i * inner[1]];
            if (MAX_TAKES(v, *best, *index)) {
                *best = v;
                *index = flat + i * inner[2];
            }
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float v = x[i * inner[1]];
            float *best = c->best + off[0] + i * inner[0];
            int64_t *index = c->index + off[0] + i * inner[0];
            if (MAX_TAKES(v, *best, *index)) {
                *best = v;
                *index = flat + i * inner[2];
            }
        }
    }
}

typedef struct spread_ctx {
    float *dx;
    const float *g;
    float scale;
} spread_ctx;

static void spread_row(void *p, const int64_t *off, int64_t n, const int64_t *inner)
{
    spread_ctx *c = p;
    float *dx = c->dx + off[0];
    const float *g = c->g + off[1];
    float v = c->scale * g[0];
    if (inner[1] == 0) {
        for (int64_t i = 0; i < n; i++)
            dx[i] += v;
    } else {
        for (int64_t i = 0; i < n; i++)
            dx[i] += c->scale * g[i * inner[1]];
    }
}

static void reduce_backward(em_node *node)
{
    const reduce_saved *s = node->saved;
    em_tensor *in = node->in[0];
    const float *g = node->out->grad;
    if (s->argmax) {
        for (int64_t o = 0; o < node->out->numel; o++)
            in->grad[s->argmax[o]] += g[o];
        return;
    }
    /* dx (dense, input shape) += scale · g broadcast back over the reduced dims */
    int64_t dense[EM_MAX_DIMS], g_strides[EM_MAX_DIMS], kept_dense[EM_MAX_DIMS];
    em_dense_strides(in->ndim, in->shape, dense);
    em_dense_strides(in->ndim, s->kept_shape, kept_dense);
    for (int d = 0; d < in->ndim; d++)
        g_strides[d] = s->kept_shape[d] == 1 ? 0 : kept_dense[d];
    const int64_t *strides[2] = {dense, g_strides};
    em_strided it;
    em_strided_init(&it, in->ndim, in->shape, 2, strides);
    spread_ctx c = {in->grad, g, s->scale};
    em_strided_rows(&it, spread_row, &c);
}

static em_tensor *reduce(reduce_op op, em_tensor *a, int n_dims, const int *dims, bool keepdim)
{
    const char *name = reduce_names[op];
    if (!a)
        return NULL;
    if (n_dims < 0 || n_dims > EM_MAX_DIMS || (n_dims > 0 && !dims))
        return em_error("%s over %d dimensions of %s: give 0 (all) to %d dimensions", name, n_dims,
                        em_shape_str(a), a->ndim), NULL;
    bool reduced[EM_MAX_DIMS] = {false};
    for (int k = 0; k < n_dims; k++) {
        int d = dims[k] < 0 ? dims[k] + a->ndim : dims[k];
        if (d < 0 || d >= a->ndim)
            return em_error("%s: dimension %d is out of range for shape %s", name, dims[k],
                            em_shape_str(a)), NULL;
        if (reduced[d])
            return em_error("%s: dimension %d appears twice in the list for shape %s", name, d,
                            em_shape_str(a)), NULL;
        reduced[d] = true;
    }
    int64_t kept_shape[EM_MAX_DIMS] = {0}, out_shape[EM_MAX_DIMS] = {0};
    int out_ndim = 0;
    int64_t count = 1;
    for (int d = 0; d < a->ndim; d++) {
        bool r = n_dims == 0 || reduced[d];
        kept_shape[d] = r ? 1 : a->shape[d];
        count *= r ? a->shape[d] : 1;
        if (keepdim || !r)
            out_shape[out_ndim++] = kept_shape[d];
    }
    em_tensor *out = em_tensor_empty(NULL, out_ndim, out_shape);
    if (!out)
        return NULL;
    em_arena *arena = em_step_arena();

    int64_t out_strides[EM_MAX_DIMS], kept_dense[EM_MAX_DIMS], in_dense[EM_MAX_DIMS];
    em_dense_strides(a->ndim, kept_shape, kept_dense);
    em_dense_strides(a->ndim, a->shape, in_dense);
    for (int d = 0; d < a->ndim; d++)
        out_strides[d] = kept_shape[d] == 1 ? 0 : kept_dense[d];
    em_strided it;
    int64_t *argmax = NULL;
    if (op == REDUCE_MAX) {
        argmax = em_arena_alloc(arena, (size_t)out->numel * sizeof(int64_t));
        if (!argmax)
            return NULL;
        for (int64_t o = 0; o < out->numel; o++)
            argmax[o] = -1;
        const int64_t *strides[3] = {out_strides, a->stride, in_dense};
        em_strided_init(&it, a->ndim, a->shape, 3, strides);
        max_ctx c = {out->data, argmax, a->data};
        em_strided_rows(&it, max_row, &c);
    } else if (out->numel == 1 && em_is_contiguous(a)) {
        double total = sum_dense(a->data, a->numel);
        out->data[0] = (float)(op == REDUCE_MEAN ? total / (double)count : total);
    } else {
        double *acc = em_arena_calloc(arena, (size_t)out->numel, sizeof(double));
        if (!acc)
            return NULL;
        const int64_t *strides[2] = {out_strides, a->stride};
        em_strided_init(&it, a->ndim, a->shape, 2, strides);
        sum_ctx c = {acc, a->data};
        em_strided_rows(&it, sum_row, &c);
        double scale = op == REDUCE_MEAN ? 1.0 / (double)count : 1.0;
        for (int64_t o = 0; o < out->numel; o++)
            out->data[o] = (float)(acc[o] * scale);
    }

    em_node *n = em_record(name, out, 1, &a, reduce_backward);
    if (n) {
        reduce_saved *s = em_arena_alloc(arena, sizeof *s);
        if (!s)
            return NULL;
        memcpy(s->kept_shape, kept_shape, sizeof kept_shape);
        s->scale = op == REDUCE_MEAN ? (float)(1.0 / (double)count) : 1.0f;
        s->argmax = argmax;
        n->saved = s;
    }
    return out;
}

em_tensor *em_sum(em_tensor *a, int n_dims, const int *dims, bool keepdim)
{
    return reduce(REDUCE_SUM, a, n_dims, dims, keepdim);
}

em_tensor *em_mean(em_tensor *a, int n_dims, const int *dims, bool keepdim)
{
    return reduce(REDUCE_MEAN, a, n_dims, dims, keepdim);
}

em_tensor *em_max(em_tensor *a, int n_dims, const int *dims, bool keepdim)
{
    return reduce(REDUCE_MAX, a, n_dims, dims, keepdim);
}

em_tensor *em_sum_all(em_tensor *a) { return reduce(REDUCE_SUM, a, 0, NULL, false); }
em_tensor *em_mean_all(em_tensor *a) { return reduce(REDUCE_MEAN, a, 0, NULL, false); }

void em_argmax_rows(const em_tensor *t, int32_t *out)
{
    if (!t || !out)
        return;
    int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
    int64_t col_stride = t->ndim ? t->stride[t->ndim - 1] : 0;
    int64_t rows = t->numel / cols;
    for (int64_t r = 0; r < rows; r++) {
        /* offset of row r: unravel r over the leading dimensions */
        int64_t base = 0, rest = r;
        for (int d = t->ndim - 2; d >= 0; d--) {
            base += rest % t->shape[d] * t->stride[d];
            rest /= t->shape[d];
        }
        const float *row = t->data + base;
        int64_t best_at = 0;
        float best = row[0];
        for (int64_t c = 1; c < cols; c++) {
            float v = row[c * col_stride];
            if (v > best || (v != v && best == best)) {
                best = v;
                best_at = c;
            }
        }
        out[r] = (int32_t)best_at;
    }
}
