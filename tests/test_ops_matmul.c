/* em_matmul and em_linear: PyTorch parity (forward and backward) for 2-D, vector,
 * batched and broadcast products and transposed or strided views; linear with and
 * without bias and with each activation; numeric gradient checks; larger threaded
 * shapes against a double-precision reference; shape errors. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

typedef em_tensor *(*view_fn)(em_tensor *);

static em_tensor *as_is(em_tensor *t) { return t; }
static em_tensor *transpose_last(em_tensor *t) { return em_transpose(t, -2, -1); }
static em_tensor *every_other_column(em_tensor *t) { return em_slice(t, 1, 0, t->shape[1], 2); }

/* Output, then backward of sum(out * w), against the fixture's values. */
static void check_parity(em_st_file *f, const char *prefix, em_tensor *out, em_tensor *const *in,
                         int n_in)
{
    char key[128], what[160];
    snprintf(key, sizeof key, "%s.out", prefix);
    em_tensor *want = test_fixture_tensor(f, key);
    CHECK_MSG(out && em_same_shape(out, want), "%s: shape %s vs %s (%s)", prefix,
              out ? em_shape_str(out) : "NULL", em_shape_str(want), ember_last_error());
    if (!out || !em_same_shape(out, want))
        return;
    snprintf(what, sizeof what, "%s forward", prefix);
    test_tensor_close(what, out, want->data, 1e-5, 1e-5);

    snprintf(key, sizeof key, "%s.w", prefix);
    em_tensor *w = test_fixture_tensor(f, key);
    CHECK(em_backward_with(out, w->data) == EM_OK);
    for (int i = 0; i < n_in; i++) {
        if (!in[i]->requires_grad)
            continue;
        snprintf(key, sizeof key, "%s.grad%d", prefix, i);
        snprintf(what, sizeof what, "%s backward input %d", prefix, i);
        test_grad_close(what, in[i]->grad, test_fixture_tensor(f, key), 1e-5, 1e-4);
    }
}

static em_tensor *load_input(em_st_file *f, const char *prefix, int i)
{
    char key[128];
    snprintf(key, sizeof key, "%s.in%d", prefix, i);
    return test_fixture_input(f, key);
}

static void test_matmul_parity(void)
{
    static const struct {
        const char *name;
        view_fn view_a, view_b;
    } cases[] = {
        {"mm", as_is, as_is},          {"bcast", as_is, as_is},     {"batched", as_is, as_is},
        {"stack", as_is, as_is},       {"shared_a", as_is, as_is},  {"tt", transpose_last, transpose_last},
        {"bt", transpose_last, as_is}, {"strided", every_other_column, as_is},
        {"vm", as_is, as_is},          {"mv", as_is, as_is},        {"bmv", as_is, as_is},
    };
    em_st_file *f = test_fixture("matmul");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        em_tensor *a = load_input(f, cases[c].name, 0), *b = load_input(f, cases[c].name, 1);
        em_tensor *va = cases[c].view_a(a), *vb = cases[c].view_b(b);
        size_t before = em_tape_length();
        em_tensor *out = em_matmul(va, vb);
        /* Transposed views go to BLAS as transpose flags: one node, no copy. A view with
         * no unit stride is copied first (a contiguous node). */
        size_t want_nodes = cases[c].view_a == every_other_column ? 2 : 1;
        CHECK_MSG(em_tape_length() - before == want_nodes, "%s: %zu nodes recorded, expected %zu",
                  cases[c].name, em_tape_length() - before, want_nodes);
        check_parity(f, cases[c].name, out, (em_tensor *[]){a, b}, 2);
        em_step_end();
    }
    em_st_close(f);
}

static const struct {
    const char *name;
    em_activation act;
    float param;
} activations[] = {
    {"none", EM_ACT_NONE, 0.0f},
    {"relu", EM_ACT_RELU, 0.0f},
    {"leaky_relu", EM_ACT_LEAKY_RELU, 0.1f},
    {"leaky_relu_neg", EM_ACT_LEAKY_RELU, -0.2f},
    {"sigmoid", EM_ACT_SIGMOID, 0.0f},
    {"tanh", EM_ACT_TANH, 0.0f},
    {"gelu", EM_ACT_GELU, 0.0f},
    {"gelu_tanh", EM_ACT_GELU_TANH, 0.0f},
    {"silu", EM_ACT_SILU, 0.0f},
};
#define N_ACTIVATIONS (sizeof activations / sizeof activations[0])

