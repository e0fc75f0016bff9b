/* Internal: the row-level pieces of one generated token's forward, for a decoder whose
 * threads share the token (src/nn/gpt_decode.c). Each computes exactly what the tensor
 * op it comes from computes for that row, so that the token's logits stay those of a
 * full recomputation bit for bit. */
#ifndef EMBER_DECODE_ROWS_H
#define EMBER_DECODE_ROWS_H

#include <stdint.h>

#include "ember/transformer_ops.h"

/* em_layer_norm of one row (w and b may be NULL). */
void em_layer_norm_row(const float *x, float *y, int64_t dim, float eps, const float *w, const float *b);

/* Floats of the probability tile that em_kv_cache_step_heads needs. */
int64_t em_kv_cache_tile_floats(const em_kv_cache *cache);
/* One new position, heads [h0, h1) only (threads sharing a token take some heads each):
 * stores that position's keys and values of those heads (qkv: one row q | k | v) at the
 * cache's current length, and writes the heads' attention outputs to their channels of
 * y. The length moves on only with em_kv_cache_advance, once every thread is done. The
 * caller checks that the cache has room. */
void em_kv_cache_step_heads(em_kv_cache *cache, const float *qkv, int h0, int h1, float *y, float *p);
void em_kv_cache_advance(em_kv_cache *cache, int64_t rows);

#endif
