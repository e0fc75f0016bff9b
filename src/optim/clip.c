/* Gradient norms and clipping over the tensors an optimizer updates, as
 * torch.nn.utils.clip_grad_norm_ and clip_grad_value_ do over a model's parameters.
 * The norm is accumulated in double over fixed chunks whose partial results are
 * combined in order, so that it is the same whatever the number of threads. */
#include <math.h>

#include "ember/error.h"
#include "optim/optim_internal.h"

/* Chunks whose partial sums are held at once (on the stack). */
#define PARTIALS 256

typedef enum norm_kind { NORM_TWO, NORM_MAX, NORM_P } norm_kind;

static double range_sum(const float *restrict g, int64_t n, norm_kind kind, double p)
{
    double s = 0.0;
    if (kind == NORM_TWO) {
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; i++)
            s += (double)g[i] * (double)g[i];
    } else if (kind == NORM_MAX) {
        for (int64_t i = 0; i < n; i++) {
            double a = fabs((double)g[i]);
            /* NaN wins, as torch.norm(inf) propagates it. */
            s = (a > s || isnan(a)) && !isnan(s) ? a : s;
        }
    } else {
        for (int64_t i = 0; i < n; i++)
            s += pow(fabs((double)g[i]), p);
    }
    return s;
}

double em_optim_grad_norm(const em_optim *opt, double norm_type)
{
    if (!opt)
        return 0.0;
    if (!(norm_type > 0.0)) {
        em_error("gradient norm: the norm type must be > 0 (2 or inf), got %g", norm_type);
        return NAN;
    }
    norm_kind kind = norm_type == 2.0 ? NORM_TWO : isinf(norm_type) ? NORM_MAX : NORM_P;
    double total = 0.0;
    for (int i = 0; i < opt->n_slots; i++) {
        const em_tensor *t = opt->slots[i].param;
        if (!t->grad)
            continue;
        const int64_t n = t->numel;
        const int64_t chunks = (n + EM_OPTIM_CHUNK - 1) / EM_OPTIM_CHUNK;
        for (int64_t c0 = 0; c0 < chunks; c0 += PARTIALS) {
            int m = chunks - c0 < PARTIALS ? (int)(chunks - c0) : PARTIALS;
            double part[PARTIALS];
#pragma omp parallel for schedule(static) if (n >= EM_OPTIM_PARALLEL_MIN)
            for (int j = 0; j < m; j++) {
                int64_t lo = (c0 + j) * EM_OPTIM_CHUNK;
                int64_t len = n - lo < EM_OPTIM_CHUNK ? n - lo : EM_OPTIM_CHUNK;
                part[j] = range_sum(t->grad + lo, len, kind, norm_type);
            }
            for (int j = 0; j < m; j++) {
                if (kind == NORM_MAX)
                    total = (part[j] > total || isnan(part[j])) && !isnan(total) ? part[j] : total;
                else
                    total += part[j];
            }
        }
    }
    if (kind == NORM_TWO)
        return sqrt(total);
    if (kind == NORM_P)
        return pow(total, 1.0 / norm_type);
    return total;
}

double em_optim_clip_grad_norm(em_optim *opt, double max_norm, double norm_type)
{
    if (!opt)
        return 0.0;
    if (!(max_norm > 0.0)) {
        em_error("gradient clipping: max_norm must be > 0, got %g", max_norm);
        return NAN;
    }
    double total = em_optim_grad_norm(opt, norm_type);
    if (!isfinite(total))
        return total;
    /* PyTorch computes the coefficient on float32 tensors. */
    float coef = (float)max_norm / ((float)total + 1e-6f);
    if (coef >= 1.0f)
        return total;
    for (int i = 0; i < opt->n_slots; i++) {
        em_tensor *t = opt->slots[i].param;
        if (!t->grad)
            continue;
        float *restrict g = t->grad;
        const int64_t n = t->numel;
#pragma omp parallel for schedule(static) if (n >= EM_OPTIM_PARALLEL_MIN)
        for (int64_t k = 0; k < n; k++)
            g[k] *= coef;
    }
    return total;
}

void em_optim_clip_grad_value(em_optim *opt, float clip)
{
    if (!opt)
        return;
    const float hi = fabsf(clip), lo = -hi;
    for (int i = 0; i < opt->n_slots; i++) {
        em_tensor *t = opt->slots[i].param;
        if (!t->grad)
            continue;
        float *restrict g = t->grad;
        const int64_t n = t->numel;
        /* NaN stays NaN, as torch.clamp keeps it. */
#pragma omp parallel for schedule(static) if (n >= EM_OPTIM_PARALLEL_MIN)
        for (int64_t k = 0; k < n; k++)
            g[k] = g[k] < lo ? lo : g[k] > hi ? hi : g[k];
    }
}
