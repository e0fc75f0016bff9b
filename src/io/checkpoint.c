/* Checkpoints: a model's named tensors (PyTorch's state_dict names) in a safetensors
 * file, with the model description in the metadata so that the file alone rebuilds the
 * model. Loading checks every name and shape before it writes anything, so a failed
 * load leaves the model as it was.
 *
 * A full training checkpoint adds the optimizer's buffers as tensors and, in the
 * metadata, the optimizer's scalars and the training position as JSON. Numbers that
 * must come back bit for bit and do not fit a JSON double exactly (64-bit generator
 * states, the double sum of losses) are written as hexadecimal strings. */
#include "ember/checkpoint.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "ember/safetensors.h"
#include "io/checkpoint_history.h"
#include "nn/layer.h"

#define MODEL_KEY "ember.model"
#define TRAIN_KEY "ember.train"
#define OPTIM_KEY "ember.optimizer"
#define FORMAT_VERSION 1
/* Tensors under these prefixes belong to the optimizer and the training loop, not to
 * the model. */
#define OPTIM_PREFIX "optim."
#define TRAIN_PREFIX "train."

static bool is_training_tensor(const char *name)
{
    return strncmp(name, OPTIM_PREFIX, strlen(OPTIM_PREFIX)) == 0 ||
           strncmp(name, TRAIN_PREFIX, strlen(TRAIN_PREFIX)) == 0;
}

/* Writes the model's tensors, `extra` more tensors and the metadata pairs. */
static int save_file(const char *path, const em_model *m, int n_extra, const em_named_tensor *extra,
                     int n_meta, const char *const *keys, const char *const *values)
{
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    int total = count + n_extra;
    const char **names = malloc((size_t)(total ? total : 1) * sizeof *names);
    const em_tensor **tensors = malloc((size_t)(total ? total : 1) * sizeof *tensors);
    if (!names || !tensors) {
        free(names);
        free(tensors);
        return em_error("saving to %s: out of memory", path);
    }
    for (int i = 0; i < count; i++) {
        names[i] = state[i].name;
        tensors[i] = state[i].tensor;
    }
    for (int i = 0; i < n_extra; i++) {
        names[count + i] = extra[i].name;
        tensors[count + i] = extra[i].tensor;
    }
    int rc = em_st_save(path, total, names, tensors, n_meta, keys, values);
    free(names);
    free(tensors);
    return rc;
}

int em_save_weights(const em_model *m, const char *path)
{
    if (!m)
        return em_error("saving weights: no model");
    if (!path)
        return em_error("saving weights: no path");
    const char *description = em_model_description(m);
    const char *keys[] = {"format", MODEL_KEY};
    const char *values[] = {"pt", description ? description : ""};
    return save_file(path, m, 0, NULL, 2, keys, values);
}

/* Appends "'name'" to a bounded list for a message; when the next name does not fit,
 * the list ends with "..." and takes no more. */
static void list_name(char *list, size_t cap, const char *name)
{
    size_t used = strlen(list);
    if (used >= 3 && strcmp(list + used - 3, "...") == 0)
        return;
    size_t need = strlen(name) + 2 + (used ? 2 : 0);
    if (used + need + 6 <= cap)
        snprintf(list + used, cap - used, "%s'%s'", used ? ", " : "", name);
    else
        snprintf(list + used, cap - used, "%s...", used ? ", " : "");
}

static bool entry_fits(const em_st_entry *e, const em_tensor *t)
{
    if (e->ndim != t->ndim)
        return false;
    for (int d = 0; d < e->ndim; d++)
        if (e->shape[d] != t->shape[d])
            return false;
    return true;
}

/* The tensor may be loaded from e: same shape, a dtype ember converts. */
static int check_entry(const char *path, const em_st_entry *e, const char *name, const em_tensor *t)
{
    if (!entry_fits(e, t))
        return em_error("%s: tensor '%s' has shape %s in the checkpoint but %s in the model", path, name,
                        em_dims_str(e->ndim, e->shape), em_shape_str(t));
    if (e->dtype == EM_DTYPE_OTHER)
        return em_error("%s: tensor '%s' has dtype %s, which ember does not load", path, name,
                        e->dtype_name);
    return EM_OK;
}

