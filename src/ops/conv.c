/* 2-D convolution: argument checks, recording, and the im2col + GEMM algorithm; 3x3
 * stride-1 layers with enough channels go to the Winograd algorithm of conv_winograd.c.
 * Bias and activation are applied per image while its output is still in cache.
 *
 * Each image (and group) is unfolded into a column matrix col [C/g·kh·kw, OH·OW] whose
 * row (c, i, j) holds the input pixels that kernel tap (i, j) of channel c meets at every
 * output position; then y_g = W_g · col. Backward reuses the same unfolding:
 * dW_g += dZ_g · colᵀ and dcol = W_gᵀ · dZ_g, folded back onto dx (col2im).
 *
 * Work is split over the batch: each thread takes whole images and runs BLAS on one
 * thread (OpenBLAS's OpenMP build does so by itself inside a parallel region), with its
 * column matrix in L2 between the unfolding and the GEMM. On W2's second layer this beat
 * one thread calling BLAS on two, image after image, by 20% (2.9 against 3.6 ms per batch
 * of 64 for the forward GEMMs). Weight and bias gradients are summed per thread and
 * reduced at the end. When the batch is smaller than the team, the images run one after
 * another and BLAS gets the threads instead (batch-1 inference).
 *
 * Column matrices with few rows (a first layer on one channel: 9 rows for a 3x3 kernel)
 * make poor GEMMs; those go through register-blocked loops of our own, and such a layer's
 * backward (which needs no input gradient) reads dy once for ReLU's mask, the bias and
 * the weight gradients together. */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <string.h>

#include "ember/cnn_ops.h"
#include "ember/error.h"
#include "ops/conv_internal.h"
#include "ops/vec16.h"

/* Column matrices with at most this many rows use small_k_gemm instead of BLAS. */
#define SMALL_K 16

/* ---- unfolding --------------------------------------------------------------------- */

