/* Generation with a key/value cache: each layer keeps the keys and values of the
 * sequence so far (em_kv_cache), so a new token runs through the model as one row.
 * The blocks are the forward's own code (gpt_block_forward with a cache in place of
 * whole-sequence attention) and every product is row-independent without gradients
 * (gpt_conv1d), which is why the logits equal a full recomputation (em_forward without
 * gradients) bit for bit. The weights are packed for those products once, when the
 * decoder is made.
 *
 * When the context is full, learned absolute positions leave no cheap way on: sliding
 * the window by one position would move every cached key to another position embedding.
 * So the cache is cleared and the latest tokens are fed again as one prompt (a
 * "re-prefill"); keeping half the context, that costs context/2 positions once per
 * context/2 new tokens, about one extra position per token. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "ember/runtime.h"
#include "nn/gpt_internal.h"
#include "ops/decode_rows.h"
#include "ops/panel_gemm.h"

struct em_gpt_decoder {
    em_model *model;
    const gpt_layer *g;
    em_arena *arena;       /* caches and history: allocated once */
    em_kv_cache **caches;  /* one per block */
    gpt_block_packed *packed; /* each block's weights packed for the row product */
    const float *packed_head;
    int32_t *history;      /* the cached tokens, for re-prefills */
    int32_t *prompt;       /* a re-prefill's tokens */
    int64_t length, keep, refills;
};

em_gpt_decoder *em_gpt_decoder_new(em_model *m)
{
    const gpt_layer *g = gpt_layer_of(m);
    if (!g) {
        em_error("generation with a key/value cache needs a gpt model (the first layer is not 'gpt')");
        return NULL;
    }
    const em_gpt_config *c = &g->cfg;
    em_gpt_decoder *d = calloc(1, sizeof *d);
    em_arena *arena = d ? em_arena_create(0) : NULL;
    if (!arena) {
        free(d);
        em_error("gpt decoder: out of memory");
        return NULL;
    }
    d->model = m;
    d->g = g;
    d->arena = arena;
    d->keep = c->context / 2 > 0 ? c->context / 2 : 1;
    d->history = em_arena_alloc(arena, (size_t)c->context * sizeof *d->history);
    d->prompt = em_arena_alloc(arena, (size_t)c->context * sizeof *d->prompt);
    d->caches = em_arena_calloc(arena, (size_t)(c->layers ? c->layers : 1), sizeof *d->caches);
    d->packed = em_arena_calloc(arena, (size_t)(c->layers ? c->layers : 1), sizeof *d->packed);
    d->packed_head = gpt_pack(arena, g->head, true);
    bool ok = d->history && d->prompt && d->caches && d->packed && d->packed_head;
    for (int64_t i = 0; ok && i < c->layers; i++) {
        const gpt_block *b = &g->blocks[i];
        gpt_block_packed *p = &d->packed[i];
        ok = (d->caches[i] = em_kv_cache_new(arena, c->context, c->width, (int)c->heads)) != NULL &&
             (p->attn = gpt_pack(arena, b->attn_w, false)) && (p->attn_proj = gpt_pack(arena, b->attn_proj_w, false)) &&
             (p->fc = gpt_pack(arena, b->fc_w, false)) && (p->mlp_proj = gpt_pack(arena, b->mlp_proj_w, false));
    }
    if (!ok) {
        em_error_prefix("gpt decoder: ");
        em_gpt_decoder_free(d);
        return NULL;
    }
    return d;
}

void em_gpt_decoder_free(em_gpt_decoder *d)
{
    if (!d)
        return;
    em_arena_destroy(d->arena);
    free(d);
}

void em_gpt_decoder_reset(em_gpt_decoder *d)
{
    if (!d)
        return;
    for (int64_t i = 0; i < d->g->cfg.layers; i++)
        em_kv_cache_clear(d->caches[i]);
    d->length = 0;
}

int64_t em_gpt_decoder_length(const em_gpt_decoder *d) { return d ? d->length : 0; }
int64_t em_gpt_decoder_capacity(const em_gpt_decoder *d) { return d ? d->g->cfg.context : 0; }
int64_t em_gpt_decoder_refills(const em_gpt_decoder *d) { return d ? d->refills : 0; }

