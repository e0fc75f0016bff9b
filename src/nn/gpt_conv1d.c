/* GPT-2's Conv1D as one differentiable op: y = act(x · W + b) (+ residual), with W stored
 * [in, out] as GPT-2's files store it.
 *
 * Without gradients (evaluation, generation) the product runs on the panel kernel
 * (ops/panel_gemm.h), whose arithmetic for a row depends on that row alone: BLAS picks
 * other kernels and blockings for 1 row than for 128, which changes roundings, and
 * generation through the key/value cache (one row per token) is then no longer the
 * full recomputation bit for bit. Training keeps BLAS.
 *
 * em_linear could run it through a transposed view of W, but then backward writes the
 * weight gradient into the view's own buffer (zeroed, then transposed into W's) and the
 * residual add is a pass of its own each way. Here the weight gradient goes straight
 * into W's (one GEMM, beta 1) and the residual stream is the GEMM's starting value,
 * which saves a pass over [rows, out] in forward and the add's node in backward. */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <string.h>

#include "ember/error.h"
#include "ember/runtime.h"
#include "nn/gpt_internal.h"
#include "ops/panel_gemm.h"

/* Elementwise passes below this many elements stay on one thread. */
#define PARALLEL_MIN_ELEMENTS 32768

typedef struct conv1d_saved {
    int64_t rows, in, out;
    em_activation act;
    const float *pre; /* pre-activation (GELU needs it), NULL without an activation */
} conv1d_saved;

/* Columns [c0, c1) of this thread, in whole cache lines. */
static void thread_cols(int64_t cols, int64_t *c0, int64_t *c1)
{
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t blocks = (cols + 15) / 16;
    *c0 = blocks * t / nt * 16;
    *c1 = blocks * (t + 1) / nt * 16;
    *c0 = *c0 < cols ? *c0 : cols;
    *c1 = *c1 < cols ? *c1 : cols;
}

/* True when a training product of rows x in x out is large enough to share out over the
 * team, one BLAS thread each, and the team is there to take it. */
static bool team_shares_product(int64_t rows, int64_t in, int64_t out)
{
    return rows * in * out >= (1 << 20) && omp_get_max_threads() > 1 && !omp_in_parallel();
}

/* db[j] += Σ_r g[r, j] for the columns j in [c0, c1). */
static void bias_grad_cols(const float *g, int64_t rows, int64_t out, float *db, int64_t c0, int64_t c1)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = c0; j < c1; j++)
            db[j] += g[r * out + j];
}

/* dW [in, out] += xᵀ g (when dw is given). */
static void weight_grad(const float *x, const float *g, int64_t rows, int64_t in, int64_t out, float *dw)
{
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)in, (int)out, (int)rows, 1.0f, x, (int)in, g,
                    (int)out, 1.0f, dw, (int)out);
}

/* dX [rows, in] = g Wᵀ, or += unless fresh. */
static void input_grad(const float *g, const float *w, int64_t rows, int64_t in, int64_t out, float *dx, bool fresh)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)in, (int)out, 1.0f, g, (int)out, w,
                (int)out, fresh ? 0.0f : 1.0f, dx, (int)in);
}

