/* Activations: the dense kernels that fused layers (linear, conv) call on their output
 * pass, and the tape ops built on them. The kernels are plain loops over the branch-free
 * functions of fastmath.h, so they vectorise; large arrays are split in blocks over the
 * OpenMP team.
 *
 * Gradient inputs: relu, sigmoid and tanh differentiate from the output y (x may be NULL
 * in em_activation_backward); leaky_relu, gelu, gelu_tanh and silu from the input x (y
 * may be NULL). */
#include <string.h>

#include "ember/error.h"
#include "ember/ops.h"
#include "ops/dense.h"
#include "ops/fastmath.h"
#include "ops/fastmath16.h"

static const char *const activation_names[EM_ACT_COUNT] = {
    [EM_ACT_NONE] = "none",       [EM_ACT_RELU] = "relu",   [EM_ACT_LEAKY_RELU] = "leaky_relu",
    [EM_ACT_SIGMOID] = "sigmoid", [EM_ACT_TANH] = "tanh",   [EM_ACT_GELU] = "gelu",
    [EM_ACT_GELU_TANH] = "gelu_tanh", [EM_ACT_SILU] = "silu",
};

#define SQRT1_2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f
#define SQRT_2_OVER_PI 0.79788456080286536f
#define GELU_TANH_CUBIC 0.044715f

/* Elements per block of the parallel split: large enough to amortise the loop set-up,
 * small enough to balance two threads on modest arrays. */
#define ACTIVATION_BLOCK 8192

const char *em_activation_name(em_activation act)
{
    return (unsigned)act < EM_ACT_COUNT ? activation_names[act] : "unknown";
}

int em_activation_parse(const char *name, em_activation *act)
{
    for (int i = 0; i < EM_ACT_COUNT; i++)
        if (name && strcmp(name, activation_names[i]) == 0) {
            *act = (em_activation)i;
            return EM_OK;
        }
    char valid[160] = "";
    for (int i = 0; i < EM_ACT_COUNT; i++) {
        strcat(valid, i ? ", " : "");
        strcat(valid, activation_names[i]);
    }
    return em_error("unknown activation \"%s\" (valid: %s)", name ? name : "(null)", valid);
}

/* GELU (tanh form) on 16 lanes: W4's MLP spends more time here than in any op but the
 * GEMMs when the scalar loop runs. Every element goes through the vector arithmetic, the
 * tail too (padded), so that a value never depends on where it sits in the array: a row
 * computed alone (generation) equals the same row in a batch. */
static inline em_vf16 gelu_tanh_inner16(em_vf16 v)
{
    return SQRT_2_OVER_PI * (v + GELU_TANH_CUBIC * v * v * v);
}

static void gelu_tanh_forward(const float *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const em_vf16 v = em_load16(x + i);
        em_store16(y + i, v * em_sigmoid16(2.0f * gelu_tanh_inner16(v))); /* x·sigmoid(2u) */
    }
    if (i < n) {
        float pad[16] = {0};
        memcpy(pad, x + i, (size_t)(n - i) * sizeof(float));
        gelu_tanh_forward(pad, pad, 16);
        memcpy(y + i, pad, (size_t)(n - i) * sizeof(float));
    }
}

/* dx (+)= dy·(s + 2x·s(1-s)·u') with s = sigmoid(2u). */
static void gelu_tanh_backward(const float *x, const float *dy, float *dx, int64_t n, bool store)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const em_vf16 v = em_load16(x + i);
        const em_vf16 du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_TANH_CUBIC * v * v);
        const em_vf16 s = em_sigmoid16(2.0f * gelu_tanh_inner16(v));
        const em_vf16 g = em_load16(dy + i) * (s + 2.0f * v * s * (1.0f - s) * du);
        em_store16(dx + i, store ? g : em_load16(dx + i) + g);
    }
    if (i < n) {
        float pad[3][16] = {{0}};
        const size_t bytes = (size_t)(n - i) * sizeof(float);
        memcpy(pad[0], x + i, bytes);
        memcpy(pad[1], dy + i, bytes);
        if (!store)
            memcpy(pad[2], dx + i, bytes);
        gelu_tanh_backward(pad[0], pad[1], pad[2], 16, false);
        memcpy(dx + i, pad[2], bytes);
    }
}

