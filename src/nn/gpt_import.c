/* Loading GPT-2-format safetensors files into a gpt model (em_gpt_load): ember's own
 * saved gpt models and Hugging Face GPT-2 files share names and layouts, so loading is
 * matching names, checking shapes and copying. What differs between producers is
 * handled here: Hugging Face's GPT2LMHeadModel prefixes "transformer.", older files
 * carry the causal mask as buffers (h.N.attn.bias, h.N.attn.masked_bias) that hold no
 * weights, and only config.json knows the number of heads. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/checkpoint.h"
#include "ember/error.h"
#include "ember/safetensors.h"
#include "nn/gpt_internal.h"

#define HF_PREFIX "transformer."
#define MAX_CONFIG_BYTES (1 << 20)
#define NAME_LIST_BYTES 600

/* The name without Hugging Face's "transformer." prefix. */
static const char *bare_name(const char *name)
{
    return strncmp(name, HF_PREFIX, strlen(HF_PREFIX)) == 0 ? name + strlen(HF_PREFIX) : name;
}

/* Reads "h.<N>." at the start of name: N, or -1. */
static long block_number(const char *name)
{
    if (strncmp(name, "h.", 2) != 0)
        return -1;
    char *end;
    errno = 0;
    long n = strtol(name + 2, &end, 10);
    return end != name + 2 && *end == '.' && errno == 0 && n >= 0 ? n : -1;
}

/* The causal-mask buffers of older GPT-2 files: h.N.attn.bias, h.N.attn.masked_bias. */
static bool is_mask_buffer(const char *name)
{
    if (block_number(name) < 0)
        return false;
    const char *rest = strchr(name + 2, '.') + 1;
    return strcmp(rest, "attn.bias") == 0 || strcmp(rest, "attn.masked_bias") == 0;
}

static const em_st_entry *find_tensor(const em_st_file *f, const char *name)
{
    const em_st_entry *e = em_st_find(f, name);
    if (!e) {
        char prefixed[256];
        snprintf(prefixed, sizeof prefixed, HF_PREFIX "%s", name);
        e = em_st_find(f, prefixed);
    }
    return e;
}

static void list_add(char *buf, size_t size, int *count, const char *name)
{
    if ((*count)++ < 8)
        em_text_append(buf, size, "%s'%s'", *count > 1 ? ", " : "", name);
    else if (*count == 9)
        em_text_append(buf, size, ", ...");
}

/* The number of heads from config.json beside the weights: 0 when there is no such
 * file, EM_ERR when it is unreadable or malformed (the message names it). */
static int heads_from_config(const char *weights_path, int64_t *heads)
{
    char path[4096];
    const char *slash = strrchr(weights_path, '/');
    int dir_len = slash ? (int)(slash - weights_path) : 1;
    snprintf(path, sizeof path, "%.*s/config.json", dir_len, slash ? weights_path : ".");
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return errno == ENOENT ? 0 : em_error("%s: %s", path, strerror(errno));
    char *text = malloc(MAX_CONFIG_BYTES + 1);
    size_t n = text ? fread(text, 1, MAX_CONFIG_BYTES + 1, fp) : 0;
    int read_error = ferror(fp);
    fclose(fp);
    if (!text)
        return em_error("%s: out of memory", path);
    if (read_error || n > MAX_CONFIG_BYTES) {
        free(text);
        return em_error("%s: %s", path, read_error ? "read error" : "larger than 1 MiB, not a model configuration");
    }
    text[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, false);
    int status = EM_OK;
    if (!root) {
        int line = 1;
        for (const char *p = text; end && p < end; p++)
            line += *p == '\n';
        status = em_error("%s:%d: not valid JSON", path, line);
    } else {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "n_head");
        if (!h)
            status = em_error("%s: no \"n_head\" (the number of attention heads)", path);
        else if (!cJSON_IsNumber(h) || h->valuedouble < 1 || h->valuedouble > 65536 ||
                 h->valuedouble != (double)(int64_t)h->valuedouble)
            status = em_error("%s: \"n_head\" must be a positive integer", path);
        else
            *heads = (int64_t)h->valuedouble;
    }
    cJSON_Delete(root);
    free(text);
    return status == EM_OK ? (*heads > 0) : EM_ERR;
}

/* The configuration the tensors' shapes imply (heads left 0). */
static int config_from_shapes(const em_st_file *f, const char *path, em_gpt_config *c)
{
    const em_st_entry *wte = find_tensor(f, "wte.weight"), *wpe = find_tensor(f, "wpe.weight");
    if (!wte || !wpe)
        return em_error("%s is not a GPT-2-format file: it has no %s (looked for '%s' and '" HF_PREFIX "%s')", path,
                        !wte ? "token embedding" : "position embedding", !wte ? "wte.weight" : "wpe.weight",
                        !wte ? "wte.weight" : "wpe.weight");
    if (wte->ndim != 2 || wpe->ndim != 2 || wte->shape[1] != wpe->shape[1])
        return em_error("%s: wte.weight %s and wpe.weight %s must be [vocab, width] and [context, width]", path,
                        em_dims_str(wte->ndim, wte->shape), em_dims_str(wpe->ndim, wpe->shape));
    long max_block = -1;
    for (int i = 0; i < em_st_count(f); i++) {
        long n = block_number(bare_name(em_st_entry_at(f, i)->name));
        max_block = n > max_block ? n : max_block;
    }
    *c = (em_gpt_config){.vocab = wte->shape[0], .context = wpe->shape[0], .layers = max_block + 1,
                         .width = wte->shape[1], .tied = find_tensor(f, "lm_head.weight") == NULL};
    return EM_OK;
}

