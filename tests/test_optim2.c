/* Adagrad, RMSProp, AdamW, parameter groups, gradient clipping and learning-rate
 * schedules against PyTorch (tests/fixtures/gen_optim2.py): the parameters after every
 * one of 6 to 12 steps, the norms clip_grad_norm_ returned and every group's learning
 * rate after every scheduler step must agree. Then the options' error messages, the
 * group syntax and the thread-independence of the gradient norm. */
#include <stdlib.h>
#include <string.h>

#include "optim/optim_internal.h"
#include "testlib.h"

#define N_PARAMS 3
#define MAX_GROUPS 4

static const char *const configs[] = {
    "adagrad_plain", "adagrad_lr_decay", "adagrad_weight_decay", "adagrad_initial_accumulator",
    "rmsprop_plain", "rmsprop_alpha_eps", "rmsprop_weight_decay", "rmsprop_momentum", "rmsprop_centered",
    "rmsprop_centered_momentum", "adamw_plain", "adamw_weight_decay", "adamw_amsgrad", "sgd_groups",
    "adamw_groups", "sgd_clip_norm", "sgd_clip_norm_inf", "adam_clip_value", "sched_step",
    "sched_exponential", "sched_cosine_warmup", "sched_cosine", "sched_plateau", "sched_plateau_abs_max",
};

/* A fixture tensor copied out of the step arena (which every step resets); free() it. */
static float *load(em_st_file *f, const char *config, const char *what, int64_t *numel)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", config, what);
    em_tensor *t = em_st_load(f, name, NULL);
    if (!t) {
        fprintf(stderr, "fixture tensor %s: %s\n", name, ember_last_error());
        test_checks++;
        test_failures++;
        return NULL;
    }
    float *copy = malloc((size_t)t->numel * sizeof(float));
    memcpy(copy, t->data, (size_t)t->numel * sizeof(float));
    if (numel)
        *numel = t->numel;
    em_step_end();
    return copy;
}

static em_optim_opts options_from(const float *v)
{
    em_optim_opts o = em_optim_defaults((em_optim_kind)(int)v[0]);
    o.lr = v[1];
    o.momentum = v[2];
    o.dampening = v[3];
    o.nesterov = v[4] != 0.0f;
    o.weight_decay = v[5];
    o.beta1 = v[6];
    o.beta2 = v[7];
    o.eps = v[8];
    o.amsgrad = v[9] != 0.0f;
    o.lr_decay = v[10];
    o.initial_accumulator_value = v[11];
    o.alpha = v[12];
    o.centered = v[13] != 0.0f;
    return o;
}

static em_schedule_opts schedule_from(const float *v)
{
    static const em_schedule_kind kinds[] = {EM_SCHEDULE_CONSTANT, EM_SCHEDULE_STEP, EM_SCHEDULE_EXPONENTIAL,
                                             EM_SCHEDULE_COSINE, EM_SCHEDULE_PLATEAU};
    em_schedule_opts s = em_schedule_defaults(kinds[(int)v[0]]);
    s.step_size = (int64_t)v[1];
    s.gamma = v[2];
    s.warmup = (int64_t)v[3];
    s.warmup_start = v[4];
    s.total = (int64_t)v[5];
    s.min_lr = v[6];
    s.factor = v[7];
    s.patience = (int)v[8];
    s.threshold = v[9];
    s.threshold_abs = v[10] != 0.0f;
    s.cooldown = (int)v[11];
    s.eps = v[12];
    s.maximize = v[13] != 0.0f;
    return s;
}

