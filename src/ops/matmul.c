/* Matrix products on BLAS: em_matmul (2-D, vectors and batched with broadcast batch
 * dims) and em_linear (one GEMM with the bias and activation fused around it).
 *
 * BLAS reads a matrix in place when one of its two strides is 1; a transposed view is
 * then just the other transpose flag, so neither forward nor backward copies it. Only
 * views with no unit stride (a sliced column step, say) are made contiguous first. */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <string.h>

#include "ember/error.h"
#include "ember/ops.h"
#include "ops/strided.h"

/* Elementwise passes below this many elements stay on one thread: forking costs more. */
#define PARALLEL_MIN_ELEMENTS 32768
/* Batches of matrices below this many multiply-adds run one matrix per thread (BLAS
 * itself stays on one thread for these sizes, so this is where the parallelism is). */
#define SMALL_GEMM_MACS (128 * 128 * 128)

/* How BLAS reads a logical rows x cols matrix whose element (r, c) is at r*rs + c*cs. */
typedef struct blas_matrix {
    CBLAS_TRANSPOSE trans;
    int ld;
} blas_matrix;

static bool fits_blas_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* False when BLAS cannot read the matrix in place (no unit stride, or rows overlap). */
static bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, blas_matrix *out)
{
    if (cols == 1 || cs == 1) {
        int64_t ld = rows == 1 ? cols : rs;
        if (ld >= cols && ld >= 1 && fits_blas_int(ld)) {
            out->trans = CblasNoTrans;
            out->ld = (int)ld;
            return true;
        }
    }
    if (rows == 1 || rs == 1) {
        int64_t ld = cols == 1 ? rows : cs;
        if (ld >= rows && ld >= 1 && fits_blas_int(ld)) {
            out->trans = CblasTrans;
            out->ld = (int)ld;
            return true;
        }
    }
    return false;
}

/* One operand of a batch of GEMMs: a logical matrix per batch index. */
typedef struct gemm_operand {
    const float *data;
    int64_t rs, cs;                    /* strides of the logical matrix */
    const int64_t *batch_stride;       /* per batch dim; 0 where broadcast */
} gemm_operand;

static void operand_offsets(int nb, const int64_t *bshape, int64_t flat, const int64_t *sa,
                            const int64_t *sb, const int64_t *sc, int64_t *oa, int64_t *ob,
                            int64_t *oc)
{
    *oa = *ob = *oc = 0;
    for (int d = nb - 1; d >= 0; d--) {
        int64_t i = flat % bshape[d];
        flat /= bshape[d];
        *oa += i * sa[d];
        *ob += i * sb[d];
        *oc += i * sc[d];
    }
}

/* C_i = op(A_i) op(B_i) + beta C_i for each batch index i, where C_i is m x n with row
 * stride ldc. c_distinct: no two batch indices share a C_i, so they may run at once. */
static void gemm_batched(int nb, const int64_t *bshape, int64_t count, int64_t m, int64_t n,
                         int64_t k, const gemm_operand *a, const gemm_operand *b, float beta,
                         float *c, int64_t ldc, const int64_t *c_batch_stride, bool c_distinct)
{
    blas_matrix la, lb;
    /* The callers made every operand BLAS-readable before planning. */
    if (!blas_layout(m, k, a->rs, a->cs, &la) || !blas_layout(k, n, b->rs, b->cs, &lb))
        return;
    static const int64_t zero[EM_MAX_DIMS] = {0};
    const int64_t *sa = nb ? a->batch_stride : zero, *sb = nb ? b->batch_stride : zero;
    const int64_t *sc = nb ? c_batch_stride : zero;
    if (count == 1) {
        cblas_sgemm(CblasRowMajor, la.trans, lb.trans, (int)m, (int)n, (int)k, 1.0f, a->data, la.ld,
                    b->data, lb.ld, beta, c, (int)ldc);
        return;
    }
    bool parallel = c_distinct && count >= 2 && m * n * k <= SMALL_GEMM_MACS &&
                    omp_get_max_threads() > 1;
    /* Inside a parallel region OpenBLAS's OpenMP build runs single-threaded. */
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < count; i++) {
        int64_t oa, ob, oc;
        operand_offsets(nb, bshape, i, sa, sb, sc, &oa, &ob, &oc);
        cblas_sgemm(CblasRowMajor, la.trans, lb.trans, (int)m, (int)n, (int)k, 1.0f, a->data + oa,
                    la.ld, b->data + ob, lb.ld, beta, c + oc, (int)ldc);
    }
}

