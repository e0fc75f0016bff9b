/* reshape, transpose, permute, slice, concat, expand: they share data where they can,
 * and their gradients land on the right input elements (PyTorch parity). */
#include "testlib.h"

static void check_case(em_st_file *f, const char *prefix, em_tensor *out, em_tensor *const *in, int n)
{
    char key[128], what[160];
    snprintf(key, sizeof key, "%s.out", prefix);
    em_tensor *want = test_fixture_tensor(f, key);
    CHECK_MSG(out && em_same_shape(out, want), "%s: shape %s, expected %s", prefix, em_shape_str(out),
              em_shape_str(want));
    snprintf(what, sizeof what, "%s forward", prefix);
    test_tensor_close(what, out, want->data, 0, 0);
    snprintf(key, sizeof key, "%s.w", prefix);
    CHECK(em_backward_with(out, test_fixture_tensor(f, key)->data) == EM_OK);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%s.grad%d", prefix, i);
        snprintf(what, sizeof what, "%s backward %d", prefix, i);
        test_grad_close(what, in[i]->grad, test_fixture_tensor(f, key), 1e-6, 1e-6);
    }
    em_step_end();
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("view");
    em_tensor *a = test_fixture_input(f, "transpose.in0");
    em_tensor *t = em_transpose(a, 0, 2);
    CHECK(t && t->data == a->data && !em_is_contiguous(t)); /* a view, no copy */
    check_case(f, "transpose", t, &a, 1);

    a = test_fixture_input(f, "permute.in0");
    check_case(f, "permute", em_permute(a, (int[]){1, 2, 0}), &a, 1);

    a = test_fixture_input(f, "slice.in0");
    em_tensor *s = em_slice(em_slice(a, 1, 1, 3, 1), 2, 0, 4, 2);
    CHECK(s && s->data == a->data + a->stride[1]);
    check_case(f, "slice", s, &a, 1);

    a = test_fixture_input(f, "reshape_t.in0");
    check_case(f, "reshape_t", em_reshape(em_transpose(a, 1, 2), 2, (int64_t[]){2, -1}), &a, 1);

    a = test_fixture_input(f, "concat.in0");
    em_tensor *b = test_fixture_input(f, "concat.in1");
    check_case(f, "concat", em_concat((em_tensor *[]){a, b}, 2, 1), (em_tensor *[]){a, b}, 2);

    a = test_fixture_input(f, "expand.in0");
    check_case(f, "expand", em_expand(a, 3, (int64_t[]){2, 3, 4}), &a, 1);
    em_st_close(f);
}

static em_tensor *view_chain(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    /* permute -> slice -> reshape -> multiply, so gradients cross every view kind */
    em_tensor *p = em_permute(in[0], (int[]){2, 0, 1});
    em_tensor *s = em_slice(p, 0, 1, 5, 2);
    em_tensor *r = em_reshape(s, 2, (int64_t[]){-1, 3});
    return em_mul(r, r);
}

static void test_gradcheck_views(void)
{
    em_rng rng;
    em_rng_seed(&rng, 3);
    em_tensor *x = test_randn(&rng, 3, (int64_t[]){2, 3, 5}, 1.0f);
    test_gradcheck("permute/slice/reshape", view_chain, NULL, &x, 1, 1e-2, 1e-2);
    em_step_end();
}

static void test_reshape_views_and_errors(void)
{
    em_tensor *a = em_tensor_zeros3(NULL, 2, 3, 4);
    em_tensor *r = em_reshape(a, 2, (int64_t[]){6, 4});
    CHECK(r && r->data == a->data);
    em_tensor *f = em_flatten(a, 1);
    CHECK(f && f->ndim == 2 && f->shape[1] == 12);
    em_clear_error();
    CHECK(em_reshape(a, 2, (int64_t[]){5, 5}) == NULL);
    CHECK_ERROR_CONTAINS("[2, 3, 4]");
    CHECK_ERROR_CONTAINS("[5, 5]");
    CHECK(em_reshape(a, 2, (int64_t[]){-1, -1}) == NULL);
    CHECK(em_transpose(a, 0, 3) == NULL);
    CHECK_ERROR_CONTAINS("out of range");
    CHECK(em_slice(a, 1, 2, 2, 1) == NULL);
    CHECK(em_permute(a, (int[]){0, 0, 1}) == NULL);
    CHECK(em_concat((em_tensor *[]){a, em_tensor_zeros2(NULL, 2, 3)}, 2, 0) == NULL);
    CHECK(em_expand(a, 2, (int64_t[]){3, 4}) == NULL);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_gradcheck_views();
    test_reshape_views_and_errors();
    return test_finish();
}
