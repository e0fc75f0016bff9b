/* add, sub, mul, div with NumPy broadcasting, and their scalar forms. */
#include <string.h>

#include "ember/error.h"
#include "ember/ops.h"
#include "ops/strided.h"

typedef enum binop { OP_ADD, OP_SUB, OP_MUL, OP_DIV } binop;

static const char *const binop_names[] = {"add", "sub", "mul", "div"};

int em_broadcast_shape(const em_tensor *a, const em_tensor *b, int *ndim, int64_t *shape)
{
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < n; d++) {
        int da = d - (n - a->ndim), db = d - (n - b->ndim);
        int64_t sa = da >= 0 ? a->shape[da] : 1;
        int64_t sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return em_error("shapes %s and %s cannot be broadcast together (dimension %d: %lld vs %lld)",
                            em_shape_str(a), em_shape_str(b), d, (long long)sa, (long long)sb);
        shape[d] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return EM_OK;
}

typedef struct binary_ctx {
    binop op;
    float *out;
    const float *a, *b;
} binary_ctx;

static void binary_row(void *p, const int64_t *off, int64_t n, const int64_t *inner)
{
    binary_ctx *c = p;
    float *o = c->out + off[0];
    const float *a = c->a + off[1], *b = c->b + off[2];
    int64_t sa = inner[1], sb = inner[2];
    /* Output rows are dense; the common strides (1 or 0) get their own loops so that
     * the compiler vectorises them. */
#define BINARY_LOOP(expr)                                                                \
    do {                                                                                 \
        if (sa == 1 && sb == 1)                                                          \
            for (int64_t i = 0; i < n; i++) { float x = a[i], y = b[i]; o[i] = (expr); } \
        else if (sa == 1 && sb == 0)                                                     \
            for (int64_t i = 0; i < n; i++) { float x = a[i], y = b[0]; o[i] = (expr); } \
        else if (sa == 0 && sb == 1)                                                     \
            for (int64_t i = 0; i < n; i++) { float x = a[0], y = b[i]; o[i] = (expr); } \
        else                                                                             \
            for (int64_t i = 0; i < n; i++) {                                            \
                float x = a[i * sa], y = b[i * sb];                                      \
                o[i] = (expr);                                                           \
            }                                                                            \
    } while (0)
    switch (c->op) {
    case OP_ADD: BINARY_LOOP(x + y); break;
    case OP_SUB: BINARY_LOOP(x - y); break;
    case OP_MUL: BINARY_LOOP(x * y); break;
    case OP_DIV: BINARY_LOOP(x / y); break;
    }
#undef BINARY_LOOP
}

/* out (dense, shape) = a op b with a and b broadcast to shape. */
static void broadcast_apply(binop op, const em_tensor *a, const em_tensor *b, float *out, int ndim,
                            const int64_t *shape)
{
    int64_t so[EM_MAX_DIMS], sa[EM_MAX_DIMS], sb[EM_MAX_DIMS];
    em_dense_strides(ndim, shape, so);
    em_broadcast_strides(a, ndim, shape, sa);
    em_broadcast_strides(b, ndim, shape, sb);
    const int64_t *strides[3] = {so, sa, sb};
    em_strided it;
    em_strided_init(&it, ndim, shape, 3, strides);
    binary_ctx c = {op, out, a->data, b->data};
    em_strided_rows(&it, binary_row, &c);
}

typedef struct reduce_ctx {
    float *dst;
    const float *src;
} reduce_ctx;

static void reduce_row(void *p, const int64_t *off, int64_t n, const int64_t *inner)
{
    reduce_ctx *c = p;
    float *d = c->dst + off[0];
    const float *s = c->src + off[1];
    if (inner[0] == 0) {
        float acc = 0.0f;
        for (int64_t i = 0; i < n; i++)
            acc += s[i];
        d[0] += acc;
    } else {
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    }
}

void em_reduce_to_shape(const float *src, int from_ndim, const int64_t *from, float *dst,
                        int to_ndim, const int64_t *to)
{
    em_tensor target;
    memset(&target, 0, sizeof target);
    target.ndim = to_ndim;
    for (int d = 0; d < to_ndim; d++)
        target.shape[d] = to[d];
    em_dense_strides(to_ndim, to, target.stride);
    int64_t s_dst[EM_MAX_DIMS], s_src[EM_MAX_DIMS];
    em_broadcast_strides(&target, from_ndim, from, s_dst);
    em_dense_strides(from_ndim, from, s_src);
    const int64_t *strides[2] = {s_dst, s_src};
    em_strided it;
    em_strided_init(&it, from_ndim, from, 2, strides);
    reduce_ctx c = {dst, src};
    em_strided_rows(&it, reduce_row, &c);
}

