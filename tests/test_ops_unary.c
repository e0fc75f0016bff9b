/* neg, exp, log, sqrt, pow: PyTorch parity (forward and backward, also through a
 * transposed view), numeric gradient checks, special values, no-grad mode. */
#include <string.h>

#include "testlib.h"

typedef struct unary_case {
    const char *fixture; /* case name in ops_unary.safetensors */
    em_tensor *(*fn)(em_tensor *);
    float exponent;      /* for em_pow (fn NULL) */
} unary_case;

static const unary_case cases[] = {
    {"neg", em_neg, 0}, {"exp", em_exp, 0}, {"log", em_log, 0}, {"sqrt", em_sqrt, 0},
    {"pow2", NULL, 2.0f}, {"pow3", NULL, 3.0f}, {"pow0", NULL, 0.0f}, {"pow1", NULL, 1.0f},
    {"pow_half", NULL, 0.5f}, {"pow_m1", NULL, -1.0f}, {"pow_1p7", NULL, 1.7f},
    {"pow_m2p5", NULL, -2.5f}, {"log_t", em_log, 0}, {"exp_t", em_exp, 0},
    {"pow_1p7_t", NULL, 1.7f},
};

static em_tensor *apply(const unary_case *c, em_tensor *x)
{
    return c->fn ? c->fn(x) : em_pow(x, c->exponent);
}

static bool is_transposed_case(const char *name)
{
    size_t n = strlen(name);
    return n > 2 && strcmp(name + n - 2, "_t") == 0;
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("ops_unary");
    char key[128], what[160];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const unary_case *c = &cases[k];
        snprintf(key, sizeof key, "%s.in0", c->fixture);
        em_tensor *x = test_fixture_input(f, key);
        em_tensor *arg = is_transposed_case(c->fixture) ? em_transpose(x, 0, 1) : x;
        if (arg != x)
            CHECK(!em_is_contiguous(arg));
        em_tensor *out = apply(c, arg);
        snprintf(key, sizeof key, "%s.out", c->fixture);
        em_tensor *want = test_fixture_tensor(f, key);
        CHECK_MSG(out && em_same_shape(out, want), "%s: shape %s vs %s", c->fixture,
                  em_shape_str(out), em_shape_str(want));
        snprintf(what, sizeof what, "%s forward", c->fixture);
        test_tensor_close(what, out, want->data, 1e-6, 1e-5);
        snprintf(key, sizeof key, "%s.w", c->fixture);
        CHECK(em_backward_with(out, test_fixture_tensor(f, key)->data) == EM_OK);
        snprintf(key, sizeof key, "%s.grad0", c->fixture);
        snprintf(what, sizeof what, "%s backward", c->fixture);
        test_grad_close(what, x->grad, test_fixture_tensor(f, key), 1e-5, 1e-4);
        em_step_end();
    }
    em_st_close(f);
}

static const unary_case *current;

static em_tensor *apply_current(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    return apply(current, in[0]);
}

static em_tensor *apply_current_transposed(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    return apply(current, em_transpose(in[0], 0, 1));
}

/* Values in [0.3, 2.3) for the ops defined on positive inputs only. */
static void make_positive(em_tensor *t)
{
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = 0.3f + fmodf(fabsf(t->data[i]), 2.0f);
}

