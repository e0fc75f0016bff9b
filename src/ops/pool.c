/* Max and average pooling over NCHW planes, and the global average (adaptive 1x1).
 * Each output cell is one pass over its window clipped to the real input; planes are
 * independent, so threads split them and backward needs no atomics. Max pooling keeps the
 * position of each window's maximum for backward instead of searching again. */
#include <math.h>
#include <string.h>

#include "ember/cnn_ops.h"
#include "ember/error.h"
#include "ops/pool_internal.h"
#include "ops/vec16.h"

/* Below this many input elements a pass stays on one thread. */
/* Small enough for one image's pooling to split its planes over the threads: in order,
 * as a convolution computed on one image by output channels splits them, so each thread
 * pools what its own core wrote (reading another core's writes measured twice as slow). */
#define PARALLEL_MIN_ELEMENTS 8192

typedef struct pool_saved {
    pool_geom g;
    int32_t *argmax;       /* max pooling: flat position in the input plane */
    bool count_include_pad; /* average pooling */
} pool_saved;

static int check_pool(const char *op, const em_tensor *x, int kh, int kw, int sh, int sw, int ph,
                      int pw, pool_geom *g)
{
    if (x->ndim != 4)
        return em_error("%s: input must be [N, C, H, W], got %s", op, em_shape_str(x));
    if (kh < 1 || kw < 1)
        return em_error("%s: kernel %dx%d must be at least 1x1", op, kh, kw);
    if (sh <= 0)
        sh = kh;
    if (sw <= 0)
        sw = kw;
    if (ph < 0 || pw < 0 || 2 * (int64_t)ph > kh || 2 * (int64_t)pw > kw)
        return em_error("%s: padding %dx%d must be >= 0 and at most half the kernel %dx%d", op, ph, pw,
                        kh, kw);
    int64_t hp = x->shape[2] + 2 * (int64_t)ph, wp = x->shape[3] + 2 * (int64_t)pw;
    if (hp < kh || wp < kw)
        return em_error("%s: input %s padded to %lldx%lld is smaller than the kernel %dx%d", op,
                        em_shape_str(x), (long long)hp, (long long)wp, kh, kw);
    if (x->shape[2] * x->shape[3] > INT32_MAX)
        return em_error("%s: input planes of %s are too large", op, em_shape_str(x));
    g->planes = x->shape[0] * x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->kh = kh;
    g->kw = kw;
    g->sh = sh;
    g->sw = sw;
    g->ph = ph;
    g->pw = pw;
    g->oh = (hp - kh) / sh + 1;
    g->ow = (wp - kw) / sw + 1;
    return EM_OK;
}

static em_tensor *pool_output(const em_tensor *x, const pool_geom *g)
{
    int64_t shape[4] = {x->shape[0], x->shape[1], g->oh, g->ow};
    return em_tensor_empty(NULL, 4, shape);
}

/* Window rows [y0, y1) and columns [x0, x1) of output cell (oy, ox), clipped to the input. */
static inline void window(const pool_geom *g, int64_t oy, int64_t ox, int64_t *y0, int64_t *y1,
                          int64_t *x0, int64_t *x1)
{
    int64_t ys = oy * g->sh - g->ph, xs = ox * g->sw - g->pw;
    *y0 = ys < 0 ? 0 : ys;
    *x0 = xs < 0 ? 0 : xs;
    *y1 = ys + g->kh < g->h ? ys + g->kh : g->h;
    *x1 = xs + g->kw < g->w ? xs + g->kw : g->w;
}

/* ---- max pooling ------------------------------------------------------------------- */

/* v replaces the running maximum when larger, or when NaN (PyTorch's rule: NaN wins and
 * the last NaN is the one reported). */
static inline bool takes_over(float v, float best) { return (v > best) | (v != v); }

