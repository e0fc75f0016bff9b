/* The options of the training commands. All three (`ember train`, `ember finetune`,
 * `ember compare`) keep a run's budget, seed, threads, progress and files in a
 * cli_run_options. `ember train` and `ember compare` also share the optimizer and its
 * hyperparameters, parameter groups, the learning-rate schedule, gradient clipping, the
 * validation split and early stopping: each builds its option table with
 * cli_training_table, parses, then applies them to an em_train_opts. */
#ifndef EMBER_TOOLS_CLI_TRAINING_H
#define EMBER_TOOLS_CLI_TRAINING_H

#include "args.h"
#include "ember.h"

#define CLI_MAX_GROUPS 16
/* Entries the optimizer's and the regularisation's options add to a table. */
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

/* What every training command takes besides the optimizer and the regularisation: the
 * budget, the seed, the threads, the progress display and the run's files. Each command
 * has its own option entries (with its own help) pointing into it. */
typedef struct cli_run_options {
    int64_t epochs, batch, seed, threads;
    int progress;
    const char *save_path, *checkpoint_path, *resume_path;
    int64_t checkpoint_every, max_steps;
} cli_run_options;

/* After args_parse: -1 to go on, or the exit status of a usage error it printed. */
int cli_run_check(const cli_run_options *r, const args_spec *spec);
/* Sets the thread count and fills o from r; the log goes to stdout, and a stop without
 * --checkpoint writes CLI_INTERRUPT_CHECKPOINT. */
void cli_run_apply(const cli_run_options *r, em_train_opts *o);

/* The choices of --progress, in em_progress_mode's order. */
extern const char *const cli_progress_names[];

/* The optimizers' names in em_optim_kind's order, NULL-terminated: --optimizer's choices. */
void cli_optimizer_names(const char *names[EM_OPTIM_KIND_COUNT + 1]);

void cli_training_init(cli_training *t);
/* A command's option table: its own n_own entries, then the optimizer's (when
 * with_optimizer) and the regularisation's. out holds n_own + CLI_OPTIMIZER_OPTIONS +
 * CLI_REGULARISATION_OPTIONS entries (less CLI_OPTIMIZER_OPTIONS without the
 * optimizer); returns how many it filled. */
int cli_training_table(cli_training *t, const args_option *own, int n_own, bool with_optimizer,
                       args_option *out);
/* After args_parse: checks the options against each other and fills o (its optimizer
 * too when with_optimizer). Returns -1 to go on, or the exit status of a usage error
 * it printed. */
int cli_training_apply(cli_training *t, const args_spec *spec, bool with_optimizer, em_train_opts *o);
/* One line describing the regularisation in effect ("" when none). */
void cli_training_describe(const em_train_opts *o, char *buf, size_t cap);

#endif