void em_gpt_decoder_set_keep(em_gpt_decoder *d, int64_t keep)
{
    if (!d)
        return;
    const int64_t context = d->g->cfg.context;
    d->keep = keep < 1 ? 1 : keep > context ? context : keep;
}

/* ---- one token on all threads ------------------------------------------------------
 * One row gives the products nothing to split by rows, and a parallel region per product
 * costs as much as the half of it that a second thread would take. So a single token
 * runs in one region: the threads take a share of the heads (their q, k, v columns and
 * their attention) and a share of every other product's output columns, and meet at a
 * barrier wherever the next stage reads the whole row. Each thread computes the
 * LayerNorms itself, so that only the products' outputs cross between cores. Every
 * element is computed by the same kernel as in the one-thread path (a row against a
 * panel of 16 columns, the same LayerNorm, attention and GELU code), so the logits are
 * unchanged bit for bit. */

/* Whether the token is shared: spinning workers (sleeping ones make each barrier a
 * wake-up: ten times slower than one thread), and shapes that split evenly (heads over
 * threads, each thread's columns in whole panels). */
static bool token_splits(const em_gpt_config *c, int64_t hidden, int nt)
{
    const int64_t hd = c->heads ? c->width / c->heads : 0;
    return nt > 1 && c->heads % nt == 0 && hd % EM_PANEL == 0 && c->width % (EM_PANEL * nt) == 0 &&
           hidden % (EM_PANEL * nt) == 0 && em_panel_gemm_enabled() && em_threads_spin();
}

/* c [n] (+)= a [k] · the columns [col, col + n) of a panel-packed [k, out] matrix. */
static void columns_product(const float *a, int64_t k, const float *packed, int64_t col, int64_t n, float *c)
{
    em_panel_gemm(1, n, k, a, k, packed + col / EM_PANEL * k * EM_PANEL, c, n);
}

/* The new residual row of one token (x holds its embedding; on return, the last block's
 * output), through every block on every thread. */
static int token_blocks(em_gpt_decoder *d, float *x, int nt)
{
    const gpt_layer *g = d->g;
    const em_gpt_config *c = &g->cfg;
    const int64_t C = c->width, F = g->blocks[0].fc_w->shape[1], hd = C / c->heads;
    const int64_t tile = em_kv_cache_tile_floats(d->caches[0]);
    /* shared: the new residual, q | k | v, attention outputs, the MLP's hidden row;
     * per thread: its LayerNorm output and probability tile */
    float *xn = em_arena_alloc(em_step_arena(), (size_t)(C + 3 * C + C + F) * sizeof(float));
    float *own = em_arena_alloc(em_step_arena(), (size_t)nt * (size_t)(C + tile) * sizeof(float));
    if (!xn || !own)
        return EM_ERR;
    float *qkv = xn + C, *att = qkv + 3 * C, *hidden = att + C;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        const int h0 = (int)(c->heads * t / nt), h1 = (int)(c->heads * (t + 1) / nt);
        const int64_t c0 = C * t / nt, c1 = C * (t + 1) / nt, f0 = F * t / nt, f1 = F * (t + 1) / nt;
        float *a = own + (size_t)t * (size_t)(C + tile), *p = a + C;
        for (int64_t l = 0; l < c->layers; l++) {
            const gpt_block *b = &g->blocks[l];
            const gpt_block_packed *pk = &d->packed[l];
            em_layer_norm_row(x, a, C, GPT_LN_EPS, b->ln_1_w->data, b->ln_1_b->data);
            for (int part = 0; part < 3; part++) { /* q, k and v of this thread's heads */
                const int64_t col = part * C + h0 * hd, n = (h1 - h0) * hd;
                memcpy(qkv + col, b->attn_b->data + col, (size_t)n * sizeof(float));
                columns_product(a, C, pk->attn, col, n, qkv + col);
            }
            em_kv_cache_step_heads(d->caches[l], qkv, h0, h1, att, p);
#pragma omp barrier
            for (int64_t j = c0; j < c1; j++)
                xn[j] = x[j] + b->attn_proj_b->data[j];
            columns_product(att, C, pk->attn_proj, c0, c1 - c0, xn + c0);
#pragma omp barrier
            em_layer_norm_row(xn, a, C, GPT_LN_EPS, b->ln_2_w->data, b->ln_2_b->data);
            memcpy(hidden + f0, b->fc_b->data + f0, (size_t)(f1 - f0) * sizeof(float));
            columns_product(a, C, pk->fc, f0, f1 - f0, hidden + f0);
            em_activation_forward(EM_ACT_GELU_TANH, 0.0f, hidden + f0, hidden + f0, f1 - f0);
#pragma omp barrier
            for (int64_t j = c0; j < c1; j++)
                x[j] = xn[j] + b->mlp_proj_b->data[j];
            columns_product(hidden, F, pk->mlp_proj, c0, c1 - c0, x + c0);
#pragma omp barrier
        }
    }
    for (int64_t l = 0; l < c->layers; l++)
        em_kv_cache_advance(d->caches[l], 1);
    return EM_OK;
}

