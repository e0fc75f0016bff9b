/* Learning-rate schedules. Each tick recomputes every group's rate with the same
 * recurrence as PyTorch's scheduler's get_lr() (not a closed form), in double as
 * PyTorch keeps param_group["lr"], so that the rates agree to the last bit that
 * float32 can hold. */
#include "ember/schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "optim/optim_internal.h"

static const char *const schedule_names[EM_SCHEDULE_KIND_COUNT] = {
    [EM_SCHEDULE_CONSTANT] = "constant", [EM_SCHEDULE_STEP] = "step", [EM_SCHEDULE_EXPONENTIAL] = "exponential",
    [EM_SCHEDULE_COSINE] = "cosine",     [EM_SCHEDULE_PLATEAU] = "plateau",
};

struct em_schedule {
    em_optim *opt;
    em_schedule_opts o;
    int64_t ticks;        /* PyTorch's last_epoch */
    int n_groups;
    double *base;         /* initial_lr per group */
    double *lr;           /* the current rate per group */
    /* ReduceLROnPlateau's state */
    double best;
    int bad_ticks;
    int cooldown_left;
};

em_schedule_opts em_schedule_defaults(em_schedule_kind kind)
{
    em_schedule_opts o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    o.step_size = 1;
    o.gamma = kind == EM_SCHEDULE_EXPONENTIAL ? 0.9 : 0.1;
    o.warmup_start = 0.01;
    o.per_step = kind == EM_SCHEDULE_COSINE;
    o.factor = 0.1;
    o.patience = 10;
    o.threshold = 1e-4;
    o.eps = 1e-8;
    return o;
}

const char *em_schedule_name(em_schedule_kind kind)
{
    return (unsigned)kind < EM_SCHEDULE_KIND_COUNT ? schedule_names[kind] : "unknown";
}

int em_schedule_parse(const char *name, em_schedule_kind *kind)
{
    for (int k = 0; k < EM_SCHEDULE_KIND_COUNT; k++)
        if (name && strcmp(name, schedule_names[k]) == 0) {
            *kind = (em_schedule_kind)k;
            return EM_OK;
        }
    char valid[128] = "";
    for (int k = 0; k < EM_SCHEDULE_KIND_COUNT; k++) {
        strncat(valid, k ? ", " : "", sizeof valid - strlen(valid) - 1);
        strncat(valid, schedule_names[k], sizeof valid - strlen(valid) - 1);
    }
    return em_error("unknown learning-rate schedule \"%s\"; valid: %s", name ? name : "(null)", valid);
}

static int validate(const em_schedule_opts *o)
{
    switch (o->kind) {
    case EM_SCHEDULE_CONSTANT:
        return EM_OK;
    case EM_SCHEDULE_STEP:
    case EM_SCHEDULE_EXPONENTIAL:
        if (o->kind == EM_SCHEDULE_STEP && o->step_size < 1)
            return em_error("step schedule: step_size must be at least 1, got %lld", (long long)o->step_size);
        if (!(o->gamma > 0.0) || !isfinite(o->gamma))
            return em_error("%s schedule: gamma must be a finite number > 0, got %g", em_schedule_name(o->kind),
                            o->gamma);
        return EM_OK;
    case EM_SCHEDULE_COSINE:
        if (o->warmup < 0)
            return em_error("cosine schedule: warmup must be >= 0, got %lld", (long long)o->warmup);
        if (o->total <= o->warmup)
            return em_error("cosine schedule: the total length (%lld ticks) must exceed the warm-up (%lld)",
                            (long long)o->total, (long long)o->warmup);
        if (o->warmup > 0 && !(o->warmup_start > 0.0 && o->warmup_start <= 1.0))
            return em_error("cosine schedule: warmup_start must be in (0, 1], got %g", o->warmup_start);
        if (!(o->min_lr >= 0.0) || !isfinite(o->min_lr))
            return em_error("cosine schedule: min_lr must be >= 0, got %g", o->min_lr);
        return EM_OK;
    case EM_SCHEDULE_PLATEAU:
        if (!(o->factor >= 0.0 && o->factor < 1.0))
            return em_error("plateau schedule: factor must be in [0, 1), got %g", o->factor);
        if (o->patience < 0 || o->cooldown < 0)
            return em_error("plateau schedule: patience and cooldown must be >= 0, got %d and %d", o->patience,
                            o->cooldown);
        if (!(o->threshold >= 0.0) || !(o->min_lr >= 0.0) || !(o->eps >= 0.0))
            return em_error("plateau schedule: threshold, min_lr and eps must be >= 0, got %g, %g, %g",
                            o->threshold, o->min_lr, o->eps);
        return EM_OK;
    case EM_SCHEDULE_KIND_COUNT:
        break;
    }
    return em_error("unknown schedule kind %d", (int)o->kind);
}

