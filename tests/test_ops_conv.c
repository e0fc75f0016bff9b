/* em_conv2d: PyTorch parity (output and the gradients of input, weight and bias) over
 * stride, padding, dilation, groups, depthwise, 1x1, non-square kernels and every fused
 * activation; a plain-loop reference in double at W2's shapes, odd output sizes and images
 * large enough for banded Winograd blocks; numeric gradient checks; no input gradient for
 * a first layer, a bias-only gradient, nothing recorded without gradients. All of it runs
 * with im2col forced, Winograd F(2x2) and F(4x4) forced (wherever they apply), and the
 * automatic choice. Then shape errors and overflowing sizes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/conv_internal.h"
#include "testlib.h"

typedef struct conv_case {
    const char *name;
    bool bias;
    int sh, sw, ph, pw, dh, dw, groups;
    em_activation act;
    float act_param;
} conv_case;

/* The same table as CONV_CASES in tests/fixtures/gen_cnn.py. */
static const conv_case cases[] = {
    {"basic", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_NONE, 0},
    {"stride_pad", true, 2, 1, 1, 0, 1, 1, 1, EM_ACT_NONE, 0},
    {"dilation", true, 1, 2, 2, 1, 2, 1, 1, EM_ACT_NONE, 0},
    {"groups", true, 1, 1, 1, 1, 1, 1, 2, EM_ACT_NONE, 0},
    {"depthwise", true, 2, 2, 1, 1, 1, 1, 3, EM_ACT_NONE, 0},
    {"pointwise", false, 1, 1, 0, 0, 1, 1, 1, EM_ACT_NONE, 0},
    {"pointwise_stride", true, 2, 2, 0, 0, 1, 1, 1, EM_ACT_NONE, 0},
    {"first_layer", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_RELU, 0},
    {"wide", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_RELU, 0},
    {"single_image", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_RELU, 0},
    {"big_kernel", true, 2, 3, 2, 1, 1, 2, 1, EM_ACT_NONE, 0},
    {"act_leaky_relu", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_LEAKY_RELU, 0.1f},
    {"act_sigmoid", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_SIGMOID, 0},
    {"act_tanh", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_TANH, 0},
    {"act_gelu", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_GELU, 0},
    {"act_gelu_tanh", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_GELU_TANH, 0},
    {"act_silu", true, 1, 1, 1, 1, 1, 1, 1, EM_ACT_SILU, 0},
};

/* Absolute tolerance of outputs and gradients against PyTorch, and relative tolerance of
 * the gradient checks (whose error floor of 1e-3 meets rounding where a small gradient
 * is the sum of many cancelling terms): Winograd F(4x4) rounds about ten times more than
 * a direct sum. */
static double conv_atol = 1e-5, gradcheck_tol = 1e-2;

static em_tensor *load(em_st_file *f, const char *prefix, const char *field, bool input)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", prefix, field);
    return input ? test_fixture_input(f, key) : test_fixture_tensor(f, key);
}

static em_tensor *run_case(const conv_case *c, em_tensor *x, em_tensor *w, em_tensor *b)
{
    return em_conv2d(x, w, b, c->sh, c->sw, c->ph, c->pw, c->dh, c->dw, c->groups, c->act,
                     c->act_param);
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("cnn_conv");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_case *c = &cases[i];
        char prefix[64], what[128];
        snprintf(prefix, sizeof prefix, "conv.%s", c->name);
        em_tensor *x = load(f, prefix, "x", true), *w = load(f, prefix, "w", true);
        em_tensor *b = c->bias ? load(f, prefix, "b", true) : NULL;
        em_tensor *want = load(f, prefix, "out", false);
        em_tensor *out = run_case(c, x, w, b);
        CHECK_MSG(out && em_same_shape(out, want), "%s: shape %s, want %s (%s)", prefix,
                  em_shape_str(out), em_shape_str(want), ember_last_error());
        if (!out)
            continue;
        snprintf(what, sizeof what, "%s forward", prefix);
        test_tensor_close(what, out, want->data, conv_atol, 1e-4);
        CHECK(em_backward_with(out, load(f, prefix, "gy", false)->data) == EM_OK);
        snprintf(what, sizeof what, "%s grad x", prefix);
        test_grad_close(what, x->grad, load(f, prefix, "gx", false), conv_atol, 1e-4);
        snprintf(what, sizeof what, "%s grad w", prefix);
        test_grad_close(what, w->grad, load(f, prefix, "gw", false), 10 * conv_atol, 1e-4);
        if (b) {
            snprintf(what, sizeof what, "%s grad b", prefix);
            test_grad_close(what, b->grad, load(f, prefix, "gb", false), 10 * conv_atol, 1e-4);
        }
        em_step_end();
    }
    em_st_close(f);
}

/* A first layer: the input needs no gradient, so none is made, and the weight's is
 * unchanged by that. Also: with gradients off nothing is recorded. */
