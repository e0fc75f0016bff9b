/* Layer normalisation over the last dimension, PyTorch's rules (biased variance, eps
 * inside the square root).
 *
 * Forward visits each row once while it sits in L1: mean, then the variance of the
 * deviations (two sweeps over the cached row, which stays accurate when the mean is
 * large, unlike E[x²] - E[x]²), then the output. Mean and 1/std per row are saved.
 * Backward is the closed form with x̂ recomputed from x:
 *   g = dy·w,  dx = rstd·(g - mean(g) - x̂·mean(g·x̂)),  dw += Σ dy·x̂,  db += Σ dy
 * Rows are independent, so threads split them; dw and db are summed per thread and then
 * added in thread order, so the result does not depend on scheduling. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ember/error.h"
#include "ember/transformer_ops.h"
#include "ops/decode_rows.h"

#define PARALLEL_MIN_ELEMENTS 32768
/* Independent partial sums: strict ISO semantics would keep one accumulator scalar. */
#define LANES 16

typedef struct ln_saved {
    int64_t rows, dim;
    float *mean, *rstd;
} ln_saved;

static float row_sum(const float *x, int64_t n)
{
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += x[i + l];
    float total = 0.0f;
    for (; i < n; i++)
        total += x[i];
    for (int l = 0; l < LANES; l++)
        total += acc[l];
    return total;
}

static float row_sq_dev(const float *x, int64_t n, float mean)
{
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            float d = x[i + l] - mean;
            acc[l] += d * d;
        }
    float total = 0.0f;
    for (; i < n; i++) {
        float d = x[i] - mean;
        total += d * d;
    }
    for (int l = 0; l < LANES; l++)
        total += acc[l];
    return total;
}

/* Σ g and Σ g·x̂ of one row with g = dy·w (w NULL means 1) and x̂ = (x - mean)·rstd. */
static void row_grad_sums(const float *x, const float *dy, const float *w, int64_t n, float mean,
                          float rstd, float *sum_g, float *sum_g_xhat)
{
    float a[LANES] = {0}, b[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            float g = w ? dy[i + l] * w[i + l] : dy[i + l];
            a[l] += g;
            b[l] += g * (x[i + l] - mean) * rstd;
        }
    float ta = 0.0f, tb = 0.0f;
    for (; i < n; i++) {
        float g = w ? dy[i] * w[i] : dy[i];
        ta += g;
        tb += g * (x[i] - mean) * rstd;
    }
    for (int l = 0; l < LANES; l++) {
        ta += a[l];
        tb += b[l];
    }
    *sum_g = ta;
    *sum_g_xhat = tb;
}

static void layer_norm_backward(em_node *node)
{
    const ln_saved *sv = node->saved;
    em_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const float *dy = node->out->grad;
    const int64_t rows = sv->rows, dim = sv->dim;
    const bool need_x = x->requires_grad, need_w = w && w->requires_grad,
               need_b = b && b->requires_grad;
    const float *wd = w ? w->data : NULL;
    const bool parallel = rows * dim >= PARALLEL_MIN_ELEMENTS && omp_get_max_threads() > 1;
    const int max_threads = parallel ? omp_get_max_threads() : 1;

    /* Per-thread partial dw and db, [thread][2·dim], zeroed: a thread that gets no rows
     * adds zeros, so the sum needs no count of the threads that ran. */
    float *partial = NULL, *dx = NULL;
    bool fresh = false;
    if (need_x && !(dx = em_grad_for_write(x, &fresh)))
        return;
    if ((need_w && !em_grad_buffer(w)) || (need_b && !em_grad_buffer(b)))
        return;
    if (need_w || need_b) {
        partial = em_arena_calloc(em_step_arena(), (size_t)max_threads * 2 * (size_t)dim,
                                  sizeof(float));
        if (!partial)
            return;
    }
#pragma omp parallel num_threads(max_threads)
    {
        const int tid = omp_get_thread_num();
        float *dw_part = partial ? partial + (size_t)tid * 2 * (size_t)dim : NULL;
        float *db_part = partial ? dw_part + dim : NULL;
#pragma omp for schedule(static) nowait
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x->data + r * dim, *dr = dy + r * dim;
            const float mean = sv->mean[r], rstd = sv->rstd[r];
            if (need_w)
                for (int64_t j = 0; j < dim; j++)
                    dw_part[j] += dr[j] * (xr[j] - mean) * rstd;
            if (need_b)
                for (int64_t j = 0; j < dim; j++)
                    db_part[j] += dr[j];
            if (!need_x)
                continue;
            float sum_g, sum_g_xhat;
            row_grad_sums(xr, dr, wd, dim, mean, rstd, &sum_g, &sum_g_xhat);
            const float mean_g = sum_g / (float)dim, mean_g_xhat = sum_g_xhat / (float)dim;
            float *gx = dx + r * dim;
            if (fresh)
                memset(gx, 0, (size_t)dim * sizeof(float)); /* one row, in cache */
            if (wd)
                for (int64_t j = 0; j < dim; j++) {
                    float xhat = (xr[j] - mean) * rstd;
                    gx[j] += rstd * (dr[j] * wd[j] - mean_g - xhat * mean_g_xhat);
                }
            else
                for (int64_t j = 0; j < dim; j++) {
                    float xhat = (xr[j] - mean) * rstd;
                    gx[j] += rstd * (dr[j] - mean_g - xhat * mean_g_xhat);
                }
        }
    }
    for (int t = 0; t < max_threads && partial; t++) {
        const float *dw_part = partial + (size_t)t * 2 * (size_t)dim, *db_part = dw_part + dim;
        for (int64_t j = 0; j < dim; j++) {
            if (need_w)
                w->grad[j] += dw_part[j];
            if (need_b)
                b->grad[j] += db_part[j];
        }
    }
}

