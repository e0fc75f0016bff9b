/* The tape: gradients accumulate until zeroed, no-grad records nothing, backward
 * rejects what it cannot do, and the gradient checker itself catches a wrong gradient. */
#include <string.h>

#include "testlib.h"

static void test_accumulation(void)
{
    em_arena *params = em_arena_create(0);
    em_tensor *w = em_param_new(params, 1, (int64_t[]){3}, "w");
    for (int i = 0; i < 3; i++)
        w->data[i] = (float)(i + 1);
    for (int pass = 1; pass <= 2; pass++) {
        /* loss = sum(w * w * x) with x = 2: d/dw = 4w */
        em_tensor *x = em_tensor_full(NULL, 1, (int64_t[]){3}, 2.0f);
        em_tensor *loss = em_sum_all(em_mul(em_mul(w, w), x));
        CHECK(em_backward(loss) == EM_OK);
        for (int i = 0; i < 3; i++)
            CHECK_NEAR(w->grad[i], pass * 4.0f * (float)(i + 1), 1e-5);
        em_step_end(); /* ends the step; parameter gradients stay */
    }
    em_zero_grad(w);
    CHECK(w->grad[0] == 0.0f && w->grad[2] == 0.0f);

    /* Two backward passes over one tape: intermediate gradients start afresh. */
    em_tensor *y = em_mul_scalar(w, 3.0f);
    em_tensor *l1 = em_sum_all(y);
    CHECK(em_backward(l1) == EM_OK);
    CHECK(em_backward(l1) == EM_OK);
    CHECK_NEAR(w->grad[1], 6.0f, 1e-6);
    em_step_end();
    em_arena_destroy(params);
}

static void test_no_grad(void)
{
    em_arena *params = em_arena_create(0);
    em_tensor *w = em_param_new(params, 1, (int64_t[]){4}, "w");
    bool was = em_set_grad_enabled(false);
    CHECK(was);
    em_tensor *y = em_mul(w, w);
    CHECK(y && !y->requires_grad && em_tape_length() == 0);
    em_clear_error();
    CHECK(em_backward(em_sum_all(y)) == EM_ERR);
    CHECK_ERROR_CONTAINS("does not require a gradient");
    em_set_grad_enabled(true);
    y = em_mul(w, w);
    CHECK(y->requires_grad && em_tape_length() == 1);
    CHECK(em_backward(y) == EM_ERR);
    CHECK_ERROR_CONTAINS("scalar loss");
    /* Frozen parameters get no gradient and no tape node. */
    w->requires_grad = false;
    size_t before = em_tape_length();
    CHECK(!em_mul(w, w)->requires_grad && em_tape_length() == before);
    em_step_end();
    CHECK(em_tape_length() == 0);
    em_arena_destroy(params);
}

/* An op with a deliberately wrong backward: the checker must flag it. */
static void wrong_backward(em_node *n)
{
    for (int64_t i = 0; i < n->in[0]->numel; i++)
        n->in[0]->grad[i] += 1.5f * n->out->grad[i]; /* true derivative of 2x is 2 */
}

static em_tensor *double_it_wrongly(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    em_tensor *out = em_tensor_empty(NULL, in[0]->ndim, in[0]->shape);
    for (int64_t i = 0; i < out->numel; i++)
        out->data[i] = 2.0f * in[0]->data[i];
    em_record("double_wrong", out, 1, in, wrong_backward);
    return out;
}

static em_tensor *square(void *user, em_tensor *const *in, int n)
{
    (void)user;
    (void)n;
    return em_mul(in[0], in[0]);
}

