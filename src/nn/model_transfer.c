/* Transfer learning on a model: freezing parameters by name pattern, and a new
 * classifier head. The head is replaced by building a second model from the canonical
 * description with the head's output count changed, so that every layer kind's own
 * shape inference and initialisation apply, and copying the other tensors across. */
#include "ember/transfer.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "nn/layer.h"

#define MAX_PATTERNS 32
#define PATTERN_CHARS 256

/* Splits "a,b|c" into patterns; EM_ERR on an empty list or one too long. */
static int split_patterns(const char *patterns, char buf[MAX_PATTERNS][PATTERN_CHARS], int *count)
{
    *count = 0;
    const char *p = patterns;
    while (*p) {
        size_t len = strcspn(p, ",|");
        if (len > 0) {
            if (*count == MAX_PATTERNS)
                return em_error("more than %d name patterns in '%.100s'", MAX_PATTERNS, patterns);
            if (len >= PATTERN_CHARS)
                return em_error("name pattern '%.60s...' is longer than %d characters", p, PATTERN_CHARS - 1);
            memcpy(buf[*count], p, len);
            buf[*count][len] = '\0';
            (*count)++;
        }
        p += len;
        if (*p)
            p++;
    }
    if (*count == 0)
        return em_error("no name pattern in '%.100s' (give one like '*' or '0.*,3.*')", patterns);
    return EM_OK;
}

static bool is_param(const em_named_tensor *s) { return !s->is_buffer && s->tensor && s->tensor->is_param; }

/* The model's parameter names for a message: "'0.weight', '0.bias', ...". */
static void list_params(const em_model *m, char *buf, size_t size)
{
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    buf[0] = '\0';
    int listed = 0;
    for (int i = 0; i < count; i++) {
        if (!is_param(&state[i]))
            continue;
        if (listed == 12) {
            em_text_append(buf, size, ", ...");
            break;
        }
        em_text_append(buf, size, "%s'%s'", listed ? ", " : "", state[i].name);
        listed++;
    }
    if (!listed)
        em_text_append(buf, size, "none");
}

/* Sets requires_grad to `trainable` on every parameter matching a pattern; returns how
 * many changed. Every pattern must match something (checked before any change). */
static int set_trainable(em_model *m, const char *patterns, bool trainable, const char *verb)
{
    if (!m)
        return em_error("%s: no model", verb);
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    char list[MAX_PATTERNS][PATTERN_CHARS];
    int n_patterns = 0;
    bool all = !patterns || !*patterns;
    if (all && trainable) {
        n_patterns = 1;
        strcpy(list[0], "*");
    } else if (all || split_patterns(patterns, list, &n_patterns) != EM_OK) {
        return all ? em_error("%s: no name pattern (give one like '*' or '0.*,3.*')", verb)
                   : em_error_prefix("%s: ", verb);
    }
    for (int k = 0; k < n_patterns; k++) {
        bool used = false;
        for (int i = 0; i < count && !used; i++)
            used = is_param(&state[i]) && fnmatch(list[k], state[i].name, 0) == 0;
        if (!used && !all) {
            char names[1024];
            list_params(m, names, sizeof names);
            return em_error("%s: pattern '%s' matches no parameter; the model's parameters are %s", verb,
                            list[k], names);
        }
    }
    int changed = 0;
    for (int i = 0; i < count; i++) {
        if (!is_param(&state[i]))
            continue;
        bool match = false;
        for (int k = 0; k < n_patterns && !match; k++)
            match = fnmatch(list[k], state[i].name, 0) == 0;
        if (match && state[i].tensor->requires_grad != trainable) {
            state[i].tensor->requires_grad = trainable;
            changed++;
        }
    }
    return changed;
}

int em_model_freeze(em_model *m, const char *patterns) { return set_trainable(m, patterns, false, "freeze"); }

