/* RMSProp with PyTorch 1.13's rule (torch.optim.RMSprop, single-tensor path):
 *   g = grad + weight_decay * p
 *   v = alpha * v + (1 - alpha) * g * g
 *   centered: a = alpha * a + (1 - alpha) * g, and the denominator uses v - a * a
 *   d = sqrt(v or v - a * a) + eps
 *   momentum > 0: buf = momentum * buf + g / d, p = p - lr * buf
 *   otherwise:    p = p - lr * g / d
 * The buffers keep one layout whatever the options (square_avg, momentum_buffer,
 * grad_avg, as PyTorch names them), so that a buffer's index always means the same
 * thing; centered without momentum carries an unused momentum buffer. */
#include <math.h>

#include "ember/error.h"
#include "optim/optim_internal.h"

enum { SQUARE_AVG = 0, MOMENTUM_BUFFER = 1, GRAD_AVG = 2 };

static em_optim_opts rmsprop_defaults(void)
{
    return (em_optim_opts){.lr = 1e-2f, .alpha = 0.99f, .eps = 1e-8f, .beta1 = 0.9f, .beta2 = 0.999f};
}

static int rmsprop_validate(const em_optim_opts *o)
{
    struct {
        const char *name;
        float v;
    } checks[] = {{"learning rate", o->lr}, {"eps", o->eps}, {"momentum", o->momentum},
                  {"weight_decay", o->weight_decay}, {"alpha", o->alpha}};
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (!(checks[i].v >= 0.0f) || isinf(checks[i].v))
            return em_error("invalid %s %g (must be a finite number >= 0)", checks[i].name, (double)checks[i].v);
    return EM_OK;
}

static int rmsprop_state_count(const em_optim_opts *o)
{
    return o->centered ? 3 : o->momentum > 0.0f ? 2 : 1;
}

static const char *const rmsprop_state_names[] = {"square_avg", "momentum_buffer", "grad_avg"};

typedef struct rmsprop_coeffs {
    float lr, alpha, one_minus_alpha, wd, eps, momentum;
    bool zero_grad;
} rmsprop_coeffs;

/* One loop per variant keeps each free of branches, so that each vectorizes. */
static void rmsprop_range(float *restrict p, float *restrict grad, float *restrict v, float *restrict buf,
                          float *restrict avg, int64_t n, const rmsprop_coeffs *k)
{
    const float lr = k->lr, a = k->alpha, c = k->one_minus_alpha, wd = k->wd, eps = k->eps, mu = k->momentum;
    const bool zero_grad = k->zero_grad;
    if (!avg && !buf) {
        for (int64_t i = 0; i < n; i++) {
            float g = grad[i] + wd * p[i];
            float vi = v[i] * a + c * (g * g);
            v[i] = vi;
            p[i] += -lr * g / (sqrtf(vi) + eps);
            grad[i] = zero_grad ? 0.0f : grad[i];
        }
    } else if (!avg) {
        for (int64_t i = 0; i < n; i++) {
            float g = grad[i] + wd * p[i];
            float vi = v[i] * a + c * (g * g);
            v[i] = vi;
            float b = buf[i] * mu + g / (sqrtf(vi) + eps);
            buf[i] = b;
            p[i] += -lr * b;
            grad[i] = zero_grad ? 0.0f : grad[i];
        }
    } else if (!buf) {
        for (int64_t i = 0; i < n; i++) {
            float g = grad[i] + wd * p[i];
            float vi = v[i] * a + c * (g * g);
            float ai = avg[i] * a + c * g;
            v[i] = vi;
            avg[i] = ai;
            p[i] += -lr * g / (sqrtf(vi - ai * ai) + eps);
            grad[i] = zero_grad ? 0.0f : grad[i];
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float g = grad[i] + wd * p[i];
            float vi = v[i] * a + c * (g * g);
            float ai = avg[i] * a + c * g;
            v[i] = vi;
            avg[i] = ai;
            float b = buf[i] * mu + g / (sqrtf(vi - ai * ai) + eps);
            buf[i] = b;
            p[i] += -lr * b;
            grad[i] = zero_grad ? 0.0f : grad[i];
        }
    }
}

static void rmsprop_update(em_optim_slot *slot, bool zero_grad)
{
    const em_optim_opts *o = slot->opts;
    const rmsprop_coeffs k = {
        .lr = o->lr,
        .alpha = o->alpha,
        .one_minus_alpha = (float)(1.0 - (double)o->alpha),
        .wd = o->weight_decay,
        .eps = o->eps,
        .momentum = o->momentum,
        .zero_grad = zero_grad,
    };
    float *p = slot->param->data, *grad = slot->param->grad, *v = slot->state[SQUARE_AVG];
    float *buf = o->momentum > 0.0f ? slot->state[MOMENTUM_BUFFER] : NULL;
    float *avg = o->centered ? slot->state[GRAD_AVG] : NULL;
    const int64_t n = slot->param->numel;
    const int64_t chunks = (n + EM_OPTIM_CHUNK - 1) / EM_OPTIM_CHUNK;
#pragma omp parallel for schedule(static) if (n >= EM_OPTIM_PARALLEL_MIN)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = c * EM_OPTIM_CHUNK, len = n - lo < EM_OPTIM_CHUNK ? n - lo : EM_OPTIM_CHUNK;
        rmsprop_range(p + lo, grad + lo, v + lo, buf ? buf + lo : NULL, avg ? avg + lo : NULL, len, &k);
    }
    slot->steps++;
}

const em_optim_vtable em_rmsprop_vtable = {
    .kind = EM_OPTIM_RMSPROP,
    .name = "rmsprop",
    .defaults = rmsprop_defaults,
    .validate = rmsprop_validate,
    .state_count = rmsprop_state_count,
    .state_names = rmsprop_state_names,
    .update = rmsprop_update,
};