/* Checks the model's tensors against the file and fills the report; writes nothing. */
static int check_model_tensors(const em_model *m, const em_st_file *f, bool strict, em_load_report *r)
{
    const char *path = em_st_path(f);
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    memset(r, 0, sizeof *r);
    for (int i = 0; i < count; i++) {
        const em_st_entry *e = em_st_find(f, state[i].name);
        if (!e) {
            r->missing++;
            list_name(r->missing_names, sizeof r->missing_names, state[i].name);
            continue;
        }
        if (check_entry(path, e, state[i].name, state[i].tensor) != EM_OK)
            return EM_ERR;
        r->loaded++;
    }
    int n_file = em_st_count(f);
    for (int i = 0; i < n_file; i++) {
        const em_st_entry *e = em_st_entry_at(f, i);
        if (!is_training_tensor(e->name) && !em_model_find(m, e->name)) {
            r->unexpected++;
            list_name(r->unexpected_names, sizeof r->unexpected_names, e->name);
        }
    }
    if (strict && (r->missing || r->unexpected)) {
        if (r->missing && r->unexpected)
            return em_error("%s: the checkpoint does not fit the model: missing tensors (%d): %s; "
                            "unexpected tensors (%d): %s",
                            path, r->missing, r->missing_names, r->unexpected, r->unexpected_names);
        if (r->missing)
            return em_error("%s: the checkpoint does not fit the model: missing tensors (%d): %s",
                            path, r->missing, r->missing_names);
        return em_error("%s: the checkpoint does not fit the model: unexpected tensors (%d): %s",
                        path, r->unexpected, r->unexpected_names);
    }
    return EM_OK;
}

static int copy_model_tensors(em_model *m, const em_st_file *f)
{
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++)
        if (em_st_find(f, state[i].name) && em_st_load_into(f, state[i].name, state[i].tensor) != EM_OK)
            return EM_ERR;
    return EM_OK;
}

static int load_from(em_model *m, const em_st_file *f, bool strict, em_load_report *report)
{
    em_load_report local;
    em_load_report *r = report ? report : &local;
    if (check_model_tensors(m, f, strict, r) != EM_OK)
        return EM_ERR;
    return copy_model_tensors(m, f);
}

int em_load_weights_report(em_model *m, const char *path, bool strict, em_load_report *report)
{
    if (!m)
        return em_error("loading weights: no model");
    if (!path)
        return em_error("loading weights: no path");
    em_st_file *f = em_st_open(path);
    if (!f)
        return EM_ERR;
    int rc = load_from(m, f, strict, report);
    em_st_close(f);
    return rc;
}

int em_load_weights(em_model *m, const char *path, bool strict, int *missing, int *unexpected)
{
    em_load_report r;
    int rc = em_load_weights_report(m, path, strict, &r);
    if (rc == EM_OK) {
        if (missing)
            *missing = r.missing;
        if (unexpected)
            *unexpected = r.unexpected;
    }
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
    /* Every parameter and buffer is overwritten by the strict load: drawing initial
     * values first would be wasted work. */
    em_model *m = em_model_parse_uninitialised(description, source);
    if (!m || load_from(m, f, true, NULL) != EM_OK) {
        em_model_free(m);
        m = NULL;
    }
    em_st_close(f);
    return m;
}

/* ---- full training checkpoints ---------------------------------------------------- */

