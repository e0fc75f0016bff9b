#include "ember/tensor.h"

#include <inttypes.h>
#include <string.h>

#include "ember/autograd.h"
#include "ember/error.h"

int64_t em_shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

int em_check_shape(int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > EM_MAX_DIMS)
        return em_error("a tensor has %d dimensions; ember supports 0 to %d", ndim, EM_MAX_DIMS);
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0)
            return em_error("dimension %d of shape %s is %" PRId64 "; sizes must be positive", d,
                            em_dims_str(ndim, shape), shape[d]);
        if (n > INT64_MAX / 4 / shape[d])
            return em_error("shape %s has too many elements", em_dims_str(ndim, shape));
        n *= shape[d];
    }
    return EM_OK;
}

static em_arena *arena_or_step(em_arena *arena) { return arena ? arena : em_step_arena(); }

static em_tensor *header_new(em_arena *arena, int ndim, const int64_t *shape)
{
    if (em_check_shape(ndim, shape) != EM_OK)
        return NULL;
    em_tensor *t = em_arena_alloc(arena, sizeof *t);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    int64_t stride = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        t->shape[d] = shape[d];
        t->stride[d] = stride;
        stride *= shape[d];
    }
    t->numel = stride;
    return t;
}

em_tensor *em_tensor_empty(em_arena *arena, int ndim, const int64_t *shape)
{
    arena = arena_or_step(arena);
    em_tensor *t = header_new(arena, ndim, shape);
    if (!t)
        return NULL;
    t->data = em_arena_alloc(arena, (size_t)t->numel * sizeof(float));
    return t->data ? t : NULL;
}

em_tensor *em_tensor_zeros(em_arena *arena, int ndim, const int64_t *shape)
{
    arena = arena_or_step(arena);
    em_tensor *t = header_new(arena, ndim, shape);
    if (!t)
        return NULL;
    t->data = em_arena_calloc(arena, (size_t)t->numel, sizeof(float));
    return t->data ? t : NULL;
}

em_tensor *em_tensor_full(em_arena *arena, int ndim, const int64_t *shape, float value)
{
    em_tensor *t = em_tensor_empty(arena, ndim, shape);
    if (t)
        for (int64_t i = 0; i < t->numel; i++)
            t->data[i] = value;
    return t;
}

em_tensor *em_tensor_from(em_arena *arena, int ndim, const int64_t *shape, const float *values)
{
    em_tensor *t = em_tensor_empty(arena, ndim, shape);
    if (t)
        memcpy(t->data, values, (size_t)t->numel * sizeof(float));
    return t;
}

em_tensor *em_tensor_scalar(em_arena *arena, float value)
{
    return em_tensor_full(arena, 0, NULL, value);
}

em_tensor *em_param_new(em_arena *arena, int ndim, const int64_t *shape, const char *name)
{
    em_tensor *t = em_tensor_zeros(arena, ndim, shape);
    if (!t)
        return NULL;
    t->grad = em_arena_calloc(arena, (size_t)t->numel, sizeof(float));
    if (!t->grad)
        return NULL;
    t->requires_grad = true;
    t->is_param = true;
    t->name = name ? em_arena_strdup(arena, name) : NULL;
    return t;
}

em_tensor *em_tensor_zeros1(em_arena *arena, int64_t d0)
{
    return em_tensor_zeros(arena, 1, (int64_t[]){d0});
}
em_tensor *em_tensor_zeros2(em_arena *arena, int64_t d0, int64_t d1)
{
    return em_tensor_zeros(arena, 2, (int64_t[]){d0, d1});
}
em_tensor *em_tensor_zeros3(em_arena *arena, int64_t d0, int64_t d1, int64_t d2)
{
    return em_tensor_zeros(arena, 3, (int64_t[]){d0, d1, d2});
}
em_tensor *em_tensor_zeros4(em_arena *arena, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    return em_tensor_zeros(arena, 4, (int64_t[]){d0, d1, d2, d3});
}

em_tensor *em_tensor_wrap(em_arena *arena, int ndim, const int64_t *shape, float *data)
{
    em_tensor *t = header_new(arena_or_step(arena), ndim, shape);
    if (t)
        t->data = data;
    return t;
}

em_tensor *em_tensor_clone(em_arena *arena, const em_tensor *src)
{
    em_tensor *t = em_tensor_empty(arena, src->ndim, src->shape);
    if (t)
        em_copy_to(src, t->data);
    return t;
}

