/* An optimizer's state for checkpoints. The buffers become tensors named after the
 * parameter they belong to ("optim.state.0.weight.exp_avg", PyTorch's buffer names),
 * which view the optimizer's own memory, so that saving writes them and loading fills
 * them in place. The scalars (kind, each group's options, the optimizer's and each
 * parameter's step count) become one JSON object, kept in the checkpoint's metadata:
 *   {"kind":"adam","steps":12,"groups":[{"lr":0.001,...},...],
 *    "param_steps":{"0.weight":12,...},"param_groups":{"0.weight":0,...}} */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ember/autograd.h"
#include "ember/error.h"
#include "ember/optim_state.h"
#include "optim/optim_internal.h"

#define STATE_PREFIX "optim.state."

/* Every field of em_optim_opts, by name. The assertion below fails when a field is
 * added to the struct: add it to this table too, or checkpoints will forget it. */
typedef enum { OPT_FLOAT, OPT_BOOL } opt_type;

typedef struct opt_field {
    const char *name;
    size_t offset;
    opt_type type;
} opt_field;

static const opt_field opt_fields[] = {
    {"lr", offsetof(em_optim_opts, lr), OPT_FLOAT},
    {"momentum", offsetof(em_optim_opts, momentum), OPT_FLOAT},
    {"dampening", offsetof(em_optim_opts, dampening), OPT_FLOAT},
    {"nesterov", offsetof(em_optim_opts, nesterov), OPT_BOOL},
    {"weight_decay", offsetof(em_optim_opts, weight_decay), OPT_FLOAT},
    {"beta1", offsetof(em_optim_opts, beta1), OPT_FLOAT},
    {"beta2", offsetof(em_optim_opts, beta2), OPT_FLOAT},
    {"eps", offsetof(em_optim_opts, eps), OPT_FLOAT},
    {"amsgrad", offsetof(em_optim_opts, amsgrad), OPT_BOOL},
    {"lr_decay", offsetof(em_optim_opts, lr_decay), OPT_FLOAT},
    {"initial_accumulator_value", offsetof(em_optim_opts, initial_accumulator_value), OPT_FLOAT},
    {"alpha", offsetof(em_optim_opts, alpha), OPT_FLOAT},
    {"centered", offsetof(em_optim_opts, centered), OPT_BOOL},
};
#define N_FIELDS (sizeof opt_fields / sizeof opt_fields[0])

_Static_assert(sizeof(em_optim_opts) == 52,
               "em_optim_opts changed: list the new field in opt_fields (src/optim/optim_state.c)");

/* The parameter's name, or "#i" for unnamed tensors (optimizers built from bare tensors). */
static const char *slot_name(const em_optim *opt, int i, char *buf, size_t size)
{
    const char *name = opt->slots[i].param->name;
    if (name && *name)
        return name;
    snprintf(buf, size, "#%d", i);
    return buf;
}

int em_optim_state_tensors(em_optim *opt, em_arena *arena, em_named_tensor **out, int *count)
{
    if (!opt || !out || !count)
        return em_error("em_optim_state_tensors: no optimizer or output");
    *out = NULL;
    *count = 0;
    int total = 0;
    for (int i = 0; i < opt->n_slots; i++)
        total += opt->slots[i].n_state;
    if (total == 0)
        return EM_OK;
    if (!arena)
        arena = em_step_arena();
    em_named_tensor *list = em_arena_calloc(arena, (size_t)total, sizeof *list);
    if (!list)
        return EM_ERR;
    int n = 0;
    for (int i = 0; i < opt->n_slots; i++) {
        const em_optim_slot *slot = &opt->slots[i];
        char unnamed[32];
        const char *pname = slot_name(opt, i, unnamed, sizeof unnamed);
        for (int s = 0; s < slot->n_state; s++) {
            const char *buffer = opt->vt->state_names[s];
            size_t len = strlen(STATE_PREFIX) + strlen(pname) + 1 + strlen(buffer) + 1;
            char *name = em_arena_alloc(arena, len);
            em_tensor *t = em_tensor_wrap(arena, slot->param->ndim, slot->param->shape, slot->state[s]);
            if (!name || !t)
                return EM_ERR;
            snprintf(name, len, STATE_PREFIX "%s.%s", pname, buffer);
            t->name = name;
            list[n++] = (em_named_tensor){name, t, true};
        }
    }
    *out = list;
    *count = n;
    return EM_OK;
}

