/* Reports that compare training runs: the same data, seed, data order and budget, one
 * thing changed per run (the optimizer, the activation, the model, the amount of
 * training data). A report is a Markdown file with a table and findings per run (best
 * and final validation accuracy, the epoch of the best, steps to a target loss, time,
 * gradient norm, divergence, an overfitting diagnosis) and a PNG of the curves. */
#ifndef EMBER_COMPARE_H
#define EMBER_COMPARE_H

#include "ember/history.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_compare_axis {
    EM_COMPARE_OPTIMIZERS = 0,
    EM_COMPARE_ACTIVATIONS,
    EM_COMPARE_MODELS,
    EM_COMPARE_TRAIN_SIZES, /* learning curves: test accuracy against training examples */
    EM_COMPARE_AXIS_COUNT
} em_compare_axis;

/* One run of a comparison. */
typedef struct em_compare_run {
    char name[64];           /* what changed: "adam", "gelu", "cnn", "2000" */
    char settings[192];      /* how it was trained: "adam lr 0.001, betas 0.9/0.999" */
    char model[64];          /* the model's label (learning curves draw one line per model) */
    int64_t train_size;      /* training examples */
    int64_t val_size;        /* validation examples (0: none) */
    int64_t params;          /* trainable parameters */
    em_train_history history;
    bool failed;             /* stopped by an error other than a divergence */
    char message[512];       /* the divergence or the error, one line */
    double test_loss, test_accuracy; /* the kept weights on the test set; NaN: not evaluated */
    double seconds;          /* training and evaluation */
} em_compare_run;

typedef struct em_comparison {
    em_compare_axis axis;
    const char *title;       /* "Optimizers: models/mlp.ember on fashion-mnist" */
    const char *setup;       /* Markdown: data, budget, seed, what stayed the same */
    em_compare_run *runs;
    int n_runs;
    /* How runs are read (em_history_diagnose). */
    int patience;
    double min_delta;
    double target_loss;
    int64_t window;
} em_comparison;

const char *em_compare_axis_name(em_compare_axis axis); /* "optimizer", "activation", ... */

/* Writes the Markdown report, which shows the PNG named png_name (a path relative to
 * the report, or NULL for none). */
int em_compare_write_report(const em_comparison *c, const char *path, const char *png_name);
/* The comparison's PNG: validation accuracy and loss per epoch, smoothed training loss
 * per step and the best accuracy per run; for learning curves, test and training
 * accuracy against the number of training examples (log scale), a line per model. */
int em_compare_plot(const em_comparison *c, const char *path);

#ifdef __cplusplus
}
#endif
#endif
