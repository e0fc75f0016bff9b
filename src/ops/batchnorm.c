/* Batch normalisation over channel 1 of [N, C, ...], PyTorch's rules: training normalises
 * with the batch's mean and biased variance and moves the running statistics towards the
 * batch's (unbiased variance there); evaluation normalises with the running statistics.
 *
 * Backward in training differentiates through the batch statistics too (the closed form
 * dx = w·invstd·(dy - mean(dy) - x̂·mean(dy·x̂)) per channel); in evaluation the statistics
 * are constants and dx = w·invstd·dy. x̂ is recomputed from x and the saved per-channel
 * mean and 1/std rather than stored. Channels are independent, so threads split them. */
#include <math.h>
#include <string.h>

#include "ember/cnn_ops.h"
#include "ember/error.h"

#define PARALLEL_MIN_ELEMENTS 32768

typedef struct bn_saved {
    int64_t n, c, s;  /* x viewed as [n, c, s] */
    bool batch_stats; /* normalised with the batch's statistics (backward goes through them) */
    float *mean, *invstd;
} bn_saved;

/* A [C] parameter or statistic, or NULL. */
static int check_channel_vector(const char *what, const em_tensor *v, const em_tensor *x, int64_t c)
{
    if (v && (v->ndim != 1 || v->shape[0] != c))
        return em_error("batch_norm: %s must be [%lld] for input %s, got %s", what, (long long)c,
                        em_shape_str(x), em_shape_str(v));
    return EM_OK;
}

/* Per-channel sum of f over the channel's rows of length s, in double across rows. */
static double channel_sum(const float *x, int64_t n, int64_t c_stride, int64_t s)
{
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * c_stride;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < s; j++)
            acc += r[j];
        total += acc;
    }
    return total;
}

static double channel_sq_dev(const float *x, int64_t n, int64_t c_stride, int64_t s, float mean)
{
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * c_stride;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < s; j++) {
            float d = r[j] - mean;
            acc += d * d;
        }
        total += acc;
    }
    return total;
}

static void batch_norm_backward(em_node *node)
{
    const bn_saved *sv = node->saved;
    em_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const float *dy = node->out->grad;
    const int64_t n = sv->n, c = sv->c, s = sv->s, m = n * s, row = c * s;
    bool need_x = x->requires_grad, need_w = w && w->requires_grad, need_b = b && b->requires_grad;
#pragma omp parallel for schedule(static) if (x->numel >= PARALLEL_MIN_ELEMENTS)
    for (int64_t ch = 0; ch < c; ch++) {
        const float mean = sv->mean[ch], invstd = sv->invstd[ch];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const float *xr = x->data + i * row + ch * s, *dr = dy + i * row + ch * s;
            float a = 0.0f, bsum = 0.0f;
#pragma omp simd reduction(+ : a, bsum)
            for (int64_t j = 0; j < s; j++) {
                a += dr[j];
                bsum += dr[j] * (xr[j] - mean);
            }
            sum_dy += a;
            sum_dy_xhat += bsum;
        }
        sum_dy_xhat *= invstd;
        if (need_w)
            w->grad[ch] += (float)sum_dy_xhat;
        if (need_b)
            b->grad[ch] += (float)sum_dy;
        if (!need_x)
            continue;
        const float scale = (w ? w->data[ch] : 1.0f) * invstd;
        if (sv->batch_stats) {
            const float mean_dy = (float)(sum_dy / (double)m);
            const float mean_dy_xhat = (float)(sum_dy_xhat / (double)m);
            for (int64_t i = 0; i < n; i++) {
                const float *xr = x->data + i * row + ch * s, *dr = dy + i * row + ch * s;
                float *gx = x->grad + i * row + ch * s;
                for (int64_t j = 0; j < s; j++) {
                    float xhat = (xr[j] - mean) * invstd;
                    gx[j] += scale * (dr[j] - mean_dy - xhat * mean_dy_xhat);
                }
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                const float *dr = dy + i * row + ch * s;
                float *gx = x->grad + i * row + ch * s;
                for (int64_t j = 0; j < s; j++)
                    gx[j] += scale * dr[j];
            }
        }
    }
}