static void test_first_layer(void)
{
    em_st_file *f = test_fixture("cnn_conv");
    const conv_case *c = &cases[7];
    CHECK(strcmp(c->name, "first_layer") == 0);
    em_tensor *x = load(f, "conv.first_layer", "x", false);
    em_tensor *w = load(f, "conv.first_layer", "w", true);
    em_tensor *b = load(f, "conv.first_layer", "b", true);
    em_tensor *out = run_case(c, x, w, b);
    CHECK(out && out->requires_grad);
    CHECK(em_backward_with(out, load(f, "conv.first_layer", "gy", false)->data) == EM_OK);
    CHECK(x->grad == NULL);
    test_grad_close("first layer grad w", w->grad, load(f, "conv.first_layer", "gw", false), 1e-4, 1e-4);
    test_grad_close("first layer grad b", b->grad, load(f, "conv.first_layer", "gb", false), 1e-4, 1e-4);
    em_step_end();

    /* Only the bias wants a gradient (a layer otherwise frozen). */
    const conv_case *wide = &cases[8];
    CHECK(strcmp(wide->name, "wide") == 0);
    x = load(f, "conv.wide", "x", false);
    w = load(f, "conv.wide", "w", false);
    b = load(f, "conv.wide", "b", true);
    out = run_case(wide, x, w, b);
    CHECK(out && em_backward_with(out, load(f, "conv.wide", "gy", false)->data) == EM_OK);
    CHECK(x->grad == NULL && w->grad == NULL);
    test_grad_close("bias-only grad b", b->grad, load(f, "conv.wide", "gb", false), 1e-4, 1e-4);
    em_step_end();

    x = load(f, "conv.first_layer", "x", true);
    w = load(f, "conv.first_layer", "w", true);
    bool was = em_set_grad_enabled(false);
    size_t tape = em_tape_length();
    out = run_case(c, x, w, NULL);
    CHECK(out && !out->requires_grad && em_tape_length() == tape);
    em_set_grad_enabled(was);
    em_step_end();
    em_st_close(f);
}

/* ---- plain-loop reference in double ------------------------------------------------ */

typedef struct ref_conv {
    int64_t n, c, h, w, o, kh, kw, oh, ow;
    int sh, sw, ph, pw, dh, dw, groups;
} ref_conv;

/* Calls visit(ctx, xi, wi, yi) for every multiply of the convolution. */
#define REF_LOOP(r, BODY)                                                                      \
    for (int64_t n_ = 0; n_ < (r)->n; n_++)                                                    \
        for (int64_t o_ = 0; o_ < (r)->o; o_++) {                                              \
            int64_t cg_ = (r)->c / (r)->groups, g_ = o_ / ((r)->o / (r)->groups);              \
            for (int64_t oy_ = 0; oy_ < (r)->oh; oy_++)                                        \
                for (int64_t ox_ = 0; ox_ < (r)->ow; ox_++)                                    \
                    for (int64_t ci_ = 0; ci_ < cg_; ci_++)                                    \
                        for (int64_t i_ = 0; i_ < (r)->kh; i_++)                               \
                            for (int64_t j_ = 0; j_ < (r)->kw; j_++) {                         \
                                int64_t iy_ = oy_ * (r)->sh - (r)->ph + i_ * (r)->dh;          \
                                int64_t ix_ = ox_ * (r)->sw - (r)->pw + j_ * (r)->dw;          \
                                if (iy_ < 0 || iy_ >= (r)->h || ix_ < 0 || ix_ >= (r)->w)      \
                                    continue;                                                  \
                                int64_t xi = ((n_ * (r)->c + g_ * cg_ + ci_) * (r)->h + iy_) * \
                                                 (r)->w + ix_;                                 \
                                int64_t wi = ((o_ * cg_ + ci_) * (r)->kh + i_) * (r)->kw + j_; \
                                int64_t yi = ((n_ * (r)->o + o_) * (r)->oh + oy_) * (r)->ow +  \
                                             ox_;                                              \
                                BODY;                                                          \
                            }                                                                  \
        }

