/* Models: models/mlp.ember has PyTorch's names, shapes and parameter count; small
 * models match PyTorch's outputs and gradients exactly as nn.Sequential computes
 * them (tests/fixtures/gen_nn.py); whole-model gradient checks pass. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"
#include "testlib.h"

static void test_mlp_description(void)
{
    em_model *m = em_model_load(test_path("models/mlp.ember"), 1);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    static const struct {
        const char *name;
        int ndim;
        int64_t shape[2];
    } want[] = {
        {"1.weight", 2, {512, 784}}, {"1.bias", 1, {512}}, {"3.weight", 2, {256, 512}},
        {"3.bias", 1, {256}},        {"5.weight", 2, {10, 256}}, {"5.bias", 1, {10}},
    };
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    CHECK(count == 6);
    for (int i = 0; i < count && i < 6; i++) {
        CHECK_MSG(strcmp(state[i].name, want[i].name) == 0, "state %d: %s", i, state[i].name);
        CHECK(!state[i].is_buffer);
        CHECK(state[i].tensor->is_param && state[i].tensor->requires_grad);
        CHECK_MSG(state[i].tensor->ndim == want[i].ndim &&
                      memcmp(state[i].tensor->shape, want[i].shape, (size_t)want[i].ndim * sizeof(int64_t)) == 0,
                  "%s is %s", state[i].name, em_shape_str(state[i].tensor));
        CHECK(em_model_find(m, want[i].name) == state[i].tensor);
    }
    CHECK(em_model_find(m, "0.weight") == NULL);
    CHECK(em_model_find(m, "2.weight") == NULL);
    CHECK(em_model_param_count(m) == 535818);

    int64_t shape[EM_MAX_DIMS];
    CHECK(em_model_input_shape(m, shape) == 3 && shape[0] == 1 && shape[1] == 28 && shape[2] == 28);
    CHECK(em_model_output_shape(m, shape) == 1 && shape[0] == 10);
    CHECK(em_model_is_training(m));
    em_model_set_training(m, false);
    CHECK(!em_model_is_training(m));
    em_model_set_training(m, true);
    CHECK(em_model_rng(m) != NULL && em_model_arena(m) != NULL);

    /* the relus run inside the linears: at run time only the three linears record */
    CHECK(em_model_layer_at(m, 2)->fused && em_model_layer_at(m, 4)->fused);
    CHECK(!em_model_layer_at(m, 1)->fused && !em_model_layer_at(m, 5)->fused);
    em_rng rng;
    em_rng_seed(&rng, 11);
    em_tensor *x = em_tensor_empty(NULL, 4, (int64_t[]){3, 1, 28, 28});
    em_init_uniform(x, &rng, 0, 1);
    em_tensor *y = em_forward(m, x);
    CHECK_MSG(y != NULL, "%s", ember_last_error());
    CHECK(y && y->ndim == 2 && y->shape[0] == 3 && y->shape[1] == 10);
    CHECK(em_tape_length() == 3);
    /* no gradients: nothing recorded */
    em_step_end();
    bool was = em_set_grad_enabled(false);
    y = em_forward(m, x = em_tensor_zeros(NULL, 4, (int64_t[]){1, 1, 28, 28}));
    CHECK(y && y->shape[0] == 1 && em_tape_length() == 0 && !y->requires_grad);
    em_set_grad_enabled(was);
    em_step_end();

    /* the summary names every layer and the total */
    char path[1024];
    snprintf(path, sizeof path, "%s/summary.txt", test_tmpdir());
    FILE *f = fopen(path, "w+");
    em_model_summary(m, f);
    rewind(f);
    char text[4096] = {0};
    CHECK(fread(text, 1, sizeof text - 1, f) > 0);
    fclose(f);
    CHECK_MSG(strstr(text, "535,818") && strstr(text, "401,920") && strstr(text, "[256]") &&
                  strstr(text, "fused into 3"),
              "summary:\n%s", text);
    em_model_free(m);
}

