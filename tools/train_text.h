/* ember train on text (--data fortunes or text:FILE): the language-model half of the
 * train command. cmd_train.c parses the options and hands them over here. */
#ifndef EMBER_TOOLS_TRAIN_TEXT_H
#define EMBER_TOOLS_TRAIN_TEXT_H

#include "ember.h"
#include "ember/lm.h"

typedef struct cli_text_options {
    const char *model_path;
    const char *data_spec;  /* fortunes or text:FILE */
    const char *test_spec;  /* text evaluated at the end, or NULL */
    int64_t seq_len, steps, eval_every, eval_bytes, val_chunk;
    bool sequential;
    double val_fraction;
    bool warmup_auto; /* the cosine schedule's warm-up: a tenth of the run, at most 100 steps */
} cli_text_options;

/* Trains `model` (built from t->model_path with train->seed; freed here) with `train`
 * (as cli_training_apply and cmd_train filled it); returns the exit status. */
int train_text_main(const cli_text_options *t, em_model *model, em_train_opts *train);

#endif