typedef struct text {
    char buf[4096];
    size_t len;
    bool overflow;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(text *t, const char *fmt, ...)
{
    if (t->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, sizeof t->buf - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof t->buf - t->len)
        t->overflow = true;
    else
        t->len += (size_t)n;
}

static void add_rng(text *t, const char *key, const em_rng *rng)
{
    add(t, ",\"%s\":[", key);
    for (int i = 0; i < 4; i++)
        add(t, "%s\"%016" PRIx64 "\"", i ? "," : "", rng->s[i]);
    add(t, "]");
}

/* A JSON string literal of s (schedule state is free text). */
static void add_string(text *t, const char *s)
{
    add(t, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            add(t, "\\%c", *p);
        else if (*p < 0x20)
            add(t, "\\u%04x", *p);
        else
            add(t, "%c", *p);
    }
    add(t, "\"");
}

static uint64_t double_bits(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

static double bits_double(uint64_t bits)
{
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static int position_json(const em_train_position *pos, em_model *m, text *t)
{
    uint64_t loss_bits;
    memcpy(&loss_bits, &pos->epoch_loss_sum, sizeof loss_bits);
    add(t, "{\"version\":%d,\"step\":%" PRId64 ",\"epoch\":%d,\"epoch_batches\":%" PRId64
           ",\"epoch_items\":%" PRId64 ",\"epoch_loss_sum\":\"%016" PRIx64 "\",\"epoch_loss_sum_value\":%.17g",
        FORMAT_VERSION, pos->step, pos->epoch, pos->loader.batches_done, pos->epoch_items, loss_bits,
        pos->epoch_loss_sum);
    add(t, ",\"batch_size\":%" PRId64 ",\"train_count\":%" PRId64 ",\"shuffle\":%s", pos->batch_size,
        pos->train_count, pos->shuffle ? "true" : "false");
    add(t, ",\"best_val\":\"%016" PRIx64 "\",\"best_epoch\":%d,\"since_best\":%d", double_bits(pos->best_val),
        pos->best_epoch, pos->since_best);
    add(t, ",\"epoch_correct\":%" PRId64 ",\"epoch_seen\":%" PRId64 ",\"epoch_grad_norms\":%" PRId64
           ",\"epoch_grad_norm_sum\":\"%016" PRIx64 "\"",
        pos->epoch_correct, pos->epoch_seen, pos->epoch_grad_norms, double_bits(pos->epoch_grad_norm_sum));
    add_rng(t, "loader_epoch_rng", &pos->loader.epoch_rng);
    add_rng(t, "model_rng", em_model_rng(m));
    add(t, ",\"schedule\":");
    add_string(t, pos->schedule);
    add(t, "}");
    if (t->overflow)
        return em_error("training position: the schedule state is too long to store");
    return EM_OK;
}

int em_checkpoint_save(const char *path, em_model *m, const em_optim *opt, const em_train_position *pos)
{
    return em_checkpoint_save_with(path, m, opt, pos, NULL, 0);
}

int em_checkpoint_save_with(const char *path, em_model *m, const em_optim *opt, const em_train_position *pos,
                            const em_named_tensor *more, int n_more)
{
    return em_checkpoint_save_with_history(path, m, opt, pos, more, n_more, NULL);
}

int em_checkpoint_save_with_history(const char *path, em_model *m, const em_optim *opt, const em_train_position *pos,
                                    const em_named_tensor *more, int n_more, const em_train_history *history)
{
    if (n_more < 0 || (n_more > 0 && !more))
        return em_error("saving a checkpoint: %d extra tensors without a list", n_more);
    for (int i = 0; i < n_more; i++)
        if (!more[i].name || strncmp(more[i].name, TRAIN_PREFIX, strlen(TRAIN_PREFIX)) != 0)
            return em_error("saving a checkpoint: extra tensor '%s' must be named " TRAIN_PREFIX "...",
                            more[i].name ? more[i].name : "(null)");
    if (!m || !path || !pos)
        return em_error("saving a checkpoint: no %s", !m ? "model" : !path ? "path" : "position");
    text position = {.len = 0};
    if (position_json(pos, m, &position) != EM_OK)
        return em_error_prefix("saving %s: ", path);
    em_named_tensor *optim_tensors = NULL;
    int n_optim = 0;
    char *optim_json = NULL;
    em_arena *arena = em_arena_create(0);
    if (!arena || (opt && (em_optim_state_tensors((em_optim *)opt, arena, &optim_tensors, &n_optim) != EM_OK ||
                           !(optim_json = em_optim_state_json(opt))))) {
        em_arena_destroy(arena);
        return em_error_prefix("saving %s: ", path);
    }
    em_tensor *history_steps = NULL;
    char *history_json = NULL;
    if (history && em_history_encode(history, arena, &history_steps, &history_json) != EM_OK) {
        free(optim_json);
        em_arena_destroy(arena);
        return em_error_prefix("saving %s: ", path);
    }
    int n_extra = n_optim + n_more + (history_steps ? 1 : 0);
    em_named_tensor *extra = n_extra ? em_arena_alloc(arena, (size_t)n_extra * sizeof *extra) : NULL;
    if (n_extra && !extra) {
        free(optim_json);
        free(history_json);
        em_arena_destroy(arena);
        return em_error_prefix("saving %s: ", path);
    }
    for (int i = 0; i < n_optim; i++)
        extra[i] = optim_tensors[i];
    for (int i = 0; i < n_more; i++)
        extra[n_optim + i] = more[i];
    if (history_steps)
        extra[n_optim + n_more] = (em_named_tensor){EM_HISTORY_STEPS_TENSOR, history_steps, true};
    /* The optional pairs go last, present or not. */
    const char *description = em_model_description(m);
    const char *keys[5] = {"format", MODEL_KEY, TRAIN_KEY};
    const char *values[5] = {"pt", description ? description : "", position.buf};
    int n_meta = 3;
    if (opt) {
        keys[n_meta] = OPTIM_KEY;
        values[n_meta++] = optim_json;
    }
    if (history_json) {
        keys[n_meta] = EM_HISTORY_KEY;
        values[n_meta++] = history_json;
    }
    int rc = save_file(path, m, n_extra, extra, n_meta, keys, values);
    free(optim_json);
    free(history_json);
    em_arena_destroy(arena);
    return rc;
}

static const char *metadata_or_error(const em_st_file *f, const char *key, const char *what)
{
    const char *v = em_st_metadata(f, key);
    if (!v)
        em_error("%s is not a full training checkpoint: it has no \"%s\" metadata (%s); a file "
                 "written with --save holds weights only, --checkpoint writes the full state",
                 em_st_path(f), key, what);
    return v;
}

int em_checkpoint_optimizer(const char *path, em_optim_kind *kind, em_optim_opts *opts)
{
    if (!path || !kind || !opts)
        return em_error("em_checkpoint_optimizer: missing argument");
    em_st_file *f = em_st_open(path);
    if (!f)
        return EM_ERR;
    const char *json = metadata_or_error(f, OPTIM_KEY, "the optimizer's state");
    int rc = json ? em_optim_options_from_json(json, path, kind, opts) : EM_ERR;
    em_st_close(f);
    return rc;
}

bool em_checkpoint_is_full(const char *path)
{
    em_st_file *f = path ? em_st_open(path) : NULL;
    bool full = f && em_st_metadata(f, TRAIN_KEY) != NULL;
    em_st_close(f);
    return full;
}

static int json_int(const cJSON *root, const char *key, const char *path, int64_t min, int64_t max,
                    int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble ||
        v->valuedouble < (double)min || v->valuedouble > (double)max)
        return em_error("%s: \"" TRAIN_KEY "\": \"%s\" is missing or not an integer in [%" PRId64
                        ", %" PRId64 "]", path, key, min, max);
    *out = (int64_t)v->valuedouble;
    return EM_OK;
}

static int json_hex64(const cJSON *v, const char *key, const char *path, uint64_t *out)
{
    char *end = NULL;
    if (!cJSON_IsString(v) || strlen(v->valuestring) != 16 ||
        (*out = strtoull(v->valuestring, &end, 16), *end != '\0'))
        return em_error("%s: \"" TRAIN_KEY "\": \"%s\" is not 16 hexadecimal digits", path, key);
    return EM_OK;
}

static int json_rng(const cJSON *root, const char *key, const char *path, em_rng *out)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 4)
        return em_error("%s: \"" TRAIN_KEY "\": \"%s\" is not an array of 4 generator words", path, key);
    int i = 0;
    for (const cJSON *w = a->child; w; w = w->next, i++)
        if (json_hex64(w, key, path, &out->s[i]) != EM_OK)
            return EM_ERR;
    if (!(out->s[0] | out->s[1] | out->s[2] | out->s[3]))
        return em_error("%s: \"" TRAIN_KEY "\": \"%s\" is all zeros, which no seeded generator reaches",
                        path, key);
    return EM_OK;
}