static void test_linear_parity(void)
{
    em_st_file *f = test_fixture("matmul");
    char prefix[64];
    for (size_t i = 0; i < N_ACTIVATIONS; i++) {
        snprintf(prefix, sizeof prefix, "linear.%s", activations[i].name);
        em_tensor *x = load_input(f, prefix, 0), *w = load_input(f, prefix, 1);
        em_tensor *b = load_input(f, prefix, 2);
        check_parity(f, prefix, em_linear(x, w, b, activations[i].act, activations[i].param),
                     (em_tensor *[]){x, w, b}, 3);
        em_step_end();

        snprintf(prefix, sizeof prefix, "linear_nobias.%s", activations[i].name);
        x = load_input(f, prefix, 0), w = load_input(f, prefix, 1);
        check_parity(f, prefix, em_linear(x, w, NULL, activations[i].act, activations[i].param),
                     (em_tensor *[]){x, w}, 2);
        em_step_end();

        /* Without gradients the activation runs in place; same values. */
        snprintf(prefix, sizeof prefix, "linear.%s", activations[i].name);
        x = load_input(f, prefix, 0), w = load_input(f, prefix, 1), b = load_input(f, prefix, 2);
        bool was = em_set_grad_enabled(false);
        em_tensor *y = em_linear(x, w, b, activations[i].act, activations[i].param);
        em_set_grad_enabled(was);
        char key[96];
        snprintf(key, sizeof key, "%s.out", prefix);
        CHECK(y && !y->requires_grad && em_tape_length() == 0);
        test_tensor_close(prefix, y, test_fixture_tensor(f, key)->data, 1e-5, 1e-5);
        em_step_end();
    }

    em_tensor *x = load_input(f, "linear_3d", 0), *w = load_input(f, "linear_3d", 1),
              *b = load_input(f, "linear_3d", 2);
    check_parity(f, "linear_3d", em_linear(x, w, b, EM_ACT_RELU, 0.0f), (em_tensor *[]){x, w, b}, 3);
    em_step_end();

    x = load_input(f, "linear_views", 0), w = load_input(f, "linear_views", 1);
    b = load_input(f, "linear_views", 2);
    em_tensor *xt = em_transpose(x, 0, 1), *wt = em_transpose(w, 0, 1);
    size_t before = em_tape_length();
    em_tensor *y = em_linear(xt, wt, b, EM_ACT_NONE, 0.0f);
    CHECK_MSG(em_tape_length() - before == 1, "transposed views were copied (%zu nodes)",
              em_tape_length() - before);
    check_parity(f, "linear_views", y, (em_tensor *[]){x, w, b}, 3);
    em_step_end();

    x = load_input(f, "linear_vec", 0), w = load_input(f, "linear_vec", 1);
    b = load_input(f, "linear_vec", 2);
    check_parity(f, "linear_vec", em_linear(x, w, b, EM_ACT_TANH, 0.0f), (em_tensor *[]){x, w, b}, 3);
    em_step_end();
    em_st_close(f);
}

/* A network's input needs no gradient: dX is skipped, dW and db are unchanged; and
 * gradients of leaves accumulate over two backward passes. */