/* ---- writing the scalars ------------------------------------------------------------ */

typedef struct json_out {
    char *buf;
    size_t len, cap;
    bool failed;
} json_out;

static void put(json_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(json_out *o, const char *fmt, ...)
{
    while (!o->failed) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t want = o->cap ? o->cap * 2 : 512;
        while (want < o->len + (size_t)n + 1)
            want *= 2;
        char *p = realloc(o->buf, want);
        if (!p) {
            o->failed = true;
            return;
        }
        o->buf = p;
        o->cap = want;
    }
}

/* Parameter names are ember's ("3.weight"), but quote-safe output costs little. */
static void put_string(json_out *o, const char *s)
{
    put(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(o, "\\%c", *p);
        else if (*p < 0x20)
            put(o, "\\u%04x", *p);
        else
            put(o, "%c", *p);
    }
    put(o, "\"");
}

static void put_options(json_out *o, const em_optim_opts *opts)
{
    put(o, "{");
    for (size_t i = 0; i < N_FIELDS; i++) {
        const opt_field *f = &opt_fields[i];
        const char *at = (const char *)opts + f->offset;
        put(o, "%s\"%s\":", i ? "," : "", f->name);
        if (f->type == OPT_FLOAT) {
            float v;
            memcpy(&v, at, sizeof v);
            /* 9 significant digits bring every float back exactly. */
            put(o, "%.9g", (double)v);
        } else {
            bool v;
            memcpy(&v, at, sizeof v);
            put(o, "%s", v ? "true" : "false");
        }
    }
    put(o, "}");
}

char *em_optim_state_json(const em_optim *opt)
{
    if (!opt) {
        em_error("em_optim_state_json: no optimizer");
        return NULL;
    }
    json_out o = {0};
    put(&o, "{\"kind\":\"%s\",\"steps\":%" PRId64 ",\"groups\":[", opt->vt->name, opt->steps);
    for (int g = 0; g < opt->n_groups; g++) {
        if (g)
            put(&o, ",");
        put_options(&o, &opt->groups[g].opts);
    }
    put(&o, "],\"param_steps\":{");
    for (int i = 0; i < opt->n_slots; i++) {
        char unnamed[32];
        put(&o, "%s", i ? "," : "");
        put_string(&o, slot_name(opt, i, unnamed, sizeof unnamed));
        put(&o, ":%" PRId64, opt->slots[i].steps);
    }
    put(&o, "},\"param_groups\":{");
    for (int i = 0; i < opt->n_slots; i++) {
        char unnamed[32];
        put(&o, "%s", i ? "," : "");
        put_string(&o, slot_name(opt, i, unnamed, sizeof unnamed));
        put(&o, ":%d", opt->slots[i].group);
    }
    put(&o, "}}");
    if (o.failed) {
        free(o.buf);
        em_error("optimizer state: out of memory");
        return NULL;
    }
    return o.buf;
}

/* ---- reading the scalars ------------------------------------------------------------ */

/* A non-negative integer below 2^53 (exact in a JSON double). */
static int json_count(const cJSON *item, const char *what, const char *source, int64_t *out)
{
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0.0) || item->valuedouble > 9007199254740992.0 ||
        item->valuedouble != (double)(int64_t)item->valuedouble)
        return em_error("%s: optimizer state: %s is missing or not a count", source, what);
    *out = (int64_t)item->valuedouble;
    return EM_OK;
}

