/* Checkpoints: a model's named tensors (PyTorch's state_dict names) in a safetensors
 * file, with the model description in the metadata so that the file alone rebuilds the
 * model. Loading checks every name and shape before it writes anything, so a failed
 * load leaves the model as it was. */
#include "ember/checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "ember/safetensors.h"

#define MODEL_KEY "ember.model"

int em_save_weights(const em_model *m, const char *path)
{
    if (!m)
        return em_error("saving weights: no model");
    if (!path)
        return em_error("saving weights: no path");
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    const char **names = malloc((size_t)(count ? count : 1) * sizeof *names);
    const em_tensor **tensors = malloc((size_t)(count ? count : 1) * sizeof *tensors);
    if (!names || !tensors) {
        free(names);
        free(tensors);
        return em_error("saving weights to %s: out of memory", path);
    }
    for (int i = 0; i < count; i++) {
        names[i] = state[i].name;
        tensors[i] = state[i].tensor;
    }
    const char *description = em_model_description(m);
    const char *keys[] = {"format", MODEL_KEY};
    const char *values[] = {"pt", description ? description : ""};
    int rc = em_st_save(path, count, names, tensors, 2, keys, values);
    free(names);
    free(tensors);
    return rc;
}

/* Appends ", name" to a bounded list for a message; past the room it ends with "...". */
static void list_name(char *list, size_t cap, const char *name)
{
    size_t used = strlen(list);
    if (used + 8 >= cap)
        return;
    int n = snprintf(list + used, cap - used, "%s'%s'", used ? ", " : "", name);
    if (n < 0 || (size_t)n >= cap - used) {
        list[used] = '\0';
        snprintf(list + used, cap - used, "%s...", used ? ", " : "");
    }
}

static int load_from(em_model *m, const em_st_file *f, bool strict, int *missing_out,
                     int *unexpected_out)
{
    const char *path = em_st_path(f);
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    char missing_list[512] = "", unexpected_list[512] = "";
    int missing = 0, unexpected = 0;

    for (int i = 0; i < count; i++) {
        const em_st_entry *e = em_st_find(f, state[i].name);
        if (!e) {
            missing++;
            list_name(missing_list, sizeof missing_list, state[i].name);
            continue;
        }
        const em_tensor *t = state[i].tensor;
        bool same = e->ndim == t->ndim;
        for (int d = 0; same && d < e->ndim; d++)
            same = e->shape[d] == t->shape[d];
        if (!same)
            return em_error("%s: tensor '%s' has shape %s in the checkpoint but %s in the model",
                            path, state[i].name, em_dims_str(e->ndim, e->shape), em_shape_str(t));
        if (e->dtype == EM_DTYPE_OTHER)
            return em_error("%s: tensor '%s' has dtype %s; ember loads F32, F16 and BF16", path,
                            state[i].name, e->dtype_name);
    }
    int n_file = em_st_count(f);
    for (int i = 0; i < n_file; i++) {
        const em_st_entry *e = em_st_entry_at(f, i);
        if (!em_model_find(m, e->name)) {
            unexpected++;
            list_name(unexpected_list, sizeof unexpected_list, e->name);
        }
    }
    if (strict && (missing || unexpected)) {
        if (missing && unexpected)
            return em_error("%s: the checkpoint does not fit the model: missing tensors (%d): %s; "
                            "unexpected tensors (%d): %s",
                            path, missing, missing_list, unexpected, unexpected_list);
        if (missing)
            return em_error("%s: the checkpoint does not fit the model: missing tensors (%d): %s",
                            path, missing, missing_list);
        return em_error("%s: the checkpoint does not fit the model: unexpected tensors (%d): %s",
                        path, unexpected, unexpected_list);
    }
    for (int i = 0; i < count; i++)
        if (em_st_find(f, state[i].name) && em_st_load_into(f, state[i].name, state[i].tensor) != EM_OK)
            return EM_ERR;
    if (missing_out)
        *missing_out = missing;
    if (unexpected_out)
        *unexpected_out = unexpected;
    return EM_OK;
}

int em_load_weights(em_model *m, const char *path, bool strict, int *missing, int *unexpected)
{
    if (!m)
        return em_error("loading weights: no model");
    if (!path)
        return em_error("loading weights: no path");
    em_st_file *f = em_st_open(path);
    if (!f)
        return EM_ERR;
    int rc = load_from(m, f, strict, missing, unexpected);
    em_st_close(f);
    return rc;
}

em_model *em_model_from_checkpoint(const char *path)
{
    if (!path) {
        em_error("loading a checkpoint: no path");
        return NULL;
    }
    em_st_file *f = em_st_open(path);
    if (!f)
        return NULL;
    const char *description = em_st_metadata(f, MODEL_KEY);
    if (!description) {
        em_error("%s has no \"" MODEL_KEY "\" metadata, so it does not say which model it holds "
                 "(build the model from its description and load with em_load_weights)",
                 path);
        em_st_close(f);
        return NULL;
    }
    char source[512];
    snprintf(source, sizeof source, "%s (" MODEL_KEY ")", path);
    /* Every parameter is overwritten by the load, so the initialisation seed is moot. */
    em_model *m = em_model_parse(description, source, 0);
    if (!m || load_from(m, f, true, NULL, NULL) != EM_OK) {
        em_model_free(m);
        m = NULL;
    }
    em_st_close(f);
    return m;
}