static void forward_block(em_activation act, float param, const float *x, float *y, int64_t n)
{
    switch (act) {
    case EM_ACT_NONE:
        if (x != y)
            memmove(y, x, (size_t)n * sizeof(float));
        break;
    case EM_ACT_RELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* NaN stays NaN */
        break;
    case EM_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : x[i] * param;
        break;
    case EM_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            y[i] = em_fast_sigmoidf(x[i]);
        break;
    case EM_ACT_TANH:
        for (int64_t i = 0; i < n; i++)
            y[i] = em_fast_tanhf(x[i]);
        break;
    case EM_ACT_GELU:
        /* x·Φ(x) with Φ(x) = erfc(-x/√2)/2, which keeps its accuracy for negative x */
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] * 0.5f * em_fast_erfcf(-x[i] * SQRT1_2);
        break;
    case EM_ACT_GELU_TANH:
        /* x(1 + tanh u)/2 = x·sigmoid(2u): no cancellation for negative x */
        gelu_tanh_forward(x, y, n);
        break;
    case EM_ACT_SILU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] * em_fast_sigmoidf(x[i]);
        break;
    case EM_ACT_COUNT:
        break;
    }
}

/* dx += dy·act'(x), or dx = dy·act'(x) with store (dx's old contents never read). */
static void backward_block(em_activation act, float param, const float *x, const float *y,
                           const float *dy, float *dx, int64_t n, bool store)
{
    if (act == EM_ACT_GELU_TANH) {
        gelu_tanh_backward(x, dy, dx, n, store);
        return;
    }
    /* a block is at most ACTIVATION_BLOCK floats: clearing it first costs a pass in cache */
    if (store)
        memset(dx, 0, (size_t)n * sizeof(float));
    switch (act) {
    case EM_ACT_NONE:
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i];
        break;
    case EM_ACT_RELU: {
        const float *v = y ? y : x; /* y > 0 exactly where x > 0 */
        for (int64_t i = 0; i < n; i++)
            dx[i] += v[i] > 0.0f ? dy[i] : 0.0f;
        break;
    }
    case EM_ACT_LEAKY_RELU: {
        const float *v = x ? x : y;
        for (int64_t i = 0; i < n; i++)
            dx[i] += v[i] > 0.0f ? dy[i] : dy[i] * param;
        break;
    }
    case EM_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        break;
    case EM_ACT_TANH:
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] * (1.0f - y[i] * y[i]);
        break;
    case EM_ACT_GELU:
        /* Φ(x) + x·φ(x) */
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            float cdf = 0.5f * em_fast_erfcf(-v * SQRT1_2);
            float pdf = INV_SQRT_2PI * em_fast_expf(-0.5f * v * v);
            dx[i] += dy[i] * (cdf + v * pdf);
        }
        break;
    case EM_ACT_GELU_TANH:
        break; /* done before the switch, on vectors */
    case EM_ACT_SILU:
        for (int64_t i = 0; i < n; i++) {
            float s = em_fast_sigmoidf(x[i]);
            dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    case EM_ACT_COUNT:
        break;
    }
}

void em_activation_forward(em_activation act, float param, const float *x, float *y, int64_t n)
{
    if (n <= EM_PARALLEL_MIN_ELEMENTS) {
        forward_block(act, param, x, y, n);
        return;
    }
    int64_t blocks = (n + ACTIVATION_BLOCK - 1) / ACTIVATION_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t start = b * ACTIVATION_BLOCK;
        int64_t len = n - start < ACTIVATION_BLOCK ? n - start : ACTIVATION_BLOCK;
        forward_block(act, param, x + start, y + start, len);
    }
}

