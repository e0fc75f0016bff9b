/* Saving and loading a model's named tensors as safetensors, with PyTorch's
 * state_dict names, and the model description in the metadata. */
#ifndef EMBER_CHECKPOINT_H
#define EMBER_CHECKPOINT_H

#include "ember/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes every parameter and buffer of m atomically; metadata "ember.model" holds the
 * model description. */
int em_save_weights(const em_model *m, const char *path);

/* Loads tensors by name into m. A tensor whose shape differs is an error naming the
 * tensor and both shapes. With strict, missing and unexpected tensors are errors
 * (named); otherwise they are reported through *missing / *unexpected counts when
 * those are non-NULL. */
int em_load_weights(em_model *m, const char *path, bool strict, int *missing, int *unexpected);

/* A model built from the description stored in a checkpoint, with its weights. */
em_model *em_model_from_checkpoint(const char *path);

#ifdef __cplusplus
}
#endif
#endif
