/* Differentiable ops. Each returns a new tensor in the step arena (views share data),
 * records itself on the tape when gradients are needed, and returns NULL with an error
 * naming the shapes when its inputs do not fit. A NULL input gives a NULL output, so a
 * chain of ops can be checked once at its end. */
#ifndef EMBER_OPS_H
#define EMBER_OPS_H

#include "ember/autograd.h"
#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- views and copies (src/ops/view.c) ------------------------------------------- */
/* A dim of -1 is inferred. A view when t is contiguous, else a copy. */
em_tensor *em_reshape(em_tensor *t, int ndim, const int64_t *shape);
em_tensor *em_flatten(em_tensor *t, int start_dim); /* [N, a, b] -> [N, a*b] for 1 */
em_tensor *em_transpose(em_tensor *t, int dim0, int dim1);
em_tensor *em_permute(em_tensor *t, const int *perm);
/* Elements start, start+step, ... < end along dim (negative start/end count from the end). */
em_tensor *em_slice(em_tensor *t, int dim, int64_t start, int64_t end, int64_t step);
/* t itself when contiguous, else a dense copy. */
em_tensor *em_contiguous(em_tensor *t);
/* Copy to a broadcast shape. */
em_tensor *em_expand(em_tensor *t, int ndim, const int64_t *shape);
/* Concatenation along dim. */
em_tensor *em_concat(em_tensor *const *ts, int n, int dim);

/* ---- elementwise with broadcasting (src/ops/binary.c) ---------------------------- */
em_tensor *em_add(em_tensor *a, em_tensor *b);
em_tensor *em_sub(em_tensor *a, em_tensor *b);
em_tensor *em_mul(em_tensor *a, em_tensor *b);
em_tensor *em_div(em_tensor *a, em_tensor *b);
em_tensor *em_add_scalar(em_tensor *a, float s);
em_tensor *em_mul_scalar(em_tensor *a, float s);
/* Broadcast shape of a and b (NumPy rules); EM_ERR naming both shapes if none. */
int em_broadcast_shape(const em_tensor *a, const em_tensor *b, int *ndim, int64_t *shape);
/* Sums a dense gradient of shape `from` down to `to` (the reverse of broadcasting),
 * accumulating into dst (dense, shape `to`). */
void em_reduce_to_shape(const float *src, int from_ndim, const int64_t *from,
                        float *dst, int to_ndim, const int64_t *to);

/* ---- elementwise math (src/ops/unary.c) ----------------------------------------- */
em_tensor *em_neg(em_tensor *a);
em_tensor *em_exp(em_tensor *a);
em_tensor *em_log(em_tensor *a);
em_tensor *em_sqrt(em_tensor *a);
em_tensor *em_pow(em_tensor *a, float exponent);

/* ---- activations (src/ops/activation.c) ------------------------------------------ */
typedef enum em_activation {
    EM_ACT_NONE = 0,
    EM_ACT_RELU,
    EM_ACT_LEAKY_RELU, /* param: negative slope (PyTorch default 0.01) */
    EM_ACT_SIGMOID,
    EM_ACT_TANH,
    EM_ACT_GELU,       /* exact, with erf */
    EM_ACT_GELU_TANH,  /* tanh approximation */
    EM_ACT_SILU,
    EM_ACT_COUNT
} em_activation;

em_tensor *em_relu(em_tensor *a);
em_tensor *em_leaky_relu(em_tensor *a, float negative_slope);
em_tensor *em_sigmoid(em_tensor *a);
em_tensor *em_tanh(em_tensor *a);
em_tensor *em_gelu(em_tensor *a);
em_tensor *em_gelu_tanh(em_tensor *a);
em_tensor *em_silu(em_tensor *a);
/* Any of the above by enum (EM_ACT_NONE returns a unchanged). */
em_tensor *em_activate(em_tensor *a, em_activation act, float param);
/* "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu", "none". */
const char *em_activation_name(em_activation act);
/* EM_ERR with the list of valid names if unknown. */
int em_activation_parse(const char *name, em_activation *act);
/* In-place forward/backward on dense arrays, for fused kernels (linear, conv):
 * y = act(x); dx += dy * act'(x) given x (pre-activation) and y. */
void em_activation_forward(em_activation act, float param, const float *x, float *y, int64_t n);
void em_activation_backward(em_activation act, float param, const float *x, const float *y,
                            const float *dy, float *dx, int64_t n);
/* The same gradient written rather than added: dx = dy * act'(x) (dx's contents unread,
 * so it needs no clearing first). */
void em_activation_gradient(em_activation act, float param, const float *x, const float *y,
                            const float *dy, float *dx, int64_t n);

em_tensor *em_softmax(em_tensor *a, int dim);
em_tensor *em_log_softmax(em_tensor *a, int dim);

/* ---- reductions (src/ops/reduce.c) ----------------------------------------------- */
/* Over the listed dims (negative dims count from the end); n_dims == 0 means all. */
em_tensor *em_sum(em_tensor *a, int n_dims, const int *dims, bool keepdim);
em_tensor *em_mean(em_tensor *a, int n_dims, const int *dims, bool keepdim);
/* Gradient flows to the maximum (first one on ties). */
em_tensor *em_max(em_tensor *a, int n_dims, const int *dims, bool keepdim);
em_tensor *em_sum_all(em_tensor *a);
em_tensor *em_mean_all(em_tensor *a);

/* ---- matrix products (src/ops/matmul.c) ------------------------------------------ */
/* [m,k]x[k,n]; batched [...,m,k]x[...,k,n] with broadcast batch dims. cblas_sgemm. */
em_tensor *em_matmul(em_tensor *a, em_tensor *b);
/* y = act(x W^T + b): x [N, in], w [out, in] (PyTorch layout), b [out] or NULL.
 * Bias and activation are fused into the GEMM output pass. */
em_tensor *em_linear(em_tensor *x, em_tensor *w, em_tensor *b, em_activation act, float act_param);

/* ---- losses (src/ops/loss.c); all reduce with the mean ---------------------------- */
em_tensor *em_mse_loss(em_tensor *pred, em_tensor *target);
/* logits [N, C], labels N class indices in [0, C); label_smoothing in [0, 1). */
em_tensor *em_cross_entropy(em_tensor *logits, const int32_t *labels, float label_smoothing);
/* logits and targets (probabilities in [0,1]) of the same shape. */
em_tensor *em_bce_with_logits(em_tensor *logits, em_tensor *targets);

/* ---- non-differentiable helpers ------------------------------------------------ */
/* Index of the largest value in each row of a [N, C] tensor. */
void em_argmax_rows(const em_tensor *t, int32_t *out);

#ifdef __cplusplus
}
#endif
#endif
