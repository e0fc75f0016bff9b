/* Activations: PyTorch parity (forward and backward, saturated tails, transposed
 * views), numeric gradient checks, the dense kernels against double-precision formulas
 * (also the parallel path and in-place use), names and parsing. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

typedef struct act_case {
    const char *fixture;
    em_activation act;
    float param;
} act_case;

static const act_case cases[] = {
    {"relu", EM_ACT_RELU, 0.0f},         {"leaky_relu", EM_ACT_LEAKY_RELU, 0.01f},
    {"leaky_relu_0p2", EM_ACT_LEAKY_RELU, 0.2f}, {"sigmoid", EM_ACT_SIGMOID, 0.0f},
    {"tanh", EM_ACT_TANH, 0.0f},         {"gelu", EM_ACT_GELU, 0.0f},
    {"gelu_tanh", EM_ACT_GELU_TANH, 0.0f}, {"silu", EM_ACT_SILU, 0.0f},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* The named entry points, to check that they match em_activate. */
static em_tensor *by_name(const act_case *c, em_tensor *x)
{
    switch (c->act) {
    case EM_ACT_RELU: return em_relu(x);
    case EM_ACT_LEAKY_RELU: return em_leaky_relu(x, c->param);
    case EM_ACT_SIGMOID: return em_sigmoid(x);
    case EM_ACT_TANH: return em_tanh(x);
    case EM_ACT_GELU: return em_gelu(x);
    case EM_ACT_GELU_TANH: return em_gelu_tanh(x);
    case EM_ACT_SILU: return em_silu(x);
    default: return NULL;
    }
}

static void check_case(em_st_file *f, const act_case *c, const char *suffix, bool transposed)
{
    char prefix[64], key[128], what[160];
    snprintf(prefix, sizeof prefix, "%s%s", c->fixture, suffix);
    snprintf(key, sizeof key, "%s.in0", prefix);
    em_tensor *x = test_fixture_input(f, key);
    em_tensor *arg = transposed ? em_transpose(x, 0, 1) : x;
    em_tensor *out = by_name(c, arg);
    snprintf(key, sizeof key, "%s.out", prefix);
    em_tensor *want = test_fixture_tensor(f, key);
    CHECK_MSG(out && em_same_shape(out, want), "%s: shape %s vs %s", prefix, em_shape_str(out),
              em_shape_str(want));
    snprintf(what, sizeof what, "%s forward", prefix);
    test_tensor_close(what, out, want->data, 1e-6, 1e-5);
    snprintf(key, sizeof key, "%s.w", prefix);
    CHECK(em_backward_with(out, test_fixture_tensor(f, key)->data) == EM_OK);
    snprintf(key, sizeof key, "%s.grad0", prefix);
    snprintf(what, sizeof what, "%s backward", prefix);
    test_grad_close(what, x->grad, test_fixture_tensor(f, key), 1e-6, 1e-4);
    em_step_end();
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("ops_activation");
    for (size_t k = 0; k < N_CASES; k++) {
        check_case(f, &cases[k], "", false);
        check_case(f, &cases[k], "_t", true);
    }
    em_st_close(f);
}

static const act_case *current;

static em_tensor *apply_current(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    return em_activate(in[0], current->act, current->param);
}

static em_tensor *apply_current_transposed(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    return em_activate(em_transpose(in[0], 0, 1), current->act, current->param);
}

/* Keeps central differences off the kinks of relu and leaky_relu at 0. */
static void away_from_zero(em_tensor *t)
{
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] += t->data[i] >= 0 ? 0.1f : -0.1f;
}

static void test_gradients(void)
{
    em_rng rng;
    em_rng_seed(&rng, 5);
    for (size_t k = 0; k < N_CASES; k++) {
        current = &cases[k];
        char what[96];
        em_tensor *x = test_randn(&rng, 3, (int64_t[]){2, 3, 5}, 2.0f);
        away_from_zero(x);
        snprintf(what, sizeof what, "%s", current->fixture);
        test_gradcheck(what, apply_current, NULL, &x, 1, 1e-2, 1e-2);
        em_tensor *xt = test_randn(&rng, 2, (int64_t[]){4, 6}, 2.0f);
        away_from_zero(xt);
        snprintf(what, sizeof what, "%s transposed view", current->fixture);
        test_gradcheck(what, apply_current_transposed, NULL, &xt, 1, 1e-2, 1e-2);
        em_step_end();
    }
}

