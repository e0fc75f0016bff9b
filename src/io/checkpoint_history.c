/* The history a full checkpoint carries, so that a resumed run's plot and metrics
 * start at the run's first step rather than at the resume. Step records are many and
 * hold floats: they go in one F32 tensor, bit for bit. Epoch records are few and hold
 * doubles that the metrics file prints to 9 digits: they go in the metadata as JSON
 * with each double's bits in hexadecimal, so that they come back exactly. Timings
 * are left out: they would make two runs that trained identically write different
 * files. */
#include "io/checkpoint_history.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/checkpoint.h"
#include "ember/error.h"
#include "ember/safetensors.h"

#define HISTORY_VERSION 1
#define STEP_FIELDS 4 /* loss, lr, grad_norm, accuracy */

/* The doubles of an epoch record, by their JSON names. */
typedef struct epoch_field {
    const char *key;
    size_t offset;
} epoch_field;

static const epoch_field epoch_fields[] = {
    {"train_loss", offsetof(em_epoch_record, train_loss)},
    {"train_accuracy", offsetof(em_epoch_record, train_accuracy)},
    {"val_loss", offsetof(em_epoch_record, val_loss)},
    {"val_accuracy", offsetof(em_epoch_record, val_accuracy)},
    {"test_loss", offsetof(em_epoch_record, test_loss)},
    {"test_accuracy", offsetof(em_epoch_record, test_accuracy)},
    {"lr", offsetof(em_epoch_record, lr)},
    {"grad_norm", offsetof(em_epoch_record, grad_norm)},
};
#define N_EPOCH_FIELDS (sizeof epoch_fields / sizeof epoch_fields[0])

static double *field_of(em_epoch_record *e, const epoch_field *f) { return (double *)(void *)((char *)e + f->offset); }

static uint64_t bits_of(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

/* Appends to a buffer sized for the worst case up front; false when it would not fit. */
static bool put(char *buf, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static bool put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len)
        return false;
    *len += (size_t)n;
    return true;
}

int em_history_encode(const em_train_history *h, em_arena *arena, em_tensor **steps, char **json)
{
    *steps = NULL;
    *json = NULL;
    for (int64_t i = 1; i < h->n_steps; i++)
        if (h->steps[i].step != h->steps[0].step + i)
            return em_error("history: step %lld follows step %lld; a checkpoint keeps consecutive steps only",
                            (long long)h->steps[i].step, (long long)h->steps[i - 1].step);
    if (h->n_steps > 0) {
        int64_t shape[2] = {h->n_steps, STEP_FIELDS};
        em_tensor *t = em_tensor_empty(arena, 2, shape);
        if (!t)
            return em_error_prefix("history: ");
        for (int64_t i = 0; i < h->n_steps; i++) {
            const em_step_record *r = &h->steps[i];
            float *row = t->data + i * STEP_FIELDS;
            row[0] = r->loss;
            row[1] = r->lr;
            row[2] = r->grad_norm;
            row[3] = r->accuracy;
        }
        *steps = t;
    }
    /* Per epoch: two integers and the doubles as 16 hex digits each, with their keys. */
    size_t cap = 256 + (size_t)h->n_epochs * (64 + N_EPOCH_FIELDS * 40);
    char *buf = malloc(cap);
    if (!buf)
        return em_error("history: out of memory for %d epoch records", h->n_epochs);
    size_t len = 0;
    bool ok = put(buf, cap, &len, "{\"version\":%d,\"first_step\":%" PRId64 ",\"steps\":%" PRId64 ",\"epochs\":[",
                  HISTORY_VERSION, h->n_steps ? h->steps[0].step : INT64_C(0), h->n_steps);
    for (int e = 0; ok && e < h->n_epochs; e++) {
        em_epoch_record r = h->epochs[e];
        ok = put(buf, cap, &len, "%s{\"epoch\":%d,\"steps\":%" PRId64, e ? "," : "", r.epoch, r.steps);
        for (size_t f = 0; ok && f < N_EPOCH_FIELDS; f++)
            ok = put(buf, cap, &len, ",\"%s\":\"%016" PRIx64 "\"", epoch_fields[f].key,
                     bits_of(*field_of(&r, &epoch_fields[f])));
        ok = ok && put(buf, cap, &len, "}");
    }
    if (!ok || !put(buf, cap, &len, "]}")) {
        free(buf);
        return em_error("history: the epoch records outgrew their buffer");
    }
    *json = buf;
    return EM_OK;
}

/* ---- reading ------------------------------------------------------------------------ */

static int get_int(const cJSON *obj, const char *key, const char *path, int64_t min, int64_t max, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble || v->valuedouble < (double)min ||
        v->valuedouble > (double)max)
        return em_error("%s: \"" EM_HISTORY_KEY "\": \"%s\" is missing or not an integer in [%" PRId64 ", %" PRId64
                        "]",
                        path, key, min, max);
    *out = (int64_t)v->valuedouble;
    return EM_OK;
}

static int get_double_bits(const cJSON *obj, const char *key, const char *path, int epoch, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char *end = NULL;
    uint64_t bits = 0;
    if (!cJSON_IsString(v) || strlen(v->valuestring) != 16 || (bits = strtoull(v->valuestring, &end, 16), *end))
        return em_error("%s: \"" EM_HISTORY_KEY "\": epoch %d's \"%s\" is not 16 hexadecimal digits", path, epoch,
                        key);
    memcpy(out, &bits, sizeof *out);
    return EM_OK;
}

