/* neg, exp, log, sqrt, pow: elementwise maps whose gradients need only the input or the
 * output, so backward is one dense loop. */
#include <math.h>

#include "ember/error.h"
#include "ember/ops.h"
#include "ops/dense.h"
#include "ops/fastmath.h"

typedef enum unary_op { UNARY_NEG, UNARY_EXP, UNARY_LOG, UNARY_SQRT, UNARY_POW } unary_op;

static const char *const unary_names[] = {"neg", "exp", "log", "sqrt", "pow"};

/* Exponents with a cheaper exact form than powf. */
static float pow_one(float x, float p)
{
    if (p == 2.0f)
        return x * x;
    if (p == 1.0f)
        return x;
    if (p == 0.0f)
        return 1.0f; /* as PyTorch: x^0 = 1 even for 0, inf and NaN */
    if (p == 0.5f)
        return sqrtf(x);
    if (p == 3.0f)
        return x * x * x;
    if (p == -1.0f)
        return 1.0f / x;
    return powf(x, p);
}

/* y may be x (the non-contiguous path maps a dense copy in place). */
static void unary_forward(unary_op op, float p, const float *x, float *y, int64_t n)
{
    switch (op) {
    case UNARY_NEG:
        for (int64_t i = 0; i < n; i++)
            y[i] = -x[i];
        break;
    case UNARY_EXP:
#pragma omp parallel for schedule(static) if (n > EM_PARALLEL_MIN_ELEMENTS)
        for (int64_t i = 0; i < n; i++)
            y[i] = em_fast_expf(x[i]);
        break;
    case UNARY_LOG:
#pragma omp parallel for schedule(static) if (n > EM_PARALLEL_MIN_ELEMENTS)
        for (int64_t i = 0; i < n; i++)
            y[i] = logf(x[i]);
        break;
    case UNARY_SQRT:
        for (int64_t i = 0; i < n; i++)
            y[i] = sqrtf(x[i]);
        break;
    case UNARY_POW:
        if (p == 2.0f) {
            for (int64_t i = 0; i < n; i++)
                y[i] = x[i] * x[i];
        } else {
#pragma omp parallel for schedule(static) if (n > EM_PARALLEL_MIN_ELEMENTS)
            for (int64_t i = 0; i < n; i++)
                y[i] = pow_one(x[i], p);
        }
        break;
    }
}

static void unary_backward(em_node *node)
{
    unary_op op = (unary_op)node->i[0];
    float p = node->f[0];
    const float *x = node->saved; /* dense input, kept by log and pow only */
    const float *y = node->out->data;
    const float *g = node->out->grad;
    float *dx = node->in[0]->grad;
    int64_t n = node->out->numel;
    switch (op) {
    case UNARY_NEG:
        for (int64_t i = 0; i < n; i++)
            dx[i] -= g[i];
        break;
    case UNARY_EXP:
        for (int64_t i = 0; i < n; i++)
            dx[i] += g[i] * y[i];
        break;
    case UNARY_LOG:
        for (int64_t i = 0; i < n; i++)
            dx[i] += g[i] / x[i];
        break;
    case UNARY_SQRT:
        for (int64_t i = 0; i < n; i++)
            dx[i] += g[i] * 0.5f / y[i];
        break;
    case UNARY_POW:
        /* p·x^(p-1); the exponent-0 gradient is 0 everywhere, as in PyTorch */
        if (p == 0.0f)
            break;
        if (p == 1.0f) {
            for (int64_t i = 0; i < n; i++)
                dx[i] += g[i];
        } else if (p == 2.0f) {
            for (int64_t i = 0; i < n; i++)
                dx[i] += g[i] * 2.0f * x[i];
        } else {
#pragma omp parallel for schedule(static) if (n > EM_PARALLEL_MIN_ELEMENTS)
            for (int64_t i = 0; i < n; i++)
                dx[i] += g[i] * p * pow_one(x[i], p - 1.0f);
        }
        break;
    }
}

static em_tensor *unary(unary_op op, em_tensor *a, float p)
{
    if (!a)
        return NULL;
    em_tensor *out = em_tensor_empty(NULL, a->ndim, a->shape);
    if (!out)
        return NULL;
    bool needs_input = op == UNARY_LOG || op == UNARY_POW;
    const float *x;
    if (em_is_contiguous(a)) {
        x = a->data;
    } else if (needs_input && a->requires_grad && em_grad_enabled()) {
        /* backward will need the input in row-major order: keep a dense copy */
        if (!(x = em_dense_data(a)))
            return NULL;
    } else {
        em_copy_to(a, out->data);
        x = out->data;
    }
    unary_forward(op, p, x, out->data, out->numel);
    em_node *n = em_record(unary_names[op], out, 1, &a, unary_backward);
    if (n) {
        n->i[0] = op;
        n->f[0] = p;
        n->saved = needs_input ? (void *)x : NULL;
    }
    return out;
}

em_tensor *em_neg(em_tensor *a) { return unary(UNARY_NEG, a, 0.0f); }
em_tensor *em_exp(em_tensor *a) { return unary(UNARY_EXP, a, 0.0f); }
em_tensor *em_log(em_tensor *a) { return unary(UNARY_LOG, a, 0.0f); }
em_tensor *em_sqrt(em_tensor *a) { return unary(UNARY_SQRT, a, 0.0f); }
em_tensor *em_pow(em_tensor *a, float exponent) { return unary(UNARY_POW, a, exponent); }