static int parse_position(const char *json, const char *path, em_train_position *pos, em_rng *model_rng)
{
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return em_error("%s: \"" TRAIN_KEY "\" metadata is not a JSON object", path);
    }
    memset(pos, 0, sizeof *pos);
    int64_t version = 0, epoch = 0;
    uint64_t loss_bits = 0;
    int rc = json_int(root, "version", path, 1, 1000, &version);
    if (rc == EM_OK && version > FORMAT_VERSION)
        rc = em_error("%s: checkpoint format %" PRId64 " is newer than this ember's (%d)", path, version,
                      FORMAT_VERSION);
    const int64_t big = INT64_C(1) << 53;
    if (rc == EM_OK)
        rc = json_int(root, "step", path, 0, big, &pos->step);
    if (rc == EM_OK)
        rc = json_int(root, "epoch", path, 1, INT32_MAX, &epoch);
    if (rc == EM_OK)
        rc = json_int(root, "epoch_batches", path, 0, big, &pos->loader.batches_done);
    if (rc == EM_OK)
        rc = json_int(root, "epoch_items", path, 0, big, &pos->epoch_items);
    if (rc == EM_OK)
        rc = json_hex64(cJSON_GetObjectItemCaseSensitive(root, "epoch_loss_sum"), "epoch_loss_sum", path,
                        &loss_bits);
    if (rc == EM_OK)
        rc = json_int(root, "batch_size", path, 1, big, &pos->batch_size);
    if (rc == EM_OK)
        rc = json_int(root, "train_count", path, 1, big, &pos->train_count);
    const cJSON *shuffle = cJSON_GetObjectItemCaseSensitive(root, "shuffle");
    if (rc == EM_OK && !cJSON_IsBool(shuffle))
        rc = em_error("%s: \"" TRAIN_KEY "\": \"shuffle\" is not true or false", path);
    uint64_t best_bits = double_bits(INFINITY), norm_bits = 0;
    int64_t best_epoch = 0, since_best = 0;
    /* Written since early stopping and the epoch figures came along; older files lack them. */
    if (rc == EM_OK && cJSON_GetObjectItemCaseSensitive(root, "best_val")) {
        rc = json_hex64(cJSON_GetObjectItemCaseSensitive(root, "best_val"), "best_val", path, &best_bits);
        if (rc == EM_OK)
            rc = json_int(root, "best_epoch", path, 0, INT32_MAX, &best_epoch);
        if (rc == EM_OK)
            rc = json_int(root, "since_best", path, 0, INT32_MAX, &since_best);
        if (rc == EM_OK)
            rc = json_int(root, "epoch_correct", path, 0, big, &pos->epoch_correct);
        if (rc == EM_OK)
            rc = json_int(root, "epoch_seen", path, 0, big, &pos->epoch_seen);
        if (rc == EM_OK)
            rc = json_int(root, "epoch_grad_norms", path, 0, big, &pos->epoch_grad_norms);
        if (rc == EM_OK)
            rc = json_hex64(cJSON_GetObjectItemCaseSensitive(root, "epoch_grad_norm_sum"), "epoch_grad_norm_sum",
                            path, &norm_bits);
    }
    pos->best_val = bits_double(best_bits);
    pos->best_epoch = (int)best_epoch;
    pos->since_best = (int)since_best;
    pos->epoch_grad_norm_sum = bits_double(norm_bits);
    if (rc == EM_OK)
        rc = json_rng(root, "loader_epoch_rng", path, &pos->loader.epoch_rng);
    if (rc == EM_OK)
        rc = json_rng(root, "model_rng", path, model_rng);
    const cJSON *schedule = cJSON_GetObjectItemCaseSensitive(root, "schedule");
    if (rc == EM_OK && schedule && !cJSON_IsString(schedule))
        rc = em_error("%s: \"" TRAIN_KEY "\": \"schedule\" is not a string", path);
    if (rc == EM_OK && schedule && strlen(schedule->valuestring) >= sizeof pos->schedule)
        rc = em_error("%s: \"" TRAIN_KEY "\": \"schedule\" is longer than %zu bytes", path,
                      sizeof pos->schedule - 1);
    if (rc == EM_OK) {
        pos->epoch = (int)epoch;
        pos->shuffle = cJSON_IsTrue(shuffle);
        memcpy(&pos->epoch_loss_sum, &loss_bits, sizeof loss_bits);
        if (schedule)
            snprintf(pos->schedule, sizeof pos->schedule, "%s", schedule->valuestring);
    }
    cJSON_Delete(root);
    return rc;
}

