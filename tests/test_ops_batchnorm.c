/* em_batch_norm: PyTorch parity in training and evaluation, [N, C] and [N, C, H, W], with
 * and without the affine transform (output, input/weight/bias gradients and the running
 * statistics' update); numeric gradient checks in both modes; no running statistics;
 * shape errors. */
#include <string.h>

#include "testlib.h"

typedef struct bn_case {
    const char *name;
    bool affine, training;
    float momentum, eps;
} bn_case;

/* The same table as BN_CASES in tests/fixtures/gen_cnn.py. */
static const bn_case cases[] = {
    {"nchw_train", true, true, 0.1f, 1e-5f},  {"nchw_eval", true, false, 0.1f, 1e-5f},
    {"nc_train", true, true, 0.1f, 1e-5f},    {"nc_eval", true, false, 0.1f, 1e-5f},
    {"plain_train", false, true, 0.3f, 1e-3f}, {"plain_eval", false, false, 0.3f, 1e-3f},
};

static em_tensor *field(em_st_file *f, const char *name, const char *what, bool input)
{
    char key[128];
    snprintf(key, sizeof key, "bn.%s.%s", name, what);
    return input ? test_fixture_input(f, key) : test_fixture_tensor(f, key);
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("cnn_batchnorm");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bn_case *c = &cases[i];
        char what[128];
        em_tensor *x = field(f, c->name, "x", true);
        em_tensor *w = c->affine ? field(f, c->name, "w", true) : NULL;
        em_tensor *b = c->affine ? field(f, c->name, "b", true) : NULL;
        em_tensor *rm = field(f, c->name, "rm", false), *rv = field(f, c->name, "rv", false);
        em_tensor *want = field(f, c->name, "out", false);
        em_tensor *out = em_batch_norm(x, w, b, rm, rv, c->training, c->momentum, c->eps);
        CHECK_MSG(out && em_same_shape(out, want), "%s: %s", c->name, ember_last_error());
        if (!out)
            continue;
        snprintf(what, sizeof what, "%s forward", c->name);
        test_tensor_close(what, out, want->data, 1e-5, 1e-4);
        snprintf(what, sizeof what, "%s running mean", c->name);
        test_tensor_close(what, rm, field(f, c->name, "rm_after", false)->data, 1e-6, 1e-5);
        snprintf(what, sizeof what, "%s running var", c->name);
        test_tensor_close(what, rv, field(f, c->name, "rv_after", false)->data, 1e-6, 1e-5);
        CHECK(em_backward_with(out, field(f, c->name, "gy", false)->data) == EM_OK);
        snprintf(what, sizeof what, "%s grad x", c->name);
        test_grad_close(what, x->grad, field(f, c->name, "gx", false), 1e-5, 1e-4);
        if (c->affine) {
            snprintf(what, sizeof what, "%s grad w", c->name);
            test_grad_close(what, w->grad, field(f, c->name, "gw", false), 1e-5, 1e-4);
            snprintf(what, sizeof what, "%s grad b", c->name);
            test_grad_close(what, b->grad, field(f, c->name, "gb", false), 1e-5, 1e-4);
        }
        CHECK(rm->grad == NULL && rv->grad == NULL);
        em_step_end();
    }
    em_st_close(f);
}

/* Exact values: a channel of {1, 2, 3, 4} has mean 2.5, biased variance 1.25 and
 * unbiased variance 5/3. */
static void test_running_update(void)
{
    const float v[8] = {1, 10, 2, 20, 3, 30, 4, 40};
    em_tensor *x = em_tensor_from(NULL, 2, (int64_t[]){4, 2}, v);
    em_tensor *rm = em_tensor_from(NULL, 1, (int64_t[]){2}, (const float[]){1, 0});
    em_tensor *rv = em_tensor_from(NULL, 1, (int64_t[]){2}, (const float[]){1, 1});
    em_tensor *y = em_batch_norm(x, NULL, NULL, rm, rv, true, 0.5f, 0.0f);
    CHECK(y != NULL);
    CHECK_NEAR(rm->data[0], 0.5 * 1 + 0.5 * 2.5, 1e-6);
    CHECK_NEAR(rm->data[1], 0.5 * 0 + 0.5 * 25, 1e-5);
    CHECK_NEAR(rv->data[0], 0.5 * 1 + 0.5 * (5.0 / 3.0), 1e-6);
    CHECK_NEAR(rv->data[1], 0.5 * 1 + 0.5 * (500.0 / 3.0), 1e-4);
    CHECK_NEAR(y->data[0], (1 - 2.5) / sqrt(1.25), 1e-6);
    CHECK_NEAR(y->data[7], (40 - 25) / sqrt(125.0), 1e-6);
    /* Evaluation leaves the running statistics alone and uses them. */
    float rm0 = rm->data[0], rv0 = rv->data[0];
    y = em_batch_norm(x, NULL, NULL, rm, rv, false, 0.5f, 0.0f);
    CHECK(y && rm->data[0] == rm0 && rv->data[0] == rv0);
    CHECK_NEAR(y->data[0], (1 - rm0) / sqrt(rv0), 1e-6);
    /* Without running statistics both modes use the batch's. */
    em_tensor *yt = em_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1f, 0.0f);
    em_tensor *ye = em_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1f, 0.0f);
    CHECK(yt && ye);
    if (yt && ye)
        test_tensor_close("no running stats: eval equals train", ye, yt->data, 0, 0);
    em_step_end();
}

