/* Convolutional layer kinds: models/cnn.ember has PyTorch's names and shapes; small
 * CNNs match PyTorch's outputs, gradients and running statistics in training and
 * evaluation mode (tests/fixtures/gen_nn_cnn.py); PyTorch's state_dict (int64
 * num_batches_tracked) loads; descriptions round-trip; dropout; description errors;
 * whole-model gradient checks; a short seeded training run on Fashion-MNIST. */
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"
#include "testlib.h"

static void check_state(const em_model *m, int n, const char *const *names, const int *ndims,
                        const int64_t (*shapes)[4], const bool *buffers)
{
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    CHECK_MSG(count == n, "%d named tensors, expected %d", count, n);
    for (int i = 0; i < count && i < n; i++) {
        CHECK_MSG(strcmp(state[i].name, names[i]) == 0, "state %d: %s, expected %s", i, state[i].name, names[i]);
        CHECK_MSG(state[i].is_buffer == buffers[i], "%s", names[i]);
        CHECK_MSG(state[i].tensor->ndim == ndims[i] &&
                      memcmp(state[i].tensor->shape, shapes[i], (size_t)ndims[i] * sizeof(int64_t)) == 0,
                  "%s is %s", state[i].name, em_shape_str(state[i].tensor));
    }
}

static void test_cnn_description(void)
{
    em_model *m = em_model_load(test_path("models/cnn.ember"), 1);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    /* nn.Sequential(Conv2d(1,32,3,padding=1), ReLU, MaxPool2d(2), Conv2d(32,64,3,padding=1),
     * ReLU, MaxPool2d(2), Flatten, Linear(3136,128), ReLU, Linear(128,10)).state_dict() */
    static const char *const names[] = {"0.weight", "0.bias", "3.weight", "3.bias",
                                        "7.weight", "7.bias", "9.weight", "9.bias"};
    static const int ndims[] = {4, 1, 4, 1, 2, 1, 2, 1};
    static const int64_t shapes[][4] = {{32, 1, 3, 3}, {32}, {64, 32, 3, 3}, {64}, {128, 3136}, {128}, {10, 128}, {10}};
    static const bool buffers[8] = {false};
    check_state(m, 8, names, ndims, shapes, buffers);
    CHECK(em_model_param_count(m) == 421642);
    int64_t shape[EM_MAX_DIMS];
    CHECK(em_model_output_shape(m, shape) == 1 && shape[0] == 10);
    /* relus run inside the convolutions and the first linear */
    CHECK(em_model_layer_at(m, 1)->fused && em_model_layer_at(m, 4)->fused && em_model_layer_at(m, 8)->fused);
    CHECK(!em_model_layer_at(m, 2)->fused && !em_model_layer_at(m, 5)->fused);
    const em_layer *pool = em_model_layer_at(m, 5);
    CHECK(pool->out.ndim == 3 && pool->out.dim[0] == 64 && pool->out.dim[1] == 7 && pool->out.dim[2] == 7);

    /* PyTorch's default initialisation bounds: 1/sqrt(fan_in) for weight and bias */
    const em_tensor *w = em_model_find(m, "3.weight");
    float bound = 1.0f / sqrtf(32.0f * 9.0f), largest = 0.0f;
    for (int64_t i = 0; i < w->numel; i++)
        largest = fmaxf(largest, fabsf(w->data[i]));
    CHECK_MSG(largest <= bound && largest > 0.95f * bound, "largest |w| %g, bound %g", largest, bound);
    const em_tensor *b = em_model_find(m, "0.bias");
    largest = 0.0f;
    for (int64_t i = 0; i < b->numel; i++)
        largest = fmaxf(largest, fabsf(b->data[i]));
    CHECK_MSG(largest <= 1.0f / 3.0f && largest > 0.2f, "largest |b| %g", largest);

    em_rng rng;
    em_rng_seed(&rng, 2);
    em_tensor *x = em_tensor_empty(NULL, 4, (int64_t[]){3, 1, 28, 28});
    em_init_uniform(x, &rng, 0, 1);
    em_tensor *y = em_forward(m, x);
    CHECK_MSG(y && y->ndim == 2 && y->shape[0] == 3 && y->shape[1] == 10, "%s", ember_last_error());
    em_step_end();
    em_model_free(m);
}

