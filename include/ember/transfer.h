/* Transfer learning: reusing a trained model's features for a new task. Load the
 * pre-trained weights (em_load_weights_report names what did not fit), freeze the
 * feature layers, give the model a new classifier head, train the rest, and
 * optionally unfreeze later with a lower learning rate (em_train_opts.unfreeze_after). */
#ifndef EMBER_TRANSFER_H
#define EMBER_TRANSFER_H

#include "ember/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Freezes every parameter whose name matches one of the shell patterns (fnmatch, '*'
 * also matches dots) in `patterns`, separated by ',' or '|': "*", "0.*,3.*",
 * "*.weight". A frozen parameter has requires_grad off: backward computes no gradient
 * for it, and optimizers created afterwards keep no state for it. Returns how many
 * parameters are frozen by this call, or EM_ERR (model unchanged) when a pattern
 * matches no parameter; the message lists the model's parameter names. */
int em_model_freeze(em_model *m, const char *patterns);

/* Makes the matching parameters (patterns NULL or "": all) trainable again; returns
 * how many were frozen before, or EM_ERR as em_model_freeze. */
int em_model_unfreeze(em_model *m, const char *patterns);

bool em_param_is_frozen(const em_tensor *param);
/* Scalars in the parameters that are not frozen. */
int64_t em_model_trainable_count(const em_model *m);

/* The classifier head: the index of the model's last linear layer (the prefix of its
 * tensor names, "9" of "9.weight"), or -1 when there is none. */
int em_model_head_index(const em_model *m);

/* A new model equal to m except that the head has out_features outputs and fresh
 * weights (PyTorch's default initialisation of a new nn.Linear, from seed). Every other
 * tensor is copied from m, frozen ones stay frozen, and the head is trainable. NULL
 * and an error when m has no linear layer or a layer after the head has parameters.
 * m is unchanged; the caller frees both. */
em_model *em_model_replace_head(const em_model *m, int64_t out_features, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
