/* add, sub, mul, div and their scalar forms: PyTorch parity (forward and backward,
 * with broadcasting), numeric gradient checks, shape errors. */
#include <string.h>

#include "testlib.h"

typedef em_tensor *(*binary_fn)(em_tensor *, em_tensor *);

static const struct {
    const char *name;
    binary_fn fn;
} ops[] = {{"add", em_add}, {"sub", em_sub}, {"mul", em_mul}, {"div", em_div}};

static const char *const cases[] = {"same", "row", "col", "scalar"};

static void check_parity(em_st_file *f, const char *prefix, em_tensor *out, em_tensor *const *in,
                         int n_in)
{
    char key[128], what[160];
    snprintf(key, sizeof key, "%s.out", prefix);
    em_tensor *want = test_fixture_tensor(f, key);
    snprintf(what, sizeof what, "%s forward", prefix);
    CHECK_MSG(out && em_same_shape(out, want), "%s: shape %s vs %s", prefix, em_shape_str(out),
              em_shape_str(want));
    test_tensor_close(what, out, want->data, 1e-6, 1e-5);

    snprintf(key, sizeof key, "%s.w", prefix);
    em_tensor *w = test_fixture_tensor(f, key);
    CHECK(em_backward_with(out, w->data) == EM_OK);
    for (int i = 0; i < n_in; i++) {
        snprintf(key, sizeof key, "%s.grad%d", prefix, i);
        snprintf(what, sizeof what, "%s backward input %d", prefix, i);
        test_grad_close(what, in[i]->grad, test_fixture_tensor(f, key), 1e-5, 1e-4);
    }
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("binary");
    char key[128], prefix[64];
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            snprintf(prefix, sizeof prefix, "%s.%s", ops[o].name, cases[c]);
            snprintf(key, sizeof key, "%s.in0", prefix);
            em_tensor *a = test_fixture_input(f, key);
            snprintf(key, sizeof key, "%s.in1", prefix);
            em_tensor *b = test_fixture_input(f, key);
            check_parity(f, prefix, ops[o].fn(a, b), (em_tensor *[]){a, b}, 2);
            em_step_end();
        }
    em_tensor *a = test_fixture_input(f, "add_scalar.in0");
    check_parity(f, "add_scalar", em_add_scalar(a, 1.5f), &a, 1);
    em_step_end();
    a = test_fixture_input(f, "mul_scalar.in0");
    check_parity(f, "mul_scalar", em_mul_scalar(a, -2.5f), &a, 1);
    em_step_end();
    em_st_close(f);
}

static binary_fn current_op;

static em_tensor *apply_current(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    return current_op(in[0], in[1]);
}

/* Through a transposed (non-contiguous) view of the first input. */
static em_tensor *apply_current_transposed(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    return current_op(em_transpose(in[0], 0, 1), in[1]);
}

static void test_gradients(void)
{
    em_rng rng;
    em_rng_seed(&rng, 7);
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        current_op = ops[o].fn;
        em_tensor *a = test_randn(&rng, 2, (int64_t[]){4, 3}, 1.0f);
        em_tensor *b = test_randn(&rng, 1, (int64_t[]){3}, 1.0f);
        if (ops[o].fn == em_div)
            for (int i = 0; i < 3; i++)
                b->data[i] = b->data[i] > 0 ? b->data[i] + 1.0f : b->data[i] - 1.0f;
        char what[64];
        snprintf(what, sizeof what, "%s broadcast", ops[o].name);
        test_gradcheck(what, apply_current, NULL, (em_tensor *[]){a, b}, 2, 1e-2, 1e-2);
        em_tensor *at = test_randn(&rng, 2, (int64_t[]){3, 4}, 1.0f);
        em_tensor *c = test_randn(&rng, 2, (int64_t[]){4, 1}, 1.0f);
        if (ops[o].fn == em_div)
            for (int i = 0; i < 4; i++)
                c->data[i] = c->data[i] > 0 ? c->data[i] + 1.0f : c->data[i] - 1.0f;
        snprintf(what, sizeof what, "%s transposed view", ops[o].name);
        test_gradcheck(what, apply_current_transposed, NULL, (em_tensor *[]){at, c}, 2, 1e-2, 1e-2);
        em_step_end();
    }
}

static void test_shape_errors(void)
{
    em_tensor *a = em_tensor_zeros2(NULL, 3, 4);
    em_tensor *b = em_tensor_zeros2(NULL, 2, 4);
    em_clear_error();
    CHECK(em_add(a, b) == NULL);
    CHECK_ERROR_CONTAINS("[3, 4]");
    CHECK_ERROR_CONTAINS("[2, 4]");
    CHECK_ERROR_CONTAINS("add");
    /* A failed op poisons the chain instead of crashing. */
    CHECK(em_mul(em_add(a, b), a) == NULL);
    CHECK(em_backward(NULL) == EM_ERR);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_gradients();
    test_shape_errors();
    return test_finish();
}
