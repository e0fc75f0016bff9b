/* Optimizers against PyTorch: six steps of SGD and Adam on the same fixed gradients
 * (tests/fixtures/gen_optim.py) must give the same parameters after every step. */
#include <string.h>

#include "optim/optim_internal.h"
#include "testlib.h"

#define N_PARAMS 3
#define STEPS 6

static const char *const configs[] = {
    "sgd_plain",  "sgd_momentum",      "sgd_dampening", "sgd_nesterov", "sgd_weight_decay",
    "sgd_momentum_weight_decay", "adam_plain", "adam_weight_decay", "adam_amsgrad",
};

static em_tensor *fixture_tensor(em_st_file *f, const char *config, const char *what)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", config, what);
    em_tensor *t = em_st_load(f, name, NULL);
    if (!t)
        fprintf(stderr, "fixture tensor %s: %s\n", name, ember_last_error());
    return t;
}

static void check_parity(em_st_file *f, const char *config, bool fused_step)
{
    em_tensor *h = fixture_tensor(f, config, "hparams");
    CHECK(h && h->numel == 9);
    if (!h)
        return;
    em_optim_kind kind = strncmp(config, "adam", 4) == 0 ? EM_OPTIM_ADAM : EM_OPTIM_SGD;
    em_optim_opts o = em_optim_defaults(kind);
    o.lr = h->data[0];
    o.momentum = h->data[1];
    o.dampening = h->data[2];
    o.nesterov = h->data[3] != 0.0f;
    o.weight_decay = h->data[4];
    o.beta1 = h->data[5];
    o.beta2 = h->data[6];
    o.eps = h->data[7];
    o.amsgrad = h->data[8] != 0.0f;

    em_arena *arena = em_arena_create(0);
    em_tensor *params[N_PARAMS];
    for (int k = 0; k < N_PARAMS; k++) {
        char what[32];
        snprintf(what, sizeof what, "p%d.init", k);
        em_tensor *init = fixture_tensor(f, config, what);
        CHECK(init != NULL);
        if (!init)
            return;
        params[k] = em_param_new(arena, init->ndim, init->shape, what);
        em_copy_from(params[k], init->data);
    }
    em_optim *opt = em_optim_new_tensors(params, N_PARAMS, kind, &o);
    CHECK_MSG(opt != NULL, "%s: %s", config, ember_last_error());
    if (!opt) {
        em_arena_destroy(arena);
        return;
    }
    size_t allocs_after_new = em_arena_system_allocs(opt->arena);
    for (int step = 0; step < STEPS; step++) {
        for (int k = 0; k < N_PARAMS; k++) {
            char what[32];
            snprintf(what, sizeof what, "p%d.grad%d", k, step);
            em_tensor *g = fixture_tensor(f, config, what);
            CHECK(g != NULL);
            if (g)
                memcpy(params[k]->grad, g->data, (size_t)g->numel * sizeof(float));
        }
        /* The fixture tensors above live in the step arena, which em_optim_step resets;
         * read the expected values before stepping. */
        float *want[N_PARAMS];
        for (int k = 0; k < N_PARAMS; k++) {
            char what[32];
            snprintf(what, sizeof what, "p%d.after%d", k, step);
            em_tensor *w = fixture_tensor(f, config, what);
            want[k] = w ? em_arena_alloc(arena, (size_t)w->numel * sizeof(float)) : NULL;
            if (w)
                memcpy(want[k], w->data, (size_t)w->numel * sizeof(float));
        }
        if (fused_step)
            em_optim_step(opt);
        else
            em_optim_update(opt);
        for (int k = 0; k < N_PARAMS; k++) {
            char what[96];
            snprintf(what, sizeof what, "%s (%s) p%d after step %d", config,
                     fused_step ? "step" : "update", k, step + 1);
            CHECK(want[k] != NULL);
            if (want[k])
                test_tensor_close(what, params[k], want[k], 1e-7, 1e-6);
            bool grad_zero = true;
            for (int64_t i = 0; i < params[k]->numel; i++)
                grad_zero &= params[k]->grad[i] == 0.0f;
            /* em_optim_step zeroes the gradients, em_optim_update leaves them. */
            CHECK_MSG(grad_zero == fused_step, "%s: gradients %s after the step", what,
                      grad_zero ? "zeroed" : "kept");
        }
        if (!fused_step)
            em_step_end();
    }
    CHECK(em_optim_steps(opt) == STEPS);
    CHECK(em_arena_system_allocs(opt->arena) == allocs_after_new);
    em_optim_free(opt);
    em_arena_destroy(arena);
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

static void negative_lr(em_optim_opts *o) { o->lr = -0.1f; }
static void nan_lr(em_optim_opts *o) { o->lr = NAN; }
static void nesterov_alone(em_optim_opts *o) { o->nesterov = true; }
static void nesterov_dampened(em_optim_opts *o)
{
    o->nesterov = true;
    o->momentum = 0.9f;
    o->dampening = 0.1f;
}
static void negative_momentum(em_optim_opts *o) { o->momentum = -0.5f; }
static void beta1_one(em_optim_opts *o) { o->beta1 = 1.0f; }
static void beta2_negative(em_optim_opts *o) { o->beta2 = -0.1f; }
static void negative_eps(em_optim_opts *o) { o->eps = -1e-8f; }
static void negative_decay(em_optim_opts *o) { o->weight_decay = -0.01f; }
static void nesterov_ok(em_optim_opts *o)
{
    o->nesterov = true;
    o->momentum = 0.9f;
}
static void unchanged(em_optim_opts *o) { (void)o; }

static void test_invalid_options(void)
{
    CHECK(try_options(EM_OPTIM_SGD, negative_lr) == false);
    CHECK_ERROR_CONTAINS("learning rate -0.1");
    CHECK(try_options(EM_OPTIM_ADAM, negative_lr) == false);
    CHECK_ERROR_CONTAINS("adam: invalid learning rate");
    CHECK(try_options(EM_OPTIM_SGD, nan_lr) == false);
    CHECK_ERROR_CONTAINS("learning rate");
    CHECK(try_options(EM_OPTIM_SGD, nesterov_alone) == false);
    CHECK_ERROR_CONTAINS("nesterov needs a momentum > 0");
    CHECK(try_options(EM_OPTIM_SGD, nesterov_dampened) == false);
    CHECK_ERROR_CONTAINS("zero dampening");
    CHECK(try_options(EM_OPTIM_SGD, negative_momentum) == false);
    CHECK_ERROR_CONTAINS("momentum -0.5");
    CHECK(try_options(EM_OPTIM_ADAM, beta1_one) == false);
    CHECK_ERROR_CONTAINS("beta1 1 (must be in [0, 1))");
    CHECK(try_options(EM_OPTIM_ADAM, beta2_negative) == false);
    CHECK_ERROR_CONTAINS("beta2 -0.1");
    CHECK(try_options(EM_OPTIM_ADAM, negative_eps) == false);
    CHECK_ERROR_CONTAINS("eps");
    CHECK(try_options(EM_OPTIM_SGD, negative_decay) == false);
    CHECK_ERROR_CONTAINS("weight_decay -0.01");
    CHECK(try_options(EM_OPTIM_SGD, nesterov_ok) == true);
    CHECK(try_options(EM_OPTIM_ADAM, unchanged) == true);
    CHECK(em_optim_new(NULL, EM_OPTIM_SGD, NULL) == NULL);
}

static void test_names_and_defaults(void)
{
    em_optim_kind k = EM_OPTIM_KIND_COUNT;
    CHECK(em_optim_parse("adam", &k) == EM_OK && k == EM_OPTIM_ADAM);
    CHECK(em_optim_parse("sgd", &k) == EM_OK && k == EM_OPTIM_SGD);
    CHECK(em_optim_parse("adamax", &k) == EM_ERR);
    CHECK_ERROR_CONTAINS("valid: sgd, adam");
    CHECK(strcmp(em_optim_name(EM_OPTIM_ADAM), "adam") == 0);
    em_optim_opts s = em_optim_defaults(EM_OPTIM_SGD), a = em_optim_defaults(EM_OPTIM_ADAM);
    CHECK(s.lr == 0.01f && s.momentum == 0.0f && !s.nesterov);
    CHECK(a.lr == 1e-3f && a.beta1 == 0.9f && a.beta2 == 0.999f && a.eps == 1e-8f && !a.amsgrad);
}

/* Large tensors take the OpenMP path; the result must equal the serial rule element by
 * element (the update is elementwise, so thread count cannot change it). */
static void test_large_tensor_matches_small(void)
{
    const int64_t n = 3 * EM_OPTIM_PARALLEL_MIN + 17;
    em_arena *arena = em_arena_create(0);
    em_tensor *big = em_param_new(arena, 1, &n, "big");
    em_tensor *small[4];
    em_rng rng;
    em_rng_seed(&rng, 7);
    em_init_normal(big, &rng, 0.0f, 1.0f);
    for (int64_t i = 0; i < n; i++)
        big->grad[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    int64_t one = 1;
    for (int j = 0; j < 4; j++) {
        int64_t at = j * (n / 4) + j;
        small[j] = em_param_new(arena, 1, &one, "s");
        small[j]->data[0] = big->data[at];
        small[j]->grad[0] = big->grad[at];
    }
    em_optim_opts o = em_optim_defaults(EM_OPTIM_ADAM);
    o.weight_decay = 0.01f;
    em_optim *ob = em_optim_new_tensors(&big, 1, EM_OPTIM_ADAM, &o);
    em_optim *os = em_optim_new_tensors(small, 4, EM_OPTIM_ADAM, &o);
    for (int s = 0; s < 3; s++) {
        em_optim_update(ob);
        em_optim_update(os);
    }
    for (int j = 0; j < 4; j++)
        CHECK(big->data[j * (n / 4) + j] == small[j]->data[0]);
    em_optim_free(ob);
    em_optim_free(os);
    em_arena_destroy(arena);
}

/* em_optim_step leaves zeros even where a gradient was NaN or infinite (a product with
 * zero would keep the NaN into the next step). */
static void test_step_zeroes_non_finite_gradients(void)
{
    for (int kind = 0; kind < EM_OPTIM_KIND_COUNT; kind++) {
        em_arena *arena = em_arena_create(0);
        int64_t n = 4;
        em_tensor *p = em_param_new(arena, 1, &n, "w");
        p->grad[0] = NAN;
        p->grad[1] = INFINITY;
        p->grad[2] = -INFINITY;
        p->grad[3] = 1.0f;
        em_optim_opts o = em_optim_defaults((em_optim_kind)kind);
        o.momentum = 0.9f;
        em_optim *opt = em_optim_new_tensors(&p, 1, (em_optim_kind)kind, &o);
        CHECK(opt != NULL);
        em_optim_step(opt);
        for (int i = 0; i < 4; i++)
            CHECK_MSG(p->grad[i] == 0.0f && !signbit(p->grad[i]), "%s: grad[%d] = %g after the step",
                      em_optim_name((em_optim_kind)kind), i, (double)p->grad[i]);
        CHECK(isnan(p->data[0]) && isfinite(p->data[3]));
        em_optim_free(opt);
        em_arena_destroy(arena);
    }
}

/* A model's frozen parameters (requires_grad off) are left alone. */
static void test_model_params(void)
{
    int64_t in = 3;
    em_model *m = em_model_new(1, &in, 5);
    CHECK(m && em_model_add_linear(m, 4, true) == EM_OK && em_model_add_linear(m, 2, true) == EM_OK);
    if (!m)
        return;
    em_tensor *frozen = em_model_find(m, "0.weight");
    em_tensor *trained = em_model_find(m, "2.weight");
    if (!trained)
        trained = em_model_find(m, "1.weight");
    CHECK(frozen && trained);
    if (!frozen || !trained) {
        em_model_free(m);
        return;
    }
    frozen->requires_grad = false;
    float before_frozen = frozen->data[0], before_trained = trained->data[0];
    for (int64_t i = 0; i < frozen->numel; i++)
        frozen->grad[i] = 1.0f;
    for (int64_t i = 0; i < trained->numel; i++)
        trained->grad[i] = 1.0f;
    em_optim_opts o = em_optim_defaults(EM_OPTIM_SGD);
    o.lr = 0.5f;
    em_optim *opt = em_optim_new(m, EM_OPTIM_SGD, &o);
    CHECK(opt != NULL);
    if (opt) {
        CHECK(opt->n_slots == 3); /* 0.bias and the second layer's weight and bias */
        em_optim_step(opt);
        CHECK(frozen->data[0] == before_frozen);
        CHECK(trained->data[0] == before_trained - 0.5f);
        CHECK(trained->grad[0] == 0.0f);
    }
    em_optim_free(opt);
    em_model_free(m);
}

int main(void)
{
    em_st_file *f = test_fixture("optim");
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        check_parity(f, configs[c], false);
        check_parity(f, configs[c], true);
    }
    em_st_close(f);
    test_invalid_options();
    test_names_and_defaults();
    test_large_tensor_matches_small();
    test_step_zeroes_non_finite_gradients();
    test_model_params();
    return test_finish();
}
