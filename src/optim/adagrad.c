/* Adagrad with PyTorch 1.13's rule (torch.optim.Adagrad, dense single-tensor path):
 *   g = grad + weight_decay * p
 *   clr = lr / (1 + (t - 1) * lr_decay)        (t: this tensor's step, from 1)
 *   sum = sum + g * g                           (sum starts at initial_accumulator_value)
 *   p = p - clr * g / (sqrt(sum) + eps)
 * clr is computed in double, as PyTorch does in Python floats, then used as a float. */
#include <math.h>

#include "ember/error.h"
#include "optim/optim_internal.h"

static em_optim_opts adagrad_defaults(void)
{
    return (em_optim_opts){.lr = 1e-2f, .eps = 1e-10f, .beta1 = 0.9f, .beta2 = 0.999f, .alpha = 0.99f};
}

static int check_non_negative(const char *what, float v)
{
    if (!(v >= 0.0f) || isinf(v))
        return em_error("invalid %s %g (must be a finite number >= 0)", what, (double)v);
    return EM_OK;
}

static int adagrad_validate(const em_optim_opts *o)
{
    if (check_non_negative("learning rate", o->lr) != EM_OK || check_non_negative("lr_decay", o->lr_decay) != EM_OK ||
        check_non_negative("weight_decay", o->weight_decay) != EM_OK ||
        check_non_negative("initial_accumulator_value", o->initial_accumulator_value) != EM_OK ||
        check_non_negative("eps", o->eps) != EM_OK)
        return EM_ERR;
    return EM_OK;
}

static int adagrad_state_count(const em_optim_opts *o)
{
    (void)o;
    return 1;
}

static const char *const adagrad_state_names[] = {"sum"};

static void adagrad_init_state(em_optim_slot *slot)
{
    const float start = slot->opts->initial_accumulator_value;
    float *sum = slot->state[0];
    for (int64_t i = 0; i < slot->param->numel; i++)
        sum[i] = start;
}

typedef struct adagrad_coeffs {
    float neg_clr, wd, eps;
    bool zero_grad;
} adagrad_coeffs;

static void adagrad_range(float *restrict p, float *restrict grad, float *restrict sum, int64_t n,
                          const adagrad_coeffs *k)
{
    const float neg_clr = k->neg_clr, wd = k->wd, eps = k->eps;
    const bool zero_grad = k->zero_grad;
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] + wd * p[i];
        float s = sum[i] + g * g;
        sum[i] = s;
        p[i] += neg_clr * g / (sqrtf(s) + eps);
        grad[i] = zero_grad ? 0.0f : grad[i];
    }
}

static void adagrad_update(em_optim_slot *slot, bool zero_grad)
{
    const em_optim_opts *o = slot->opts;
    const double t = (double)(slot->steps + 1);
    const double clr = (double)o->lr / (1.0 + (t - 1.0) * (double)o->lr_decay);
    const adagrad_coeffs k = {
        .neg_clr = (float)-clr,
        .wd = o->weight_decay,
        .eps = o->eps,
        .zero_grad = zero_grad,
    };
    float *p = slot->param->data, *grad = slot->param->grad, *sum = slot->state[0];
    const int64_t n = slot->param->numel;
    const int64_t chunks = (n + EM_OPTIM_CHUNK - 1) / EM_OPTIM_CHUNK;
#pragma omp parallel for schedule(static) if (n >= EM_OPTIM_PARALLEL_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = c * EM_OPTIM_CHUNK, len = n - lo < EM_OPTIM_CHUNK ? n - lo : EM_OPTIM_CHUNK;
        adagrad_range(p + lo, grad + lo, sum + lo, len, &k);
    }
    slot->steps++;
}

const em_optim_vtable em_adagrad_vtable = {
    .kind = EM_OPTIM_ADAGRAD,
    .name = "adagrad",
    .defaults = adagrad_defaults,
    .validate = adagrad_validate,
    .state_count = adagrad_state_count,
    .state_names = adagrad_state_names,
    .init_state = adagrad_init_state,
    .update = adagrad_update,
};
