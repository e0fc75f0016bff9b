/* Views (reshape, transpose, permute, slice) share their input's data; contiguous,
 * expand and concat copy. Gradients are dense, so each backward maps the output's
 * dense gradient onto the right elements of the input's. */
#include <string.h>

#include "ember/error.h"
#include "ember/ops.h"
#include "ops/strided.h"

static em_tensor *view_header(const em_tensor *base, int ndim, const int64_t *shape,
                              const int64_t *stride, float *data)
{
    em_tensor *v = em_arena_alloc(em_step_arena(), sizeof *v);
    if (!v)
        return NULL;
    memset(v, 0, sizeof *v);
    v->ndim = ndim;
    v->numel = 1;
    for (int d = 0; d < ndim; d++) {
        v->shape[d] = shape[d];
        v->stride[d] = stride[d];
        v->numel *= shape[d];
    }
    v->data = data;
    v->name = base->name;
    return v;
}

/* Same elements in the same row-major order: gradients add one to one, and the input
 * takes the output's buffer as its own when it has none yet. */
static void same_order_backward(em_node *n)
{
    em_tensor *in = n->in[0];
    float *g = n->out->grad;
    if (em_grad_adopt(in, g))
        return;
    float *dst = em_grad_buffer(in);
    if (!dst)
        return;
    for (int64_t i = 0; i < n->out->numel; i++)
        dst[i] += g[i];
}

/* The node of a view or copy whose gradient is the output's, element for element. */
static void record_same_order(const char *op, em_tensor *out, em_tensor *in)
{
    em_node *node = em_record(op, out, 1, &in, same_order_backward);
    if (node)
        node->takes_input_grads = true;
}

em_tensor *em_contiguous(em_tensor *t)
{
    if (!t)
        return NULL;
    if (em_is_contiguous(t))
        return t;
    em_tensor *out = em_tensor_clone(NULL, t);
    record_same_order("contiguous", out, t);
    return out;
}

em_tensor *em_reshape(em_tensor *t, int ndim, const int64_t *shape_in)
{
    if (!t)
        return NULL;
    if (ndim < 0 || ndim > EM_MAX_DIMS)
        return em_error("reshape of %s to %d dimensions: ember supports 0 to %d", em_shape_str(t), ndim,
                        EM_MAX_DIMS), NULL;
    int64_t shape[EM_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < ndim; d++) {
        shape[d] = shape_in[d];
        if (shape[d] == -1) {
            if (infer >= 0)
                return em_error("reshape of %s to %s: only one dimension can be -1", em_shape_str(t),
                                em_dims_str(ndim, shape_in)), NULL;
            infer = d;
        } else if (shape[d] <= 0) {
            return em_error("reshape of %s to %s: sizes must be positive", em_shape_str(t),
                            em_dims_str(ndim, shape_in)), NULL;
        } else {
            known *= shape[d];
        }
    }
    if (infer >= 0) {
        if (known == 0 || t->numel % known != 0)
            return em_error("reshape of %s to %s: %lld elements do not divide", em_shape_str(t),
                            em_dims_str(ndim, shape_in), (long long)t->numel), NULL;
        shape[infer] = t->numel / known;
        known *= shape[infer];
    }
    if (known != t->numel)
        return em_error("reshape of %s (%lld elements) to %s (%lld elements)", em_shape_str(t),
                        (long long)t->numel, em_dims_str(ndim, shape), (long long)known), NULL;
    em_tensor *src = em_contiguous(t);
    if (!src)
        return NULL;
    int64_t stride[EM_MAX_DIMS];
    em_dense_strides(ndim, shape, stride);
    em_tensor *out = view_header(src, ndim, shape, stride, src->data);
    record_same_order("reshape", out, src);
    return out;
}

em_tensor *em_flatten(em_tensor *t, int start_dim)
{
    if (!t)
        return NULL;
    if (start_dim < 0)
        start_dim += t->ndim;
    if (start_dim < 0 || start_dim >= t->ndim)
        return em_error("flatten of %s from dimension %d: out of range", em_shape_str(t), start_dim),
               NULL;
    int64_t shape[EM_MAX_DIMS];
    for (int d = 0; d < start_dim; d++)
        shape[d] = t->shape[d];
    shape[start_dim] = -1;
    return em_reshape(t, start_dim + 1, shape);
}

