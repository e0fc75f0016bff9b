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

typedef struct sgd_coeffs {
    float lr, wd, momentum, keep; /* keep = 1 - dampening */
    bool first, nesterov, zero_grad;
} sgd_coeffs;

/* One contiguous range, vectorizable (restrict parameters, no conditional stores). */
static void sgd_range(float *restrict p, float *restrict grad, float *restrict buf, int64_t n,
                      const sgd_coeffs *k)
{
    const float lr = k->lr, wd = k->wd, mu = k->momentum, keep = k->keep;
    const bool zero_grad = k->zero_grad;
    if (!buf) {
        for (int64_t i = 0; i < n; i++) {
            p[i] -= lr * (grad[i] + wd * p[i]);
            grad[i] = zero_grad ? 0.0f : grad[i];
        }
        return;
    }
    /* The first step copies the gradient into the buffer, as PyTorch clones it: the
     * zero-initialised buffer with factors 0 and 1 gives exactly that. */
    const float old = k->first ? 0.0f : mu, add = k->first ? 1.0f : keep;
    const float look_ahead = k->nesterov ? mu : 0.0f, from_buf = k->nesterov ? 0.0f : 1.0f;
    const float from_grad = k->nesterov ? 1.0f : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] + wd * p[i];
        float b = old * buf[i] + add * g;
        buf[i] = b;
        p[i] -= lr * (from_grad * g + (look_ahead + from_buf) * b);
        grad[i] = zero_grad ? 0.0f : grad[i];
    }
}

static void sgd_update(em_optim_slot *slot, bool zero_grad)
{
    const em_optim_opts *o = slot->opts;
    const sgd_coeffs k = {
        .lr = o->lr,
        .wd = o->weight_decay,
        .momentum = o->momentum,
        .keep = (float)(1.0 - (double)o->dampening),
        .first = slot->steps == 0,
        .nesterov = o->nesterov,
        .zero_grad = zero_grad,
    };
    float *p = slot->param->data, *grad = slot->param->grad;
    float *buf = o->momentum != 0.0f ? slot->state[0] : NULL;
    const int64_t n = slot->param->numel;
    const int64_t chunks = (n + EM_OPTIM_CHUNK - 1) / EM_OPTIM_CHUNK;
#pragma omp parallel for schedule(static) if (n >= EM_OPTIM_PARALLEL_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = c * EM_OPTIM_CHUNK, len = n - lo < EM_OPTIM_CHUNK ? n - lo : EM_OPTIM_CHUNK;
        sgd_range(p + lo, grad + lo, buf ? buf + lo : NULL, len, &k);
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