/* Accumulates a dense out-shaped gradient into input t's gradient. */
static void reduce_into(const em_node *n, const float *g, em_tensor *t)
{
    em_reduce_to_shape(g, n->out->ndim, n->out->shape, t->grad, t->ndim, t->shape);
}

static void binary_backward(em_node *n)
{
    binop op = (binop)n->i[0];
    em_tensor *a = n->in[0], *b = n->in[1], *out = n->out;
    const float *g = out->grad;
    float *tmp = NULL;
    if (op == OP_MUL || op == OP_DIV) {
        tmp = em_arena_alloc(em_step_arena(), (size_t)out->numel * sizeof(float));
        if (!tmp)
            return;
    }
    em_tensor gt = *out;
    em_dense_strides(out->ndim, out->shape, gt.stride);
    gt.data = (float *)g;
    if (a->requires_grad) {
        switch (op) {
        case OP_ADD:
        case OP_SUB: reduce_into(n, g, a); break;
        case OP_MUL:
            broadcast_apply(OP_MUL, &gt, b, tmp, out->ndim, out->shape);
            reduce_into(n, tmp, a);
            break;
        case OP_DIV:
            broadcast_apply(OP_DIV, &gt, b, tmp, out->ndim, out->shape);
            reduce_into(n, tmp, a);
            break;
        }
    }
    if (b->requires_grad) {
        switch (op) {
        case OP_ADD: reduce_into(n, g, b); break;
        case OP_SUB: {
            float *neg = em_arena_alloc(em_step_arena(), (size_t)out->numel * sizeof(float));
            if (!neg)
                return;
            for (int64_t i = 0; i < out->numel; i++)
                neg[i] = -g[i];
            reduce_into(n, neg, b);
            break;
        }
        case OP_MUL:
            broadcast_apply(OP_MUL, &gt, a, tmp, out->ndim, out->shape);
            reduce_into(n, tmp, b);
            break;
        case OP_DIV:
            /* d(a/b)/db = -(a/b)/b = -out/b */
            broadcast_apply(OP_DIV, out, b, tmp, out->ndim, out->shape);
            for (int64_t i = 0; i < out->numel; i++)
                tmp[i] = -tmp[i] * g[i];
            reduce_into(n, tmp, b);
            break;
        }
    }
}

static em_tensor *binary(binop op, em_tensor *a, em_tensor *b)
{
    if (!a || !b)
        return NULL;
    int ndim;
    int64_t shape[EM_MAX_DIMS];
    if (em_broadcast_shape(a, b, &ndim, shape) != EM_OK)
        return em_error_prefix("%s: ", binop_names[op]), NULL;
    em_tensor *out = em_tensor_empty(NULL, ndim, shape);
    if (!out)
        return NULL;
    broadcast_apply(op, a, b, out->data, ndim, shape);
    em_node *n = em_record(binop_names[op], out, 2, (em_tensor *[]){a, b}, binary_backward);
    if (n)
        n->i[0] = op;
    return out;
}

em_tensor *em_add(em_tensor *a, em_tensor *b) { return binary(OP_ADD, a, b); }
em_tensor *em_sub(em_tensor *a, em_tensor *b) { return binary(OP_SUB, a, b); }
em_tensor *em_mul(em_tensor *a, em_tensor *b) { return binary(OP_MUL, a, b); }
em_tensor *em_div(em_tensor *a, em_tensor *b) { return binary(OP_DIV, a, b); }

/* Gradients are dense whatever the input's strides, so this is a plain loop. */
static void scalar_backward(em_node *n)
{
    em_tensor *a = n->in[0];
    const float *g = n->out->grad;
    float scale = n->f[0];
    for (int64_t i = 0; i < a->numel; i++)
        a->grad[i] += scale * g[i];
}

/* out = a * scale + shift */
static em_tensor *affine(const char *name, em_tensor *a, float scale, float shift)
{
    if (!a)
        return NULL;
    em_tensor *out = em_tensor_empty(NULL, a->ndim, a->shape);
    if (!out)
        return NULL;
    em_copy_to(a, out->data);
    for (int64_t i = 0; i < out->numel; i++)
        out->data[i] = out->data[i] * scale + shift;
    em_node *n = em_record(name, out, 1, &a, scalar_backward);
    if (n)
        n->f[0] = scale;
    return out;
}

em_tensor *em_add_scalar(em_tensor *a, float s) { return affine("add_scalar", a, 1.0f, s); }
em_tensor *em_mul_scalar(em_tensor *a, float s) { return affine("mul_scalar", a, s, 0.0f); }
