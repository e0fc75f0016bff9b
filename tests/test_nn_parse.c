/* Model descriptions: every kind of mistake gives NULL and a message with file:line;
 * C-built and parsed models agree (names, shapes, initial values); descriptions
 * round-trip; linear initialisation has PyTorch's bounds. */
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"
#include "testlib.h"

#define MLP_TEXT "input 1x28x28\nflatten\nlinear 512\nrelu\nlinear 256\nrelu\nlinear 10\n"

/* Parsing must fail with a message holding each of the needles. */
static void expect_error(const char *text, const char *needle1, const char *needle2)
{
    em_clear_error();
    em_model *m = em_model_parse(text, "bad.ember", 1);
    CHECK_MSG(m == NULL, "parsed although wrong:\n%s", text);
    em_model_free(m);
    CHECK_MSG(strstr(ember_last_error(), needle1) != NULL, "error \"%s\" lacks \"%s\" for:\n%s",
              ember_last_error(), needle1, text);
    if (needle2)
        CHECK_MSG(strstr(ember_last_error(), needle2) != NULL, "error \"%s\" lacks \"%s\" for:\n%s",
                  ember_last_error(), needle2, text);
}

static void test_syntax_errors(void)
{
    expect_error("", "bad.ember: no 'input' line", NULL);
    expect_error("# only a comment\n\n   \n", "bad.ember: no 'input' line", NULL);
    expect_error("input 784\n", "bad.ember: no layers", NULL);
    expect_error("linear 10\n", "bad.ember:1: expected 'input DxHxW'", NULL);
    expect_error("# header\n\nrelu\n", "bad.ember:3: expected 'input", NULL);
    expect_error("input\nrelu\n", "bad.ember:1: input: expected one shape", NULL);
    expect_error("input 1 28 28\nrelu\n", "bad.ember:1: input", "got 3 values");
    expect_error("input 1x\nrelu\n", "bad.ember:1: input: expected a shape", NULL);
    expect_error("input 1xx28\nrelu\n", "bad.ember:1:", "'1xx28'");
    expect_error("input abc\nrelu\n", "bad.ember:1:", "'abc'");
    expect_error("input 0x28x28\nrelu\n", "bad.ember:1:", "between 1 and");
    expect_error("input -5\nrelu\n", "bad.ember:1:", "between 1 and");
    expect_error("input 1x2x3x4x5x6\nrelu\n", "bad.ember:1:", "more than 5 dimensions");
    expect_error("input 784\ninput 784\n", "bad.ember:2: 'input' may appear only once", NULL);

    /* unknown kinds list the valid ones */
    expect_error("input 784\n# hidden layer\nlineer 10\n", "bad.ember:3: unknown layer 'lineer'",
                 "valid kinds: flatten, linear, relu");
    expect_error("input 784\nrelu\nconv9d 3\n", "bad.ember:3: unknown layer 'conv9d'", "silu");

    /* numbers */
    expect_error("input 784\nlinear abc\n", "bad.ember:2: linear: out_features must be an integer, got 'abc'",
                 NULL);
    expect_error("input 784\nlinear 1.5\n", "bad.ember:2:", "integer");
    expect_error("input 784\nlinear 10x\n", "bad.ember:2:", "'10x'");
    expect_error("input 784\nlinear 0\n", "bad.ember:2: linear: out_features must be at least 1, got 0", NULL);
    expect_error("input 784\nrelu\nlinear -3\n", "bad.ember:3:", "at least 1, got -3");
    expect_error("input 784\nlinear 99999999999999999999\n", "bad.ember:2:", "out_features");
    expect_error("input 784\nleaky_relu abc\n", "bad.ember:2: leaky_relu: negative_slope must be a finite number",
                 NULL);
    expect_error("input 784\nleaky_relu slope=nan\n", "bad.ember:2:", "finite");
    expect_error("input 784\nlinear 10 bias=maybe\n", "bad.ember:2: linear: bias must be true or false", NULL);
    expect_error("input 784\ngelu approximate=fast\n", "bad.ember:2: gelu: approximate must be none or tanh",
                 NULL);

    /* options */
    expect_error("input 784\nlinear\n", "bad.ember:2: linear: missing out_features", "usage: linear OUT_FEATURES");
    expect_error("input 784\nlinear 10 foo=1\n", "bad.ember:2: linear: unknown option 'foo=1'", "usage:");
    expect_error("input 784\nlinear 10 20\n", "bad.ember:2: linear: unexpected value '20'", NULL);
    expect_error("input 784\nrelu 3\n", "bad.ember:2: relu: unexpected value '3'", NULL);
    expect_error("input 784\nlinear 10 out_features=5\n", "bad.ember:2: linear: option out_features is given twice",
                 NULL);
    expect_error("input 784\nlinear =5\n", "bad.ember:2: linear: expected key=value", NULL);
    expect_error("input 784\nlinear 10 bias=\n", "bad.ember:2: linear: expected key=value", NULL);
    expect_error("input 784\nrelu a b c d e f g h i j k l m n o p q\n", "bad.ember:2: too many options", NULL);

    /* shapes */
    expect_error("input 1x28x28\nlinear 10\n", "bad.ember:2: layer 0 (linear):", "add a 'flatten' line");
    expect_error("input 1x28x28\nrelu\nlinear 10\n", "bad.ember:3: layer 1 (linear):", "[1, 28, 28]");
    expect_error("input 1x28x28\nflatten start_dim=0\n", "bad.ember:2: layer 0 (flatten):", "batch");
    expect_error("input 784\nflatten end_dim=-3\n", "bad.ember:2: layer 0 (flatten):", NULL);
    /* a parameter far too large is refused, not attempted */
    expect_error("input 2000000000\nlinear 2000000000\n", "bad.ember:2: layer 0 (linear):", "0.weight");
    expect_error("input 100000\nlinear 10000\n", "bad.ember:2: layer 0 (linear): 0.weight [10000, 100000]",
                 "refuses tensors above");
}