/* Loads the fixture's weights <prefix>.<name> into the model's tensors. */
static void load_weights(em_st_file *f, em_model *m, const char *prefix)
{
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    char name[128];
    for (int i = 0; i < count; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, state[i].name);
        CHECK_MSG(em_st_load_into(f, name, em_model_find(m, state[i].name)) == EM_OK, "%s", ember_last_error());
    }
    snprintf(name, sizeof name, "%s.", prefix);
    int in_fixture = 0;
    for (int i = 0; i < em_st_count(f); i++) {
        const char *n = em_st_entry_at(f, i)->name;
        in_fixture += strncmp(n, name, strlen(name)) == 0 && strstr(n, ".grad.") == NULL &&
                      isdigit((unsigned char)n[strlen(name)]);
    }
    CHECK_MSG(in_fixture == count, "fixture has %d tensors of %s, model %d", in_fixture, prefix, count);
}

static void check_grads(em_st_file *f, em_model *m, const char *prefix)
{
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s.grad.%s", prefix, state[i].name);
        test_grad_close(name, state[i].tensor->grad, test_fixture_tensor(f, name), 1e-6, 1e-4);
    }
}

static em_model *fixture_model(em_st_file *f, const char *prefix)
{
    char key[64];
    snprintf(key, sizeof key, "%s.description", prefix);
    const char *text = em_st_metadata(f, key);
    CHECK(text != NULL);
    em_model *m = text ? em_model_parse(text, key, 1) : NULL;
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (m)
        load_weights(f, m, prefix);
    return m;
}

static void test_pytorch_parity(void)
{
    em_st_file *f = test_fixture("nn_model");

    /* MLP with flatten, fused relu/gelu/leaky_relu, a bias-free linear; cross-entropy */
    em_model *m = fixture_model(f, "mlp");
    if (m) {
        CHECK(em_model_find(m, "5.weight") && !em_model_find(m, "5.bias") && em_model_find(m, "7.bias"));
        em_tensor *x = test_fixture_tensor(f, "mlp.x");
        em_tensor *labels_f = test_fixture_tensor(f, "mlp.labels");
        int32_t labels[4];
        for (int i = 0; i < 4; i++)
            labels[i] = (int32_t)labels_f->data[i];
        em_tensor *logits = em_forward(m, x);
        em_tensor *want = test_fixture_tensor(f, "mlp.out");
        test_tensor_close("mlp logits", logits, want->data, 1e-6, 1e-5);
        em_tensor *loss = em_cross_entropy(logits, labels, 0.0f);
        CHECK(loss != NULL);
        if (loss) {
            CHECK_NEAR(em_item(loss), test_fixture_tensor(f, "mlp.loss")->data[0], 1e-6);
            CHECK(em_backward(loss) == EM_OK);
            check_grads(f, m, "mlp");
        }
        em_step_end();
        /* zero_grad clears them; evaluation mode computes the same outputs */
        em_model_zero_grad(m);
        CHECK(em_model_find(m, "1.weight")->grad[0] == 0.0f);
        em_model_set_training(m, false);
        /* the fixture's tensors lived in the step that ended: read them again */
        test_tensor_close("mlp logits (eval)", em_forward(m, test_fixture_tensor(f, "mlp.x")),
                          test_fixture_tensor(f, "mlp.out")->data, 1e-6, 1e-5);
        em_step_end();
    }
    em_model_free(m);

    /* linear layers over [steps, features] examples; mean squared error */
    m = fixture_model(f, "seq");
    if (m) {
        em_tensor *out = em_forward(m, test_fixture_tensor(f, "seq.x"));
        CHECK(out && out->ndim == 3 && out->shape[0] == 2 && out->shape[1] == 3 && out->shape[2] == 2);
        test_tensor_close("seq out", out, test_fixture_tensor(f, "seq.out")->data, 1e-6, 1e-5);
        em_tensor *loss = em_mse_loss(out, test_fixture_tensor(f, "seq.target"));
        CHECK(loss && em_backward(loss) == EM_OK);
        if (loss)
            CHECK_NEAR(em_item(loss), test_fixture_tensor(f, "seq.loss")->data[0], 1e-6);
        check_grads(f, m, "seq");
        em_step_end();
    }
    em_model_free(m);
    em_st_close(f);
}

