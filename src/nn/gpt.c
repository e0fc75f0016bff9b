/* gpt vocab=V context=T layers=L heads=H width=C [tied=false] [dropout=0]: a GPT-2
 * language model as one layer (ember/gpt.h). It takes token ids ('input T', the ids
 * carried as float values as for an embedding) and gives logits [T, V] per example.
 * Its tensors are named as GPT-2's files name them, without the layer index. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ember/cnn_ops.h"
#include "ember/error.h"
#include "ember/rnn_ops.h"
#include "ember/transformer_ops.h"
#include "nn/gpt_internal.h"

/* Token ids travel as floats: exact up to 2^24. */
#define MAX_VOCAB (INT64_C(1) << 24)
#define MAX_SIZE (INT64_C(1) << 20)
#define INIT_STD 0.02f

static int gpt_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    (void)kind;
    gpt_layer *g = config;
    em_gpt_config *c = &g->cfg;
    struct {
        const char *key;
        int64_t max;
        int64_t *out;
    } sizes[] = {
        {"vocab|vocab_size", MAX_VOCAB, &c->vocab},   {"context|n_positions|n_ctx", MAX_SIZE, &c->context},
        {"layers|n_layer", MAX_SIZE, &c->layers},     {"heads|n_head", MAX_SIZE, &c->heads},
        {"width|n_embd", MAX_SIZE, &c->width},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int r = em_option_int(o, -1, sizes[i].key, 1, sizes[i].max, sizes[i].out);
        if (r <= 0)
            return r == 0 ? em_option_missing(o, sizes[i].key) : EM_ERR;
    }
    c->tied = false;
    c->dropout = 0.0f;
    if (em_option_bool(o, -1, "tied", &c->tied) < 0 || em_option_float(o, -1, "dropout", 0.0, 1.0, &c->dropout) < 0)
        return EM_ERR;
    return EM_OK;
}

static int check_config(const em_gpt_config *c)
{
    if (c->vocab < 1 || c->vocab > MAX_VOCAB)
        return em_error("vocab must be in 1..%lld, got %lld", (long long)MAX_VOCAB, (long long)c->vocab);
    if (c->context < 1 || c->layers < 0 || c->heads < 1 || c->width < 1 || c->context > MAX_SIZE ||
        c->layers > MAX_SIZE || c->width > MAX_SIZE)
        return em_error("context, heads and width must be at least 1 and layers at least 0 (at most %lld), "
                        "got context=%lld layers=%lld heads=%lld width=%lld",
                        (long long)MAX_SIZE, (long long)c->context, (long long)c->layers, (long long)c->heads,
                        (long long)c->width);
    if (c->width % c->heads != 0)
        return em_error("width %lld is not a multiple of heads %lld (each head takes width/heads channels)",
                        (long long)c->width, (long long)c->heads);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return em_error("dropout must lie in [0, 1), got %g", (double)c->dropout);
    return EM_OK;
}

static int gpt_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const gpt_layer *g = l->config;
    if (check_config(&g->cfg) != EM_OK)
        return EM_ERR;
    if (l->index != 0)
        return em_error("gpt takes token ids, so it must be the first layer (it is layer %d)", l->index);
    if (in->ndim != 1)
        return em_error("gpt takes a sequence of token ids per example ('input T', T ids), but the input is %s",
                        em_dims_str(in->ndim, in->dim));
    if (in->dim[0] > g->cfg.context)
        return em_error("the input's %lld positions exceed the model's context of %lld ('input' must be at most "
                        "context)",
                        (long long)in->dim[0], (long long)g->cfg.context);
    out->ndim = 2;
    out->dim[0] = in->dim[0];
    out->dim[1] = g->cfg.vocab;
    return EM_OK;
}

/* A parameter drawn from N(0, std), or filled with `fill` when std is 0. */
static em_tensor *param(em_layer *l, em_rng *rng, const char *name, int64_t rows, int64_t cols, float std,
                        float fill)
{
    em_tensor *t = cols ? em_layer_param(l, name, 2, (int64_t[]){rows, cols})
                        : em_layer_param(l, name, 1, (int64_t[]){rows});
    if (t) {
        if (std > 0.0f)
            em_init_normal(t, rng, 0.0f, std);
        else
            em_fill(t, fill);
    }
    return t;
}