/* ---- em_matmul ---------------------------------------------------------------------- */

typedef struct matmul_plan {
    int nb;                            /* broadcast batch dims */
    int64_t bshape[EM_MAX_DIMS];
    int64_t count;                     /* product of bshape */
    int64_t m, n, k;
    int64_t a_rs, a_cs, b_rs, b_cs;    /* logical matrices in the operands' data */
    int64_t a_bs[EM_MAX_DIMS], b_bs[EM_MAX_DIMS];    /* data batch strides */
    int64_t ga_bs[EM_MAX_DIMS], gb_bs[EM_MAX_DIMS];  /* dense gradient batch strides */
    int64_t c_bs[EM_MAX_DIMS];         /* dense output batch strides */
    bool a_shared, b_shared;           /* some batch indices reuse one a (b) matrix */
} matmul_plan;

/* Batch strides of operand t (batch dims = its first t_nb dims) aligned right to the
 * broadcast batch shape; `dense` selects its dense gradient's strides over its data's. */
static bool batch_strides(const em_tensor *t, int t_nb, int nb, const int64_t *bshape, bool dense,
                          int64_t *out)
{
    int64_t dense_stride[EM_MAX_DIMS];
    em_dense_strides(t->ndim, t->shape, dense_stride);
    bool shared = false;
    for (int d = 0; d < nb; d++) {
        int td = d - (nb - t_nb);
        if (td < 0 || t->shape[td] == 1) {
            out[d] = 0;
            shared |= bshape[d] > 1;
        } else {
            out[d] = dense ? dense_stride[td] : t->stride[td];
        }
    }
    return shared;
}

/* Matrix dims of an operand: a vector is one row (as a) or one column (as b). */
static void matrix_dims(const em_tensor *t, bool as_left, int64_t *rows, int64_t *cols, int64_t *rs,
                        int64_t *cs)
{
    if (t->ndim == 1) {
        if (as_left) {
            *rows = 1, *cols = t->shape[0], *rs = t->shape[0] * t->stride[0], *cs = t->stride[0];
        } else {
            *rows = t->shape[0], *cols = 1, *rs = t->stride[0], *cs = 1;
        }
        return;
    }
    *rows = t->shape[t->ndim - 2];
    *cols = t->shape[t->ndim - 1];
    *rs = t->stride[t->ndim - 2];
    *cs = t->stride[t->ndim - 1];
}

static int plan_matmul(const em_tensor *a, const em_tensor *b, matmul_plan *p, int *out_ndim,
                       int64_t *out_shape)
{
    memset(p, 0, sizeof *p);
    if (a->ndim < 1 || b->ndim < 1)
        return em_error("matmul of %s and %s: scalars have no matrix product (use em_mul)",
                        em_shape_str(a), em_shape_str(b));
    int64_t kb;
    matrix_dims(a, true, &p->m, &p->k, &p->a_rs, &p->a_cs);
    matrix_dims(b, false, &kb, &p->n, &p->b_rs, &p->b_cs);
    if (p->k != kb)
        return em_error("matmul of %s and %s: the inner dimensions differ (%lld columns vs %lld rows)",
                        em_shape_str(a), em_shape_str(b), (long long)p->k, (long long)kb);
    int a_nb = a->ndim > 2 ? a->ndim - 2 : 0, b_nb = b->ndim > 2 ? b->ndim - 2 : 0;
    p->nb = a_nb > b_nb ? a_nb : b_nb;
    p->count = 1;
    for (int d = 0; d < p->nb; d++) {
        int da = d - (p->nb - a_nb), db = d - (p->nb - b_nb);
        int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return em_error("matmul of %s and %s: the batch dimensions cannot be broadcast "
                            "(batch dimension %d: %lld vs %lld)",
                            em_shape_str(a), em_shape_str(b), d, (long long)sa, (long long)sb);
        p->bshape[d] = sa == 1 ? sb : sa;
        p->count *= p->bshape[d];
    }
    if (!fits_blas_int(p->m) || !fits_blas_int(p->n) || !fits_blas_int(p->k))
        return em_error("matmul of %s and %s: a matrix dimension exceeds BLAS's 32-bit range",
                        em_shape_str(a), em_shape_str(b));
    p->a_shared = batch_strides(a, a_nb, p->nb, p->bshape, false, p->a_bs);
    batch_strides(a, a_nb, p->nb, p->bshape, true, p->ga_bs);
    p->b_shared = batch_strides(b, b_nb, p->nb, p->bshape, false, p->b_bs);
    batch_strides(b, b_nb, p->nb, p->bshape, true, p->gb_bs);

    int nd = 0;
    for (int d = 0; d < p->nb; d++)
        out_shape[nd++] = p->bshape[d];
    if (a->ndim > 1)
        out_shape[nd++] = p->m;
    if (b->ndim > 1)
        out_shape[nd++] = p->n;
    *out_ndim = nd;
    int64_t dense[EM_MAX_DIMS + 2];
    int64_t full[EM_MAX_DIMS + 2];
    for (int d = 0; d < p->nb; d++)
        full[d] = p->bshape[d];
    full[p->nb] = p->m;
    full[p->nb + 1] = p->n;
    em_dense_strides(p->nb + 2, full, dense);
    for (int d = 0; d < p->nb; d++)
        p->c_bs[d] = dense[d];

    /* One b for every batch and a contiguous stack of a's: the stack is one tall matrix,
     * so the whole batch is one GEMM (x [B, T, C] times a weight, typically). */
    bool b_single = true;
    for (int d = 0; d < p->nb; d++)
        b_single &= p->b_bs[d] == 0;
    if (p->count > 1 && b_single && a_nb == p->nb && a->ndim > 1 && em_is_contiguous(a) &&
        fits_blas_int(p->count * p->m)) {
        p->m *= p->count;
        p->count = 1;
        p->nb = 0;
        p->a_shared = p->b_shared = false;
    }
    return EM_OK;
}