static void check_config(em_st_file *f, const char *config)
{
    int64_t n_optim = 0, n_groups_x2 = 0, steps = 0;
    float *ov = load(f, config, "optim", &n_optim);
    float *gv = load(f, config, "groups", &n_groups_x2);
    float *member = load(f, config, "member", NULL);
    float *clip = load(f, config, "clip", NULL);
    float *sv = load(f, config, "sched", NULL);
    float *metric = load(f, config, "metric", &steps);
    float *norms = load(f, config, "norm", NULL);
    int64_t n_lr = 0;
    float *lrs = load(f, config, "lr", &n_lr);
    if (!ov || !gv || !member || !clip || !sv || !metric || !norms || !lrs || n_optim != 14)
        goto done;
    int n_groups = (int)(n_groups_x2 / 2);
    CHECK(n_lr == steps * n_groups && n_groups <= MAX_GROUPS);

    em_optim_opts o = options_from(ov);
    /* PyTorch's groups after the default one become ember groups 1..n, matched by name. */
    char patterns[MAX_GROUPS][64];
    em_param_group groups[MAX_GROUPS];
    memset(groups, 0, sizeof groups);
    for (int g = 1; g < n_groups; g++) {
        patterns[g][0] = '\0';
        for (int k = 0; k < N_PARAMS; k++)
            if ((int)member[k] == g)
                snprintf(patterns[g] + strlen(patterns[g]), sizeof patterns[g] - strlen(patterns[g]), "%sp%d",
                         patterns[g][0] ? "|" : "", k);
        groups[g - 1] = (em_param_group){.pattern = patterns[g], .set_lr = true, .lr = gv[2 * g],
                                         .set_weight_decay = true, .weight_decay = gv[2 * g + 1]};
    }
    em_arena *arena = em_arena_create(0);
    em_tensor *params[N_PARAMS];
    static const char *const names[N_PARAMS] = {"p0", "p1", "p2"};
    for (int k = 0; k < N_PARAMS; k++) {
        char what[128];
        snprintf(what, sizeof what, "%s.p%d.init", config, k);
        em_tensor *init = em_st_load(f, what, NULL);
        CHECK_MSG(init != NULL, "%s: %s", what, ember_last_error());
        if (!init) {
            em_arena_destroy(arena);
            goto done;
        }
        params[k] = em_param_new(arena, init->ndim, init->shape, names[k]);
        em_copy_from(params[k], init->data);
        em_step_end();
    }
    em_optim *opt = em_optim_new_tensors_grouped(params, N_PARAMS, (em_optim_kind)(int)ov[0], &o, groups,
                                                 n_groups - 1);
    CHECK_MSG(opt != NULL, "%s: %s", config, ember_last_error());
    if (!opt) {
        em_arena_destroy(arena);
        goto done;
    }
    CHECK(em_optim_group_count(opt) == n_groups);
    for (int k = 0; k < N_PARAMS; k++)
        CHECK(em_optim_group_of(opt, params[k]->name) == (int)member[k]);
    em_schedule *sched = NULL;
    if ((int)sv[0] != 0) {
        em_schedule_opts so = schedule_from(sv);
        sched = em_schedule_new(opt, &so);
        CHECK_MSG(sched != NULL, "%s: %s", config, ember_last_error());
    }
    size_t allocs = em_arena_system_allocs(opt->arena);
    for (int64_t step = 0; step < steps; step++) {
        float *want[N_PARAMS];
        for (int k = 0; k < N_PARAMS; k++) {
            char what[32];
            snprintf(what, sizeof what, "p%d.grad%lld", k, (long long)step);
            float *g = load(f, config, what, NULL);
            if (g)
                memcpy(params[k]->grad, g, (size_t)params[k]->numel * sizeof(float));
            free(g);
            snprintf(what, sizeof what, "p%d.after%lld", k, (long long)step);
            want[k] = load(f, config, what, NULL);
        }
        if ((int)clip[0] == 1) {
            double norm = em_optim_clip_grad_norm(opt, clip[1], clip[2] > 1e30f ? INFINITY : (double)clip[2]);
            CHECK_MSG(fabs(norm - norms[step]) <= 1e-6 * fabs(norms[step]) + 1e-7, "%s step %lld: norm %.9g vs %.9g",
                      config, (long long)step + 1, norm, (double)norms[step]);
        } else if ((int)clip[0] == 2) {
            em_optim_clip_grad_value(opt, clip[1]);
        }
        em_optim_step(opt);
        if (sched)
            em_schedule_step_metric(sched, metric[step]);
        for (int k = 0; k < N_PARAMS; k++) {
            char what[96];
            snprintf(what, sizeof what, "%s: p%d after step %lld", config, k, (long long)step + 1);
            CHECK(want[k] != NULL);
            if (want[k])
                test_tensor_close(what, params[k], want[k], 1e-6, 1e-5);
            free(want[k]);
        }
        for (int g = 0; g < n_groups; g++) {
            double expected = lrs[step * n_groups + g];
            double got = sched ? em_schedule_lr(sched, g) : (double)em_optim_group_opts(opt, g)->lr;
            CHECK_MSG(fabs(got - expected) <= 1e-6 * expected + 1e-12, "%s: group %d lr after step %lld: %.9g vs %.9g",
                      config, g, (long long)step + 1, got, expected);
            CHECK(em_optim_group_opts(opt, g)->lr == (float)got);
        }
    }
    CHECK(em_optim_steps(opt) == steps);
    CHECK(em_arena_system_allocs(opt->arena) == allocs);
    em_schedule_free(sched);
    em_optim_free(opt);
    em_arena_destroy(arena);
done:
    free(ov);
    free(gv);
    free(member);
    free(clip);
    free(sv);
    free(metric);
    free(norms);
    free(lrs);
}

