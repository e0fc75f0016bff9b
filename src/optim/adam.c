/* Adam with PyTorch 1.13's rule (torch.optim.Adam, single-tensor path):
 *   g = grad + weight_decay * p              (L2, unlike AdamW's decoupled decay)
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g * g
 *   vmax = max(vmax, v) and v = vmax          (amsgrad)
 *   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
 *   p = p - lr / (1 - beta1^t) * m / denom
 * The bias corrections are computed in double once per step, as PyTorch does them in
 * Python floats, then used as float32 scalars. */
#include <math.h>

#include "ember/error.h"
#include "optim/optim_internal.h"

static em_optim_opts adam_defaults(void)
{
    return (em_optim_opts){.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
}

static int adam_validate(const em_optim_opts *o)
{
    if (!(o->lr >= 0.0f) || isinf(o->lr))
        return em_error("invalid learning rate %g (must be a finite number >= 0)", (double)o->lr);
    if (!(o->eps >= 0.0f) || isinf(o->eps))
        return em_error("invalid eps %g (must be >= 0)", (double)o->eps);
    if (!(o->beta1 >= 0.0f && o->beta1 < 1.0f))
        return em_error("invalid beta1 %g (must be in [0, 1))", (double)o->beta1);
    if (!(o->beta2 >= 0.0f && o->beta2 < 1.0f))
        return em_error("invalid beta2 %g (must be in [0, 1))", (double)o->beta2);
    if (!(o->weight_decay >= 0.0f) || isinf(o->weight_decay))
        return em_error("invalid weight_decay %g (must be >= 0)", (double)o->weight_decay);
    return EM_OK;
}

static int adam_state_count(const em_optim_opts *o) { return o->amsgrad ? 3 : 2; }

static const char *const adam_state_names[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};

static void adam_update(em_optim_slot *slot, bool zero_grad)
{
    const em_optim_opts *o = slot->opts;
    float *restrict p = slot->param->data;
    float *restrict grad = slot->param->grad;
    float *restrict m = slot->state[0];
    float *restrict v = slot->state[1];
    float *restrict vmax = slot->state[2];
    const int64_t n = slot->param->numel;

    const double t = (double)(slot->steps + 1);
    const double bias_correction1 = 1.0 - pow((double)o->beta1, t);
    const double bias_correction2 = 1.0 - pow((double)o->beta2, t);
    const float step_size = (float)((double)o->lr / bias_correction1);
    const float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    const float b1 = o->beta1, b2 = o->beta2;
    const float one_minus_b1 = (float)(1.0 - (double)b1), one_minus_b2 = (float)(1.0 - (double)b2);
    const float wd = o->weight_decay, eps = o->eps;
    const bool amsgrad = o->amsgrad;

#pragma omp parallel for simd if (n >= EM_OPTIM_PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        if (wd != 0.0f)
            g += wd * p[i];
        float mi = b1 * m[i] + one_minus_b1 * g;
        float vi = b2 * v[i] + one_minus_b2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        if (amsgrad) {
            /* NaN propagates, as with torch.maximum */
            vi = vmax[i] >= vi ? vmax[i] : vi;
            vmax[i] = vi;
        }
        float denom = sqrtf(vi) / bias_correction2_sqrt + eps;
        p[i] -= step_size * mi / denom;
        if (zero_grad)
            grad[i] = 0.0f;
    }
    slot->steps++;
}

const em_optim_vtable em_adam_vtable = {
    .kind = EM_OPTIM_ADAM,
    .name = "adam",
    .defaults = adam_defaults,
    .validate = adam_validate,
    .state_count = adam_state_count,
    .state_names = adam_state_names,
    .update = adam_update,
};