static void check_against_reference(const char *what, ref_conv r, uint64_t seed)
{
    em_rng rng;
    em_rng_seed(&rng, seed);
    r.oh = (r.h + 2 * r.ph - r.dh * (r.kh - 1) - 1) / r.sh + 1;
    r.ow = (r.w + 2 * r.pw - r.dw * (r.kw - 1) - 1) / r.sw + 1;
    em_tensor *x = test_randn(&rng, 4, (int64_t[]){r.n, r.c, r.h, r.w}, 1.0f);
    em_tensor *w = test_randn(&rng, 4, (int64_t[]){r.o, r.c / r.groups, r.kh, r.kw}, 0.2f);
    em_tensor *b = test_randn(&rng, 1, (int64_t[]){r.o}, 0.2f);
    em_tensor *out = em_conv2d(x, w, b, r.sh, r.sw, r.ph, r.pw, r.dh, r.dw, r.groups, EM_ACT_RELU, 0);
    CHECK_MSG(out != NULL, "%s: %s", what, ember_last_error());
    if (!out)
        return;
    int64_t ny = out->numel;
    CHECK(ny == r.n * r.o * r.oh * r.ow);
    double *z = calloc((size_t)ny, sizeof(double));
    double *gx = calloc((size_t)x->numel, sizeof(double)), *gw = calloc((size_t)w->numel, sizeof(double));
    double *gb = calloc((size_t)r.o, sizeof(double));
    float *gy = malloc((size_t)ny * sizeof(float)), *want = malloc((size_t)ny * sizeof(float));
    for (int64_t i = 0; i < ny; i++)
        z[i] = b->data[(i / (r.oh * r.ow)) % r.o];
    REF_LOOP(&r, z[yi] += (double)x->data[xi] * (double)w->data[wi])
    for (int64_t i = 0; i < ny; i++) {
        want[i] = z[i] > 0 ? (float)z[i] : 0.0f;
        gy[i] = em_rng_normal(&rng);
        z[i] = z[i] > 0 ? gy[i] : 0.0; /* dz */
        gb[(i / (r.oh * r.ow)) % r.o] += z[i];
    }
    REF_LOOP(&r, { gx[xi] += z[yi] * w->data[wi]; gw[wi] += z[yi] * x->data[xi]; })
    char label[160];
    snprintf(label, sizeof label, "%s forward", what);
    test_tensor_close(label, out, want, 1e-4, 1e-4);
    CHECK(em_backward_with(out, gy) == EM_OK);
    int64_t most = x->numel > w->numel ? x->numel : w->numel;
    float *f = malloc((size_t)most * sizeof(float));
    for (int64_t i = 0; i < x->numel; i++)
        f[i] = (float)gx[i];
    snprintf(label, sizeof label, "%s grad x", what);
    test_tensor_close(label, em_tensor_wrap(NULL, 1, &x->numel, x->grad), f, 1e-4, 1e-4);
    for (int64_t i = 0; i < w->numel; i++)
        f[i] = (float)gw[i];
    snprintf(label, sizeof label, "%s grad w", what);
    test_tensor_close(label, em_tensor_wrap(NULL, 1, &w->numel, w->grad), f, 1e-3, 1e-4);
    for (int64_t i = 0; i < r.o; i++)
        f[i] = (float)gb[i];
    snprintf(label, sizeof label, "%s grad b", what);
    test_tensor_close(label, em_tensor_wrap(NULL, 1, &b->numel, b->grad), f, 1e-3, 1e-4);
    free(z);
    free(gx);
    free(gw);
    free(gb);
    free(gy);
    free(want);
    free(f);
    em_step_end();
}

static void test_reference(void)
{
    int quick = test_quick();
    /* W2's layers: the first on one channel (the small-K loop), the second on BLAS. */
    check_against_reference("w2 conv1", (ref_conv){.n = quick ? 2 : 8, .c = 1, .h = 28, .w = 28, .o = 32,
                                                   .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1,
                                                   .dh = 1, .dw = 1, .groups = 1}, 1);
    check_against_reference("w2 conv2", (ref_conv){.n = quick ? 2 : 5, .c = 32, .h = 14, .w = 14, .o = 64,
                                                   .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1,
                                                   .dh = 1, .dw = 1, .groups = 1}, 2);
    check_against_reference("groups, stride, dilation", (ref_conv){.n = 3, .c = 12, .h = 11, .w = 13, .o = 8,
                                                   .kh = 3, .kw = 2, .sh = 2, .sw = 1, .ph = 2, .pw = 1,
                                                   .dh = 2, .dw = 3, .groups = 4}, 3);
    check_against_reference("depthwise", (ref_conv){.n = 3, .c = 16, .h = 9, .w = 9, .o = 16, .kh = 3,
                                                    .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .dh = 1,
                                                    .dw = 1, .groups = 16}, 4);
    check_against_reference("one image", (ref_conv){.n = 1, .c = 6, .h = 10, .w = 10, .o = 20, .kh = 3,
                                                    .kw = 3, .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = 1,
                                                    .dw = 1, .groups = 1}, 5);
    /* Odd output sizes (partial Winograd tiles), wide padding. */
    check_against_reference("odd output", (ref_conv){.n = 3, .c = 9, .h = 9, .w = 8, .o = 10, .kh = 3,
                                                     .kw = 3, .sh = 1, .sw = 1, .ph = 0, .pw = 2, .dh = 1,
                                                     .dw = 1, .groups = 1}, 6);
    /* An image with more tiles than a Winograd block holds (with either tile size): bands
     * of tile rows, the last one partial. */
    check_against_reference("large image", (ref_conv){.n = 2, .c = 8, .h = 52, .w = 50, .o = 8, .kh = 3,
                                                      .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .dh = 1,
                                                      .dw = 1, .groups = 1}, 7);
}