static void test_linear_gradient_flow(void)
{
    em_st_file *f = test_fixture("matmul");
    em_tensor *x = test_fixture_tensor(f, "linear.relu.in0");
    em_tensor *w = load_input(f, "linear.relu", 1), *b = load_input(f, "linear.relu", 2);
    check_parity(f, "linear.relu", em_linear(x, w, b, EM_ACT_RELU, 0.0f), (em_tensor *[]){x, w, b}, 3);
    CHECK(x->grad == NULL);
    em_step_end();

    x = load_input(f, "linear.gelu", 0), w = load_input(f, "linear.gelu", 1);
    b = load_input(f, "linear.gelu", 2);
    em_tensor *g = test_fixture_tensor(f, "linear.gelu.w");
    for (int pass = 0; pass < 2; pass++)
        CHECK(em_backward_with(em_linear(x, w, b, EM_ACT_GELU, 0.0f), g->data) == EM_OK);
    const char *grads[3] = {"linear.gelu.grad0", "linear.gelu.grad1", "linear.gelu.grad2"};
    em_tensor *ins[3] = {x, w, b};
    for (int i = 0; i < 3; i++) {
        em_tensor *want = test_fixture_tensor(f, grads[i]);
        for (int64_t j = 0; j < want->numel; j++)
            want->data[j] *= 2.0f;
        test_grad_close(grads[i], ins[i]->grad, want, 1e-5, 1e-4);
    }
    em_step_end();
    em_st_close(f);
}

/* ---- numeric gradient checks ---------------------------------------------------------- */

static em_tensor *gc_matmul(void *user, em_tensor *const *in, int n)
{
    (void)n;
    const view_fn *views = user;
    return em_matmul(views[0](in[0]), views[1](in[1]));
}

static em_activation gc_act;
static float gc_param;

static em_tensor *gc_linear(void *user, em_tensor *const *in, int n)
{
    (void)user;
    return em_linear(in[0], in[1], n > 2 ? in[2] : NULL, gc_act, gc_param);
}

static void test_gradchecks(void)
{
    em_rng rng;
    em_rng_seed(&rng, 11);
    view_fn plain[2] = {as_is, as_is}, both_t[2] = {transpose_last, transpose_last};
    view_fn strided[2] = {every_other_column, as_is};
    em_tensor *a = test_randn(&rng, 2, (int64_t[]){4, 3}, 1.0f);
    em_tensor *b = test_randn(&rng, 2, (int64_t[]){3, 5}, 1.0f);
    test_gradcheck("matmul 2-D", gc_matmul, plain, (em_tensor *[]){a, b}, 2, 1e-2, 1e-2);
    a = test_randn(&rng, 3, (int64_t[]){2, 1, 3}, 1.0f);
    b = test_randn(&rng, 4, (int64_t[]){3, 1, 3, 2}, 1.0f);
    test_gradcheck("matmul broadcast", gc_matmul, plain, (em_tensor *[]){a, b}, 2, 1e-2, 1e-2);
    a = test_randn(&rng, 3, (int64_t[]){2, 3, 4}, 1.0f);
    b = test_randn(&rng, 3, (int64_t[]){2, 5, 3}, 1.0f);
    test_gradcheck("matmul transposed", gc_matmul, both_t, (em_tensor *[]){a, b}, 2, 1e-2, 1e-2);
    a = test_randn(&rng, 2, (int64_t[]){3, 8}, 1.0f);
    b = test_randn(&rng, 2, (int64_t[]){4, 2}, 1.0f);
    test_gradcheck("matmul strided", gc_matmul, strided, (em_tensor *[]){a, b}, 2, 1e-2, 1e-2);
    a = test_randn(&rng, 1, (int64_t[]){4}, 1.0f);
    b = test_randn(&rng, 3, (int64_t[]){2, 4, 3}, 1.0f);
    test_gradcheck("matmul vector", gc_matmul, plain, (em_tensor *[]){a, b}, 2, 1e-2, 1e-2);
    em_step_end();

    for (size_t i = 0; i < N_ACTIVATIONS; i++) {
        gc_act = activations[i].act;
        gc_param = activations[i].param;
        em_tensor *x, *w, *bias;
        /* Redraw until no pre-activation sits within reach of a probe of relu's kink. */
        for (int attempt = 0;; attempt++) {
            x = test_randn(&rng, 2, (int64_t[]){5, 6}, 1.0f);
            w = test_randn(&rng, 2, (int64_t[]){4, 6}, 0.5f);
            bias = test_randn(&rng, 1, (int64_t[]){4}, 0.5f);
            bool was = em_set_grad_enabled(false);
            em_tensor *pre = em_linear(x, w, NULL, EM_ACT_NONE, 0.0f);
            em_set_grad_enabled(was);
            float nearest = INFINITY;
            for (int64_t j = 0; j < pre->numel; j++) {
                nearest = fminf(nearest, fabsf(pre->data[j]));
                nearest = fminf(nearest, fabsf(pre->data[j] + bias->data[j % 4]));
            }
            if (nearest > 0.05f || attempt == 50)
                break;
        }
        char what[64];
        double eps = 1e-2;
        snprintf(what, sizeof what, "linear %s", activations[i].name);
        test_gradcheck(what, gc_linear, NULL, (em_tensor *[]){x, w, bias}, 3, eps, 1e-2);
        snprintf(what, sizeof what, "linear %s without bias", activations[i].name);
        test_gradcheck(what, gc_linear, NULL, (em_tensor *[]){x, w}, 2, eps, 1e-2);
        em_step_end();
    }
}

