/* A model: a sequence of layers numbered as nn.Sequential numbers its children, their
 * parameters in one arena, and the named tensors in state_dict order. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ember/autograd.h"
#include "ember/error.h"
#include "nn/layer.h"

/* A parameter larger than this (1 GiB of float32, 2 with its gradient) is refused
 * rather than attempted: a typo in a description should give a message, not exhaust
 * memory. */
#define MAX_TENSOR_NUMEL (INT64_C(1) << 28)

struct em_model {
    em_arena *arena;
    em_shape input;
    em_layer **layers;
    int n_layers, cap_layers;
    em_named_tensor *state;
    int n_state, cap_state;
    bool training;
    bool skip_init; /* layers' parameters stay zero: every one is about to be loaded */
    em_rng rng;
    char *description;
};

em_model *em_model_new(int input_ndim, const int64_t *input_shape, uint64_t seed)
{
    if (input_ndim < 1 || input_ndim > EM_MAX_DIMS - 1 || !input_shape) {
        em_error("model input: %d dimensions given; an example has 1 to %d (the batch dimension "
                 "comes on top)",
                 input_ndim, EM_MAX_DIMS - 1);
        return NULL;
    }
    if (em_check_shape(input_ndim, input_shape) != EM_OK) {
        em_error_prefix("model input: ");
        return NULL;
    }
    em_model *m = calloc(1, sizeof *m);
    if (!m) {
        em_error("model: out of memory");
        return NULL;
    }
    m->arena = em_arena_create(0);
    if (!m->arena) {
        free(m);
        return NULL;
    }
    m->input.ndim = input_ndim;
    for (int d = 0; d < input_ndim; d++)
        m->input.dim[d] = input_shape[d];
    m->training = true;
    em_rng_seed(&m->rng, seed);
    if (em_model_set_description(m, NULL) != EM_OK) {
        em_model_free(m);
        return NULL;
    }
    return m;
}

void em_model_free(em_model *m)
{
    if (!m)
        return;
    em_arena_destroy(m->arena);
    free(m->layers);
    free(m->state);
    free(m->description);
    free(m);
}

int em_model_layer_count(const em_model *m) { return m ? m->n_layers : 0; }

void em_model_skip_init(em_model *m, bool skip)
{
    m->skip_init = skip;
}

em_layer *em_model_layer_at(const em_model *m, int i)
{
    return m && i >= 0 && i < m->n_layers ? m->layers[i] : NULL;
}

const em_shape *em_model_input(const em_model *m) { return &m->input; }

int em_model_set_description(em_model *m, const char *text)
{
    char *copy = text ? strdup(text) : em_model_generate_description(m);
    if (!copy)
        return em_error("model description: out of memory");
    free(m->description);
    m->description = copy;
    return EM_OK;
}

const char *em_model_description(const em_model *m) { return m ? m->description : NULL; }

static const em_shape *last_shape(const em_model *m)
{
    return m->n_layers ? &m->layers[m->n_layers - 1]->out : &m->input;
}

static int grow(void **items, int *cap, int needed, size_t item_size)
{
    if (needed <= *cap)
        return EM_OK;
    int new_cap = *cap ? *cap * 2 : 8;
    while (new_cap < needed)
        new_cap *= 2;
    void *p = realloc(*items, (size_t)new_cap * item_size);
    if (!p)
        return em_error("model: out of memory");
    *items = p;
    *cap = new_cap;
    return EM_OK;
}

static em_tensor *add_named(em_layer *l, const char *name, int ndim, const int64_t *shape, bool buffer)
{
    em_model *m = l->model;
    char full[128];
    if (l->kind->bare_names)
        snprintf(full, sizeof full, "%s", name);
    else
        snprintf(full, sizeof full, "%d.%s", l->index, name);
    if (em_check_shape(ndim, shape) != EM_OK) {
        em_error_prefix("%s: ", full);
        return NULL;
    }
    int64_t numel = em_shape_numel(ndim, shape);
    if (numel > MAX_TENSOR_NUMEL) {
        em_error("%s %s has %" PRId64 " elements; ember refuses tensors above %" PRId64, full,
                 em_dims_str(ndim, shape), numel, MAX_TENSOR_NUMEL);
        return NULL;
    }
    if (grow((void **)&m->state, &m->cap_state, m->n_state + 1, sizeof *m->state) != EM_OK)
        return NULL;
    em_tensor *t = buffer ? em_tensor_zeros(m->arena, ndim, shape) : em_param_new(m->arena, ndim, shape, full);
    if (!t)
        return NULL;
    if (buffer)
        t->name = em_arena_strdup(m->arena, full);
    if (!t->name)
        return NULL;
    m->state[m->n_state++] = (em_named_tensor){t->name, t, buffer};
    if (!buffer)
        l->param_count += numel;
    return t;
}

em_tensor *em_layer_param(em_layer *l, const char *name, int ndim, const int64_t *shape)
{
    return add_named(l, name, ndim, shape, false);
}

em_tensor *em_layer_buffer(em_layer *l, const char *name, int ndim, const int64_t *shape)
{
    return add_named(l, name, ndim, shape, true);
}