/* Creation order is GPT-2's state_dict order. */
static int gpt_create(em_layer *l, em_rng *rng)
{
    gpt_layer *g = l->config;
    const em_gpt_config *c = &g->cfg;
    const int64_t C = c->width;
    /* GPT-2 scales the init of the projections into the residual stream by
     * 1/sqrt(2 · layers) (two per block), so the stream's variance stays put with depth. */
    const float proj_std = c->layers ? INIT_STD / sqrtf(2.0f * (float)c->layers) : INIT_STD;
    g->blocks = c->layers ? em_arena_calloc(em_model_arena(l->model), (size_t)c->layers, sizeof *g->blocks) : NULL;
    if (c->layers && !g->blocks)
        return EM_ERR;
    g->wte = param(l, rng, "wte.weight", c->vocab, C, INIT_STD, 0);
    g->wpe = param(l, rng, "wpe.weight", c->context, C, INIT_STD, 0);
    if (!g->wte || !g->wpe)
        return EM_ERR;
    for (int64_t i = 0; i < c->layers; i++) {
        gpt_block *b = &g->blocks[i];
        char name[96];
#define BLOCK_PARAM(field, suffix, rows, cols, std, fill)                                                   \
    do {                                                                                                    \
        snprintf(name, sizeof name, "h.%lld.%s", (long long)i, suffix);                                    \
        if (!(b->field = param(l, rng, name, rows, cols, std, fill)))                                       \
            return EM_ERR;                                                                                  \
    } while (0)
        BLOCK_PARAM(ln_1_w, "ln_1.weight", C, 0, 0.0f, 1.0f);
        BLOCK_PARAM(ln_1_b, "ln_1.bias", C, 0, 0.0f, 0.0f);
        BLOCK_PARAM(attn_w, "attn.c_attn.weight", C, 3 * C, INIT_STD, 0);
        BLOCK_PARAM(attn_b, "attn.c_attn.bias", 3 * C, 0, 0.0f, 0.0f);
        BLOCK_PARAM(attn_proj_w, "attn.c_proj.weight", C, C, proj_std, 0);
        BLOCK_PARAM(attn_proj_b, "attn.c_proj.bias", C, 0, 0.0f, 0.0f);
        BLOCK_PARAM(ln_2_w, "ln_2.weight", C, 0, 0.0f, 1.0f);
        BLOCK_PARAM(ln_2_b, "ln_2.bias", C, 0, 0.0f, 0.0f);
        BLOCK_PARAM(fc_w, "mlp.c_fc.weight", C, 4 * C, INIT_STD, 0);
        BLOCK_PARAM(fc_b, "mlp.c_fc.bias", 4 * C, 0, 0.0f, 0.0f);
        BLOCK_PARAM(mlp_proj_w, "mlp.c_proj.weight", 4 * C, C, proj_std, 0);
        BLOCK_PARAM(mlp_proj_b, "mlp.c_proj.bias", C, 0, 0.0f, 0.0f);
#undef BLOCK_PARAM
    }
    g->ln_f_w = param(l, rng, "ln_f.weight", C, 0, 0.0f, 1.0f);
    g->ln_f_b = param(l, rng, "ln_f.bias", C, 0, 0.0f, 0.0f);
    if (!g->ln_f_w || !g->ln_f_b)
        return EM_ERR;
    g->head = c->tied ? g->wte : param(l, rng, "lm_head.weight", c->vocab, C, INIT_STD, 0);
    return g->head ? EM_OK : EM_ERR;
}

/* The float-carried ids as int32 in the step arena, each checked. */
static int32_t *token_ids(const em_tensor *x, int64_t vocab)
{
    em_tensor *dense = em_contiguous((em_tensor *)x);
    int32_t *ids = dense ? em_arena_alloc(em_step_arena(), (size_t)x->numel * sizeof *ids) : NULL;
    if (!ids)
        return NULL;
    const int64_t steps = x->shape[1];
    for (int64_t i = 0; i < x->numel; i++) {
        float v = dense->data[i];
        if (!(v >= 0.0f && v < (float)vocab) || v != floorf(v)) {
            em_error("token id %g at [%lld, %lld] is %s (vocabulary of %lld)", (double)v, (long long)(i / steps),
                     (long long)(i % steps), v == floorf(v) ? "out of range" : "not an integer", (long long)vocab);
            return NULL;
        }
        ids[i] = (int32_t)v;
    }
    return ids;
}

em_tensor *gpt_embed(const gpt_layer *g, const int32_t *ids, int64_t batch, int64_t steps, int64_t first)
{
    const int64_t C = g->cfg.width;
    em_tensor *tok = em_embedding(ids, 1, (int64_t[]){batch * steps}, g->wte, -1);
    em_tensor *pos = em_slice(g->wpe, 0, first, first + steps, 1);
    if (!tok || !pos)
        return NULL;
    em_tensor *h = em_add(em_reshape(tok, 3, (int64_t[]){batch, steps, C}), pos);
    return em_reshape(h, 2, (int64_t[]){batch * steps, C});
}

em_tensor *gpt_logits(const gpt_layer *g, em_tensor *h, const float *packed_head)
{
    em_tensor *x = em_layer_norm(h, g->ln_f_w, g->ln_f_b, GPT_LN_EPS);
    if (!x || em_grad_enabled())
        return em_linear(x, g->head, NULL, EM_ACT_NONE, 0.0f);
    /* without gradients, row-independent as the blocks' products are */
    const int64_t rows = x->shape[0], C = g->cfg.width, V = g->cfg.vocab;
    em_tensor *logits = em_tensor_zeros(NULL, 2, (int64_t[]){rows, V});
    if (!packed_head)
        packed_head = gpt_pack(em_step_arena(), g->head, true);
    x = em_contiguous(x);
    if (!logits || !packed_head || !x)
        return NULL;
    gpt_rows_product(x->data, rows, C, packed_head, V, logits->data);
    return logits;
}

