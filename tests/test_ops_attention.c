/* em_causal_attention and em_causal_attention_qkv: PyTorch parity (forward and the
 * gradients of q, k, v or of the fused qkv) over head counts 1, 2, 4 and lengths 1, 5, 16
 * plus head sizes on and off the vectorised path, with and without dropout on the
 * probabilities; the dropout mask's statistics and independence of threads; numeric gradient checks; a threaded size
 * against a double-precision reference; column-slice views read in place; the key/value
 * cache against full recomputation; errors naming shapes. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static const struct {
    const char *name;
    int heads;
} attention_cases[] = {
    {"h1_t1", 1}, {"h1_t5", 1}, {"h1_t16", 1}, {"h2_t1", 2}, {"h2_t5", 2},
    {"h2_t16", 2}, {"h4_t1", 4}, {"h4_t5", 4}, {"h4_t16", 4}, {"hd32", 2},
    {"hd48", 2},   {"long", 1},  {"peaky", 2},
};

static const struct {
    const char *name;
    int heads;
} qkv_cases[] = {{"qkv_h2_t5", 2}, {"qkv_hd32", 2}};

/* Dropout on the probabilities: the fixture draws the same keep decisions. */
static const struct {
    const char *name;
    int heads;
    float p;
    uint64_t seed;
    bool fused;
} dropout_cases[] = {
    {"drop_h2_t16", 2, 0.25f, 7, false},
    {"drop_long", 1, 0.5f, 123456789, false},
    {"drop_hd32", 2, 0.1f, (UINT64_C(1) << 63) + 5, false},
    {"drop_qkv_h4", 4, 0.4f, 99, true},
};

static void check_against(em_st_file *f, const char *name, em_tensor *out, em_tensor *const *in,
                          int n_in)
{
    char key[96], what[128];
    snprintf(key, sizeof key, "attn.%s.out", name);
    em_tensor *want = test_fixture_tensor(f, key);
    CHECK_MSG(out && em_same_shape(out, want), "%s: %s", name, out ? em_shape_str(out) : ember_last_error());
    if (!out || !em_same_shape(out, want))
        return;
    snprintf(what, sizeof what, "attention %s forward", name);
    test_tensor_close(what, out, want->data, 1e-5, 1e-5);
    snprintf(key, sizeof key, "attn.%s.w", name);
    CHECK(em_backward_with(out, test_fixture_tensor(f, key)->data) == EM_OK);
    for (int i = 0; i < n_in; i++) {
        snprintf(key, sizeof key, "attn.%s.grad%d", name, i);
        snprintf(what, sizeof what, "attention %s gradient %d", name, i);
        test_grad_close(what, in[i]->grad, test_fixture_tensor(f, key), 1e-5, 1e-4);
    }
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("transformer_attention");
    char key[96];
    for (size_t c = 0; c < sizeof attention_cases / sizeof attention_cases[0]; c++) {
        em_tensor *in[3];
        for (int i = 0; i < 3; i++) {
            snprintf(key, sizeof key, "attn.%s.in%d", attention_cases[c].name, i);
            in[i] = test_fixture_input(f, key);
        }
        size_t before = em_tape_length();
        em_tensor *out = em_causal_attention(in[0], in[1], in[2], attention_cases[c].heads);
        CHECK(em_tape_length() - before == 1);
        check_against(f, attention_cases[c].name, out, in, 3);
        em_step_end();
    }
    for (size_t c = 0; c < sizeof qkv_cases / sizeof qkv_cases[0]; c++) {
        snprintf(key, sizeof key, "attn.%s.in0", qkv_cases[c].name);
        em_tensor *qkv = test_fixture_input(f, key);
        size_t before = em_tape_length();
        em_tensor *out = em_causal_attention_qkv(qkv, qkv_cases[c].heads);
        CHECK(em_tape_length() - before == 1);
        check_against(f, qkv_cases[c].name, out, &qkv, 1);
        em_step_end();
    }
    for (size_t c = 0; c < sizeof dropout_cases / sizeof dropout_cases[0]; c++) {
        const int n_in = dropout_cases[c].fused ? 1 : 3;
        em_tensor *in[3];
        for (int i = 0; i < n_in; i++) {
            snprintf(key, sizeof key, "attn.%s.in%d", dropout_cases[c].name, i);
            in[i] = test_fixture_input(f, key);
        }
        const float p = dropout_cases[c].p;
        const uint64_t seed = dropout_cases[c].seed;
        const int heads = dropout_cases[c].heads;
        em_tensor *out = n_in == 1 ? em_causal_attention_qkv_dropout(in[0], heads, p, seed)
                                   : em_causal_attention_dropout(in[0], in[1], in[2], heads, p, seed);
        check_against(f, dropout_cases[c].name, out, in, n_in);
        em_step_end();
    }
    em_st_close(f);
}

