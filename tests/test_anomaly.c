/* Anomaly detection: with it on, the first op whose forward output is non-finite is
 * named (or the input that already was), backward refuses with that message, and a
 * backward that turns finite gradients non-finite stops at that op; with it off nothing
 * is checked. */
#include <string.h>

#include "testlib.h"

static em_tensor *leaf(int64_t n, const float *values, const char *name)
{
    em_tensor *t = em_tensor_from(NULL, 1, &n, values);
    t->requires_grad = true;
    t->name = name;
    return t;
}

static void test_default_off(void)
{
    CHECK(!em_detect_anomaly_enabled());
    CHECK(em_set_detect_anomaly(true) == false);
    CHECK(em_detect_anomaly_enabled());
    CHECK(em_set_detect_anomaly(false) == true);
    /* Off: a NaN goes through forward and backward unremarked. */
    em_tensor *x = leaf(3, (const float[]){1.0f, -1.0f, 2.0f}, "x");
    em_tensor *loss = em_sum_all(em_log(x));
    CHECK(isnan(em_item(loss)));
    CHECK(strcmp(em_anomaly(), "") == 0);
    CHECK(em_backward(loss) == EM_OK);
    em_step_end();
}

/* log of a negative number: the op that made the NaN is named with the element. */
static void test_forward_names_op(void)
{
    em_set_detect_anomaly(true);
    em_tensor *x = leaf(3, (const float[]){1.0f, -1.0f, 2.0f}, "x");
    em_tensor *y = em_mul_scalar(x, 2.0f);
    CHECK(strcmp(em_anomaly(), "") == 0);
    em_tensor *loss = em_sum_all(em_log(y));
    CHECK_MSG(strstr(em_anomaly(), "op 'log' produced NaN at element 1 of its output [3]") != NULL,
              "%s", em_anomaly());
    /* The later sum is not blamed: the first anomaly of the step is kept. */
    CHECK(strstr(em_anomaly(), "sum") == NULL);
    CHECK(em_backward(loss) == EM_ERR);
    CHECK_ERROR_CONTAINS("anomaly detection: op 'log' produced NaN at element 1");
    CHECK(x->grad == NULL || (x->grad[0] == 0.0f && x->grad[1] == 0.0f));
    em_step_end();
    CHECK(strcmp(em_anomaly(), "") == 0);
    em_set_detect_anomaly(false);
}

/* A parameter that already holds infinity: the first op reading it names it. */
static void test_forward_names_input(void)
{
    em_set_detect_anomaly(true);
    em_tensor *w = leaf(4, (const float[]){0.5f, 1.0f, INFINITY, 2.0f}, "0.weight");
    em_tensor *x = em_tensor_from(NULL, 1, (int64_t[]){4}, (const float[]){1, 2, 3, 4});
    em_tensor *loss = em_sum_all(em_mul(x, w));
    (void)loss;
    CHECK_MSG(strstr(em_anomaly(), "of op 'mul' has inf at element 2") != NULL, "%s", em_anomaly());
    CHECK_MSG(strstr(em_anomaly(), "input 1 '0.weight' [4] already had inf at element 2") != NULL, "%s",
              em_anomaly());
    em_step_end();
    em_set_detect_anomaly(false);
}

/* A strided view: elements are counted in row-major order of the view. */
static void test_forward_view(void)
{
    em_set_detect_anomaly(true);
    /* [[1, NaN, 3], [4, 5, 6]] transposed is [[1, 4], [NaN, 5], [3, 6]]: NaN at element
     * 2 of the view, element 1 of its base. */
    em_tensor *a = em_tensor_from(NULL, 2, (int64_t[]){2, 3}, (const float[]){1, NAN, 3, 4, 5, 6});
    a->requires_grad = true;
    em_tensor *t = em_transpose(a, 0, 1);
    CHECK(!em_is_contiguous(t));
    CHECK_MSG(strstr(em_anomaly(), "the output [3, 2] of op 'permute' has NaN at element 2, and its "
                                   "input 0 [2, 3] already had NaN at element 1") != NULL,
              "%s", em_anomaly());
    em_step_end();
    em_set_detect_anomaly(false);
}

/* sqrt at 0 is finite forward and infinite backward: the backward names the op. */
static void test_backward_names_op(void)
{
    em_set_detect_anomaly(true);
    em_tensor *x = leaf(3, (const float[]){4.0f, 0.0f, 1.0f}, "x");
    em_tensor *loss = em_sum_all(em_sqrt(em_mul_scalar(x, 1.0f)));
    CHECK_NEAR(em_item(loss), 3.0, 1e-6);
    CHECK(strcmp(em_anomaly(), "") == 0);
    CHECK(em_backward(loss) == EM_ERR);
    CHECK_ERROR_CONTAINS("backward of op 'sqrt' produced inf at element 1 of the gradient of its input 0 [3]");
    CHECK_ERROR_CONTAINS("the gradient arriving at its output [3] is finite");
    em_step_end();

    /* The same graph off: backward completes with an infinite gradient. */
    em_set_detect_anomaly(false);
    x = leaf(3, (const float[]){4.0f, 0.0f, 1.0f}, "x");
    loss = em_sum_all(em_sqrt(x));
    CHECK(em_backward(loss) == EM_OK);
    CHECK(isinf(x->grad[1]));
    CHECK_NEAR(x->grad[0], 0.25, 1e-6);
    em_step_end();
}

/* A non-finite upstream gradient is refused before any node runs. */
static void test_seed(void)
{
    em_set_detect_anomaly(true);
    em_tensor *x = leaf(2, (const float[]){1.0f, 2.0f}, "x");
    em_tensor *y = em_mul_scalar(x, 3.0f);
    CHECK(em_backward_with(y, (const float[]){1.0f, NAN}) == EM_ERR);
    CHECK_ERROR_CONTAINS("the gradient seeding backward has NaN at element 1");
    em_step_end();
    em_set_detect_anomaly(false);
}

/* With everything finite, anomaly mode changes nothing: same gradients as off. */
static void test_finite_unchanged(void)
{
    float grads[2][4];
    for (int mode = 0; mode < 2; mode++) {
        em_set_detect_anomaly(mode == 1);
        em_tensor *x = leaf(4, (const float[]){0.5f, -1.0f, 2.0f, 3.0f}, "x");
        em_tensor *loss = em_mean_all(em_mul(em_tanh(x), em_exp(x)));
        CHECK(em_backward(loss) == EM_OK);
        CHECK(strcmp(em_anomaly(), "") == 0);
        memcpy(grads[mode], x->grad, sizeof grads[mode]);
        em_step_end();
    }
    CHECK(memcmp(grads[0], grads[1], sizeof grads[0]) == 0);
    em_set_detect_anomaly(false);
}

int main(void)
{
    test_default_off();
    test_forward_names_op();
    test_forward_names_input();
    test_forward_view();
    test_backward_names_op();
    test_seed();
    test_finite_unchanged();
    em_release_thread_state();
    return test_finish();
}
