/* embedding NUM_EMBEDDINGS EMBEDDING_DIM [padding_idx=N]: PyTorch's nn.Embedding, weight
 * [V, D] drawn from N(0, 1) with the padding row zeroed. It is the first layer of a
 * model that takes token ids: an example is a sequence of T ids ('input T'), carried
 * through em_forward as float values (exact up to 2^24, hence the vocabulary's bound)
 * and turned back into ids here; the output is [T, D] per example. */
#include <math.h>
#include <stdint.h>

#include "ember/error.h"
#include "ember/rnn_ops.h"
#include "nn/embedding_layer.h"

#define MAX_VOCAB (INT64_C(1) << 24)

typedef struct embedding_config {
    int64_t num_embeddings, embedding_dim;
    bool has_padding;
    int64_t padding_idx; /* as given: negative counts from the end, as in PyTorch */
    em_tensor *weight;
} embedding_config;

static int embedding_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    (void)kind;
    embedding_config *c = config;
    int r = em_option_int(o, 0, "num_embeddings|vocab", 1, MAX_VOCAB, &c->num_embeddings);
    if (r <= 0)
        return r == 0 ? em_option_missing(o, "num_embeddings") : EM_ERR;
    r = em_option_int(o, 1, "embedding_dim|dim", 1, INT32_MAX, &c->embedding_dim);
    if (r <= 0)
        return r == 0 ? em_option_missing(o, "embedding_dim") : EM_ERR;
    r = em_option_int(o, -1, "padding_idx", -MAX_VOCAB, MAX_VOCAB, &c->padding_idx);
    if (r < 0)
        return EM_ERR;
    c->has_padding = r == 1;
    return EM_OK;
}

/* The padding row in [0, V), or -1 for none. */
static int64_t padding_row(const embedding_config *c)
{
    if (!c->has_padding)
        return -1;
    return c->padding_idx < 0 ? c->num_embeddings + c->padding_idx : c->padding_idx;
}

static int embedding_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const embedding_config *c = l->config;
    if (c->num_embeddings < 1 || c->num_embeddings > MAX_VOCAB || c->embedding_dim < 1)
        return em_error("num_embeddings must be in 1..%lld and embedding_dim at least 1, got %lld and %lld",
                        (long long)MAX_VOCAB, (long long)c->num_embeddings, (long long)c->embedding_dim);
    if (c->has_padding && (c->padding_idx >= c->num_embeddings || c->padding_idx < -c->num_embeddings))
        return em_error("padding_idx must be within num_embeddings (%lld), got %lld",
                        (long long)c->num_embeddings, (long long)c->padding_idx);
    if (l->index != 0)
        return em_error("an embedding takes token ids, so it must be the first layer (it is layer %d)", l->index);
    if (in->ndim != 1)
        return em_error("an embedding takes a sequence of token ids per example ('input T', T ids), but the "
                        "input is %s",
                        em_dims_str(in->ndim, in->dim));
    out->ndim = 2;
    out->dim[0] = in->dim[0];
    out->dim[1] = c->embedding_dim;
    return EM_OK;
}

static int embedding_create(em_layer *l, em_rng *rng)
{
    embedding_config *c = l->config;
    c->weight = em_layer_param(l, "weight", 2, (int64_t[]){c->num_embeddings, c->embedding_dim});
    if (!c->weight)
        return EM_ERR;
    em_init_normal(c->weight, rng, 0.0f, 1.0f);
    int64_t pad = padding_row(c);
    for (int64_t j = 0; pad >= 0 && j < c->embedding_dim; j++)
        c->weight->data[pad * c->embedding_dim + j] = 0.0f;
    return EM_OK;
}

int32_t *em_embedding_layer_ids(const em_layer *l, em_tensor *x)
{
    const embedding_config *c = l->config;
    if (x->ndim != 2)
        return NULL;
    em_tensor *dense = em_contiguous(x);
    int32_t *ids = dense ? em_arena_alloc(em_step_arena(), (size_t)x->numel * sizeof *ids) : NULL;
    if (!ids)
        return NULL;
    int64_t steps = x->shape[1];
    for (int64_t i = 0; i < x->numel; i++) {
        float v = dense->data[i];
        if (!(v >= 0.0f && v < (float)c->num_embeddings) || v != floorf(v)) {
            em_error("token id %g at [%lld, %lld] is %s (vocabulary of %lld)", (double)v, (long long)(i / steps),
                     (long long)(i % steps), v == floorf(v) ? "out of range" : "not an integer",
                     (long long)c->num_embeddings);
            return NULL;
        }
        ids[i] = (int32_t)v;
    }
    return ids;
}

em_tensor *em_embedding_layer_weight(const em_layer *l, int64_t *padding_idx)
{
    const embedding_config *c = l->config;
    *padding_idx = padding_row(c);
    return c->weight;
}

static em_tensor *embedding_forward(em_layer *l, em_tensor *x, bool training)
{
    (void)training;
    const embedding_config *c = l->config;
    int32_t *ids = em_embedding_layer_ids(l, x);
    return ids ? em_embedding(ids, 2, x->shape, c->weight, padding_row(c)) : NULL;
}

static void embedding_describe(const em_layer *l, char *buf, size_t size)
{
    const embedding_config *c = l->config;
    em_text_append(buf, size, "%lld %lld", (long long)c->num_embeddings, (long long)c->embedding_dim);
    if (c->has_padding)
        em_text_append(buf, size, " padding_idx=%lld", (long long)c->padding_idx);
}

static void embedding_example_input(const em_layer *l, em_tensor *x, em_rng *rng)
{
    const embedding_config *c = l->config;
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = (float)em_rng_below(rng, (uint64_t)c->num_embeddings);
}

static int64_t embedding_vocab(const em_layer *l) { return ((const embedding_config *)l->config)->num_embeddings; }

const em_layer_kind em_layer_embedding = {
    .name = "embedding",
    .usage = "embedding NUM_EMBEDDINGS EMBEDDING_DIM [padding_idx=N] (first layer: token ids in)",
    .config_size = sizeof(embedding_config),
    .parse = embedding_parse,
    .infer = embedding_infer,
    .create = embedding_create,
    .forward = embedding_forward,
    .describe = embedding_describe,
    .example_input = embedding_example_input,
    .token_vocab = embedding_vocab,
};

bool em_layer_is_embedding(const em_layer *l) { return l && l->kind == &em_layer_embedding; }
