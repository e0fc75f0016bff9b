/* em_layer_norm: PyTorch parity (forward and every gradient) with and without weight and
 * bias, large means, tiny variances and rows not a multiple of the vector width; numeric
 * gradient checks; a threaded size against a double-precision reference; views; errors. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static const struct {
    const char *name;
    bool weight, bias;
    float eps;
} cases[] = {
    {"affine", true, true, 1e-5f},       {"plain", false, false, 1e-5f},
    {"weight_only", true, false, 1e-5f}, {"bias_only", false, true, 1e-5f},
    {"offset", true, true, 1e-5f},       {"wide", true, true, 1e-3f},
    {"row", true, true, 1e-5f},          {"tiny_var", true, true, 1e-2f},
};

static void test_parity(void)
{
    em_st_file *f = test_fixture("transformer_layernorm");
    char key[96], what[128];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        em_tensor *in[3] = {NULL, NULL, NULL};
        for (int i = 0; i < 3; i++) {
            if ((i == 1 && !cases[c].weight) || (i == 2 && !cases[c].bias))
                continue;
            snprintf(key, sizeof key, "ln.%s.in%d", cases[c].name, i);
            in[i] = test_fixture_input(f, key);
        }
        em_tensor *out = em_layer_norm(in[0], in[1], in[2], cases[c].eps);
        snprintf(key, sizeof key, "ln.%s.out", cases[c].name);
        em_tensor *want = test_fixture_tensor(f, key);
        CHECK_MSG(out && em_same_shape(out, want), "%s: %s", cases[c].name, ember_last_error());
        if (!out)
            continue;
        snprintf(what, sizeof what, "layer_norm %s forward", cases[c].name);
        test_tensor_close(what, out, want->data, 1e-5, 1e-5);
        snprintf(key, sizeof key, "ln.%s.w", cases[c].name);
        CHECK(em_backward_with(out, test_fixture_tensor(f, key)->data) == EM_OK);
        for (int i = 0; i < 3; i++) {
            if (!in[i])
                continue;
            snprintf(key, sizeof key, "ln.%s.grad%d", cases[c].name, i);
            snprintf(what, sizeof what, "layer_norm %s gradient %d", cases[c].name, i);
            /* The offset case loses float32 digits in x - mean (|x| ~ 50). */
            double atol = strcmp(cases[c].name, "offset") == 0 ? 2e-4 : 2e-5;
            test_grad_close(what, in[i]->grad, test_fixture_tensor(f, key), atol, 1e-4);
        }
        em_step_end();
    }
    em_st_close(f);
}

typedef struct ln_args {
    float eps;
    bool weight, bias;
} ln_args;

static em_tensor *ln_fn(void *user, em_tensor *const *in, int n)
{
    (void)n;
    const ln_args *a = user;
    int next = 1;
    em_tensor *w = a->weight ? in[next++] : NULL;
    em_tensor *b = a->bias ? in[next++] : NULL;
    return em_layer_norm(in[0], w, b, a->eps);
}

static void test_gradcheck_small(void)
{
    em_rng rng;
    em_rng_seed(&rng, 11);
    static const ln_args variants[] = {
        {1e-5f, true, true}, {1e-5f, false, false}, {1e-5f, true, false}, {0.1f, false, true}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        int64_t xs[3] = {2, 3, 6}, ds[1] = {6};
        em_tensor *in[3];
        int n = 0;
        in[n++] = test_randn(&rng, 3, xs, 1.0f);
        if (variants[v].weight)
            in[n++] = test_randn(&rng, 1, ds, 1.0f);
        if (variants[v].bias)
            in[n++] = test_randn(&rng, 1, ds, 1.0f);
        char what[64];
        snprintf(what, sizeof what, "layer_norm variant %zu", v);
        test_gradcheck(what, ln_fn, (void *)&variants[v], in, n, 1e-2, 1e-2);
        em_step_end();
    }
}