static void test_gradcheck_detects_errors(void)
{
    em_rng rng;
    em_rng_seed(&rng, 1);
    em_tensor *x = test_randn(&rng, 2, (int64_t[]){3, 5}, 1.0f);
    em_gradcheck_report r;
    CHECK(em_gradcheck(double_it_wrongly, NULL, &x, 1, 1e-2, 0, &r) == EM_OK);
    CHECK_MSG(r.max_rel_error > 0.2, "wrong backward went unnoticed: %g", r.max_rel_error);
    CHECK(em_gradcheck(square, NULL, &x, 1, 1e-2, 0, &r) == EM_OK);
    CHECK_MSG(r.max_rel_error < 1e-2, "correct backward flagged: %g", r.max_rel_error);
    CHECK(r.checked == 15);
    /* Probing a subset. */
    CHECK(em_gradcheck(square, NULL, &x, 1, 1e-2, 4, &r) == EM_OK && r.checked == 4);
    em_tensor *plain = em_tensor_zeros1(NULL, 3);
    CHECK(em_gradcheck(square, NULL, &plain, 1, 1e-2, 0, &r) == EM_ERR);
    em_step_end();
}

/* A leaf that outlives the step (not a parameter) must not keep a gradient pointer
 * into the reset step arena. */
static void test_leaf_grad_cleared_at_step_end(void)
{
    em_arena *longlived = em_arena_create(0);
    em_tensor *x = em_tensor_full(longlived, 1, (int64_t[]){4}, 1.0f);
    x->requires_grad = true;
    for (int step = 0; step < 3; step++) {
        CHECK(em_backward(em_sum_all(em_mul(x, x))) == EM_OK);
        CHECK(x->grad && x->grad[0] == 2.0f);
        em_step_end();
        CHECK(x->grad == NULL);
    }
    em_arena_destroy(longlived);
}

/* Gradients a backward takes itself: a reshape's input adopts the output's gradient when
 * it has none yet and adds to its own otherwise, whichever consumer's backward runs
 * first; a parameter keeps its own buffer; em_grad_for_write says when a buffer is new. */
static void test_taken_gradients(void)
{
    em_arena *longlived = em_arena_create(0);
    em_tensor *x = em_tensor_full(longlived, 1, (int64_t[]){4}, 0.0f);
    for (int i = 0; i < 4; i++)
        x->data[i] = (float)(i + 1);
    x->requires_grad = true;
    for (int order = 0; order < 2; order++) {
        /* loss = sum(x·x) + sum(3·reshape(x)): d/dx = 3 + 2x. Recorded in this order, the
         * reshape's backward runs first and x adopts its gradient; in the other order it
         * runs last and adds to the gradient x already has. */
        em_tensor *squares = NULL, *viewed = NULL, *r = NULL;
        for (int part = 0; part < 2; part++) {
            if ((part == 0) == (order == 0))
                squares = em_sum_all(em_mul(x, x));
            else
                viewed = em_sum_all(em_mul_scalar(r = em_reshape(x, 2, (int64_t[]){2, 2}), 3.0f));
        }
        CHECK(em_backward(em_add(squares, viewed)) == EM_OK);
        for (int i = 0; i < 4; i++)
            CHECK_NEAR(x->grad[i], 3.0f + 2.0f * (float)(i + 1), 1e-5);
        CHECK((x->grad == r->grad) == (order == 0));
        em_step_end();
    }

    /* a parameter's gradient stays its own buffer and accumulates */
    em_tensor *w = em_param_new(longlived, 1, (int64_t[]){4}, "w");
    float *own = w->grad;
    for (int pass = 1; pass <= 2; pass++) {
        CHECK(em_backward(em_sum_all(em_mul_scalar(em_reshape(w, 2, (int64_t[]){2, 2}), 2.0f))) == EM_OK);
        CHECK(w->grad == own);
        CHECK_NEAR(w->grad[3], 2.0f * (float)pass, 1e-6);
        em_step_end();
    }
    float spare[4];
    CHECK(!em_grad_adopt(w, spare));

    /* em_grad_for_write: a new buffer once, then the same one */
    em_tensor *t = em_tensor_zeros1(NULL, 8);
    bool fresh = false;
    float *first = em_grad_for_write(t, &fresh);
    CHECK(first && fresh);
    float *again = em_grad_for_write(t, &fresh);
    CHECK(again == first && !fresh);
    CHECK(!em_grad_adopt(t, spare));
    em_step_end();
    em_arena_destroy(longlived);
}

int main(void)
{
    test_taken_gradients();
    test_leaf_grad_cleared_at_step_end();
    test_accumulation();
    test_no_grad();
    test_gradcheck_detects_errors();
    return test_finish();
}
