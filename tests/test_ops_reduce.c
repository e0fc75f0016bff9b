/* sum, mean, max over dimension lists (keepdim or not), the whole-tensor forms and
 * argmax_rows: PyTorch parity, numeric gradient checks, ties, accuracy and determinism
 * of large sums, errors. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

typedef em_tensor *(*reduce_fn)(em_tensor *, int, const int *, bool);

typedef struct reduce_case {
    const char *fixture;
    reduce_fn fn;
    int n_dims;
    int dims[3];
    bool keepdim;
    bool transposed;
} reduce_case;

static const reduce_case cases[] = {
    {"sum.d1", em_sum, 1, {1}, false, false},
    {"sum.d1_keep", em_sum, 1, {1}, true, false},
    {"sum.d02", em_sum, 2, {0, 2}, false, false},
    {"sum.dm1_keep", em_sum, 1, {-1}, true, false},
    {"sum.all", em_sum, 0, {0}, false, false},
    {"mean.d1", em_mean, 1, {1}, false, false},
    {"mean.d02_keep", em_mean, 2, {2, 0}, true, false},
    {"mean.all", em_mean, 0, {0}, false, false},
    {"max.d1", em_max, 1, {1}, false, false},
    {"max.d0_keep", em_max, 1, {0}, true, false},
    {"max.d12", em_max, 2, {1, 2}, false, false},
    {"max.all", em_max, 0, {0}, false, false},
    {"sum.d0_t", em_sum, 1, {0}, false, true},
    {"mean.d1_t", em_mean, 1, {1}, false, true},
    {"max.d1_t", em_max, 1, {1}, false, true},
    {"sum.all_t", em_sum, 0, {0}, false, true},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static em_tensor *apply(const reduce_case *c, em_tensor *x)
{
    em_tensor *arg = c->transposed ? em_transpose(x, 0, 1) : x;
    return c->fn(arg, c->n_dims, c->dims, c->keepdim);
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("ops_reduce");
    char key[128], what[160];
    for (size_t k = 0; k < N_CASES; k++) {
        const reduce_case *c = &cases[k];
        snprintf(key, sizeof key, "%s.in0", c->fixture);
        em_tensor *x = test_fixture_input(f, key);
        em_tensor *out = apply(c, x);
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
        test_grad_close(what, x->grad, test_fixture_tensor(f, key), 1e-6, 1e-5);
        em_step_end();
    }
    em_st_close(f);
}

static const reduce_case *current;

static em_tensor *apply_current(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    return apply(current, in[0]);
}

static void test_gradients(void)
{
    static const reduce_case grad_cases[] = {
        {"sum dims 0,2", em_sum, 2, {0, 2}, false, false},
        {"sum dim -1 keepdim", em_sum, 1, {-1}, true, false},
        {"sum all", em_sum, 0, {0}, false, false},
        {"sum transposed dim 1", em_sum, 1, {1}, false, true},
        {"mean dim 1", em_mean, 1, {1}, false, false},
        {"mean dims 0,1 keepdim", em_mean, 2, {0, 1}, true, false},
        {"mean all transposed", em_mean, 0, {0}, false, true},
        {"max dim 0", em_max, 1, {0}, false, false},
        {"max dims 1,2 keepdim", em_max, 2, {1, 2}, true, false},
        {"max transposed dim 0", em_max, 1, {0}, true, true},
    };
    em_rng rng;
    em_rng_seed(&rng, 31);
    for (size_t k = 0; k < sizeof grad_cases / sizeof grad_cases[0]; k++) {
        current = &grad_cases[k];
        /* distinct values at least 0.05 apart, so that no step of 1e-2 swaps a maximum */
        em_tensor *x = test_randn(&rng, 3, (int64_t[]){3, 4, 2}, 1.0f);
        for (int64_t i = 0; i < x->numel; i++)
            x->data[i] = 0.05f * (float)((i * 7) % x->numel) - 0.6f + 0.01f * x->data[i];
        test_gradcheck(current->fixture, apply_current, NULL, &x, 1, 1e-2, 1e-2);
        em_step_end();
    }
}