int em_checkpoint_read_position(const char *path, em_train_position *pos)
{
    if (!path || !pos)
        return em_error("em_checkpoint_read_position: missing argument");
    em_st_file *f = em_st_open(path);
    if (!f)
        return EM_ERR;
    em_rng model_rng;
    const char *json = metadata_or_error(f, TRAIN_KEY, "the training position");
    int rc = json ? parse_position(json, path, pos, &model_rng) : EM_ERR;
    em_st_close(f);
    return rc;
}

/* Every optimizer buffer is in the file with its parameter's shape. */
static int check_optimizer_tensors(const em_st_file *f, const char *optim_json, const em_named_tensor *list,
                                   int n)
{
    const char *path = em_st_path(f);
    for (int i = 0; i < n; i++) {
        const em_st_entry *e = em_st_find(f, list[i].name);
        if (!e) {
            em_optim_kind kind;
            em_optim_opts opts;
            const char *saved = em_optim_options_from_json(optim_json, path, &kind, &opts) == EM_OK
                                    ? em_optim_name(kind) : "unreadable";
            return em_error("%s: the optimizer state lacks tensor '%s': the checkpoint holds %s state; was "
                            "it written with another optimizer, other options or other frozen parameters?",
                            path, list[i].name, saved);
        }
        if (check_entry(path, e, list[i].name, list[i].tensor) != EM_OK)
            return EM_ERR;
    }
    return EM_OK;
}