/* ---- inference ----------------------------------------------------------------------
 * Without gradients, batches smaller than the thread team share each image among the
 * threads, and Winograd layers take their transformed weights from a per-thread cache
 * that must notice any change of the weights' values. */

static float activate_ref(em_activation act, double z)
{
    switch (act) {
    case EM_ACT_RELU: return z > 0 ? (float)z : 0.0f;
    case EM_ACT_TANH: return (float)tanh(z);
    default: return (float)z;
    }
}

static void check_inference_once(const char *what, const ref_conv *r, em_tensor *x, em_tensor *w,
                                 em_tensor *b, em_activation act)
{
    int64_t ny = r->n * r->o * r->oh * r->ow;
    double *z = calloc((size_t)ny, sizeof(double));
    float *want = malloc((size_t)ny * sizeof(float));
    for (int64_t i = 0; i < ny; i++)
        z[i] = b->data[(i / (r->oh * r->ow)) % r->o];
    REF_LOOP(r, z[yi] += (double)x->data[xi] * (double)w->data[wi])
    for (int64_t i = 0; i < ny; i++)
        want[i] = activate_ref(act, z[i]);
    bool was = em_set_grad_enabled(false);
    em_tensor *out = em_conv2d(x, w, b, r->sh, r->sw, r->ph, r->pw, r->dh, r->dw, r->groups, act, 0);
    em_set_grad_enabled(was);
    CHECK_MSG(out != NULL, "%s: %s", what, ember_last_error());
    if (out)
        test_tensor_close(what, out, want, 1e-4, 1e-4);
    free(z);
    free(want);
    em_step_end();
}

static void check_inference(const char *what, ref_conv r, em_activation act, uint64_t seed)
{
    em_rng rng;
    em_rng_seed(&rng, seed);
    r.oh = (r.h + 2 * r.ph - r.dh * (r.kh - 1) - 1) / r.sh + 1;
    r.ow = (r.w + 2 * r.pw - r.dw * (r.kw - 1) - 1) / r.sw + 1;
    em_arena *arena = em_arena_create(0);
    em_tensor *x = em_tensor_empty(arena, 4, (int64_t[]){r.n, r.c, r.h, r.w});
    em_tensor *w = em_tensor_empty(arena, 4, (int64_t[]){r.o, r.c / r.groups, r.kh, r.kw});
    em_tensor *b = em_tensor_empty(arena, 1, (int64_t[]){r.o});
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = em_rng_normal(&rng);
    for (int64_t i = 0; i < w->numel; i++)
        w->data[i] = 0.2f * em_rng_normal(&rng);
    for (int64_t i = 0; i < b->numel; i++)
        b->data[i] = 0.2f * em_rng_normal(&rng);
    int threads = em_num_threads();
    char label[200];
    for (int t = 1; t <= 2; t++) {
        em_set_num_threads(t);
        snprintf(label, sizeof label, "%s, inference on %d thread(s)", what, t);
        check_inference_once(label, &r, x, w, b, act);
        /* Again: a cached transform of the same weights. */
        snprintf(label, sizeof label, "%s, inference on %d thread(s), again", what, t);
        check_inference_once(label, &r, x, w, b, act);
        /* Weights changed in place, at the same address: the cache must not serve the
         * old ones (one tap of the last filter, so a partial comparison would miss it). */
        w->data[w->numel - 1] += 0.5f;
        snprintf(label, sizeof label, "%s, inference on %d thread(s), weights changed", what, t);
        check_inference_once(label, &r, x, w, b, act);
    }
    em_set_num_threads(threads);
    em_arena_destroy(arena);
}

/* More Winograd layers than the per-thread cache holds, run in turn twice: entries are
 * evicted and refilled, and every output stays that of the recorded forward. */
static void test_inference_cache_turnover(void)
{
    enum { LAYERS = 11 };
    em_rng rng;
    em_rng_seed(&rng, 41);
    em_arena *arena = em_arena_create(0);
    em_tensor *x = em_tensor_empty(arena, 4, (int64_t[]){1, 16, 8, 8});
    em_tensor *w[LAYERS];
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = em_rng_normal(&rng);
    for (int l = 0; l < LAYERS; l++) {
        w[l] = em_tensor_empty(arena, 4, (int64_t[]){16, 16, 3, 3});
        for (int64_t i = 0; i < w[l]->numel; i++)
            w[l]->data[i] = 0.2f * em_rng_normal(&rng);
    }
    for (int round = 0; round < 2; round++)
        for (int l = 0; l < LAYERS; l++) {
            w[l]->requires_grad = true;
            em_tensor *want = em_conv2d(x, w[l], NULL, 1, 1, 1, 1, 1, 1, 1, EM_ACT_NONE, 0.0f);
            w[l]->requires_grad = false;
            bool was = em_set_grad_enabled(false);
            em_tensor *got = em_conv2d(x, w[l], NULL, 1, 1, 1, 1, 1, 1, 1, EM_ACT_NONE, 0.0f);
            em_set_grad_enabled(was);
            CHECK_MSG(want && got, "%s", ember_last_error());
            if (want && got) {
                char label[96];
                snprintf(label, sizeof label, "cache turnover, round %d, layer %d", round, l);
                test_tensor_close(label, got, want->data, 1e-4, 1e-4);
            }
            em_step_end();
        }
    em_arena_destroy(arena);
}

