/* What every optimizer shares: choosing the tensors to optimize, allocating their state
 * once, parameter groups, and the step that ends a training iteration. The update rules
 * live one per file (sgd.c, adam.c, adagrad.c, rmsprop.c) behind em_optim_vtable. */
#include "ember/optim.h"

#include <stdlib.h>
#include <string.h>

#include "ember/autograd.h"
#include "ember/error.h"
#include "optim/optim_internal.h"

static const em_optim_vtable *const vtables[EM_OPTIM_KIND_COUNT] = {
    [EM_OPTIM_SGD] = &em_sgd_vtable,
    [EM_OPTIM_ADAM] = &em_adam_vtable,
    [EM_OPTIM_ADAGRAD] = &em_adagrad_vtable,
    [EM_OPTIM_RMSPROP] = &em_rmsprop_vtable,
    [EM_OPTIM_ADAMW] = &em_adamw_vtable,
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

/* "0.weight, 0.bias, ..." for a message about a pattern matching nothing. */
static void list_names(char *buf, size_t cap, em_tensor *const *params, int n)
{
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < n && used + 1 < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "",
                         params[i]->name ? params[i]->name : "unnamed");
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (used + 1 >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}

em_optim *em_optim_new_tensors_grouped(em_tensor *const *params, int n, em_optim_kind kind,
                                       const em_optim_opts *opts, const em_param_group *groups,
                                       int n_groups)
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
    if (n < 0 || (n > 0 && !params) || n_groups < 0 || (n_groups > 0 && !groups)) {
        em_error("%s: no parameter or group list", vt->name);
        return NULL;
    }
    for (int g = 0; g < n_groups; g++) {
        em_optim_opts go = em_param_group_opts(&groups[g], &o);
        if (vt->validate(&go) != EM_OK) {
            em_error_prefix("%s, parameter group %d (%s): ", vt->name, g + 1,
                            groups[g].pattern && groups[g].pattern[0] ? groups[g].pattern : "*");
            return NULL;
        }
    }
    for (int i = 0; i < n; i++) {
        if (!params[i] || !params[i]->requires_grad || !params[i]->grad || !params[i]->data ||
            !em_is_contiguous(params[i])) {
            em_error("%s: tensor %d (%s) is not a dense trainable parameter with a gradient buffer",
                     vt->name, i, params[i] && params[i]->name ? params[i]->name : "unnamed");
            return NULL;
        }
    }

    /* Each tensor goes to the first group it matches; group 0 holds the rest. */
    int group_of_stack[256];
    int *group_of = n <= 256 ? group_of_stack : malloc((size_t)n * sizeof *group_of);
    if (!group_of) {
        em_error("%s: out of memory for %d parameters", vt->name, n);
        return NULL;
    }
    size_t bytes = sizeof(em_optim) + EM_ALIGN + (size_t)n * sizeof(em_optim_slot) + EM_ALIGN +
                   (size_t)(n_groups + 1) * sizeof(em_optim_group) + EM_ALIGN;
    for (int i = 0; i < n; i++) {
        group_of[i] = 0;
        for (int g = 0; g < n_groups && !group_of[i]; g++)
            if (em_param_group_matches(&groups[g], params[i]))
                group_of[i] = g + 1;
        em_optim_opts go = group_of[i] ? em_param_group_opts(&groups[group_of[i] - 1], &o) : o;
        int k = vt->state_count(&go);
        bytes += (size_t)k * ((size_t)params[i]->numel * sizeof(float) + EM_ALIGN);
    }
    for (int g = 0; g < n_groups; g++) {
        bool used = false;
        for (int i = 0; i < n && !used; i++)
            used = group_of[i] == g + 1;
        if (!used && groups[g].pattern && groups[g].pattern[0]) {
            char names[512];
            list_names(names, sizeof names, params, n);
            em_error("%s: parameter group %d: pattern \"%s\"%s matches no trainable tensor "
                     "(not already in an earlier group); the tensors are: %s",
                     vt->name, g + 1, groups[g].pattern, groups[g].max_ndim > 0 ? " with its dimension limit" : "",
                     names);
            if (group_of != group_of_stack)
                free(group_of);
            return NULL;
        }
    }

    /* One chunk sized for everything, so that the optimizer asks the system for memory
     * exactly twice (arena header, chunk) and never again. */
    em_arena *arena = em_arena_create(bytes);
    em_optim *opt = arena ? em_arena_calloc(arena, 1, sizeof *opt) : NULL;
    em_optim_slot *slots = opt && n ? em_arena_calloc(arena, (size_t)n, sizeof *slots) : NULL;
    em_optim_group *grp = opt ? em_arena_calloc(arena, (size_t)n_groups + 1, sizeof *grp) : NULL;
    if (!opt || (n && !slots) || !grp) {
        em_arena_destroy(arena);
        if (group_of != group_of_stack)
            free(group_of);
        return NULL;
    }
    opt->vt = vt;
    opt->arena = arena;
    opt->slots = slots;
    opt->n_slots = n;
    opt->groups = grp;
    opt->n_groups = n_groups + 1;
    grp[0].opts = o;
    for (int g = 0; g < n_groups; g++)
        grp[g + 1].opts = em_param_group_opts(&groups[g], &o);
    int rc = EM_OK;
    for (int i = 0; i < n && rc == EM_OK; i++) {
        em_optim_slot *slot = &slots[i];
        slot->param = params[i];
        slot->group = group_of[i];
        slot->opts = &grp[group_of[i]].opts;
        slot->n_state = vt->state_count(slot->opts);
        grp[group_of[i]].n_slots++;
        for (int s = 0; s < slot->n_state; s++) {
            slot->state[s] = em_arena_calloc(arena, (size_t)params[i]->numel, sizeof(float));
            if (!slot->state[s])
                rc = EM_ERR;
        }
        if (rc == EM_OK && vt->init_state)
            vt->init_state(slot);
    }
    if (group_of != group_of_stack)
        free(group_of);
    if (rc != EM_OK) {
        em_arena_destroy(arena);
        return NULL;
    }
    return opt;
}