/* Every model tensor present, every file tensor (but the mask buffers) used. */
static int check_names(const em_st_file *f, const char *path, const em_model *m)
{
    char missing[NAME_LIST_BYTES] = "", unexpected[NAME_LIST_BYTES] = "";
    int n_missing = 0, n_unexpected = 0, count;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++)
        if (!find_tensor(f, state[i].name))
            list_add(missing, sizeof missing, &n_missing, state[i].name);
    for (int i = 0; i < em_st_count(f); i++) {
        const char *name = bare_name(em_st_entry_at(f, i)->name);
        if (!is_mask_buffer(name) && !em_model_find(m, name) && strncmp(name, "optim.", 6) != 0 &&
            strncmp(name, "train.", 6) != 0)
            list_add(unexpected, sizeof unexpected, &n_unexpected, em_st_entry_at(f, i)->name);
    }
    if (!n_missing && !n_unexpected)
        return EM_OK;
    em_gpt_config c;
    em_model_gpt_config(m, &c);
    char line[256] = "", what[2 * NAME_LIST_BYTES + 128] = "";
    em_gpt_describe(&c, line, sizeof line);
    if (n_missing)
        em_text_append(what, sizeof what, " %d missing tensor%s (%s)", n_missing, n_missing == 1 ? "" : "s", missing);
    if (n_unexpected)
        em_text_append(what, sizeof what, "%s %d unexpected tensor%s (%s)", n_missing ? ";" : "", n_unexpected,
                       n_unexpected == 1 ? "" : "s", unexpected);
    return em_error("%s does not hold the tensors of a GPT-2 model (read as '%s'):%s", path, line, what);
}

/* A tensor of the file that the model reads with another shape: the configuration the
 * model was built with says what was expected (a wrong head count or config.json, say). */
static int check_shape(const em_st_file *f, const char *path, const em_model *m, const char *name,
                       const em_tensor *t)
{
    const em_st_entry *e = find_tensor(f, name);
    bool same = e->ndim == t->ndim;
    for (int d = 0; same && d < e->ndim; d++)
        same = e->shape[d] == t->shape[d];
    if (same)
        return EM_OK;
    em_gpt_config c;
    char line[256] = "";
    if (em_model_gpt_config(m, &c) == EM_OK)
        em_gpt_describe(&c, line, sizeof line);
    return em_error("%s: tensor '%s' has shape %s in the file but %s in the model (%s)", path, e->name,
                    em_dims_str(e->ndim, e->shape), em_shape_str(t), line);
}

static em_model *load_file(em_st_file *f, const char *path, int64_t heads, uint64_t seed)
{
    const char *description = em_st_metadata(f, "ember.model");
    em_model *m = NULL;
    if (description && heads <= 0) {
        char source[512];
        snprintf(source, sizeof source, "%s (ember.model)", path);
        m = em_model_parse(description, source, seed);
        if (!m)
            return NULL;
        if (!gpt_layer_of(m)) {
            em_model_free(m);
            em_error("%s holds an ember model that is not a gpt (its description does not start with a 'gpt' "
                     "line): load it with em_model_from_checkpoint",
                     path);
            return NULL;
        }
    } else {
        em_gpt_config c;
        if (config_from_shapes(f, path, &c) != EM_OK)
            return NULL;
        if (heads <= 0) {
            int found = heads_from_config(path, &heads);
            if (found < 0)
                return NULL;
            if (found == 0) {
                em_error("%s: the number of attention heads is not in the weights; put the model's config.json "
                         "(with \"n_head\") beside the file or give the head count",
                         path);
                return NULL;
            }
        }
        c.heads = heads;
        m = em_gpt_new(&c, seed);
        if (!m) {
            em_error_prefix("%s: ", path);
            return NULL;
        }
    }
    if (check_names(f, path, m) != EM_OK) {
        em_model_free(m);
        return NULL;
    }
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++)
        if (check_shape(f, path, m, state[i].name, state[i].tensor) != EM_OK) {
            em_model_free(m);
            return NULL;
        }
    for (int i = 0; i < count; i++) {
        const em_st_entry *e = find_tensor(f, state[i].name);
        /* em_st_load_into's messages name the file already */
        if (em_st_load_into(f, e->name, state[i].tensor) != EM_OK) {
            em_model_free(m);
            return NULL;
        }
    }
    return m;
}

em_model *em_gpt_load(const char *path, int64_t heads, uint64_t seed)
{
    if (!path) {
        em_error("em_gpt_load: no path");
        return NULL;
    }
    em_st_file *f = em_st_open(path);
    if (!f)
        return NULL;
    em_model *m = load_file(f, path, heads, seed);
    em_st_close(f);
    return m;
}