bool em_is_contiguous(const em_tensor *t)
{
    int64_t expected = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expected)
            return false;
        expected *= t->shape[d];
    }
    return true;
}

bool em_same_shape(const em_tensor *a, const em_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

int64_t em_offset(const em_tensor *t, const int64_t *idx)
{
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++)
        off += idx[d] * t->stride[d];
    return off;
}

#define SHAPE_BUFFERS 8
#define SHAPE_BUFFER_LEN 96

const char *em_dims_str(int ndim, const int64_t *shape)
{
    static _Thread_local char buffers[SHAPE_BUFFERS][SHAPE_BUFFER_LEN];
    static _Thread_local int next;
    char *buf = buffers[next];
    next = (next + 1) % SHAPE_BUFFERS;
    size_t len = 0;
    buf[len++] = '[';
    for (int d = 0; d < ndim && d < EM_MAX_DIMS && len < SHAPE_BUFFER_LEN - 24; d++)
        len += (size_t)snprintf(buf + len, SHAPE_BUFFER_LEN - len, d ? ", %" PRId64 : "%" PRId64,
                                shape[d]);
    snprintf(buf + len, SHAPE_BUFFER_LEN - len, "]");
    return buf;
}

const char *em_shape_str(const em_tensor *t)
{
    return t ? em_dims_str(t->ndim, t->shape) : "(null)";
}

float em_item(const em_tensor *t) { return t->data[0]; }

/* Calls visit(offset, i) for each element in row-major order, offsets by strides. */
#define FOR_EACH_OFFSET(t, body)                                                         \
    do {                                                                                 \
        int64_t idx_[EM_MAX_DIMS] = {0};                                                 \
        int64_t off_ = 0;                                                                \
        for (int64_t i_ = 0; i_ < (t)->numel; i_++) {                                    \
            body;                                                                        \
            for (int d_ = (t)->ndim - 1; d_ >= 0; d_--) {                                \
                off_ += (t)->stride[d_];                                                 \
                if (++idx_[d_] < (t)->shape[d_])                                         \
                    break;                                                               \
                off_ -= (t)->stride[d_] * (t)->shape[d_];                                \
                idx_[d_] = 0;                                                            \
            }                                                                            \
        }                                                                                \
    } while (0)

void em_copy_to(const em_tensor *t, float *dst)
{
    if (em_is_contiguous(t)) {
        memcpy(dst, t->data, (size_t)t->numel * sizeof(float));
        return;
    }
    FOR_EACH_OFFSET(t, dst[i_] = t->data[off_]);
}

void em_copy_from(em_tensor *t, const float *src)
{
    if (em_is_contiguous(t)) {
        memcpy(t->data, src, (size_t)t->numel * sizeof(float));
        return;
    }
    FOR_EACH_OFFSET(t, t->data[off_] = src[i_]);
}

void em_fill(em_tensor *t, float value)
{
    FOR_EACH_OFFSET(t, t->data[off_] = value);
}

static void print_level(FILE *out, const em_tensor *t, int dim, int64_t off, int max_items,
                        int indent)
{
    if (t->ndim == 0) {
        fprintf(out, "%.6g", t->data[0]);
        return;
    }
    fputc('[', out);
    int64_t n = t->shape[dim];
    for (int64_t i = 0; i < n; i++) {
        if (max_items > 0 && n > 2 * max_items && i == max_items) {
            fputs(dim == t->ndim - 1 ? "..., " : "...,\n", out);
            i = n - max_items;
        }
        int64_t o = off + i * t->stride[dim];
        if (dim == t->ndim - 1)
            fprintf(out, "%.6g", t->data[o]);
        else
            print_level(out, t, dim + 1, o, max_items, indent + 1);
        if (i + 1 < n) {
            if (dim == t->ndim - 1) {
                fputs(", ", out);
            } else {
                fputs(",\n", out);
                for (int k = 0; k <= indent; k++)
                    fputc(' ', out);
            }
        }
    }
    fputc(']', out);
}

void em_tensor_print(FILE *out, const em_tensor *t, const char *label, int max_items)
{
    if (label)
        fprintf(out, "%s ", label);
    fprintf(out, "%s%s\n", em_shape_str(t), t->requires_grad ? " requires_grad" : "");
    print_level(out, t, 0, 0, max_items, 0);
    fputc('\n', out);
}
