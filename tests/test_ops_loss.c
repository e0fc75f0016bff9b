/* mse_loss, cross_entropy (with label smoothing) and bce_with_logits: PyTorch parity
 * (forward and backward, also through transposed views), numeric gradient checks, a
 * double-precision reference on a batch large enough for the threaded path, extreme
 * logits, and bad input (shapes, labels, smoothing). */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static void labels_from_fixture(em_st_file *f, const char *prefix, int32_t *labels, int64_t cap)
{
    char key[128];
    snprintf(key, sizeof key, "%s.labels", prefix);
    em_tensor *l = test_fixture_tensor(f, key);
    CHECK(l->numel <= cap);
    for (int64_t i = 0; i < l->numel && i < cap; i++)
        labels[i] = (int32_t)l->data[i];
}

static void check_outputs(em_st_file *f, const char *prefix, em_tensor *out, em_tensor *const *in,
                          int n_in)
{
    char key[128], what[160];
    snprintf(key, sizeof key, "%s.out", prefix);
    em_tensor *want = test_fixture_tensor(f, key);
    CHECK_MSG(out && out->numel == 1 && out->ndim == 0, "%s: output %s", prefix,
              out ? em_shape_str(out) : "NULL");
    snprintf(what, sizeof what, "%s forward", prefix);
    test_tensor_close(what, out, want->data, 1e-6, 1e-5);
    snprintf(key, sizeof key, "%s.w", prefix);
    CHECK(em_backward_with(out, test_fixture_tensor(f, key)->data) == EM_OK);
    for (int i = 0; i < n_in; i++) {
        snprintf(key, sizeof key, "%s.grad%d", prefix, i);
        snprintf(what, sizeof what, "%s backward input %d", prefix, i);
        test_grad_close(what, in[i]->grad, test_fixture_tensor(f, key), 1e-6, 1e-4);
    }
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("ops_loss");
    em_tensor *p = test_fixture_input(f, "mse.in0"), *t = test_fixture_input(f, "mse.in1");
    check_outputs(f, "mse", em_mse_loss(p, t), (em_tensor *[]){p, t}, 2);
    em_step_end();
    p = test_fixture_input(f, "mse_t.in0");
    t = test_fixture_input(f, "mse_t.in1");
    check_outputs(f, "mse_t", em_mse_loss(em_transpose(p, 0, 1), t), (em_tensor *[]){p, t}, 2);
    em_step_end();

    static const struct {
        const char *name;
        float smoothing;
        bool transposed;
    } ce[] = {{"ce", 0.0f, false}, {"ce_ls", 0.1f, false}, {"ce_large", 0.2f, false},
              {"ce_t", 0.1f, true}};
    for (size_t k = 0; k < sizeof ce / sizeof ce[0]; k++) {
        int32_t labels[16];
        labels_from_fixture(f, ce[k].name, labels, 16);
        char key[128];
        snprintf(key, sizeof key, "%s.in0", ce[k].name);
        em_tensor *x = test_fixture_input(f, key);
        em_tensor *loss =
            em_cross_entropy(ce[k].transposed ? em_transpose(x, 0, 1) : x, labels, ce[k].smoothing);
        /* the op keeps its own copy of the labels for backward */
        memset(labels, 0, sizeof labels);
        check_outputs(f, ce[k].name, loss, &x, 1);
        em_step_end();
    }

    em_tensor *x = test_fixture_input(f, "bce.in0");
    t = test_fixture_input(f, "bce.in1");
    check_outputs(f, "bce", em_bce_with_logits(x, t), (em_tensor *[]){x, t}, 2);
    em_step_end();
    x = test_fixture_input(f, "bce_t.in0");
    t = test_fixture_input(f, "bce_t.in1");
    check_outputs(f, "bce_t", em_bce_with_logits(em_transpose(x, 0, 1), t), (em_tensor *[]){x, t}, 2);
    em_step_end();
    em_st_close(f);
}

typedef struct loss_case {
    int kind; /* 0 mse, 1 cross-entropy, 2 bce */
    bool transposed;
    float smoothing;
    const int32_t *labels;
} loss_case;

static em_tensor *apply_loss(void *user, em_tensor *const *in, int n)
{
    (void)n;
    const loss_case *c = user;
    em_tensor *a = c->transposed ? em_transpose(in[0], 0, 1) : in[0];
    switch (c->kind) {
    case 0: return em_mse_loss(a, in[1]);
    case 1: return em_cross_entropy(a, c->labels, c->smoothing);
    default: return em_bce_with_logits(a, in[1]);
    }
}