/* The three column slices of a fused projection, passed as views, give the fused op's
 * output and gradients exactly: both read the same memory with the same kernel. */
static void test_slices_match_fused(void)
{
    em_rng rng;
    em_rng_seed(&rng, 21);
    int64_t s[3] = {3, 11, 96};
    em_tensor *a = test_randn(&rng, 3, s, 1.0f), *b = em_tensor_clone(NULL, a);
    b->requires_grad = true;
    em_tensor *gy = test_randn(&rng, 3, (int64_t[]){3, 11, 32}, 1.0f);
    size_t before = em_tape_length();
    em_tensor *y_fused = em_causal_attention_qkv(a, 4);
    em_tensor *q = em_slice(b, 2, 0, 32, 1), *k = em_slice(b, 2, 32, 64, 1), *v = em_slice(b, 2, 64, 96, 1);
    em_tensor *y_split = em_causal_attention(q, k, v, 4);
    /* 1 fused node; 3 slices and 1 attention node: no contiguous copies */
    CHECK_MSG(em_tape_length() - before == 5, "%zu nodes", em_tape_length() - before);
    CHECK(y_fused && y_split);
    if (!y_fused || !y_split)
        return;
    CHECK(memcmp(y_fused->data, y_split->data, (size_t)y_fused->numel * sizeof(float)) == 0);
    CHECK(em_backward_with(y_fused, gy->data) == EM_OK);
    CHECK(em_backward_with(y_split, gy->data) == EM_OK);
    CHECK(memcmp(a->grad, b->grad, (size_t)a->numel * sizeof(float)) == 0);
    em_step_end();
}

/* Views read in place: a column window of a wider tensor (strided rows) and a
 * [T, B, C] tensor seen as [B, T, C] (batch stride smaller than the row stride) give the
 * values and gradients of their dense copies. */
