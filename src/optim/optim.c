/* What every optimizer shares: choosing the tensors to optimize, allocating their state
 * once, and the step that ends a training iteration. The update rules live one per file
 * (sgd.c, adam.c) behind em_optim_vtable. */
#include "ember/optim.h"

#include <string.h>

#include "ember/autograd.h"
#include "ember/error.h"
#include "optim/optim_internal.h"

static const em_optim_vtable *const vtables[EM_OPTIM_KIND_COUNT] = {
    [EM_OPTIM_SGD] = &em_sgd_vtable,
    [EM_OPTIM_ADAM] = &em_adam_vtable,
};

static const em_optim_vtable *vtable_of(em_optim_kind kind)
{
    if ((int)kind < 0 || kind >= EM_OPTIM_KIND_COUNT)
        return NULL;
    return vtables[kind];
}

em_optim_opts em_optim_defaults(em_optim_kind kind)
{
    const em_optim_vtable *vt = vtable_of(kind);
    if (vt)
        return vt->defaults();
    em_optim_opts none;
    memset(&none, 0, sizeof none);
    return none;
}

const char *em_optim_name(em_optim_kind kind)
{
    const em_optim_vtable *vt = vtable_of(kind);
    return vt ? vt->name : "unknown";
}

int em_optim_parse(const char *name, em_optim_kind *kind)
{
    for (int k = 0; k < EM_OPTIM_KIND_COUNT; k++) {
        if (name && strcmp(name, vtables[k]->name) == 0) {
            *kind = (em_optim_kind)k;
            return EM_OK;
        }
    }
    char valid[256] = "";
    for (int k = 0; k < EM_OPTIM_KIND_COUNT; k++) {
        if (k)
            strncat(valid, ", ", sizeof valid - strlen(valid) - 1);
        strncat(valid, vtables[k]->name, sizeof valid - strlen(valid) - 1);
    }
    return em_error("unknown optimizer \"%s\"; valid: %s", name ? name : "(null)", valid);
}

em_optim *em_optim_new_tensors(em_tensor *const *params, int n, em_optim_kind kind,
                               const em_optim_opts *opts)
{
    const em_optim_vtable *vt = vtable_of(kind);
    if (!vt) {
        em_error("unknown optimizer kind %d", (int)kind);
        return NULL;
    }
    em_optim_opts o = opts ? *opts : vt->defaults();
    if (vt->validate(&o) != EM_OK) {
        em_error_prefix("%s: ", vt->name);
        return NULL;
    }
    if (n < 0 || (n > 0 && !params)) {
        em_error("%s: no parameter list", vt->name);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!params[i] || !params[i]->requires_grad || !params[i]->grad || !params[i]->data ||
            !em_is_contiguous(params[i])) {
            em_error("%s: tensor %d (%s) is not a dense trainable parameter with a gradient buffer",
                     vt->name, i, params[i] && params[i]->name ? params[i]->name : "unnamed");
            return NULL;
        }
    }
    int n_state = vt->state_count(&o);

    /* One chunk sized for everything, so that the optimizer asks the system for memory
     * exactly twice (arena header, chunk) and never again. */
    size_t bytes = sizeof(em_optim) + EM_ALIGN + (size_t)n * sizeof(em_optim_slot) + EM_ALIGN;
    for (int i = 0; i < n; i++)
        bytes += (size_t)n_state * ((size_t)params[i]->numel * sizeof(float) + EM_ALIGN);
    em_arena *arena = em_arena_create(bytes);
    if (!arena)
        return NULL;
    em_optim *opt = em_arena_calloc(arena, 1, sizeof *opt);
    em_optim_slot *slots = n ? em_arena_calloc(arena, (size_t)n, sizeof *slots) : NULL;
    if (!opt || (n && !slots)) {
        em_arena_destroy(arena);
        return NULL;
    }
    opt->vt = vt;
    opt->opts = o;
    opt->arena = arena;
    opt->slots = slots;
    opt->n_slots = n;
    opt->n_state = n_state;
    for (int i = 0; i < n; i++) {
        slots[i].param = params[i];
        slots[i].opts = &opt->opts;
        for (int s = 0; s < n_state; s++) {
            slots[i].state[s] = em_arena_calloc(arena, (size_t)params[i]->numel, sizeof(float));
            if (!slots[i].state[s]) {
                em_arena_destroy(arena);
                return NULL;
            }
        }
    }
    return opt;
}

em_optim *em_optim_new(em_model *m, em_optim_kind kind, const em_optim_opts *opts)
{
    if (!m) {
        em_error("optimizer: no model (an earlier step failed: %s)", ember_last_error());
        return NULL;
    }
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    /* The trainable tensors only: buffers are never trained and frozen parameters keep
     * their values. A short-lived list; the optimizer keeps its own copy. */
    em_tensor *stack_list[64];
    em_tensor **list = stack_list;
    em_arena *scratch = NULL;
    if (count > 64) {
        scratch = em_arena_create((size_t)count * sizeof(em_tensor *) + EM_ALIGN);
        list = scratch ? em_arena_alloc(scratch, (size_t)count * sizeof(em_tensor *)) : NULL;
        if (!list) {
            em_arena_destroy(scratch);
            return NULL;
        }
    }
    int n = 0;
    for (int i = 0; i < count; i++)
        if (!state[i].is_buffer && state[i].tensor && state[i].tensor->requires_grad)
            list[n++] = state[i].tensor;
    em_optim *opt = em_optim_new_tensors(list, n, kind, opts);
    em_arena_destroy(scratch);
    return opt;
}

void em_optim_free(em_optim *opt)
{
    if (opt)
        em_arena_destroy(opt->arena);
}

static void update_all(em_optim *opt, bool zero_grad)
{
    for (int i = 0; i < opt->n_slots; i++) {
        em_optim_slot *slot = &opt->slots[i];
        /* A tensor that received no gradient buffer is skipped, as PyTorch skips a
         * parameter whose .grad is None. */
        if (slot->param->grad)
            opt->vt->update(slot, zero_grad);
    }
    opt->steps++;
}

void em_optim_update(em_optim *opt)
{
    if (opt)
        update_all(opt, false);
}

void em_optim_zero_grad(em_optim *opt)
{
    if (!opt)
        return;
    for (int i = 0; i < opt->n_slots; i++)
        em_zero_grad(opt->slots[i].param);
}

void em_optim_step(em_optim *opt)
{
    if (opt)
        update_all(opt, true);
    em_step_end();
}

void em_optim_set_lr(em_optim *opt, float lr)
{
    if (opt)
        opt->opts.lr = lr;
}

float em_optim_lr(const em_optim *opt) { return opt ? opt->opts.lr : 0.0f; }

int64_t em_optim_steps(const em_optim *opt) { return opt ? opt->steps : 0; }
