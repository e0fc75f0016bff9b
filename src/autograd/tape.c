#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/autograd.h"
#include "ember/error.h"
#include "autograd/anomaly.h"
#include "autograd/step_arena.h"
#include "ops/conv_internal.h"

/* Nodes are linked backwards so that the tape needs no growing array. */
typedef struct tape_entry {
    em_node node; /* first member: an em_node* is a tape_entry* */
    struct tape_entry *prev;
} tape_entry;

/* Tensors whose gradient buffer lives in the step arena: their .grad is cleared when
 * the step ends, so that a tensor outliving the step never points into reused memory. */
typedef struct step_grad {
    em_tensor *tensor;
    struct step_grad *next;
} step_grad;

typedef struct tape_state {
    em_arena *arena;
    step_grad *step_grads;
    tape_entry *last;
    size_t length;
    /* An op whose node could not be allocated: its gradients would silently be missing,
     * so backward refuses (the message names the op). */
    char broken[256];
    bool grad_disabled; /* zero-initialised thread-local: gradients on by default */
} tape_state;

static _Thread_local tape_state tape;

em_arena *em_step_arena(void)
{
    if (!tape.arena)
        tape.arena = em_arena_create(0);
    return tape.arena;
}

em_arena *em_swap_step_arena(em_arena *arena)
{
    em_arena *previous = tape.arena;
    tape.arena = arena;
    return previous;
}

static void forget_step_grads(void)
{
    for (step_grad *g = tape.step_grads; g; g = g->next)
        g->tensor->grad = NULL;
    tape.step_grads = NULL;
}

void em_step_end(void)
{
    forget_step_grads();
    tape.last = NULL;
    tape.length = 0;
    tape.broken[0] = '\0';
    em_anomaly_clear();
    if (tape.arena)
        em_arena_reset(tape.arena);
}

void em_release_thread_state(void)
{
    forget_step_grads();
    tape.last = NULL;
    tape.length = 0;
    tape.broken[0] = '\0';
    em_anomaly_clear();
    em_arena_destroy(tape.arena);
    tape.arena = NULL;
    em_conv_release_cache();
}

bool em_grad_enabled(void) { return !tape.grad_disabled; }

bool em_set_grad_enabled(bool enabled)
{
    bool previous = !tape.grad_disabled;
    tape.grad_disabled = !enabled;
    return previous;
}

size_t em_tape_length(void) { return tape.length; }

em_node *em_record(const char *op, em_tensor *out, int n_in, em_tensor *const *in,
                   em_backward_fn backward)
{
    if (em_anomaly_enabled())
        em_anomaly_check_forward(op, out, n_in, in);
    if (tape.grad_disabled || !out)
        return NULL;
    bool needed = false;
    for (int i = 0; i < n_in; i++)
        needed |= in[i] && in[i]->requires_grad;
    if (!needed)
        return NULL;
    em_arena *arena = em_step_arena();
    tape_entry *e = arena ? em_arena_alloc(arena, sizeof *e) : NULL;
    if (!e) {
        if (!tape.broken[0])
            snprintf(tape.broken, sizeof tape.broken, "recording op '%s' failed: %s", op,
                     ember_last_error());
        return NULL;
    }
    memset(e, 0, sizeof *e);
    e->node.op = op;
    e->node.out = out;
    e->node.n_in = n_in;
    for (int i = 0; i < n_in; i++)
        e->node.in[i] = in[i];
    e->node.backward = backward;
    e->prev = tape.last;
    tape.last = e;
    tape.length++;
    out->requires_grad = true;
    out->creator = &e->node;
    return &e->node;
}

/* Gives t (which has no gradient) the step-arena buffer `buffer`, or a new one (zeroed
 * or not) when buffer is NULL; forgotten at the end of the step. */