static void apply(em_schedule *s)
{
    for (int g = 0; g < s->n_groups; g++)
        em_optim_set_group_lr(s->opt, g, (float)s->lr[g]);
}

em_schedule *em_schedule_new(em_optim *opt, const em_schedule_opts *opts)
{
    if (!opt || !opts) {
        em_error("schedule: needs an optimizer and options");
        return NULL;
    }
    if (validate(opts) != EM_OK)
        return NULL;
    em_schedule *s = calloc(1, sizeof *s);
    int n = em_optim_group_count(opt);
    if (s) {
        s->base = calloc((size_t)n, sizeof *s->base);
        s->lr = calloc((size_t)n, sizeof *s->lr);
    }
    if (!s || !s->base || !s->lr) {
        em_schedule_free(s);
        em_error("schedule: out of memory");
        return NULL;
    }
    s->opt = opt;
    s->o = *opts;
    s->n_groups = n;
    s->best = opts->maximize ? -INFINITY : INFINITY;
    for (int g = 0; g < n; g++) {
        s->base[g] = (double)em_optim_group_opts(opt, g)->lr;
        /* Tick 0: only the warm-up starts below the base rate. */
        s->lr[g] = s->base[g];
        if (opts->kind == EM_SCHEDULE_COSINE && opts->warmup > 0)
            s->lr[g] = s->base[g] * opts->warmup_start;
    }
    apply(s);
    return s;
}

void em_schedule_free(em_schedule *s)
{
    if (!s)
        return;
    free(s->base);
    free(s->lr);
    free(s);
}

/* CosineAnnealingLR.get_lr at last_epoch t (>= 1) of a cosine phase of length t_max. */
static double cosine_next(double lr, double base, double eta_min, int64_t t, int64_t t_max)
{
    if ((t - 1 - t_max) % (2 * t_max) == 0)
        return lr + (base - eta_min) * (1.0 - cos(M_PI / (double)t_max)) / 2.0;
    return (1.0 + cos(M_PI * (double)t / (double)t_max)) / (1.0 + cos(M_PI * (double)(t - 1) / (double)t_max)) *
               (lr - eta_min) +
           eta_min;
}

static double next_lr(const em_schedule *s, int g, int64_t t)
{
    const em_schedule_opts *o = &s->o;
    double lr = s->lr[g];
    switch (o->kind) {
    case EM_SCHEDULE_STEP:
        return t % o->step_size == 0 ? lr * o->gamma : lr;
    case EM_SCHEDULE_EXPONENTIAL:
        return lr * o->gamma;
    case EM_SCHEDULE_COSINE: {
        const int64_t w = o->warmup, t_max = o->total - o->warmup;
        if (w > 0 && t < w) {
            /* LinearLR from warmup_start to 1 over w ticks. */
            const double start = o->warmup_start;
            return lr * (1.0 + (1.0 - start) / ((double)w * start + (double)(t - 1) * (1.0 - start)));
        }
        if (w > 0 && t == w) /* SequentialLR restarts the cosine with step(0): its closed form */
            return o->min_lr + (s->base[g] - o->min_lr) * (1.0 + cos(0.0)) / 2.0;
        return cosine_next(lr, s->base[g], o->min_lr, t - w, t_max);
    }
    case EM_SCHEDULE_CONSTANT:
    case EM_SCHEDULE_PLATEAU:
    case EM_SCHEDULE_KIND_COUNT:
        break;
    }
    return lr;
}

static bool plateau_better(const em_schedule *s, double a)
{
    const em_schedule_opts *o = &s->o;
    double best = s->best;
    if (!o->maximize)
        return o->threshold_abs ? a < best - o->threshold : a < best * (1.0 - o->threshold);
    return o->threshold_abs ? a > best + o->threshold : a > best * (o->threshold + 1.0);
}