/* First and one-past-last output column whose input column o·s + off lies in [0, size). */
static void valid_range(int64_t out_size, int64_t s, int64_t off, int64_t size, int64_t *lo,
                        int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = size - off <= 0 ? 0 : (size - off - 1) / s + 1;
    if (b > out_size)
        b = out_size;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

/* col [cg·kh·kw, p] from cg input planes at x. Output rows of a small plane are short (14
 * floats on W2's second layer), so the copies are inline loops rather than library calls. */
static void im2col(const conv_geom *g, const float *x, float *col)
{
    const int64_t plane = g->h * g->w, taps = g->kh * g->kw;
    for (int64_t r = 0; r < g->k; r++) {
        const int64_t c = r / taps, i = r % taps / g->kw, j = r % g->kw;
        float *row = col + r * g->p;
        int64_t xoff = j * g->dw - g->pw, yoff = i * g->dh - g->ph;
        int64_t lo, hi;
        valid_range(g->ow, g->sw, xoff, g->w, &lo, &hi);
        for (int64_t oy = 0; oy < g->oh; oy++) {
            float *out = row + oy * g->ow;
            int64_t iy = oy * g->sh + yoff;
            if (iy < 0 || iy >= g->h) {
                for (int64_t ox = 0; ox < g->ow; ox++)
                    out[ox] = 0.0f;
                continue;
            }
            const float *src = x + c * plane + iy * g->w + xoff;
            for (int64_t ox = 0; ox < lo; ox++)
                out[ox] = 0.0f;
            if (g->sw == 1)
                for (int64_t ox = lo; ox < hi; ox++)
                    out[ox] = src[ox];
            else
                for (int64_t ox = lo; ox < hi; ox++)
                    out[ox] = src[ox * g->sw];
            for (int64_t ox = hi; ox < g->ow; ox++)
                out[ox] = 0.0f;
        }
    }
}

/* dx (cg planes) += the column matrix folded back: the transpose of im2col. */
static void col2im(const conv_geom *g, const float *col, float *dx)
{
    const int64_t plane = g->h * g->w;
    for (int64_t c = 0; c < g->cg; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *row = col + ((c * g->kh + i) * g->kw + j) * g->p;
                int64_t xoff = j * g->dw - g->pw, yoff = i * g->dh - g->ph;
                int64_t lo, hi;
                valid_range(g->ow, g->sw, xoff, g->w, &lo, &hi);
                for (int64_t oy = 0; oy < g->oh; oy++) {
                    int64_t iy = oy * g->sh + yoff;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    const float *r = row + oy * g->ow;
                    float *dst = dx + c * plane + iy * g->w + xoff;
                    if (g->sw == 1)
                        for (int64_t ox = lo; ox < hi; ox++)
                            dst[ox] += r[ox];
                    else
                        for (int64_t ox = lo; ox < hi; ox++)
                            dst[ox * g->sw] += r[ox];
                }
            }
}

/* ---- small-K products -------------------------------------------------------------- */

/* y [m, p] = w [m, k] · col [k, p] (+ bias[o] per row when bias is given, then ReLU when
 * relu is set) for small k. Blocks of 4 rows of w by 16 positions keep their k-term sums
 * in four vector registers; each load of col serves four rows. The bias and ReLU are
 * applied before the one store, so the output is written once. */
static inline em_vf16 small_k_finish(em_vf16 acc, bool relu)
{
    const em_vf16 zero = em_splat16(0.0f);
    return relu ? em_select16(acc > zero, acc, zero) : acc;
}

static inline float small_k_finish1(float acc, bool relu) { return relu && !(acc > 0.0f) ? 0.0f : acc; }

static void small_k_gemm(int64_t m, int64_t p, int64_t k, const float *w, const float *col,
                         const float *bias, bool relu, float *y)
{
    const int64_t full = p / 16 * 16;
    int64_t o = 0;
    for (; o + 4 <= m; o += 4) {
        const float *w0 = w + o * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
        float *y0 = y + o * p, *y1 = y0 + p, *y2 = y1 + p, *y3 = y2 + p;
        const float b0 = bias ? bias[o] : 0.0f, b1 = bias ? bias[o + 1] : 0.0f;
        const float b2 = bias ? bias[o + 2] : 0.0f, b3 = bias ? bias[o + 3] : 0.0f;
        for (int64_t q = 0; q < full; q += 16) {
            em_vf16 a0 = em_splat16(b0), a1 = em_splat16(b1), a2 = em_splat16(b2), a3 = em_splat16(b3);
            for (int64_t r = 0; r < k; r++) {
                em_vf16 c = em_load16(col + r * p + q);
                a0 += w0[r] * c;
                a1 += w1[r] * c;
                a2 += w2[r] * c;
                a3 += w3[r] * c;
            }
            em_store16(y0 + q, small_k_finish(a0, relu));
            em_store16(y1 + q, small_k_finish(a1, relu));
            em_store16(y2 + q, small_k_finish(a2, relu));
            em_store16(y3 + q, small_k_finish(a3, relu));
        }
        for (int64_t q = full; q < p; q++) {
            float s0 = b0, s1 = b1, s2 = b2, s3 = b3;
            for (int64_t r = 0; r < k; r++) {
                float c = col[r * p + q];
                s0 += w0[r] * c;
                s1 += w1[r] * c;
                s2 += w2[r] * c;
                s3 += w3[r] * c;
            }
            y0[q] = small_k_finish1(s0, relu);
            y1[q] = small_k_finish1(s1, relu);
            y2[q] = small_k_finish1(s2, relu);
            y3[q] = small_k_finish1(s3, relu);
        }
    }
    for (; o < m; o++) {
        const float *wo = w + o * k;
        float *yo = y + o * p;
        const float bo = bias ? bias[o] : 0.0f;
        for (int64_t q = 0; q < full; q += 16) {
            em_vf16 a = em_splat16(bo);
            for (int64_t r = 0; r < k; r++)
                a += wo[r] * em_load16(col + r * p + q);
            em_store16(yo + q, small_k_finish(a, relu));
        }
        for (int64_t q = full; q < p; q++) {
            float s = bo;
            for (int64_t r = 0; r < k; r++)
                s += wo[r] * col[r * p + q];
            yo[q] = small_k_finish1(s, relu);
        }
    }
}

/* dw [m, k] += dz [m, p] · col [k, p]ᵀ for small k: per block of 16 positions, each row
 * of dz is loaded once and multiplied into k vector accumulators. With relu_y, dz is
 * first masked where relu_y (the ReLU's output) is not positive; with db, db[o] also gets
 * the sum of row o (so one pass over the output gradient gives both); col may be NULL
 * when only db is wanted. */
static inline __attribute__((always_inline)) void
small_k_weight_grad_body(int64_t m, int64_t p, int64_t k, const float *dz, const float *relu_y,
                         const float *col, float *dw, float *db)
{
    const int64_t full = p / 16 * 16;
    const em_vf16 zero = em_splat16(0.0f);
    for (int64_t o = 0; o < m; o++) {
        const float *dzo = dz + o * p, *yo = relu_y ? relu_y + o * p : NULL;
        em_vf16 acc[SMALL_K], sum = zero;
        for (int64_t r = 0; r < k; r++)
            acc[r] = zero;
        for (int64_t q = 0; q < full; q += 16) {
            em_vf16 d = em_load16(dzo + q);
            if (yo)
                d = em_select16(em_load16(yo + q) > zero, d, zero);
            sum += d;
            for (int64_t r = 0; col && r < k; r++)
                acc[r] += d * em_load16(col + r * p + q);
        }
        float tail_sum = 0.0f, tail[SMALL_K] = {0};
        for (int64_t q = full; q < p; q++) {
            float d = yo && !(yo[q] > 0.0f) ? 0.0f : dzo[q];
            tail_sum += d;
            for (int64_t r = 0; col && r < k; r++)
                tail[r] += d * col[r * p + q];
        }
        for (int64_t r = 0; col && r < k; r++) {
            float total = tail[r];
            for (int l = 0; l < 16; l++)
                total += acc[r][l];
            dw[o * k + r] += total;
        }
        if (db) {
            for (int l = 0; l < 16; l++)
                tail_sum += sum[l];
            db[o] += tail_sum;
        }
    }
}

/* 3x3 kernels on one channel (k = 9) get a copy compiled for that k, whose accumulators
 * live in registers. */
static void small_k_weight_grad(int64_t m, int64_t p, int64_t k, const float *dz, const float *relu_y,
                                const float *col, float *dw, float *db)
{
    if (k == 9)
        small_k_weight_grad_body(m, p, 9, dz, relu_y, col, dw, db);
    else
        small_k_weight_grad_body(m, p, k, dz, relu_y, col, dw, db);
}

/* Whether the product applies the bias and activation itself (small_k_gemm can when
 * no separate pre-activation is kept). */
static bool product_fuses_epilogue(const conv_geom *g, em_activation act, const float *pre, const float *y)
{
    return g->k <= SMALL_K && (act == EM_ACT_NONE || (act == EM_ACT_RELU && pre == y));
}

/* y [og, p] = W_g [og, k] · col [k, p] (written, not added); with fused, the group's
 * bias_g and ReLU (when act is ReLU) too. */
static void forward_product(const conv_geom *g, const float *wg, const float *col, bool fused,
                            const float *bias_g, em_activation act, float *y)
{
    if (g->k <= SMALL_K)
        small_k_gemm(g->og, g->p, g->k, wg, col, fused ? bias_g : NULL, fused && act == EM_ACT_RELU, y);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->og, (int)g->p, (int)g->k,
                    1.0f, wg, (int)g->k, col, (int)g->p, 0.0f, y, (int)g->p);
}