/* ---- larger shapes (threaded passes, threaded BLAS) against double precision ------ */

static double reference_act(em_activation act, double v)
{
    switch (act) {
    case EM_ACT_RELU: return v > 0 ? v : 0;
    case EM_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    default: return v;
    }
}

static double reference_act_grad(em_activation act, double v)
{
    switch (act) {
    case EM_ACT_RELU: return v > 0 ? 1 : 0;
    case EM_ACT_GELU: return 0.5 * (1.0 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
    default: return 1;
    }
}

static void test_linear_large(em_activation act)
{
    enum { N = 160, IN = 48, OUT = 300 };
    em_rng rng;
    em_rng_seed(&rng, 5);
    em_tensor *x = test_randn(&rng, 2, (int64_t[]){N, IN}, 1.0f);
    em_tensor *w = test_randn(&rng, 2, (int64_t[]){OUT, IN}, 0.2f);
    em_tensor *b = test_randn(&rng, 1, (int64_t[]){OUT}, 0.2f);
    em_tensor *dy = test_randn(&rng, 2, (int64_t[]){N, OUT}, 1.0f);
    em_tensor *y = em_linear(x, w, b, act, 0.0f);
    CHECK(y != NULL);
    if (!y)
        return;
    CHECK(em_backward_with(y, dy->data) == EM_OK);

    double *g = calloc((size_t)N * OUT, sizeof(double));
    float *want_y = malloc((size_t)N * OUT * sizeof(float));
    float *want_dx = calloc((size_t)N * IN, sizeof(float));
    float *want_dw = calloc((size_t)OUT * IN, sizeof(float));
    float *want_db = calloc(OUT, sizeof(float));
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OUT; o++) {
            double pre = b->data[o];
            for (int k = 0; k < IN; k++)
                pre += (double)x->data[i * IN + k] * w->data[o * IN + k];
            want_y[i * OUT + o] = (float)reference_act(act, pre);
            g[i * OUT + o] = dy->data[i * OUT + o] * reference_act_grad(act, pre);
        }
    for (int o = 0; o < OUT; o++) {
        double s = 0;
        for (int i = 0; i < N; i++)
            s += g[i * OUT + o];
        want_db[o] = (float)s;
        for (int k = 0; k < IN; k++) {
            double t = 0;
            for (int i = 0; i < N; i++)
                t += g[i * OUT + o] * x->data[i * IN + k];
            want_dw[o * IN + k] = (float)t;
        }
    }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < IN; k++) {
            double t = 0;
            for (int o = 0; o < OUT; o++)
                t += g[i * OUT + o] * w->data[o * IN + k];
            want_dx[i * IN + k] = (float)t;
        }
    const char *name = em_activation_name(act);
    char what[64];
    snprintf(what, sizeof what, "large linear %s forward", name);
    test_tensor_close(what, y, want_y, 1e-4, 1e-4);
    em_tensor *expected_dx = em_tensor_from(NULL, 2, (int64_t[]){N, IN}, want_dx);
    em_tensor *expected_dw = em_tensor_from(NULL, 2, (int64_t[]){OUT, IN}, want_dw);
    em_tensor *expected_db = em_tensor_from(NULL, 1, (int64_t[]){OUT}, want_db);
    snprintf(what, sizeof what, "large linear %s dx", name);
    test_grad_close(what, x->grad, expected_dx, 1e-4, 1e-3);
    snprintf(what, sizeof what, "large linear %s dw", name);
    test_grad_close(what, w->grad, expected_dw, 1e-4, 1e-3);
    snprintf(what, sizeof what, "large linear %s db", name);
    test_grad_close(what, b->grad, expected_db, 1e-4, 1e-3);
    free(g), free(want_y), free(want_dx), free(want_dw), free(want_db);
    em_step_end();
}

