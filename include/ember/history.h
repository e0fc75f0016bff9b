/* What a training run recorded, step by step and epoch by epoch, and what can be read
 * from it: where the validation loss was best, whether the model overfits (validation
 * loss rising while training loss falls), where early stopping would have stopped, how
 * many steps the training loss took to reach a target. em_train fills a history when
 * em_train_opts.history points at one; the comparison reports read it. Full checkpoints
 * carry the run's records, so that a resumed run's history, plot and metrics file
 * cover the whole run. */
#ifndef EMBER_HISTORY_H
#define EMBER_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct em_step_record {
    int64_t step;      /* 1-based optimizer step */
    float loss;        /* the batch's loss (NaN or inf on the step that diverged) */
    float lr;          /* the default group's learning rate for this step */
    float grad_norm;   /* global L2 norm of the gradients, before any clipping */
    float accuracy;    /* the batch's accuracy */
    float seconds;     /* since the run (or its resumption) started; NaN for records a
                        * resumed run restored from its checkpoint, which keeps no timings */
} em_step_record;

typedef struct em_epoch_record {
    int epoch;               /* 1-based */
    int64_t steps;           /* optimizer steps done when the epoch ended */
    double train_loss;       /* mean batch loss over the epoch (training mode) */
    double train_accuracy;   /* accuracy on the epoch's batches as they went by */
    double val_loss, val_accuracy;   /* NaN without a validation set */
    double test_loss, test_accuracy; /* NaN without a test set */
    double lr;               /* the learning rate at the epoch's end */
    double grad_norm;        /* mean gradient norm over the epoch's steps */
    double seconds;          /* since the run (or its resumption) started, evaluation
                              * included; NaN when restored from a checkpoint */
} em_epoch_record;

typedef struct em_train_history {
    em_step_record *steps;
    int64_t n_steps, cap_steps;
    em_epoch_record *epochs;
    int n_epochs, cap_epochs;
    int64_t steps_per_epoch;
    /* How the run ended. */
    bool diverged;           /* the loss became NaN or infinite ... */
    int64_t diverged_step;   /* ... at this step (1-based) ... */
    int diverged_epoch;      /* ... of this epoch */
    bool early_stopped;      /* early stopping ended the run after stopped_epoch */
    int stopped_epoch;
    int restored_epoch;      /* the epoch whose weights were restored (0: none) */
    double total_seconds;
} em_train_history;

/* An empty history (no allocation until em_history_reserve or the first record). */
void em_history_init(em_train_history *h);
void em_history_free(em_train_history *h);
/* Room for this many steps and epochs, so that recording never allocates. */
int em_history_reserve(em_train_history *h, int64_t steps, int epochs);
/* Append (growing if needed); EM_ERR when out of memory. */
int em_history_add_step(em_train_history *h, const em_step_record *r);
int em_history_add_epoch(em_train_history *h, const em_epoch_record *r);

/* ---- reading a history ------------------------------------------------------------- */
typedef struct em_diagnosis {
    bool has_validation;
    int best_epoch;               /* lowest validation loss (0: no validation) */
    double best_val_loss;
    int best_accuracy_epoch;      /* highest validation accuracy */
    double best_val_accuracy;
    double final_val_loss, final_val_accuracy;
    double final_train_loss, final_train_accuracy;
    double loss_gap;              /* final validation loss - final training loss */
    double accuracy_gap;          /* final training accuracy - final validation accuracy */
    /* Overfitting: after the best epoch the validation loss rose by more than
     * max(min_delta, 2% of the best) while the training loss kept falling, over two
     * epochs or more (or by more than 10% in one). */
    bool overfitting;
    /* Early stopping with this patience would stop after stop_epoch (0: it would not
     * stop within the run) and restore stop_keep_epoch's weights, the best until then
     * (a later epoch of the full run may have been better still). */
    int patience;
    int stop_epoch;
    int stop_keep_epoch;
    /* The first step at which the mean of the last `window` batch losses was at or
     * below the target (-1: never). */
    double target_loss;
    int64_t steps_to_target;
    char verdict[512];            /* one sentence for a report */
} em_diagnosis;

/* Reads h. patience >= 1; min_delta >= 0 is the smallest decrease that counts as an
 * improvement (as in the early stopping of em_train); window >= 1. */
void em_history_diagnose(const em_train_history *h, int patience, double min_delta, double target_loss,
                         int64_t window, em_diagnosis *d);

/* Early stopping's rule, shared by the training loop and the diagnosis: is `loss` an
 * improvement on `best` by more than min_delta? (A first finite loss always is.) */
bool em_history_improves(double loss, double best, double min_delta);

#ifdef __cplusplus
}
#endif
#endif