static bool try_options(em_optim_kind kind, void (*change)(em_optim_opts *))
{
    em_arena *arena = em_arena_create(0);
    em_tensor *p = em_param_new(arena, 1, (int64_t[]){4}, "w");
    em_optim_opts o = em_optim_defaults(kind);
    change(&o);
    em_clear_error();
    em_optim *opt = em_optim_new_tensors(&p, 1, kind, &o);
    bool created = opt != NULL;
    em_optim_free(opt);
    em_arena_destroy(arena);
    return created;
}

static void negative_lr_decay(em_optim_opts *o) { o->lr_decay = -0.1f; }
static void negative_accumulator(em_optim_opts *o) { o->initial_accumulator_value = -1.0f; }
static void negative_alpha(em_optim_opts *o) { o->alpha = -0.5f; }
static void negative_momentum(em_optim_opts *o) { o->momentum = -0.5f; }
static void beta2_one(em_optim_opts *o) { o->beta2 = 1.0f; }
static void nan_lr(em_optim_opts *o) { o->lr = NAN; }

static void test_invalid_options(void)
{
    CHECK(!try_options(EM_OPTIM_ADAGRAD, negative_lr_decay));
    CHECK_ERROR_CONTAINS("adagrad: invalid lr_decay -0.1");
    CHECK(!try_options(EM_OPTIM_ADAGRAD, negative_accumulator));
    CHECK_ERROR_CONTAINS("initial_accumulator_value -1");
    CHECK(!try_options(EM_OPTIM_RMSPROP, negative_alpha));
    CHECK_ERROR_CONTAINS("rmsprop: invalid alpha -0.5");
    CHECK(!try_options(EM_OPTIM_RMSPROP, negative_momentum));
    CHECK_ERROR_CONTAINS("momentum -0.5");
    CHECK(!try_options(EM_OPTIM_ADAMW, beta2_one));
    CHECK_ERROR_CONTAINS("adamw: invalid beta2 1");
    CHECK(!try_options(EM_OPTIM_RMSPROP, nan_lr));
    CHECK_ERROR_CONTAINS("learning rate");
}

static void test_names_and_defaults(void)
{
    em_optim_kind k = EM_OPTIM_KIND_COUNT;
    CHECK(em_optim_parse("adamw", &k) == EM_OK && k == EM_OPTIM_ADAMW);
    CHECK(em_optim_parse("rmsprop", &k) == EM_OK && k == EM_OPTIM_RMSPROP);
    CHECK(em_optim_parse("adagrad", &k) == EM_OK && k == EM_OPTIM_ADAGRAD);
    CHECK(em_optim_parse("lion", &k) == EM_ERR);
    CHECK_ERROR_CONTAINS("valid: sgd, adam, adagrad, rmsprop, adamw");
    em_optim_opts a = em_optim_defaults(EM_OPTIM_ADAGRAD), r = em_optim_defaults(EM_OPTIM_RMSPROP);
    em_optim_opts w = em_optim_defaults(EM_OPTIM_ADAMW);
    CHECK(a.lr == 0.01f && a.eps == 1e-10f && a.lr_decay == 0.0f && a.initial_accumulator_value == 0.0f);
    CHECK(r.lr == 0.01f && r.alpha == 0.99f && r.eps == 1e-8f && r.momentum == 0.0f && !r.centered);
    CHECK(w.lr == 1e-3f && w.weight_decay == 0.01f && w.beta1 == 0.9f && w.beta2 == 0.999f && !w.amsgrad);

    em_schedule_kind s = EM_SCHEDULE_KIND_COUNT;
    CHECK(em_schedule_parse("cosine", &s) == EM_OK && s == EM_SCHEDULE_COSINE);
    CHECK(em_schedule_parse("linear", &s) == EM_ERR);
    CHECK_ERROR_CONTAINS("valid: constant, step, exponential, cosine, plateau");
    em_schedule_opts p = em_schedule_defaults(EM_SCHEDULE_PLATEAU);
    CHECK(p.factor == 0.1 && p.patience == 10 && p.threshold == 1e-4 && !p.per_step);
    CHECK(em_schedule_defaults(EM_SCHEDULE_COSINE).per_step);
}

