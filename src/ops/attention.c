/* Fused causal self-attention, GPT-2's masked multi-head attention in one op: per batch
 * and head, scores, causal softmax and the weighted sum of values are computed tile by
 * tile without materialising the T x T scores beyond what backward keeps.
 *
 * Forward keeps the softmax probabilities [B, heads, T, T] when a gradient is needed
 * (recomputing them in backward would cost another q·kᵀ product and T² exponentials to
 * save 4 MiB at the sizes GPTs train on here); without gradients only one tile of them
 * exists at a time. Backward runs per (batch, head):
 *   dP = dY·Vᵀ,  dS = P∘(dP - rowsum(P∘dP)),
 *   dQ = dS·K/√hd,  dK = dSᵀ·Q/√hd,  dV = Pᵀ·dY
 * with every product bounded by the causal mask (attention_kernel.c).
 *
 * Dropout on the probabilities (GPT-2's attn_pdrop) draws each keep decision from a
 * counter (attention_kernel.h), so the threads need no generators and backward no mask;
 * the dropped probabilities are kept beside P, and backward uses them for dV and in dS.
 *
 * Threads split the (batch, head) pairs; each pair writes disjoint columns of the
 * output and of the gradients, so no two threads touch the same element. The kernels are
 * hand-written rather than BLAS: for one W4 head (T=128, hd=32) OpenBLAS takes 12 µs for
 * q·kᵀ and 9 µs for P·v on one core, the causal tiles 5 µs each, since they skip the
 * masked half and pay no call overhead. */
#include <math.h>
#include <omp.h>

#include "ember/error.h"
#include "ember/transformer_ops.h"
#include "ops/attention_kernel.h"

/* Below this many multiply-adds per call, starting threads costs more than it saves. */
#define PARALLEL_MIN_MACS (1 << 18)

/* One of q, k, v: data of batch b, head h, position t, channel c at
 * data + b·batch_stride + t·row_stride + h·hd + c; its gradient is dense likewise. */
typedef struct attn_operand {
    const float *data;
    int64_t batch_stride, row_stride;
    float *grad; /* NULL when not needed */
    int64_t grad_batch_stride, grad_row_stride;
} attn_operand;

typedef struct attn_saved {
    attn_operand q, k, v;
    int64_t batch, t, channels, hd;
    int heads;
    float *probs; /* [batch][heads][t][ldp] */
    int64_t ldp;
    float drop_p;      /* 0: no dropout */
    uint64_t drop_seed;
    float *dropped;    /* with dropout and a gradient: the dropped probabilities, as probs */
} attn_saved;

/* Scratch per thread: transposed keys (forward) or values (backward), and a probability
 * tile (forward without saving) or the score gradients of one head (backward). */
typedef struct attn_scratch {
    float *base;
    int64_t per_thread;
    int threads;
} attn_scratch;

static int scratch_alloc(attn_scratch *s, int threads, int64_t per_thread)
{
    s->threads = threads;
    s->per_thread = per_thread;
    s->base = em_arena_alloc(em_step_arena(), (size_t)(threads * per_thread) * sizeof(float));
    return s->base ? EM_OK : EM_ERR;
}

static bool run_parallel(int64_t pairs, int64_t t, int64_t hd)
{
    return pairs > 1 && omp_get_max_threads() > 1 && pairs * t * t * hd >= PARALLEL_MIN_MACS;
}

/* The dropout of one (batch, head) pair; pd as p in em_attention_rows_forward. */
static em_attention_dropout pair_dropout(const attn_saved *a, int64_t pair, float *pd)
{
    return (em_attention_dropout){
        .seed = a->drop_seed,
        .first = (uint64_t)pair * (uint64_t)(a->t * a->t),
        .t = a->t,
        .threshold = (uint64_t)ldexp((double)a->drop_p, 32),
        .scale = a->drop_p < 1.0f ? 1.0f / (1.0f - a->drop_p) : 0.0f,
        .pd = pd,
    };
}

static void attention_forward(const attn_saved *a, float *y, float *probs)
{
    const int64_t pairs = a->batch * a->heads, t = a->t, hd = a->hd, c = a->channels;
    const int64_t ldk = em_attention_padded(t), ldp = a->ldp;
    const float scale = 1.0f / sqrtf((float)hd);
    const bool parallel = run_parallel(pairs, t, hd);
    const int threads = parallel ? omp_get_max_threads() : 1;
    const bool drop = a->drop_p > 0.0f;
    /* tiles of p, and of the dropped p, when they are not kept */
    const int64_t tiles = probs ? 0 : drop ? 2 : 1;
    attn_scratch s;
    if (scratch_alloc(&s, threads, hd * ldk + tiles * EM_ATTENTION_TILE * ldp) != EM_OK)
        return;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t pair = 0; pair < pairs; pair++) {
        const int64_t b = pair / a->heads, h = pair % a->heads;
        float *kt = s.base + omp_get_thread_num() * s.per_thread;
        float *p = probs ? probs + pair * t * ldp : kt + hd * ldk;
        const float *qh = a->q.data + b * a->q.batch_stride + h * hd;
        const float *kh = a->k.data + b * a->k.batch_stride + h * hd;
        const float *vh = a->v.data + b * a->v.batch_stride + h * hd;
        em_attention_dropout d;
        if (drop)
            d = pair_dropout(a, pair, probs ? a->dropped + pair * t * ldp : p + EM_ATTENTION_TILE * ldp);
        em_attention_transpose(kh, a->k.row_stride, t, hd, kt, ldk);
        em_attention_rows_forward(qh, a->q.row_stride, 0, t, kt, ldk, vh, a->v.row_stride,
                                  y + b * t * c + h * hd, c, p, ldp, probs == NULL, hd, scale,
                                  drop ? &d : NULL);
    }
}

