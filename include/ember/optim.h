/* Optimizers over a model's trainable parameters, with PyTorch's update rules. */
#ifndef EMBER_OPTIM_H
#define EMBER_OPTIM_H

#include "ember/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_optim_kind {
    EM_OPTIM_SGD = 0,   /* momentum, dampening, nesterov, weight_decay */
    EM_OPTIM_ADAM,      /* betas, eps, weight_decay (L2, added to the gradient), amsgrad */
    EM_OPTIM_KIND_COUNT
} em_optim_kind;

typedef struct em_optim_opts {
    float lr;
    float momentum;
    float dampening;
    bool nesterov;
    float weight_decay;
    float beta1, beta2, eps;
    bool amsgrad;
} em_optim_opts;

/* PyTorch's defaults for the kind (lr 1e-3 for Adam, 0.01 for SGD, betas 0.9/0.999,
 * eps 1e-8, everything else 0/false). */
em_optim_opts em_optim_defaults(em_optim_kind kind);
/* "sgd", "adam"; EM_ERR listing the valid names if unknown. */
int em_optim_parse(const char *name, em_optim_kind *kind);
const char *em_optim_name(em_optim_kind kind);

typedef struct em_optim em_optim;

/* Optimizes every trainable (requires_grad) parameter of m. NULL + error on invalid
 * options (negative lr, nesterov without momentum, ...). */
em_optim *em_optim_new(em_model *m, em_optim_kind kind, const em_optim_opts *opts);
void em_optim_free(em_optim *opt);

/* Applies one update from the parameters' current gradients. */
void em_optim_update(em_optim *opt);
/* The usual end of a training step: update, zero the gradients, em_step_end(). */
void em_optim_step(em_optim *opt);
void em_optim_zero_grad(em_optim *opt);
void em_optim_set_lr(em_optim *opt, float lr);
float em_optim_lr(const em_optim *opt);
int64_t em_optim_steps(const em_optim *opt);

#ifdef __cplusplus
}
#endif
#endif