static bool operand_readable(const em_tensor *t, bool as_left)
{
    int64_t rows, cols, rs, cs;
    blas_matrix l;
    matrix_dims(t, as_left, &rows, &cols, &rs, &cs);
    return blas_layout(rows, cols, rs, cs, &l);
}

static void matmul_backward(em_node *node)
{
    const matmul_plan *p = node->saved;
    em_tensor *a = node->in[0], *b = node->in[1];
    const float *g = node->out->grad;
    gemm_operand dc = {g, p->n, 1, p->c_bs};
    if (a->requires_grad) {
        /* dA_i += dC_i B_i^T; summed over the batches that share one a. */
        gemm_operand bt = {b->data, p->b_cs, p->b_rs, p->b_bs};
        gemm_batched(p->nb, p->bshape, p->count, p->m, p->k, p->n, &dc, &bt, 1.0f, a->grad, p->k,
                     p->ga_bs, !p->a_shared);
    }
    if (b->requires_grad) {
        /* dB_i += A_i^T dC_i */
        gemm_operand at = {a->data, p->a_cs, p->a_rs, p->a_bs};
        gemm_batched(p->nb, p->bshape, p->count, p->k, p->n, p->m, &at, &dc, 1.0f, b->grad, p->n,
                     p->gb_bs, !p->b_shared);
    }
}

em_tensor *em_matmul(em_tensor *a, em_tensor *b)
{
    if (!a || !b)
        return NULL;
    if (a->ndim >= 1 && !operand_readable(a, true))
        a = em_contiguous(a);
    if (b && b->ndim >= 1 && !operand_readable(b, false))
        b = em_contiguous(b);
    if (!a || !b)
        return NULL;
    matmul_plan plan;
    int out_ndim = 0;
    int64_t out_shape[EM_MAX_DIMS];
    if (plan_matmul(a, b, &plan, &out_ndim, out_shape) != EM_OK)
        return NULL;
    em_tensor *out = em_tensor_empty(NULL, out_ndim, out_shape);
    if (!out)
        return NULL;
    gemm_operand ga = {a->data, plan.a_rs, plan.a_cs, plan.a_bs};
    gemm_operand gb = {b->data, plan.b_rs, plan.b_cs, plan.b_bs};
    gemm_batched(plan.nb, plan.bshape, plan.count, plan.m, plan.n, plan.k, &ga, &gb, 0.0f, out->data,
                 plan.n, plan.c_bs, true);
    em_node *node = em_record("matmul", out, 2, (em_tensor *[]){a, b}, matmul_backward);
    if (node) {
        matmul_plan *saved = em_arena_alloc(em_step_arena(), sizeof *saved);
        if (!saved)
            return NULL;
        *saved = plan;
        node->saved = saved;
    }
    return out;
}