/* act(x) and act'(x) in double from libm. */
static void reference(em_activation act, double param, double x, double *y, double *dy)
{
    double s;
    switch (act) {
    case EM_ACT_RELU: *y = x > 0 ? x : 0; *dy = x > 0; break;
    case EM_ACT_LEAKY_RELU: *y = x > 0 ? x : param * x; *dy = x > 0 ? 1 : param; break;
    case EM_ACT_SIGMOID: s = 1 / (1 + exp(-x)); *y = s; *dy = s * (1 - s); break;
    case EM_ACT_TANH: *y = tanh(x); *dy = 1 - tanh(x) * tanh(x); break;
    case EM_ACT_GELU: {
        double cdf = 0.5 * erfc(-x / sqrt(2.0)), pdf = exp(-0.5 * x * x) / sqrt(2 * M_PI);
        *y = x * cdf;
        *dy = cdf + x * pdf;
        break;
    }
    case EM_ACT_GELU_TANH: {
        /* (1 + tanh u)/2 as 1/(1 + exp(-2u)): in the far negative tail 1 + tanh u
         * cancels to nothing even in double */
        double k = sqrt(2 / M_PI), u = k * (x + 0.044715 * x * x * x);
        double du = k * (1 + 3 * 0.044715 * x * x), half = 1 / (1 + exp(-2 * u));
        *y = x * half;
        *dy = half + 2 * x * half * (1 - half) * du;
        break;
    }
    case EM_ACT_SILU: s = 1 / (1 + exp(-x)); *y = x * s; *dy = s * (1 + x * (1 - s)); break;
    default: *y = x; *dy = 1; break;
    }
}

/* The dense kernels over [-20, 20] on an array large enough for the parallel path.
 * Forward values must be within rtol of the double result (with a 1e-12 absolute floor
 * for gelu's far tail, ~1e-30); rtol is a few ulp, except that gelu's tail is as
 * sensitive to float32's rounding of x/√2 (or of u) as ~2·z²·6e-8. Derivatives are of
 * unit scale, cancel to 0 at the minima of gelu and silu, and those of sigmoid and tanh come
 * from y, whose few-ulp error near ±1 is absolute: rtol 1e-5, atol 4e-7. */
static void test_dense_kernels(void)
{
    const int64_t n = 300001;
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    float *dy = malloc((size_t)n * sizeof(float)), *dx = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        x[i] = -20.0f + 40.0f * (float)i / (float)(n - 1);
        dy[i] = 1.0f;
    }
    for (size_t k = 0; k < N_CASES; k++) {
        const act_case *c = &cases[k];
        double rtol = c->act == EM_ACT_GELU || c->act == EM_ACT_GELU_TANH ? 4e-6 : 5e-7;
        em_activation_forward(c->act, c->param, x, y, n);
        memset(dx, 0, (size_t)n * sizeof(float));
        em_activation_backward(c->act, c->param, x, y, dy, dx, n);
        double worst_y = 0, worst_d = 0;
        int64_t at_y = 0, at_d = 0;
        for (int64_t i = 0; i < n; i++) {
            double wy, wd;
            reference(c->act, c->param, x[i], &wy, &wd);
            double ey = fabs(y[i] - wy) / (1e-12 + rtol * fabs(wy));
            double ed = fabs(dx[i] - wd) / (4e-7 + 1e-5 * fabs(wd));
            if (ey > worst_y)
                worst_y = ey, at_y = i;
            if (ed > worst_d)
                worst_d = ed, at_d = i;
        }
        CHECK_MSG(worst_y <= 1, "%s forward: error %g of tolerance at x = %.9g", c->fixture,
                  worst_y, x[at_y]);
        CHECK_MSG(worst_d <= 1, "%s backward: error %g of tolerance at x = %.9g", c->fixture,
                  worst_d, x[at_d]);

        /* the parallel path agrees with the op on a small slice */
        em_tensor *slice = em_tensor_from(NULL, 1, (int64_t[]){1000}, x + 150000);
        em_tensor *small = em_activate(slice, c->act, c->param);
        CHECK_MSG(small && memcmp(small->data, y + 150000, 1000 * sizeof(float)) == 0,
                  "%s: blocked and unblocked results differ", c->fixture);

        /* backward from the output alone (relu, sigmoid, tanh) or the input alone */
        bool from_output = c->act == EM_ACT_RELU || c->act == EM_ACT_SIGMOID || c->act == EM_ACT_TANH;
        float *dx2 = calloc((size_t)n, sizeof(float));
        em_activation_backward(c->act, c->param, from_output ? NULL : x, from_output ? y : NULL, dy,
                               dx2, n);
        int same = 1;
        for (int64_t i = 0; i < n; i++)
            same &= dx2[i] == dx[i];
        CHECK_MSG(same, "%s: backward with one of x, y omitted differs", c->fixture);
        /* backward adds to what dx holds */
        for (int64_t i = 0; i < n; i++)
            dx2[i] = 0.25f;
        em_activation_backward(c->act, c->param, x, y, dy, dx2, n);
        same = 1;
        for (int64_t i = 0; i < n; i++)
            same &= fabsf(dx2[i] - (0.25f + dx[i])) <= 3e-7f * (1.0f + fabsf(dx[i]));
        CHECK_MSG(same, "%s: backward does not accumulate", c->fixture);
        /* em_activation_gradient writes the same values over whatever dx held (NaN here) */
        for (int64_t i = 0; i < n; i++)
            dx2[i] = NAN;
        em_activation_gradient(c->act, c->param, x, y, dy, dx2, n);
        same = 1;
        for (int64_t i = 0; i < n; i++)
            same &= dx2[i] == dx[i];
        CHECK_MSG(same, "%s: the written gradient differs from the one added to zeros", c->fixture);
        free(dx2);

        /* in place: y = act(y) */
        memcpy(y, x, (size_t)n * sizeof(float));
        em_activation_forward(c->act, c->param, y, y, n);
        float ref;
        em_activation_forward(c->act, c->param, &x[12345], &ref, 1);
        CHECK(y[12345] == ref);
        em_step_end();
    }
    free(x);
    free(y);
    free(dy);
    free(dx);
}