/* Maximum of 2x2 windows for 16 adjacent outputs: r0 and r1 hold the 32 input columns of
 * the window rows. Each row's pair is reduced first, then the rows, which gives the same
 * choice as scanning the window in order (first maximum, last NaN). Window positions are
 * 0, 1, w, w+1 in *at. */
static inline em_vf16 max_2x2_lanes(const float *r0, const float *r1, int32_t w, em_vi16 *at)
{
    em_vf16 a0 = em_load16(r0), a1 = em_load16(r0 + 16), b0 = em_load16(r1), b1 = em_load16(r1 + 16);
    em_vf16 e0 = em_even16(a0, a1), o0 = em_odd16(a0, a1), e1 = em_even16(b0, b1), o1 = em_odd16(b0, b1);
    em_vi16 h0 = (o0 > e0) | (o0 != o0), h1 = (o1 > e1) | (o1 != o1);
    em_vf16 m0 = em_select16(h0, o0, e0), m1 = em_select16(h1, o1, e1);
    em_vi16 f = (m1 > m0) | (m1 != m1);
    em_vi16 zero = {0}, one = zero + 1, row = zero + w;
    *at = em_select16i(f, row + (h1 & one), h0 & one);
    return em_select16(f, m1, m0);
}

/* 2x2 windows with stride 2, the common case, 16 outputs at a time (rows of a conv
 * layer's output are often shorter than the auto-vectoriser's minimum). */
static void max_plane_2x2(const pool_geom *g, const float *x, float *y, int32_t *argmax)
{
    const int32_t w = (int32_t)g->w;
    const int64_t full = g->ow / 16 * 16, rest = g->ow - full;
    const em_vi16 lane2 = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    for (int64_t oy = 0; oy < g->oh; oy++) {
        const float *r0 = x + 2 * oy * g->w, *r1 = r0 + g->w;
        float *yr = y + oy * g->ow;
        int32_t *ar = argmax ? argmax + oy * g->ow : NULL;
        const int32_t base = (int32_t)(2 * oy * g->w);
        em_vi16 at;
        for (int64_t ox = 0; ox < full; ox += 16) {
            em_store16(yr + ox, max_2x2_lanes(r0 + 2 * ox, r1 + 2 * ox, w, &at));
            if (ar) {
                at += lane2 + (base + (int32_t)(2 * ox));
                memcpy(ar + ox, &at, sizeof at);
            }
        }
        if (rest && (2 * oy + 1) * g->w + 2 * full + 32 <= g->h * g->w && oy + 1 < g->oh &&
            oy * g->ow + full + 16 <= g->oh * g->ow) {
            /* The last few windows as a whole vector: its reads past the row stay in the
             * plane, and its writes past the row land in the next output row of the same
             * plane, which is written after this one. */
            em_store16(yr + full, max_2x2_lanes(r0 + 2 * full, r1 + 2 * full, w, &at));
            if (ar) {
                at += lane2 + (base + (int32_t)(2 * full));
                memcpy(ar + full, &at, sizeof at);
            }
        } else if (rest) {
            /* The last few windows through zero-padded copies of their rows. */
            float t0[32] = {0}, t1[32] = {0}, out[16];
            memcpy(t0, r0 + 2 * full, (size_t)(2 * rest) * sizeof(float));
            memcpy(t1, r1 + 2 * full, (size_t)(2 * rest) * sizeof(float));
            em_store16(out, max_2x2_lanes(t0, t1, w, &at));
            memcpy(yr + full, out, (size_t)rest * sizeof(float));
            if (ar) {
                at += lane2 + (base + (int32_t)(2 * full));
                memcpy(ar + full, &at, (size_t)rest * sizeof(int32_t));
            }
        }
    }
}