static void test_inference(void)
{
    /* W5: W2's layers on one image. */
    check_inference("w2 conv1, one image", (ref_conv){.n = 1, .c = 1, .h = 28, .w = 28, .o = 32, .kh = 3,
                                                      .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .dh = 1,
                                                      .dw = 1, .groups = 1}, EM_ACT_RELU, 11);
    check_inference("w2 conv2, one image", (ref_conv){.n = 1, .c = 32, .h = 14, .w = 14, .o = 64, .kh = 3,
                                                      .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .dh = 1,
                                                      .dw = 1, .groups = 1}, EM_ACT_RELU, 12);
    /* Output channels not a multiple of 16, no activation, odd sizes, a batch of 3. */
    check_inference("odd channels, batch 3", (ref_conv){.n = 3, .c = 9, .h = 13, .w = 11, .o = 20, .kh = 3,
                                                        .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 0, .dh = 1,
                                                        .dw = 1, .groups = 1}, EM_ACT_NONE, 13);
    /* Groups and strides on one image (the shared-image im2col path), an activation
     * applied after the product, and a first layer without ReLU (bias fused alone). */
    check_inference("groups, one image", (ref_conv){.n = 1, .c = 16, .h = 30, .w = 30, .o = 64, .kh = 3,
                                                    .kw = 3, .sh = 2, .sw = 1, .ph = 1, .pw = 1, .dh = 1,
                                                    .dw = 2, .groups = 2}, EM_ACT_TANH, 14);
    check_inference("first layer, no activation", (ref_conv){.n = 1, .c = 1, .h = 40, .w = 36, .o = 40,
                                                             .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1,
                                                             .pw = 1, .dh = 1, .dw = 1, .groups = 1},
                    EM_ACT_NONE, 15);
}

/* em_conv2d_max_pool2d gives em_max_pool2d(em_conv2d(...)) exactly, fused (one image,
 * two threads, no gradients) or not; and a model's inference, which fuses such pairs,
 * gives the values of its forward with gradients. */
/* t copied into arena (so that it outlives em_step_end), requiring a gradient. */
static em_tensor *kept(em_arena *arena, const em_tensor *t)
{
    em_tensor *copy = em_tensor_from(arena, t->ndim, t->shape, t->data);
    copy->requires_grad = true;
    return copy;
}

static void check_conv_pool(const char *what, int64_t n, int64_t c, int64_t hw, int64_t o, em_activation act,
                            const em_pool2d_args *pool, uint64_t seed)
{
    em_rng rng;
    em_rng_seed(&rng, seed);
    em_arena *arena = em_arena_create(0);
    em_tensor *x = kept(arena, test_randn(&rng, 4, (int64_t[]){n, c, hw, hw}, 1.0f));
    em_tensor *w = kept(arena, test_randn(&rng, 4, (int64_t[]){o, c, 3, 3}, 0.2f));
    em_tensor *b = kept(arena, test_randn(&rng, 1, (int64_t[]){o}, 0.2f));
    const em_conv2d_args conv = {.stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1, .dilation_h = 1,
                                 .dilation_w = 1, .groups = 1, .act = act};
    int threads = em_num_threads();
    for (int t = 1; t <= 2; t++) {
        em_set_num_threads(t);
        for (int grad = 0; grad <= 1; grad++) {
            bool was = em_set_grad_enabled(grad);
            em_tensor *want = em_max_pool2d(em_conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1, act, 0.0f), pool->kernel_h,
                                            pool->kernel_w, pool->stride_h, pool->stride_w, pool->pad_h,
                                            pool->pad_w);
            em_tensor *got = em_conv2d_max_pool2d(x, w, b, &conv, pool);
            CHECK_MSG(want && got, "%s: %s", what, ember_last_error());
            if (want && got) {
                CHECK_MSG(got->ndim == 4 && got->numel == want->numel && got->shape[2] == want->shape[2] &&
                              got->shape[3] == want->shape[3],
                          "%s: shape %s, expected %s", what, em_shape_str(got), em_shape_str(want));
                CHECK_MSG(got->numel == want->numel &&
                              memcmp(got->data, want->data, (size_t)want->numel * sizeof(float)) == 0,
                          "%s on %d thread(s), gradients %s: fused values differ", what, t, grad ? "on" : "off");
                /* Gradients on: the result is recorded like the two ops. */
                CHECK(!grad || got->requires_grad);
            }
            em_set_grad_enabled(was);
            em_step_end();
        }
    }
    em_set_num_threads(threads);
    em_arena_destroy(arena);
}

