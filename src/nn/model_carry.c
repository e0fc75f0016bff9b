/* State carried from one forward to the next: recurrent layers' final hidden states
 * kept in the model, so that the next batch (the continuation of the same sequences)
 * or the next generated token starts where the last forward ended.
 *
 * A layer stores its final states after every forward, carrying or not (so that the C
 * API can read them); whether the next forward starts from them is `from_stored`: set
 * after a forward when carrying, and by em_model_set_hidden. The stored values are
 * plain floats, so a carried state is detached: the forward that starts from it gets a
 * copy in the step arena, which is also what its backward reads after the layer has
 * overwritten the stored values with the new final state. */
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "nn/layer.h"

int em_carry_begin(em_layer *l, em_layer_carry *c, int64_t batch)
{
    if (c->from_stored && c->batch != batch)
        return em_error("the carried state holds %lld sequence%s, this batch has %lld: reset it "
                        "(em_model_reset_carry) before changing the batch size",
                        (long long)c->batch, c->batch == 1 ? "" : "s", (long long)batch);
    int64_t need = c->rows * batch * c->width;
    if (need > c->capacity) {
        /* Grows geometrically in the model arena: batch sizes settle after a few calls. */
        int64_t cap = c->capacity * 2 > need ? c->capacity * 2 : need;
        float *data[EM_CARRY_MAX_TENSORS] = {NULL};
        for (int i = 0; i < c->count; i++) {
            data[i] = em_arena_calloc(em_model_arena(l->model), (size_t)cap, sizeof(float));
            if (!data[i])
                return em_error("carried state of %lld sequences: out of memory", (long long)batch);
        }
        for (int i = 0; i < c->count; i++) {
            if (c->data[i] && c->batch == batch)
                memcpy(data[i], c->data[i], (size_t)(c->rows * batch * c->width) * sizeof(float));
            c->data[i] = data[i];
        }
        c->capacity = cap;
    }
    if (!c->from_stored)
        c->batch = batch;
    return c->from_stored ? 1 : 0;
}

em_tensor *em_carry_initial(const em_layer_carry *c, int i, int64_t row)
{
    if (!c->from_stored)
        return NULL;
    int64_t shape[2] = {c->batch, c->width};
    return em_tensor_from(NULL, 2, shape, c->data[i] + row * c->batch * c->width);
}

void em_carry_store(em_layer_carry *c, int i, int64_t row, const em_tensor *final_state)
{
    if (final_state && final_state->numel == c->batch * c->width)
        em_copy_to(final_state, c->data[i] + row * c->batch * c->width);
}

void em_carry_end(em_layer_carry *c) { c->from_stored = c->carry; }

/* ---- the C API (ember/nn.h) ------------------------------------------------------------ */

static em_layer_carry *carry_of(const em_model *m, int i)
{
    em_layer *l = em_model_layer_at(m, i);
    return l && l->kind->carry ? l->kind->carry(l) : NULL;
}

bool em_model_has_carry(const em_model *m)
{
    for (int i = 0; i < em_model_layer_count(m); i++)
        if (carry_of(m, i))
            return true;
    return false;
}

void em_model_reset_carry(em_model *m)
{
    for (int i = 0; i < em_model_layer_count(m); i++) {
        em_layer_carry *c = carry_of(m, i);
        if (!c)
            continue;
        c->from_stored = false;
        for (int k = 0; k < c->count; k++)
            if (c->data[k])
                memset(c->data[k], 0, (size_t)c->capacity * sizeof(float));
    }
}

void em_model_set_carry(em_model *m, bool carry)
{
    em_model_reset_carry(m);
    for (int i = 0; i < em_model_layer_count(m); i++) {
        em_layer_carry *c = carry_of(m, i);
        if (c)
            c->carry = carry;
    }
}

