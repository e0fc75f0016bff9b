/* Stochastic gradient descent with PyTorch's rule (torch.optim.SGD):
 *   g = grad + weight_decay * p
 *   buf = g on a parameter's first step, else momentum * buf + (1 - dampening) * g
 *   g = g + momentum * buf with nesterov, else g = buf     (when momentum != 0)
 *   p = p - lr * g */
#include <math.h>

#include "ember/error.h"
#include "optim/optim_internal.h"

static em_optim_opts sgd_defaults(void)
{
    return (em_optim_opts){.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
}

static int sgd_validate(const em_optim_opts *o)
{
    if (!(o->lr >= 0.0f) || isinf(o->lr))
        return em_error("invalid learning rate %g (must be a finite number >= 0)", (double)o->lr);
    if (!(o->momentum >= 0.0f) || isinf(o->momentum))
        return em_error("invalid momentum %g (must be >= 0)", (double)o->momentum);
    if (!(o->dampening >= 0.0f && o->dampening <= 1.0f))
        return em_error("invalid dampening %g (must be in [0, 1])", (double)o->dampening);
    if (!(o->weight_decay >= 0.0f) || isinf(o->weight_decay))
        return em_error("invalid weight_decay %g (must be >= 0)", (double)o->weight_decay);
    if (o->nesterov && (o->momentum <= 0.0f || o->dampening != 0.0f))
        return em_error("nesterov needs a momentum > 0 and zero dampening (momentum %g, dampening %g)",
                        (double)o->momentum, (double)o->dampening);
    return EM_OK;
}

static int sgd_state_count(const em_optim_opts *o) { return o->momentum != 0.0f ? 1 : 0; }

static const char *const sgd_state_names[] = {"momentum_buffer"};

static void sgd_update(em_optim_slot *slot, bool zero_grad)
{
    const em_optim_opts *o = slot->opts;
    float *restrict p = slot->param->data;
    float *restrict grad = slot->param->grad;
    float *restrict buf = slot->state[0];
    const int64_t n = slot->param->numel;
    const float lr = o->lr, wd = o->weight_decay, mu = o->momentum;
    const float keep = (float)(1.0 - (double)o->dampening);
    const bool with_momentum = mu != 0.0f, first = slot->steps == 0, nesterov = o->nesterov;

#pragma omp parallel for simd if (n >= EM_OPTIM_PARALLEL_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        if (wd != 0.0f)
            g += wd * p[i];
        if (with_momentum) {
            float b = first ? g : mu * buf[i] + keep * g;
            buf[i] = b;
            g = nesterov ? g + mu * b : b;
        }
        p[i] -= lr * g;
        if (zero_grad)
            grad[i] = 0.0f;
    }
    slot->steps++;
}

const em_optim_vtable em_sgd_vtable = {
    .kind = EM_OPTIM_SGD,
    .name = "sgd",
    .defaults = sgd_defaults,
    .validate = sgd_validate,
    .state_count = sgd_state_count,
    .state_names = sgd_state_names,
    .update = sgd_update,
};
