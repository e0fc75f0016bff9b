/* Internal pieces of the training loop: the progress display, the metrics file and
 * the plot, each in its own file so that the loop in train.c reads as the algorithm. */
#ifndef EMBER_TRAIN_INTERNAL_H
#define EMBER_TRAIN_INTERNAL_H

#include <stdio.h>

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
/* A step's row: the batch loss; test columns empty. */
void em_metrics_step(em_metrics *mf, int64_t step, int epoch, double loss, double lr, double seconds);
/* An epoch's row: the epoch's mean training loss and the evaluation. */
void em_metrics_epoch(em_metrics *mf, int64_t step, const em_epoch_stats *s, double lr, double seconds);
/* Closes; EM_ERR naming the path if any write failed. */
int em_metrics_close(em_metrics *mf);

/* ---- plot.c: PNG of the loss per step and the test accuracy per epoch --------------- */
typedef struct em_plot_data {
    const char *title;
    const char *subtitle;
    const float *step_loss;       /* n_steps batch losses */
    int64_t n_steps;
    int64_t steps_per_epoch;
    const double *test_loss;      /* n_epochs (NaN when there is no test set) */
    const double *test_accuracy;  /* n_epochs, in [0, 1] */
    const double *train_loss;     /* n_epochs epoch means */
    int n_epochs;
} em_plot_data;

int em_plot_training(const char *path, const em_plot_data *d);

#endif