static int parse_epochs(const cJSON *list, const char *path, int64_t last_step, em_epoch_record *out)
{
    int i = 0;
    for (const cJSON *o = list->child; o; o = o->next, i++) {
        int64_t epoch = 0, steps = 0;
        if (!cJSON_IsObject(o))
            return em_error("%s: \"" EM_HISTORY_KEY "\": epoch record %d is not a JSON object", path, i + 1);
        if (get_int(o, "epoch", path, 1, INT32_MAX, &epoch) != EM_OK ||
            get_int(o, "steps", path, 0, last_step, &steps) != EM_OK)
            return EM_ERR;
        em_epoch_record *r = &out[i];
        memset(r, 0, sizeof *r);
        r->epoch = (int)epoch;
        r->steps = steps;
        r->seconds = NAN;
        for (size_t f = 0; f < N_EPOCH_FIELDS; f++)
            if (get_double_bits(o, epoch_fields[f].key, path, r->epoch, field_of(r, &epoch_fields[f])) != EM_OK)
                return EM_ERR;
    }
    return EM_OK;
}

/* The step records' values from the tensor, which must be [n, 4]. */
static int read_steps(const em_st_file *f, const char *path, int64_t first, int64_t n, em_step_record *out)
{
    const em_st_entry *e = em_st_find(f, EM_HISTORY_STEPS_TENSOR);
    if (!e || e->ndim != 2 || e->shape[0] != n || e->shape[1] != STEP_FIELDS)
        return em_error("%s: \"" EM_HISTORY_KEY "\" lists %lld steps but tensor '" EM_HISTORY_STEPS_TENSOR
                        "' is %s, not [%lld, %d]",
                        path, (long long)n, e ? em_dims_str(e->ndim, e->shape) : "missing", (long long)n,
                        STEP_FIELDS);
    em_arena *arena = em_arena_create(0);
    em_tensor *t = arena ? em_st_load(f, EM_HISTORY_STEPS_TENSOR, arena) : NULL;
    if (!t) {
        em_arena_destroy(arena);
        return em_error_prefix("%s: the history's steps: ", path);
    }
    for (int64_t i = 0; i < n; i++) {
        const float *row = t->data + i * STEP_FIELDS;
        out[i] = (em_step_record){.step = first + i,
                                  .loss = row[0],
                                  .lr = row[1],
                                  .grad_norm = row[2],
                                  .accuracy = row[3],
                                  .seconds = NAN};
    }
    em_arena_destroy(arena);
    return EM_OK;
}

static int read_from(const em_st_file *f, const char *path, const char *json, em_train_history *h)
{
    cJSON *root = cJSON_Parse(json);
    em_step_record *steps = NULL;
    em_epoch_record *epochs = NULL;
    int rc = EM_OK;
    int64_t version = 0, first = 0, n = 0;
    const cJSON *list = root ? cJSON_GetObjectItemCaseSensitive(root, "epochs") : NULL;
    const int64_t big = INT64_C(1) << 53;
    if (!cJSON_IsObject(root))
        rc = em_error("%s: \"" EM_HISTORY_KEY "\" metadata is not a JSON object", path);
    if (rc == EM_OK)
        rc = get_int(root, "version", path, 1, 1000, &version);
    if (rc == EM_OK && version > HISTORY_VERSION)
        rc = em_error("%s: history format %" PRId64 " is newer than this ember's (%d)", path, version,
                      HISTORY_VERSION);
    if (rc == EM_OK)
        rc = get_int(root, "steps", path, 0, big, &n);
    if (rc == EM_OK)
        rc = get_int(root, "first_step", path, n ? 1 : 0, big, &first);
    if (rc == EM_OK && !cJSON_IsArray(list))
        rc = em_error("%s: \"" EM_HISTORY_KEY "\": \"epochs\" is not an array", path);
    int n_epochs = rc == EM_OK ? cJSON_GetArraySize(list) : 0;
    if (rc == EM_OK && ((n && !(steps = malloc((size_t)n * sizeof *steps))) ||
                        (n_epochs && !(epochs = malloc((size_t)n_epochs * sizeof *epochs)))))
        rc = em_error("%s: out of memory for the history (%lld steps)", path, (long long)n);
    if (rc == EM_OK && n)
        rc = read_steps(f, path, first, n, steps);
    if (rc == EM_OK)
        rc = parse_epochs(list, path, n ? first + n - 1 : big, epochs);
    /* Room first, so that h changes only once nothing can fail. */
    if (rc == EM_OK)
        rc = em_history_reserve(h, h->n_steps + n, h->n_epochs + n_epochs);
    if (rc == EM_OK) {
        if (n)
            memcpy(h->steps + h->n_steps, steps, (size_t)n * sizeof *steps);
        h->n_steps += n;
        if (n_epochs)
            memcpy(h->epochs + h->n_epochs, epochs, (size_t)n_epochs * sizeof *epochs);
        h->n_epochs += n_epochs;
    }
    free(steps);
    free(epochs);
    cJSON_Delete(root);
    return rc;
}

int em_checkpoint_read_history(const char *path, em_train_history *h)
{
    if (!path || !h)
        return em_error("em_checkpoint_read_history: no %s", !path ? "path" : "history");
    em_st_file *f = em_st_open(path);
    if (!f)
        return EM_ERR;
    const char *json = em_st_metadata(f, EM_HISTORY_KEY);
    int rc = json ? read_from(f, path, json, h) : EM_OK;
    em_st_close(f);
    return rc;
}