/* ---- em_linear ---------------------------------------------------------------------- */

/* Activations whose derivative follows from the output alone, so that the output can
 * overwrite the pre-activation. */
static bool derivative_from_output(em_activation act, float param)
{
    switch (act) {
    case EM_ACT_NONE:
    case EM_ACT_RELU:
    case EM_ACT_SIGMOID:
    case EM_ACT_TANH: return true;
    case EM_ACT_LEAKY_RELU: return param > 0.0f; /* sign(y) == sign(x) */
    default: return false;
    }
}

typedef struct linear_saved {
    int64_t rows, in, out;
    const float *pre;       /* pre-activation when the derivative needs it, else NULL */
} linear_saved;

/* Rows [r0, r1) of a rows x cols matrix, for splitting a pass over threads. */
static void thread_rows(int64_t rows, int64_t *r0, int64_t *r1)
{
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    *r0 = rows * t / nt;
    *r1 = rows * (t + 1) / nt;
}

/* Columns [c0, c1) in blocks of 16 floats (a cache line), so threads share no line. */
static void thread_cols(int64_t cols, int64_t *c0, int64_t *c1)
{
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t blocks = (cols + 15) / 16;
    *c0 = blocks * t / nt * 16;
    *c1 = blocks * (t + 1) / nt * 16;
    if (*c0 > cols)
        *c0 = cols;
    if (*c1 > cols)
        *c1 = cols;
}

/* g = dy * act'(pre) (written, not added) and, when colsum is given, colsum[j] =
 * sum_i g[i, j]. One pass over dy for the activations whose derivative follows from y;
 * columns split over threads so that each owns its sums. */
static void output_grad(em_activation act, float param, const float *pre, const float *y,
                        const float *dy, float *g, float *colsum, int64_t rows, int64_t cols)
{
    bool from_output = pre == NULL;
    if (!from_output) {
        /* GELU and SiLU: the shared helper (threaded itself) */
        em_activation_gradient(act, param, pre, y, dy, g, rows * cols);
        if (!colsum)
            return;
    }
    if (from_output && act == EM_ACT_NONE && !colsum)
        return;
#pragma omp parallel if (rows * cols >= PARALLEL_MIN_ELEMENTS)
    {
        int64_t c0, c1;
        thread_cols(cols, &c0, &c1);
        if (colsum && c1 > c0)
            memset(colsum + c0, 0, (size_t)(c1 - c0) * sizeof(float));
        for (int64_t r = 0; r < rows && c1 > c0; r++) {
            const float *yr = y + r * cols, *dyr = dy + r * cols;
            float *gr = g + r * cols;
            if (from_output) {
                switch (act) {
                case EM_ACT_NONE: break; /* g is dy itself */
                case EM_ACT_RELU:
                    for (int64_t j = c0; j < c1; j++)
                        gr[j] = yr[j] > 0.0f ? dyr[j] : 0.0f;
                    break;
                case EM_ACT_LEAKY_RELU:
                    for (int64_t j = c0; j < c1; j++)
                        gr[j] = yr[j] > 0.0f ? dyr[j] : param * dyr[j];
                    break;
                case EM_ACT_SIGMOID:
                    for (int64_t j = c0; j < c1; j++)
                        gr[j] = dyr[j] * yr[j] * (1.0f - yr[j]);
                    break;
                case EM_ACT_TANH:
                    for (int64_t j = c0; j < c1; j++)
                        gr[j] = dyr[j] * (1.0f - yr[j] * yr[j]);
                    break;
                default: break;
                }
            }
            if (colsum)
                for (int64_t j = c0; j < c1; j++)
                    colsum[j] += gr[j];
        }
    }
}

/* x as a logical [rows, in] matrix: leading dims fold into rows when x is contiguous;
 * a 2-D x may be any BLAS-readable view (a transpose included). */
static bool input_layout(const em_tensor *x, int64_t rows, int64_t in, blas_matrix *l)
{
    if (x->ndim > 2) {
        if (!em_is_contiguous(x))
            return false;
        l->trans = CblasNoTrans;
        l->ld = (int)in;
        return true;
    }
    int64_t rs = x->ndim == 2 ? x->stride[0] : 0;
    return blas_layout(rows, in, rs, x->stride[x->ndim - 1], l);
}