static float *attach_step_grad(em_tensor *t, float *buffer, bool zeroed)
{
    em_arena *arena = em_step_arena();
    step_grad *link = arena ? em_arena_alloc(arena, sizeof *link) : NULL;
    if (!link)
        return NULL;
    if (!buffer)
        buffer = zeroed ? em_arena_calloc(arena, (size_t)t->numel, sizeof(float))
                        : em_arena_alloc(arena, (size_t)t->numel * sizeof(float));
    if (buffer) {
        t->grad = buffer;
        link->tensor = t;
        link->next = tape.step_grads;
        tape.step_grads = link;
    }
    return buffer;
}

float *em_grad_buffer(em_tensor *t)
{
    return t->grad ? t->grad : attach_step_grad(t, NULL, true);
}

float *em_grad_for_write(em_tensor *t, bool *fresh)
{
    *fresh = t->grad == NULL;
    return t->grad ? t->grad : attach_step_grad(t, NULL, false);
}

bool em_grad_adopt(em_tensor *t, float *buffer)
{
    if (t->grad || t->is_param || !buffer)
        return false;
    return attach_step_grad(t, buffer, false) != NULL;
}

void em_zero_grad(em_tensor *t)
{
    if (t->grad)
        memset(t->grad, 0, (size_t)t->numel * sizeof(float));
}

int em_backward_with(em_tensor *root, const float *grad_out)
{
    if (!root)
        return em_error("backward of a NULL tensor (an earlier op failed: %s)", ember_last_error());
    if (tape.broken[0])
        return em_error("backward: the tape of this step is incomplete (%s)", tape.broken);
    if (!root->requires_grad)
        return em_error("backward: the tensor %s does not require a gradient (no parameter or "
                        "input with requires_grad contributed to it, or gradients were off)",
                        em_shape_str(root));
    if (em_anomaly_enabled() && em_anomaly()[0])
        return em_error("anomaly detection: %s", em_anomaly());
    if (em_anomaly_enabled() && em_anomaly_check_seed(root, grad_out) != EM_OK)
        return EM_ERR;
    /* Gradients of intermediate results from an earlier backward over this tape must not
     * leak into this one; leaves keep accumulating, as in PyTorch. */
    for (tape_entry *e = tape.last; e; e = e->prev)
        e->node.out->grad = NULL;
    float *g = em_grad_buffer(root);
    if (!g)
        return EM_ERR;
    for (int64_t i = 0; i < root->numel; i++)
        g[i] += grad_out[i];

    bool previous = em_set_grad_enabled(false);
    for (tape_entry *e = tape.last; e; e = e->prev) {
        em_node *n = &e->node;
        if (!n->out->grad || !n->backward)
            continue;
        for (int i = 0; i < n->n_in && !n->takes_input_grads; i++)
            if (n->in[i] && n->in[i]->requires_grad && !em_grad_buffer(n->in[i])) {
                em_set_grad_enabled(previous);
                return em_error_prefix("backward of %s: ", n->op);
            }
        n->backward(n);
        for (int i = 0; i < n->n_in && n->takes_input_grads; i++)
            if (n->in[i] && n->in[i]->requires_grad && !n->in[i]->grad) {
                em_set_grad_enabled(previous);
                return em_error("backward of %s: out of memory for the gradient of input %d %s", n->op, i,
                                em_shape_str(n->in[i]));
            }
        if (em_anomaly_enabled() && em_anomaly_check_backward(n) != EM_OK) {
            em_set_grad_enabled(previous);
            return EM_ERR;
        }
    }
    em_set_grad_enabled(previous);
    return EM_OK;
}

int em_backward(em_tensor *loss)
{
    if (!loss)
        return em_error("backward of a NULL loss (an earlier op failed: %s)", ember_last_error());
    if (loss->numel != 1)
        return em_error("backward needs a scalar loss, got shape %s; reduce it with em_sum_all "
                        "or em_mean_all, or use em_backward_with",
                        em_shape_str(loss));
    const float one = 1.0f;
    return em_backward_with(loss, &one);
}