em_optim *em_optim_new_tensors(em_tensor *const *params, int n, em_optim_kind kind,
                               const em_optim_opts *opts)
{
    return em_optim_new_tensors_grouped(params, n, kind, opts, NULL, 0);
}

em_optim *em_optim_new_grouped(em_model *m, em_optim_kind kind, const em_optim_opts *opts,
                               const em_param_group *groups, int n_groups)
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
    em_optim *opt = em_optim_new_tensors_grouped(list, n, kind, opts, groups, n_groups);
    em_arena_destroy(scratch);
    return opt;
}

em_optim *em_optim_new(em_model *m, em_optim_kind kind, const em_optim_opts *opts)
{
    return em_optim_new_grouped(m, kind, opts, NULL, 0);
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
    if (!opt)
        return;
    for (int g = 0; g < opt->n_groups; g++)
        opt->groups[g].opts.lr = lr;
}

float em_optim_lr(const em_optim *opt) { return opt ? opt->groups[0].opts.lr : 0.0f; }

int64_t em_optim_steps(const em_optim *opt) { return opt ? opt->steps : 0; }

int em_optim_group_count(const em_optim *opt) { return opt ? opt->n_groups : 0; }

int em_optim_group_size(const em_optim *opt, int g)
{
    return opt && g >= 0 && g < opt->n_groups ? opt->groups[g].n_slots : 0;
}

const em_optim_opts *em_optim_group_opts(const em_optim *opt, int g)
{
    return opt && g >= 0 && g < opt->n_groups ? &opt->groups[g].opts : NULL;
}

int em_optim_group_of(const em_optim *opt, const char *name)
{
    if (!opt || !name)
        return -1;
    for (int i = 0; i < opt->n_slots; i++)
        if (opt->slots[i].param->name && strcmp(opt->slots[i].param->name, name) == 0)
            return opt->slots[i].group;
    return -1;
}

void em_optim_set_group_lr(em_optim *opt, int g, float lr)
{
    if (opt && g >= 0 && g < opt->n_groups)
        opt->groups[g].opts.lr = lr;
}
