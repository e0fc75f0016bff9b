/* An optimizer's state for checkpoints (src/optim/optim_state.c). */
#ifndef EMBER_OPTIM_STATE_H
#define EMBER_OPTIM_STATE_H

#include "ember/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The buffers as tensors named "optim.state.<param>.<buffer>" with PyTorch's buffer
 * names (momentum_buffer; exp_avg, exp_avg_sq, max_exp_avg_sq; sum; square_avg,
 * grad_avg). They view the optimizer's own memory: saving writes them, loading into
 * them restores the state. The list and tensor headers go in arena (NULL: the step
 * arena); *count may be 0 (plain SGD keeps no buffers). */
int em_optim_state_tensors(em_optim *opt, em_arena *arena, em_named_tensor **out, int *count);

/* Kind, every group's options (learning rates changed by a schedule included) and the
 * step counts (the optimizer's and each parameter's) as a JSON object; malloc'd. */
char *em_optim_state_json(const em_optim *opt);

/* Restores what em_optim_state_json wrote into an optimizer of the same kind over the
 * same parameters in the same groups. Messages name what differs; nothing changes on
 * error. `source` names the text in messages. */
int em_optim_load_state_json(em_optim *opt, const char *json, const char *source);

/* Only the kind and the default group's options, to create a matching optimizer
 * before loading its state. */
int em_optim_options_from_json(const char *json, const char *source, em_optim_kind *kind,
                               em_optim_opts *opts);

/* Copies the buffers and step counts of every tensor dst shares with src (same
 * kind), and src's step count: a rebuilt optimizer (more tensors, other groups)
 * continues where the old one was. Returns how many tensors were copied. */
int em_optim_copy_state(em_optim *dst, const em_optim *src);

#ifdef __cplusplus
}
#endif
#endif