static void test_matmul_large(void)
{
    enum { B = 3, M = 150, K = 120, N = 170 };
    em_rng rng;
    em_rng_seed(&rng, 9);
    /* b stored [B, N, K] and used transposed: BLAS's own threads on a strided batch. */
    em_tensor *a = test_randn(&rng, 3, (int64_t[]){B, M, K}, 1.0f);
    em_tensor *bs = test_randn(&rng, 3, (int64_t[]){B, N, K}, 1.0f);
    em_tensor *c = em_matmul(a, em_transpose(bs, 1, 2));
    CHECK(c != NULL);
    if (!c)
        return;
    float *want = malloc((size_t)B * M * N * sizeof(float));
    for (int t = 0; t < B; t++)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int k = 0; k < K; k++)
                    s += (double)a->data[(t * M + i) * K + k] * bs->data[(t * N + j) * K + k];
                want[(t * M + i) * N + j] = (float)s;
            }
    test_tensor_close("large batched matmul", c, want, 1e-4, 1e-4);
    free(want);
    em_step_end();
}

static void test_errors(void)
{
    em_tensor *a = em_tensor_zeros2(NULL, 3, 5), *b = em_tensor_zeros2(NULL, 4, 2);
    em_clear_error();
    CHECK(em_matmul(a, b) == NULL);
    CHECK_ERROR_CONTAINS("[3, 5]");
    CHECK_ERROR_CONTAINS("[4, 2]");
    CHECK_ERROR_CONTAINS("matmul");

    em_tensor *p = em_tensor_zeros3(NULL, 2, 3, 4), *q = em_tensor_zeros3(NULL, 3, 4, 5);
    em_clear_error();
    CHECK(em_matmul(p, q) == NULL);
    CHECK_ERROR_CONTAINS("[2, 3, 4]");
    CHECK_ERROR_CONTAINS("[3, 4, 5]");
    CHECK_ERROR_CONTAINS("batch");

    em_clear_error();
    CHECK(em_matmul(em_tensor_scalar(NULL, 1.0f), a) == NULL);
    CHECK_ERROR_CONTAINS("scalar");

    em_tensor *x = em_tensor_zeros2(NULL, 6, 7), *w = em_tensor_zeros2(NULL, 4, 8);
    em_clear_error();
    CHECK(em_linear(x, w, NULL, EM_ACT_NONE, 0.0f) == NULL);
    CHECK_ERROR_CONTAINS("[6, 7]");
    CHECK_ERROR_CONTAINS("[4, 8]");

    em_tensor *w2 = em_tensor_zeros2(NULL, 4, 7), *bias = em_tensor_zeros1(NULL, 5);
    em_clear_error();
    CHECK(em_linear(x, w2, bias, EM_ACT_NONE, 0.0f) == NULL);
    CHECK_ERROR_CONTAINS("[5]");
    CHECK_ERROR_CONTAINS("[4, 7]");

    em_clear_error();
    CHECK(em_linear(x, em_tensor_zeros1(NULL, 7), NULL, EM_ACT_NONE, 0.0f) == NULL);
    CHECK_ERROR_CONTAINS("[7]");
    em_clear_error();
    CHECK(em_linear(x, w2, NULL, (em_activation)99, 0.0f) == NULL);
    CHECK_ERROR_CONTAINS("activation");

    /* A failed op poisons the chain instead of crashing. */
    CHECK(em_matmul(em_matmul(a, b), a) == NULL);
    CHECK(em_linear(NULL, w2, NULL, EM_ACT_RELU, 0.0f) == NULL);
    em_step_end();
}

int main(void)
{
    test_matmul_parity();
    test_linear_parity();
    test_linear_gradient_flow();
    test_gradchecks();
    test_linear_large(EM_ACT_RELU);
    test_linear_large(EM_ACT_GELU);
    test_matmul_large();
    test_errors();
    return test_finish();
}