/* The forward of n new tokens through the caches; the logits of the last or of all. */
static int run(em_gpt_decoder *d, const int32_t *ids, int64_t n, float *logits, bool all_positions)
{
    const gpt_layer *g = d->g;
    const em_gpt_config *c = &g->cfg;
    em_tensor *h = gpt_embed(g, ids, 1, n, d->length);
    const int nt = omp_get_max_threads();
    if (h && n == 1 && c->layers > 0 && !omp_in_parallel() && token_splits(c, g->blocks[0].fc_w->shape[1], nt)) {
        h = em_contiguous(h);
        em_tensor *x = h ? em_tensor_empty(NULL, 2, h->shape) : NULL; /* written in place, not h's storage */
        if (!x)
            return EM_ERR;
        memcpy(x->data, h->data, (size_t)x->numel * sizeof(float));
        if (token_blocks(d, x->data, nt) != EM_OK)
            return EM_ERR;
        h = x;
    } else {
        for (int64_t i = 0; i < c->layers && h; i++)
            h = gpt_block_forward(&g->blocks[i], h, 1, n, (int)c->heads, 0.0f, NULL, d->caches[i], &d->packed[i]);
    }
    if (h && !all_positions && n > 1)
        h = em_slice(h, 0, n - 1, n, 1);
    em_tensor *out = h ? gpt_logits(g, h, d->packed_head) : NULL;
    if (!out)
        return EM_ERR;
    em_copy_to(out, logits);
    return EM_OK;
}

int em_gpt_decoder_feed(em_gpt_decoder *d, const int32_t *ids, int64_t n, float *logits, bool all_positions)
{
    if (!d || !ids || !logits || n < 1)
        return em_error("gpt decoder: %s", !d ? "no decoder" : n < 1 ? "no tokens to feed" : "no ids or logits");
    const em_gpt_config *c = &d->g->cfg;
    for (int64_t k = 0; k < n; k++)
        if (ids[k] < 0 || ids[k] >= c->vocab)
            return em_error("gpt decoder: token id %d at position %lld is outside the vocabulary of %lld",
                            (int)ids[k], (long long)k, (long long)c->vocab);
    if (n > c->context - d->length)
        return em_error("gpt decoder: %lld more tokens do not fit the context of %lld positions (%lld held): a "
                        "prompt may have at most %lld tokens",
                        (long long)n, (long long)c->context, (long long)d->length, (long long)c->context);
    bool grad = em_set_grad_enabled(false);
    int status = run(d, ids, n, logits, all_positions);
    em_set_grad_enabled(grad);
    em_step_end();
    if (status != EM_OK) {
        /* Some caches may hold the new positions and others not: start over. */
        em_error_prefix("gpt decoder: ");
        em_gpt_decoder_reset(d);
        return EM_ERR;
    }
    memcpy(d->history + d->length, ids, (size_t)n * sizeof *ids);
    d->length += n;
    return EM_OK;
}

int em_gpt_decoder_push(em_gpt_decoder *d, int32_t id, float *logits)
{
    if (!d)
        return em_error("gpt decoder: no decoder");
    const int64_t context = d->g->cfg.context;
    if (d->length < context)
        return em_gpt_decoder_feed(d, &id, 1, logits, false);
    /* Full: re-prefill with the latest keep - 1 tokens and the new one. */
    const int64_t kept = d->keep - 1;
    memcpy(d->prompt, d->history + d->length - kept, (size_t)kept * sizeof *d->prompt);
    d->prompt[kept] = id;
    em_gpt_decoder_reset(d);
    d->refills++;
    return em_gpt_decoder_feed(d, d->prompt, kept + 1, logits, false);
}
