/* Optimizers over a model's trainable parameters, with PyTorch's update rules. */
#ifndef EMBER_OPTIM_H
#define EMBER_OPTIM_H

#include "ember/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_optim_kind {
    EM_OPTIM_SGD = 0,   /* momentum, dampening, nesterov, weight_decay (torch.optim.SGD) */
    EM_OPTIM_ADAM,      /* betas, eps, weight_decay (L2, added to the gradient), amsgrad */
    EM_OPTIM_ADAGRAD,   /* lr_decay, weight_decay, initial_accumulator_value, eps */
    EM_OPTIM_RMSPROP,   /* alpha, eps, weight_decay, momentum, centered */
    EM_OPTIM_ADAMW,     /* Adam with decoupled decay: p *= 1 - lr * weight_decay */
    EM_OPTIM_KIND_COUNT
} em_optim_kind;

/* The options of every kind in one struct (a kind reads the fields it knows). Start
 * from em_optim_defaults(kind), which holds PyTorch's defaults for that kind. */
typedef struct em_optim_opts {
    float lr;
    float momentum;          /* SGD, RMSProp */
    float dampening;         /* SGD */
    bool nesterov;           /* SGD */
    float weight_decay;      /* L2 added to the gradient; AdamW: decoupled decay */
    float beta1, beta2, eps; /* Adam, AdamW; eps also Adagrad and RMSProp */
    bool amsgrad;            /* Adam, AdamW */
    float lr_decay;          /* Adagrad: lr / (1 + (t - 1) * lr_decay) at step t */
    float initial_accumulator_value; /* Adagrad */
    float alpha;             /* RMSProp: smoothing constant of the squared gradients */
    bool centered;           /* RMSProp: divide by the gradient's estimated variance */
} em_optim_opts;

/* PyTorch's defaults for the kind: lr 0.01 (SGD, Adagrad, RMSProp) or 1e-3 (Adam,
 * AdamW); betas 0.9/0.999; eps 1e-8 (1e-10 for Adagrad); alpha 0.99; weight decay 0.01
 * for AdamW; everything else 0/false. */
em_optim_opts em_optim_defaults(em_optim_kind kind);
/* "sgd", "adam", "adagrad", "rmsprop", "adamw"; EM_ERR listing the valid names. */
int em_optim_parse(const char *name, em_optim_kind *kind);
const char *em_optim_name(em_optim_kind kind);

typedef struct em_optim em_optim;

/* Optimizes every trainable (requires_grad) parameter of m. NULL + error on invalid
 * options (negative lr, nesterov without momentum, ...). */
em_optim *em_optim_new(em_model *m, em_optim_kind kind, const em_optim_opts *opts);
void em_optim_free(em_optim *opt);

/* ---- parameter groups ------------------------------------------------------------
 * PyTorch's param_groups: tensors with their own learning rate or weight decay, such as
 * no decay on biases and normalisation scales. A tensor belongs to the first group it
 * matches; the rest form the default group with the optimizer's options. Group 0 is
 * always the default group; the groups given here are 1..n in order. */
typedef struct em_param_group {
    /* Shell patterns (fnmatch) over the parameter names, separated by '|':
     * "*.bias", "0.*|2.weight". NULL or "" matches every name. */
    const char *pattern;
    /* > 0: only tensors of at most this many dimensions (1: biases and the scales and
     * shifts of batch and layer norms, the usual "no decay" set). */
    int max_ndim;
    bool set_lr, set_weight_decay; /* unset: the optimizer's value */
    float lr, weight_decay;
} em_param_group;

/* NULL + error on invalid options or on a group with a pattern that matches no
 * trainable tensor (the message names the pattern and the model's tensor names). */
em_optim *em_optim_new_grouped(em_model *m, em_optim_kind kind, const em_optim_opts *opts,
                               const em_param_group *groups, int n_groups);
/* Parses "PATTERN:lr=X,wd=Y;PATTERN:wd=0" (either key may be left out; "weight_decay"
 * is a synonym of "wd") into at most `cap` groups, the patterns pointing into `spec`
 * after ':' is overwritten with '\0'. Returns the number of groups or -1 with an error
 * naming the bad part. */
int em_param_groups_parse(char *spec, em_param_group *groups, int cap);

int em_optim_group_count(const em_optim *opt);
/* Tensors in group g, and the options they are updated with (NULL if g is invalid). */
int em_optim_group_size(const em_optim *opt, int g);
const em_optim_opts *em_optim_group_opts(const em_optim *opt, int g);
/* The group of the tensor named `name`, or -1. */
int em_optim_group_of(const em_optim *opt, const char *name);
void em_optim_set_group_lr(em_optim *opt, int g, float lr);

/* ---- stepping ----------------------------------------------------------------------- */
/* Applies one update from the parameters' current gradients. */
void em_optim_update(em_optim *opt);
/* The usual end of a training step: update, zero the gradients, em_step_end(). */
void em_optim_step(em_optim *opt);
void em_optim_zero_grad(em_optim *opt);
/* Sets the learning rate of every group. */
void em_optim_set_lr(em_optim *opt, float lr);
/* The default group's learning rate. */
float em_optim_lr(const em_optim *opt);
int64_t em_optim_steps(const em_optim *opt);

/* ---- gradients ---------------------------------------------------------------------
 * Over the optimized tensors' gradients, as torch.nn.utils does over parameters. */
/* The norm of all gradients together (norm_type 2 or INFINITY, or any p > 0). */
double em_optim_grad_norm(const em_optim *opt, double norm_type);
/* torch.nn.utils.clip_grad_norm_: scales every gradient by
 * min(1, max_norm / (total_norm + 1e-6)); returns the total norm before clipping. A
 * non-finite norm leaves the gradients unchanged (the loss check reports it). */
double em_optim_clip_grad_norm(em_optim *opt, double max_norm, double norm_type);
/* torch.nn.utils.clip_grad_value_: clamps every gradient element to [-clip, clip]. */
void em_optim_clip_grad_value(em_optim *opt, float clip);

#ifdef __cplusplus
}
#endif
#endif
