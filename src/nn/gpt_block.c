/* One GPT-2 block, pre-LayerNorm:
 *   x = x + dropout(attn.c_proj(causal_attention(attn.c_attn(ln_1(x)))))
 * (with dropout on the attention probabilities too, GPT-2's attn_pdrop, at the same rate)
 *   x = x + dropout(mlp.c_proj(gelu_tanh(mlp.c_fc(ln_2(x)))))
 * The positions of all sequences run as one matrix of rows through the projections; only
 * attention needs the [batch, steps, 3C] view to keep sequences apart. Generation runs
 * the same code with a key/value cache in place of attention over the whole sequence,
 * so that its arithmetic is the training forward's, row for row. */
#include "ember/cnn_ops.h"
#include "ember/transformer_ops.h"
#include "nn/gpt_internal.h"

em_tensor *gpt_block_forward(const gpt_block *b, em_tensor *x, int64_t batch, int64_t steps, int heads,
                             float dropout, em_rng *rng, em_kv_cache *cache, const gpt_block_packed *packed)
{
    if (!x)
        return NULL;
    const int64_t width = x->shape[1];
    const bool drop = dropout > 0.0f && rng;
    const gpt_block_packed none = {0};
    const gpt_block_packed *p = packed ? packed : &none;

    em_tensor *a = em_layer_norm(x, b->ln_1_w, b->ln_1_b, GPT_LN_EPS);
    em_tensor *qkv = gpt_conv1d(a, b->attn_w, b->attn_b, EM_ACT_NONE, NULL, p->attn);
    qkv = em_reshape(qkv, 3, (int64_t[]){batch, steps, 3 * width});
    em_tensor *att = cache  ? em_kv_cache_step_qkv(cache, qkv)
                     : drop ? em_causal_attention_qkv_dropout(qkv, heads, dropout, em_rng_next(rng))
                            : em_causal_attention_qkv(qkv, heads);
    att = em_reshape(att, 2, (int64_t[]){batch * steps, width});
    /* without dropout the residual add is the projection's own starting value */
    if (drop)
        x = em_add(x, em_dropout(gpt_conv1d(att, b->attn_proj_w, b->attn_proj_b, EM_ACT_NONE, NULL, p->attn_proj), dropout, true, rng));
    else
        x = gpt_conv1d(att, b->attn_proj_w, b->attn_proj_b, EM_ACT_NONE, x, p->attn_proj);

    em_tensor *m = em_layer_norm(x, b->ln_2_w, b->ln_2_b, GPT_LN_EPS);
    em_tensor *h = gpt_conv1d(m, b->fc_w, b->fc_b, EM_ACT_GELU_TANH, NULL, p->fc);
    if (drop)
        return em_add(x, em_dropout(gpt_conv1d(h, b->mlp_proj_w, b->mlp_proj_b, EM_ACT_NONE, NULL, p->mlp_proj), dropout, true, rng));
    return gpt_conv1d(h, b->mlp_proj_w, b->mlp_proj_b, EM_ACT_NONE, x, p->mlp_proj);
}