static void test_accepted_syntax(void)
{
    const char *text = "# comment line\r\n"
                       "  input   1x28x28   # trailing comment\r\n"
                       "\r\n"
                       "\tflatten\r\n"
                       "linear out_features=512\r\n"
                       "relu#no space before the comment\r\n"
                       "linear 256 bias=true\n"
                       "leaky_relu slope=0.2\n"
                       "linear 10 bias=false";
    em_model *m = em_model_parse(text, "ok.ember", 3);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    CHECK(count == 5);
    const char *names[] = {"1.weight", "1.bias", "3.weight", "3.bias", "5.weight"};
    for (int i = 0; i < count && i < 5; i++)
        CHECK_MSG(strcmp(state[i].name, names[i]) == 0, "state %d is %s", i, state[i].name);
    /* the text given is the description kept */
    CHECK(strcmp(em_model_description(m), text) == 0);
    em_model_free(m);
}

static void check_same_model(const em_model *a, const em_model *b, bool same_values)
{
    int na, nb;
    const em_named_tensor *sa = em_model_state(a, &na);
    const em_named_tensor *sb = em_model_state(b, &nb);
    CHECK(na == nb);
    for (int i = 0; i < na && i < nb; i++) {
        CHECK_MSG(strcmp(sa[i].name, sb[i].name) == 0, "%s vs %s", sa[i].name, sb[i].name);
        CHECK_MSG(em_same_shape(sa[i].tensor, sb[i].tensor), "%s: %s vs %s", sa[i].name,
                  em_shape_str(sa[i].tensor), em_shape_str(sb[i].tensor));
        if (same_values && em_same_shape(sa[i].tensor, sb[i].tensor))
            CHECK_MSG(memcmp(sa[i].tensor->data, sb[i].tensor->data,
                             (size_t)sa[i].tensor->numel * sizeof(float)) == 0,
                      "%s differs", sa[i].name);
    }
    int64_t sha[EM_MAX_DIMS], shb[EM_MAX_DIMS];
    int da = em_model_output_shape(a, sha), db = em_model_output_shape(b, shb);
    CHECK(da == db && memcmp(sha, shb, (size_t)da * sizeof(int64_t)) == 0);
    CHECK(em_model_param_count(a) == em_model_param_count(b));
    CHECK(em_model_layer_count(a) == em_model_layer_count(b));
}