/* [rows, dim] large enough for the threaded path, against double precision. */
static void test_threaded_against_double(void)
{
    enum { ROWS = 300, DIM = 130 };
    em_rng rng;
    em_rng_seed(&rng, 5);
    int64_t xs[2] = {ROWS, DIM}, ds[1] = {DIM};
    em_tensor *x = test_randn(&rng, 2, xs, 2.0f), *w = test_randn(&rng, 1, ds, 1.0f),
              *b = test_randn(&rng, 1, ds, 1.0f);
    em_tensor *gy = test_randn(&rng, 2, xs, 1.0f);
    const float eps = 1e-5f;
    em_tensor *y = em_layer_norm(x, w, b, eps);
    CHECK(y != NULL);
    if (!y)
        return;
    CHECK(em_backward_with(y, gy->data) == EM_OK);

    double *dw = calloc(DIM, sizeof(double)), *db = calloc(DIM, sizeof(double));
    double worst_y = 0.0, worst_dx = 0.0;
    for (int r = 0; r < ROWS; r++) {
        const float *xr = x->data + r * DIM, *gr = gy->data + r * DIM;
        double mean = 0.0, var = 0.0;
        for (int j = 0; j < DIM; j++)
            mean += xr[j];
        mean /= DIM;
        for (int j = 0; j < DIM; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        var /= DIM;
        double rstd = 1.0 / sqrt(var + eps), sg = 0.0, sgx = 0.0;
        for (int j = 0; j < DIM; j++) {
            double xhat = (xr[j] - mean) * rstd, g = gr[j] * (double)w->data[j];
            double want = xhat * w->data[j] + b->data[j];
            worst_y = fmax(worst_y, fabs(y->data[r * DIM + j] - want));
            sg += g;
            sgx += g * xhat;
            dw[j] += gr[j] * xhat;
            db[j] += gr[j];
        }
        for (int j = 0; j < DIM; j++) {
            double xhat = (xr[j] - mean) * rstd, g = gr[j] * (double)w->data[j];
            double want = rstd * (g - sg / DIM - xhat * sgx / DIM);
            worst_dx = fmax(worst_dx, fabs(x->grad[r * DIM + j] - want) / (1.0 + fabs(want)));
        }
    }
    double worst_dw = 0.0, worst_db = 0.0;
    for (int j = 0; j < DIM; j++) {
        worst_dw = fmax(worst_dw, fabs(w->grad[j] - dw[j]) / (1.0 + fabs(dw[j])));
        worst_db = fmax(worst_db, fabs(b->grad[j] - db[j]) / (1.0 + fabs(db[j])));
    }
    CHECK_MSG(worst_y < 1e-5, "forward error %g", worst_y);
    CHECK_MSG(worst_dx < 1e-5, "dx error %g", worst_dx);
    CHECK_MSG(worst_dw < 1e-5 && worst_db < 1e-5, "dw error %g, db error %g", worst_dw, worst_db);
    free(dw);
    free(db);
    em_step_end();
}

/* A transposed view normalises like its dense copy; gradients reach the base tensor. */
static void test_view_input(void)
{
    em_rng rng;
    em_rng_seed(&rng, 9);
    int64_t s[2] = {12, 5}, ds[1] = {12};
    em_tensor *base = test_randn(&rng, 2, s, 1.0f), *w = test_randn(&rng, 1, ds, 1.0f);
    em_tensor *dense = em_tensor_clone(NULL, em_transpose(base, 0, 1));
    dense->requires_grad = true;
    em_tensor *y_view = em_layer_norm(em_transpose(base, 0, 1), w, NULL, 1e-5f);
    em_tensor *y_dense = em_layer_norm(dense, w, NULL, 1e-5f);
    CHECK(y_view && y_dense);
    if (!y_view || !y_dense)
        return;
    CHECK(memcmp(y_view->data, y_dense->data, (size_t)y_view->numel * sizeof(float)) == 0);
    float *ones = malloc((size_t)y_view->numel * sizeof(float));
    for (int64_t i = 0; i < y_view->numel; i++)
        ones[i] = (float)(i % 7) - 3.0f;
    CHECK(em_backward_with(y_view, ones) == EM_OK);
    CHECK(em_backward_with(y_dense, ones) == EM_OK);
    /* base [12, 5] holds the transpose of dense [5, 12] */
    double worst = 0.0;
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 5; j++)
            worst = fmax(worst, fabs(base->grad[i * 5 + j] - dense->grad[j * 12 + i]));
    CHECK_MSG(worst == 0.0, "view gradient differs by %g", worst);
    free(ones);
    em_step_end();
}

static void test_no_grad(void)
{
    em_rng rng;
    em_rng_seed(&rng, 3);
    int64_t s[2] = {4, 9}, ds[1] = {9};
    em_tensor *x = test_randn(&rng, 2, s, 1.0f), *w = test_randn(&rng, 1, ds, 1.0f);
    bool was = em_set_grad_enabled(false);
    em_tensor *y = em_layer_norm(x, w, NULL, 1e-5f);
    em_set_grad_enabled(was);
    CHECK(y && !y->requires_grad && em_tape_length() == 0);
    em_step_end();
}

static void test_errors(void)
{
    em_rng rng;
    em_rng_seed(&rng, 1);
    int64_t s[3] = {2, 3, 8}, bad[1] = {7}, two[2] = {2, 8}, ok[1] = {8};
    em_tensor *x = test_randn(&rng, 3, s, 1.0f);
    em_tensor *w_bad = test_randn(&rng, 1, bad, 1.0f), *w_2d = test_randn(&rng, 2, two, 1.0f);
    em_tensor *w = test_randn(&rng, 1, ok, 1.0f);

    em_clear_error();
    CHECK(em_layer_norm(x, w_bad, NULL, 1e-5f) == NULL);
    CHECK_ERROR_CONTAINS("weight must be [8]");
    CHECK_ERROR_CONTAINS("[2, 3, 8]");
    CHECK_ERROR_CONTAINS("[7]");
    CHECK(em_layer_norm(x, w, w_2d, 1e-5f) == NULL);
    CHECK_ERROR_CONTAINS("bias must be [8]");
    CHECK_ERROR_CONTAINS("[2, 8]");
    CHECK(em_layer_norm(x, w, NULL, -1.0f) == NULL);
    CHECK_ERROR_CONTAINS("eps");
    CHECK(em_layer_norm(x, w, NULL, NAN) == NULL);
    CHECK_ERROR_CONTAINS("eps");
    CHECK(em_layer_norm(em_tensor_scalar(NULL, 1.0f), NULL, NULL, 1e-5f) == NULL);
    CHECK_ERROR_CONTAINS("scalar");
    CHECK(em_layer_norm(NULL, w, NULL, 1e-5f) == NULL);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_gradcheck_small();
    test_threaded_against_double();
    test_view_input();
    test_no_grad();
    test_errors();
    em_release_thread_state();
    return test_finish();
}
