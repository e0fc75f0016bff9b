/* Internal: the training loop's cheap numeric guard. Once per step the loss and the
 * global gradient norm (computed anyway for logging and clipping) are tested for NaN
 * and infinity; when either is not finite, the step stops before the optimizer update
 * (so the weights, and any checkpoint on disk, stay the last good ones) and these
 * helpers name what went wrong. */
#ifndef EMBER_TRAIN_DIVERGENCE_H
#define EMBER_TRAIN_DIVERGENCE_H

#include "ember/nn.h"

/* The first trainable tensor of m (state order) whose gradient (grads true) or value
 * (grads false) holds NaN or infinity, described into buf as
 * "the gradient of '3.weight' [256, 512] has inf at element 17"; false when none. */
bool em_find_non_finite(const em_model *m, bool grads, char *buf, size_t cap);

/* True when a gradient of m holds NaN or infinity. `norm` is the step's gradient norm:
 * only a non-finite one leads to the scan (an infinite norm may also come from finite
 * gradients whose norm is beyond float range, which is not a divergence). */
bool em_gradients_non_finite(const em_model *m, double norm);

/* Sets and returns the error for a step whose loss or gradient norm is not finite:
 * "training diverged at epoch E, step S (batch B of N): <what>; <first bad tensor or op>;
 * <what to try>". grad_norm is ignored when the loss is not finite (backward did not
 * run); lr is the step's learning rate, for the advice. */
int em_divergence_error(const em_model *m, int epoch, int64_t step, int64_t batch, int64_t batches,
                        float loss, double grad_norm, float lr);

#endif