/* ---- activation -------------------------------------------------------------------- */

bool em_conv_keeps_pre_activation(em_activation act, float param)
{
    switch (act) {
    case EM_ACT_NONE:
    case EM_ACT_RELU:
    case EM_ACT_SIGMOID:
    case EM_ACT_TANH: return false;
    case EM_ACT_LEAKY_RELU: return param <= 0.0f; /* else sign(y) == sign(x) */
    default: return true;
    }
}

void em_conv_activate(em_activation act, float param, const float *pre, float *y, int64_t n)
{
    if (act == EM_ACT_NONE)
        return;
    if (act == EM_ACT_RELU) {
        for (int64_t i = 0; i < n; i++)
            y[i] = pre[i] > 0.0f ? pre[i] : 0.0f;
        return;
    }
    em_activation_forward(act, param, pre, y, n);
}

const float *em_conv_activation_grad(em_activation act, float param, const float *pre,
                                     const float *y, const float *dy, float *dz, int64_t n)
{
    switch (act) {
    case EM_ACT_NONE: return dy;
    case EM_ACT_RELU:
        for (int64_t i = 0; i < n; i++)
            dz[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        return dz;
    case EM_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            dz[i] = dy[i] * y[i] * (1.0f - y[i]);
        return dz;
    case EM_ACT_TANH:
        for (int64_t i = 0; i < n; i++)
            dz[i] = dy[i] * (1.0f - y[i] * y[i]);
        return dz;
    default:
        if (!pre) { /* leaky ReLU with a positive slope */
            for (int64_t i = 0; i < n; i++)
                dz[i] = y[i] > 0.0f ? dy[i] : param * dy[i];
            return dz;
        }
        em_activation_gradient(act, param, pre, y, dy, dz, n);
        return dz;
    }
}

/* Channels [o0, o1) of one image's output [o, p]: pre += bias, then y = act(pre). */
static void bias_activation_channels(const conv_geom *g, const float *bias, em_activation act,
                                     float param, float *pre, float *y, int64_t o0, int64_t o1)
{
    if (bias)
        for (int64_t o = o0; o < o1; o++) {
            float bo = bias[o], *zo = pre + o * g->p;
            for (int64_t q = 0; q < g->p; q++)
                zo[q] += bo;
        }
    em_conv_activate(act, param, pre + o0 * g->p, y + o0 * g->p, (o1 - o0) * g->p);
}

static void bias_activation(const conv_geom *g, const float *bias, em_activation act, float param,
                            float *pre, float *y)
{
    bias_activation_channels(g, bias, act, param, pre, y, 0, g->o);
}

/* ---- checking ---------------------------------------------------------------------- */

static int check_conv(const em_tensor *x, const em_tensor *w, const em_tensor *b, int sh, int sw,
                      int ph, int pw, int dh, int dw, int groups, em_activation act, conv_geom *g)
{
    if (x->ndim != 4)
        return em_error("conv2d: input must be [N, C, H, W], got %s", em_shape_str(x));
    if (w->ndim != 4)
        return em_error("conv2d: weight must be [out_channels, in_channels/groups, kh, kw], got %s",
                        em_shape_str(w));
    if (sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0)
        return em_error("conv2d: stride %dx%d and dilation %dx%d must be >= 1, padding %dx%d >= 0", sh,
                        sw, dh, dw, ph, pw);
    if ((unsigned)act >= EM_ACT_COUNT)
        return em_error("conv2d: unknown activation %d", (int)act);
    if (groups < 1)
        return em_error("conv2d: groups must be >= 1, got %d", groups);
    int64_t c = x->shape[1], o = w->shape[0];
    if (c % groups != 0)
        return em_error("conv2d: input %s has %lld channels, not divisible by groups=%d",
                        em_shape_str(x), (long long)c, groups);
    if (o % groups != 0)
        return em_error("conv2d: weight %s has %lld output channels, not divisible by groups=%d",
                        em_shape_str(w), (long long)o, groups);
    if (w->shape[1] * groups != c)
        return em_error("conv2d: input %s has %lld channels but weight %s expects %lld (%lld per "
                        "group x %d groups)",
                        em_shape_str(x), (long long)c, em_shape_str(w),
                        (long long)(w->shape[1] * groups), (long long)w->shape[1], groups);
    if (b && (b->ndim != 1 || b->shape[0] != o))
        return em_error("conv2d: bias must be [%lld] for weight %s, got %s", (long long)o,
                        em_shape_str(w), em_shape_str(b));
    if (w->shape[2] > INT_MAX || w->shape[3] > INT_MAX)
        return em_error("conv2d: kernel of weight %s is too large", em_shape_str(w));
    int64_t kh_eff = (int64_t)dh * (w->shape[2] - 1) + 1, kw_eff = (int64_t)dw * (w->shape[3] - 1) + 1;
    int64_t hp = x->shape[2] + 2 * (int64_t)ph, wp = x->shape[3] + 2 * (int64_t)pw;
    if (hp < kh_eff || wp < kw_eff)
        return em_error("conv2d: input %s padded to %lldx%lld is smaller than the kernel %lldx%lld "
                        "(dilated %lldx%lld) of weight %s",
                        em_shape_str(x), (long long)hp, (long long)wp, (long long)w->shape[2],
                        (long long)w->shape[3], (long long)kh_eff, (long long)kw_eff, em_shape_str(w));
    g->n = x->shape[0];
    g->c = c;
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->o = o;
    g->kh = w->shape[2];
    g->kw = w->shape[3];
    g->sh = sh;
    g->sw = sw;
    g->ph = ph;
    g->pw = pw;
    g->dh = dh;
    g->dw = dw;
    g->oh = (hp - kh_eff) / sh + 1;
    g->ow = (wp - kw_eff) / sw + 1;
    g->groups = groups;
    g->cg = c / groups;
    g->og = o / groups;
    g->k = g->cg * g->kh * g->kw;
    if (g->oh > INT_MAX || g->ow > INT_MAX)
        return em_error("conv2d: input %s with weight %s is too large for one image's product",
                        em_shape_str(x), em_shape_str(w));
    g->p = g->oh * g->ow;
    g->direct = g->kh == 1 && g->kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
    g->winograd = em_conv_winograd_applies(g);
    g->winograd_tile = g->winograd ? em_conv_winograd_tile(g) : 0;
    if (g->k > INT_MAX || g->p > INT_MAX || g->og > INT_MAX || g->k * g->p > INT_MAX)
        return em_error("conv2d: input %s with weight %s is too large for one image's product",
                        em_shape_str(x), em_shape_str(w));
    return EM_OK;
}

/* ---- forward ----------------------------------------------------------------------- */

int em_conv_batch_threads(int64_t n)
{
    int nt = omp_get_max_threads();
    return n >= nt ? nt : 1;
}

/* Multiply-adds per image below which a batch smaller than the team runs on one thread:
 * splitting costs two barriers (about a microsecond with waiting threads spinning). */
#define SHARED_IMAGE_MIN_WORK (1 << 17)

/* Part [t·n/nt, (t+1)·n/nt) of n, rounded to multiples of `unit` where n allows. */
static void share_of(int64_t n, int64_t unit, int t, int nt, int64_t *lo, int64_t *hi)
{
    int64_t units = (n + unit - 1) / unit;
    int64_t a = units * t / nt * unit, b = units * (t + 1) / nt * unit;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

/* A batch smaller than the team (batch-1 inference): the threads share each image, each
 * computing a share of the output channels from the whole column matrix on one BLAS
 * thread. Each thread unfolds the image into a column matrix of its own: sharing one
 * (each unfolding a share of its rows, then a barrier) measured three times slower on
 * W2's first layer than the one-thread layer, as every call's writes then take the
 * cache lines back from the other core. Splitting channels rather than positions keeps
 * each thread's weights apart, so they stay in that core's cache between calls. */
static int shared_image_forward(const conv_geom *gp, const float *x, const float *w,
                                const float *bias, em_activation act, float act_param, float *pre,
                                float *y, const conv_pool_epilogue *ep)
{
    const conv_geom g = *gp;
    const int nt = omp_get_max_threads();
    /* Whole cache lines per thread. */
    const size_t col_floats = (size_t)(g.k * g.p + 15) / 16 * 16;
    float *col_all = NULL;
    if (!g.direct) {
        col_all = em_arena_alloc(em_step_arena(), (size_t)nt * col_floats * sizeof(float));
        if (!col_all)
            return EM_ERR;
    }
    const int64_t in_image = g.c * g.h * g.w, out_image = g.o * g.p;
    const bool fused = product_fuses_epilogue(&g, act, pre, y);
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        float *col = col_all ? col_all + (size_t)t * col_floats : NULL;
        int64_t o0, o1;
        share_of(g.og, 16, t, omp_get_num_threads(), &o0, &o1);
        for (int64_t n = 0; n < g.n && o1 > o0; n++)
            for (int64_t gi = 0; gi < g.groups; gi++) {
                const float *xg = x + n * in_image + gi * g.cg * g.h * g.w;
                const float *cg = xg;
                if (!g.direct) {
                    im2col(&g, xg, col);
                    cg = col;
                }
                float *zg = pre + n * out_image + gi * g.og * g.p;
                const float *wg = w + gi * g.og * g.k;
                const float *bias_g = bias ? bias + gi * g.og : NULL;
                if (fused)
                    small_k_gemm(o1 - o0, g.p, g.k, wg + o0 * g.k, cg, bias_g ? bias_g + o0 : NULL,
                                 act == EM_ACT_RELU, zg + o0 * g.p);
                else if (g.k <= SMALL_K)
                    small_k_gemm(o1 - o0, g.p, g.k, wg + o0 * g.k, cg, NULL, false, zg + o0 * g.p);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(o1 - o0), (int)g.p,
                                (int)g.k, 1.0f, wg + o0 * g.k, (int)g.k, cg, (int)g.p, 0.0f,
                                zg + o0 * g.p, (int)g.p);
                if (!fused)
                    bias_activation_channels(&g, bias_g, act, act_param, zg,
                                             y + n * out_image + gi * g.og * g.p, o0, o1);
                if (ep)
                    em_max_pool_planes(ep->pool, y + n * out_image + (gi * g.og + o0) * g.p,
                                       ep->out + (n * g.o + gi * g.og + o0) * ep->pool->oh * ep->pool->ow,
                                       NULL, o1 - o0);
            }
    }
    return EM_OK;
}