static void test_gradients(void)
{
    static const unary_case grad_cases[] = {
        {"neg", em_neg, 0}, {"exp", em_exp, 0}, {"log", em_log, 0}, {"sqrt", em_sqrt, 0},
        {"pow 2", NULL, 2.0f}, {"pow 3", NULL, 3.0f}, {"pow 0", NULL, 0.0f},
        {"pow 0.5", NULL, 0.5f}, {"pow -1", NULL, -1.0f}, {"pow 1.7", NULL, 1.7f},
        {"pow -2.5", NULL, -2.5f},
    };
    em_rng rng;
    em_rng_seed(&rng, 11);
    for (size_t k = 0; k < sizeof grad_cases / sizeof grad_cases[0]; k++) {
        current = &grad_cases[k];
        bool positive = current->fn == em_log || current->fn == em_sqrt ||
                        (!current->fn && current->exponent != floorf(current->exponent)) ||
                        (!current->fn && current->exponent < 0);
        /* x³'s central difference is off by eps² exactly: a smaller step for it */
        double eps = !current->fn && current->exponent == 3.0f ? 2e-3 : 1e-2;
        char what[96];
        em_tensor *x = test_randn(&rng, 3, (int64_t[]){2, 3, 4}, 1.0f);
        if (positive)
            make_positive(x);
        snprintf(what, sizeof what, "%s", current->fixture);
        test_gradcheck(what, apply_current, NULL, &x, 1, eps, 1e-2);
        em_tensor *xt = test_randn(&rng, 2, (int64_t[]){4, 5}, 1.0f);
        if (positive)
            make_positive(xt);
        snprintf(what, sizeof what, "%s transposed view", current->fixture);
        test_gradcheck(what, apply_current_transposed, NULL, &xt, 1, eps, 1e-2);
        em_step_end();
    }
}

static void test_special_values(void)
{
    em_tensor *x = em_tensor_from(NULL, 1, (int64_t[]){6},
                                  (float[]){0.0f, -1.0f, INFINITY, -INFINITY, 100.0f, 1.0f});
    em_tensor *l = em_log(x), *e = em_exp(x), *s = em_sqrt(x);
    CHECK(isinf(l->data[0]) && l->data[0] < 0);
    CHECK(isnan(l->data[1]));
    CHECK(isinf(l->data[2]) && l->data[2] > 0);
    CHECK(l->data[5] == 0.0f);
    CHECK(e->data[0] == 1.0f);
    CHECK_NEAR(e->data[1], 0.36787944117144233, 1e-7);
    CHECK(isinf(e->data[2]) && e->data[3] == 0.0f);
    CHECK(isinf(e->data[4])); /* e^100 overflows float */
    CHECK(s->data[0] == 0.0f && isnan(s->data[1]) && isinf(s->data[2]));
    em_tensor *p0 = em_pow(x, 0.0f);
    for (int i = 0; i < 6; i++)
        CHECK(p0->data[i] == 1.0f);
    em_tensor *p2 = em_pow(x, 2.0f);
    CHECK(p2->data[1] == 1.0f && p2->data[4] == 10000.0f);
    CHECK(isnan(em_pow(x, 0.5f)->data[1]));
    /* exp over its whole range against libm (the vectorised kernel's accuracy) */
    int64_t n = 20001;
    em_tensor *r = em_tensor_empty(NULL, 1, &n);
    for (int64_t i = 0; i < n; i++)
        r->data[i] = -100.0f + 188.0f * (float)i / (float)(n - 1);
    em_tensor *er = em_exp(r);
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double want = exp((double)r->data[i]);
        worst = fmax(worst, fabs(er->data[i] - want) / fmax(want, 1e-38));
    }
    CHECK_MSG(worst < 4e-7, "exp relative error %g", worst);
    em_step_end();
}

static void test_no_grad_and_null(void)
{
    em_rng rng;
    em_rng_seed(&rng, 3);
    em_tensor *x = test_randn(&rng, 2, (int64_t[]){3, 3}, 1.0f);
    bool was = em_set_grad_enabled(false);
    em_tensor *y = em_pow(em_exp(em_neg(em_transpose(x, 0, 1))), 1.7f);
    CHECK(y && !y->requires_grad && em_tape_length() == 0);
    em_set_grad_enabled(was);
    y = em_log(em_exp(x));
    CHECK(y && y->requires_grad && em_tape_length() == 2);
    CHECK(em_neg(NULL) == NULL && em_exp(NULL) == NULL && em_log(NULL) == NULL &&
          em_sqrt(NULL) == NULL && em_pow(NULL, 2.0f) == NULL);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_gradients();
    test_special_values();
    test_no_grad_and_null();
    return test_finish();
}
