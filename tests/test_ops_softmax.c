/* softmax and log_softmax: PyTorch parity along first, middle and last dimensions,
 * with large logits and transposed views; numeric gradient checks; a double-precision
 * reference on arrays large enough for the parallel and column-chunked paths; errors. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

typedef em_tensor *(*softmax_fn)(em_tensor *, int);

static const struct {
    const char *name;
    softmax_fn fn;
} fns[] = {{"softmax", em_softmax}, {"log_softmax", em_log_softmax}};

static const struct {
    const char *name;
    int dim;
    bool transposed;
} cases[] = {{"last", -1, false}, {"mid", 1, false},     {"first", 0, false},
             {"large", 1, false}, {"last_t", -1, true}, {"first_t", 0, true}};

static void test_parity(void)
{
    em_st_file *f = test_fixture("ops_softmax");
    char key[128], what[160];
    for (size_t k = 0; k < 2; k++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "%s.%s", fns[k].name, cases[c].name);
            snprintf(key, sizeof key, "%s.in0", prefix);
            em_tensor *x = test_fixture_input(f, key);
            em_tensor *out = fns[k].fn(cases[c].transposed ? em_transpose(x, 0, 1) : x, cases[c].dim);
            snprintf(key, sizeof key, "%s.out", prefix);
            em_tensor *want = test_fixture_tensor(f, key);
            CHECK_MSG(out && em_same_shape(out, want), "%s: shape %s vs %s", prefix,
                      em_shape_str(out), em_shape_str(want));
            snprintf(what, sizeof what, "%s forward", prefix);
            test_tensor_close(what, out, want->data, 1e-6, 1e-5);
            snprintf(key, sizeof key, "%s.w", prefix);
            CHECK(em_backward_with(out, test_fixture_tensor(f, key)->data) == EM_OK);
            snprintf(key, sizeof key, "%s.grad0", prefix);
            snprintf(what, sizeof what, "%s backward", prefix);
            test_grad_close(what, x->grad, test_fixture_tensor(f, key), 1e-5, 1e-4);
            em_step_end();
        }
    em_st_close(f);
}

static softmax_fn current_fn;
static int current_dim;

static em_tensor *apply_current(void *user, em_tensor *const *in, int n)
{
    (void)n;
    em_tensor *x = user ? em_transpose(in[0], 0, 1) : in[0];
    return current_fn(x, current_dim);
}

static void test_gradients(void)
{
    em_rng rng;
    em_rng_seed(&rng, 21);
    for (size_t k = 0; k < 2; k++) {
        current_fn = fns[k].fn;
        char what[96];
        for (int dim = -3; dim < 3; dim++) {
            current_dim = dim;
            em_tensor *x = test_randn(&rng, 3, (int64_t[]){2, 3, 4}, 2.0f);
            snprintf(what, sizeof what, "%s dim %d", fns[k].name, dim);
            test_gradcheck(what, apply_current, NULL, &x, 1, 1e-2, 1e-2);
        }
        for (int dim = 0; dim < 2; dim++) {
            current_dim = dim;
            em_tensor *x = test_randn(&rng, 2, (int64_t[]){5, 3}, 2.0f);
            snprintf(what, sizeof what, "%s transposed dim %d", fns[k].name, dim);
            test_gradcheck(what, apply_current, (void *)1, &x, 1, 1e-2, 1e-2);
        }
        em_step_end();
    }
}

/* Softmax of a [rows, cols] array along `dim` in double. */
static void reference(const float *x, int64_t rows, int64_t cols, int dim, bool log_space,
                      double *y)
{
    int64_t lines = dim == 1 ? rows : cols, len = dim == 1 ? cols : rows;
    for (int64_t l = 0; l < lines; l++) {
#define AT(k) (dim == 1 ? l * cols + (k) : (k) * cols + l)
        double m = -INFINITY, s = 0;
        for (int64_t k = 0; k < len; k++)
            m = fmax(m, x[AT(k)]);
        for (int64_t k = 0; k < len; k++)
            s += exp(x[AT(k)] - m);
        for (int64_t k = 0; k < len; k++)
            y[AT(k)] = log_space ? x[AT(k)] - m - log(s) : exp(x[AT(k)] - m) / s;
#undef AT
    }
}

