/* Ops of GPT-style transformers: layer normalisation, fused causal self-attention (from
 * separate q, k, v or from one fused qkv projection) and a key/value cache for
 * incremental inference. The differentiable ops follow the contract of ops.h: a new
 * tensor in the step arena, recorded on the tape when a gradient is needed, NULL with an
 * error naming the shapes when the inputs do not fit, NULL in gives NULL out. */
#ifndef EMBER_TRANSFORMER_OPS_H
#define EMBER_TRANSFORMER_OPS_H

#include <stdint.h>

#include "ember/arena.h"
#include "ember/ops.h"
#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- layer normalisation (src/ops/layernorm.c) ------------------------------------ */
/* PyTorch's layer_norm over the last dimension D of x [..., D]:
 * y = (x - mean) / sqrt(var + eps) · weight + bias, with the biased variance of each row.
 * weight and bias are [D] or NULL (NULL weight means 1, NULL bias means 0). eps >= 0. */
em_tensor *em_layer_norm(em_tensor *x, em_tensor *weight, em_tensor *bias, float eps);

/* ---- causal self-attention (src/ops/attention.c) ---------------------------------- */
/* GPT-2's masked multi-head attention: q, k, v [B, T, C] (or [T, C] for one sequence) with
 * C = n_heads · head_dim, head h taking channels [h·head_dim, (h+1)·head_dim). Per batch
 * and head, y = softmax(q·kᵀ/sqrt(head_dim) with position i seeing keys 0..i)·v; the heads'
 * outputs are merged back into y [B, T, C] (the shape of q). The softmax probabilities
 * [B, n_heads, T, T] are kept for backward when a gradient is needed (4·B·n_heads·T² bytes:
 * 4 MiB at B=16, 4 heads, T=128). Inputs may be views whose last dimension is dense (the
 * column slices of a fused projection, say); they are read in place. */
em_tensor *em_causal_attention(em_tensor *q, em_tensor *k, em_tensor *v, int n_heads);

/* The same from one fused projection qkv [B, T, 3C] (or [T, 3C]) whose channels are q, k
 * and v one after the other, as nn.Linear(C, 3C) then split(C, dim=-1) in GPT-2. Reads
 * q, k and v in place and writes their gradients straight into qkv's. Returns [B, T, C]. */
em_tensor *em_causal_attention_qkv(em_tensor *qkv, int n_heads);

/* Both with dropout on the attention probabilities, as GPT-2's attn_pdrop in training:
 * each probability is zeroed with probability `dropout` (in [0, 1]) and the others are
 * scaled by 1/(1-dropout) before they weight the values. Which ones are dropped is a
 * function of seed, the (batch, head) pair and the (query, key) position only, not of the
 * thread count or of a generator's state; a caller draws a fresh seed per call (the gpt
 * layer takes one from the model's generator). Dropout 0 is the plain op, bit for bit.
 * With a gradient the dropped probabilities are kept too (as much again as the
 * probabilities). */
em_tensor *em_causal_attention_dropout(em_tensor *q, em_tensor *k, em_tensor *v, int n_heads,
                                       float dropout, uint64_t seed);
em_tensor *em_causal_attention_qkv_dropout(em_tensor *qkv, int n_heads, float dropout, uint64_t seed);

/* ---- key/value cache for generation (src/ops/attention_cache.c) ------------------- */
/* One layer's keys and values of one sequence (batch 1) for up to max_len positions, so
 * that each new token attends to the cached ones instead of recomputing the prefix.
 * Inference only: nothing is recorded on the tape. The result for a position equals the
 * corresponding row of em_causal_attention over the whole sequence (same arithmetic, bit
 * for bit). A full cache refuses more positions: with learned absolute positions a
 * sliding window changes every key, so generation past the context clears the cache and
 * feeds the cropped context again as one prompt (em_kv_cache_step_qkv with T rows). */
typedef struct em_kv_cache em_kv_cache;

/* Allocated in `arena` (which must outlive the cache); C = n_heads · head_dim. */
em_kv_cache *em_kv_cache_new(em_arena *arena, int64_t max_len, int64_t channels, int n_heads);
/* Forgets every position (a new sequence). */
void em_kv_cache_clear(em_kv_cache *cache);
/* Positions held. */
int64_t em_kv_cache_length(const em_kv_cache *cache);
int64_t em_kv_cache_capacity(const em_kv_cache *cache);

/* Appends the keys and values of T new positions: k and v [T, C] or [1, T, C]. EM_ERR
 * (nothing appended) when they do not fit the cache's channels or remaining room. */
int em_kv_cache_append(em_kv_cache *cache, em_tensor *k, em_tensor *v);
/* Attention of the T newest positions' queries q ([T, C] or [1, T, C], T <= length) over
 * the cache, each seeing the positions up to its own. Returns y of q's shape in the step
 * arena. */
em_tensor *em_kv_cache_attend(em_kv_cache *cache, em_tensor *q);
/* Both from one fused projection qkv [T, 3C] or [1, T, 3C]: appends k and v, then attends
 * with q. Returns [T, C] or [1, T, C]. */
em_tensor *em_kv_cache_step_qkv(em_kv_cache *cache, em_tensor *qkv);

#ifdef __cplusplus
}
#endif
#endif