static void test_strided_views(void)
{
    em_rng rng;
    em_rng_seed(&rng, 17);
    em_tensor *wide = test_randn(&rng, 3, (int64_t[]){2, 7, 30}, 1.0f);
    em_tensor *dense = em_tensor_clone(NULL, em_slice(wide, 2, 3, 27, 1));
    dense->requires_grad = true;
    em_tensor *gy = test_randn(&rng, 3, (int64_t[]){2, 7, 8}, 1.0f);
    size_t before = em_tape_length();
    em_tensor *y_view = em_causal_attention_qkv(em_slice(wide, 2, 3, 27, 1), 2);
    CHECK_MSG(em_tape_length() - before == 2, "column window copied (%zu nodes)",
              em_tape_length() - before);
    em_tensor *y_dense = em_causal_attention_qkv(dense, 2);
    CHECK(y_view && y_dense);
    if (!y_view || !y_dense)
        return;
    CHECK(memcmp(y_view->data, y_dense->data, (size_t)y_view->numel * sizeof(float)) == 0);
    CHECK(em_backward_with(y_view, gy->data) == EM_OK && em_backward_with(y_dense, gy->data) == EM_OK);
    double worst = 0.0, outside = 0.0;
    for (int64_t r = 0; r < 14; r++)
        for (int64_t c = 0; c < 30; c++) {
            float g = wide->grad[r * 30 + c];
            if (c < 3 || c >= 27)
                outside = fmax(outside, fabs(g));
            else
                worst = fmax(worst, fabs(g - dense->grad[r * 24 + c - 3]));
        }
    CHECK_MSG(worst == 0.0 && outside == 0.0, "window gradient off by %g, %g outside", worst, outside);
    em_step_end();

    /* [T, B, C] -> [B, T, C] */
    int64_t tbc[3] = {6, 3, 16};
    em_tensor *q = test_randn(&rng, 3, tbc, 1.0f), *k = test_randn(&rng, 3, tbc, 1.0f),
              *v = test_randn(&rng, 3, tbc, 1.0f);
    em_tensor *qd = em_tensor_clone(NULL, em_transpose(q, 0, 1)),
              *kd = em_tensor_clone(NULL, em_transpose(k, 0, 1)),
              *vd = em_tensor_clone(NULL, em_transpose(v, 0, 1));
    qd->requires_grad = kd->requires_grad = vd->requires_grad = true;
    em_tensor *y_t = em_causal_attention(em_transpose(q, 0, 1), em_transpose(k, 0, 1),
                                         em_transpose(v, 0, 1), 2);
    em_tensor *y_d = em_causal_attention(qd, kd, vd, 2);
    CHECK(y_t && y_d);
    if (!y_t || !y_d)
        return;
    CHECK(memcmp(y_t->data, y_d->data, (size_t)y_t->numel * sizeof(float)) == 0);
    em_tensor *g2 = test_randn(&rng, 3, (int64_t[]){3, 6, 16}, 1.0f);
    CHECK(em_backward_with(y_t, g2->data) == EM_OK && em_backward_with(y_d, g2->data) == EM_OK);
    worst = 0.0;
    em_tensor *orig[3] = {q, k, v}, *copies[3] = {qd, kd, vd};
    for (int i = 0; i < 3; i++)
        for (int64_t t = 0; t < 6; t++)
            for (int64_t b = 0; b < 3; b++)
                for (int64_t c = 0; c < 16; c++)
                    worst = fmax(worst, fabs(orig[i]->grad[(t * 3 + b) * 16 + c] -
                                             copies[i]->grad[(b * 6 + t) * 16 + c]));
    CHECK_MSG(worst == 0.0, "transposed-view gradients off by %g", worst);
    em_step_end();
}

typedef struct attn_args {
    int heads;
    bool fused;
    float dropout; /* with seed 1234 */
} attn_args;

static em_tensor *attn_fn(void *user, em_tensor *const *in, int n)
{
    const attn_args *a = user;
    const uint64_t seed = 1234;
    if (a->fused)
        return em_causal_attention_qkv_dropout(in[0], a->heads, a->dropout, seed);
    /* one input: the same tensor as q, k and v (their gradients add up in it) */
    return n == 1 ? em_causal_attention_dropout(in[0], in[0], in[0], a->heads, a->dropout, seed)
                  : em_causal_attention_dropout(in[0], in[1], in[2], a->heads, a->dropout, seed);
}

