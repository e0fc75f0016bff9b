/* The training loop the CLI runs, usable from C: epochs over a dataset with an
 * optimizer, evaluation on a test set, a progress bar or plain lines, a metrics file,
 * a plot and a checkpoint. */
#ifndef EMBER_TRAIN_H
#define EMBER_TRAIN_H

#include <signal.h>
#include <stdio.h>

#include "ember/data.h"
#include "ember/history.h"
#include "ember/nn.h"
#include "ember/optim.h"
#include "ember/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_progress_mode {
    EM_PROGRESS_AUTO = 0, /* a bar on a terminal, plain lines otherwise */
    EM_PROGRESS_BAR,
    EM_PROGRESS_LINES,
    EM_PROGRESS_QUIET
} em_progress_mode;

typedef struct em_train_opts {
    int epochs;
    int64_t batch_size;
    em_optim_kind optimizer;
    em_optim_opts optim;
    uint64_t seed;           /* data order (the model's own seed fixes its init) */
    bool shuffle;
    em_progress_mode progress;
    FILE *log;               /* progress and epoch lines; NULL means stderr */
    const char *save_path;   /* safetensors checkpoint written at the end, or NULL */
    const char *plot_path;   /* PNG of loss per step and test accuracy, or NULL */
    const char *metrics_path;/* CSV of per-step and per-epoch metrics, or NULL */
    int64_t eval_batch_size; /* 0: a default */

    /* ---- optimization and regularisation (ember/schedule.h, ember/history.h) ---- */
    const em_param_group *param_groups; /* own lr / weight decay per group, or NULL */
    int n_param_groups;
    em_schedule_opts schedule;   /* EM_SCHEDULE_CONSTANT: the optimizer's rate throughout;
                                  * a cosine schedule's total 0 means the whole run */
    double clip_grad_norm;       /* > 0: clip_grad_norm_ to this before each update */
    float clip_grad_value;       /* > 0: clip_grad_value_ to this before each update */
    const em_dataset *validation;/* evaluated after every epoch, or NULL; or: */
    double val_split;            /* > 0: this fraction of the training data (a seeded split
                                  * with `seed`, no copy) is the validation set */
    int patience;                /* > 0: stop after this many epochs without a validation
                                  * loss improvement (needs a validation set) ... */
    double min_delta;            /* ... of more than this ... */
    bool keep_last_weights;      /* ... and restore the best epoch's weights at the end
                                  * (with a patience) unless this is set */
    em_train_history *history;   /* filled when non-NULL (em_history_init it first) */

    /* ---- checkpoints and resuming (ember/checkpoint.h) ---- */
    const char *checkpoint_path; /* full checkpoint written every checkpoint_every steps,
                                  * at the end and when stopped, or NULL */
    int64_t checkpoint_every;    /* steps between checkpoints; 0: only at the end */
    const char *resume_path;     /* a full checkpoint to continue from, or NULL: the
                                  * model, optimizer, data order and generators continue
                                  * bit for bit (same options and thread count) */
    /* Set to non-zero (by a SIGINT/SIGTERM handler, say) to stop after the current step:
     * the checkpoint is written (if checkpoint_path) and em_train returns EM_OK with
     * result->interrupted set. */
    volatile sig_atomic_t *stop_requested;
    int64_t max_steps;           /* > 0: stop the same way once this many steps are done */
    const char *interrupt_path;  /* where a stop writes the checkpoint when checkpoint_path
                                  * is NULL (NULL: nowhere) */

    /* ---- transfer learning (ember/transfer.h) ---- */
    int unfreeze_after;          /* > 0: after this many epochs the frozen parameters ... */
    float unfreeze_lr;           /* ... train too, with this learning rate (their own group) */
} em_train_opts;

/* 1 epoch, batch 64, SGD lr 0.01 (em_optim_defaults), seed 0, shuffling on. */
em_train_opts em_train_defaults(void);

typedef struct em_epoch_stats {
    int epoch;               /* 1-based */
    double train_loss;       /* mean over the epoch's batches */
    double test_loss;
    double test_accuracy;    /* in [0, 1]; NaN without a test set */
    double seconds;          /* training time of the epoch, evaluation excluded */
    double samples_per_second;
    double train_accuracy;   /* on the epoch's batches as they went by */
    double val_loss;         /* NaN without a validation set */
    double val_accuracy;
} em_epoch_stats;

typedef struct em_train_result {
    int epochs_run;
    em_epoch_stats last;
    double total_seconds;
    int64_t steps;
    bool diverged;           /* the loss or a gradient became NaN or infinite (EM_ERR) */
    bool early_stopped;      /* stopped by the patience before the last epoch */
    int best_epoch;          /* lowest validation loss (0: no validation set) */
    int restored_epoch;      /* whose weights the model holds at the end (0: the last) */
    bool interrupted;        /* stopped early (stop_requested or max_steps) */
    int checkpoints_written;
} em_train_result;

/* test may be NULL. Stops with EM_ERR if the loss or the gradient norm of a step is NaN
 * or infinite, before that step's update (the weights stay the last good ones), with a
 * message naming the step and the first gradient or parameter holding NaN or infinity
 * (and the first op that produced one, with em_set_detect_anomaly). */
int em_train(em_model *m, const em_dataset *train, const em_dataset *test, const em_train_opts *opts,
             em_train_result *result);

/* Mean cross-entropy and accuracy of m on ds, in evaluation mode without gradients. */
int em_evaluate(em_model *m, const em_dataset *ds, int64_t batch_size, double *loss, double *accuracy);

#ifdef __cplusplus
}
#endif
#endif
