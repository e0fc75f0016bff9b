/* Max, average and global average pooling: PyTorch parity (forward and input gradient)
 * with padding, strides unlike the kernel, non-square windows and count_include_pad both
 * ways; exact small cases (padding is -inf, ties go to the first maximum, NaN wins);
 * numeric gradient checks; shape errors. */
#include <string.h>

#include "testlib.h"

typedef enum { MAX, AVG, ADAPTIVE } pool_kind;

typedef struct pool_case {
    const char *name;
    pool_kind kind;
    int kh, kw, sh, sw, ph, pw;
    bool include_pad;
} pool_case;

/* The same table as POOL_CASES in tests/fixtures/gen_cnn.py. */
static const pool_case cases[] = {
    {"max_2x2", MAX, 2, 2, 2, 2, 0, 0, true},
    {"max_odd", MAX, 2, 2, 0, 0, 0, 0, true}, /* stride 0: the kernel size */
    {"max_3x3_s2_p1", MAX, 3, 3, 2, 2, 1, 1, true},
    {"max_3x2_s12_p10", MAX, 3, 2, 1, 2, 1, 0, true},
    {"max_overlap", MAX, 3, 3, 1, 1, 0, 0, true},
    {"avg_2x2", AVG, 2, 2, 2, 2, 0, 0, true},
    {"avg_3x3_s2_p1_incl", AVG, 3, 3, 2, 2, 1, 1, true},
    {"avg_3x3_s2_p1_excl", AVG, 3, 3, 2, 2, 1, 1, false},
    {"avg_3x2_s12_p10", AVG, 3, 2, 1, 2, 1, 0, false},
    {"adaptive", ADAPTIVE, 0, 0, 0, 0, 0, 0, true},
};

static em_tensor *run_case(const pool_case *c, em_tensor *x)
{
    switch (c->kind) {
    case MAX: return em_max_pool2d(x, c->kh, c->kw, c->sh, c->sw, c->ph, c->pw);
    case AVG: return em_avg_pool2d(x, c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, c->include_pad);
    default: return em_adaptive_avg_pool2d_1x1(x);
    }
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("cnn_pool");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char key[128], what[128];
        snprintf(key, sizeof key, "pool.%s.x", cases[i].name);
        em_tensor *x = test_fixture_input(f, key);
        snprintf(key, sizeof key, "pool.%s.out", cases[i].name);
        em_tensor *want = test_fixture_tensor(f, key);
        em_tensor *out = run_case(&cases[i], x);
        CHECK_MSG(out && em_same_shape(out, want), "%s: shape %s, want %s (%s)", cases[i].name,
                  em_shape_str(out), em_shape_str(want), ember_last_error());
        if (!out)
            continue;
        snprintf(what, sizeof what, "%s forward", cases[i].name);
        test_tensor_close(what, out, want->data, 1e-6, 1e-5);
        snprintf(key, sizeof key, "pool.%s.gy", cases[i].name);
        CHECK(em_backward_with(out, test_fixture_tensor(f, key)->data) == EM_OK);
        snprintf(key, sizeof key, "pool.%s.gx", cases[i].name);
        snprintf(what, sizeof what, "%s grad x", cases[i].name);
        test_grad_close(what, x->grad, test_fixture_tensor(f, key), 1e-6, 1e-5);
        em_step_end();
    }
    em_st_close(f);
}