static em_tensor *gpt_forward(em_layer *l, em_tensor *x, bool training)
{
    const gpt_layer *g = l->config;
    const em_gpt_config *c = &g->cfg;
    if (x->ndim != 2) {
        em_error("expected token ids [batch, steps], got %s", em_shape_str(x));
        return NULL;
    }
    const int64_t batch = x->shape[0], steps = x->shape[1];
    if (steps > c->context) {
        em_error("a sequence of %lld tokens is longer than the model's context of %lld positions (wpe "
                 "has %lld rows): use sequences of at most %lld tokens",
                 (long long)steps, (long long)c->context, (long long)c->context, (long long)c->context);
        return NULL;
    }
    int32_t *ids = token_ids(x, c->vocab);
    if (!ids)
        return NULL;
    em_rng *rng = training && c->dropout > 0.0f ? em_model_rng(l->model) : NULL;

    em_tensor *h = gpt_embed(g, ids, batch, steps, 0);
    if (rng)
        h = em_dropout(h, c->dropout, true, rng);
    for (int64_t i = 0; i < c->layers && h; i++)
        h = gpt_block_forward(&g->blocks[i], h, batch, steps, (int)c->heads, rng ? c->dropout : 0.0f, rng, NULL,
                              NULL);
    return em_reshape(gpt_logits(g, h, NULL), 3, (int64_t[]){batch, steps, c->vocab});
}

void em_gpt_describe(const em_gpt_config *c, char *buf, size_t size)
{
    em_text_append(buf, size, "gpt vocab=%lld context=%lld layers=%lld heads=%lld width=%lld tied=%s",
                   (long long)c->vocab, (long long)c->context, (long long)c->layers, (long long)c->heads,
                   (long long)c->width, c->tied ? "true" : "false");
    if (c->dropout > 0.0f) {
        em_text_append(buf, size, " dropout=");
        em_text_append_float(buf, size, c->dropout);
    }
}

static void gpt_describe(const em_layer *l, char *buf, size_t size)
{
    const gpt_layer *g = l->config;
    char line[256] = "";
    em_gpt_describe(&g->cfg, line, sizeof line);
    em_text_append(buf, size, "%s", line + strlen("gpt "));
}

static void gpt_example_input(const em_layer *l, em_tensor *x, em_rng *rng)
{
    const gpt_layer *g = l->config;
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = (float)em_rng_below(rng, (uint64_t)g->cfg.vocab);
}

static int64_t gpt_vocab(const em_layer *l) { return ((const gpt_layer *)l->config)->cfg.vocab; }

const em_layer_kind em_layer_gpt = {
    .name = "gpt",
    .usage = "gpt vocab=V context=T layers=L heads=H width=C [tied=false] [dropout=0] (first layer: token ids in)",
    .config_size = sizeof(gpt_layer),
    .bare_names = true,
    .parse = gpt_parse,
    .infer = gpt_infer,
    .create = gpt_create,
    .forward = gpt_forward,
    .describe = gpt_describe,
    .example_input = gpt_example_input,
    .token_vocab = gpt_vocab,
};

gpt_layer *gpt_layer_of(const em_model *m)
{
    em_layer *first = em_model_layer_at(m, 0);
    return first && first->kind == &em_layer_gpt ? first->config : NULL;
}

em_gpt_config em_gpt_w4(void)
{
    return (em_gpt_config){.vocab = 256, .context = 128, .layers = 4, .heads = 4, .width = 128};
}

int em_model_add_gpt(em_model *m, const em_gpt_config *config)
{
    if (!config)
        return em_error("em_model_add_gpt: no configuration");
    gpt_layer g = {.cfg = *config};
    return em_model_add_layer(m, &em_layer_gpt, &g);
}

em_model *em_gpt_new(const em_gpt_config *config, uint64_t seed)
{
    if (!config) {
        em_error("em_gpt_new: no configuration");
        return NULL;
    }
    if (check_config(config) != EM_OK) {
        em_error_prefix("gpt: ");
        return NULL;
    }
    em_model *m = em_model_new(1, (int64_t[]){config->context}, seed);
    if (m && em_model_add_gpt(m, config) != EM_OK) {
        em_model_free(m);
        return NULL;
    }
    return m;
}

bool em_model_is_gpt(const em_model *m) { return gpt_layer_of(m) != NULL; }

int em_model_gpt_config(const em_model *m, em_gpt_config *config)
{
    const gpt_layer *g = gpt_layer_of(m);
    if (!g)
        return em_error("the model has no gpt layer (its first line after 'input' is not 'gpt ...')");
    if (config)
        *config = g->cfg;
    return EM_OK;
}