int em_model_add_layer(em_model *m, const em_layer_kind *kind, const void *config)
{
    if (!m || !kind)
        return em_error("em_model_add_layer: no model or layer kind");
    int index = m->n_layers;
    if (grow((void **)&m->layers, &m->cap_layers, index + 1, sizeof *m->layers) != EM_OK)
        return EM_ERR;
    em_layer *l = em_arena_calloc(m->arena, 1, sizeof *l);
    void *cfg = kind->config_size ? em_arena_alloc(m->arena, kind->config_size) : NULL;
    if (!l || (kind->config_size && !cfg))
        return em_error_prefix("layer %d (%s): ", index, kind->name);
    if (cfg)
        memcpy(cfg, config, kind->config_size);
    l->kind = kind;
    l->model = m;
    l->index = index;
    l->config = cfg;
    l->in = *last_shape(m);

    int state_before = m->n_state;
    em_rng *init_rng = m->skip_init ? NULL : &m->rng;
    if (kind->infer(l, &l->in, &l->out) != EM_OK || (kind->create && kind->create(l, init_rng) != EM_OK)) {
        m->n_state = state_before;
        return em_error_prefix("layer %d (%s): ", index, kind->name);
    }

    m->layers[m->n_layers++] = l;
    if (em_model_set_description(m, NULL) != EM_OK) {
        m->n_layers--;
        m->n_state = state_before;
        return EM_ERR;
    }

    /* An activation right after a layer that can apply it in its output pass runs
     * there (one pass over the data instead of two); it keeps its index for naming. */
    em_activation act;
    float param;
    em_layer *prev = index ? m->layers[index - 1] : NULL;
    if (prev && !prev->fused && kind->activation_of && prev->kind->absorb_activation &&
        kind->activation_of(l, &act, &param)) {
        l->fused = prev->kind->absorb_activation(prev, act, param);
        l->fused_into = index - 1;
    } else if (prev && !prev->fused && kind->absorb_previous && kind->absorb_previous(l, prev)) {
        prev->fused = true;
        prev->fused_into = index;
    }
    return EM_OK;
}

/* Token sequences (a first layer with a vocabulary) may have any length. */
static bool shape_matches(const em_model *m, const em_tensor *x)
{
    const em_shape *s = &m->input;
    bool any_length = m->n_layers && m->layers[0]->kind->token_vocab;
    if (x->ndim != s->ndim + 1)
        return false;
    for (int d = 0; d < s->ndim; d++)
        if (x->shape[d + 1] != s->dim[d] && !(d == 0 && any_length))
            return false;
    return true;
}

em_tensor *em_forward(em_model *m, em_tensor *x)
{
    if (!m || !x) {
        if (!m)
            em_error("em_forward: no model");
        return NULL;
    }
    if (!shape_matches(m, x)) {
        int64_t want = em_shape_numel(m->input.ndim, m->input.dim);
        int64_t got = x->ndim >= 1 ? x->numel / x->shape[0] : 0;
        em_error("em_forward: input %s does not fit the model's input [N, %s%s", em_shape_str(x),
                 em_dims_str(m->input.ndim, m->input.dim) + 1,
                 got == want ? " (same size per example: reshape the data, e.g. with "
                               "em_dataset_set_item_shape, or change the 'input' line)"
                             : "");
        return NULL;
    }
    for (int i = 0; i < m->n_layers; i++) {
        em_layer *l = m->layers[i];
        if (l->fused)
            continue;
        /* A layer may do the next one's work in the same pass (its op then decides
         * whether it can, with or without gradients). */
        int next = i + 1;
        while (next < m->n_layers && m->layers[next]->fused)
            next++;
        em_tensor *y;
        if (next < m->n_layers && l->kind->runs_next &&
            l->kind->runs_next(l, m->layers[next])) {
            y = l->kind->forward_with_next(l, m->layers[next], x);
            if (y)
                i = next;
        } else {
            y = l->kind->forward(l, x, m->training);
        }
        if (!y) {
            em_error_prefix("layer %d (%s): ", l->index, l->kind->name);
            return NULL;
        }
        x = y;
    }
    return x;
}

void em_model_set_training(em_model *m, bool training)
{
    if (m)
        m->training = training;
}

bool em_model_is_training(const em_model *m) { return m && m->training; }

const em_named_tensor *em_model_state(const em_model *m, int *count)
{
    if (count)
        *count = m ? m->n_state : 0;
    return m ? m->state : NULL;
}

em_tensor *em_model_find(const em_model *m, const char *name)
{
    if (!m || !name)
        return NULL;
    for (int i = 0; i < m->n_state; i++)
        if (strcmp(m->state[i].name, name) == 0)
            return m->state[i].tensor;
    return NULL;
}

int64_t em_model_param_count(const em_model *m)
{
    int64_t total = 0;
    for (int i = 0; m && i < m->n_state; i++)
        if (!m->state[i].is_buffer)
            total += m->state[i].tensor->numel;
    return total;
}

static int copy_shape(const em_shape *s, int64_t *shape)
{
    if (shape)
        for (int d = 0; d < s->ndim; d++)
            shape[d] = s->dim[d];
    return s->ndim;
}

int em_model_output_shape(const em_model *m, int64_t *shape)
{
    return m ? copy_shape(last_shape(m), shape) : 0;
}

int em_model_input_shape(const em_model *m, int64_t *shape) { return m ? copy_shape(&m->input, shape) : 0; }

void em_model_zero_grad(em_model *m)
{
    for (int i = 0; m && i < m->n_state; i++)
        if (!m->state[i].is_buffer)
            em_zero_grad(m->state[i].tensor);
}

em_arena *em_model_arena(const em_model *m) { return m ? m->arena : NULL; }

em_rng *em_model_rng(em_model *m) { return m ? &m->rng : NULL; }