int em_checkpoint_load(const char *path, em_model *m, em_optim *opt, em_train_position *pos)
{
    if (!path || !m)
        return em_error("loading a checkpoint: no %s", !path ? "path" : "model");
    em_st_file *f = em_st_open(path);
    if (!f)
        return EM_ERR;
    em_arena *arena = NULL;
    int rc = EM_ERR;
    em_train_position position;
    em_rng model_rng;
    const char *train_json = metadata_or_error(f, TRAIN_KEY, "the training position");
    if (!train_json || parse_position(train_json, path, &position, &model_rng) != EM_OK)
        goto done;
    em_load_report report;
    if (check_model_tensors(m, f, true, &report) != EM_OK)
        goto done;
    em_named_tensor *list = NULL;
    int n = 0;
    if (opt) {
        const char *optim_json = metadata_or_error(f, OPTIM_KEY, "the optimizer's state");
        if (!optim_json)
            goto done;
        arena = em_arena_create(0);
        if (!arena || em_optim_state_tensors(opt, arena, &list, &n) != EM_OK ||
            check_optimizer_tensors(f, optim_json, list, n) != EM_OK)
            goto done;
        /* The scalars are restored all or nothing, after every tensor was checked. */
        if (em_optim_load_state_json(opt, optim_json, path) != EM_OK)
            goto done;
    }
    if (copy_model_tensors(m, f) != EM_OK)
        goto done;
    for (int i = 0; i < n; i++)
        if (em_st_load_into(f, list[i].name, list[i].tensor) != EM_OK)
            goto done;
    *em_model_rng(m) = model_rng;
    if (pos)
        *pos = position;
    rc = EM_OK;
done:
    em_arena_destroy(arena);
    em_st_close(f);
    return rc;
}
