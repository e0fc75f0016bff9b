/* Saving and loading a model's named tensors as safetensors, with PyTorch's
 * state_dict names, and the model description in the metadata; full training
 * checkpoints (optimizer state, position in the data, random generators) from which
 * training continues bit for bit; and the pieces of transfer learning. */
#ifndef EMBER_CHECKPOINT_H
#define EMBER_CHECKPOINT_H

#include "ember/data.h"
#include "ember/history.h"
#include "ember/nn.h"
#include "ember/optim.h"
#include "ember/optim_state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- weights ------------------------------------------------------------------------ */

/* Writes every parameter and buffer of m atomically; metadata "ember.model" holds the
 * model description. */
int em_save_weights(const em_model *m, const char *path);

/* Loads tensors by name into m. A tensor whose shape differs is an error naming the
 * tensor and both shapes. With strict, missing and unexpected tensors are errors
 * (named); otherwise they are reported through *missing / *unexpected counts when
 * those are non-NULL. A full checkpoint's optimizer state ("optim.state.*") is not a
 * model tensor and never counts as unexpected. Nothing is written into m on error. */
int em_load_weights(em_model *m, const char *path, bool strict, int *missing, int *unexpected);

/* What a load found, by name: the lists are "'4.weight', '4.bias'", cut with "..." when
 * longer than the buffer. */
typedef struct em_load_report {
    int loaded;
    int missing;               /* in the model, not in the file: left as they were */
    int unexpected;            /* in the file, not in the model: ignored */
    char missing_names[1024];
    char unexpected_names[1024];
} em_load_report;

/* em_load_weights with the names of missing and unexpected tensors (report may be NULL). */
int em_load_weights_report(em_model *m, const char *path, bool strict, em_load_report *report);

/* A model built from the description stored in a checkpoint, with its weights. */
em_model *em_model_from_checkpoint(const char *path);

/* ---- full training checkpoints -----------------------------------------------------
 * Weights as above, the optimizer's buffers as "optim.state.<param>.<buffer>" tensors,
 * and in the metadata: the optimizer's kind, options and step counts
 * ("ember.optimizer"), and the position below with the model's random generator
 * (dropout) ("ember.train", JSON). A model with the same description, an optimizer of
 * the same kind and options over the same parameters, and a loader over the same data
 * with the same batch size, all restored from the file, continue with the step that
 * would have come next: on the same thread count, the results are bit-identical to a
 * run that was never interrupted. */
typedef struct em_train_position {
    int64_t step;               /* optimizer steps done */
    int epoch;                  /* 1-based: the epoch in progress, or the next to start */
    em_loader_position loader;  /* that epoch's order and its batches done */
    double epoch_loss_sum;      /* summed losses of those batches (for the epoch's mean) */
    int64_t epoch_items;        /* examples in them */
    /* What the position assumes; em_train refuses to resume when they differ, since
     * the order of the examples would not be the same. */
    int64_t batch_size;
    int64_t train_count;
    bool shuffle;
    /* The learning-rate schedule's state as text ("" without one), from
     * em_schedule_save_state. */
    char schedule[1024];
    /* Early stopping: the best validation loss so far (INFINITY: none yet), its epoch
     * (0: none) and the epochs since; the best epoch's weights go in the tensor
     * "train.best_weights" (em_checkpoint_save_with). */
    double best_val;
    int best_epoch;
    int since_best;
    /* Running figures of the epoch in progress (its accuracy and mean gradient norm). */
    int64_t epoch_correct, epoch_seen, epoch_grad_norms;
    double epoch_grad_norm_sum;
} em_train_position;

/* Writes the checkpoint atomically (a crash leaves the previous file or the new one,
 * never a mix). opt may be NULL (weights and position only). */
int em_checkpoint_save(const char *path, em_model *m, const em_optim *opt, const em_train_position *pos);
/* The same with tensors of the training loop's own, named "train.<something>" (the best
 * epoch's weights); weight loading ignores them, as it ignores "optim.*". */
int em_checkpoint_save_with(const char *path, em_model *m, const em_optim *opt, const em_train_position *pos,
                            const em_named_tensor *extra, int n_extra);

/* The same with the run's history (NULL: none), so that a resumed run's plot and
 * metrics cover the epochs before the checkpoint too: its step records (consecutive
 * steps) as the tensor "train.history.steps" and its epoch records in the metadata
 * ("ember.history", JSON, doubles in exact hexadecimal). The records' timings are left
 * out, so that a run stopped and resumed writes the same file as one never stopped. */
int em_checkpoint_save_with_history(const char *path, em_model *m, const em_optim *opt, const em_train_position *pos,
                                    const em_named_tensor *extra, int n_extra, const em_train_history *history);

/* Appends the history stored in a checkpoint to h (its records' seconds are NaN: not
 * stored); nothing when the checkpoint has none (written before checkpoints carried
 * one, or without). EM_ERR naming the file and the field on a malformed one, h
 * unchanged. */
int em_checkpoint_read_history(const char *path, em_train_history *h);

/* The optimizer kind and options stored in a checkpoint, to create the optimizer that
 * em_checkpoint_load then fills. */
int em_checkpoint_optimizer(const char *path, em_optim_kind *kind, em_optim_opts *opts);

/* Restores m (same description: every tensor must be present with its shape), opt
 * (may be NULL), the model's random generator and *pos (may be NULL). Everything is
 * checked before anything changes, except that a failure while copying tensors can
 * leave part of them loaded. */
int em_checkpoint_load(const char *path, em_model *m, em_optim *opt, em_train_position *pos);

/* Only the position (to decide what to build before loading). */
int em_checkpoint_read_position(const char *path, em_train_position *pos);

/* True when the file holds a full training checkpoint (has "ember.train"). */
bool em_checkpoint_is_full(const char *path);

#ifdef __cplusplus
}
#endif
#endif