static void backward_blocks(em_activation act, float param, const float *x, const float *y,
                            const float *dy, float *dx, int64_t n, bool store)
{
    if (n <= EM_PARALLEL_MIN_ELEMENTS) {
        backward_block(act, param, x, y, dy, dx, n, store);
        return;
    }
    int64_t blocks = (n + ACTIVATION_BLOCK - 1) / ACTIVATION_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t start = b * ACTIVATION_BLOCK;
        int64_t len = n - start < ACTIVATION_BLOCK ? n - start : ACTIVATION_BLOCK;
        backward_block(act, param, x ? x + start : NULL, y ? y + start : NULL, dy + start,
                       dx + start, len, store);
    }
}

void em_activation_backward(em_activation act, float param, const float *x, const float *y,
                            const float *dy, float *dx, int64_t n)
{
    backward_blocks(act, param, x, y, dy, dx, n, false);
}

void em_activation_gradient(em_activation act, float param, const float *x, const float *y,
                            const float *dy, float *dx, int64_t n)
{
    backward_blocks(act, param, x, y, dy, dx, n, true);
}

static bool backward_reads_input(em_activation act)
{
    return act == EM_ACT_LEAKY_RELU || act == EM_ACT_GELU || act == EM_ACT_GELU_TANH ||
           act == EM_ACT_SILU;
}

static void activation_backward(em_node *node)
{
    em_activation act = (em_activation)node->i[0];
    em_activation_backward(act, node->f[0], node->saved, node->out->data, node->out->grad,
                           node->in[0]->grad, node->out->numel);
}

static em_tensor *activation_op(em_activation act, float param, em_tensor *a)
{
    if (!a)
        return NULL;
    em_tensor *out = em_tensor_empty(NULL, a->ndim, a->shape);
    if (!out)
        return NULL;
    bool keep_input = backward_reads_input(act) && a->requires_grad && em_grad_enabled();
    const float *x;
    if (em_is_contiguous(a)) {
        x = a->data;
    } else if (keep_input) {
        if (!(x = em_dense_data(a)))
            return NULL;
    } else {
        em_copy_to(a, out->data); /* and map it in place */
        x = out->data;
    }
    em_activation_forward(act, param, x, out->data, out->numel);
    em_node *n = em_record(activation_names[act], out, 1, &a, activation_backward);
    if (n) {
        n->i[0] = act;
        n->f[0] = param;
        n->saved = backward_reads_input(act) ? (void *)x : NULL;
    }
    return out;
}

em_tensor *em_relu(em_tensor *a) { return activation_op(EM_ACT_RELU, 0.0f, a); }
em_tensor *em_leaky_relu(em_tensor *a, float negative_slope)
{
    return activation_op(EM_ACT_LEAKY_RELU, negative_slope, a);
}
em_tensor *em_sigmoid(em_tensor *a) { return activation_op(EM_ACT_SIGMOID, 0.0f, a); }
em_tensor *em_tanh(em_tensor *a) { return activation_op(EM_ACT_TANH, 0.0f, a); }
em_tensor *em_gelu(em_tensor *a) { return activation_op(EM_ACT_GELU, 0.0f, a); }
em_tensor *em_gelu_tanh(em_tensor *a) { return activation_op(EM_ACT_GELU_TANH, 0.0f, a); }
em_tensor *em_silu(em_tensor *a) { return activation_op(EM_ACT_SILU, 0.0f, a); }

em_tensor *em_activate(em_tensor *a, em_activation act, float param)
{
    if (!a)
        return NULL;
    if (act == EM_ACT_NONE)
        return a;
    if ((unsigned)act >= EM_ACT_COUNT)
        return em_error("activate: unknown activation %d (valid: 0 to %d)", (int)act,
                        EM_ACT_COUNT - 1), NULL;
    return activation_op(act, param, a);
}
