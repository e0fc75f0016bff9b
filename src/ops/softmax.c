/* softmax and log_softmax along any dimension, with the maximum subtracted first so that
 * exp never overflows. The tensor is seen as [outer, len, inner] with `len` the softmax
 * dimension: rows (inner == 1) are reduced one at a time, otherwise a block of up to
 * SOFTMAX_CHUNK neighbouring columns is reduced together so that the inner loops run
 * over contiguous memory. */
#include <math.h>

#include "ember/error.h"
#include "ember/ops.h"
#include "ops/dense.h"
#include "ops/fastmath.h"

#define SOFTMAX_CHUNK 512

typedef struct softmax_shape {
    int64_t outer, len, inner;
} softmax_shape;

static int softmax_layout(const em_tensor *a, int dim, const char *op, softmax_shape *s)
{
    int ndim = a->ndim;
    int lo = ndim ? -ndim : -1, hi = ndim ? ndim - 1 : 0;
    if (dim < lo || dim > hi)
        return em_error("%s: dimension %d is out of range for shape %s (valid: %d to %d)", op, dim,
                        em_shape_str(a), lo, hi);
    int d = dim < 0 ? dim + (ndim ? ndim : 1) : dim;
    s->outer = s->len = s->inner = 1;
    for (int k = 0; k < ndim; k++) {
        if (k < d)
            s->outer *= a->shape[k];
        else if (k == d)
            s->len = a->shape[k];
        else
            s->inner *= a->shape[k];
    }
    return EM_OK;
}

/* y may be x. */
static void softmax_row(const float *x, float *y, int64_t len, bool log_space)
{
    float m = em_max_floats(x, len);
    if (log_space) {
        float acc[EM_PARTIALS] = {0};
        int64_t i = 0;
        for (; i + EM_PARTIALS <= len; i += EM_PARTIALS)
            for (int j = 0; j < EM_PARTIALS; j++)
                acc[j] += em_fast_expf(x[i + j] - m);
        float s = 0.0f;
        for (; i < len; i++)
            s += em_fast_expf(x[i] - m);
        for (int j = 0; j < EM_PARTIALS; j++)
            s += acc[j];
        /* (x - m) - log s: subtracting m first keeps the digits that x - lse would
         * lose when |x| is large */
        float log_s = logf(s);
        for (i = 0; i < len; i++)
            y[i] = (x[i] - m) - log_s;
    } else {
        for (int64_t i = 0; i < len; i++)
            y[i] = em_fast_expf(x[i] - m);
        float scale = 1.0f / em_sum_floats(y, len);
        for (int64_t i = 0; i < len; i++)
            y[i] *= scale;
    }
}

/* Columns [0, width) of one outer slice: x and y point at its first column, rows are
 * `inner` apart. */
static void softmax_columns(const float *x, float *y, int64_t len, int64_t inner, int64_t width,
                            bool log_space)
{
    /* The sums run down a column one term at a time, so they are kept in double. */
    float m[SOFTMAX_CHUNK];
    double s[SOFTMAX_CHUNK];
    for (int64_t j = 0; j < width; j++) {
        m[j] = x[j];
        s[j] = 0.0;
    }
    for (int64_t k = 1; k < len; k++) {
        const float *xr = x + k * inner;
        for (int64_t j = 0; j < width; j++)
            m[j] = xr[j] > m[j] || xr[j] != xr[j] ? xr[j] : m[j];
    }
    for (int64_t k = 0; k < len; k++) {
        const float *xr = x + k * inner;
        /* softmax keeps the exponentials in y; log_softmax needs x again at the end (and
         * y may be x), so it uses a scratch row */
        float scratch[SOFTMAX_CHUNK];
        float *e = log_space ? scratch : y + k * inner;
        for (int64_t j = 0; j < width; j++)
            e[j] = em_fast_expf(xr[j] - m[j]);
        for (int64_t j = 0; j < width; j++)
            s[j] += e[j];
    }
    if (log_space) {
        float log_s[SOFTMAX_CHUNK];
        for (int64_t j = 0; j < width; j++)
            log_s[j] = (float)log(s[j]);
        for (int64_t k = 0; k < len; k++)
            for (int64_t j = 0; j < width; j++)
                y[k * inner + j] = (x[k * inner + j] - m[j]) - log_s[j];
    } else {
        float scale[SOFTMAX_CHUNK];
        for (int64_t j = 0; j < width; j++)
            scale[j] = (float)(1.0 / s[j]);
        for (int64_t k = 0; k < len; k++)
            for (int64_t j = 0; j < width; j++)
                y[k * inner + j] *= scale[j];
    }
}

