/* flatten [START_DIM (1)] [END_DIM (-1)]: PyTorch's nn.Flatten, dims counted on the
 * batched tensor as PyTorch counts them ([N, 1, 28, 28] -> [N, 784]). The batch
 * dimension itself cannot be flattened. A view when the input is contiguous. */
#include "ember/error.h"
#include "nn/layer.h"

typedef struct flatten_config {
    int64_t start_dim; /* as given: may be negative */
    int64_t end_dim;
} flatten_config;

static int flatten_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    (void)kind;
    flatten_config *c = config;
    c->start_dim = 1;
    c->end_dim = -1;
    if (em_option_int(o, 0, "start_dim", -EM_MAX_DIMS, EM_MAX_DIMS, &c->start_dim) < 0 ||
        em_option_int(o, 1, "end_dim", -EM_MAX_DIMS, EM_MAX_DIMS, &c->end_dim) < 0)
        return EM_ERR;
    return EM_OK;
}

/* The dims in [*start, *end] of the batched tensor, or EM_ERR. */
static int resolve_dims(const flatten_config *c, const em_shape *in, int *start, int *end)
{
    int full = in->ndim + 1;
    int64_t s = c->start_dim < 0 ? c->start_dim + full : c->start_dim;
    int64_t e = c->end_dim < 0 ? c->end_dim + full : c->end_dim;
    if (s < 1 || e >= full || s > e)
        return em_error("start_dim=%lld end_dim=%lld do not select dimensions 1..%d of the batched input "
                        "[N, %s (dimension 0, the batch, stays)",
                        (long long)c->start_dim, (long long)c->end_dim, full - 1,
                        em_dims_str(in->ndim, in->dim) + 1);
    *start = (int)s;
    *end = (int)e;
    return EM_OK;
}

static int flatten_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    int start = 1, end = 1;
    if (resolve_dims(l->config, in, &start, &end) != EM_OK)
        return EM_ERR;
    /* Example dims are the batched dims minus one. */
    out->ndim = 0;
    for (int d = 0; d < start - 1; d++)
        out->dim[out->ndim++] = in->dim[d];
    int64_t merged = 1;
    for (int d = start - 1; d <= end - 1; d++)
        merged *= in->dim[d];
    out->dim[out->ndim++] = merged;
    for (int d = end; d < in->ndim; d++)
        out->dim[out->ndim++] = in->dim[d];
    return EM_OK;
}

static em_tensor *flatten_forward(em_layer *l, em_tensor *x, bool training)
{
    (void)training;
    int64_t shape[EM_MAX_DIMS];
    shape[0] = x->shape[0];
    for (int d = 0; d < l->out.ndim; d++)
        shape[d + 1] = l->out.dim[d];
    return em_reshape(x, l->out.ndim + 1, shape);
}

static void flatten_describe(const em_layer *l, char *buf, size_t size)
{
    const flatten_config *c = l->config;
    if (c->start_dim != 1 || c->end_dim != -1)
        em_text_append(buf, size, "start_dim=%lld end_dim=%lld", (long long)c->start_dim,
                       (long long)c->end_dim);
}

const em_layer_kind em_layer_flatten = {
    .name = "flatten",
    .usage = "flatten [START_DIM (1)] [END_DIM (-1)]",
    .config_size = sizeof(flatten_config),
    .parse = flatten_parse,
    .infer = flatten_infer,
    .forward = flatten_forward,
    .describe = flatten_describe,
};

int em_model_add_flatten(em_model *m)
{
    flatten_config c = {.start_dim = 1, .end_dim = -1};
    return em_model_add_layer(m, &em_layer_flatten, &c);
}
