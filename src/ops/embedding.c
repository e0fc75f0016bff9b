/* Embedding lookup: output rows are copies of weight rows, and backward adds each
 * output row's gradient back onto the row it came from (several positions may share an
 * id, so this is a scatter-add). */
#include <omp.h>
#include <string.h>

#include "ember/error.h"
#include "ember/rnn_ops.h"

/* Below this many gradient elements the scatter stays on one thread. */
#define SCATTER_PARALLEL_MIN (1 << 16)

typedef struct embedding_saved {
    const int32_t *ids;  /* a copy: the caller's buffer may be reused for the next batch */
    int64_t n_ids;
    int64_t padding_idx; /* < 0: none */
} embedding_saved;

static void embedding_backward(em_node *node)
{
    const embedding_saved *s = node->saved;
    em_tensor *weight = node->in[0];
    const int64_t dim = weight->shape[1];
    const float *dy = node->out->grad;
    float *dw = weight->grad;
    /* Threads split the columns, so rows shared by several ids never race. */
    bool parallel = s->n_ids * dim >= SCATTER_PARALLEL_MIN && dim >= 32;
#pragma omp parallel if (parallel)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t blocks = (dim + 15) / 16;
        int64_t c0 = blocks * t / nt * 16, c1 = blocks * (t + 1) / nt * 16;
        if (c1 > dim)
            c1 = dim;
        for (int64_t k = 0; k < s->n_ids && c0 < c1; k++) {
            int64_t id = s->ids[k];
            if (id == s->padding_idx)
                continue;
            float *dst = dw + id * dim;
            const float *src = dy + k * dim;
            for (int64_t j = c0; j < c1; j++)
                dst[j] += src[j];
        }
    }
}

/* "[2, 7]": the multi-index of flat position k in an ids array of the given shape. */
static const char *position_str(int64_t k, int ndim, const int64_t *shape)
{
    int64_t idx[EM_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = k % shape[d];
        k /= shape[d];
    }
    return em_dims_str(ndim, idx);
}

em_tensor *em_embedding(const int32_t *ids, int ids_ndim, const int64_t *ids_shape,
                        em_tensor *weight, int64_t padding_idx)
{
    if (!weight)
        return NULL;
    if (weight->ndim != 2)
        return em_error("embedding: the weight must be [num_embeddings, embedding_dim], got %s",
                        em_shape_str(weight)), NULL;
    if (ids_ndim < 0 || ids_ndim > EM_MAX_DIMS - 1)
        return em_error("embedding: ids have %d dimensions; 0 to %d are supported (the output "
                        "adds one)", ids_ndim, EM_MAX_DIMS - 1), NULL;
    if (ids_ndim > 0 && !ids_shape)
        return em_error("embedding: ids of %d dimensions need a shape", ids_ndim), NULL;
    if (ids_ndim > 0 && em_check_shape(ids_ndim, ids_shape) != EM_OK)
        return em_error_prefix("embedding: ids shape %s: ", em_dims_str(ids_ndim, ids_shape)), NULL;
    const int64_t vocab = weight->shape[0], dim = weight->shape[1];
    if (padding_idx >= vocab)
        return em_error("embedding: padding_idx %lld is outside the %lld embeddings of weight %s",
                        (long long)padding_idx, (long long)vocab, em_shape_str(weight)), NULL;
    const int64_t n = ids_ndim > 0 ? em_shape_numel(ids_ndim, ids_shape) : 1;
    if (!ids)
        return em_error("embedding: no ids given for shape %s", em_dims_str(ids_ndim, ids_shape)),
               NULL;
    for (int64_t k = 0; k < n; k++)
        if (ids[k] < 0 || ids[k] >= vocab)
            return em_error("embedding: id %d at position %s of ids %s is outside [0, %lld) "
                            "(weight %s)", (int)ids[k], position_str(k, ids_ndim, ids_shape),
                            em_dims_str(ids_ndim, ids_shape), (long long)vocab,
                            em_shape_str(weight)), NULL;

    int64_t out_shape[EM_MAX_DIMS];
    for (int d = 0; d < ids_ndim; d++)
        out_shape[d] = ids_shape[d];
    out_shape[ids_ndim] = dim;
    em_tensor *out = em_tensor_empty(NULL, ids_ndim + 1, out_shape);
    if (!out)
        return NULL;
    const int64_t rs = weight->stride[0], cs = weight->stride[1];
    for (int64_t k = 0; k < n; k++) {
        const float *row = weight->data + ids[k] * rs;
        float *dst = out->data + k * dim;
        if (cs == 1) {
            memcpy(dst, row, (size_t)dim * sizeof(float));
        } else {
            for (int64_t j = 0; j < dim; j++)
                dst[j] = row[j * cs];
        }
    }

    em_node *node = em_record("embedding", out, 1, &weight, embedding_backward);
    if (node) {
        embedding_saved *s = em_arena_alloc(em_step_arena(), sizeof *s);
        int32_t *copy = em_arena_alloc(em_step_arena(), (size_t)n * sizeof *copy);
        if (!s || !copy)
            return NULL;
        memcpy(copy, ids, (size_t)n * sizeof *copy);
        s->ids = copy;
        s->n_ids = n;
        s->padding_idx = padding_idx < 0 ? -1 : padding_idx;
        node->saved = s;
    }
    return out;
}