static void test_ties_and_shapes(void)
{
    em_tensor *x = em_tensor_from(NULL, 2, (int64_t[]){2, 3}, (float[]){1, 3, 3, 2, 2, 1});
    x->requires_grad = true;
    em_tensor *m = em_max(x, 1, (int[]){1}, false);
    CHECK(m && m->ndim == 1 && m->shape[0] == 2 && m->data[0] == 3.0f && m->data[1] == 2.0f);
    CHECK(em_backward_with(m, (float[]){10.0f, 20.0f}) == EM_OK);
    const float want[6] = {0, 10, 0, 20, 0, 0}; /* the first maximum of each row */
    CHECK(memcmp(x->grad, want, sizeof want) == 0);

    em_tensor *all = em_max(x, 0, NULL, true);
    CHECK(all && all->ndim == 2 && all->shape[0] == 1 && all->shape[1] == 1 && all->data[0] == 3.0f);
    em_tensor *s = em_sum_all(x);
    CHECK(s && s->ndim == 0 && s->data[0] == 12.0f);
    CHECK(em_mean_all(x)->data[0] == 2.0f);
    /* NaN is the maximum, as in PyTorch */
    em_tensor *nan = em_tensor_from(NULL, 1, (int64_t[]){3}, (float[]){1.0f, NAN, 5.0f});
    CHECK(isnan(em_max(nan, 0, NULL, false)->data[0]));
    /* every element -inf still picks one */
    em_tensor *ninf = em_tensor_from(NULL, 1, (int64_t[]){2}, (float[]){-INFINITY, -INFINITY});
    ninf->requires_grad = true;
    em_tensor *mi = em_max(ninf, 0, NULL, false);
    CHECK(mi && isinf(mi->data[0]) && em_backward(mi) == EM_OK && ninf->grad[0] == 1.0f &&
          ninf->grad[1] == 0.0f);
    /* a scalar input */
    em_tensor *sc = em_tensor_scalar(NULL, 4.0f);
    CHECK(em_sum_all(sc)->data[0] == 4.0f && em_max(sc, 0, NULL, false)->data[0] == 4.0f);
    em_step_end();
}

/* 3·10^6 copies of 0.1f: a float running sum ends near 2.9e5 (or worse), double gives
 * 300000.0045 exactly enough for float. Also along dim 0 of [1.5e6, 2] (the column
 * accumulation path) and with one thread vs two (bit-identical). */
static void test_large_sums(void)
{
    const int64_t n = 3000000;
    em_tensor *x = em_tensor_full(NULL, 1, &n, 0.1f);
    double exact = (double)n * (double)0.1f;
    int threads = em_num_threads();
    float two = em_sum_all(x)->data[0];
    em_set_num_threads(1);
    float one = em_sum_all(x)->data[0];
    em_set_num_threads(threads);
    CHECK(two == (float)exact);
    CHECK(one == two);
    CHECK_NEAR(em_mean_all(x)->data[0], (double)0.1f, 1e-9);
    em_tensor *cols = em_reshape(x, 2, (int64_t[]){n / 2, 2});
    em_tensor *c = em_sum(cols, 1, (int[]){0}, false);
    CHECK(c && c->data[0] == (float)(exact / 2) && c->data[1] == (float)(exact / 2));
    em_tensor *ct = em_sum(em_transpose(cols, 0, 1), 1, (int[]){1}, true);
    CHECK(ct && ct->ndim == 2 && ct->shape[0] == 2 && ct->data[0] == (float)(exact / 2));
    em_step_end();
}

static void test_argmax_rows(void)
{
    em_tensor *x = em_tensor_from(NULL, 2, (int64_t[]){3, 4},
                                  (float[]){0, 5, 5, 1, -1, -2, -0.5f, -3, 2, NAN, 9, 1});
    int32_t idx[4] = {-1, -1, -1, -1};
    em_argmax_rows(x, idx);
    CHECK(idx[0] == 1 && idx[1] == 2 && idx[2] == 1 && idx[3] == -1);
    /* a transposed view: rows of the view are columns of x */
    em_tensor *z = em_tensor_from(NULL, 2, (int64_t[]){2, 3}, (float[]){3, 0, 1, 2, 4, 0});
    int32_t t[4] = {-1, -1, -1, -1};
    em_argmax_rows(em_transpose(z, 0, 1), t); /* rows (3, 2), (0, 4), (1, 0) */
    CHECK(t[0] == 0 && t[1] == 1 && t[2] == 0 && t[3] == -1);
    em_tensor *y = em_tensor_from(NULL, 3, (int64_t[]){2, 1, 3}, (float[]){1, 2, 0, 7, 3, 9});
    int32_t r[2];
    em_argmax_rows(y, r);
    CHECK(r[0] == 1 && r[1] == 2);
    em_step_end();
}

static void test_errors(void)
{
    em_tensor *x = em_tensor_zeros3(NULL, 2, 3, 4);
    em_clear_error();
    CHECK(em_sum(x, 1, (int[]){3}, false) == NULL);
    CHECK_ERROR_CONTAINS("[2, 3, 4]");
    CHECK_ERROR_CONTAINS("dimension 3");
    CHECK(em_mean(x, 2, (int[]){1, -2}, false) == NULL);
    CHECK_ERROR_CONTAINS("twice");
    CHECK(em_max(x, -1, NULL, false) == NULL);
    CHECK(em_sum(NULL, 0, NULL, false) == NULL && em_sum_all(NULL) == NULL &&
          em_mean_all(NULL) == NULL && em_max(NULL, 0, NULL, true) == NULL);

    em_rng rng;
    em_rng_seed(&rng, 8);
    em_tensor *p = test_randn(&rng, 2, (int64_t[]){3, 4}, 1.0f);
    bool was = em_set_grad_enabled(false);
    em_tensor *y = em_sum_all(em_max(em_mean(p, 1, (int[]){0}, true), 1, (int[]){1}, false));
    CHECK(y && !y->requires_grad && em_tape_length() == 0);
    em_set_grad_enabled(was);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_gradients();
    test_ties_and_shapes();
    test_large_sums();
    test_argmax_rows();
    test_errors();
    return test_finish();
}