/* Groups by name pattern and by dimension; a pattern matching nothing is an error that
 * lists the names; the text form and its errors. */
static void test_groups(void)
{
    int64_t in = 3;
    em_model *m = em_model_new(1, &in, 5);
    CHECK(m && em_model_add_linear(m, 4, true) == EM_OK && em_model_add_activation(m, EM_ACT_RELU, 0) == EM_OK &&
          em_model_add_linear(m, 2, true) == EM_OK);
    if (!m)
        return;
    em_param_group no_decay = {.max_ndim = 1, .set_weight_decay = true, .weight_decay = 0.0f};
    em_optim_opts o = em_optim_defaults(EM_OPTIM_ADAMW);
    o.weight_decay = 0.1f;
    em_optim *opt = em_optim_new_grouped(m, EM_OPTIM_ADAMW, &o, &no_decay, 1);
    CHECK(opt != NULL);
    if (opt) {
        CHECK(em_optim_group_count(opt) == 2);
        CHECK(em_optim_group_size(opt, 0) == 2 && em_optim_group_size(opt, 1) == 2);
        CHECK(em_optim_group_of(opt, "0.weight") == 0 && em_optim_group_of(opt, "2.bias") == 1);
        CHECK(em_optim_group_opts(opt, 1)->weight_decay == 0.0f && em_optim_group_opts(opt, 0)->weight_decay == 0.1f);
        CHECK(em_optim_group_opts(opt, 1)->lr == o.lr);
        em_optim_set_lr(opt, 0.5f);
        CHECK(em_optim_group_opts(opt, 1)->lr == 0.5f && em_optim_lr(opt) == 0.5f);
        CHECK(em_optim_group_opts(opt, 2) == NULL && em_optim_group_of(opt, "9.weight") == -1);
    }
    em_optim_free(opt);

    char spec[] = "*.bias:wd=0;2.*:lr=0.5,weight_decay=0.2";
    em_param_group g[4];
    CHECK(em_param_groups_parse(spec, g, 4) == 2);
    CHECK(strcmp(g[0].pattern, "*.bias") == 0 && g[0].set_weight_decay && g[0].weight_decay == 0.0f && !g[0].set_lr);
    CHECK(strcmp(g[1].pattern, "2.*") == 0 && g[1].set_lr && g[1].lr == 0.5f && g[1].weight_decay == 0.2f);
    opt = em_optim_new_grouped(m, EM_OPTIM_SGD, NULL, g, 2);
    CHECK(opt != NULL);
    if (opt) /* 2.bias went to the first group that matched it */
        CHECK(em_optim_group_of(opt, "2.bias") == 1 && em_optim_group_of(opt, "2.weight") == 2 &&
              em_optim_group_of(opt, "0.weight") == 0);
    em_optim_free(opt);

    em_param_group typo = {.pattern = "*.bais", .set_lr = true, .lr = 0.1f};
    CHECK(em_optim_new_grouped(m, EM_OPTIM_SGD, NULL, &typo, 1) == NULL);
    CHECK_ERROR_CONTAINS("pattern \"*.bais\" matches no trainable tensor");
    CHECK_ERROR_CONTAINS("0.weight, 0.bias, 2.weight, 2.bias");
    em_param_group bad_lr = {.pattern = "*.bias", .set_lr = true, .lr = -1.0f};
    CHECK(em_optim_new_grouped(m, EM_OPTIM_SGD, NULL, &bad_lr, 1) == NULL);
    CHECK_ERROR_CONTAINS("parameter group 1 (*.bias): invalid learning rate -1");

    const char *bad[] = {"*.bias", "*.bias:", "*.bias:lr", "*.bias:lr=x", "*.bias:momentum=1", ":lr=1",
                         "*.bias:wd=-1"};
    const char *why[] = {"expected PATTERN:lr=X,wd=Y", "nothing after ':'", "expected KEY=VALUE",
                         "lr must be a finite number", "unknown key \"momentum\"", "expected PATTERN",
                         "wd must be >= 0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "%s", bad[i]);
        em_clear_error();
        CHECK_MSG(em_param_groups_parse(text, g, 4) == -1, "%s", bad[i]);
        CHECK_ERROR_CONTAINS(why[i]);
    }
    char many[] = "a:lr=1;b:lr=1;c:lr=1";
    CHECK(em_param_groups_parse(many, g, 2) == -1);
    CHECK_ERROR_CONTAINS("at most 2 parameter groups");
    em_model_free(m);
}

