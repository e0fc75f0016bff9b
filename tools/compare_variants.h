/* What `ember compare` varies: optimizer presets with sensible learning rates, models
 * with every activation line replaced, comma-separated lists from the command line. */
#ifndef EMBER_TOOLS_COMPARE_VARIANTS_H
#define EMBER_TOOLS_COMPARE_VARIANTS_H

#include "ember.h"

/* An optimizer as the comparison names it: "momentum" is SGD with momentum 0.9. */
typedef struct compare_preset {
    const char *name;
    em_optim_kind kind;
    float lr;            /* the default learning rate for this comparison's budget */
    float momentum;
    bool nesterov;
} compare_preset;

/* sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw. */
int compare_preset_count(void);
const compare_preset *compare_preset_at(int i);
const compare_preset *compare_preset_find(const char *name);
/* "sgd, momentum, ..." */
void compare_preset_names(char *buf, size_t cap);
/* The preset's options: em_optim_defaults of its kind with its lr and momentum. */
em_optim_opts compare_preset_options(const compare_preset *p);

/* The activations a model line can name, for messages. */
void compare_activation_names(char *buf, size_t cap);

/* Splits "a,b,c" into at most cap items (pointing into text, commas overwritten); -1
 * when there are more or one is empty. */
int compare_split_list(char *text, const char **items, int cap);

/* "sgd=0.1,adam=1e-3" or "0.05" (every run). Returns EM_OK, or EM_ERR with a message
 * naming the bad part; *all is NaN unless a single number was given. */
typedef struct compare_lr {
    const char *name;
    float lr;
} compare_lr;
int compare_parse_lrs(char *text, compare_lr *lrs, int cap, int *n, float *all);

/* The text of the model file with every activation line replaced by `activation`
 * (malloc'd); NULL + error if the file cannot be read or has no activation line. */
char *compare_replace_activations(const char *model_path, const char *activation);

#endif