em_tensor *em_batch_norm(em_tensor *x, em_tensor *weight, em_tensor *bias, em_tensor *running_mean,
                         em_tensor *running_var, bool training, float momentum, float eps)
{
    if (!x)
        return NULL;
    if (x->ndim < 2 || x->ndim > 4)
        return em_error("batch_norm: input must be [N, C], [N, C, L] or [N, C, H, W], got %s",
                        em_shape_str(x)), NULL;
    const int64_t n = x->shape[0], c = x->shape[1], s = x->numel / (n * c), m = n * s;
    if (check_channel_vector("weight", weight, x, c) != EM_OK ||
        check_channel_vector("bias", bias, x, c) != EM_OK ||
        check_channel_vector("running_mean", running_mean, x, c) != EM_OK ||
        check_channel_vector("running_var", running_var, x, c) != EM_OK)
        return NULL;
    if ((running_mean == NULL) != (running_var == NULL))
        return em_error("batch_norm: running_mean and running_var must both be given or both NULL"),
               NULL;
    if (!(eps >= 0.0f) || !isfinite(momentum))
        return em_error("batch_norm: eps %g must be >= 0 and momentum %g finite", (double)eps,
                        (double)momentum), NULL;
    bool batch_stats = training || !running_mean;
    if (batch_stats && m < 2)
        return em_error("batch_norm: training needs more than one value per channel, input %s "
                        "has %lld", em_shape_str(x), (long long)m), NULL;

    bool has_w = weight != NULL, has_b = bias != NULL;
    x = em_contiguous(x);
    if (has_w)
        weight = em_contiguous(weight);
    if (has_b)
        bias = em_contiguous(bias);
    if (!x || (has_w && !weight) || (has_b && !bias))
        return NULL;
    em_tensor *out = em_tensor_empty(NULL, x->ndim, x->shape);
    float *stats = em_arena_alloc(em_step_arena(), (size_t)(4 * c) * sizeof(float));
    if (!out || !stats)
        return NULL;
    float *mean = stats, *invstd = stats + c, *run_mean = stats + 2 * c, *run_var = stats + 3 * c;
    if (running_mean) {
        em_copy_to(running_mean, run_mean);
        em_copy_to(running_var, run_var);
    }
    const int64_t row = c * s;
    const bool parallel = x->numel >= PARALLEL_MIN_ELEMENTS;

#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t ch = 0; ch < c; ch++) {
        const float *xc = x->data + ch * s;
        float var;
        if (batch_stats) {
            mean[ch] = (float)(channel_sum(xc, n, row, s) / (double)m);
            double sq = channel_sq_dev(xc, n, row, s, mean[ch]);
            var = (float)(sq / (double)m);
            if (training && running_mean) {
                run_mean[ch] = (1.0f - momentum) * run_mean[ch] + momentum * mean[ch];
                run_var[ch] = (1.0f - momentum) * run_var[ch] + momentum * (float)(sq / (double)(m - 1));
            }
        } else {
            mean[ch] = run_mean[ch];
            var = run_var[ch];
        }
        invstd[ch] = 1.0f / sqrtf(var + eps);
        const float scale = (weight ? weight->data[ch] : 1.0f) * invstd[ch];
        const float shift = (bias ? bias->data[ch] : 0.0f) - mean[ch] * scale;
        for (int64_t i = 0; i < n; i++) {
            const float *xr = xc + i * row;
            float *yr = out->data + i * row + ch * s;
            for (int64_t j = 0; j < s; j++)
                yr[j] = xr[j] * scale + shift;
        }
    }
    if (training && running_mean) {
        em_copy_from(running_mean, run_mean);
        em_copy_from(running_var, run_var);
    }

    em_node *node = em_record("batch_norm", out, 3, (em_tensor *[]){x, weight, bias}, batch_norm_backward);
    if (node) {
        bn_saved *sv = em_arena_alloc(em_step_arena(), sizeof *sv);
        if (!sv)
            return NULL;
        sv->n = n;
        sv->c = c;
        sv->s = s;
        sv->batch_stats = batch_stats;
        sv->mean = mean;
        sv->invstd = invstd;
        node->saved = sv;
    }
    return out;
}