/* A layer kind whose backward is wrong on purpose: y = 2x, but dx = 3 dy. */
static void wrong_double_backward(em_node *n)
{
    for (int64_t i = 0; i < n->out->numel; i++)
        n->in[0]->grad[i] += 3.0f * n->out->grad[i];
}

static em_tensor *wrong_double_forward(em_layer *l, em_tensor *x, bool training)
{
    (void)l;
    (void)training;
    em_tensor *in = em_contiguous(x);
    em_tensor *y = em_tensor_empty(NULL, in->ndim, in->shape);
    for (int64_t i = 0; i < in->numel; i++)
        y->data[i] = 2.0f * in->data[i];
    em_record("wrong_double", y, 1, &in, wrong_double_backward);
    return y;
}

static int same_shape(em_layer *l, const em_shape *in, em_shape *out)
{
    (void)l;
    *out = *in;
    return EM_OK;
}

static const em_layer_kind wrong_kind = {
    .name = "wrong_double", .usage = "wrong_double", .infer = same_shape, .forward = wrong_double_forward};

static void run_gradcheck(const char *what, em_model *m, int64_t batch)
{
    CHECK_MSG(m != NULL, "%s: %s", what, ember_last_error());
    if (!m)
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s/gradcheck.txt", test_tmpdir());
    FILE *f = fopen(path, "w+");
    double worst = -1;
    int status = em_model_gradcheck(m, batch, 77, f, &worst);
    rewind(f);
    char text[8192] = {0};
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    CHECK_MSG(status == EM_OK, "%s: %s\n%s", what, ember_last_error(), text);
    CHECK_MSG(worst >= 0 && worst <= EM_MODEL_GRADCHECK_TOLERANCE, "%s: worst %g", what, worst);
    printf("%s\n%.*s", what, (int)n, text);
    /* one line per parameter, and the gradients are left zeroed */
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++) {
        CHECK_MSG(strstr(text, state[i].name) != NULL, "%s: no line for %s", what, state[i].name);
        float *g = state[i].tensor->grad;
        bool zero = true;
        for (int64_t j = 0; j < state[i].tensor->numel; j++)
            zero &= g[j] == 0.0f;
        CHECK_MSG(zero, "%s: %s has a gradient left", what, state[i].name);
    }
    CHECK(em_tape_length() == 0);
}

static void test_model_gradcheck(void)
{
    em_model *m = em_model_load(test_path("models/mlp.ember"), 3);
    run_gradcheck("mlp.ember", m, 4);
    em_model_free(m);

    m = em_model_parse("input 2x3x2\nflatten\nlinear 8\ntanh\nlinear 6 bias=false\nsilu\nlinear 4\n"
                       "gelu\nlinear 5\nsigmoid\nlinear 3\n",
                       "smooth", 4);
    run_gradcheck("smooth activations", m, 5);
    em_model_free(m);

    /* [steps, features] output: mean squared error path when outputs are not class scores */
    m = em_model_parse("input 3x4\nlinear 5\nleaky_relu 0.1\nlinear 1\n", "seq", 5);
    run_gradcheck("sequence regression", m, 3);
    em_model_free(m);

    /* a wrong backward is caught */
    m = em_model_parse("input 6\nlinear 4\n", "broken", 6);
    CHECK(m && em_model_add_layer(m, &wrong_kind, NULL) == EM_OK);
    double worst = 0;
    CHECK(em_model_gradcheck(m, 3, 1, NULL, &worst) == EM_ERR);
    CHECK_ERROR_CONTAINS("above the tolerance");
    CHECK_MSG(worst > 0.3, "worst %g", worst);
    em_model_free(m);
    CHECK(em_model_gradcheck(NULL, 4, 1, NULL, NULL) == EM_ERR);
}

int main(void)
{
    test_mlp_description();
    test_pytorch_parity();
    test_model_gradcheck();
    em_release_thread_state();
    return test_finish();
}