/* One plane; argmax may be NULL (no gradient needed). */
static void max_plane(const pool_geom *g, const float *x, float *y, int32_t *argmax)
{
    if (g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0) {
        max_plane_2x2(g, x, y, argmax);
        return;
    }
    for (int64_t oy = 0; oy < g->oh; oy++)
        for (int64_t ox = 0; ox < g->ow; ox++) {
            int64_t y0, y1, x0, x1;
            window(g, oy, ox, &y0, &y1, &x0, &x1);
            float best = -INFINITY;
            int64_t at = y0 * g->w + x0;
            for (int64_t iy = y0; iy < y1; iy++)
                for (int64_t ix = x0; ix < x1; ix++) {
                    float v = x[iy * g->w + ix];
                    if (takes_over(v, best)) {
                        best = v;
                        at = iy * g->w + ix;
                    }
                }
            y[oy * g->ow + ox] = best;
            if (argmax)
                argmax[oy * g->ow + ox] = (int32_t)at;
        }
}

/* Adds the gradient of 16 adjacent 2x2 windows to their rows r0 and r1 of dx (32 columns
 * each): d holds the windows' output gradients, rel the position of each maximum in its
 * window (0, 1, w or w+1). Cells that get nothing add -0.0, which leaves every value,
 * signed zeros included, as it was. */
static inline void scatter_2x2_lanes(float *r0, float *r1, em_vf16 d, em_vi16 rel, int32_t w)
{
    const em_vf16 none = em_splat16(-0.0f);
    const em_vi16 zero = {0};
    em_vf16 c0 = em_select16(rel == zero, d, none), c1 = em_select16(rel == zero + 1, d, none);
    em_vf16 c2 = em_select16(rel == zero + w, d, none), c3 = em_select16(rel == zero + (w + 1), d, none);
    em_store16(r0, em_load16(r0) + em_interleave_lo16(c0, c1));
    em_store16(r0 + 16, em_load16(r0 + 16) + em_interleave_hi16(c0, c1));
    em_store16(r1, em_load16(r1) + em_interleave_lo16(c2, c3));
    em_store16(r1 + 16, em_load16(r1 + 16) + em_interleave_hi16(c2, c3));
}

/* Backward of max_plane_2x2 for one plane, 16 windows at a time, with the same whole-vector
 * tails where their reads and writes stay in the plane (the writes past a row add -0.0
 * to cells of rows handled later, or earlier by this same loop). */
static void max_plane_2x2_backward(const pool_geom *g, const float *dy, const int32_t *argmax, float *dx)
{
    const int32_t w = (int32_t)g->w;
    const int64_t full = g->ow / 16 * 16, rest = g->ow - full;
    const em_vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const em_vf16 none = em_splat16(-0.0f);
    for (int64_t oy = 0; oy < g->oh; oy++) {
        float *r0 = dx + 2 * oy * g->w, *r1 = r0 + g->w;
        const float *dr = dy + oy * g->ow;
        const int32_t *ar = argmax + oy * g->ow;
        const int32_t base = (int32_t)(2 * oy * g->w);
        em_vi16 at;
        for (int64_t ox = 0; ox < full; ox += 16) {
            memcpy(&at, ar + ox, sizeof at);
            scatter_2x2_lanes(r0 + 2 * ox, r1 + 2 * ox, em_load16(dr + ox),
                              at - (base + (int32_t)(2 * ox)) - 2 * lane, w);
        }
        if (!rest)
            continue;
        if ((2 * oy + 1) * g->w + 2 * full + 32 <= g->h * g->w && oy + 1 < g->oh &&
            oy * g->ow + full + 16 <= g->oh * g->ow) {
            memcpy(&at, ar + full, sizeof at);
            em_vf16 d = em_select16(lane < (em_vi16){0} + (int32_t)rest, em_load16(dr + full), none);
            scatter_2x2_lanes(r0 + 2 * full, r1 + 2 * full, d, at - (base + (int32_t)(2 * full)) - 2 * lane, w);
        } else {
            for (int64_t ox = full; ox < g->ow; ox++)
                dx[ar[ox]] += dr[ox];
        }
    }
}

