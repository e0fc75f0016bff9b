/* Internal: the per-head kernels of causal attention, shared by the training op
 * (attention.c) and the key/value cache (attention_cache.c) so that both compute every
 * output with the same arithmetic in the same order.
 *
 * Matrices are row-major with a leading dimension (row stride, in floats); a head's
 * channels are contiguous. Keys (and, in backward, values) are read transposed, [hd][ld]
 * with key j's channel d at d·ld + j, so that score tiles vectorise along the keys; such
 * buffers have ld >= em_attention_padded(T) and hold finite values (zeros) past T.
 *
 * Rows are processed in tiles of EM_ATTENTION_TILE consecutive positions. Probability
 * (and score gradient) rows are written up to the end of their tile, with zeros past the
 * row's own position: row i of a tile starting at i0 holds columns 0..i0+tile-1 (and
 * scratch values up to the next multiple of 16, so their ld must be
 * em_attention_padded(T) or more). */
#ifndef EMBER_ATTENTION_KERNEL_H
#define EMBER_ATTENTION_KERNEL_H

#include <stdbool.h>
#include <stdint.h>

#define EM_ATTENTION_TILE 8

/* Dropout on the attention probabilities. Whether the probability of query i for key j
 * of one head is kept is a pure function of (seed, first + i·t + j), so forward needs no
 * random generator state per thread and backward no stored mask: the dropped
 * probabilities pd (kept probabilities scaled by 1/(1-p), zeros elsewhere) are kept beside
 * p, in the same layout. */
typedef struct em_attention_dropout {
    uint64_t seed;
    uint64_t first; /* counter of this head's query 0, key 0 */
    int64_t t;      /* counter step from one query to the next */
    uint64_t threshold; /* dropped when the 32 bits drawn fall below: p·2^32 */
    float scale;    /* 1/(1-p) */
    float *pd;      /* as p in em_attention_rows_forward, per tile or kept */
} em_attention_dropout;

/* The 32 bits drawn for one counter: the splitmix64 output function of
 * seed + (counter+1)·golden ratio, upper half. tests/fixtures/gen_transformer.py draws
 * the same. */
static inline uint32_t em_attention_dropout_bits(uint64_t seed, uint64_t counter)
{
    uint64_t z = seed + (counter + 1) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* T rounded up to the key-block width of the score tiles. */
int64_t em_attention_padded(int64_t t);

/* dst[d·ld_dst + j] = src[j·ld_src + d] for j < n, d < hd; zeros for n <= j < padded(n). */
void em_attention_transpose(const float *src, int64_t ld_src, int64_t n, int64_t hd, float *dst,
                            int64_t ld_dst);

/* Causal attention of query rows at positions first..first+n_rows-1 of one head: q points
 * at row `first`, kt holds keys 0..first+n_rows-1 transposed, v their value rows, y gets
 * the output rows (written, not accumulated). Probabilities go to p: when p_per_tile,
 * every tile reuses p[0 .. EM_ATTENTION_TILE·ldp) as scratch; otherwise p points at row
 * `first` of a kept [T][ldp] matrix (ldp >= em_attention_padded(T)). With dropout (drop
 * not NULL) y is the weighted sum by the dropped probabilities, which go to drop->pd. */
void em_attention_rows_forward(const float *q, int64_t ldq, int64_t first, int64_t n_rows,
                               const float *kt, int64_t ldkt, const float *v, int64_t ldv,
                               float *y, int64_t ldy, float *p, int64_t ldp, bool p_per_tile,
                               int64_t hd, float scale, const em_attention_dropout *drop);

/* Gradients of one head of length t given its kept probabilities p [t][ldp] (and, after
 * dropout, the dropped ones pd likewise; else NULL) and the output gradient dy. Each of
 * dq, dk, dv may be NULL (not needed); the others are ADDED to, or written (each of their
 * t x hd elements once) when accumulate is false. vt (hd x padded(t)) and ds (t x ldp)
 * are scratch. */
void em_attention_head_backward(const float *q, int64_t ldq, const float *k, int64_t ldk,
                                const float *v, int64_t ldv, const float *p, const float *pd,
                                int64_t ldp, const float *dy, int64_t ldy, float *dq, int64_t lddq, float *dk,
                                int64_t lddk, float *dv, int64_t lddv, int64_t t, int64_t hd,
                                float scale, float *vt, float *ds, bool accumulate);

#endif