static void conv1d_backward(em_node *node)
{
    const conv1d_saved *s = node->saved;
    em_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2], *res = node->in[3], *y = node->out;
    const int64_t rows = s->rows, in = s->in, out = s->out;
    float *g = y->grad;
    /* The residual's gradient is the output's: it takes the buffer itself when it has none
     * yet, unless it is x too (whose gradient the product below adds, reading g). */
    if (res && res->requires_grad && (res == x || !em_grad_adopt(res, g))) {
        float *dr = em_grad_buffer(res);
        if (!dr)
            return;
#pragma omp parallel for schedule(static) if (rows * out >= PARALLEL_MIN_ELEMENTS)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < out; j++)
                dr[r * out + j] += g[r * out + j];
    }
    if (s->act != EM_ACT_NONE) {
        /* the gradient at the GEMM's output: dY · act'(pre) */
        float *ga = em_arena_alloc(em_step_arena(), (size_t)(rows * out) * sizeof(float));
        if (!ga)
            return;
        em_activation_gradient(s->act, 0.0f, s->pre, y->data, y->grad, ga, rows * out);
        g = ga;
    }
    float *db = NULL, *dw = NULL, *dx = NULL;
    bool fresh = false;
    if ((b && b->requires_grad && !(db = em_grad_buffer(b))) || (w->requires_grad && !(dw = em_grad_buffer(w))) ||
        (x->requires_grad && !(dx = em_grad_for_write(x, &fresh))))
        return;
    /* The two products are independent and equally large: on two threads each runs one
     * on a single BLAS thread (BLAS inside a parallel region stays on its caller's
     * thread), which measured 15% faster at W4's shapes than both in turn on two BLAS
     * threads. Either way every element gets the same arithmetic. */
    if (dw && dx && team_shares_product(rows, in, out)) {
        /* each side also sums half of the bias gradient's columns, to stay even */
        const int64_t half = (out / 2 + 15) / 16 * 16 < out ? (out / 2 + 15) / 16 * 16 : out;
#pragma omp parallel sections num_threads(2)
        {
#pragma omp section
            {
                if (db)
                    bias_grad_cols(g, rows, out, db, 0, half);
                weight_grad(x->data, g, rows, in, out, dw);
            }
#pragma omp section
            {
                if (db)
                    bias_grad_cols(g, rows, out, db, half, out);
                input_grad(g, w->data, rows, in, out, dx, fresh);
            }
        }
        return;
    }
    if (db) {
#pragma omp parallel if (rows * out >= PARALLEL_MIN_ELEMENTS)
        {
            int64_t c0, c1;
            thread_cols(out, &c0, &c1);
            bias_grad_cols(g, rows, out, db, c0, c1);
        }
    }
    weight_grad(x->data, g, rows, in, out, dw);
    if (dx)
        input_grad(g, w->data, rows, in, out, dx, fresh);
}

/* A row of the output before the product: residual + bias, either, or neither. */
static void start_row(float *dst, const float *r, const float *bias, int64_t out)
{
    if (r && bias)
        for (int64_t j = 0; j < out; j++)
            dst[j] = r[j] + bias[j];
    else if (r)
        memcpy(dst, r, (size_t)out * sizeof(float));
    else
        memcpy(dst, bias, (size_t)out * sizeof(float));
}

/* pre [rows, out] = residual + bias + x·W (either addend may be NULL) on BLAS, and
 * y = act(pre) (pre may be y without an activation). On a team,
 * each thread starts and multiplies its own share of the rows on one BLAS thread: at W4's
 * shapes (2048 rows, in and out 128 to 512) that measured 10-40% faster than one product
 * on two BLAS threads, and a thread's rows stay in its cache between the two passes. */
static void rows_product(const float *x, int64_t rows, int64_t in, const float *w, int64_t out, const float *residual,
                         const float *bias, em_activation act, float *pre, float *y)
{
    const float beta = residual || bias ? 1.0f : 0.0f;
    const bool split = rows >= 64 && team_shares_product(rows, in, out);
#pragma omp parallel if (split)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        if (beta != 0.0f)
            for (int64_t i = r0; i < r1; i++)
                start_row(pre + i * out, residual ? residual + i * out : NULL, bias, out);
        if (r1 > r0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), (int)out, (int)in, 1.0f,
                        x + r0 * in, (int)in, w, (int)out, beta, pre + r0 * out, (int)out);
        if (act != EM_ACT_NONE && r1 > r0)
            em_activation_forward(act, 0.0f, pre + r0 * out, y + r0 * out, (r1 - r0) * out);
    }
}

float *gpt_pack(em_arena *arena, const em_tensor *w, bool transposed)
{
    const int64_t k = transposed ? w->shape[1] : w->shape[0], n = transposed ? w->shape[0] : w->shape[1];
    float *packed = em_arena_alloc(arena, (size_t)em_panel_packed_floats(k, n) * sizeof(float));
    if (packed)
        em_panel_pack(w->data, transposed ? 1 : n, transposed ? k : 1, k, n, packed);
    return packed;
}

/* Weights (in·out) from which a few rows (generation: one token) share the product out
 * by columns: the step then streams the weights from both cores' caches at once. */
#define SHARED_COLUMNS_MIN_WEIGHTS (1 << 15)

