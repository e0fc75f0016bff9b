/* Internal pieces of the training loop: the progress display, the metrics file and
 * the plot, each in its own file so that the loop in train.c reads as the algorithm. */
#ifndef EMBER_TRAIN_INTERNAL_H
#define EMBER_TRAIN_INTERNAL_H

#include <stdio.h>

#include "ember/history.h"
#include "ember/schedule.h"
#include "ember/train.h"

/* ---- evaluate.c: feeding a dataset to a model ------------------------------------- */
/* EM_ERR naming both shapes if the examples do not fit the model's input, or if the
 * model has fewer outputs than the dataset has classes. */
int em_train_check_fit(const em_model *m, const em_dataset *ds);
/* x itself, or a view with the model's input shape when the examples hold the same
 * number of values in another shape (784 features for a 1x28x28 input). */
em_tensor *em_train_model_input(const em_model *m, em_tensor *x);

/* ---- progress.c: a redrawn bar on a terminal, plain lines elsewhere ---------------- */
typedef struct em_progress {
    FILE *out;
    bool bar;           /* redraw one line with \r */
    bool quiet;
    int epochs;
    int64_t batches;    /* per epoch */
    int64_t items;      /* examples per epoch */
    int epoch;
    double epoch_start;
    double last_draw;   /* when the bar (or a plain progress line) was last written */
    int drawn_width;    /* characters of the last bar, to blank a shorter redraw */
    const char *unit;   /* what the bar counts ("epoch"; a language model's "round") */
} em_progress;

void em_progress_init(em_progress *p, FILE *out, em_progress_mode mode, int epochs,
                      int64_t batches, int64_t items);
void em_progress_epoch_begin(em_progress *p, int epoch);
/* After each step: batches and examples done in this epoch, the epoch's mean loss so far. */
void em_progress_step(em_progress *p, int64_t batches_done, int64_t items_done, double mean_loss);
/* Replaces the bar with the epoch's summary line. has_test: print the test columns. */
void em_progress_epoch_end(em_progress *p, const em_epoch_stats *s, bool has_test);
/* Ends a bar in progress (before an error message, so that it starts on its own line). */
void em_progress_interrupt(em_progress *p);

/* ---- metrics.c: CSV, one row per step and one per epoch ---------------------------- */
typedef struct em_metrics em_metrics;

/* NULL with an error naming the path if it cannot be created. */
em_metrics *em_metrics_open(const char *path);
/* A step's row: the batch's loss and accuracy, lr, gradient norm; evaluation columns
 * empty. */
void em_metrics_step(em_metrics *mf, int epoch, const em_step_record *r);
/* An epoch's row: the epoch's means and the evaluations. */
void em_metrics_epoch(em_metrics *mf, const em_epoch_record *e);
/* Closes; EM_ERR naming the path if any write failed. */
int em_metrics_close(em_metrics *mf);

/* ---- monitor.c: everything around the optimizer update ------------------------------
 * Gradient norm and clipping, the learning-rate schedule, the validation set, early
 * stopping with the best weights kept, the history and the metrics rows. em_train calls
 * it at fixed points of each step and epoch. */
/* Loss and accuracy of the model on a validation set the caller owns. */
typedef int (*em_monitor_validate_fn)(void *ctx, double *loss, double *accuracy);

typedef struct em_monitor {
    em_model *m;
    em_optim *opt;
    const em_train_opts *o;
    const em_dataset *val;
    em_metrics *metrics;       /* not owned */
    em_schedule *schedule;
    em_train_history *history; /* o->history, or own_history */
    em_train_history own_history;
    /* Records the history held before this run started (a caller's history may hold
     * other runs'): a checkpoint carries only the records after them. */
    int64_t base_steps;
    int base_epochs;
    double start;              /* em_now() of the run's start */
    /* the step in progress */
    float step_lr, step_grad_norm, step_accuracy;
    /* the epoch in progress */
    double grad_norm_sum;
    int64_t grad_norms, correct, seen;
    /* early stopping */
    double best_val;
    int best_epoch, since_best;
    float *best_weights;       /* every state tensor of the model, back to back */
    int restored_epoch;
    bool stop;
    /* Validation by the caller instead of em_evaluate on `val` (text for language
     * models), or NULL. */
    em_monitor_validate_fn validate;
    void *validate_ctx;
} em_monitor;

/* val may be NULL; batches per epoch for a cosine schedule's default length. */
int em_monitor_start(em_monitor *mon, em_model *m, em_optim *opt, const em_train_opts *o, const em_dataset *val,
                     em_metrics *metrics, int64_t batches, double start);
/* As em_monitor_start, validating through `validate` (or not at all when NULL). */
int em_monitor_start_custom(em_monitor *mon, em_model *m, em_optim *opt, const em_train_opts *o,
                            em_monitor_validate_fn validate, void *validate_ctx, em_metrics *metrics, int64_t batches,
                            double start);
/* After backward, before the update: the batch's accuracy (from logits and labels),
 * the gradient norm, clipping. */
void em_monitor_gradients(em_monitor *mon, const em_tensor *logits, const int32_t *labels, int64_t n);
/* After the update: the step's record and row, a per-step schedule tick. */
void em_monitor_step(em_monitor *mon, int64_t step, int epoch, float loss);
/* The optimizer was rebuilt (unfreezing): clipping, norms and the schedule use it, its
 * group g continuing the old optimizer's group from[g] (-1: a new group; from NULL: the
 * same index), as em_schedule_rebind_groups. */
int em_monitor_set_optimizer(em_monitor *mon, em_optim *opt, const int *from);
/* A resumed run: the schedule catches up with the ticks of the steps and epochs done
 * (a plateau schedule's counters are not in checkpoints and start afresh). */
void em_monitor_resume(em_monitor *mon, int64_t steps_done, int epochs_done);
/* This run's part of the history (the records after base_steps and base_epochs), as a
 * view into it, for a checkpoint. */
void em_monitor_run_history(const em_monitor *mon, em_train_history *view);
/* A resumed run: the history the checkpoint at `path` carries goes before this run's
 * records, and into the metrics file; it must end at steps_done. Nothing happens for a
 * checkpoint without one. */
int em_monitor_restore_history(em_monitor *mon, const char *path, int64_t steps_done);
/* A non-finite loss at this step: its record and row. */
void em_monitor_diverged(em_monitor *mon, int64_t step, int epoch, float loss);
/* After the epoch's test evaluation (s filled): validation, a per-epoch schedule tick,
 * early stopping, the epoch's record and row; fills s's validation fields. */
int em_monitor_epoch_end(em_monitor *mon, em_epoch_stats *s, int64_t steps);
/* Restores the best weights when early stopping asked to keep them. */
void em_monitor_finish(em_monitor *mon, em_train_result *result);
void em_monitor_free(em_monitor *mon);

/* ---- plot.c: PNG of loss, accuracy, learning rate and gradient norm ---------------- */
typedef struct em_plot_data {
    const char *title;
    const char *subtitle;
    const em_train_history *history; /* what the plot draws */
} em_plot_data;

int em_plot_training(const char *path, const em_plot_data *d);

#endif