static void test_c_built_equals_parsed(void)
{
    em_model *c = em_model_new(3, (int64_t[]){1, 28, 28}, 42);
    CHECK(c != NULL);
    CHECK(em_model_add_flatten(c) == EM_OK);
    CHECK(em_model_add_linear(c, 512, true) == EM_OK);
    CHECK(em_model_add_activation(c, EM_ACT_RELU, 0) == EM_OK);
    CHECK(em_model_add_linear(c, 256, true) == EM_OK);
    CHECK(em_model_add_activation(c, EM_ACT_RELU, 0) == EM_OK);
    CHECK(em_model_add_linear(c, 10, true) == EM_OK);
    CHECK_MSG(strcmp(em_model_description(c), MLP_TEXT) == 0, "generated:\n%s", em_model_description(c));

    em_model *p = em_model_load(test_path("models/mlp.ember"), 42);
    CHECK_MSG(p != NULL, "%s", ember_last_error());
    if (p)
        check_same_model(c, p, true); /* same seed, same order of initialisation */
    em_model *other_seed = em_model_parse(MLP_TEXT, "mlp", 43);
    CHECK(other_seed && memcmp(em_model_find(other_seed, "1.weight")->data, em_model_find(c, "1.weight")->data,
                               64 * sizeof(float)) != 0);
    em_model_free(other_seed);
    em_model_free(p);
    em_model_free(c);
}

static void test_c_api_errors(void)
{
    CHECK(em_model_new(0, (int64_t[]){1}, 1) == NULL);
    CHECK(em_model_new(6, (int64_t[]){1, 1, 1, 1, 1, 1}, 1) == NULL);
    CHECK(em_model_new(2, (int64_t[]){3, 0}, 1) == NULL);
    CHECK_ERROR_CONTAINS("model input");

    em_model *m = em_model_new(3, (int64_t[]){1, 28, 28}, 1);
    CHECK(em_model_add_linear(m, 10, true) == EM_ERR);
    CHECK_ERROR_CONTAINS("add a 'flatten' line");
    CHECK(em_model_add_flatten(m) == EM_OK);
    CHECK(em_model_add_linear(m, 0, true) == EM_ERR);
    CHECK_ERROR_CONTAINS("layer 1 (linear): out_features must be at least 1, got 0");
    CHECK(em_model_add_linear(m, -4, false) == EM_ERR);
    CHECK(em_model_add_activation(m, EM_ACT_NONE, 0) == EM_ERR);
    CHECK(em_model_add_activation(m, (em_activation)99, 0) == EM_ERR);
    CHECK(em_model_add_activation(m, EM_ACT_LEAKY_RELU, NAN) == EM_ERR);
    /* failed adds leave the model as it was */
    int count;
    em_model_state(m, &count);
    CHECK(count == 0);
    CHECK(em_model_layer_count(m) == 1);
    CHECK(em_model_add_linear(m, 10, false) == EM_OK);
    CHECK(em_model_find(m, "1.weight") != NULL);
    CHECK(em_model_find(m, "1.bias") == NULL);
    CHECK(strcmp(em_model_description(m), "input 1x28x28\nflatten\nlinear 10 bias=false\n") == 0);

    /* em_forward refuses inputs of the wrong shape, with a hint when only the layout differs */
    em_tensor *flat = em_tensor_zeros2(NULL, 2, 784);
    CHECK(em_forward(m, flat) == NULL);
    CHECK_ERROR_CONTAINS("[2, 784] does not fit the model's input [N, 1, 28, 28]");
    CHECK_ERROR_CONTAINS("reshape");
    CHECK(em_forward(m, em_tensor_zeros2(NULL, 2, 785)) == NULL);
    /* the whole message, so that a stray bracket in the shapes shows */
    CHECK_MSG(strcmp(ember_last_error(), "em_forward: input [2, 785] does not fit the model's input [N, 1, 28, 28]") == 0,
              "got \"%s\"", ember_last_error());
    CHECK(em_forward(m, NULL) == NULL);
    em_step_end();
    em_model_free(m);
    em_model_free(NULL);
}

