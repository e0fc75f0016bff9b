/* Ops of convolutional networks: 2-D convolution with fused bias and activation, max and
 * average pooling, batch normalisation and dropout. Tensors are NCHW float32, as in
 * PyTorch, and every op follows the contract of ops.h: a new tensor in the step arena,
 * recorded on the tape when a gradient is needed, NULL with an error naming the shapes
 * when the inputs do not fit, NULL in gives NULL out. */
#ifndef EMBER_CNN_OPS_H
#define EMBER_CNN_OPS_H

#include <stdbool.h>

#include "ember/ops.h"
#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- convolution (src/ops/conv.c) ------------------------------------------------ */
/* y = act(conv(x, w) + b), PyTorch's conv2d: x [N, C, H, W], w [O, C/groups, kh, kw],
 * b [O] or NULL; y [N, O, OH, OW] with OH = (H + 2·pad_h - dilation_h·(kh-1) - 1)/stride_h + 1
 * (likewise OW). Strides and dilations >= 1, paddings >= 0, groups >= 1 dividing C and O
 * (groups == C is a depthwise convolution). No gradient is computed for x when x does
 * not require one (a network's first layer). */
em_tensor *em_conv2d(em_tensor *x, em_tensor *w, em_tensor *b, int stride_h, int stride_w,
                     int pad_h, int pad_w, int dilation_h, int dilation_w, int groups,
                     em_activation act, float act_param);

/* ---- convolution then max pooling (src/ops/conv.c) ------------------------------- */
typedef struct em_conv2d_args {
    int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
    em_activation act;
    float act_param;
} em_conv2d_args;

typedef struct em_pool2d_args {
    int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w; /* strides <= 0: the kernel */
} em_pool2d_args;

/* em_max_pool2d(em_conv2d(x, w, b, conv...), pool...), the same values and gradients,
 * without keeping the convolution's full output where it can: without gradients (one
 * image: the threads split the output channels and each pools the planes it computed;
 * a batch: each thread computes and pools whole images in a buffer of its own), and when
 * training a layer whose input needs no gradient with no activation or ReLU (backward
 * then needs only the pooled values and the argmax). Otherwise the two ops run one after
 * the other. */
em_tensor *em_conv2d_max_pool2d(em_tensor *x, em_tensor *w, em_tensor *b, const em_conv2d_args *conv,
                                const em_pool2d_args *pool);

/* ---- pooling (src/ops/pool.c) ---------------------------------------------------- */
/* x [N, C, H, W] -> [N, C, OH, OW], OH = (H + 2·pad_h - kh)/stride_h + 1 (floor, as
 * PyTorch with ceil_mode false). A stride <= 0 means the kernel size (PyTorch's default).
 * Padding is at most half the kernel, as PyTorch requires. */
/* Padded cells count as -inf; the gradient goes to the first maximum of each window (to
 * a NaN if the window holds one, as in PyTorch). */
em_tensor *em_max_pool2d(em_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h,
                         int pad_w);
/* Window means; count_include_pad (PyTorch's default true) divides by kh·kw even where
 * the window overlaps the padding, false divides by the number of real cells. */
em_tensor *em_avg_pool2d(em_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h,
                         int pad_w, bool count_include_pad);
/* Mean of each plane: [N, C, H, W] -> [N, C, 1, 1]. */
em_tensor *em_adaptive_avg_pool2d_1x1(em_tensor *x);

/* ---- batch normalisation (src/ops/batchnorm.c) ------------------------------------ */
/* x [N, C] or [N, C, H, W], normalised per channel C. weight and bias [C] or NULL (no
 * affine transform). running_mean and running_var [C] or NULL (no running statistics:
 * batch statistics are then used in both modes, as PyTorch's track_running_stats=False).
 * Training uses the batch's mean and biased variance and updates the running statistics
 * in place: running = (1 - momentum)·running + momentum·batch, with the unbiased variance
 * for running_var. Evaluation normalises with the running statistics. The running
 * statistics are buffers: they get no gradient. Training needs more than one value per
 * channel. */
em_tensor *em_batch_norm(em_tensor *x, em_tensor *weight, em_tensor *bias, em_tensor *running_mean,
                         em_tensor *running_var, bool training, float momentum, float eps);

/* ---- dropout (src/ops/dropout.c) ------------------------------------------------- */
/* Inverted dropout: in training each element is zeroed with probability p (drawn from
 * rng, so a seed fixes the mask) and the others are scaled by 1/(1-p); p == 1 zeroes
 * everything. Evaluation, or p == 0, returns x itself. p must lie in [0, 1]. */
em_tensor *em_dropout(em_tensor *x, float p, bool training, em_rng *rng);

#ifdef __cplusplus
}
#endif
#endif