int em_model_unfreeze(em_model *m, const char *patterns) { return set_trainable(m, patterns, true, "unfreeze"); }

bool em_param_is_frozen(const em_tensor *param) { return param && param->is_param && !param->requires_grad; }

int64_t em_model_trainable_count(const em_model *m)
{
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    int64_t total = 0;
    for (int i = 0; i < count; i++)
        if (is_param(&state[i]) && state[i].tensor->requires_grad)
            total += state[i].tensor->numel;
    return total;
}

int em_model_head_index(const em_model *m)
{
    for (int i = em_model_layer_count(m) - 1; i >= 0; i--)
        if (strcmp(em_model_layer_at(m, i)->kind->name, "linear") == 0)
            return i;
    return -1;
}

/* The canonical description with the head's line given `out_features` (its first
 * option; the others, such as bias=false, kept). malloc'd. */
static char *description_with_head(const em_model *m, int head, int64_t out_features)
{
    int n = em_model_layer_count(m);
    const em_shape *in = em_model_input(m);
    size_t cap = (size_t)(n + 1) * 1100 + 64;
    char *text = malloc(cap);
    if (!text)
        return NULL;
    text[0] = '\0';
    em_text_append(text, cap, "input ");
    for (int d = 0; d < in->ndim; d++)
        em_text_append(text, cap, "%s%lld", d ? "x" : "", (long long)in->dim[d]);
    em_text_append(text, cap, "\n");
    for (int i = 0; i < n; i++) {
        const em_layer *l = em_model_layer_at(m, i);
        char options[1024] = "";
        if (l->kind->describe)
            l->kind->describe(l, options, sizeof options);
        if (i == head) /* "512 bias=false" -> "<out_features> bias=false" */
            em_text_append(text, cap, "%s %lld%s\n", l->kind->name, (long long)out_features,
                           options + strcspn(options, " "));
        else
            em_text_append(text, cap, "%s%s%s\n", l->kind->name, options[0] ? " " : "", options);
    }
    return text;
}

em_model *em_model_replace_head(const em_model *m, int64_t out_features, uint64_t seed)
{
    if (!m) {
        em_error("replace head: no model");
        return NULL;
    }
    if (out_features < 1) {
        em_error("replace head: the new head needs at least 1 output, got %lld", (long long)out_features);
        return NULL;
    }
    int head = em_model_head_index(m);
    if (head < 0) {
        em_error("replace head: the model has no linear layer to replace");
        return NULL;
    }
    for (int i = head + 1; i < em_model_layer_count(m); i++) {
        const em_layer *l = em_model_layer_at(m, i);
        if (l->param_count > 0) {
            em_error("replace head: layer %d (%s) after the last linear layer (%d) has parameters; only "
                     "parameter-free layers may follow the head",
                     i, l->kind->name, head);
            return NULL;
        }
    }
    char *text = description_with_head(m, head, out_features);
    if (!text) {
        em_error("replace head: out of memory");
        return NULL;
    }
    em_model *out = em_model_parse(text, "replaced head", seed);
    free(text);
    if (!out) {
        em_error_prefix("replace head: ");
        return NULL;
    }
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%d.", head);
    int count = 0;
    const em_named_tensor *state = em_model_state(out, &count);
    for (int i = 0; i < count; i++) {
        if (strncmp(state[i].name, prefix, strlen(prefix)) == 0)
            continue; /* the new head keeps its fresh initialisation */
        const em_tensor *src = em_model_find(m, state[i].name);
        em_tensor *dst = state[i].tensor;
        if (!src || !em_same_shape(src, dst)) {
            /* Cannot happen for layers before the head: same description, same shapes. */
            em_error("replace head: tensor '%s' differs between the models", state[i].name);
            em_model_free(out);
            return NULL;
        }
        em_copy_to(src, dst->data);
        if (!state[i].is_buffer)
            dst->requires_grad = src->requires_grad;
    }
    return out;
}