static float *grad_at(const attn_operand *o, int64_t b, int64_t h, int64_t hd)
{
    return o->grad ? o->grad + b * o->grad_batch_stride + h * hd : NULL;
}

/* Adds the gradients to q, k and v's, or writes them when accumulate is false. */
static void attention_backward(const attn_saved *a, const float *dy, bool accumulate)
{
    const int64_t pairs = a->batch * a->heads, t = a->t, hd = a->hd, c = a->channels;
    const int64_t ldp = a->ldp;
    const float scale = 1.0f / sqrtf((float)hd);
    const bool parallel = run_parallel(pairs, t, hd);
    const int threads = parallel ? omp_get_max_threads() : 1;
    attn_scratch s;
    if (scratch_alloc(&s, threads, hd * em_attention_padded(t) + t * ldp) != EM_OK)
        return;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t pair = 0; pair < pairs; pair++) {
        const int64_t b = pair / a->heads, h = pair % a->heads;
        float *vt = s.base + omp_get_thread_num() * s.per_thread;
        float *ds = vt + hd * em_attention_padded(t);
        em_attention_head_backward(
            a->q.data + b * a->q.batch_stride + h * hd, a->q.row_stride,
            a->k.data + b * a->k.batch_stride + h * hd, a->k.row_stride,
            a->v.data + b * a->v.batch_stride + h * hd, a->v.row_stride,
            a->probs + pair * t * ldp, a->dropped ? a->dropped + pair * t * ldp : NULL, ldp,
            dy + b * t * c + h * hd, c,
            grad_at(&a->q, b, h, hd), a->q.grad_row_stride,
            grad_at(&a->k, b, h, hd), a->k.grad_row_stride,
            grad_at(&a->v, b, h, hd), a->v.grad_row_stride, t, hd, scale, vt, ds, accumulate);
    }
}

/* Gradient layout of an input [B, T, C'] (dense) whose channels `offset`.. are the operand. */
static void set_grad(attn_operand *o, em_tensor *x, float *grad, int64_t offset)
{
    if (!x->requires_grad) {
        o->grad = NULL;
        return;
    }
    const int64_t cols = x->shape[x->ndim - 1], rows = x->ndim == 3 ? x->shape[1] : x->shape[0];
    o->grad = grad + offset;
    o->grad_row_stride = cols;
    o->grad_batch_stride = rows * cols;
}

static void attention_node_backward(em_node *node)
{
    attn_saved *a = node->saved;
    bool fresh = false;
    if (node->n_in == 1) {
        /* fused q, k, v: the heads' gradients cover every element of qkv's exactly once, so
         * a fresh buffer is written rather than cleared and added to */
        em_tensor *qkv = node->in[0];
        float *g = em_grad_for_write(qkv, &fresh);
        if (!g)
            return;
        set_grad(&a->q, qkv, g, 0);
        set_grad(&a->k, qkv, g, a->channels);
        set_grad(&a->v, qkv, g, 2 * a->channels);
    } else {
        set_grad(&a->q, node->in[0], node->in[0]->grad, 0);
        set_grad(&a->k, node->in[1], node->in[1]->grad, 0);
        set_grad(&a->v, node->in[2], node->in[2]->grad, 0);
    }
    attention_backward(a, node->out->grad, !fresh);
}

/* Reads x [B, T, C'] or [T, C'] in place when its channels are dense (else a copy). */
static em_tensor *operand_view(em_tensor *x, attn_operand *o, int64_t offset)
{
    if (x->stride[x->ndim - 1] != 1 && x->shape[x->ndim - 1] > 1)
        x = em_contiguous(x);
    if (!x)
        return NULL;
    o->data = x->data + offset;
    o->row_stride = x->stride[x->ndim - 2];
    o->batch_stride = x->ndim == 3 ? x->stride[0] : 0;
    if (x->shape[x->ndim - 2] == 1)
        o->row_stride = x->shape[x->ndim - 1];
    o->grad = NULL;
    return x;
}

static int check_layout(const char *op, const em_tensor *x, const char *what, const char *cols,
                        int n_heads, int64_t channels)
{
    if (x->ndim != 2 && x->ndim != 3)
        return em_error("%s: %s must be [B, T, %s] or [T, %s], got %s", op, what, cols, cols,
                        em_shape_str(x));
    if (n_heads < 1)
        return em_error("%s: n_heads must be >= 1, got %d (%s %s)", op, n_heads, what,
                        em_shape_str(x));
    if (channels % n_heads != 0)
        return em_error("%s: %s %s has C = %lld channels, not divisible by %d heads", op, what,
                        em_shape_str(x), (long long)channels, n_heads);
    return EM_OK;
}