static void max_pool_backward(em_node *node)
{
    const pool_saved *s = node->saved;
    const pool_geom *g = &s->g;
    em_tensor *x = node->in[0];
    const float *dy = node->out->grad;
    const int64_t in_plane = g->h * g->w, out_plane = g->oh * g->ow;
#pragma omp parallel for schedule(static) if (x->numel >= PARALLEL_MIN_ELEMENTS)
    for (int64_t p = 0; p < g->planes; p++) {
        float *dx = x->grad + p * in_plane;
        const float *dyp = dy + p * out_plane;
        const int32_t *ap = s->argmax + p * out_plane;
        if (g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0) {
            max_plane_2x2_backward(g, dyp, ap, dx);
            continue;
        }
        for (int64_t i = 0; i < out_plane; i++)
            dx[ap[i]] += dyp[i];
    }
}

int em_max_pool_geometry(const em_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw, pool_geom *g)
{
    return check_pool("max_pool2d", x, kh, kw, sh, sw, ph, pw, g);
}

void em_max_pool_planes(const pool_geom *g, const float *x, float *y, int32_t *argmax, int64_t planes)
{
    const int64_t out_plane = g->oh * g->ow;
    for (int64_t p = 0; p < planes; p++)
        max_plane(g, x + p * g->h * g->w, y + p * out_plane, argmax ? argmax + p * out_plane : NULL);
}

em_tensor *em_max_pool2d(em_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h,
                         int pad_w)
{
    if (!x)
        return NULL;
    pool_geom g;
    if (check_pool("max_pool2d", x, kh, kw, stride_h, stride_w, pad_h, pad_w, &g) != EM_OK)
        return NULL;
    x = em_contiguous(x);
    if (!x)
        return NULL;
    em_tensor *out = pool_output(x, &g);
    if (!out)
        return NULL;
    int32_t *argmax = NULL;
    if (em_grad_enabled() && x->requires_grad) {
        argmax = em_arena_alloc(em_step_arena(), (size_t)out->numel * sizeof(int32_t));
        if (!argmax)
            return NULL;
    }
    const int64_t in_plane = g.h * g.w, out_plane = g.oh * g.ow;
#pragma omp parallel for schedule(static) if (x->numel >= PARALLEL_MIN_ELEMENTS)
    for (int64_t p = 0; p < g.planes; p++)
        max_plane(&g, x->data + p * in_plane, out->data + p * out_plane,
                  argmax ? argmax + p * out_plane : NULL);
    em_node *node = em_record("max_pool2d", out, 1, &x, max_pool_backward);
    if (node) {
        pool_saved *s = em_arena_alloc(em_step_arena(), sizeof *s);
        if (!s)
            return NULL;
        s->g = g;
        s->argmax = argmax;
        node->saved = s;
    }
    return out;
}

/* ---- average pooling --------------------------------------------------------------- */

/* The divisor of output cell (oy, ox): the whole kernel, or only its real cells. */
static inline float window_count(const pool_geom *g, bool include_pad, int64_t y0, int64_t y1,
                                 int64_t x0, int64_t x1)
{
    return include_pad ? (float)(g->kh * g->kw) : (float)((y1 - y0) * (x1 - x0));
}

static void avg_pool_backward(em_node *node)
{
    const pool_saved *s = node->saved;
    const pool_geom *g = &s->g;
    em_tensor *x = node->in[0];
    const float *dy = node->out->grad;
    const int64_t in_plane = g->h * g->w, out_plane = g->oh * g->ow;
#pragma omp parallel for schedule(static) if (x->numel >= PARALLEL_MIN_ELEMENTS)
    for (int64_t p = 0; p < g->planes; p++) {
        float *dx = x->grad + p * in_plane;
        const float *dyp = dy + p * out_plane;
        for (int64_t oy = 0; oy < g->oh; oy++)
            for (int64_t ox = 0; ox < g->ow; ox++) {
                int64_t y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                float share = dyp[oy * g->ow + ox] / window_count(g, s->count_include_pad, y0, y1, x0, x1);
                for (int64_t iy = y0; iy < y1; iy++)
                    for (int64_t ix = x0; ix < x1; ix++)
                        dx[iy * g->w + ix] += share;
            }
    }
}