/* Options over `base`; a field the text lacks (written before it existed) keeps base's. */
static int parse_options(const cJSON *o, const char *source, em_optim_opts *opts)
{
    if (!cJSON_IsObject(o))
        return em_error("%s: optimizer state: a group's options are not a JSON object", source);
    for (size_t i = 0; i < N_FIELDS; i++) {
        const opt_field *f = &opt_fields[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, f->name);
        if (!v)
            continue;
        char *at = (char *)opts + f->offset;
        if (f->type == OPT_FLOAT) {
            if (!cJSON_IsNumber(v))
                return em_error("%s: optimizer option \"%s\" is not a number", source, f->name);
            float x = (float)v->valuedouble;
            memcpy(at, &x, sizeof x);
        } else {
            if (!cJSON_IsBool(v))
                return em_error("%s: optimizer option \"%s\" is not true or false", source, f->name);
            bool x = cJSON_IsTrue(v);
            memcpy(at, &x, sizeof x);
        }
    }
    return EM_OK;
}

static int parse_kind(const cJSON *root, const char *source, em_optim_kind *kind)
{
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "kind");
    if (!cJSON_IsString(k))
        return em_error("%s: optimizer state has no \"kind\"", source);
    if (em_optim_parse(k->valuestring, kind) != EM_OK)
        return em_error_prefix("%s: optimizer state: ", source);
    return EM_OK;
}

static const cJSON *groups_of(const cJSON *root, const char *source)
{
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(root, "groups");
    if (!cJSON_IsArray(groups) || cJSON_GetArraySize(groups) < 1) {
        em_error("%s: optimizer state has no \"groups\" array", source);
        return NULL;
    }
    return groups;
}

static cJSON *parse_root(const char *json, const char *source)
{
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        em_error("%s: optimizer state is not a JSON object", source);
        return NULL;
    }
    return root;
}

int em_optim_options_from_json(const char *json, const char *source, em_optim_kind *kind,
                               em_optim_opts *opts)
{
    if (!json || !kind || !opts)
        return em_error("em_optim_options_from_json: missing argument");
    if (!source)
        source = "optimizer state";
    cJSON *root = parse_root(json, source);
    if (!root)
        return EM_ERR;
    const cJSON *groups = NULL;
    int rc = parse_kind(root, source, kind);
    if (rc == EM_OK && !(groups = groups_of(root, source)))
        rc = EM_ERR;
    if (rc == EM_OK) {
        *opts = em_optim_defaults(*kind);
        rc = parse_options(groups->child, source, opts);
    }
    cJSON_Delete(root);
    return rc;
}

/* A per-parameter count from the object `key`, for slot i. */
static int slot_count(const em_optim *opt, const cJSON *root, const char *key, int i, const char *source,
                      int64_t *out)
{
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsObject(map))
        return em_error("%s: optimizer state has no \"%s\" object", source, key);
    char unnamed[32];
    const char *name = slot_name(opt, i, unnamed, sizeof unnamed);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(map, name);
    if (!v)
        return em_error("%s: the checkpoint's optimizer has no state for parameter '%s' (was it frozen "
                        "when the checkpoint was written?)", source, name);
    char what[160];
    snprintf(what, sizeof what, "%s of '%.100s'", key, name);
    return json_count(v, what, source, out);
}