/* Whether a batch is computed by shared_image_forward. */
static bool shares_images(const conv_geom *g)
{
    return g->n < omp_get_max_threads() && g->og * g->p * g->k >= SHARED_IMAGE_MIN_WORK && !omp_in_parallel();
}

/* pre = conv(x, w) + bias through im2col, then y = act(pre). */
static int unfolded_forward(const conv_geom *gp, const float *x, const float *w, const float *bias,
                            em_activation act, float act_param, float *pre, float *y)
{
    const conv_geom g = *gp;
    if (shares_images(&g))
        return shared_image_forward(gp, x, w, bias, act, act_param, pre, y, NULL);
    int nt = em_conv_batch_threads(g.n);
    float *col_all = NULL;
    if (!g.direct) {
        col_all = em_arena_alloc(em_step_arena(), (size_t)nt * (size_t)(g.k * g.p) * sizeof(float));
        if (!col_all)
            return EM_ERR;
    }
    const int64_t in_image = g.c * g.h * g.w, out_image = g.o * g.p;
    const bool fused = product_fuses_epilogue(&g, act, pre, y);
#pragma omp parallel num_threads(nt)
    {
        float *col = col_all ? col_all + (size_t)omp_get_thread_num() * (size_t)(g.k * g.p) : NULL;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g.n; n++) {
            float *zn = pre + n * out_image;
            for (int64_t gi = 0; gi < g.groups; gi++) {
                const float *xg = x + n * in_image + gi * g.cg * g.h * g.w;
                const float *cg = xg;
                if (!g.direct) {
                    im2col(&g, xg, col);
                    cg = col;
                }
                forward_product(&g, w + gi * g.og * g.k, cg, fused, bias ? bias + gi * g.og : NULL, act,
                                zn + gi * g.og * g.p);
            }
            if (!fused)
                bias_activation(&g, bias, act, act_param, zn, y + n * out_image);
        }
    }
    return EM_OK;
}