em_tensor *em_avg_pool2d(em_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h,
                         int pad_w, bool count_include_pad)
{
    if (!x)
        return NULL;
    pool_geom g;
    if (check_pool("avg_pool2d", x, kh, kw, stride_h, stride_w, pad_h, pad_w, &g) != EM_OK)
        return NULL;
    x = em_contiguous(x);
    if (!x)
        return NULL;
    em_tensor *out = pool_output(x, &g);
    if (!out)
        return NULL;
    const int64_t in_plane = g.h * g.w, out_plane = g.oh * g.ow;
#pragma omp parallel for schedule(static) if (x->numel >= PARALLEL_MIN_ELEMENTS)
    for (int64_t p = 0; p < g.planes; p++) {
        const float *xp = x->data + p * in_plane;
        float *yp = out->data + p * out_plane;
        for (int64_t oy = 0; oy < g.oh; oy++)
            for (int64_t ox = 0; ox < g.ow; ox++) {
                int64_t y0, y1, x0, x1;
                window(&g, oy, ox, &y0, &y1, &x0, &x1);
                float sum = 0.0f;
                for (int64_t iy = y0; iy < y1; iy++)
                    for (int64_t ix = x0; ix < x1; ix++)
                        sum += xp[iy * g.w + ix];
                yp[oy * g.ow + ox] = sum / window_count(&g, count_include_pad, y0, y1, x0, x1);
            }
    }
    em_node *node = em_record("avg_pool2d", out, 1, &x, avg_pool_backward);
    if (node) {
        pool_saved *s = em_arena_alloc(em_step_arena(), sizeof *s);
        if (!s)
            return NULL;
        s->g = g;
        s->argmax = NULL;
        s->count_include_pad = count_include_pad;
        node->saved = s;
    }
    return out;
}

/* ---- global average ---------------------------------------------------------------- */

static void global_avg_backward(em_node *node)
{
    em_tensor *x = node->in[0];
    const float *dy = node->out->grad;
    const int64_t planes = x->shape[0] * x->shape[1], plane = x->shape[2] * x->shape[3];
    const float inv = 1.0f / (float)plane;
#pragma omp parallel for schedule(static) if (x->numel >= PARALLEL_MIN_ELEMENTS)
    for (int64_t p = 0; p < planes; p++) {
        float share = dy[p] * inv, *dx = x->grad + p * plane;
        for (int64_t i = 0; i < plane; i++)
            dx[i] += share;
    }
}

em_tensor *em_adaptive_avg_pool2d_1x1(em_tensor *x)
{
    if (!x)
        return NULL;
    if (x->ndim != 4)
        return em_error("adaptive_avg_pool2d: input must be [N, C, H, W], got %s", em_shape_str(x)),
               NULL;
    x = em_contiguous(x);
    if (!x)
        return NULL;
    int64_t shape[4] = {x->shape[0], x->shape[1], 1, 1};
    em_tensor *out = em_tensor_empty(NULL, 4, shape);
    if (!out)
        return NULL;
    const int64_t planes = shape[0] * shape[1], plane = x->shape[2] * x->shape[3];
#pragma omp parallel for schedule(static) if (x->numel >= PARALLEL_MIN_ELEMENTS)
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x->data + p * plane;
        double sum = 0.0;
        for (int64_t i = 0; i < plane; i++)
            sum += xp[i];
        out->data[p] = (float)(sum / (double)plane);
    }
    em_record("adaptive_avg_pool2d", out, 1, &x, global_avg_backward);
    return out;
}
