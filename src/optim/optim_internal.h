/* Internal: the optimizer object shared by every kind. A kind is a table of functions
 * (validation, how many state buffers a parameter needs, the update kernel), so that a
 * new optimizer is one file plus one table entry. */
#ifndef EMBER_OPTIM_INTERNAL_H
#define EMBER_OPTIM_INTERNAL_H

#include "ember/optim.h"

/* Adam with amsgrad needs three buffers (first and second moments, running maximum). */
#define EM_OPTIM_MAX_STATE 3

/* One optimized tensor and its state buffers (numel floats each, in the optimizer's
 * arena, zeroed at creation, or filled by the kind's init_state). `steps` counts this
 * tensor's updates, as PyTorch keeps a step per parameter: the bias corrections of
 * Adam, Adagrad's learning-rate decay and the first momentum step of SGD depend on it. */
typedef struct em_optim_slot {
    em_tensor *param;
    float *state[EM_OPTIM_MAX_STATE];
    int n_state;
    int64_t steps;
    int group;
    /* The options of the tensor's group. */
    const em_optim_opts *opts;
} em_optim_slot;

/* A parameter group: its options (lr changed by schedules) and its size. */
typedef struct em_optim_group {
    em_optim_opts opts;
    int n_slots;
} em_optim_group;

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
    /* Fills fresh state buffers when zeros are not the start (Adagrad's accumulator);
     * NULL otherwise. */
    void (*init_state)(em_optim_slot *slot);
    /* Updates slot->param from its gradient and increments slot->steps; when
     * zero_grad is set, also zeroes the gradient in the same pass over memory. */
    void (*update)(em_optim_slot *slot, bool zero_grad);
} em_optim_vtable;

struct em_optim {
    const em_optim_vtable *vt;
    em_arena *arena;        /* slots, groups and state buffers, allocated once */
    em_optim_slot *slots;
    int n_slots;
    em_optim_group *groups; /* groups[0]: the default group, with the optimizer's options */
    int n_groups;
    int64_t steps;
};

extern const em_optim_vtable em_sgd_vtable;
extern const em_optim_vtable em_adam_vtable;
extern const em_optim_vtable em_adamw_vtable;
extern const em_optim_vtable em_adagrad_vtable;
extern const em_optim_vtable em_rmsprop_vtable;

/* An optimizer over explicit tensors (each must require gradients and have a gradient
 * buffer, as em_param_new gives). em_optim_new collects a model's trainable tensors
 * and calls this; tests use it directly. */
em_optim *em_optim_new_tensors(em_tensor *const *params, int n, em_optim_kind kind,
                               const em_optim_opts *opts);
/* The same with parameter groups, matched against the tensors' names. */
em_optim *em_optim_new_tensors_grouped(em_tensor *const *params, int n, em_optim_kind kind,
                                       const em_optim_opts *opts, const em_param_group *groups,
                                       int n_groups);

/* groups.c: does tensor t belong to group g (its pattern and dimension limit)? */
bool em_param_group_matches(const em_param_group *g, const em_tensor *t);
/* The options of group g given the optimizer's. */
em_optim_opts em_param_group_opts(const em_param_group *g, const em_optim_opts *base);

/* Elementwise loops over parameters pay for a thread team only past this size. */
#define EM_OPTIM_PARALLEL_MIN 32768
/* Threads take whole chunks of this many elements, each a vectorized loop. */
#define EM_OPTIM_CHUNK 8192

#endif