static void conv_backward(em_node *node);

em_tensor *em_conv2d(em_tensor *x, em_tensor *w, em_tensor *b, int stride_h, int stride_w,
                     int pad_h, int pad_w, int dilation_h, int dilation_w, int groups,
                     em_activation act, float act_param)
{
    if (!x || !w)
        return NULL;
    conv_geom g;
    if (check_conv(x, w, b, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, act,
                   &g) != EM_OK)
        return NULL;
    bool has_bias = b != NULL;
    x = em_contiguous(x);
    w = em_contiguous(w);
    if (has_bias)
        b = em_contiguous(b);
    if (!x || !w || (has_bias && !b))
        return NULL;
    int64_t out_shape[4] = {g.n, g.o, g.oh, g.ow};
    em_tensor *out = em_tensor_empty(NULL, 4, out_shape);
    if (!out)
        return NULL;
    bool recording = em_grad_enabled() &&
                     (x->requires_grad || w->requires_grad || (b && b->requires_grad));
    float *pre = out->data;
    if (recording && em_conv_keeps_pre_activation(act, act_param)) {
        pre = em_arena_alloc(em_step_arena(), (size_t)out->numel * sizeof(float));
        if (!pre)
            return NULL;
    }

    const float *winograd_u = NULL;
    int status;
    bool pooled;
    if (g.winograd && !recording)
        status = em_conv_winograd_infer(&g, x->data, w->data, b ? b->data : NULL, act, act_param,
                                        out->data, &winograd_u, NULL, &pooled);
    else if (g.winograd)
        status = em_conv_winograd_forward(&g, x->data, w->data, b ? b->data : NULL, act, act_param,
                                          pre, out->data, &winograd_u);
    else
        status = unfolded_forward(&g, x->data, w->data, b ? b->data : NULL, act, act_param, pre,
                                  out->data);
    if (status != EM_OK)
        return NULL;

    em_node *node = em_record("conv2d", out, 3, (em_tensor *[]){x, w, b}, conv_backward);
    if (node) {
        conv_saved *s = em_arena_alloc(em_step_arena(), sizeof *s);
        if (!s)
            return NULL;
        s->g = g;
        s->act = act;
        s->act_param = act_param;
        s->pre = pre == out->data ? NULL : pre;
        s->winograd_u = winograd_u;
        node->saved = s;
    }
    return out;
}

/* ---- convolution then max pooling, for inference ------------------------------------ */

/* Contiguous operands, the pooling's geometry over the convolution's output shape and the
 * pooled output tensor, for the fused pair. */
static int conv_pool_setup(const conv_geom *g, em_tensor **x, em_tensor **w, em_tensor **b,
                           const em_pool2d_args *pool, pool_geom *pg, em_tensor **out)
{
    *x = em_contiguous(*x);
    *w = em_contiguous(*w);
    if (*b)
        *b = em_contiguous(*b);
    if (!*x || !*w || (*b && !(*b)->data))
        return EM_ERR;
    em_tensor shape_only = {.ndim = 4, .shape = {g->n, g->o, g->oh, g->ow}}; /* a header, no data */
    if (em_max_pool_geometry(&shape_only, pool->kernel_h, pool->kernel_w, pool->stride_h, pool->stride_w,
                             pool->pad_h, pool->pad_w, pg) != EM_OK)
        return EM_ERR;
    *out = em_tensor_empty(NULL, 4, (int64_t[]){g->n, g->o, pg->oh, pg->ow});
    return *out ? EM_OK : EM_ERR;
}