static void test_gradients(void)
{
    em_rng rng;
    em_rng_seed(&rng, 17);
    const int32_t labels[5] = {2, 0, 3, 3, 1};
    loss_case c = {0, false, 0.0f, labels};
    em_tensor *p = test_randn(&rng, 2, (int64_t[]){5, 4}, 1.0f);
    em_tensor *t = test_randn(&rng, 2, (int64_t[]){5, 4}, 1.0f);
    test_gradcheck("mse", apply_loss, &c, (em_tensor *[]){p, t}, 2, 1e-2, 1e-2);
    c.transposed = true;
    em_tensor *pt = test_randn(&rng, 2, (int64_t[]){4, 5}, 1.0f);
    test_gradcheck("mse transposed", apply_loss, &c, (em_tensor *[]){pt, t}, 2, 1e-2, 1e-2);

    c = (loss_case){1, false, 0.0f, labels};
    em_tensor *x = test_randn(&rng, 2, (int64_t[]){5, 4}, 2.0f);
    test_gradcheck("cross_entropy", apply_loss, &c, &x, 1, 1e-2, 1e-2);
    c.smoothing = 0.3f;
    test_gradcheck("cross_entropy smoothing 0.3", apply_loss, &c, &x, 1, 1e-2, 1e-2);
    c.transposed = true;
    em_tensor *xt = test_randn(&rng, 2, (int64_t[]){4, 5}, 2.0f);
    test_gradcheck("cross_entropy transposed", apply_loss, &c, &xt, 1, 1e-2, 1e-2);

    c = (loss_case){2, false, 0.0f, NULL};
    em_tensor *probs = test_randn(&rng, 2, (int64_t[]){5, 4}, 1.0f);
    for (int64_t i = 0; i < probs->numel; i++)
        probs->data[i] = 1.0f / (1.0f + expf(-probs->data[i]));
    test_gradcheck("bce_with_logits", apply_loss, &c, (em_tensor *[]){x, probs}, 2, 1e-2, 1e-2);
    c.transposed = true;
    test_gradcheck("bce_with_logits transposed", apply_loss, &c, (em_tensor *[]){xt, probs}, 2, 1e-2,
                   1e-2);
    em_step_end();
}

/* [2000, 100] (threaded rows) against the formula in double. */
static void test_large_cross_entropy(void)
{
    const int64_t N = 2000, C = 100;
    const double eps = 0.1;
    em_rng rng;
    em_rng_seed(&rng, 99);
    em_tensor *x = test_randn(&rng, 2, (int64_t[]){N, C}, 4.0f);
    int32_t *labels = malloc((size_t)N * sizeof(int32_t));
    double *want_grad = malloc((size_t)(N * C) * sizeof(double));
    for (int64_t r = 0; r < N; r++)
        labels[r] = (int32_t)em_rng_below(&rng, (uint64_t)C);
    double want = 0;
    for (int64_t r = 0; r < N; r++) {
        const float *row = x->data + r * C;
        double m = -INFINITY, s = 0, sum_x = 0;
        for (int64_t j = 0; j < C; j++)
            m = fmax(m, row[j]);
        for (int64_t j = 0; j < C; j++) {
            s += exp(row[j] - m);
            sum_x += row[j];
        }
        double lse = m + log(s);
        want += (1 - eps) * (lse - row[labels[r]]) + eps * (lse - sum_x / C);
        for (int64_t j = 0; j < C; j++)
            want_grad[r * C + j] = (exp(row[j] - lse) - eps / C - (j == labels[r]) * (1 - eps)) / N;
    }
    want /= N;
    em_tensor *loss = em_cross_entropy(x, labels, (float)eps);
    CHECK(loss && fabs(loss->data[0] - want) <= 2e-6 * want);
    CHECK(em_backward(loss) == EM_OK);
    double worst = 0;
    for (int64_t i = 0; i < N * C; i++)
        worst = fmax(worst, fabs(x->grad[i] - want_grad[i]) / (1e-10 + 1e-5 * fabs(want_grad[i])));
    CHECK_MSG(worst <= 1, "large cross_entropy gradient: error %g of tolerance", worst);
    free(labels);
    free(want_grad);
    em_step_end();
}

static void test_extremes(void)
{
    /* logits far beyond exp's range: no inf or NaN */
    em_tensor *x = em_tensor_from(NULL, 2, (int64_t[]){2, 3}, (float[]){1e4f, 0, -1e4f, -500, 500, 0});
    x->requires_grad = true;
    em_tensor *ce = em_cross_entropy(x, (const int32_t[]){0, 2}, 0.0f);
    CHECK(ce && isfinite(ce->data[0]));
    CHECK_NEAR(ce->data[0], 250.0, 1e-3); /* row 0 costs 0, row 1 costs 500 */
    CHECK(em_backward(ce) == EM_OK);
    CHECK_NEAR(x->grad[4], 0.5, 1e-7); /* softmax 1 on column 1, halved by the mean */
    CHECK_NEAR(x->grad[5], -0.5, 1e-7);

    em_tensor *xn = em_tensor_from(NULL, 2, (int64_t[]){2, 2}, (float[]){0, 1, 2, NAN});
    CHECK(isnan(em_cross_entropy(xn, (const int32_t[]){0, 0}, 0.0f)->data[0]));

    em_tensor *z = em_tensor_from(NULL, 1, (int64_t[]){4}, (float[]){100, -100, 100, -100});
    em_tensor *tz = em_tensor_from(NULL, 1, (int64_t[]){4}, (float[]){1, 0, 0, 1});
    em_tensor *b = em_bce_with_logits(z, tz);
    CHECK(b && isfinite(b->data[0]));
    CHECK_NEAR(b->data[0], 50.0, 1e-4); /* two right (≈0), two wrong by 100 */
    em_step_end();
}

