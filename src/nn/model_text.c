/* A model as text: its canonical description (what checkpoints store for a model
 * built from C) and its one-line-per-layer summary. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "nn/layer.h"

#define LINE_MAX_CHARS 1024

/* "1x28x28" */
static void shape_words(const em_shape *s, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int d = 0; d < s->ndim; d++)
        em_text_append(buf, size, "%s%" PRId64, d ? "x" : "", s->dim[d]);
}

static void layer_line(const em_layer *l, char *buf, size_t size)
{
    buf[0] = '\0';
    if (l->kind->describe)
        l->kind->describe(l, buf, size);
}

char *em_model_generate_description(const em_model *m)
{
    int n = em_model_layer_count(m);
    size_t cap = (size_t)(n + 1) * LINE_MAX_CHARS + 1;
    char *text = malloc(cap);
    if (!text)
        return NULL;
    char words[LINE_MAX_CHARS];
    shape_words(em_model_input(m), words, sizeof words);
    snprintf(text, cap, "input %s\n", words);
    for (int i = 0; i < n; i++) {
        const em_layer *l = em_model_layer_at(m, i);
        layer_line(l, words, sizeof words);
        em_text_append(text, cap, "%s%s%s\n", l->kind->name, words[0] ? " " : "", words);
    }
    return text;
}

/* 535818 -> "535,818" */
static const char *grouped(int64_t v, char *buf, size_t size)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%" PRId64, v);
    size_t len = strlen(digits), out = 0;
    for (size_t i = 0; i < len && out + 2 < size; i++) {
        if (i && (len - i) % 3 == 0)
            buf[out++] = ',';
        buf[out++] = digits[i];
    }
    buf[out] = '\0';
    return buf;
}

void em_model_summary(const em_model *m, FILE *out)
{
    if (!m || !out)
        return;
    char options[LINE_MAX_CHARS], count[32];
    const em_shape *in = em_model_input(m);
    fprintf(out, "%-6s %-12s %-24s %-20s %12s\n", "index", "layer", "options", "output", "parameters");
    shape_words(in, options, sizeof options);
    fprintf(out, "%-6s %-12s %-24s %-20s %12s\n", "", "input", options, em_dims_str(in->ndim, in->dim), "");
    for (int i = 0; i < em_model_layer_count(m); i++) {
        const em_layer *l = em_model_layer_at(m, i);
        layer_line(l, options, sizeof options);
        if (l->fused)
            em_text_append(options, sizeof options, "%s(fused into %d)", options[0] ? " " : "", l->fused_into);
        fprintf(out, "%-6d %-12s %-24s %-20s %12s\n", l->index, l->kind->name, options,
                em_dims_str(l->out.ndim, l->out.dim), grouped(l->param_count, count, sizeof count));
    }
    fprintf(out, "trainable parameters: %s\n", grouped(em_model_param_count(m), count, sizeof count));
}