static void plateau_step(em_schedule *s, double metric)
{
    const em_schedule_opts *o = &s->o;
    if (plateau_better(s, metric)) {
        s->best = metric;
        s->bad_ticks = 0;
    } else {
        s->bad_ticks++;
    }
    if (s->cooldown_left > 0) {
        s->cooldown_left--;
        s->bad_ticks = 0;
    }
    if (s->bad_ticks > o->patience) {
        for (int g = 0; g < s->n_groups; g++) {
            double old_lr = s->lr[g];
            double new_lr = fmax(old_lr * o->factor, o->min_lr);
            if (old_lr - new_lr > o->eps)
                s->lr[g] = new_lr;
        }
        s->cooldown_left = o->cooldown;
        s->bad_ticks = 0;
    }
}

void em_schedule_step_metric(em_schedule *s, double metric)
{
    if (!s)
        return;
    s->ticks++;
    if (s->o.kind == EM_SCHEDULE_PLATEAU) {
        plateau_step(s, metric);
    } else {
        for (int g = 0; g < s->n_groups; g++)
            s->lr[g] = next_lr(s, g, s->ticks);
    }
    apply(s);
}

void em_schedule_step(em_schedule *s)
{
    /* A plateau schedule without a metric sees no improvement, as a NaN metric does
     * in PyTorch (NaN compares false). */
    em_schedule_step_metric(s, NAN);
}

int64_t em_schedule_ticks(const em_schedule *s) { return s ? s->ticks : 0; }

/* The rate a group with this base has at the schedule's current tick: its tick-0 rate
 * carried through the same recurrence every group went through. */
static double rate_now(const em_schedule *s, double base)
{
    const em_schedule_opts *o = &s->o;
    if (o->kind == EM_SCHEDULE_PLATEAU) {
        /* Reductions depend on the metrics seen: the default group's tell how many. */
        double reduced = s->base[0] > 0.0 ? base * (s->lr[0] / s->base[0]) : base;
        return reduced < base ? fmin(base, fmax(reduced, o->min_lr)) : base;
    }
    /* next_lr reads the group's base and rate from the schedule: a one-group copy. */
    double lr = o->kind == EM_SCHEDULE_COSINE && o->warmup > 0 ? base * o->warmup_start : base;
    em_schedule one = *s;
    one.n_groups = 1;
    one.base = &base;
    one.lr = &lr;
    for (int64_t t = 1; t <= s->ticks; t++)
        lr = next_lr(&one, 0, t);
    return lr;
}

int em_schedule_rebind_groups(em_schedule *s, em_optim *opt, const int *from)
{
    if (!s || !opt)
        return em_error("schedule: nothing to rebind");
    int n = em_optim_group_count(opt);
    for (int g = 0; from && g < n; g++)
        if (from[g] < -1 || from[g] >= s->n_groups)
            return em_error("schedule: group %d of the new optimizer continues group %d, but the schedule has %d",
                            g, from[g], s->n_groups);
    double *base = malloc((size_t)n * sizeof *base), *lr = malloc((size_t)n * sizeof *lr);
    if (!base || !lr) {
        free(base);
        free(lr);
        return em_error("schedule: out of memory");
    }
    for (int g = 0; g < n; g++) {
        int old = from ? from[g] : g < s->n_groups ? g : -1;
        if (old >= 0) {
            base[g] = s->base[old];
            lr[g] = s->lr[old];
        } else {
            base[g] = (double)em_optim_group_opts(opt, g)->lr;
            lr[g] = rate_now(s, base[g]);
        }
    }
    free(s->base);
    free(s->lr);
    s->base = base;
    s->lr = lr;
    s->n_groups = n;
    s->opt = opt;
    apply(s);
    return EM_OK;
}

int em_schedule_rebind(em_schedule *s, em_optim *opt) { return em_schedule_rebind_groups(s, opt, NULL); }

double em_schedule_lr(const em_schedule *s, int g) { return s && g >= 0 && g < s->n_groups ? s->lr[g] : NAN; }

const em_schedule_opts *em_schedule_options(const em_schedule *s) { return s ? &s->o : NULL; }