static void test_exact(void)
{
    /* 1x1x3x3 with pad 1, kernel 2, stride 2: windows over the -inf border. All
     * negative values, so a zero-padded implementation would give 0. */
    const float v[9] = {-5, -4, -3, -2, -1, -6, -7, -8, -9};
    em_tensor *x = em_tensor_from(NULL, 4, (int64_t[]){1, 1, 3, 3}, v);
    x->requires_grad = true;
    em_tensor *y = em_max_pool2d(x, 2, 2, 2, 2, 1, 1);
    const float want[4] = {-5, -3, -2, -1};
    CHECK(y && y->shape[2] == 2 && y->shape[3] == 2);
    test_tensor_close("max pool over padding", y, want, 0, 0);
    const float gy[4] = {1, 2, 3, 4};
    CHECK(em_backward_with(y, gy) == EM_OK);
    const float gx[9] = {1, 0, 2, 3, 4, 0, 0, 0, 0};
    test_tensor_close("max pool over padding grad", em_tensor_wrap(NULL, 4, x->shape, x->grad), gx, 0, 0);
    em_step_end();

    /* Ties: the gradient goes to the first maximum only; NaN propagates. */
    const float t[8] = {1, 1, NAN, 0, 1, 1, 2, 0};
    x = em_tensor_from(NULL, 4, (int64_t[]){1, 1, 2, 4}, t);
    x->requires_grad = true;
    y = em_max_pool2d(x, 2, 2, 2, 2, 0, 0);
    CHECK(y && y->data[0] == 1.0f && isnan(y->data[1]));
    CHECK(em_backward_with(y, (const float[]){1, 1}) == EM_OK);
    CHECK(x->grad[0] == 1 && x->grad[1] == 0 && x->grad[4] == 0 && x->grad[5] == 0);
    CHECK(x->grad[2] == 1 && x->grad[6] == 0);
    em_step_end();

    /* Average with padding: include_pad divides by 4 everywhere, exclude by real cells. */
    const float a[4] = {1, 2, 3, 4};
    x = em_tensor_from(NULL, 4, (int64_t[]){1, 1, 2, 2}, a);
    y = em_avg_pool2d(x, 2, 2, 1, 1, 1, 1, true);
    const float incl[9] = {0.25f, 0.75f, 0.5f, 1.0f, 2.5f, 1.5f, 0.75f, 1.75f, 1.0f};
    test_tensor_close("avg pool include pad", y, incl, 1e-7, 0);
    y = em_avg_pool2d(x, 2, 2, 1, 1, 1, 1, false);
    const float excl[9] = {1, 1.5f, 2, 2, 2.5f, 3, 3, 3.5f, 4};
    test_tensor_close("avg pool exclude pad", y, excl, 1e-7, 0);
    y = em_adaptive_avg_pool2d_1x1(x);
    CHECK(y && y->ndim == 4 && y->shape[2] == 1 && y->shape[3] == 1 && y->data[0] == 2.5f);
    em_step_end();
}

/* 2x2 stride-2 windows on rows long enough for the vector kernel's full blocks, with
 * many ties (values quantised to a few levels) and some NaN: values and gradient
 * positions against an in-order scan of each window (first maximum, last NaN). */
static void test_wide_2x2(void)
{
    em_rng rng;
    em_rng_seed(&rng, 21);
    const int64_t n = 2, c = 3, h = 6, w = 71, oh = 3, ow = 35;
    em_tensor *x = em_tensor_empty(NULL, 4, (int64_t[]){n, c, h, w});
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = em_rng_below(&rng, 50) == 0 ? NAN : (float)em_rng_below(&rng, 4);
    x->requires_grad = true;
    em_tensor *y = em_max_pool2d(x, 2, 2, 2, 2, 0, 0);
    CHECK(y && y->shape[2] == oh && y->shape[3] == ow);
    if (!y)
        return;
    float *gy = em_arena_alloc(em_step_arena(), (size_t)y->numel * sizeof(float));
    float *want_grad = em_arena_calloc(em_step_arena(), (size_t)x->numel, sizeof(float));
    int64_t bad_values = 0;
    for (int64_t p = 0; p < n * c; p++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                const float *plane = x->data + p * h * w;
                int64_t at = 2 * oy * w + 2 * ox;
                const int64_t cells[4] = {at, at + 1, at + w, at + w + 1};
                float best = plane[at];
                for (int k = 1; k < 4; k++) {
                    float v = plane[cells[k]];
                    if (v > best || isnan(v)) {
                        best = v;
                        at = cells[k];
                    }
                }
                int64_t o = (p * oh + oy) * ow + ox;
                float got = y->data[o];
                bad_values += !(got == best || (isnan(got) && isnan(best)));
                gy[o] = (float)(o + 1);
                want_grad[p * h * w + at] += gy[o];
            }
    CHECK_MSG(bad_values == 0, "%lld pooled values differ from an in-order scan", (long long)bad_values);
    /* Backward adds to what the gradient holds; cells that get nothing keep their value,
     * down to the sign of a zero. */
    x->grad = em_arena_alloc(em_step_arena(), (size_t)x->numel * sizeof(float));
    for (int64_t i = 0; i < x->numel; i++) {
        x->grad[i] = i % 3 == 0 ? -0.0f : (float)(i % 5) - 2.0f;
        /* (Every upstream gradient is positive, so a cell got one when its sum is not 0.) */
        want_grad[i] = want_grad[i] != 0.0f ? x->grad[i] + want_grad[i] : x->grad[i];
    }
    CHECK(em_backward_with(y, gy) == EM_OK);
    test_tensor_close("wide 2x2 gradient positions", em_tensor_wrap(NULL, 4, x->shape, x->grad), want_grad, 0, 0);
    int64_t lost_signs = 0;
    for (int64_t i = 0; i < x->numel; i++)
        lost_signs += want_grad[i] == 0.0f && signbit(want_grad[i]) != signbit(x->grad[i]);
    CHECK_MSG(lost_signs == 0, "%lld zero gradients changed sign", (long long)lost_signs);
    /* Without gradients (no positions kept) the values are the same. */
    bool was = em_set_grad_enabled(false);
    em_tensor *y2 = em_max_pool2d(x, 2, 2, 2, 2, 0, 0);
    em_set_grad_enabled(was);
    CHECK(y2 && memcmp(y2->data, y->data, (size_t)y->numel * sizeof(float)) == 0);
    em_step_end();
}