/* A first layer (input without gradient) trains through the pair: the same output and
 * the same weight and bias gradients as the two ops. */
static void check_conv_pool_training(const char *what, int64_t n, int64_t c, int64_t hw, int64_t o,
                                     em_activation act, const em_pool2d_args *pool, uint64_t seed)
{
    em_rng rng;
    em_rng_seed(&rng, seed);
    em_arena *arena = em_arena_create(0);
    em_tensor *x = kept(arena, test_randn(&rng, 4, (int64_t[]){n, c, hw, hw}, 1.0f));
    x->requires_grad = false;
    em_tensor *w = em_param_new(arena, 4, (int64_t[]){o, c, 3, 3}, "w");
    em_tensor *b = em_param_new(arena, 1, (int64_t[]){o}, "b");
    em_init_normal(w, &rng, 0.0f, 0.3f);
    em_init_normal(b, &rng, 0.0f, 0.3f);
    const em_conv2d_args conv = {.stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1, .dilation_h = 1,
                                 .dilation_w = 1, .groups = 1, .act = act};
    int threads = em_num_threads();
    for (int t = 1; t <= 2; t++) {
        em_set_num_threads(t);
        em_tensor *want = em_max_pool2d(em_conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1, act, 0.0f), pool->kernel_h,
                                        pool->kernel_w, pool->stride_h, pool->stride_w, pool->pad_h, pool->pad_w);
        CHECK_MSG(want != NULL, "%s: %s", what, ember_last_error());
        if (!want)
            break;
        const int64_t numel = want->numel; /* want lives until the step ends */
        float *dy = malloc((size_t)want->numel * sizeof(float));
        float *want_y = malloc((size_t)want->numel * sizeof(float));
        float *want_gw = malloc((size_t)w->numel * sizeof(float)), want_gb[64];
        for (int64_t i = 0; i < want->numel; i++)
            dy[i] = em_rng_normal(&rng);
        memcpy(want_y, want->data, (size_t)want->numel * sizeof(float));
        CHECK(em_backward_with(want, dy) == EM_OK);
        memcpy(want_gw, w->grad, (size_t)w->numel * sizeof(float));
        memcpy(want_gb, b->grad, (size_t)o * sizeof(float));
        em_step_end();
        em_zero_grad(w);
        em_zero_grad(b);

        em_tensor *got = em_conv2d_max_pool2d(x, w, b, &conv, pool);
        CHECK_MSG(got != NULL && got->numel == numel && got->requires_grad, "%s: %s", what, ember_last_error());
        if (got && got->numel == numel) {
            CHECK_MSG(memcmp(got->data, want_y, (size_t)got->numel * sizeof(float)) == 0,
                      "%s on %d thread(s): recorded fused values differ", what, t);
            CHECK(em_backward_with(got, dy) == EM_OK);
            char label[200];
            snprintf(label, sizeof label, "%s on %d thread(s): weight gradient", what, t);
            test_tensor_close(label, em_tensor_wrap(NULL, 1, &w->numel, w->grad), want_gw, 1e-5, 1e-5);
            snprintf(label, sizeof label, "%s on %d thread(s): bias gradient", what, t);
            test_tensor_close(label, em_tensor_wrap(NULL, 1, &b->numel, b->grad), want_gb, 1e-5, 1e-5);
        }
        em_step_end();
        em_zero_grad(w);
        em_zero_grad(b);
        free(dy);
        free(want_y);
        free(want_gw);
    }
    em_set_num_threads(threads);
    em_arena_destroy(arena);
}