static void test_extremes(void)
{
    float xs[] = {-1e30f, -90.0f, -30.0f, 30.0f, 90.0f, 1e30f, INFINITY, -INFINITY};
    int64_t n = 8;
    em_tensor *x = em_tensor_from(NULL, 1, &n, xs);
    em_tensor *s = em_sigmoid(x), *t = em_tanh(x);
    CHECK(s->data[0] == 0.0f && s->data[5] == 1.0f && s->data[6] == 1.0f && s->data[7] == 0.0f);
    CHECK(s->data[1] >= 0.0f && s->data[1] < 1e-38f && s->data[4] == 1.0f);
    CHECK(t->data[0] == -1.0f && t->data[2] == -1.0f && t->data[3] == 1.0f && t->data[6] == 1.0f);
    em_tensor *g = em_gelu(x), *gt = em_gelu_tanh(x), *si = em_silu(x);
    CHECK(g->data[1] == 0.0f && g->data[4] == 90.0f && gt->data[4] == 90.0f);
    CHECK(fabsf(gt->data[1]) < 1e-30f && fabsf(si->data[1]) < 1e-30f && si->data[4] == 90.0f);
    em_tensor *nan = em_tensor_from(NULL, 1, (int64_t[]){1}, (float[]){NAN});
    for (int a = EM_ACT_RELU; a < EM_ACT_COUNT; a++)
        CHECK_MSG(isnan(em_activate(nan, (em_activation)a, 0.01f)->data[0]), "%s(NaN)",
                  em_activation_name((em_activation)a));
    em_step_end();
}

static void test_names_and_errors(void)
{
    for (int a = 0; a < EM_ACT_COUNT; a++) {
        em_activation parsed = EM_ACT_COUNT;
        CHECK(em_activation_parse(em_activation_name((em_activation)a), &parsed) == EM_OK);
        CHECK(parsed == (em_activation)a);
    }
    CHECK(strcmp(em_activation_name(EM_ACT_GELU_TANH), "gelu_tanh") == 0);
    CHECK(strcmp(em_activation_name(EM_ACT_LEAKY_RELU), "leaky_relu") == 0);
    em_activation act;
    em_clear_error();
    CHECK(em_activation_parse("swish", &act) == EM_ERR);
    CHECK_ERROR_CONTAINS("swish");
    CHECK_ERROR_CONTAINS("relu, leaky_relu, sigmoid, tanh, gelu, gelu_tanh, silu");
    CHECK(em_activation_parse(NULL, &act) == EM_ERR);

    em_tensor *x = em_tensor_zeros2(NULL, 2, 2);
    CHECK(em_activate(x, EM_ACT_NONE, 0.0f) == x);
    em_clear_error();
    CHECK(em_activate(x, (em_activation)42, 0.0f) == NULL);
    CHECK_ERROR_CONTAINS("42");
    CHECK(em_relu(NULL) == NULL && em_gelu(NULL) == NULL && em_sigmoid(NULL) == NULL &&
          em_activate(NULL, EM_ACT_TANH, 0.0f) == NULL);

    /* no-grad records nothing */
    em_rng rng;
    em_rng_seed(&rng, 9);
    em_tensor *p = test_randn(&rng, 2, (int64_t[]){3, 4}, 1.0f);
    bool was = em_set_grad_enabled(false);
    em_tensor *y = em_silu(em_gelu(em_transpose(p, 0, 1)));
    CHECK(y && !y->requires_grad && em_tape_length() == 0);
    em_set_grad_enabled(was);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_gradients();
    test_dense_kernels();
    test_extremes();
    test_names_and_errors();
    return test_finish();
}