void gpt_rows_product(const float *x, int64_t rows, int64_t in, const float *packed, int64_t out, float *y)
{
    /* Row blocks of 16 per thread, or panels of columns: any split gives each output
     * element the same arithmetic (a row against one panel). */
    const int64_t blocks = (rows + 15) / 16;
    if (rows < 16 && in * out >= SHARED_COLUMNS_MIN_WEIGHTS && omp_get_max_threads() > 1 && !omp_in_parallel() &&
        em_threads_spin()) {
        const int64_t panels = (out + EM_PANEL - 1) / EM_PANEL;
#pragma omp parallel
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t p0 = panels * t / nt, p1 = panels * (t + 1) / nt;
            const int64_t c0 = p0 * EM_PANEL, c1 = p1 * EM_PANEL < out ? p1 * EM_PANEL : out;
            if (c1 > c0)
                em_panel_gemm(rows, c1 - c0, in, x, in, packed + p0 * in * EM_PANEL, y + c0, out);
        }
        return;
    }
    if (rows * in * out < (1 << 20)) {
        em_panel_gemm(rows, out, in, x, in, packed, y, out);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t r0 = b * 16, n = rows - r0 < 16 ? rows - r0 : 16;
        em_panel_gemm(n, out, in, x + r0 * in, in, packed, y + r0 * out, out);
    }
}

em_tensor *gpt_conv1d(em_tensor *x, em_tensor *w, em_tensor *bias, em_activation act, em_tensor *residual,
                      const float *packed)
{
    if (!x || !w)
        return NULL;
    if (w->ndim != 2 || x->ndim != 2 || x->shape[1] != w->shape[0] || !em_is_contiguous(w) ||
        (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[1] || !em_is_contiguous(bias))))
        return em_error("conv1d: input %s, weight %s [in, out] and bias %s do not fit", em_shape_str(x), em_shape_str(w),
                        bias ? em_shape_str(bias) : "(none)"),
               NULL;
    const int64_t rows = x->shape[0], in = w->shape[0], out = w->shape[1];
    if (rows > INT_MAX || in > INT_MAX || out > INT_MAX)
        return em_error("conv1d: %s x %s exceeds BLAS's 32-bit range", em_shape_str(x), em_shape_str(w)), NULL;
    if (residual && (residual->ndim != 2 || residual->shape[0] != rows || residual->shape[1] != out))
        return em_error("conv1d: residual %s does not fit the output [%lld, %lld]", em_shape_str(residual),
                        (long long)rows, (long long)out),
               NULL;
    const bool has_residual = residual != NULL;
    x = em_contiguous(x);
    if (has_residual)
        residual = em_contiguous(residual);
    em_tensor *y = x && (residual || !has_residual) ? em_tensor_empty(NULL, 2, (int64_t[]){rows, out}) : NULL;
    if (!y)
        return NULL;
    const bool recording = em_grad_enabled() && (x->requires_grad || w->requires_grad ||
                                                (bias && bias->requires_grad) || (residual && residual->requires_grad));
    float *pre = y->data;
    if (act != EM_ACT_NONE && recording && !(pre = em_arena_alloc(em_step_arena(), (size_t)(rows * out) * sizeof(float))))
        return NULL;

    /* the GEMM adds onto the residual and bias (or starts from zero) */
    const float *r = residual ? residual->data : NULL, *bd = bias ? bias->data : NULL;
    if (recording) {
        rows_product(x->data, rows, in, w->data, out, r, bd, act, pre, y->data);
    } else {
        /* a small pass stays out of OpenMP altogether (even a one-thread region costs a
         * futex call, which matters at one row per generated token) */
        if ((r || bd) && rows * out >= PARALLEL_MIN_ELEMENTS) {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < rows; i++)
                start_row(pre + i * out, r ? r + i * out : NULL, bd, out);
        } else if (r || bd) {
            for (int64_t i = 0; i < rows; i++)
                start_row(pre + i * out, r ? r + i * out : NULL, bd, out);
        }
        if (!packed && !(packed = gpt_pack(em_step_arena(), w, false)))
            return NULL;
        if (!r && !bd)
            memset(pre, 0, (size_t)(rows * out) * sizeof(float));
        gpt_rows_product(x->data, rows, in, packed, out, pre);
        if (act != EM_ACT_NONE)
            em_activation_forward(act, 0.0f, pre, y->data, rows * out);
    }

    em_node *node = em_record("conv1d", y, 4, (em_tensor *[]){x, w, bias, residual}, conv1d_backward);
    if (node) {
        conv1d_saved *s = em_arena_alloc(em_step_arena(), sizeof *s);
        if (!s)
            return NULL;
        *s = (conv1d_saved){rows, in, out, act, act != EM_ACT_NONE ? pre : NULL};
        node->saved = s;
        node->takes_input_grads = true;
    }
    return y;
}