/* Input gradient positions of the output's elements: the output's strides applied to
 * the input's dense gradient buffer. */
static void restride_backward(em_node *n)
{
    em_tensor *in = n->in[0], *out = n->out;
    int64_t stride[EM_MAX_DIMS];
    for (int d = 0; d < out->ndim; d++)
        stride[d] = n->i[d];
    em_accumulate_strided(in->grad + n->i[EM_MAX_DIMS], stride, out->ndim, out->shape, out->grad);
}

/* Records a view whose elements sit in in's dense gradient at `offset` + idx·grad_stride. */
static void record_restride(const char *op, em_tensor *in, em_tensor *out, const int64_t *grad_stride,
                            int64_t offset)
{
    em_node *n = em_record(op, out, 1, &in, restride_backward);
    if (!n)
        return;
    for (int d = 0; d < out->ndim; d++)
        n->i[d] = grad_stride[d];
    n->i[EM_MAX_DIMS] = offset;
}

static int normalize_dim(const em_tensor *t, int dim, const char *op)
{
    int d = dim < 0 ? dim + t->ndim : dim;
    if (d < 0 || d >= t->ndim)
        return em_error("%s: dimension %d is out of range for shape %s", op, dim, em_shape_str(t)),
               -1;
    return d;
}

em_tensor *em_permute(em_tensor *t, const int *perm)
{
    if (!t)
        return NULL;
    int64_t shape[EM_MAX_DIMS], stride[EM_MAX_DIMS], grad_stride[EM_MAX_DIMS], dense[EM_MAX_DIMS];
    bool seen[EM_MAX_DIMS] = {false};
    em_dense_strides(t->ndim, t->shape, dense);
    for (int d = 0; d < t->ndim; d++) {
        int p = perm[d];
        if (p < 0 || p >= t->ndim || seen[p])
            return em_error("permute of %s: the order is not a permutation of 0..%d", em_shape_str(t),
                            t->ndim - 1), NULL;
        seen[p] = true;
        shape[d] = t->shape[p];
        stride[d] = t->stride[p];
        grad_stride[d] = dense[p];
    }
    em_tensor *out = view_header(t, t->ndim, shape, stride, t->data);
    if (out)
        record_restride("permute", t, out, grad_stride, 0);
    return out;
}

em_tensor *em_transpose(em_tensor *t, int dim0, int dim1)
{
    if (!t)
        return NULL;
    int a = normalize_dim(t, dim0, "transpose"), b = normalize_dim(t, dim1, "transpose");
    if (a < 0 || b < 0)
        return NULL;
    int perm[EM_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++)
        perm[d] = d;
    perm[a] = b;
    perm[b] = a;
    return em_permute(t, perm);
}

em_tensor *em_slice(em_tensor *t, int dim, int64_t start, int64_t end, int64_t step)
{
    if (!t)
        return NULL;
    int d = normalize_dim(t, dim, "slice");
    if (d < 0)
        return NULL;
    int64_t size = t->shape[d];
    if (start < 0)
        start += size;
    if (end < 0)
        end += size;
    if (end > size)
        end = size;
    if (step <= 0 || start < 0 || start >= end)
        return em_error("slice of %s along dimension %d: range [%lld, %lld) step %lld selects nothing",
                        em_shape_str(t), d, (long long)start, (long long)end, (long long)step), NULL;
    int64_t shape[EM_MAX_DIMS], stride[EM_MAX_DIMS], dense[EM_MAX_DIMS];
    em_dense_strides(t->ndim, t->shape, dense);
    for (int k = 0; k < t->ndim; k++) {
        shape[k] = t->shape[k];
        stride[k] = t->stride[k];
    }
    shape[d] = (end - start + step - 1) / step;
    stride[d] = t->stride[d] * step;
    em_tensor *out = view_header(t, t->ndim, shape, stride, t->data + start * t->stride[d]);
    if (!out)
        return NULL;
    int64_t grad_stride[EM_MAX_DIMS];
    for (int k = 0; k < t->ndim; k++)
        grad_stride[k] = dense[k];
    grad_stride[d] = dense[d] * step;
    record_restride("slice", t, out, grad_stride, start * dense[d]);
    return out;
}