static int check_affine(const char *what, const em_tensor *p, const em_tensor *x, int64_t dim)
{
    if (p && (p->ndim != 1 || p->shape[0] != dim))
        return em_error("layer_norm: %s must be [%lld] for input %s (normalised over its last "
                        "dimension), got %s",
                        what, (long long)dim, em_shape_str(x), em_shape_str(p));
    return EM_OK;
}

/* One row of the forward: y = (x - mean) · rstd · w + b, keeping mean and rstd. */
static void normalize_row(const float *xr, float *yr, int64_t dim, float eps, const float *wd, const float *bd,
                          float *mean, float *rstd)
{
    const float m = row_sum(xr, dim) / (float)dim;
    const float s = 1.0f / sqrtf(row_sq_dev(xr, dim, m) / (float)dim + eps);
    *mean = m;
    *rstd = s;
    if (wd && bd)
        for (int64_t j = 0; j < dim; j++)
            yr[j] = (xr[j] - m) * s * wd[j] + bd[j];
    else if (wd)
        for (int64_t j = 0; j < dim; j++)
            yr[j] = (xr[j] - m) * s * wd[j];
    else if (bd)
        for (int64_t j = 0; j < dim; j++)
            yr[j] = (xr[j] - m) * s + bd[j];
    else
        for (int64_t j = 0; j < dim; j++)
            yr[j] = (xr[j] - m) * s;
}

void em_layer_norm_row(const float *x, float *y, int64_t dim, float eps, const float *w, const float *b)
{
    float mean, rstd;
    normalize_row(x, y, dim, eps, w, b, &mean, &rstd);
}

em_tensor *em_layer_norm(em_tensor *x, em_tensor *weight, em_tensor *bias, float eps)
{
    if (!x)
        return NULL;
    if (x->ndim < 1)
        return em_error("layer_norm: input must have at least one dimension, got a scalar"), NULL;
    const int64_t dim = x->shape[x->ndim - 1], rows = x->numel / dim;
    if (check_affine("weight", weight, x, dim) != EM_OK || check_affine("bias", bias, x, dim) != EM_OK)
        return NULL;
    if (!(eps >= 0.0f) || !isfinite(eps))
        return em_error("layer_norm: eps %g must be finite and >= 0", (double)eps), NULL;

    const bool has_w = weight != NULL, has_b = bias != NULL;
    x = em_contiguous(x);
    if (has_w)
        weight = em_contiguous(weight);
    if (has_b)
        bias = em_contiguous(bias);
    if (!x || (has_w && !weight) || (has_b && !bias))
        return NULL;
    em_tensor *out = em_tensor_empty(NULL, x->ndim, x->shape);
    float *stats = em_arena_alloc(em_step_arena(), (size_t)(2 * rows) * sizeof(float));
    if (!out || !stats)
        return NULL;
    float *mean = stats, *rstd = stats + rows;
    const float *wd = has_w ? weight->data : NULL, *bd = has_b ? bias->data : NULL;
    const bool parallel = x->numel >= PARALLEL_MIN_ELEMENTS;

    /* A small input stays out of OpenMP altogether: even a region that the if clause
     * keeps on one thread costs a futex call, which shows when generation normalises one
     * row per token. */
    if (parallel) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            normalize_row(x->data + r * dim, out->data + r * dim, dim, eps, wd, bd, &mean[r], &rstd[r]);
    } else {
        for (int64_t r = 0; r < rows; r++)
            normalize_row(x->data + r * dim, out->data + r * dim, dim, eps, wd, bd, &mean[r], &rstd[r]);
    }

    em_node *node = em_record("layer_norm", out, 3, (em_tensor *[]){x, weight, bias},
                              layer_norm_backward);
    if (node) {
        ln_saved *sv = em_arena_alloc(em_step_arena(), sizeof *sv);
        if (!sv)
            return NULL;
        sv->rows = rows;
        sv->dim = dim;
        sv->mean = mean;
        sv->rstd = rstd;
        node->takes_input_grads = true;
        node->saved = sv;
    }
    return out;
}