/* parse(description(m)) gives the same layers and the same description. */
static void test_round_trip(void)
{
    const char *text = "input 2x6x4\n"
                       "flatten start_dim=2\n"
                       "linear 7 bias=false\n"
                       "leaky_relu 0.2\n"
                       "linear 5\n"
                       "gelu approximate=tanh\n"
                       "flatten\n"
                       "gelu\n"
                       "gelu_tanh\n"
                       "linear 9\n"
                       "sigmoid\n"
                       "tanh\n"
                       "silu\n"
                       "leaky_relu\n"
                       "relu\n";
    em_model *a = em_model_parse(text, "rt", 5);
    CHECK_MSG(a != NULL, "%s", ember_last_error());
    if (!a)
        return;
    char *canonical = em_model_generate_description(a);
    em_model *b = em_model_parse(canonical, "rt2", 5);
    CHECK_MSG(b != NULL, "%s\n%s", ember_last_error(), canonical);
    if (b) {
        check_same_model(a, b, true);
        char *again = em_model_generate_description(b);
        CHECK_MSG(strcmp(canonical, again) == 0, "%s\nvs\n%s", canonical, again);
        free(again);
        for (int i = 0; i < em_model_layer_count(a); i++) {
            const em_layer *la = em_model_layer_at(a, i), *lb = em_model_layer_at(b, i);
            CHECK(la->kind == lb->kind);
            CHECK(la->fused == lb->fused);
            CHECK(memcmp(&la->out, &lb->out, sizeof la->out) == 0);
        }
    }
    /* the options that differ from the defaults survive */
    CHECK(strstr(canonical, "flatten start_dim=2 end_dim=-1\n") != NULL);
    CHECK(strstr(canonical, "linear 7 bias=false\nleaky_relu 0.200000003\n") != NULL);
    CHECK(strstr(canonical, "gelu approximate=tanh\n") != NULL);
    CHECK(strstr(canonical, "\nleaky_relu\nrelu\n") != NULL);
    int64_t shape[EM_MAX_DIMS];
    CHECK(em_model_output_shape(a, shape) == 1 && shape[0] == 9);
    /* activations fuse into the linear right before them only */
    CHECK(em_model_layer_at(a, 2)->fused);   /* leaky_relu after linear 7 */
    CHECK(em_model_layer_at(a, 4)->fused);   /* gelu after linear 5 */
    CHECK(!em_model_layer_at(a, 6)->fused);  /* gelu after flatten */
    CHECK(!em_model_layer_at(a, 7)->fused);  /* gelu_tanh after gelu */
    CHECK(em_model_layer_at(a, 9)->fused);   /* sigmoid after linear 9 */
    CHECK(!em_model_layer_at(a, 10)->fused); /* tanh after a fused sigmoid */
    free(canonical);
    em_model_free(b);

    /* the C-built model's description parses back to the same model too */
    em_model *c = em_model_new(1, (int64_t[]){12}, 9);
    em_model_add_linear(c, 6, false);
    em_model_add_activation(c, EM_ACT_LEAKY_RELU, 0.3f);
    em_model_add_activation(c, EM_ACT_GELU_TANH, 0);
    em_model_add_linear(c, 3, true);
    em_model *d = em_model_parse(em_model_description(c), "c", 9);
    CHECK_MSG(d != NULL, "%s", ember_last_error());
    if (d)
        check_same_model(c, d, true);
    em_model_free(d);
    em_model_free(c);
    em_model_free(a);
}