static void test_schedule_errors(void)
{
    em_arena *arena = em_arena_create(0);
    em_tensor *p = em_param_new(arena, 1, (int64_t[]){4}, "w");
    em_optim *opt = em_optim_new_tensors(&p, 1, EM_OPTIM_SGD, NULL);
    em_schedule_opts c = em_schedule_defaults(EM_SCHEDULE_COSINE);
    c.total = 5;
    c.warmup = 5;
    CHECK(em_schedule_new(opt, &c) == NULL);
    CHECK_ERROR_CONTAINS("total length (5 ticks) must exceed the warm-up (5)");
    em_schedule_opts s = em_schedule_defaults(EM_SCHEDULE_STEP);
    s.step_size = 0;
    CHECK(em_schedule_new(opt, &s) == NULL);
    CHECK_ERROR_CONTAINS("step_size must be at least 1");
    em_schedule_opts pl = em_schedule_defaults(EM_SCHEDULE_PLATEAU);
    pl.factor = 1.0;
    CHECK(em_schedule_new(opt, &pl) == NULL);
    CHECK_ERROR_CONTAINS("factor must be in [0, 1)");
    /* A constant schedule leaves the rate; a plateau without metrics never improves. */
    em_schedule_opts k = em_schedule_defaults(EM_SCHEDULE_CONSTANT);
    em_schedule *sk = em_schedule_new(opt, &k);
    for (int i = 0; i < 5; i++)
        em_schedule_step(sk);
    CHECK(em_optim_lr(opt) == 0.01f && em_schedule_ticks(sk) == 5);
    em_schedule_free(sk);
    pl = em_schedule_defaults(EM_SCHEDULE_PLATEAU);
    pl.patience = 2;
    em_schedule *sp = em_schedule_new(opt, &pl);
    for (int i = 0; i < 3; i++)
        em_schedule_step(sp);
    CHECK_NEAR(em_optim_lr(opt), 0.001, 1e-9);
    em_schedule_free(sp);
    em_optim_free(opt);
    em_arena_destroy(arena);
}

/* Rebinding a schedule onto a rebuilt optimizer: a group continued from the old one
 * keeps its base and rate, a new group gets its own rate as base times the schedule's
 * factor so far, whatever the group indices. */
