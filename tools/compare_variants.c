#include "compare_variants.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Learning rates that train Fashion-MNIST's MLP well in a few epochs of batch 64 (plain
 * SGD wants a larger step than with momentum; RMSProp's PyTorch default of 0.01 is too
 * large for it, Keras' 1e-3 is not). */
static const compare_preset presets[] = {
    {"sgd", EM_OPTIM_SGD, 0.1f, 0.0f, false},
    {"momentum", EM_OPTIM_SGD, 0.05f, 0.9f, false},
    {"nesterov", EM_OPTIM_SGD, 0.05f, 0.9f, true},
    {"adagrad", EM_OPTIM_ADAGRAD, 0.02f, 0.0f, false},
    {"rmsprop", EM_OPTIM_RMSPROP, 1e-3f, 0.0f, false},
    {"adam", EM_OPTIM_ADAM, 1e-3f, 0.0f, false},
    {"adamw", EM_OPTIM_ADAMW, 1e-3f, 0.0f, false},
};
enum { N_PRESETS = (int)(sizeof presets / sizeof presets[0]) };

int compare_preset_count(void) { return N_PRESETS; }

const compare_preset *compare_preset_at(int i) { return i >= 0 && i < N_PRESETS ? &presets[i] : NULL; }

const compare_preset *compare_preset_find(const char *name)
{
    for (int i = 0; i < N_PRESETS; i++)
        if (strcmp(presets[i].name, name) == 0)
            return &presets[i];
    return NULL;
}

void compare_preset_names(char *buf, size_t cap)
{
    buf[0] = '\0';
    for (int i = 0; i < N_PRESETS; i++) {
        strncat(buf, i ? ", " : "", cap - strlen(buf) - 1);
        strncat(buf, presets[i].name, cap - strlen(buf) - 1);
    }
}

em_optim_opts compare_preset_options(const compare_preset *p)
{
    em_optim_opts o = em_optim_defaults(p->kind);
    o.lr = p->lr;
    o.momentum = p->momentum;
    o.nesterov = p->nesterov;
    return o;
}

void compare_activation_names(char *buf, size_t cap)
{
    buf[0] = '\0';
    for (int a = EM_ACT_NONE + 1; a < EM_ACT_COUNT; a++) {
        strncat(buf, buf[0] ? ", " : "", cap - strlen(buf) - 1);
        strncat(buf, em_activation_name((em_activation)a), cap - strlen(buf) - 1);
    }
}

int compare_split_list(char *text, const char **items, int cap)
{
    int n = 0;
    char *p = text;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        while (*p == ' ')
            p++;
        size_t len = strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            p[--len] = '\0';
        if (!*p || n >= cap)
            return -1;
        items[n++] = p;
        if (!comma)
            return n;
        p = comma + 1;
    }
}

static int parse_positive(const char *text, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || !isfinite(v) || v <= 0 || errno == ERANGE)
        return EM_ERR;
    *out = (float)v;
    return EM_OK;
}

int compare_parse_lrs(char *text, compare_lr *lrs, int cap, int *n, float *all)
{
    *n = 0;
    *all = NAN;
    if (!strchr(text, '=')) {
        if (parse_positive(text, all) != EM_OK)
            return em_error("--lr: expected a number > 0 or NAME=X,NAME=Y, got '%s'", text);
        return EM_OK;
    }
    const char *items[32];
    int count = compare_split_list(text, items, 32);
    if (count < 0 || count > cap)
        return em_error("--lr: expected NAME=X separated by commas, without empty items (at most %d)", cap);
    for (int i = 0; i < count; i++) {
        char *eq = strchr(items[i], '=');
        if (!eq)
            return em_error("--lr: '%s' is not NAME=X", items[i]);
        *eq = '\0';
        if (parse_positive(eq + 1, &lrs[i].lr) != EM_OK)
            return em_error("--lr: the rate for %s must be a number > 0, got '%s'", items[i], eq + 1);
        lrs[i].name = items[i];
    }
    *n = count;
    return EM_OK;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        em_error("cannot open the model %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    for (;;) {
        if (!text)
            break;
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (len + 1 < cap)
            break;
        char *bigger = cap < (1u << 24) ? realloc(text, cap * 2) : NULL;
        if (!bigger) {
            free(text);
            text = NULL;
            break;
        }
        text = bigger;
        cap *= 2;
    }
    fclose(f);
    if (!text) {
        em_error("%s: too large or out of memory", path);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

char *compare_replace_activations(const char *model_path, const char *activation)
{
    char *text = read_text(model_path);
    if (!text)
        return NULL;
    size_t out_cap = strlen(text) + 64 * 64 + 1, used = 0;
    char *out = malloc(out_cap);
    if (!out) {
        free(text);
        em_error("out of memory");
        return NULL;
    }
    int replaced = 0;
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        /* The first word of the line names its kind. */
        size_t a = 0;
        while (a < len && isspace((unsigned char)line[a]))
            a++;
        size_t b = a;
        while (b < len && !isspace((unsigned char)line[b]) && line[b] != '#')
            b++;
        char word[32] = "";
        if (b - a < sizeof word)
            memcpy(word, line + a, b - a), word[b - a] = '\0';
        em_activation act;
        bool is_activation = word[0] && em_activation_parse(word, &act) == EM_OK && act != EM_ACT_NONE;
        if (is_activation && used + strlen(activation) + 2 < out_cap) {
            used += (size_t)snprintf(out + used, out_cap - used, "%s\n", activation);
            replaced++;
        } else if (used + len + 2 < out_cap) {
            memcpy(out + used, line, len);
            used += len;
            out[used++] = '\n';
        }
        line = end ? end + 1 : NULL;
    }
    out[used] = '\0';
    em_clear_error();
    free(text);
    if (replaced == 0) {
        free(out);
        em_error("%s has no activation line to replace (relu, tanh, ...)", model_path);
        return NULL;
    }
    return out;
}