static int restore(em_optim *opt, const cJSON *root, const char *source)
{
    em_optim_kind kind;
    if (parse_kind(root, source, &kind) != EM_OK)
        return EM_ERR;
    if (kind != opt->vt->kind)
        return em_error("%s: the checkpoint holds %s state, but the optimizer is %s", source,
                        em_optim_name(kind), opt->vt->name);
    const cJSON *groups = groups_of(root, source);
    if (!groups)
        return EM_ERR;
    int n_groups = cJSON_GetArraySize(groups);
    if (n_groups != opt->n_groups)
        return em_error("%s: the checkpoint's optimizer has %d parameter groups, this one %d", source,
                        n_groups, opt->n_groups);
    int64_t steps = 0;
    if (json_count(cJSON_GetObjectItemCaseSensitive(root, "steps"), "\"steps\"", source, &steps) != EM_OK)
        return EM_ERR;
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, "param_steps");
    if (cJSON_IsObject(ps) && cJSON_GetArraySize(ps) != opt->n_slots)
        return em_error("%s: the checkpoint's optimizer holds %d parameters, this one %d (were other "
                        "parameters frozen?)",
                        source, cJSON_GetArraySize(ps), opt->n_slots);

    /* Everything is read and checked before anything changes, so that a refused state
     * leaves the optimizer as it was. */
    /* The step counts follow the options, at an offset rounded up for int64_t. */
    size_t opts_bytes = ((size_t)n_groups * sizeof(em_optim_opts) + sizeof(int64_t) - 1) / sizeof(int64_t) *
                        sizeof(int64_t);
    size_t bytes = opts_bytes + (size_t)(opt->n_slots + 1) * sizeof(int64_t);
    em_optim_opts *opts = malloc(bytes);
    if (!opts)
        return em_error("%s: out of memory", source);
    int64_t *slot_steps = (int64_t *)(void *)((char *)opts + opts_bytes);
    int rc = EM_OK, g = 0;
    for (const cJSON *item = groups->child; item && rc == EM_OK; item = item->next, g++) {
        opts[g] = opt->groups[g].opts;
        rc = parse_options(item, source, &opts[g]);
        if (rc == EM_OK && opt->vt->validate(&opts[g]) != EM_OK)
            rc = em_error_prefix("%s: options of parameter group %d: ", source, g);
    }
    for (int i = 0; i < opt->n_slots && rc == EM_OK; i++) {
        const em_optim_slot *slot = &opt->slots[i];
        int64_t group = 0;
        rc = slot_count(opt, root, "param_steps", i, source, &slot_steps[i]);
        if (rc == EM_OK && cJSON_GetObjectItemCaseSensitive(root, "param_groups"))
            rc = slot_count(opt, root, "param_groups", i, source, &group);
        if (rc == EM_OK && group != slot->group)
            rc = em_error("%s: parameter '%s' is in group %lld in the checkpoint but in group %d here",
                          source, slot->param->name ? slot->param->name : "?", (long long)group, slot->group);
        if (rc == EM_OK && opt->vt->state_count(&opts[slot->group]) != slot->n_state)
            rc = em_error("%s: the checkpoint's %s options keep %d buffers for '%s', this optimizer %d "
                          "(momentum, amsgrad or centered differ); create it with the checkpoint's options",
                          source, opt->vt->name, opt->vt->state_count(&opts[slot->group]),
                          slot->param->name ? slot->param->name : "?", slot->n_state);
    }
    if (rc == EM_OK) {
        for (g = 0; g < n_groups; g++)
            opt->groups[g].opts = opts[g];
        opt->steps = steps;
        for (int i = 0; i < opt->n_slots; i++)
            opt->slots[i].steps = slot_steps[i];
    }
    free(opts);
    return rc;
}

int em_optim_load_state_json(em_optim *opt, const char *json, const char *source)
{
    if (!opt || !json)
        return em_error("em_optim_load_state_json: no optimizer or text");
    if (!source)
        source = "optimizer state";
    cJSON *root = parse_root(json, source);
    if (!root)
        return EM_ERR;
    int rc = restore(opt, root, source);
    cJSON_Delete(root);
    return rc;
}

int em_optim_copy_state(em_optim *dst, const em_optim *src)
{
    if (!dst || !src)
        return em_error("em_optim_copy_state: no optimizer");
    if (dst->vt != src->vt)
        return em_error("copying optimizer state: %s state into a %s optimizer", src->vt->name, dst->vt->name);
    int copied = 0;
    for (int i = 0; i < dst->n_slots; i++) {
        em_optim_slot *d = &dst->slots[i];
        for (int j = 0; j < src->n_slots; j++) {
            const em_optim_slot *s = &src->slots[j];
            if (s->param != d->param)
                continue;
            int n = d->n_state < s->n_state ? d->n_state : s->n_state;
            for (int b = 0; b < n; b++)
                memcpy(d->state[b], s->state[b], (size_t)d->param->numel * sizeof(float));
            d->steps = s->steps;
            copied++;
            break;
        }
    }
    dst->steps = src->steps;
    return copied;
}
