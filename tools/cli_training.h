/* The training options that `ember train` and `ember compare` share: the optimizer and
 * its hyperparameters, parameter groups, the learning-rate schedule, gradient clipping,
 * the validation split and early stopping. Each command adds the entries to its option
 * table, parses, then applies them to an em_train_opts. */
#ifndef EMBER_TOOLS_CLI_TRAINING_H
#define EMBER_TOOLS_CLI_TRAINING_H

#include "args.h"
#include "ember.h"

#define CLI_MAX_GROUPS 16
/* Entries cli_optimizer_options and cli_regularisation_options may add. */
#define CLI_OPTIMIZER_OPTIONS 14
#define CLI_REGULARISATION_OPTIONS 16

typedef struct cli_training {
    int optimizer;
    double lr, momentum, dampening, weight_decay, beta1, beta2, eps, alpha, lr_decay, initial_accumulator;
    bool nesterov, amsgrad, centered;
    bool no_decay_bias_norm;
    const char *param_groups;
    int schedule, schedule_every;
    int64_t step_size, warmup, plateau_patience;
    double gamma, warmup_start, min_lr, plateau_factor;
    double clip_norm, clip_value;
    double val_split, min_delta;
    int64_t patience;
    bool keep_last;
    /* storage the option table and the groups point into */
    const char *optimizer_names[EM_OPTIM_KIND_COUNT + 1];
    const char *schedule_names[EM_SCHEDULE_KIND_COUNT + 1];
    char lr_default[160];
    em_param_group groups[CLI_MAX_GROUPS];
    int n_groups;
    char group_text[1024];
} cli_training;

void cli_training_init(cli_training *t);
/* Appends the entries (at most CLI_OPTIMIZER_OPTIONS) and returns how many. */
int cli_optimizer_options(cli_training *t, args_option *out);
/* Appends the entries (at most CLI_REGULARISATION_OPTIONS) and returns how many. */
int cli_regularisation_options(cli_training *t, args_option *out);
/* After args_parse: checks the options against each other and fills o (its optimizer
 * too when with_optimizer). Returns -1 to go on, or the exit status of a usage error
 * it printed. */
int cli_training_apply(cli_training *t, const args_spec *spec, bool with_optimizer, em_train_opts *o);
/* One line describing the regularisation in effect ("" when none). */
void cli_training_describe(const em_train_opts *o, char *buf, size_t cap);

#endif