/* The im2col convolution of whole images, one per thread at a time, each into a buffer of
 * the thread's own and pooled from there into out (argmax too when not NULL). */
static int unfolded_pool_images(const conv_geom *gp, const float *x, const float *w, const float *bias,
                                em_activation act, float act_param, const pool_geom *pg, float *out,
                                int32_t *argmax)
{
    const conv_geom g = *gp;
    const int nt = em_conv_batch_threads(g.n);
    const size_t col_floats = g.direct ? 0 : (size_t)(g.k * g.p + 15) / 16 * 16;
    const size_t image = (size_t)(g.o * g.p + 15) / 16 * 16;
    float *scratch = em_arena_alloc(em_step_arena(), (size_t)nt * (col_floats + image) * sizeof(float));
    if (!scratch)
        return EM_ERR;
    const int64_t in_image = g.c * g.h * g.w, pooled = g.o * pg->oh * pg->ow;
    const bool fused = product_fuses_epilogue(&g, act, NULL, NULL);
#pragma omp parallel num_threads(nt)
    {
        float *col = scratch + (size_t)omp_get_thread_num() * (col_floats + image), *y = col + col_floats;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g.n; n++) {
            for (int64_t gi = 0; gi < g.groups; gi++) {
                const float *xg = x + n * in_image + gi * g.cg * g.h * g.w;
                const float *cg = xg;
                if (!g.direct) {
                    im2col(&g, xg, col);
                    cg = col;
                }
                forward_product(&g, w + gi * g.og * g.k, cg, fused, bias ? bias + gi * g.og : NULL, act,
                                y + gi * g.og * g.p);
            }
            if (!fused)
                bias_activation(&g, bias, act, act_param, y, y);
            em_max_pool_planes(pg, y, out + n * pooled, argmax ? argmax + n * pooled : NULL, g.o);
        }
    }
    return EM_OK;
}

/* A batch of at least one image per thread: the threads take whole images, compute each
 * into a buffer of their own and pool it from there, so that only the pooled output is
 * kept. *result stays NULL (status EM_OK) when the Winograd weights could not be cached. */
static int pooled_batch(const conv_geom *g, em_tensor *x, em_tensor *w, em_tensor *b,
                        const em_conv2d_args *conv, const em_pool2d_args *pool, em_tensor **result)
{
    *result = NULL;
    pool_geom pg;
    em_tensor *out;
    if (conv_pool_setup(g, &x, &w, &b, pool, &pg, &out) != EM_OK)
        return EM_ERR;
    const float *bias = b ? b->data : NULL;
    if (g->winograd) {
        const conv_pool_epilogue ep = {.pool = &pg, .out = out->data};
        bool done;
        if (em_conv_winograd_infer_pooled(g, x->data, w->data, bias, conv->act, conv->act_param, &ep, &done) !=
            EM_OK)
            return EM_ERR;
        *result = done ? out : NULL;
        return EM_OK;
    }
    if (unfolded_pool_images(g, x->data, w->data, bias, conv->act, conv->act_param, &pg, out->data, NULL) != EM_OK)
        return EM_ERR;
    *result = out;
    return EM_OK;
}

/* ---- ... recorded, for a first layer --------------------------------------------------
 * A layer whose input needs no gradient (a network's first) and whose activation is none
 * or ReLU trains through the pair without its full-resolution output: backward needs only
 * the pooled values (ReLU's mask: a window's maximum is positive exactly where the ReLU
 * let its gradient through) and each window's argmax. Each image's convolution output is
 * rebuilt as a gradient in a buffer of the thread's own. On W2 this keeps 12.8 MB less
 * per step (the 6.4 MB output of the first layer and its gradient). */

typedef struct conv_pool_saved {
    conv_geom g;
    pool_geom pool;
    bool relu;
    const int32_t *argmax; /* [n, o, pooled plane]: position in the convolution's plane */
} conv_pool_saved;