static void test_bad_input(void)
{
    em_tensor *a = em_tensor_zeros2(NULL, 3, 4), *b = em_tensor_zeros2(NULL, 4, 3);
    em_clear_error();
    CHECK(em_mse_loss(a, b) == NULL);
    CHECK_ERROR_CONTAINS("[3, 4]");
    CHECK_ERROR_CONTAINS("[4, 3]");
    CHECK_ERROR_CONTAINS("mse_loss");
    em_clear_error();
    CHECK(em_bce_with_logits(a, em_tensor_zeros1(NULL, 4)) == NULL);
    CHECK_ERROR_CONTAINS("[3, 4]");
    CHECK_ERROR_CONTAINS("[4]");

    em_clear_error();
    CHECK(em_cross_entropy(a, (const int32_t[]){0, 1, 4}, 0.0f) == NULL);
    CHECK_ERROR_CONTAINS("label 4 at row 2");
    CHECK_ERROR_CONTAINS("4 classes");
    CHECK(em_cross_entropy(a, (const int32_t[]){0, -1, 1}, 0.0f) == NULL);
    CHECK_ERROR_CONTAINS("label -1 at row 1");
    CHECK(em_cross_entropy(a, (const int32_t[]){0, 1, 2}, 1.0f) == NULL);
    CHECK_ERROR_CONTAINS("label_smoothing");
    CHECK(em_cross_entropy(a, (const int32_t[]){0, 1, 2}, NAN) == NULL);
    CHECK(em_cross_entropy(a, NULL, 0.0f) == NULL);
    CHECK(em_cross_entropy(em_tensor_zeros3(NULL, 2, 3, 4), (const int32_t[]){0, 0}, 0.0f) == NULL);
    CHECK_ERROR_CONTAINS("[2, 3, 4]");
    CHECK(em_cross_entropy(NULL, (const int32_t[]){0}, 0.0f) == NULL);
    CHECK(em_mse_loss(NULL, a) == NULL && em_mse_loss(a, NULL) == NULL);
    CHECK(em_bce_with_logits(NULL, a) == NULL);

    em_rng rng;
    em_rng_seed(&rng, 6);
    em_tensor *p = test_randn(&rng, 2, (int64_t[]){3, 4}, 1.0f);
    bool was = em_set_grad_enabled(false);
    em_tensor *l1 = em_cross_entropy(p, (const int32_t[]){1, 2, 3}, 0.1f);
    em_tensor *l2 = em_mse_loss(p, a), *l3 = em_bce_with_logits(p, a);
    CHECK(l1 && l2 && l3 && !l1->requires_grad && !l2->requires_grad && em_tape_length() == 0);
    em_set_grad_enabled(was);
    em_step_end();
}

/* Every backward adds into its input's gradient: an input feeding two losses gets the
 * sum of both gradients, and a second backward pass adds to a parameter's gradient. */
static void test_accumulation(void)
{
    em_arena *arena = em_arena_create(0);
    em_tensor *x = em_param_new(arena, 2, (int64_t[]){3, 4}, "x");
    em_rng rng;
    em_rng_seed(&rng, 12);
    em_init_normal(x, &rng, 0.0f, 1.0f);
    /* in the test's arena: the target outlives the em_step_end below */
    em_tensor *t = em_tensor_zeros2(arena, 3, 4);
    const int32_t labels[3] = {1, 3, 0};
    float ce_grad[12], mse_grad[12];
    CHECK(em_backward(em_cross_entropy(x, labels, 0.1f)) == EM_OK);
    memcpy(ce_grad, x->grad, sizeof ce_grad);
    em_zero_grad(x);
    CHECK(em_backward(em_mse_loss(x, t)) == EM_OK);
    memcpy(mse_grad, x->grad, sizeof mse_grad);
    em_zero_grad(x);
    em_step_end();

    em_tensor *total = em_add(em_cross_entropy(x, labels, 0.1f), em_mse_loss(x, t));
    CHECK(em_backward(total) == EM_OK);
    int ok = 1;
    for (int i = 0; i < 12; i++)
        ok &= fabsf(x->grad[i] - (ce_grad[i] + mse_grad[i])) <= 1e-6f;
    CHECK_MSG(ok, "gradients of two losses sharing an input do not add up");
    CHECK(em_backward(total) == EM_OK); /* the same tape again: the parameter accumulates */
    ok = 1;
    for (int i = 0; i < 12; i++)
        ok &= fabsf(x->grad[i] - 2.0f * (ce_grad[i] + mse_grad[i])) <= 2e-6f;
    CHECK_MSG(ok, "a second backward pass does not accumulate");
    em_step_end();
    em_arena_destroy(arena);
}

int main(void)
{
    test_parity();
    test_gradients();
    test_large_cross_entropy();
    test_extremes();
    test_bad_input();
    test_accumulation();
    return test_finish();
}