/* Large enough for the threaded path; 700 columns span two column chunks. */
static void test_large_against_double(void)
{
    const int64_t rows = 120, cols = 700;
    em_rng rng;
    em_rng_seed(&rng, 4);
    em_tensor *x = test_randn(&rng, 2, (int64_t[]){rows, cols}, 5.0f);
    double *want = malloc((size_t)(rows * cols) * sizeof(double));
    float *wantf = malloc((size_t)(rows * cols) * sizeof(float));
    for (size_t k = 0; k < 2; k++)
        for (int dim = 0; dim < 2; dim++) {
            bool log_space = fns[k].fn == em_log_softmax;
            reference(x->data, rows, cols, dim, log_space, want);
            for (int64_t i = 0; i < rows * cols; i++)
                wantf[i] = (float)want[i];
            em_tensor *y = fns[k].fn(x, dim);
            char what[96];
            snprintf(what, sizeof what, "%s dim %d [120, 700] vs double", fns[k].name, dim);
            test_tensor_close(what, y, wantf, 1e-7, 2e-6);
            /* backward with g = 1 everywhere: softmax's gradient is 0, log_softmax's is
             * 1 - len·softmax */
            float *ones = malloc((size_t)(rows * cols) * sizeof(float));
            for (int64_t i = 0; i < rows * cols; i++)
                ones[i] = 1.0f;
            x->grad = NULL;
            CHECK(em_backward_with(y, ones) == EM_OK);
            int64_t len = dim == 1 ? cols : rows;
            double worst = 0;
            for (int64_t i = 0; i < rows * cols; i++) {
                double expect = log_space ? 1.0 - (double)len * exp(want[i]) : 0.0;
                worst = fmax(worst, fabs(x->grad[i] - expect) / (1e-5 + 1e-5 * fabs(expect)));
            }
            CHECK_MSG(worst <= 1, "%s dim %d backward: error %g of tolerance", fns[k].name, dim, worst);
            free(ones);
        }
    free(want);
    free(wantf);
    em_step_end();
}

static void test_stability_and_errors(void)
{
    em_tensor *x = em_tensor_from(NULL, 2, (int64_t[]){2, 3},
                                  (float[]){1000.0f, 1000.0f, -1000.0f, -1e30f, 0.0f, 1e30f});
    em_tensor *s = em_softmax(x, 1), *l = em_log_softmax(x, 1);
    CHECK_NEAR(s->data[0], 0.5, 1e-7);
    CHECK_NEAR(s->data[1], 0.5, 1e-7);
    CHECK(s->data[2] == 0.0f && s->data[3] == 0.0f && s->data[4] == 0.0f && s->data[5] == 1.0f);
    CHECK_NEAR(l->data[0], -0.69314718, 1e-6);
    CHECK_NEAR(l->data[2], -2000.0 - 0.69314718, 1e-3);
    CHECK(l->data[5] == 0.0f);

    /* a NaN spreads over its own row (or column) only */
    em_tensor *withnan = em_tensor_from(NULL, 2, (int64_t[]){2, 2}, (float[]){NAN, 1.0f, 0.0f, 0.0f});
    em_tensor *sn = em_softmax(withnan, 1), *ln = em_log_softmax(withnan, 0);
    CHECK(isnan(sn->data[0]) && isnan(sn->data[1]) && sn->data[2] == 0.5f && sn->data[3] == 0.5f);
    CHECK(isnan(ln->data[0]) && isnan(ln->data[2]) && !isnan(ln->data[1]) && !isnan(ln->data[3]));

    em_tensor *scalar = em_tensor_scalar(NULL, 3.0f);
    CHECK(em_softmax(scalar, 0) && em_softmax(scalar, 0)->data[0] == 1.0f);
    CHECK(em_log_softmax(scalar, -1) && em_log_softmax(scalar, -1)->data[0] == 0.0f);

    em_clear_error();
    CHECK(em_softmax(x, 2) == NULL);
    CHECK_ERROR_CONTAINS("[2, 3]");
    CHECK_ERROR_CONTAINS("dimension 2");
    CHECK(em_log_softmax(x, -3) == NULL);
    CHECK_ERROR_CONTAINS("log_softmax");
    CHECK(em_softmax(NULL, 0) == NULL && em_log_softmax(NULL, 0) == NULL);

    em_rng rng;
    em_rng_seed(&rng, 2);
    em_tensor *p = test_randn(&rng, 2, (int64_t[]){3, 4}, 1.0f);
    bool was = em_set_grad_enabled(false);
    em_tensor *y = em_log_softmax(em_softmax(p, 0), 1);
    CHECK(y && !y->requires_grad && em_tape_length() == 0);
    em_set_grad_enabled(was);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_gradients();
    test_large_against_double();
    test_stability_and_errors();
    return test_finish();
}