static em_tensor *attention_run(const char *op, em_tensor *const *inputs, int n_in,
                                attn_saved *a)
{
    const em_tensor *shape_of = inputs[0];
    const int64_t batch = shape_of->ndim == 3 ? shape_of->shape[0] : 1;
    const int64_t t = shape_of->shape[shape_of->ndim - 2];
    a->batch = batch;
    a->t = t;
    a->hd = a->channels / a->heads;
    int64_t out_shape[3] = {batch, t, a->channels};
    em_tensor *out = shape_of->ndim == 3 ? em_tensor_empty(NULL, 3, out_shape)
                                         : em_tensor_empty(NULL, 2, out_shape + 1);
    if (!out)
        return NULL;
    bool need_grad = false;
    if (em_grad_enabled())
        for (int i = 0; i < n_in; i++)
            need_grad |= inputs[i]->requires_grad;
    a->ldp = em_attention_padded(t);
    a->probs = a->dropped = NULL;
    if (need_grad) {
        const size_t bytes = (size_t)(batch * a->heads * t * a->ldp) * sizeof(float);
        a->probs = em_arena_alloc(em_step_arena(), bytes);
        if (a->drop_p > 0.0f)
            a->dropped = em_arena_alloc(em_step_arena(), bytes);
        if (!a->probs || (a->drop_p > 0.0f && !a->dropped))
            return NULL;
    }
    attention_forward(a, out->data, a->probs);
    em_node *node = em_record(op, out, n_in, inputs, attention_node_backward);
    if (node) {
        attn_saved *kept = em_arena_alloc(em_step_arena(), sizeof *kept);
        if (!kept)
            return NULL;
        *kept = *a;
        node->saved = kept;
        node->takes_input_grads = n_in == 1;
    }
    return out;
}

static int check_dropout(const char *op, float p, const em_tensor *x)
{
    if (!(p >= 0.0f && p <= 1.0f))
        return em_error("%s: dropout probability %g must lie in [0, 1] (input %s)", op, (double)p,
                        em_shape_str(x));
    return EM_OK;
}

em_tensor *em_causal_attention(em_tensor *q, em_tensor *k, em_tensor *v, int n_heads)
{
    return em_causal_attention_dropout(q, k, v, n_heads, 0.0f, 0);
}

em_tensor *em_causal_attention_qkv(em_tensor *qkv, int n_heads)
{
    return em_causal_attention_qkv_dropout(qkv, n_heads, 0.0f, 0);
}

em_tensor *em_causal_attention_dropout(em_tensor *q, em_tensor *k, em_tensor *v, int n_heads,
                                       float dropout, uint64_t seed)
{
    static const char op[] = "causal_attention";
    if (!q || !k || !v)
        return NULL;
    if (check_dropout(op, dropout, q) != EM_OK)
        return NULL;
    if (check_layout(op, q, "q", "C", n_heads, q->shape[q->ndim - 1]) != EM_OK)
        return NULL;
    if (!em_same_shape(q, k) || !em_same_shape(q, v))
        return em_error("%s: q, k and v must have the same shape, got q %s, k %s, v %s", op,
                        em_shape_str(q), em_shape_str(k), em_shape_str(v)), NULL;
    attn_saved a = {.heads = n_heads, .channels = q->shape[q->ndim - 1], .drop_p = dropout, .drop_seed = seed};
    q = operand_view(q, &a.q, 0);
    k = operand_view(k, &a.k, 0);
    v = operand_view(v, &a.v, 0);
    if (!q || !k || !v)
        return NULL;
    return attention_run(op, (em_tensor *[]){q, k, v}, 3, &a);
}

em_tensor *em_causal_attention_qkv_dropout(em_tensor *qkv, int n_heads, float dropout, uint64_t seed)
{
    static const char op[] = "causal_attention_qkv";
    if (!qkv)
        return NULL;
    if (check_dropout(op, dropout, qkv) != EM_OK)
        return NULL;
    const int64_t cols = qkv->ndim >= 1 ? qkv->shape[qkv->ndim - 1] : 0;
    if (qkv->ndim == 2 || qkv->ndim == 3) {
        if (cols % 3 != 0)
            return em_error("%s: qkv %s must have 3C channels (q, k, v), but %lld is not a "
                            "multiple of 3", op, em_shape_str(qkv), (long long)cols), NULL;
    }
    if (check_layout(op, qkv, "qkv", "3C", n_heads, cols / 3) != EM_OK)
        return NULL;
    attn_saved a = {.heads = n_heads, .channels = cols / 3, .drop_p = dropout, .drop_seed = seed};
    qkv = operand_view(qkv, &a.q, 0);
    if (!qkv)
        return NULL;
    a.k = a.q;
    a.v = a.q;
    a.k.data += a.channels;
    a.v.data += 2 * a.channels;
    return attention_run(op, &qkv, 1, &a);
}
