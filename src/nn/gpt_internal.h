/* Internal: the tensors of a gpt layer, shared by the layer (gpt.c), its blocks
 * (gpt_block.c), the cached decoder (gpt_decode.c) and checkpoint loading
 * (gpt_import.c). */
#ifndef EMBER_NN_GPT_INTERNAL_H
#define EMBER_NN_GPT_INTERNAL_H

#include "ember/gpt.h"
#include "ember/transformer_ops.h"
#include "nn/layer.h"

/* GPT-2's LayerNorm epsilon (layer_norm_epsilon). */
#define GPT_LN_EPS 1e-5f

/* One block's parameters. Conv1D weights are [in, out] as in GPT-2's files. */
typedef struct gpt_block {
    em_tensor *ln_1_w, *ln_1_b;
    em_tensor *attn_w, *attn_b;     /* c_attn: [C, 3C], [3C] */
    em_tensor *attn_proj_w, *attn_proj_b; /* attn.c_proj: [C, C], [C] */
    em_tensor *ln_2_w, *ln_2_b;
    em_tensor *fc_w, *fc_b;         /* mlp.c_fc: [C, 4C], [4C] */
    em_tensor *mlp_proj_w, *mlp_proj_b; /* mlp.c_proj: [4C, C], [C] */
} gpt_block;

typedef struct gpt_layer {
    em_gpt_config cfg;
    em_tensor *wte, *wpe;
    gpt_block *blocks;              /* cfg.layers, in the model arena */
    em_tensor *ln_f_w, *ln_f_b;
    em_tensor *head;                /* [V, C]: wte when tied, lm_head.weight otherwise */
} gpt_layer;

/* The packed weights of one block and the head, for a decoder's repeated forwards. */
typedef struct gpt_block_packed {
    const float *attn, *attn_proj, *fc, *mlp_proj;
} gpt_block_packed;

/* The gpt layer of m (its first layer), NULL when there is none. */
gpt_layer *gpt_layer_of(const em_model *m);

/* wte[ids] + wpe[first + t] for `batch` sequences of `steps` ids: [batch · steps, C]. */
em_tensor *gpt_embed(const gpt_layer *g, const int32_t *ids, int64_t batch, int64_t steps, int64_t first);
/* ln_f then the head: h [rows, C] -> logits [rows, V] (without gradients row-independent,
 * from packed_head when given). */
em_tensor *gpt_logits(const gpt_layer *g, em_tensor *h, const float *packed_head);

/* x [rows, C] (one row per position, the rows of `batch` sequences of `steps`
 * positions) through block b: returns the new residual stream [rows, C]. dropout > 0
 * only while training (rng draws the masks). With a cache (batch 1, no gradients), the
 * rows are the next positions of the cached sequence and attend to it. */
em_tensor *gpt_block_forward(const gpt_block *b, em_tensor *x, int64_t batch, int64_t steps, int heads,
                             float dropout, em_rng *rng, em_kv_cache *cache, const gpt_block_packed *packed);

/* y = act(x · w + bias) + residual for x [rows, in] and a Conv1D weight w [in, out]
 * (GPT-2's layout); bias and residual [rows, out] may be NULL (src/nn/gpt_conv1d.c).
 * Without gradients the product is row-independent (each row's result the same whatever
 * the number of rows), from `packed` (gpt_pack of w) when given. */
em_tensor *gpt_conv1d(em_tensor *x, em_tensor *w, em_tensor *bias, em_activation act, em_tensor *residual,
                      const float *packed);
/* w [in, out] (or, transposed, [out, in] as the head is) packed for the row-independent
 * product, in arena. */
float *gpt_pack(em_arena *arena, const em_tensor *w, bool transposed);
/* y [rows, out] += x [rows, in] · W, W packed by gpt_pack; row-independent. */
void gpt_rows_product(const float *x, int64_t rows, int64_t in, const float *packed, int64_t out, float *y);


#endif