static void expand_backward(em_node *n)
{
    em_reduce_to_shape(n->out->grad, n->out->ndim, n->out->shape, n->in[0]->grad, n->in[0]->ndim,
                       n->in[0]->shape);
}

em_tensor *em_expand(em_tensor *t, int ndim, const int64_t *shape)
{
    if (!t)
        return NULL;
    em_tensor *out = em_tensor_zeros(NULL, ndim, shape);
    if (!out)
        return NULL;
    int bndim;
    int64_t bshape[EM_MAX_DIMS];
    if (em_broadcast_shape(out, t, &bndim, bshape) != EM_OK || bndim != ndim ||
        em_shape_numel(bndim, bshape) != out->numel)
        return em_error("expand of %s to %s: not a broadcast of it", em_shape_str(t),
                        em_dims_str(ndim, shape)), NULL;
    bool grad_was = em_set_grad_enabled(false);
    em_tensor *result = em_add(out, t);
    em_set_grad_enabled(grad_was);
    if (result)
        em_record("expand", result, 1, &t, expand_backward);
    return result;
}

static void concat_backward(em_node *n)
{
    em_tensor *out = n->out;
    int dim = (int)n->i[0];
    em_tensor *const *inputs = n->saved;
    int count = (int)n->i[1];
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < dim; d++)
        outer *= out->shape[d];
    for (int d = dim + 1; d < out->ndim; d++)
        inner *= out->shape[d];
    int64_t row = out->shape[dim] * inner, at = 0;
    for (int k = 0; k < count; k++) {
        em_tensor *t = inputs[k];
        int64_t chunk = t->shape[dim] * inner;
        if (t->requires_grad) {
            float *dst = em_grad_buffer(t);
            for (int64_t o = 0; o < outer; o++)
                for (int64_t i = 0; i < chunk; i++)
                    dst[o * chunk + i] += out->grad[o * row + at + i];
        }
        at += chunk;
    }
}

em_tensor *em_concat(em_tensor *const *ts, int count, int dim)
{
    if (count <= 0)
        return em_error("concat of no tensors"), NULL;
    for (int k = 0; k < count; k++)
        if (!ts[k])
            return NULL;
    int d = normalize_dim(ts[0], dim, "concat");
    if (d < 0)
        return NULL;
    int64_t shape[EM_MAX_DIMS];
    memcpy(shape, ts[0]->shape, sizeof shape);
    shape[d] = 0;
    for (int k = 0; k < count; k++) {
        bool fits = ts[k]->ndim == ts[0]->ndim;
        for (int j = 0; fits && j < ts[0]->ndim; j++)
            fits = j == d || ts[k]->shape[j] == ts[0]->shape[j];
        if (!fits)
            return em_error("concat along dimension %d: shapes %s and %s differ elsewhere", d,
                            em_shape_str(ts[0]), em_shape_str(ts[k])), NULL;
        shape[d] += ts[k]->shape[d];
    }
    em_tensor *out = em_tensor_empty(NULL, ts[0]->ndim, shape);
    em_tensor **saved = em_arena_alloc(em_step_arena(), (size_t)count * sizeof *saved);
    if (!out || !saved)
        return NULL;
    int64_t outer = 1, inner = 1;
    for (int j = 0; j < d; j++)
        outer *= shape[j];
    for (int j = d + 1; j < out->ndim; j++)
        inner *= shape[j];
    int64_t row = shape[d] * inner, at = 0;
    bool any_grad = false;
    for (int k = 0; k < count; k++) {
        em_tensor *t = em_contiguous(ts[k]);
        if (!t)
            return NULL;
        saved[k] = t;
        any_grad |= t->requires_grad;
        int64_t chunk = t->shape[d] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(out->data + o * row + at, t->data + o * chunk, (size_t)chunk * sizeof(float));
        at += chunk;
    }
    /* The tape node holds at most four inputs; concat keeps its list in `saved` and
     * records a representative input that requires a gradient so that the node runs. */
    if (any_grad) {
        em_tensor *rep = NULL;
        for (int k = 0; k < count && !rep; k++)
            if (saved[k]->requires_grad)
                rep = saved[k];
        em_node *n = em_record("concat", out, 1, &rep, concat_backward);
        if (n) {
            n->saved = saved;
            n->i[0] = d;
            n->i[1] = count;
        }
    }
    return out;
}