/* A description using every option survives generate -> parse -> generate. */
static void test_description_round_trip(void)
{
    const char *text = "input 3x11x10\n"
                       "conv2d 6 3x5 stride=2x1 pad=1x2 dilation=1x2 groups=3 bias=false\n"
                       "batchnorm momentum=0.25 eps=0.001 affine=false\n"
                       "leaky_relu 0.2\n"
                       "maxpool 3x2 stride=1x2 pad=1\n"
                       "avgpool 2 stride=1 count_include_pad=false\n"
                       "conv2d out=4 kernel=1\n"
                       "batchnorm track_running_stats=false\n"
                       "adaptive_avgpool 1\n"
                       "flatten\n"
                       "dropout 0.125\n"
                       "linear 3\n";
    em_model *m = em_model_parse(text, "round trip", 1);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    char *generated = em_model_generate_description(m);
    em_model *again = em_model_parse(generated, "generated", 1);
    CHECK_MSG(again != NULL, "%s\n%s", ember_last_error(), generated);
    if (again) {
        char *twice = em_model_generate_description(again);
        CHECK_MSG(strcmp(generated, twice) == 0, "%s\nvs\n%s", generated, twice);
        free(twice);
        int n1, n2;
        const em_named_tensor *s1 = em_model_state(m, &n1), *s2 = em_model_state(again, &n2);
        CHECK(n1 == n2);
        for (int i = 0; i < n1 && i < n2; i++)
            CHECK(strcmp(s1[i].name, s2[i].name) == 0 && em_same_shape(s1[i].tensor, s2[i].tensor));
    }
    CHECK_MSG(strstr(generated, "conv2d 6 3x5 stride=2x1 pad=1x2 dilation=1x2 groups=3 bias=false\n") &&
                  strstr(generated, "maxpool 3x2 stride=1x2 pad=1\n") &&
                  strstr(generated, "avgpool 2 stride=1 count_include_pad=false\n") &&
                  strstr(generated, "conv2d 4 1\n") && strstr(generated, "dropout 0.125\n") &&
                  strstr(generated, "batchnorm momentum=0.25 eps=0.001 affine=false\n") &&
                  strstr(generated, "batchnorm track_running_stats=false\n") &&
                  strstr(generated, "adaptive_avgpool 1\n"),
              "%s", generated);
    /* groups=3: weight [6, 1, 3, 5]; batch norm without affine parameters, or without
     * running statistics */
    em_tensor *w = em_model_find(m, "0.weight");
    CHECK(w && w->ndim == 4 && w->shape[0] == 6 && w->shape[1] == 1 && w->shape[2] == 3 && w->shape[3] == 5);
    CHECK(em_model_find(m, "1.running_mean") && !em_model_find(m, "1.weight"));
    CHECK(!em_model_find(m, "6.running_mean") && !em_model_find(m, "6.num_batches_tracked") &&
          em_model_find(m, "6.weight"));
    /* output shapes: conv (11+2-3)/2+1=6 x (10+4-9)/1+1=6; maxpool (6+2-3)/1+1=6 x (6+2-2)/2+1=4;
     * avgpool 5x3 */
    const em_layer *l = em_model_layer_at(m, 3);
    CHECK(l->out.dim[0] == 6 && l->out.dim[1] == 6 && l->out.dim[2] == 4);
    l = em_model_layer_at(m, 4);
    CHECK(l->out.dim[1] == 5 && l->out.dim[2] == 3);
    free(generated);
    em_model_free(again);
    em_model_free(m);
}

/* ---- PyTorch parity ------------------------------------------------------------- */