static void test_gradcheck_small(void)
{
    em_rng rng;
    em_rng_seed(&rng, 7);
    static const struct {
        int64_t b, t, c;
        int heads;
        double tol;
    } shapes[] = {{2, 5, 8, 2, 2e-2}, {1, 7, 4, 1, 2e-2}, {1, 6, 64, 2, 6e-2}};
    /* Central differences of a float32 sum over all outputs are good to ~1e-5 absolute,
     * which is a few per cent of the 32-channel heads' key gradients (~1e-3, compared
     * against a floor of 1e-3): a loose tolerance there, still far below what a wrong
     * gradient gives. The PyTorch fixtures pin the values down to 1e-5. */
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int64_t s[3] = {shapes[i].b, shapes[i].t, shapes[i].c};
        em_tensor *in[3] = {test_randn(&rng, 3, s, 1.0f), test_randn(&rng, 3, s, 1.0f),
                            test_randn(&rng, 3, s, 1.0f)};
        attn_args args = {shapes[i].heads, false, 0.0f};
        char what[64];
        snprintf(what, sizeof what, "attention [%lld, %lld, %lld] %d heads", (long long)s[0],
                 (long long)s[1], (long long)s[2], shapes[i].heads);
        test_gradcheck(what, attn_fn, &args, in, 3, 2e-2, shapes[i].tol);
        em_step_end();

        int64_t f[3] = {s[0], s[1], 3 * s[2]};
        em_tensor *qkv = test_randn(&rng, 3, f, 1.0f);
        args.fused = true;
        snprintf(what, sizeof what, "attention_qkv [%lld, %lld, %lld] %d heads", (long long)f[0],
                 (long long)f[1], (long long)f[2], shapes[i].heads);
        test_gradcheck(what, attn_fn, &args, &qkv, 1, 2e-2, shapes[i].tol);
        em_step_end();

        em_tensor *x = test_randn(&rng, 3, s, 1.0f);
        args.fused = false;
        snprintf(what, sizeof what, "attention(x, x, x) [%lld, %lld, %lld] %d heads",
                 (long long)s[0], (long long)s[1], (long long)s[2], shapes[i].heads);
        test_gradcheck(what, attn_fn, &args, &x, 1, 2e-2, shapes[i].tol);
        em_step_end();

        /* dropout's mask is a function of the seed, so the op is a fixed function to check */
        for (int fused = 0; fused < 2; fused++) {
            args = (attn_args){shapes[i].heads, fused, 0.3f};
            em_tensor *qkv3 = test_randn(&rng, 3, f, 1.0f);
            em_tensor *sep[3] = {test_randn(&rng, 3, s, 1.0f), test_randn(&rng, 3, s, 1.0f),
                                 test_randn(&rng, 3, s, 1.0f)};
            snprintf(what, sizeof what, "attention%s dropout 0.3 [%lld, %lld, %lld] %d heads",
                     fused ? "_qkv" : "", (long long)s[0], (long long)s[1], (long long)s[2], shapes[i].heads);
            test_gradcheck(what, attn_fn, &args, fused ? &qkv3 : sep, fused ? 1 : 3, 2e-2, shapes[i].tol);
            em_step_end();
        }
    }
}

/* With q = k = 0 every probability of query i is 1/(i+1), and with the identity as values
 * the output row i is the dropped probabilities themselves: each entry is 0 or
 * 1/((i+1)(1-p)), and about 1-p of them are kept. Dropout 0 is the plain op bit for bit;
 * another seed drops others; the mask does not depend on the thread count or on whether
 * gradients are kept; p = 1 drops all; p outside [0, 1] is refused. */
static void test_dropout_mask(void)
{
    enum { T = 64 };
    const float p = 0.3f;
    em_tensor *qkv = em_tensor_zeros(NULL, 3, (int64_t[]){2, T, 3 * T});
    for (int64_t b = 0; b < 2; b++)
        for (int64_t i = 0; i < T; i++)
            qkv->data[(b * T + i) * 3 * T + 2 * T + i] = 1.0f;
    bool was = em_set_grad_enabled(false);
    em_tensor *y = em_causal_attention_qkv_dropout(qkv, 1, p, 42);
    CHECK_MSG(y != NULL, "%s", ember_last_error());
    if (!y) {
        em_set_grad_enabled(was);
        return;
    }
    int64_t kept = 0, entries = 0, wrong = 0;
    for (int64_t b = 0; b < 2; b++)
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++) {
                const float got = y->data[(b * T + i) * T + j];
                const float want = 1.0f / (float)(i + 1) / (1.0f - p);
                if (j > i) {
                    wrong += got != 0.0f;
                    continue;
                }
                entries++;
                kept += got != 0.0f;
                wrong += got != 0.0f && fabsf(got - want) > 1e-6f * want;
            }
    /* binomial(4160, 0.7): standard deviation 30 */
    const double expected = (1.0 - p) * (double)entries;
    CHECK_MSG(wrong == 0 && fabs((double)kept - expected) < 150.0, "%lld of %lld kept (expected %.0f), %lld wrong",
              (long long)kept, (long long)entries, expected, (long long)wrong);

    em_tensor *again = em_causal_attention_qkv_dropout(qkv, 1, p, 42);
    em_tensor *other = em_causal_attention_qkv_dropout(qkv, 1, p, 43);
    em_tensor *none = em_causal_attention_qkv_dropout(qkv, 1, 0.0f, 42);
    em_tensor *plain = em_causal_attention_qkv(qkv, 1);
    em_tensor *all = em_causal_attention_qkv_dropout(qkv, 1, 1.0f, 42);
    CHECK(again && other && none && plain && all);
    if (again && other && none && plain && all) {
        const size_t bytes = (size_t)y->numel * sizeof(float);
        CHECK(memcmp(y->data, again->data, bytes) == 0);
        CHECK(memcmp(y->data, other->data, bytes) != 0);
        CHECK(memcmp(none->data, plain->data, bytes) == 0);
        bool zeros = true;
        for (int64_t i = 0; i < all->numel; i++)
            zeros &= all->data[i] == 0.0f;
        CHECK_MSG(zeros, "dropout 1 left values");
    }
    CHECK(em_causal_attention_qkv_dropout(qkv, 1, 1.5f, 42) == NULL &&
          strstr(ember_last_error(), "dropout probability 1.5 must lie in [0, 1]"));
    CHECK(em_causal_attention_qkv_dropout(qkv, 1, NAN, 42) == NULL);
    em_set_grad_enabled(was);

    /* kept probabilities (a gradient is needed) and one thread give the same values */
    qkv->requires_grad = true;
    const int threads = em_num_threads();
    em_set_num_threads(1);
    em_tensor *serial = em_causal_attention_qkv_dropout(qkv, 1, p, 42);
    em_set_num_threads(threads);
    CHECK(serial && serial->requires_grad);
    if (serial)
        CHECK(memcmp(y->data, serial->data, (size_t)y->numel * sizeof(float)) == 0);
    em_step_end();
}

