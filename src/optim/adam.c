/* Adam and AdamW with PyTorch 1.13's rules (torch.optim.Adam and AdamW, single-tensor
 * paths). They differ only in where the weight decay goes:
 *   Adam:  g = grad + weight_decay * p       (L2: the decay passes through the moments)
 *   AdamW: p = p * (1 - lr * weight_decay)   (decoupled, before the moments' update)
 * and then both do
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
    return (em_optim_opts){.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .alpha = 0.99f};
}

static em_optim_opts adamw_defaults(void)
{
    em_optim_opts o = adam_defaults();
    o.weight_decay = 1e-2f;
    return o;
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

/* The scalars of one step. */
typedef struct adam_coeffs {
    /* wd: the L2 factor (0 for AdamW); decay: AdamW's factor on p (1 for Adam, which
     * multiplies exactly) */
    float b1, b2, one_minus_b1, one_minus_b2, wd, decay, eps, step_size, bias_correction2_sqrt;
    bool zero_grad;
} adam_coeffs;

/* One contiguous range; restrict-qualified parameters let the compiler vectorize. With
 * amsgrad the running maximum is a second loop rather than a branch, because a
 * conditional store would keep the loop scalar. */
static void adam_range(float *restrict p, float *restrict grad, float *restrict m, float *restrict v,
                       float *restrict vmax, int64_t n, const adam_coeffs *k)
{
    const float b1 = k->b1, b2 = k->b2, c1 = k->one_minus_b1, c2 = k->one_minus_b2, wd = k->wd;
    const float decay = k->decay;
    const float eps = k->eps, step_size = k->step_size, bc2 = k->bias_correction2_sqrt;
    const bool zero_grad = k->zero_grad;
    if (!vmax) {
        for (int64_t i = 0; i < n; i++) {
            float g = grad[i] + wd * p[i];
            float mi = b1 * m[i] + c1 * g;
            float vi = b2 * v[i] + c2 * (g * g);
            m[i] = mi;
            v[i] = vi;
            p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) / bc2 + eps);
            grad[i] = zero_grad ? 0.0f : grad[i];
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] + wd * p[i];
        float mi = b1 * m[i] + c1 * g;
        float vi = b2 * v[i] + c2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        /* NaN propagates, as with torch.maximum. */
        float top = vmax[i] >= vi ? vmax[i] : vi;
        vmax[i] = top;
        p[i] = p[i] * decay - step_size * mi / (sqrtf(top) / bc2 + eps);
        grad[i] = zero_grad ? 0.0f : grad[i];
    }
}

static void adam_step(em_optim_slot *slot, bool zero_grad, bool decoupled)
{
    const em_optim_opts *o = slot->opts;
    const double t = (double)(slot->steps + 1);
    const double bias_correction1 = 1.0 - pow((double)o->beta1, t);
    const double bias_correction2 = 1.0 - pow((double)o->beta2, t);
    const adam_coeffs k = {
        .b1 = o->beta1,
        .b2 = o->beta2,
        .one_minus_b1 = (float)(1.0 - (double)o->beta1),
        .one_minus_b2 = (float)(1.0 - (double)o->beta2),
        .wd = decoupled ? 0.0f : o->weight_decay,
        .decay = decoupled ? (float)(1.0 - (double)o->lr * (double)o->weight_decay) : 1.0f,
        .eps = o->eps,
        .step_size = (float)((double)o->lr / bias_correction1),
        .bias_correction2_sqrt = (float)sqrt(bias_correction2),
        .zero_grad = zero_grad,
    };
    float *p = slot->param->data, *grad = slot->param->grad;
    float *m = slot->state[0], *v = slot->state[1], *vmax = o->amsgrad ? slot->state[2] : NULL;
    const int64_t n = slot->param->numel;
    const int64_t chunks = (n + EM_OPTIM_CHUNK - 1) / EM_OPTIM_CHUNK;
#pragma omp parallel for schedule(static) if (n >= EM_OPTIM_PARALLEL_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = c * EM_OPTIM_CHUNK, len = n - lo < EM_OPTIM_CHUNK ? n - lo : EM_OPTIM_CHUNK;
        adam_range(p + lo, grad + lo, m + lo, v + lo, vmax ? vmax + lo : NULL, len, &k);
    }
    slot->steps++;
}

static void adam_update(em_optim_slot *slot, bool zero_grad) { adam_step(slot, zero_grad, false); }
static void adamw_update(em_optim_slot *slot, bool zero_grad) { adam_step(slot, zero_grad, true); }

const em_optim_vtable em_adam_vtable = {
    .kind = EM_OPTIM_ADAM,
    .name = "adam",
    .defaults = adam_defaults,
    .validate = adam_validate,
    .state_count = adam_state_count,
    .state_names = adam_state_names,
    .update = adam_update,
};

const em_optim_vtable em_adamw_vtable = {
    .kind = EM_OPTIM_ADAMW,
    .name = "adamw",
    .defaults = adamw_defaults,
    .validate = adam_validate,
    .state_count = adam_state_count,
    .state_names = adam_state_names,
    .update = adamw_update,
};