static void check_state_values(em_st_file *f, const em_model *m, const char *prefix)
{
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s.%s", prefix, state[i].name);
        test_tensor_close(name, state[i].tensor, test_fixture_tensor(f, name)->data, 1e-6, 1e-5);
    }
}

static void check_grads(em_st_file *f, const em_model *m, const char *prefix)
{
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++) {
        if (state[i].is_buffer)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%s.%s", prefix, state[i].name);
        test_grad_close(name, state[i].tensor->grad, test_fixture_tensor(f, name), 1e-5, 1e-4);
    }
}

/* Forward, cross-entropy and backward on <p>.x; compares with <p>.<phase>.*. */
static void step_and_compare(em_st_file *f, em_model *m, const char *p, const char *phase)
{
    char name[256];
    snprintf(name, sizeof name, "%s.x", p);
    em_tensor *x = test_fixture_tensor(f, name);
    snprintf(name, sizeof name, "%s.labels", p);
    em_tensor *labels_f = test_fixture_tensor(f, name);
    int32_t labels[16];
    for (int64_t i = 0; i < labels_f->numel && i < 16; i++)
        labels[i] = (int32_t)labels_f->data[i];
    em_tensor *out = em_forward(m, x);
    snprintf(name, sizeof name, "%s.%s.out", p, phase);
    test_tensor_close(name, out, test_fixture_tensor(f, name)->data, 1e-5, 1e-4);
    em_tensor *loss = em_cross_entropy(out, labels, 0.0f);
    CHECK_MSG(loss && em_backward(loss) == EM_OK, "%s", ember_last_error());
    if (loss) {
        snprintf(name, sizeof name, "%s.%s.loss", p, phase);
        CHECK_NEAR(em_item(loss), test_fixture_tensor(f, name)->data[0], 1e-5);
    }
    char grad_prefix[64];
    snprintf(grad_prefix, sizeof grad_prefix, "%s.%s.grad", p, phase);
    check_grads(f, m, grad_prefix);
    em_step_end();
}

static em_model *parity_model(em_st_file *f, const char *p)
{
    char name[128];
    snprintf(name, sizeof name, "%s.description", p);
    const char *text = em_st_metadata(f, name);
    CHECK(text != NULL);
    em_model *m = text ? em_model_parse(text, name, 1) : NULL;
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return NULL;
    snprintf(name, sizeof name, "%s.init", p);
    test_fixture_load_state(f, m, name);
    /* every tensor of PyTorch's state_dict and nothing else */
    int count, in_fixture = 0;
    em_model_state(m, &count);
    snprintf(name, sizeof name, "%s.init.", p);
    for (int i = 0; i < em_st_count(f); i++)
        in_fixture += strncmp(em_st_entry_at(f, i)->name, name, strlen(name)) == 0;
    CHECK_MSG(in_fixture == count, "%s: PyTorch has %d tensors, ember %d", p, in_fixture, count);
    return m;
}

static void run_parity(em_st_file *f, const char *p)
{
    em_model *m = parity_model(f, p);
    if (!m)
        return;
    CHECK(em_model_is_training(m));
    step_and_compare(f, m, p, "train");
    char name[128];
    snprintf(name, sizeof name, "%s.state1", p);
    check_state_values(f, m, name);
    /* a second batch in training mode, without gradients: running statistics move on */
    snprintf(name, sizeof name, "%s.x2", p);
    bool was = em_set_grad_enabled(false);
    CHECK(em_forward(m, test_fixture_tensor(f, name)) != NULL);
    em_set_grad_enabled(was);
    em_step_end();
    snprintf(name, sizeof name, "%s.state", p);
    check_state_values(f, m, name);

    em_model_zero_grad(m);
    em_model_set_training(m, false);
    step_and_compare(f, m, p, "eval");
    /* evaluation leaves the running statistics alone */
    check_state_values(f, m, name);
    em_model_free(m);
}