/* A size that runs on several threads against the serial run, values and gradients. */
static void test_dropout_threads(void)
{
    em_rng rng;
    em_rng_seed(&rng, 5);
    int64_t s[3] = {4, 70, 3 * 64};
    em_tensor *a = test_randn(&rng, 3, s, 1.0f), *b = em_tensor_clone(NULL, a);
    b->requires_grad = true;
    em_tensor *gy = test_randn(&rng, 3, (int64_t[]){4, 70, 64}, 1.0f);
    em_tensor *ya = em_causal_attention_qkv_dropout(a, 2, 0.2f, 77);
    const int threads = em_num_threads();
    em_set_num_threads(1);
    em_tensor *yb = em_causal_attention_qkv_dropout(b, 2, 0.2f, 77);
    CHECK(ya && yb && em_backward_with(yb, gy->data) == EM_OK);
    em_set_num_threads(threads);
    CHECK(ya && em_backward_with(ya, gy->data) == EM_OK);
    if (ya && yb) {
        CHECK(memcmp(ya->data, yb->data, (size_t)ya->numel * sizeof(float)) == 0);
        CHECK(memcmp(a->grad, b->grad, (size_t)a->numel * sizeof(float)) == 0);
    }
    em_step_end();
}

/* Naive double-precision attention of one (batch, head) for the threaded check. */
static void reference_head(const float *q, const float *k, const float *v, const float *dy, int t,
                           int c, int hd, double *y, double *dq, double *dk, double *dv)
{
    double *p = malloc((size_t)t * t * sizeof(double)), *dp = malloc((size_t)t * t * sizeof(double));
    const double scale = 1.0 / sqrt(hd);
    for (int i = 0; i < t; i++) {
        double m = -INFINITY, sum = 0.0;
        for (int j = 0; j <= i; j++) {
            double s = 0.0;
            for (int d = 0; d < hd; d++)
                s += (double)q[i * c + d] * k[j * c + d];
            p[i * t + j] = s * scale;
            m = fmax(m, s * scale);
        }
        for (int j = 0; j <= i; j++)
            sum += p[i * t + j] = exp(p[i * t + j] - m);
        for (int d = 0; d < hd; d++)
            y[i * hd + d] = 0.0;
        for (int j = 0; j <= i; j++) {
            p[i * t + j] /= sum;
            for (int d = 0; d < hd; d++)
                y[i * hd + d] += p[i * t + j] * v[j * c + d];
        }
    }
    memset(dq, 0, (size_t)t * hd * sizeof(double));
    memset(dk, 0, (size_t)t * hd * sizeof(double));
    memset(dv, 0, (size_t)t * hd * sizeof(double));
    for (int i = 0; i < t; i++) {
        double rowdot = 0.0;
        for (int j = 0; j <= i; j++) {
            double s = 0.0;
            for (int d = 0; d < hd; d++)
                s += (double)dy[i * c + d] * v[j * c + d];
            dp[i * t + j] = s;
            rowdot += s * p[i * t + j];
            for (int d = 0; d < hd; d++)
                dv[j * hd + d] += p[i * t + j] * dy[i * c + d];
        }
        for (int j = 0; j <= i; j++) {
            double ds = p[i * t + j] * (dp[i * t + j] - rowdot) * scale;
            for (int d = 0; d < hd; d++) {
                dq[i * hd + d] += ds * k[j * c + d];
                dk[j * hd + d] += ds * q[i * c + d];
            }
        }
    }
    free(p);
    free(dp);
}