bool em_model_carries(const em_model *m)
{
    for (int i = 0; i < em_model_layer_count(m); i++) {
        em_layer_carry *c = carry_of(m, i);
        if (c && c->carry)
            return true;
    }
    return false;
}

int em_model_hidden_count(const em_model *m)
{
    int n = 0;
    for (int i = 0; i < em_model_layer_count(m); i++) {
        em_layer_carry *c = carry_of(m, i);
        n += c ? c->count : 0;
    }
    return n;
}

/* The layer and tensor of the k-th state, with its name in `name`. */
static em_layer_carry *nth_state(const em_model *m, int k, int *tensor, char *name, size_t size)
{
    for (int i = 0; i < em_model_layer_count(m) && k >= 0; i++) {
        em_layer_carry *c = carry_of(m, i);
        if (!c)
            continue;
        if (k < c->count) {
            *tensor = k;
            snprintf(name, size, "%d.%s", em_model_layer_at(m, i)->index, c->names[k]);
            return c;
        }
        k -= c->count;
    }
    return NULL;
}

const char *em_model_hidden_name(const em_model *m, int i, int64_t shape[2])
{
    static _Thread_local char names[4][64];
    static _Thread_local int next;
    char *name = names[next++ % 4];
    int tensor;
    em_layer_carry *c = nth_state(m, i, &tensor, name, sizeof names[0]);
    if (!c)
        return NULL;
    if (shape) {
        shape[0] = c->rows;
        shape[1] = c->width;
    }
    return name;
}

static em_layer_carry *find_state(const em_model *m, const char *name, int *tensor, em_layer **layer)
{
    char candidate[64];
    for (int k = 0; name; k++) {
        em_layer_carry *c = nth_state(m, k, tensor, candidate, sizeof candidate);
        if (!c)
            break;
        if (strcmp(candidate, name) == 0) {
            int index = (int)strtol(name, NULL, 10);
            *layer = em_model_layer_at(m, index);
            return c;
        }
    }
    char known[512] = "";
    for (int k = 0; k < em_model_hidden_count(m); k++)
        em_text_append(known, sizeof known, "%s%s", k ? ", " : "", em_model_hidden_name(m, k, NULL));
    em_error("no carried state named '%s'; %s%s", name ? name : "(null)",
             known[0] ? "the model's are " : "the model has none (no recurrent layer)", known);
    return NULL;
}

int em_model_get_hidden(const em_model *m, const char *name, int64_t batch, float *values)
{
    int t;
    em_layer *l;
    em_layer_carry *c = find_state(m, name, &t, &l);
    if (!c)
        return EM_ERR;
    if (!values || c->batch != batch || !c->data[t])
        return em_error("state %s: %s", name,
                        !values ? "no buffer given"
                        : !c->data[t] ? "no forward has run yet"
                                      : "the last forward had another batch size (see em_model_get_hidden)");
    memcpy(values, c->data[t], (size_t)(c->rows * batch * c->width) * sizeof(float));
    return EM_OK;
}

int em_model_set_hidden(em_model *m, const char *name, int64_t batch, const float *values)
{
    int t;
    em_layer *l;
    em_layer_carry *c = find_state(m, name, &t, &l);
    if (!c)
        return EM_ERR;
    if (!values || batch < 1)
        return em_error("state %s: %s", name, !values ? "no values given" : "the batch size must be at least 1");
    if (c->batch != batch || !c->data[t]) {
        /* A new batch size: the layer's other states start from zeros. */
        bool was = c->from_stored;
        c->from_stored = false;
        if (em_carry_begin(l, c, batch) < 0) {
            c->from_stored = was;
            return em_error_prefix("state %s: ", name);
        }
        for (int k = 0; k < c->count; k++)
            memset(c->data[k], 0, (size_t)(c->rows * batch * c->width) * sizeof(float));
    }
    memcpy(c->data[t], values, (size_t)(c->rows * batch * c->width) * sizeof(float));
    c->from_stored = true;
    return EM_OK;
}