typedef struct bn_args {
    bool training;
    em_tensor *rm, *rv;
} bn_args;

static em_tensor *apply_bn(void *user, em_tensor *const *in, int n)
{
    const bn_args *a = user;
    return em_batch_norm(in[0], n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, a->rm, a->rv,
                         a->training, 0.1f, 1e-5f);
}

static void test_gradients(void)
{
    em_rng rng;
    em_rng_seed(&rng, 9);
    static const int64_t shapes[][4] = {{3, 4, 3, 2}, {6, 3, 0, 0}, {1, 2, 3, 3}};
    static const int ndims[] = {4, 2, 4};
    for (int s = 0; s < 3; s++)
        for (int training = 0; training <= 1; training++) {
            em_tensor *x = test_randn(&rng, ndims[s], shapes[s], 1.5f);
            int64_t c = shapes[s][1];
            em_tensor *w = test_randn(&rng, 1, &c, 0.5f);
            em_tensor *b = test_randn(&rng, 1, &c, 0.5f);
            for (int64_t i = 0; i < c; i++)
                w->data[i] += 1.0f;
            bn_args a = {training, em_tensor_zeros1(NULL, c), em_tensor_full(NULL, 1, &c, 1.0f)};
            em_init_uniform(a.rm, &rng, -0.5f, 0.5f);
            em_init_uniform(a.rv, &rng, 0.5f, 2.0f);
            char what[64];
            snprintf(what, sizeof what, "%s %dd", training ? "training" : "eval", ndims[s]);
            test_gradcheck(what, apply_bn, &a, (em_tensor *[]){x, w, b}, 3, 1e-2, 1e-2);
            snprintf(what, sizeof what, "%s %dd without affine", training ? "training" : "eval", ndims[s]);
            test_gradcheck(what, apply_bn, &a, &x, 1, 1e-2, 1e-2);
            em_step_end();
        }
}

static void test_errors(void)
{
    em_tensor *x = em_tensor_zeros4(NULL, 2, 3, 4, 4);
    em_tensor *c3 = em_tensor_zeros1(NULL, 3), *c4 = em_tensor_zeros1(NULL, 4);
    em_clear_error();
    CHECK(em_batch_norm(x, c4, c3, NULL, NULL, true, 0.1f, 1e-5f) == NULL);
    CHECK_ERROR_CONTAINS("weight must be [3]");
    CHECK_ERROR_CONTAINS("[2, 3, 4, 4]");
    CHECK_ERROR_CONTAINS("[4]");
    em_clear_error();
    CHECK(em_batch_norm(x, NULL, NULL, c3, c4, true, 0.1f, 1e-5f) == NULL);
    CHECK_ERROR_CONTAINS("running_var must be [3]");
    em_clear_error();
    CHECK(em_batch_norm(x, NULL, NULL, c3, NULL, true, 0.1f, 1e-5f) == NULL);
    CHECK_ERROR_CONTAINS("both");
    em_clear_error();
    CHECK(em_batch_norm(em_tensor_zeros1(NULL, 5), NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f) == NULL);
    CHECK_ERROR_CONTAINS("[5]");
    em_clear_error();
    CHECK(em_batch_norm(em_tensor_zeros2(NULL, 1, 3), NULL, NULL, c3, c3, true, 0.1f, 1e-5f) == NULL);
    CHECK_ERROR_CONTAINS("more than one value per channel");
    /* Evaluation of a single sample is fine. */
    CHECK(em_batch_norm(em_tensor_zeros2(NULL, 1, 3), NULL, NULL, c3, em_tensor_full(NULL, 1, (int64_t[]){3}, 1),
                        false, 0.1f, 1e-5f) != NULL);
    CHECK(em_batch_norm(NULL, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f) == NULL);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_running_update();
    test_gradients();
    test_errors();
    return test_finish();
}