static void test_threaded_against_double(void)
{
    enum { B = 4, T = 70, C = 64, H = 2, HD = C / H };
    em_rng rng;
    em_rng_seed(&rng, 33);
    int64_t s[3] = {B, T, C};
    em_tensor *q = test_randn(&rng, 3, s, 1.5f), *k = test_randn(&rng, 3, s, 1.0f),
              *v = test_randn(&rng, 3, s, 1.0f), *gy = test_randn(&rng, 3, s, 1.0f);
    em_tensor *y = em_causal_attention(q, k, v, H);
    CHECK(y && em_backward_with(y, gy->data) == EM_OK);
    if (!y)
        return;
    double *ry = malloc(T * HD * sizeof(double)), *rq = malloc(T * HD * sizeof(double)),
           *rk = malloc(T * HD * sizeof(double)), *rv = malloc(T * HD * sizeof(double));
    double worst[4] = {0};
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int64_t off = (int64_t)b * T * C + h * HD;
            reference_head(q->data + off, k->data + off, v->data + off, gy->data + off, T, C, HD,
                           ry, rq, rk, rv);
            const float *got[4] = {y->data + off, q->grad + off, k->grad + off, v->grad + off};
            const double *want[4] = {ry, rq, rk, rv};
            for (int w = 0; w < 4; w++)
                for (int i = 0; i < T; i++)
                    for (int d = 0; d < HD; d++) {
                        double e = fabs(got[w][i * C + d] - want[w][i * HD + d]);
                        worst[w] = fmax(worst[w], e / (1.0 + fabs(want[w][i * HD + d])));
                    }
        }
    CHECK_MSG(worst[0] < 2e-6, "forward error %g", worst[0]);
    CHECK_MSG(worst[1] < 1e-5 && worst[2] < 1e-5 && worst[3] < 1e-5, "dq %g dk %g dv %g",
              worst[1], worst[2], worst[3]);
    free(ry);
    free(rq);
    free(rk);
    free(rv);
    em_step_end();
}

/* Without gradients the probabilities live in a per-tile scratch: same values. */
static void test_no_grad_same_values(void)
{
    em_rng rng;
    em_rng_seed(&rng, 4);
    static const struct {
        int64_t channels3;
        int heads;
    } shapes[] = {{144, 3}, {192, 2}};
    for (int i = 0; i < 2; i++) {
        int64_t s[3] = {2, 37, shapes[i].channels3};
        em_tensor *qkv = test_randn(&rng, 3, s, 1.0f);
        em_tensor *with = em_causal_attention_qkv(qkv, shapes[i].heads);
        bool was = em_set_grad_enabled(false);
        size_t before = em_tape_length();
        em_tensor *without = em_causal_attention_qkv(qkv, shapes[i].heads);
        em_set_grad_enabled(was);
        CHECK_MSG(with && without && !without->requires_grad && em_tape_length() == before, "%s",
                  ember_last_error());
        if (with && without)
            CHECK(memcmp(with->data, without->data, (size_t)with->numel * sizeof(float)) == 0);
        em_step_end();
    }
}