/* ---- state for checkpoints ----------------------------------------------------------
 * "kind=cosine ticks=12 bad=0 cooldown=0 best=inf base=0x1.0624dd2f1a9fcp-10 lr=..."
 * with every double in C's exact hexadecimal form, so that a resumed schedule continues
 * with the very same rates. */
int em_schedule_save_state(const em_schedule *s, char *buf, size_t size)
{
    if (!s || !buf || size == 0)
        return em_error("schedule state: nothing to save into");
    size_t used = 0;
    int n = snprintf(buf, size, "kind=%s ticks=%lld bad=%d cooldown=%d best=%a", em_schedule_name(s->o.kind),
                     (long long)s->ticks, s->bad_ticks, s->cooldown_left, s->best);
    for (int list = 0; list < 2 && n >= 0 && (used += (size_t)n) < size; list++) {
        const double *v = list == 0 ? s->base : s->lr;
        n = snprintf(buf + used, size - used, " %s=", list == 0 ? "base" : "lr");
        for (int g = 0; g < s->n_groups && n >= 0 && (used += (size_t)n) < size; g++)
            n = snprintf(buf + used, size - used, "%s%a", g ? "," : "", v[g]);
    }
    if (n < 0 || used >= size)
        return em_error("schedule state: more than %zu bytes (%d parameter groups)", size - 1, s->n_groups);
    return EM_OK;
}

/* The value of `key=` in text (up to the next space), copied into out. */
static bool state_value(const char *text, const char *key, char *out, size_t size)
{
    size_t klen = strlen(key);
    for (const char *p = text; (p = strstr(p, key)) != NULL; p += klen) {
        if ((p != text && p[-1] != ' ') || p[klen] != '=')
            continue;
        p += klen + 1;
        size_t len = strcspn(p, " ");
        if (len >= size)
            return false;
        memcpy(out, p, len);
        out[len] = '\0';
        return true;
    }
    return false;
}

static int parse_doubles(const char *text, double *out, int n)
{
    const char *p = text;
    for (int g = 0; g < n; g++) {
        char *end;
        out[g] = strtod(p, &end);
        if (end == p || (g + 1 < n ? *end != ',' : *end != '\0'))
            return EM_ERR;
        p = end + 1;
    }
    return EM_OK;
}

int em_schedule_load_state(em_schedule *s, const char *text)
{
    if (!s || !text)
        return em_error("schedule state: nothing to load");
    char value[4096], *end;
    if (!state_value(text, "kind", value, sizeof value) || strcmp(value, em_schedule_name(s->o.kind)) != 0)
        return em_error("schedule state \"%.60s\" is not of a %s schedule", text, em_schedule_name(s->o.kind));
    long long ticks = -1, bad = -1, cooldown = -1;
    double best = 0;
    if (state_value(text, "ticks", value, sizeof value))
        ticks = strtoll(value, &end, 10);
    if (state_value(text, "bad", value, sizeof value))
        bad = strtoll(value, &end, 10);
    if (state_value(text, "cooldown", value, sizeof value))
        cooldown = strtoll(value, &end, 10);
    bool have_best = state_value(text, "best", value, sizeof value);
    if (have_best)
        best = strtod(value, &end);
    if (ticks < 0 || bad < 0 || bad > INT32_MAX || cooldown < 0 || cooldown > INT32_MAX || !have_best)
        return em_error("schedule state \"%.60s\": ticks, bad, cooldown or best missing or out of range", text);
    double *base = malloc(2 * (size_t)s->n_groups * sizeof *base);
    if (!base)
        return em_error("schedule state: out of memory");
    double *lr = base + s->n_groups;
    int rc = EM_OK;
    if (!state_value(text, "base", value, sizeof value) || parse_doubles(value, base, s->n_groups) != EM_OK ||
        !state_value(text, "lr", value, sizeof value) || parse_doubles(value, lr, s->n_groups) != EM_OK)
        rc = em_error("schedule state: the rates do not list the optimizer's %d parameter groups", s->n_groups);
    if (rc == EM_OK) {
        s->ticks = ticks;
        s->bad_ticks = (int)bad;
        s->cooldown_left = (int)cooldown;
        s->best = best;
        memcpy(s->base, base, (size_t)s->n_groups * sizeof *base);
        memcpy(s->lr, lr, (size_t)s->n_groups * sizeof *lr);
        apply(s);
    }
    free(base);
    return rc;
}