typedef struct pool_args {
    const pool_case *c;
} pool_args;

static em_tensor *apply_pool(void *user, em_tensor *const *in, int n)
{
    (void)n;
    return run_case(user, in[0]);
}

static void test_gradients(void)
{
    em_rng rng;
    em_rng_seed(&rng, 5);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        em_tensor *x = em_tensor_empty(NULL, 4, (int64_t[]){2, 2, 7, 6});
        /* Distinct values 0.1 apart in shuffled order: no window has a near-tie that a
         * probe of 1e-2 could flip. */
        int64_t order[168];
        for (int64_t k = 0; k < x->numel; k++)
            order[k] = k;
        em_rng_shuffle(&rng, order, x->numel);
        for (int64_t k = 0; k < x->numel; k++)
            x->data[k] = 0.1f * (float)order[k] - 8.0f;
        x->requires_grad = true;
        test_gradcheck(cases[i].name, apply_pool, (void *)&cases[i], &x, 1, 1e-2, 1e-3);
        em_step_end();
    }
    /* Through a non-contiguous view. */
    em_tensor *x = test_randn(&rng, 4, (int64_t[]){2, 3, 4, 6}, 1.0f);
    static const pool_case avg = {"avg transposed", AVG, 3, 2, 2, 1, 1, 1, false};
    em_tensor *xt = em_transpose(x, 2, 3);
    em_tensor *y = run_case(&avg, xt);
    em_tensor *dense = run_case(&avg, em_tensor_clone(NULL, xt));
    CHECK(y && dense && y->shape[2] == 3 && y->shape[3] == 5);
    if (y && dense)
        test_tensor_close("avg pool of a transposed view", y, dense->data, 0, 0);
    em_step_end();
}

static void test_errors(void)
{
    em_tensor *x = em_tensor_zeros4(NULL, 2, 3, 5, 5);
    em_clear_error();
    CHECK(em_max_pool2d(em_tensor_zeros2(NULL, 3, 5), 2, 2, 2, 2, 0, 0) == NULL);
    CHECK_ERROR_CONTAINS("[N, C, H, W]");
    CHECK_ERROR_CONTAINS("[3, 5]");
    em_clear_error();
    CHECK(em_max_pool2d(x, 2, 2, 2, 2, 2, 0) == NULL);
    CHECK_ERROR_CONTAINS("at most half the kernel 2x2");
    em_clear_error();
    CHECK(em_avg_pool2d(x, 6, 2, 1, 1, 0, 0, true) == NULL);
    CHECK_ERROR_CONTAINS("[2, 3, 5, 5]");
    CHECK_ERROR_CONTAINS("smaller than the kernel 6x2");
    em_clear_error();
    CHECK(em_avg_pool2d(x, 0, 2, 1, 1, 0, 0, true) == NULL);
    CHECK_ERROR_CONTAINS("kernel 0x2");
    em_clear_error();
    CHECK(em_max_pool2d(x, 3, 3, 1, 1, INT32_MAX, 0) == NULL);
    CHECK_ERROR_CONTAINS("at most half the kernel");
    em_clear_error();
    CHECK(em_adaptive_avg_pool2d_1x1(em_tensor_zeros3(NULL, 2, 3, 4)) == NULL);
    CHECK_ERROR_CONTAINS("[2, 3, 4]");
    CHECK(em_max_pool2d(NULL, 2, 2, 2, 2, 0, 0) == NULL);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_exact();
    test_wide_2x2();
    test_gradients();
    test_errors();
    return test_finish();
}