static void test_conv_pool(void)
{
    const em_pool2d_args overlapping = {3, 3, 2, 2, 1, 1}, pairs = {2, 2, 2, 2, 0, 0};
    check_conv_pool_training("first layer, training", 4, 1, 28, 32, EM_ACT_RELU, &pairs, 31);
    check_conv_pool_training("first layer, overlapping windows", 3, 3, 11, 20, EM_ACT_RELU, &overlapping, 32);
    check_conv_pool_training("first layer without activation", 3, 16, 9, 24, EM_ACT_NONE, &pairs, 33);

    const em_pool2d_args two = {2, 2, 2, 2, 0, 0}, three = {3, 3, 2, 2, 1, 1};
    check_conv_pool("w2 block 1", 1, 1, 28, 32, EM_ACT_RELU, &two, 21);
    check_conv_pool("w2 block 2", 1, 32, 14, 64, EM_ACT_RELU, &two, 22);
    check_conv_pool("odd channels, padded window", 1, 9, 13, 20, EM_ACT_TANH, &three, 23);
    check_conv_pool("a batch", 3, 8, 10, 16, EM_ACT_NONE, &two, 24);
    check_conv_pool("a batch through a first layer", 5, 1, 12, 20, EM_ACT_RELU, &two, 26);
    check_conv_pool("a batch, activation after the product", 4, 2, 9, 8, EM_ACT_TANH, &three, 27);

    /* A model with both pairs: inference equals the recorded forward. */
    em_model *m = em_model_parse("input 1x28x28\nconv2d 32 3 pad=1\nrelu\nmaxpool 2\nconv2d 64 3 pad=1\n"
                                 "relu\nmaxpool 2\nflatten\nlinear 10\n",
                                 "conv-pool model", 5);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    em_model_set_training(m, false);
    em_rng rng;
    em_rng_seed(&rng, 25);
    em_arena *arena = em_arena_create(0);
    em_tensor *x = kept(arena, test_randn(&rng, 4, (int64_t[]){1, 1, 28, 28}, 1.0f));
    x->requires_grad = false;
    int threads = em_num_threads();
    for (int t = 1; t <= 2; t++) {
        em_set_num_threads(t);
        em_tensor *recorded = em_forward(m, x);
        float want[10];
        CHECK(recorded && recorded->numel == 10);
        if (recorded)
            memcpy(want, recorded->data, sizeof want);
        bool was = em_set_grad_enabled(false);
        em_tensor *inferred = em_forward(m, x);
        em_set_grad_enabled(was);
        CHECK_MSG(inferred != NULL, "%s", ember_last_error());
        if (recorded && inferred)
            test_tensor_close("model inference with fused conv + pool", inferred, want, 1e-5, 1e-5);
        em_step_end();
    }
    em_set_num_threads(threads);
    em_model_free(m);
    em_arena_destroy(arena);
}

/* ---- numeric gradients ------------------------------------------------------------- */

typedef struct conv_args {
    int sh, sw, ph, pw, dh, dw, groups;
    em_activation act;
} conv_args;

static em_tensor *apply_conv(void *user, em_tensor *const *in, int n)
{
    const conv_args *a = user;
    return em_conv2d(in[0], in[1], n > 2 ? in[2] : NULL, a->sh, a->sw, a->ph, a->pw, a->dh, a->dw,
                     a->groups, a->act, 0.0f);
}

/* The input through a transposed view, so that em_conv2d must make it contiguous. */
static em_tensor *apply_conv_transposed(void *user, em_tensor *const *in, int n)
{
    em_tensor *args[3] = {em_transpose(in[0], 2, 3), in[1], n > 2 ? in[2] : NULL};
    return apply_conv(user, args, n);
}

static void test_gradients(void)
{
    em_rng rng;
    em_rng_seed(&rng, 11);
    static const struct {
        const char *what;
        int64_t x[4], w[4];
        conv_args a;
    } checks[] = {
        {"3x3 pad 1", {2, 3, 5, 6}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 1, EM_ACT_NONE}},
        {"stride 2x1, 3x2 kernel", {2, 2, 7, 6}, {3, 2, 3, 2}, {2, 1, 1, 0, 1, 1, 1, EM_ACT_TANH}},
        {"dilation 2, groups 2", {3, 4, 7, 7}, {4, 2, 2, 3}, {1, 2, 1, 2, 2, 1, 2, EM_ACT_SIGMOID}},
        {"depthwise", {2, 3, 5, 5}, {3, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 3, EM_ACT_NONE}},
        {"1x1", {2, 5, 3, 4}, {2, 5, 1, 1}, {1, 1, 0, 0, 1, 1, 1, EM_ACT_NONE}},
        {"one channel", {3, 1, 6, 6}, {4, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 1, EM_ACT_NONE}},
        {"wide", {2, 6, 5, 5}, {5, 6, 3, 3}, {1, 1, 1, 1, 1, 1, 1, EM_ACT_NONE}},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        em_tensor *x = test_randn(&rng, 4, checks[i].x, 1.0f);
        em_tensor *w = test_randn(&rng, 4, checks[i].w, 0.5f);
        em_tensor *b = test_randn(&rng, 1, checks[i].w, 0.5f);
        /* Without an activation the function is linear in each input, so central
         * differences are exact for any step and a large one keeps float32 rounding out. */
        double eps = checks[i].a.act == EM_ACT_NONE ? 1.0 : 1e-2;
        test_gradcheck(checks[i].what, apply_conv, (void *)&checks[i].a, (em_tensor *[]){x, w, b}, 3,
                       eps, gradcheck_tol);
        em_step_end();
    }
    em_tensor *x = test_randn(&rng, 4, (int64_t[]){2, 2, 5, 4}, 1.0f);
    em_tensor *w = test_randn(&rng, 4, (int64_t[]){3, 2, 3, 3}, 0.5f);
    conv_args a = {1, 1, 1, 1, 1, 1, 1, EM_ACT_NONE};
    test_gradcheck("transposed input, no bias", apply_conv_transposed, &a, (em_tensor *[]){x, w}, 2,
                   1.0, gradcheck_tol);
    em_step_end();
}