static void conv_pool_backward(em_node *node)
{
    const conv_pool_saved *s = node->saved;
    const conv_geom *g = &s->g;
    em_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const bool need_w = w->requires_grad, need_b = b && b->requires_grad;
    const int64_t pooled_plane = s->pool.oh * s->pool.ow, out_image = g->o * g->p;
    const int64_t wsize = g->o * g->k, in_image = g->c * g->h * g->w;
    const int nt = em_conv_batch_threads(g->n);
    size_t per_thread = (size_t)(out_image + (g->direct ? 0 : g->k * g->p) + wsize + g->o);
    per_thread = (per_thread + 15) / 16 * 16;
    float *scratch = em_arena_alloc(em_step_arena(), (size_t)nt * per_thread * sizeof(float));
    if (!scratch)
        return;
    const float *dy = node->out->grad, *pooled = node->out->data;
#pragma omp parallel num_threads(nt)
    {
        float *dz = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *col = dz + out_image, *dw = col + (g->direct ? 0 : g->k * g->p), *db = dw + wsize;
        memset(dw, 0, (size_t)(wsize + g->o) * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g->n; n++) {
            memset(dz, 0, (size_t)out_image * sizeof(float));
            for (int64_t plane = 0; plane < g->o; plane++) {
                const int64_t at = (n * g->o + plane) * pooled_plane;
                float *dzp = dz + plane * g->p;
                for (int64_t i = 0; i < pooled_plane; i++)
                    if (!s->relu || pooled[at + i] > 0.0f)
                        dzp[s->argmax[at + i]] += dy[at + i];
            }
            for (int64_t gi = 0; gi < g->groups; gi++) {
                const float *xg = x->data + n * in_image + gi * g->cg * g->h * g->w;
                const float *cg = xg;
                if (need_w && !g->direct) {
                    im2col(g, xg, col);
                    cg = col;
                }
                const float *dzg = dz + gi * g->og * g->p;
                if (g->k <= SMALL_K) {
                    small_k_weight_grad(g->og, g->p, g->k, dzg, NULL, need_w ? cg : NULL,
                                        need_w ? dw + gi * g->og * g->k : NULL, need_b ? db + gi * g->og : NULL);
                    continue;
                }
                if (need_b)
                    for (int64_t o = 0; o < g->og; o++) {
                        float acc = 0.0f;
                        for (int64_t q = 0; q < g->p; q++)
                            acc += dzg[o * g->p + q];
                        db[gi * g->og + o] += acc;
                    }
                if (need_w)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->og, (int)g->k, (int)g->p, 1.0f,
                                dzg, (int)g->p, cg, (int)g->p, 1.0f, dw + gi * g->og * g->k, (int)g->k);
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        const float *dw = scratch + (size_t)t * per_thread + out_image + (g->direct ? 0 : g->k * g->p);
        if (need_w)
            for (int64_t i = 0; i < wsize; i++)
                w->grad[i] += dw[i];
        if (need_b)
            for (int64_t o = 0; o < g->o; o++)
                b->grad[o] += dw[wsize + o];
    }
}

static em_tensor *recorded_conv_pool(const conv_geom *g, em_tensor *x, em_tensor *w, em_tensor *b,
                                     const em_conv2d_args *conv, const em_pool2d_args *pool)
{
    pool_geom pg;
    em_tensor *out;
    if (conv_pool_setup(g, &x, &w, &b, pool, &pg, &out) != EM_OK)
        return NULL;
    int32_t *argmax = em_arena_alloc(em_step_arena(), (size_t)out->numel * sizeof(int32_t));
    if (!argmax || unfolded_pool_images(g, x->data, w->data, b ? b->data : NULL, conv->act, conv->act_param, &pg,
                                        out->data, argmax) != EM_OK)
        return NULL;
    em_node *node = em_record("conv2d_max_pool2d", out, 3, (em_tensor *[]){x, w, b}, conv_pool_backward);
    if (node) {
        conv_pool_saved *saved = em_arena_alloc(em_step_arena(), sizeof *saved);
        if (!saved)
            return NULL;
        *saved = (conv_pool_saved){.g = *g, .pool = pg, .relu = conv->act == EM_ACT_RELU, .argmax = argmax};
        node->saved = saved;
    }
    return out;
}

em_tensor *em_conv2d_max_pool2d(em_tensor *x, em_tensor *w, em_tensor *b, const em_conv2d_args *conv,
                                const em_pool2d_args *pool)
{
    if (!x || !w || !conv || !pool)
        return NULL;
    bool recording = em_grad_enabled() && (x->requires_grad || w->requires_grad || (b && b->requires_grad));
    conv_geom g;
    if (check_conv(x, w, b, conv->stride_h, conv->stride_w, conv->pad_h, conv->pad_w, conv->dilation_h,
                   conv->dilation_w, conv->groups, conv->act, &g) != EM_OK)
        return NULL;
    /* One image's channels shared by the threads: each pools its own planes. Larger
     * batches: each thread pools each image it computed from a buffer of its own. */
    const bool one_image = g.n < omp_get_max_threads() && !omp_in_parallel();
    if (recording && !g.winograd && !x->requires_grad &&
        (conv->act == EM_ACT_NONE || conv->act == EM_ACT_RELU))
        return recorded_conv_pool(&g, x, w, b, conv, pool);
    bool fuse = !recording && (!one_image || g.winograd || shares_images(&g));
    if (fuse && !one_image) {
        em_tensor *out;
        if (pooled_batch(&g, x, w, b, conv, pool, &out) != EM_OK)
            return NULL;
        if (out)
            return out;
        fuse = false; /* no room for the Winograd weights' cache: the two ops */
    }
    if (!fuse) {
        em_tensor *y = em_conv2d(x, w, b, conv->stride_h, conv->stride_w, conv->pad_h, conv->pad_w,
                                 conv->dilation_h, conv->dilation_w, conv->groups, conv->act, conv->act_param);
        return em_max_pool2d(y, pool->kernel_h, pool->kernel_w, pool->stride_h, pool->stride_w, pool->pad_h,
                             pool->pad_w);
    }
    /* The full output before the pooled one: in the other order W5 measured 90 µs per
     * image instead of 52 (the planes then lie at distances from the pooled rows that
     * make loads wait on unrelated stores, it seems; the cause was not pinned down). */
    em_tensor *conv_out = em_tensor_empty(NULL, 4, (int64_t[]){g.n, g.o, g.oh, g.ow}), *out;
    pool_geom pg;
    if (!conv_out || conv_pool_setup(&g, &x, &w, &b, pool, &pg, &out) != EM_OK)
        return NULL;
    const conv_pool_epilogue ep = {.pool = &pg, .out = out->data};
    const float *bias = b ? b->data : NULL;
    bool pooled = true;
    const float *winograd_u;
    int status = g.winograd ? em_conv_winograd_infer(&g, x->data, w->data, bias, conv->act, conv->act_param,
                                                     conv_out->data, &winograd_u, &ep, &pooled)
                            : shared_image_forward(&g, x->data, w->data, bias, conv->act, conv->act_param,
                                                   conv_out->data, conv_out->data, &ep);
    if (status != EM_OK)
        return NULL;
    if (!pooled)
        em_max_pool_planes(&pg, conv_out->data, out->data, NULL, pg.planes);
    return out;
}

/* ---- backward ---------------------------------------------------------------------- */

static void conv_backward(em_node *node)
{
    const conv_saved *s = node->saved;
    const conv_geom *g = &s->g;
    em_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2], *out = node->out;
    if (g->winograd) {
        em_conv_winograd_backward(s, x, w, b, out->data, out->grad);
        return;
    }
    bool need_x = x->requires_grad, need_w = w->requires_grad, need_b = b && b->requires_grad;
    const int64_t kp = g->k * g->p, in_image = g->c * g->h * g->w, out_image = g->o * g->p;
    const int64_t wsize = g->o * g->k;
    int nt = em_conv_batch_threads(g->n);
    /* A first layer with few kernel taps: ReLU's mask, the bias gradient and the weight
     * gradient in one pass over dy, without a dz buffer. */
    const bool fused = g->k <= SMALL_K && !need_x && (s->act == EM_ACT_NONE || s->act == EM_ACT_RELU);
    bool need_dz = s->act != EM_ACT_NONE && !fused;
    bool need_col = need_w && !g->direct;
    bool need_dcol = need_x && !g->direct;
    /* Per thread: col, dcol, dz, then the partial weight and bias gradients. */
    size_t per_thread = (size_t)((need_col ? kp : 0) + (need_dcol ? kp : 0) +
                                 (need_dz ? out_image : 0) + (need_w ? wsize : 0) +
                                 (need_b ? g->o : 0));
    /* Round up to a cache line so threads do not share one. */
    per_thread = (per_thread + 15) / 16 * 16;
    float *scratch = em_arena_alloc(em_step_arena(), (size_t)nt * per_thread * sizeof(float));
    if (!scratch)
        return;
    const float *y = out->data, *dy = out->grad;

#pragma omp parallel num_threads(nt)
    {
        float *cursor = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *col = NULL, *dcol = NULL, *dz_buf = NULL, *dw = NULL, *db = NULL;
        if (need_col)
            col = cursor, cursor += kp;
        if (need_dcol)
            dcol = cursor, cursor += kp;
        if (need_dz)
            dz_buf = cursor, cursor += out_image;
        if (need_w) {
            dw = cursor, cursor += wsize;
            memset(dw, 0, (size_t)wsize * sizeof(float));
        }
        if (need_b) {
            db = cursor;
            memset(db, 0, (size_t)g->o * sizeof(float));
        }
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g->n; n++) {
            if (fused) {
                for (int64_t gi = 0; gi < g->groups; gi++) {
                    const float *xg = x->data + n * in_image + gi * g->cg * g->h * g->w;
                    const float *cg = xg;
                    if (need_w && !g->direct) {
                        im2col(g, xg, col);
                        cg = col;
                    }
                    const int64_t at = n * out_image + gi * g->og * g->p;
                    small_k_weight_grad(g->og, g->p, g->k, dy + at, s->act == EM_ACT_RELU ? y + at : NULL,
                                        need_w ? cg : NULL, need_w ? dw + gi * g->og * g->k : NULL,
                                        need_b ? db + gi * g->og : NULL);
                }
                continue;
            }
            const float *dz = em_conv_activation_grad(s->act, s->act_param, s->pre ? s->pre + n * out_image : NULL,
                                              y + n * out_image, dy + n * out_image, dz_buf, out_image);
            if (need_b)
                for (int64_t o = 0; o < g->o; o++) {
                    const float *dzo = dz + o * g->p;
                    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                    for (int64_t q = 0; q < g->p; q++)
                        acc += dzo[q];
                    db[o] += acc;
                }
            for (int64_t gi = 0; gi < g->groups && (need_w || need_x); gi++) {
                const float *xg = x->data + n * in_image + gi * g->cg * g->h * g->w;
                const float *dzg = dz + gi * g->og * g->p;
                const float *wg = w->data + gi * g->og * g->k;
                if (need_w) {
                    const float *cg = xg;
                    if (!g->direct) {
                        im2col(g, xg, col);
                        cg = col;
                    }
                    float *dwg = dw + gi * g->og * g->k;
                    if (g->k <= SMALL_K)
                        small_k_weight_grad(g->og, g->p, g->k, dzg, NULL, cg, dwg, NULL);
                    else
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->og, (int)g->k,
                                    (int)g->p, 1.0f, dzg, (int)g->p, cg, (int)g->p, 1.0f, dwg,
                                    (int)g->k);
                }
                if (need_x) {
                    float *dxg = x->grad + n * in_image + gi * g->cg * g->h * g->w;
                    /* The 1x1 case adds straight into dx; otherwise through dcol. */
                    float *target = g->direct ? dxg : dcol;
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g->k, (int)g->p,
                                (int)g->og, 1.0f, wg, (int)g->k, dzg, (int)g->p,
                                g->direct ? 1.0f : 0.0f, target, (int)g->p);
                    if (!g->direct)
                        col2im(g, dcol, dxg);
                }
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        const float *part = scratch + (size_t)t * per_thread + (need_col ? kp : 0) +
                            (need_dcol ? kp : 0) + (need_dz ? out_image : 0);
        if (need_w) {
            for (int64_t i = 0; i < wsize; i++)
                w->grad[i] += part[i];
            part += wsize;
        }
        if (need_b)
            for (int64_t o = 0; o < g->o; o++)
                b->grad[o] += part[o];
    }
}