static void linear_backward(em_node *node)
{
    const linear_saved *s = node->saved;
    em_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2], *y = node->out;
    em_activation act = (em_activation)node->i[0];
    float param = node->f[0];
    int64_t rows = s->rows, in = s->in, out = s->out;
    em_arena *arena = em_step_arena();
    bool need_db = b && b->requires_grad;

    /* g = dY * act'(pre): the gradient at the GEMM's output. */
    const float *g = y->grad;
    float *colsum = need_db ? em_arena_alloc(arena, (size_t)out * sizeof(float)) : NULL;
    if (act != EM_ACT_NONE || need_db) {
        float *buf = act == EM_ACT_NONE ? (float *)y->grad
                                        : em_arena_alloc(arena, (size_t)(rows * out) * sizeof(float));
        if (!buf || (need_db && !colsum))
            return;
        output_grad(act, param, s->pre, y->data, y->grad, buf, colsum, rows, out);
        g = buf;
    }
    if (need_db) {
        float *db = b->grad;
        for (int64_t j = 0; j < out; j++)
            db[j] += colsum[j];
    }
    if (w->requires_grad) {
        /* dW [out, in] += g^T x */
        blas_matrix lx;
        if (input_layout(x, rows, in, &lx))
            cblas_sgemm(CblasRowMajor, CblasTrans, lx.trans, (int)out, (int)in, (int)rows, 1.0f, g,
                        (int)out, x->data, lx.ld, 1.0f, w->grad, (int)in);
    }
    if (x->requires_grad) {
        /* dX [rows, in] += g W; skipped for a network's input, which needs none. */
        blas_matrix lw;
        if (blas_layout(out, in, w->stride[0], w->stride[1], &lw))
            cblas_sgemm(CblasRowMajor, CblasNoTrans, lw.trans, (int)rows, (int)in, (int)out, 1.0f, g,
                        (int)out, w->data, lw.ld, 1.0f, x->grad, (int)in);
    }
}

/* pre = x·Wᵀ + bias, then y = act(pre), over all threads: the bias is broadcast first
 * so that the GEMM adds onto it (beta = 1). */
static void whole_linear(const float *x, const blas_matrix *lx, const float *w, const blas_matrix *lwt,
                         const float *bias, em_activation act, float act_param, int64_t rows,
                         int64_t in, int64_t out, float *pre, float *y)
{
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel if (rows * out >= PARALLEL_MIN_ELEMENTS)
        {
            int64_t r0, r1;
            thread_rows(rows, &r0, &r1);
            for (int64_t r = r0; r < r1; r++)
                memcpy(pre + r * out, bias, (size_t)out * sizeof(float));
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, lx->trans, lwt->trans, (int)rows, (int)out, (int)in, 1.0f, x, lx->ld,
                w, lwt->ld, beta, pre, (int)out);
    if (act != EM_ACT_NONE)
        em_activation_forward(act, act_param, pre, y, rows * out);
}

/* Weights (in·out) from which a batch smaller than the team shares the product out. */
#define SHARED_ROWS_MIN_WEIGHTS (1 << 16)

/* The same for fewer rows than threads (batch-1 inference), where the product is a
 * stream of the weights: each thread takes a share of the output features, i.e. of W's
 * rows, on one BLAS thread. Each core then reads only its own part of W, which stays in
 * that core's cache from one call to the next when it fits. */
static void shared_rows_linear(const float *x, const blas_matrix *lx, const float *w,
                               int64_t w_out_stride, const blas_matrix *lwt, const float *bias,
                               em_activation act, float act_param, int64_t rows, int64_t in,
                               int64_t out, float *pre, float *y)
{
#pragma omp parallel
    {
        int64_t c0, c1;
        thread_cols(out, &c0, &c1);
        if (c1 > c0) {
            float beta = 0.0f;
            if (bias) {
                for (int64_t r = 0; r < rows; r++)
                    memcpy(pre + r * out + c0, bias + c0, (size_t)(c1 - c0) * sizeof(float));
                beta = 1.0f;
            }
            if (rows == 1 && lwt->trans == CblasTrans)
                /* W's rows are contiguous: one matrix-vector product over them. */
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)(c1 - c0), (int)in, 1.0f, w + c0 * w_out_stride,
                            lwt->ld, x, 1, beta, pre + c0, 1);
            else
                cblas_sgemm(CblasRowMajor, lx->trans, lwt->trans, (int)rows, (int)(c1 - c0), (int)in, 1.0f,
                            x, lx->ld, w + c0 * w_out_stride, lwt->ld, beta, pre + c0, (int)out);
            if (act != EM_ACT_NONE)
                for (int64_t r = 0; r < rows; r++)
                    em_activation_forward(act, act_param, pre + r * out + c0, y + r * out + c0, c1 - c0);
        }
    }
}