static void test_schedule_rebind_groups(void)
{
    em_model *m = em_model_parse("input 4\nlinear 3\n", "rebind", 1);
    em_optim_opts sgd = em_optim_defaults(EM_OPTIM_SGD);
    sgd.lr = 1.0f;
    em_param_group bias = {.pattern = "0.bias", .set_lr = true, .lr = 0.5f};
    em_optim *old = em_optim_new_grouped(m, EM_OPTIM_SGD, &sgd, &bias, 1);
    em_schedule_opts e = em_schedule_defaults(EM_SCHEDULE_EXPONENTIAL);
    e.gamma = 0.5;
    em_schedule *s = em_schedule_new(old, &e);
    em_schedule_step(s);
    em_schedule_step(s); /* x0.25 */
    /* The rebuilt optimizer: the bias in a new group of rate 0.3 (group 1), and the
     * weight in group 2, which continues the old group 1 (base 0.5). */
    em_param_group rebuilt[2] = {{.pattern = "0.bias", .set_lr = true, .lr = 0.3f},
                                 {.pattern = "0.weight", .set_lr = true, .lr = 0.5f}};
    em_optim *opt = em_optim_new_grouped(m, EM_OPTIM_SGD, &sgd, rebuilt, 2);
    CHECK(s && old && opt && em_optim_group_count(opt) == 3);
    int bad[3] = {0, -1, 2};
    CHECK(em_schedule_rebind_groups(s, opt, bad) == EM_ERR);
    CHECK_ERROR_CONTAINS("group 2 of the new optimizer continues group 2, but the schedule has 2");
    int from[3] = {0, -1, 1};
    CHECK(em_schedule_rebind_groups(s, opt, from) == EM_OK);
    CHECK_NEAR(em_schedule_lr(s, 0), 0.25, 1e-12);
    CHECK_NEAR(em_schedule_lr(s, 1), (double)0.3f * 0.25, 1e-12);
    CHECK_NEAR(em_schedule_lr(s, 2), (double)0.5f * 0.25, 1e-12);
    CHECK(em_optim_group_opts(opt, 1)->lr == (float)((double)0.3f * 0.25));
    CHECK(em_optim_group_opts(opt, 2)->lr == 0.125f);
    em_schedule_step(s); /* every group follows its own base */
    CHECK_NEAR(em_schedule_lr(s, 1), (double)0.3f * 0.125, 1e-12);
    CHECK_NEAR(em_schedule_lr(s, 2), (double)0.5f * 0.125, 1e-12);
    em_schedule_free(s);

    /* A plateau schedule: the default group's reductions, down to min_lr. */
    em_optim_free(old);
    old = em_optim_new_grouped(m, EM_OPTIM_SGD, &sgd, &bias, 1);
    em_schedule_opts pl = em_schedule_defaults(EM_SCHEDULE_PLATEAU);
    pl.patience = 0;
    pl.factor = 0.5;
    pl.min_lr = 0.1;
    s = em_schedule_new(old, &pl);
    em_schedule_step_metric(s, 1.0);
    em_schedule_step_metric(s, 2.0); /* worse: halved */
    CHECK_NEAR(em_schedule_lr(s, 0), 0.5, 1e-12);
    em_param_group two[2] = {{.pattern = "0.bias", .set_lr = true, .lr = 0.3f},
                             {.pattern = "0.weight", .set_lr = true, .lr = 0.15f}};
    em_optim_free(opt);
    opt = em_optim_new_grouped(m, EM_OPTIM_SGD, &sgd, two, 2);
    int fresh[3] = {0, -1, -1};
    CHECK(s && opt && em_schedule_rebind_groups(s, opt, fresh) == EM_OK);
    CHECK_NEAR(em_schedule_lr(s, 1), (double)0.3f * 0.5, 1e-12);
    CHECK_NEAR(em_schedule_lr(s, 2), 0.1, 1e-12); /* 0.075, raised to min_lr */
    em_schedule_free(s);
    em_optim_free(old);
    em_optim_free(opt);
    em_model_free(m);
}

/* The norm is the same bits on one thread and on several; clipping by value keeps NaN. */
static void test_norm_threads_and_nan(void)
{
    const int64_t n = 5 * EM_OPTIM_PARALLEL_MIN + 3;
    em_arena *arena = em_arena_create(0);
    em_tensor *big = em_param_new(arena, 1, &n, "big");
    for (int64_t i = 0; i < n; i++)
        big->grad[i] = (float)((i * 7919) % 2003) / 1000.0f - 1.0f;
    em_optim *opt = em_optim_new_tensors(&big, 1, EM_OPTIM_SGD, NULL);
    int threads = em_num_threads();
    em_set_num_threads(1);
    double one = em_optim_grad_norm(opt, 2.0), one_inf = em_optim_grad_norm(opt, INFINITY);
    em_set_num_threads(2);
    double two = em_optim_grad_norm(opt, 2.0);
    em_set_num_threads(threads);
    CHECK(one == two);
    double sum = 0.0, top = 0.0;
    for (int64_t i = 0; i < n; i++) {
        sum += (double)big->grad[i] * big->grad[i];
        top = fmax(top, fabs(big->grad[i]));
    }
    CHECK_NEAR(one, sqrt(sum), 1e-9 * sqrt(sum));
    CHECK(one_inf == top);
    CHECK_NEAR(em_optim_grad_norm(opt, 1.0), em_optim_grad_norm(opt, 1.0), 0);
    big->grad[5] = NAN;
    em_optim_clip_grad_value(opt, 0.25f);
    CHECK(isnan(big->grad[5]) && big->grad[0] == -0.25f);
    CHECK(isnan(em_optim_grad_norm(opt, 2.0)));
    /* A non-finite norm leaves the gradients as they are. */
    float before = big->grad[7];
    CHECK(isnan(em_optim_clip_grad_norm(opt, 1.0, 2.0)) && big->grad[7] == before);
    em_optim_free(opt);
    em_arena_destroy(arena);
}

int main(void)
{
    em_st_file *f = test_fixture("optim2");
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++)
        check_config(f, configs[c]);
    em_st_close(f);
    test_invalid_options();
    test_names_and_defaults();
    test_groups();
    test_schedule_errors();
    test_schedule_rebind_groups();
    test_norm_threads_and_nan();
    return test_finish();
}
