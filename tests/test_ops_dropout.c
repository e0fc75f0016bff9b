/* em_dropout: the dropped fraction is near p, kept values are scaled by 1/(1-p), the same
 * seed gives the same mask, evaluation and p == 0 are the identity, p == 1 zeroes, the
 * gradient is the mask's scaling; bad probabilities are refused. */
#include <string.h>

#include "testlib.h"

static void test_mask(void)
{
    const int64_t n = 100000;
    em_tensor *x = em_tensor_empty(NULL, 2, (int64_t[]){250, 400});
    for (int64_t i = 0; i < n; i++)
        x->data[i] = 1.0f + (float)(i % 7);
    x->requires_grad = true;
    static const float ps[] = {0.1f, 0.5f, 0.8f};
    for (int k = 0; k < 3; k++) {
        float p = ps[k];
        em_rng rng;
        em_rng_seed(&rng, 42);
        em_tensor *y = em_dropout(x, p, true, &rng);
        CHECK(y && y != x && em_same_shape(x, y));
        if (!y)
            continue;
        int64_t dropped = 0, wrong = 0;
        for (int64_t i = 0; i < n; i++) {
            if (y->data[i] == 0.0f)
                dropped++;
            else if (fabsf(y->data[i] - x->data[i] / (1.0f - p)) > 1e-5f * y->data[i])
                wrong++;
        }
        /* Binomial: 5 standard deviations is at most 5·sqrt(n/4) = 791 elements. */
        CHECK_MSG(fabs((double)dropped - p * n) < 800, "p=%g: dropped %lld of %lld", (double)p,
                  (long long)dropped, (long long)n);
        CHECK_MSG(wrong == 0, "p=%g: %lld kept values not scaled by 1/(1-p)", (double)p, (long long)wrong);

        /* The same seed gives the same mask; another seed another one. */
        em_rng again;
        em_rng_seed(&again, 42);
        em_tensor *y2 = em_dropout(x, p, true, &again);
        CHECK(y2 && memcmp(y2->data, y->data, (size_t)n * sizeof(float)) == 0);
        em_rng other;
        em_rng_seed(&other, 43);
        em_tensor *y3 = em_dropout(x, p, true, &other);
        CHECK(y3 && memcmp(y3->data, y->data, (size_t)n * sizeof(float)) != 0);

        /* Gradient: dy scaled by 1/(1-p) where kept, 0 where dropped. */
        x->grad = NULL;
        float *gy = em_arena_alloc(em_step_arena(), (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            gy[i] = (float)(i % 5) - 2.0f;
        CHECK(em_backward_with(y, gy) == EM_OK);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) {
            float want = y->data[i] == 0.0f ? 0.0f : gy[i] / (1.0f - p);
            bad += fabsf(x->grad[i] - want) > 1e-6f * (1.0f + fabsf(want));
        }
        CHECK_MSG(bad == 0, "p=%g: %lld gradient elements differ from the mask's scaling", (double)p,
                  (long long)bad);
        em_step_end();
        x = em_tensor_empty(NULL, 2, (int64_t[]){250, 400});
        for (int64_t i = 0; i < n; i++)
            x->data[i] = 1.0f + (float)(i % 7);
        x->requires_grad = true;
    }
    em_step_end();
}

static void test_identity_cases(void)
{
    em_rng rng;
    em_rng_seed(&rng, 1);
    em_tensor *x = test_randn(&rng, 2, (int64_t[]){3, 5}, 1.0f);
    em_rng before = rng;
    CHECK(em_dropout(x, 0.5f, false, &rng) == x);
    CHECK(em_dropout(x, 0.0f, true, &rng) == x);
    CHECK(em_dropout(x, 0.5f, false, NULL) == x);
    CHECK(memcmp(&before, &rng, sizeof rng) == 0); /* evaluation draws nothing */

    em_tensor *y = em_dropout(x, 1.0f, true, &rng);
    CHECK(y != NULL);
    int64_t nonzero = 0;
    for (int64_t i = 0; y && i < y->numel; i++)
        nonzero += y->data[i] != 0.0f;
    CHECK(nonzero == 0);

    /* A non-contiguous view is masked in its logical order. */
    em_tensor *xt = em_transpose(x, 0, 1);
    em_rng a, b;
    em_rng_seed(&a, 3);
    em_rng_seed(&b, 3);
    em_tensor *yt = em_dropout(xt, 0.5f, true, &a);
    em_tensor *yd = em_dropout(em_tensor_clone(NULL, xt), 0.5f, true, &b);
    CHECK(yt && yd);
    if (yt && yd)
        test_tensor_close("dropout of a transposed view", yt, yd->data, 0, 0);
    em_step_end();
}

static em_rng grad_rng;

static em_tensor *apply_dropout(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    em_rng_seed(&grad_rng, 77); /* the same mask for every probe */
    return em_dropout(in[0], 0.3f, true, &grad_rng);
}

static void test_gradcheck_dropout(void)
{
    em_rng rng;
    em_rng_seed(&rng, 2);
    em_tensor *x = test_randn(&rng, 3, (int64_t[]){2, 3, 4}, 1.0f);
    test_gradcheck("dropout", apply_dropout, NULL, &x, 1, 1e-2, 1e-3);
    em_step_end();
}

static void test_errors(void)
{
    em_rng rng;
    em_rng_seed(&rng, 1);
    em_tensor *x = em_tensor_zeros2(NULL, 2, 3);
    em_clear_error();
    CHECK(em_dropout(x, 1.5f, true, &rng) == NULL);
    CHECK_ERROR_CONTAINS("1.5");
    CHECK_ERROR_CONTAINS("[0, 1]");
    em_clear_error();
    CHECK(em_dropout(x, -0.1f, false, &rng) == NULL);
    CHECK_ERROR_CONTAINS("[2, 3]");
    em_clear_error();
    CHECK(em_dropout(x, NAN, true, &rng) == NULL);
    em_clear_error();
    CHECK(em_dropout(x, 0.5f, true, NULL) == NULL);
    CHECK_ERROR_CONTAINS("random generator");
    CHECK(em_dropout(NULL, 0.5f, true, &rng) == NULL);
    em_step_end();
}

int main(void)
{
    test_mask();
    test_identity_cases();
    test_gradcheck_dropout();
    test_errors();
    return test_finish();
}