/* [T, C] inputs are one sequence: the rows of the [1, T, C] result. */
static void test_two_dim_input(void)
{
    em_rng rng;
    em_rng_seed(&rng, 8);
    int64_t s2[2] = {9, 24};
    em_tensor *qkv = test_randn(&rng, 2, s2, 1.0f);
    em_tensor *y2 = em_causal_attention_qkv(qkv, 2);
    em_tensor *y3 = em_causal_attention_qkv(em_reshape(qkv, 3, (int64_t[]){1, 9, 24}), 2);
    CHECK(y2 && y3 && y2->ndim == 2 && y2->shape[0] == 9 && y2->shape[1] == 8);
    if (y2 && y3)
        CHECK(memcmp(y2->data, y3->data, (size_t)y2->numel * sizeof(float)) == 0);
    em_step_end();
}

/* Position by position through the cache, then a prompt and single steps, against the full
 * forward of the whole sequence. */
static void check_cache(int64_t t, int64_t c, int heads, int64_t prompt)
{
    em_arena *arena = em_arena_create(0);
    em_rng rng;
    em_rng_seed(&rng, (uint64_t)(t * 131 + c + heads));
    int64_t s[3] = {1, t, 3 * c};
    em_tensor *qkv = em_tensor_empty(arena, 3, s);
    em_init_normal(qkv, &rng, 0.0f, 1.0f);
    bool was = em_set_grad_enabled(false);
    em_tensor *full = em_causal_attention_qkv(qkv, heads);
    em_tensor *full_copy = full ? em_tensor_clone(arena, full) : NULL;
    em_step_end();
    CHECK(full_copy != NULL);
    if (!full_copy) {
        em_arena_destroy(arena);
        em_set_grad_enabled(was);
        return;
    }
    em_kv_cache *cache = em_kv_cache_new(arena, t, c, heads);
    CHECK(cache && em_kv_cache_capacity(cache) == t && em_kv_cache_length(cache) == 0);
    double worst = 0.0;
    for (int round = 0; round < 2 && cache; round++) {
        em_kv_cache_clear(cache);
        int64_t pos = 0;
        while (pos < t) {
            /* round 0: the prompt in one call through append + attend; round 1: fused steps */
            int64_t n = pos == 0 && prompt > 0 ? prompt : 1;
            em_tensor *rows = em_slice(qkv, 1, pos, pos + n, 1);
            em_tensor *y;
            if (round == 0) {
                em_tensor *q = em_slice(rows, 2, 0, c, 1), *k = em_slice(rows, 2, c, 2 * c, 1),
                          *v = em_slice(rows, 2, 2 * c, 3 * c, 1);
                CHECK(em_kv_cache_append(cache, k, v) == EM_OK);
                y = em_kv_cache_attend(cache, q);
            } else {
                y = em_kv_cache_step_qkv(cache, rows);
            }
            CHECK_MSG(y && y->ndim == 3 && y->shape[1] == n && y->shape[2] == c, "%s",
                      y ? em_shape_str(y) : ember_last_error());
            if (!y)
                break;
            for (int64_t i = 0; i < n * c; i++)
                worst = fmax(worst, fabs(y->data[i] - full_copy->data[pos * c + i]));
            pos += n;
            CHECK(em_kv_cache_length(cache) == pos);
            em_step_end();
        }
    }
    /* Bit-identical is what the shared kernel promises; 1e-6 is what the task needs. */
    CHECK_MSG(worst == 0.0, "T %lld, C %lld, %d heads: cache differs from the full forward by %g",
              (long long)t, (long long)c, heads, worst);
    if (cache) {
        em_tensor *one = em_slice(qkv, 1, 0, 1, 1);
        CHECK(em_kv_cache_step_qkv(cache, one) == NULL);
        CHECK_ERROR_CONTAINS("capacity");
    }
    em_step_end();
    em_set_grad_enabled(was);
    em_arena_destroy(arena);
}

static void test_cache(void)
{
    check_cache(40, 64, 2, 0);
    check_cache(40, 64, 2, 7);
    check_cache(16, 8, 4, 5);
    check_cache(70, 96, 2, 33);
    check_cache(1, 8, 1, 0);
}