em_tensor *em_linear(em_tensor *x, em_tensor *w, em_tensor *b, em_activation act, float act_param)
{
    if (!x || !w)
        return NULL;
    if ((int)act < 0 || act >= EM_ACT_COUNT)
        return em_error("linear: unknown activation %d", (int)act), NULL;
    if (w->ndim != 2)
        return em_error("linear: the weight must be [out_features, in_features], got %s",
                        em_shape_str(w)), NULL;
    int64_t out = w->shape[0], in = w->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in)
        return em_error("linear: input %s does not fit weight %s (in_features %lld vs %lld)",
                        em_shape_str(x), em_shape_str(w),
                        (long long)(x->ndim ? x->shape[x->ndim - 1] : 0), (long long)in), NULL;
    if (b && (b->ndim != 1 || b->shape[0] != out))
        return em_error("linear: bias %s does not fit weight %s (expected [%lld])", em_shape_str(b),
                        em_shape_str(w), (long long)out), NULL;
    int64_t rows = x->numel / in;
    if (!fits_blas_int(rows) || !fits_blas_int(in) || !fits_blas_int(out))
        return em_error("linear: input %s with weight %s exceeds BLAS's 32-bit range",
                        em_shape_str(x), em_shape_str(w)), NULL;

    blas_matrix lx, lwt;
    if (!input_layout(x, rows, in, &lx)) {
        x = em_contiguous(x);
        if (!x || !input_layout(x, rows, in, &lx))
            return NULL;
    }
    /* W^T as a logical [in, out] matrix. */
    if (!blas_layout(in, out, w->stride[1], w->stride[0], &lwt)) {
        w = em_contiguous(w);
        if (!w || !blas_layout(in, out, w->stride[1], w->stride[0], &lwt))
            return NULL;
    }

    int64_t out_shape[EM_MAX_DIMS];
    int out_ndim = x->ndim;
    for (int d = 0; d < x->ndim - 1; d++)
        out_shape[d] = x->shape[d];
    out_shape[out_ndim - 1] = out;
    em_tensor *y = em_tensor_empty(NULL, out_ndim, out_shape);
    if (!y)
        return NULL;

    bool recording = em_grad_enabled() && (x->requires_grad || w->requires_grad ||
                                          (b && b->requires_grad));
    bool keep_pre = recording && !derivative_from_output(act, act_param);
    float *pre = y->data;
    if (keep_pre) {
        pre = em_arena_alloc(em_step_arena(), (size_t)(rows * out) * sizeof(float));
        if (!pre)
            return NULL;
    }

    const float *bias = NULL;
    if (b) {
        bias = b->data;
        if (b->stride[0] != 1) {
            float *dense = em_arena_alloc(em_step_arena(), (size_t)out * sizeof(float));
            if (!dense)
                return NULL;
            em_copy_to(b, dense);
            bias = dense;
        }
    }
    if (rows < omp_get_max_threads() && in * out >= SHARED_ROWS_MIN_WEIGHTS && !omp_in_parallel())
        shared_rows_linear(x->data, &lx, w->data, w->stride[0], &lwt, bias, act, act_param, rows,
                           in, out, pre, y->data);
    else
        whole_linear(x->data, &lx, w->data, &lwt, bias, act, act_param, rows, in, out, pre, y->data);

    em_node *node = em_record("linear", y, 3, (em_tensor *[]){x, w, b}, linear_backward);
    if (node) {
        linear_saved *s = em_arena_alloc(em_step_arena(), sizeof *s);
        if (!s)
            return NULL;
        s->rows = rows, s->in = in, s->out = out;
        s->pre = keep_pre ? pre : NULL;
        node->saved = s;
        node->i[0] = act;
        node->f[0] = act_param;
    }
    return y;
}