static void test_errors(void)
{
    em_tensor *x = em_tensor_zeros4(NULL, 2, 3, 8, 8);
    em_tensor *w = em_tensor_zeros4(NULL, 4, 3, 3, 3);
    em_tensor *b = em_tensor_zeros1(NULL, 4);

    em_clear_error();
    CHECK(em_conv2d(x, em_tensor_zeros4(NULL, 4, 2, 3, 3), b, 1, 1, 0, 0, 1, 1, 1, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("[2, 3, 8, 8]");
    CHECK_ERROR_CONTAINS("[4, 2, 3, 3]");
    CHECK_ERROR_CONTAINS("channels");

    em_clear_error();
    CHECK(em_conv2d(x, em_tensor_zeros4(NULL, 4, 1, 3, 3), b, 1, 1, 0, 0, 1, 1, 2, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("not divisible by groups=2");

    em_clear_error();
    CHECK(em_conv2d(x, em_tensor_zeros4(NULL, 3, 1, 3, 3), NULL, 1, 1, 0, 0, 1, 1, 3, EM_ACT_NONE, 0) != NULL);
    CHECK(em_conv2d(x, em_tensor_zeros4(NULL, 4, 1, 3, 3), NULL, 1, 1, 0, 0, 1, 1, 3, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("4 output channels, not divisible by groups=3");

    em_clear_error();
    CHECK(em_conv2d(em_tensor_zeros4(NULL, 1, 3, 4, 4), em_tensor_zeros4(NULL, 4, 3, 5, 5), NULL, 1, 1, 0, 0,
                    1, 1, 1, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("[1, 3, 4, 4]");
    CHECK_ERROR_CONTAINS("smaller than the kernel 5x5");
    /* The same input fits once padded, and not once dilated. */
    CHECK(em_conv2d(em_tensor_zeros4(NULL, 1, 3, 4, 4), em_tensor_zeros4(NULL, 4, 3, 5, 5), NULL, 1, 1, 1, 1,
                    1, 1, 1, EM_ACT_NONE, 0) != NULL);
    em_clear_error();
    CHECK(em_conv2d(x, w, b, 1, 1, 0, 0, 4, 4, 1, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("dilated 9x9");

    em_clear_error();
    CHECK(em_conv2d(em_tensor_zeros2(NULL, 3, 8), w, b, 1, 1, 0, 0, 1, 1, 1, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("[N, C, H, W]");
    em_clear_error();
    CHECK(em_conv2d(x, w, em_tensor_zeros1(NULL, 3), 1, 1, 0, 0, 1, 1, 1, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("bias must be [4]");
    em_clear_error();
    CHECK(em_conv2d(x, w, b, 0, 1, 0, 0, 1, 1, 1, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("stride 0x1");
    em_clear_error();
    CHECK(em_conv2d(x, w, b, 1, 1, -1, 0, 1, 1, 1, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("padding -1x0");
    em_clear_error();
    CHECK(em_conv2d(x, w, b, 1, 1, 0, 0, 1, 1, 0, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("groups");
    /* Sizes that overflow the products: refused, not wrapped. */
    em_clear_error();
    CHECK(em_conv2d(x, w, b, 1, 1, INT32_MAX, INT32_MAX, 1, 1, 1, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("too large");
    em_clear_error();
    CHECK(em_conv2d(x, w, b, 1, 1, 0, 0, INT32_MAX, 1, 1, EM_ACT_NONE, 0) == NULL);
    CHECK_ERROR_CONTAINS("smaller than the kernel");
    CHECK(em_conv2d(NULL, w, b, 1, 1, 0, 0, 1, 1, 1, EM_ACT_NONE, 0) == NULL);
    em_step_end();
}

int main(void)
{
    /* Each algorithm wherever it can run (Winograd with both tile sizes), then the
     * automatic choice. */
    static const struct {
        em_conv_algorithm algorithm;
        int tile;
    } runs[] = {{EM_CONV_UNFOLDED, 0}, {EM_CONV_WINOGRAD, 2}, {EM_CONV_WINOGRAD, 4}, {EM_CONV_AUTO, 0}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        em_conv_force_algorithm(runs[r].algorithm);
        em_conv_force_winograd_tile(runs[r].tile);
        conv_atol = runs[r].tile == 4 ? 1e-4 : 1e-5;
        gradcheck_tol = runs[r].tile == 4 ? 5e-2 : 1e-2;
        int before = test_failures;
        test_parity();
        test_first_layer();
        test_reference();
        test_inference();
        test_inference_cache_turnover();
        test_conv_pool();
        test_gradients();
        if (test_failures != before)
            fprintf(stderr, "(failures above with algorithm %d, Winograd tile %d)\n", (int)runs[r].algorithm,
                    runs[r].tile);
    }
    test_errors();
    return test_finish();
}