static void test_cache_errors(void)
{
    em_arena *arena = em_arena_create(0);
    em_clear_error();
    CHECK(em_kv_cache_new(arena, 8, 10, 3) == NULL);
    CHECK_ERROR_CONTAINS("10");
    CHECK_ERROR_CONTAINS("3 heads");
    CHECK(em_kv_cache_new(arena, 0, 8, 2) == NULL);
    CHECK(em_kv_cache_new(NULL, 8, 8, 2) == NULL);
    CHECK(em_kv_cache_new(arena, INT64_MAX / 2, 8, 2) == NULL);
    CHECK_ERROR_CONTAINS("too large");
    em_kv_cache *cache = em_kv_cache_new(arena, 8, 8, 2);
    CHECK(cache != NULL);
    em_tensor *k = em_tensor_zeros2(NULL, 3, 8), *v = em_tensor_zeros2(NULL, 2, 8);
    em_tensor *wide = em_tensor_zeros2(NULL, 3, 9), *q = em_tensor_zeros2(NULL, 4, 8);
    CHECK(em_kv_cache_append(cache, k, v) == EM_ERR);
    CHECK_ERROR_CONTAINS("[3, 8]");
    CHECK_ERROR_CONTAINS("[2, 8]");
    CHECK(em_kv_cache_append(cache, wide, wide) == EM_ERR);
    CHECK_ERROR_CONTAINS("[3, 9]");
    CHECK(em_kv_cache_append(cache, k, k) == EM_OK);
    CHECK(em_kv_cache_attend(cache, q) == NULL);
    CHECK_ERROR_CONTAINS("holds only 3");
    CHECK(em_kv_cache_step_qkv(cache, em_tensor_zeros3(NULL, 2, 1, 24)) == NULL);
    CHECK_ERROR_CONTAINS("batch 1");
    CHECK(em_kv_cache_step_qkv(cache, em_tensor_zeros2(NULL, 6, 24)) == NULL);
    CHECK_ERROR_CONTAINS("capacity of 8");
    CHECK(em_kv_cache_length(cache) == 3);
    em_step_end();
    em_arena_destroy(arena);
}

static void test_errors(void)
{
    em_rng rng;
    em_rng_seed(&rng, 2);
    int64_t s[3] = {2, 5, 9}, s8[3] = {2, 5, 8}, s6[3] = {2, 6, 8};
    em_tensor *x9 = test_randn(&rng, 3, s, 1.0f), *x8 = test_randn(&rng, 3, s8, 1.0f),
              *y8 = test_randn(&rng, 3, s6, 1.0f);
    em_clear_error();
    CHECK(em_causal_attention(x9, x9, x9, 2) == NULL);
    CHECK_ERROR_CONTAINS("[2, 5, 9]");
    CHECK_ERROR_CONTAINS("not divisible by 2 heads");
    CHECK(em_causal_attention(x8, y8, x8, 2) == NULL);
    CHECK_ERROR_CONTAINS("q [2, 5, 8], k [2, 6, 8], v [2, 5, 8]");
    CHECK(em_causal_attention(x8, x8, x8, 0) == NULL);
    CHECK_ERROR_CONTAINS("n_heads");
    CHECK(em_causal_attention(em_tensor_zeros1(NULL, 8), x8, x8, 2) == NULL);
    CHECK_ERROR_CONTAINS("[8]");
    CHECK(em_causal_attention_qkv(x8, 2) == NULL);
    CHECK_ERROR_CONTAINS("[2, 5, 8]");
    CHECK_ERROR_CONTAINS("multiple of 3");
    CHECK(em_causal_attention_qkv(em_tensor_zeros3(NULL, 2, 5, 30), 4) == NULL);
    CHECK_ERROR_CONTAINS("[2, 5, 30]");
    CHECK_ERROR_CONTAINS("C = 10");
    CHECK(em_causal_attention_qkv(em_tensor_zeros4(NULL, 1, 2, 5, 24), 2) == NULL);
    CHECK_ERROR_CONTAINS("[1, 2, 5, 24]");
    CHECK(em_causal_attention(NULL, x8, x8, 2) == NULL);
    CHECK(em_causal_attention_qkv(NULL, 2) == NULL);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_slices_match_fused();
    test_strided_views();
    test_gradcheck_small();
    test_dropout_mask();
    test_dropout_threads();
    test_threaded_against_double();
    test_no_grad_same_values();
    test_two_dim_input();
    test_cache();
    test_cache_errors();
    test_errors();
    em_release_thread_state();
    return test_finish();
}
