/* Internal: the optimizer object shared by every kind. A kind is a table of functions
 * (validation, how many state buffers a parameter needs, the update kernel), so that a
 * new optimizer is one file plus one table entry. */
#ifndef EMBER_OPTIM_INTERNAL_H
#define EMBER_OPTIM_INTERNAL_H

#include "ember/optim.h"

/* Adam with amsgrad needs three buffers (first and second moments, running maximum). */
#define EM_OPTIM_MAX_STATE 3

/* One optimized tensor and its state buffers (numel floats each, in the optimizer's
 * arena, zeroed at creation). `steps` counts this tensor's updates, as PyTorch keeps
 * a step per parameter: the bias corrections of Adam and the first momentum step of
 * SGD depend on it. */
typedef struct em_optim_slot {
    em_tensor *param;
    float *state[EM_OPTIM_MAX_STATE];
    int64_t steps;
    /* The options this tensor is updated with; every slot points at the optimizer's
     * options today, and at its group's once parameter groups exist. */
    const em_optim_opts *opts;
} em_optim_slot;

typedef struct em_optim_vtable {
    em_optim_kind kind;
    const char *name;
    em_optim_opts (*defaults)(void);
    /* EM_OK, or EM_ERR with a message naming the bad option and its value. */
    int (*validate)(const em_optim_opts *opts);
    /* State buffers per parameter for these options (at most EM_OPTIM_MAX_STATE). */
    int (*state_count)(const em_optim_opts *opts);
    /* PyTorch's state_dict names of the buffers, in order (for saving state). */
    const char *const *state_names;
    /* Updates slot->param from its gradient and increments slot->steps; when
     * zero_grad is set, also zeroes the gradient in the same pass over memory. */
    void (*update)(em_optim_slot *slot, bool zero_grad);
} em_optim_vtable;

struct em_optim {
    const em_optim_vtable *vt;
    em_optim_opts opts;
    em_arena *arena;       /* slots and state buffers, allocated once */
    em_optim_slot *slots;
    int n_slots;
    int n_state;           /* buffers per slot */
    int64_t steps;
};

extern const em_optim_vtable em_sgd_vtable;
extern const em_optim_vtable em_adam_vtable;

/* An optimizer over explicit tensors (each must require gradients and have a gradient
 * buffer, as em_param_new gives). em_optim_new collects a model's trainable tensors
 * and calls this; tests use it directly. */
em_optim *em_optim_new_tensors(em_tensor *const *params, int n, em_optim_kind kind,
                               const em_optim_opts *opts);

/* Elementwise loops over parameters pay for a thread team only past this size. */
#define EM_OPTIM_PARALLEL_MIN 32768
/* Threads take whole chunks of this many elements, each a vectorized loop. */
#define EM_OPTIM_CHUNK 8192

#endif