/* nn.Linear's default: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 * for the weight, and the same bound for the bias. */
static void test_linear_init_statistics(void)
{
    em_model *m = em_model_load(test_path("models/mlp.ember"), 2024);
    CHECK(m != NULL);
    if (!m)
        return;
    const char *names[] = {"1.weight", "1.bias", "3.weight", "5.weight"};
    const double fan_in[] = {784, 784, 512, 256};
    for (int k = 0; k < 4; k++) {
        em_tensor *t = em_model_find(m, names[k]);
        CHECK(t != NULL);
        if (!t)
            continue;
        double bound = 1.0 / sqrt(fan_in[k]);
        double lo = 1e9, hi = -1e9, sum = 0, sum2 = 0;
        int64_t bins[10] = {0};
        for (int64_t i = 0; i < t->numel; i++) {
            double v = t->data[i];
            lo = fmin(lo, v);
            hi = fmax(hi, v);
            sum += v;
            sum2 += v * v;
            int b = (int)((v + bound) / (2 * bound) * 10);
            bins[b < 0 ? 0 : b > 9 ? 9 : b]++;
        }
        double n = (double)t->numel, mean = sum / n, var = sum2 / n - mean * mean;
        CHECK_MSG(lo >= -bound && hi <= bound, "%s in [%g, %g], bound %g", names[k], lo, hi, bound);
        /* uniform: the extremes come close to the bound, mean 0, variance bound^2/3 */
        double edge = bound * (1 - 20.0 / n);
        if (n > 1000) {
            CHECK_MSG(lo < -edge && hi > edge, "%s spans [%g, %g] of +-%g", names[k], lo, hi, bound);
            CHECK_NEAR(mean / bound, 0.0, 5.0 / sqrt(n));
            CHECK_NEAR(var / (bound * bound / 3), 1.0, 0.02);
            for (int b = 0; b < 10; b++)
                CHECK_MSG(fabs(bins[b] - n / 10) < 6 * sqrt(n / 10), "%s bin %d holds %lld of %g", names[k], b,
                          (long long)bins[b], n);
        }
    }
    em_model_free(m);
}

static void test_load_errors(void)
{
    CHECK(em_model_load("/nonexistent/dir/x.ember", 1) == NULL);
    CHECK_ERROR_CONTAINS("/nonexistent/dir/x.ember");
    char path[1024];
    snprintf(path, sizeof path, "%s/bad.ember", test_tmpdir());
    FILE *f = fopen(path, "w");
    fputs("input 10\n\nlinear 3\nsoftmx\n", f);
    fclose(f);
    CHECK(em_model_load(path, 1) == NULL);
    char want[1100];
    snprintf(want, sizeof want, "%s:4: unknown layer 'softmx'", path);
    CHECK_ERROR_CONTAINS(want);
    f = fopen(path, "wb");
    fwrite("input 10\0relu\n", 1, 14, f);
    fclose(f);
    CHECK(em_model_load(path, 1) == NULL);
    CHECK_ERROR_CONTAINS("NUL");
}

static void test_registry(void)
{
    CHECK(em_layer_kind_count() >= 9);
    for (int i = 0; i < em_layer_kind_count(); i++) {
        const em_layer_kind *k = em_layer_kind_at(i);
        CHECK(k && k->name && k->usage && k->infer && k->forward);
        CHECK(em_layer_kind_find(k->name) == k);
        CHECK(strncmp(k->usage, k->name, strlen(k->name)) == 0);
    }
    CHECK(em_layer_kind_find("input") == NULL);
    CHECK(em_layer_kind_at(-1) == NULL);
}

int main(void)
{
    test_syntax_errors();
    test_accepted_syntax();
    test_c_built_equals_parsed();
    test_c_api_errors();
    test_round_trip();
    test_linear_init_statistics();
    test_load_errors();
    test_registry();
    em_release_thread_state();
    return test_finish();
}