static void softmax_forward(const float *x, float *y, softmax_shape s, bool log_space)
{
    int64_t total = s.outer * s.len * s.inner;
    if (s.inner == 1) {
#pragma omp parallel for schedule(static) if (total > EM_PARALLEL_MIN_ELEMENTS)
        for (int64_t o = 0; o < s.outer; o++)
            softmax_row(x + o * s.len, y + o * s.len, s.len, log_space);
        return;
    }
    int64_t chunks = (s.inner + SOFTMAX_CHUNK - 1) / SOFTMAX_CHUNK;
#pragma omp parallel for schedule(static) if (total > EM_PARALLEL_MIN_ELEMENTS)
    for (int64_t item = 0; item < s.outer * chunks; item++) {
        int64_t o = item / chunks, j0 = item % chunks * SOFTMAX_CHUNK;
        int64_t width = s.inner - j0 < SOFTMAX_CHUNK ? s.inner - j0 : SOFTMAX_CHUNK;
        int64_t base = o * s.len * s.inner + j0;
        softmax_columns(x + base, y + base, s.len, s.inner, width, log_space);
    }
}

/* softmax:     dx += y·(g - Σ g·y)
 * log_softmax: dx += g - exp(y)·Σ g */
static void softmax_backward_row(const float *y, const float *g, float *dx, int64_t len,
                                 bool log_space)
{
    if (log_space) {
        float sg = em_sum_floats(g, len);
        for (int64_t i = 0; i < len; i++)
            dx[i] += g[i] - em_fast_expf(y[i]) * sg;
    } else {
        float dot = em_dot_floats(g, y, len);
        for (int64_t i = 0; i < len; i++)
            dx[i] += y[i] * (g[i] - dot);
    }
}

static void softmax_backward_columns(const float *y, const float *g, float *dx, int64_t len,
                                     int64_t inner, int64_t width, bool log_space)
{
    float acc[SOFTMAX_CHUNK];
    for (int64_t j = 0; j < width; j++)
        acc[j] = 0.0f;
    for (int64_t k = 0; k < len; k++) {
        const float *gr = g + k * inner, *yr = y + k * inner;
        if (log_space)
            for (int64_t j = 0; j < width; j++)
                acc[j] += gr[j];
        else
            for (int64_t j = 0; j < width; j++)
                acc[j] += gr[j] * yr[j];
    }
    for (int64_t k = 0; k < len; k++) {
        const float *gr = g + k * inner, *yr = y + k * inner;
        float *dr = dx + k * inner;
        if (log_space)
            for (int64_t j = 0; j < width; j++)
                dr[j] += gr[j] - em_fast_expf(yr[j]) * acc[j];
        else
            for (int64_t j = 0; j < width; j++)
                dr[j] += yr[j] * (gr[j] - acc[j]);
    }
}

static void softmax_backward(em_node *node)
{
    softmax_shape s = {node->i[0], node->i[1], node->i[2]};
    bool log_space = node->i[3] != 0;
    const float *y = node->out->data, *g = node->out->grad;
    float *dx = node->in[0]->grad;
    int64_t total = s.outer * s.len * s.inner;
    if (s.inner == 1) {
#pragma omp parallel for schedule(static) if (total > EM_PARALLEL_MIN_ELEMENTS)
        for (int64_t o = 0; o < s.outer; o++)
            softmax_backward_row(y + o * s.len, g + o * s.len, dx + o * s.len, s.len, log_space);
        return;
    }
    int64_t chunks = (s.inner + SOFTMAX_CHUNK - 1) / SOFTMAX_CHUNK;
#pragma omp parallel for schedule(static) if (total > EM_PARALLEL_MIN_ELEMENTS)
    for (int64_t item = 0; item < s.outer * chunks; item++) {
        int64_t o = item / chunks, j0 = item % chunks * SOFTMAX_CHUNK;
        int64_t width = s.inner - j0 < SOFTMAX_CHUNK ? s.inner - j0 : SOFTMAX_CHUNK;
        int64_t base = o * s.len * s.inner + j0;
        softmax_backward_columns(y + base, g + base, dx + base, s.len, s.inner, width, log_space);
    }
}

static em_tensor *softmax_op(em_tensor *a, int dim, bool log_space)
{
    const char *name = log_space ? "log_softmax" : "softmax";
    if (!a)
        return NULL;
    softmax_shape s;
    if (softmax_layout(a, dim, name, &s) != EM_OK)
        return NULL;
    em_tensor *out = em_tensor_empty(NULL, a->ndim, a->shape);
    if (!out)
        return NULL;
    const float *x = a->data;
    if (!em_is_contiguous(a)) {
        em_copy_to(a, out->data); /* computed in place: backward needs only the output */
        x = out->data;
    }
    softmax_forward(x, out->data, s, log_space);
    em_node *n = em_record(name, out, 1, &a, softmax_backward);
    if (n) {
        n->i[0] = s.outer;
        n->i[1] = s.len;
        n->i[2] = s.inner;
        n->i[3] = log_space;
    }
    return out;
}

em_tensor *em_softmax(em_tensor *a, int dim) { return softmax_op(a, dim, false); }
em_tensor *em_log_softmax(em_tensor *a, int dim) { return softmax_op(a, dim, true); }
