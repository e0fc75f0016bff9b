/* Reverse-mode autodiff on a define-by-run tape. Each op that has an input requiring a
 * gradient appends a node (inputs, output, backward function, saved context) to the
 * tape of the current thread; em_backward walks it in reverse. Nodes, saved tensors and
 * non-parameter gradients live in the step arena; em_step_end forgets them all. */
#ifndef EMBER_AUTOGRAD_H
#define EMBER_AUTOGRAD_H

#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EM_NODE_MAX_INPUTS 4

typedef void (*em_backward_fn)(em_node *node);

struct em_node {
    const char *op;
    em_tensor *out;
    em_tensor *in[EM_NODE_MAX_INPUTS];
    int n_in;
    em_backward_fn backward;
    void *saved;         /* op-specific context, allocated in the step arena */
    float f[4];          /* small scalar parameters of the op */
    int64_t i[2 * EM_MAX_DIMS];
    /* Set by ops whose backward obtains its inputs' gradient buffers itself, through
     * em_grad_for_write or em_grad_adopt: the tape then does not give those inputs a
     * zeroed buffer first, and a backward that writes the whole gradient skips the
     * clearing and the read of zeros (see the contract below). */
    bool takes_input_grads;
};

/* The arena of the current step on this thread (created on first use). */
em_arena *em_step_arena(void);
/* Ends a step: forgets the tape and resets the step arena. Parameter gradients stay. */
void em_step_end(void);
/* Frees this thread's step arena (call before a thread exits, or at program end). */
void em_release_thread_state(void);

bool em_grad_enabled(void);
/* Returns the previous setting. Evaluation and inference run with it off: ops record
 * nothing and outputs never require gradients. */
bool em_set_grad_enabled(bool enabled);

/* Called by an op after computing `out`: when gradients are on and some input requires
 * one, marks `out` as requiring a gradient, appends a node and returns it so that the
 * op can save context; otherwise returns NULL and the op saves nothing. */
em_node *em_record(const char *op, em_tensor *out, int n_in, em_tensor *const *in,
                   em_backward_fn backward);
/* Contract of a backward function: it runs with gradients off, node->out->grad holds
 * d(root)/d(out) (dense), and every input with requires_grad already has a zeroed or
 * partly accumulated .grad (dense) into which it must ADD its contribution. With
 * takes_input_grads set, an input may instead have no .grad yet: the backward calls
 * em_grad_for_write (and when *fresh is set, writes every element rather than adding)
 * or em_grad_adopt. */

/* Seeds d(loss)/d(loss) = 1 (loss must have one element) and runs the tape backward,
 * accumulating into .grad of every tensor that requires one. */
int em_backward(em_tensor *loss);
/* Same with an explicit upstream gradient (dense, loss->numel floats). */
int em_backward_with(em_tensor *root, const float *grad_out);

/* Gradient buffer of t for accumulation, zero-filled on first use. */
float *em_grad_buffer(em_tensor *t);
/* Gradient buffer of t for a backward with takes_input_grads: the existing one
 * (*fresh = false: add to it), or a new uninitialised one (*fresh = true: the caller
 * must write all t->numel elements). NULL when out of memory. */
float *em_grad_for_write(em_tensor *t, bool *fresh);
/* Makes buffer (numel floats in the step arena, whose owner's backward has run) t's
 * gradient when t has none yet and is not a parameter; false otherwise (then add to
 * em_grad_buffer(t) as usual). Saves the copy of a gradient that passes through unchanged
 * (reshape, a residual connection). */
bool em_grad_adopt(em_tensor *t, float *buffer);
/* Sets a parameter's gradient to zero. */
void em_zero_grad(em_tensor *t);

size_t em_tape_length(void);

/* ---- anomaly detection (torch.autograd.set_detect_anomaly) ----------------------
 * Off by default (each check is a pass over a tensor). When on, every op's output is
 * checked for NaN and infinity right after its forward, and every gradient right after
 * the backward of the node that produced it. The first forward anomaly of a step is kept
 * (em_anomaly) and makes em_backward fail with it; a non-finite gradient stops
 * em_backward at once with a message naming the op and the input. Process-wide. */
bool em_set_detect_anomaly(bool enabled); /* returns the previous setting */
bool em_detect_anomaly_enabled(void);
/* The first forward anomaly of the current step on this thread, naming the op, the
 * element and the input that was already non-finite if one was; "" when none. Cleared
 * by em_step_end. */
const char *em_anomaly(void);

/* ---- gradient checking (public API) --------------------------------------------
 * fn computes an output from `inputs` (and from anything else it closes over through
 * `user`). Non-scalar outputs are reduced to sum(out * w) with fixed pseudo-random
 * weights w, so every output element is checked. For each input the analytic gradient
 * from em_backward is compared with central differences (x ± eps, accumulated in
 * double). */
typedef em_tensor *(*em_gradcheck_fn)(void *user, em_tensor *const *inputs, int n_inputs);

typedef struct em_gradcheck_report {
    double worst_rel_error[16];  /* per input (first 16) */
    double worst_abs_error[16];
    double max_rel_error;        /* over all inputs */
    int worst_input;
    int64_t worst_index;
    double analytic;             /* at the worst element */
    double numeric;
    int64_t checked;             /* elements compared */
} em_gradcheck_report;

/* eps: step (1e-2 suits float32 ops of unit scale). max_per_input: elements probed
 * per input (<= 0 means all). Error = |a - n| / max(|a|, |n|, atol_floor) with
 * atol_floor = 1e-3 so that gradients near zero compare absolutely. Inputs must
 * require gradients. Returns EM_OK or EM_ERR if fn fails. */
int em_gradcheck(em_gradcheck_fn fn, void *user, em_tensor *const *inputs, int n_inputs,
                 double eps, int64_t max_per_input, em_gradcheck_report *report);

#ifdef __cplusplus
}
#endif
#endif