static void test_pytorch_parity(void)
{
    em_st_file *f = test_fixture("nn_cnn");
    run_parity(f, "cnn");
    run_parity(f, "cnn2");
    run_parity(f, "w2");

    /* The state_dict as PyTorch keeps it (int64 num_batches_tracked) loads into a model
     * built from the description; ember's own checkpoint of it stores float32 and reloads. */
    em_model *m = em_model_parse(em_st_metadata(f, "cnn.description"), "cnn", 2);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (m) {
        CHECK_MSG(em_load_weights(m, test_path("tests/fixtures/nn_cnn_state.safetensors"), true, NULL, NULL) == EM_OK,
                  "%s", ember_last_error());
        check_state_values(f, m, "cnn.state");
        CHECK(em_item(em_model_find(m, "1.num_batches_tracked")) == 5.0f);
        char path[1024];
        snprintf(path, sizeof path, "%s/cnn.safetensors", test_tmpdir());
        CHECK_MSG(em_save_weights(m, path) == EM_OK, "%s", ember_last_error());
        em_st_file *saved = em_st_open(path);
        const em_st_entry *e = saved ? em_st_find(saved, "10.num_batches_tracked") : NULL;
        CHECK(e && e->dtype == EM_F32 && e->ndim == 0);
        em_st_close(saved);
        em_model *back = em_model_from_checkpoint(path);
        CHECK_MSG(back != NULL, "%s", ember_last_error());
        if (back)
            check_state_values(f, back, "cnn.state");
        em_model_free(back);
    }
    em_model_free(m);

    /* a model whose shapes differ: the message names the tensor and both shapes */
    m = em_model_parse("input 2x8x7\nconv2d 5 3 pad=1\nbatchnorm\n", "other", 1);
    CHECK(m && em_load_weights(m, test_path("tests/fixtures/nn_cnn_state.safetensors"), true, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("'0.weight' has shape [4, 2, 3, 3] in the checkpoint but [5, 2, 3, 3] in the model");
    em_model_free(m);
    em_st_close(f);
}

/* ---- dropout ------------------------------------------------------------------- */

static void dropout_mask(uint64_t seed, bool training, float *out, int64_t n)
{
    char text[64];
    snprintf(text, sizeof text, "input %lld\ndropout 0.3\n", (long long)n);
    em_model *m = em_model_parse(text, "dropout", seed);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    em_model_set_training(m, training);
    em_tensor *x = em_tensor_full(NULL, 2, (int64_t[]){1, n}, 1.0f);
    x->requires_grad = true;
    em_tensor *y = em_forward(m, x);
    CHECK(y != NULL);
    if (y) {
        em_copy_to(y, out);
        if (training) {
            /* backward: the same mask and scale */
            CHECK(em_backward(em_sum_all(y)) == EM_OK);
            for (int64_t i = 0; i < n; i++)
                CHECK_NEAR(x->grad[i], out[i], 0);
        }
    }
    em_step_end();
    em_model_free(m);
}

static void test_dropout(void)
{
    enum { N = 20000 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *c = malloc(N * sizeof *c);
    dropout_mask(5, true, a, N);
    dropout_mask(5, true, b, N);
    dropout_mask(6, true, c, N);
    int zeros = 0, scaled = 0, differ = 0;
    for (int i = 0; i < N; i++) {
        zeros += a[i] == 0.0f;
        scaled += a[i] == 1.0f / 0.7f;
        differ += a[i] != c[i];
    }
    CHECK_MSG(zeros + scaled == N, "%d zeros, %d scaled", zeros, scaled);
    CHECK_MSG(abs(zeros - 6000) < 300, "%d of %d dropped at p=0.3", zeros, N);
    CHECK(memcmp(a, b, N * sizeof *a) == 0); /* the model's seed fixes the mask */
    CHECK_MSG(differ > 6000, "seeds 5 and 6 differ at %d elements", differ);
    dropout_mask(5, false, a, N);
    int ones = 0;
    for (int i = 0; i < N; i++)
        ones += a[i] == 1.0f;
    CHECK(ones == N); /* evaluation: identity */
    free(a);
    free(b);
    free(c);
}

/* ---- description errors ---------------------------------------------------------- */

static void expect_parse_error(const char *text, const char *needle)
{
    em_model *m = em_model_parse(text, "bad", 1);
    CHECK_MSG(m == NULL, "accepted:\n%s", text);
    CHECK_MSG(test_error_contains(needle), "for\n%s\nerror \"%s\" lacks \"%s\"", text, ember_last_error(), needle);
    em_model_free(m);
}

static void test_description_errors(void)
{
    expect_parse_error("input 1x5x5\nconv2d 4 7\n",
                       "bad:2: layer 0 (conv2d): the input [1, 5, 5] padded to 5x5 is smaller than the kernel 7x7");
    expect_parse_error("input 1x5x5\nconv2d 4 3 dilation=3\n", "is smaller than the kernel 7x7 (as dilated)");
    expect_parse_error("input 1x5x5\nconv2d 4 3 pad=1\nmaxpool 2\nmaxpool 2\nmaxpool 2\n",
                       "bad:5: layer 3 (maxpool): the input [4, 1, 1] padded to 1x1 is smaller than the window 2x2");
    expect_parse_error("input 784\nconv2d 4 3\n", "give the model an image input such as 'input 1x28x28'");
    expect_parse_error("input 3x8x8\nconv2d 4 3 groups=2\n", "groups=2 must divide both the input channels (3)");
    expect_parse_error("input 1x8x8\nconv2d 4\n", "conv2d: missing kernel_size");
    expect_parse_error("input 1x8x8\nconv2d 4 3x\n", "kernel_size must be an integer N or a pair HxW, got '3x'");
    expect_parse_error("input 1x8x8\nconv2d 4 3x2x1\n", "got '3x2x1'");
    expect_parse_error("input 1x8x8\nconv2d 4 0\n", "kernel_size must be at least 1");
    expect_parse_error("input 1x8x8\nconv2d 4 3 stride=0\n", "stride must be at least 1");
    expect_parse_error("input 1x8x8\nconv2d 4 3 padding=1 pad=2\n", "given twice");
    expect_parse_error("input 1x8x8\nconv2d 4 3 strides=2\n", "unknown option 'strides=2'");
    expect_parse_error("input 1x8x8\nmaxpool 2 pad=2\n", "padding 2x2 must be at most half the kernel 2x2");
    expect_parse_error("input 1x8x8\nadaptive_avgpool 2\n", "output size 2x2 is not supported");
    expect_parse_error("input 1x8x8\nadaptive_avgpool\n", "missing output_size");
    expect_parse_error("input 2x2x2x2\nbatchnorm\n", "batchnorm takes [features], [channels, length] or");
    expect_parse_error("input 8\nbatchnorm momentum=2\n", "momentum must be in [0, 1], got 2");
    expect_parse_error("input 8\ndropout 1.5\n", "p must be in [0, 1], got 1.5");
    expect_parse_error("input 16\nmaxpool 2\n", "maxpool takes [channels, height, width] examples");
}

/* ---- whole-model gradient checks --------------------------------------------------- */

static void run_gradcheck(const char *what, const char *text, int64_t batch)
{
    em_model *m = em_model_parse(text, what, 5);
    CHECK_MSG(m != NULL, "%s: %s", what, ember_last_error());
    if (!m)
        return;
    double worst = -1;
    int status = em_model_gradcheck(m, batch, 31, stdout, &worst);
    CHECK_MSG(status == EM_OK, "%s: %s", what, ember_last_error());
    CHECK_MSG(worst >= 0 && worst <= EM_MODEL_GRADCHECK_TOLERANCE, "%s: worst %g", what, worst);
    CHECK(em_tape_length() == 0);
    em_model_free(m);
}

static void test_cnn_gradchecks(void)
{
    /* training mode: batch statistics, a dropout mask repeated across forwards */
    run_gradcheck("small cnn", "input 2x8x8\nconv2d 4 3 pad=1\nbatchnorm\nrelu\nmaxpool 2\ndropout 0.25\n"
                  "conv2d 6 3 stride=2 pad=1 groups=2\ntanh\nflatten\nlinear 5\nbatchnorm\nlinear 3\n", 4);
    run_gradcheck("pools", "input 3x9x9\nconv2d 4 3x2 dilation=2 bias=false\nsigmoid\n"
                  "avgpool 3 stride=2 pad=1 count_include_pad=false\nmaxpool 2 stride=1\nadaptive_avgpool 1\n"
                  "flatten\nlinear 2\n", 3);
    /* a ReLU network over 28x28 images, as models/cnn.ember but narrower: each first-layer
     * weight moves thousands of pre-activations, so batch 1 keeps kinks off its probes */
    run_gradcheck("cnn 28x28", "input 1x28x28\nconv2d 4 3 pad=1\nrelu\nmaxpool 2\nconv2d 8 3 pad=1\nrelu\n"
                  "maxpool 2\nflatten\nlinear 16\nrelu\nlinear 10\n", 1);
}

/* ---- a short training run ---------------------------------------------------------- */

static void test_training_run(void)
{
    em_dataset *train = em_dataset_open("fashion-mnist", EM_SPLIT_TRAIN, -1);
    em_dataset *test = train ? em_dataset_open("fashion-mnist", EM_SPLIT_TEST, -1) : NULL;
    if (!train || !test) {
        printf("training run skipped: %s\n", ember_last_error());
        em_dataset_free(train);
        return;
    }
    em_model *m = em_model_parse("input 1x28x28\nconv2d 8 3 pad=1\nrelu\nmaxpool 2\nconv2d 16 3 pad=1\nrelu\n"
                                 "maxpool 2\nflatten\nlinear 10\n",
                                 "training run", 42);
    CHECK_MSG(m != NULL && em_dataset_set_item_shape(train, 3, (int64_t[]){1, 28, 28}) == EM_OK &&
                  em_dataset_set_item_shape(test, 3, (int64_t[]){1, 28, 28}) == EM_OK,
              "%s", ember_last_error());
    /* the first examples of each split (file order) */
    const int64_t n_train = test_quick() ? 1500 : 5000, n_test = 2000;
    const int64_t n_idx = n_train > n_test ? n_train : n_test;
    int64_t *idx = malloc((size_t)n_idx * sizeof *idx);
    for (int64_t i = 0; i < n_idx; i++)
        idx[i] = i;
    em_dataset *train_part = em_dataset_subset(train, idx, n_train, "training part");
    em_dataset *test_part = em_dataset_subset(test, idx, n_test, "test part");
    free(idx);
    CHECK_MSG(train_part && test_part, "%s", ember_last_error());
    em_train_opts opts = em_train_defaults();
    opts.batch_size = 32;
    opts.optimizer = EM_OPTIM_ADAM;
    opts.optim.lr = 2e-3f;
    opts.seed = 7;
    opts.progress = EM_PROGRESS_QUIET;
    em_train_result result = {0};
    CHECK_MSG(m && train_part && test_part && em_train(m, train_part, test_part, &opts, &result) == EM_OK, "%s",
              ember_last_error());
    double want = test_quick() ? 0.62 : 0.74;
    printf("training run: %lld examples, test accuracy %.4f on %lld (at least %.2f wanted), %.2f s\n",
           (long long)n_train, result.last.test_accuracy, (long long)n_test, want,
           result.total_seconds);
    CHECK_MSG(result.last.test_accuracy >= want, "accuracy %g", result.last.test_accuracy);
    em_model_free(m);
    em_dataset_free(train_part);
    em_dataset_free(test_part);
    em_dataset_free(train);
    em_dataset_free(test);
}

int main(void)
{
    test_cnn_description();
    test_description_round_trip();
    test_pytorch_parity();
    test_dropout();
    test_description_errors();
    test_cnn_gradchecks();
    test_training_run();
    em_release_thread_state();
    return test_finish();
}
