/* A training history inside a full checkpoint (checkpoint_history.c): the step records
 * as one float tensor, the epoch records as JSON metadata. Internal to checkpoint.c. */
#ifndef EMBER_IO_CHECKPOINT_HISTORY_H
#define EMBER_IO_CHECKPOINT_HISTORY_H

#include "ember/arena.h"
#include "ember/history.h"
#include "ember/tensor.h"

#define EM_HISTORY_KEY "ember.history"
#define EM_HISTORY_STEPS_TENSOR "train.history.steps"

/* The step records as a [n_steps, 4] tensor in arena (loss, lr, grad_norm, accuracy;
 * *steps is NULL without step records) and the metadata value (malloc'd, the caller
 * frees it). EM_ERR when the steps are not consecutive or memory runs out. */
int em_history_encode(const em_train_history *h, em_arena *arena, em_tensor **steps, char **json);

#endif
