/* Per-head kernels of causal attention (see attention_kernel.h).
 *
 * Every product here is a register tile of EM_ATTENTION_TILE rows by one block of 32
 * columns, accumulated in a small local array that the compiler keeps in vector
 * registers: scores (keys along the vector lanes, reading transposed keys) and weighted
 * sums of rows (channels along the lanes, the weight broadcast). A tile whose last rows
 * lie past the end repeats its last real row, so the loops keep fixed trip counts; the
 * repeated results are dropped. Causality bounds every loop: a tile of rows starting at
 * i0 reads keys 0..i0+tile-1 only, which skips half of each T x T product.
 *
 * Each output element is one sequential chain of fused multiply-adds, whatever the tile
 * it was computed in; this is what lets the key/value cache reproduce the full forward
 * exactly. */
#include <string.h>

#include "ops/attention_kernel.h"
#include "ops/fastmath.h"

#define ROWS EM_ATTENTION_TILE
#define BLOCK 32 /* columns per register tile: keys of a score tile, channels of a sum */
#define LANES 16 /* independent partial sums in row reductions */

int64_t em_attention_padded(int64_t t) { return (t + BLOCK - 1) / BLOCK * BLOCK; }

void em_attention_transpose(const float *src, int64_t ld_src, int64_t n, int64_t hd, float *dst,
                            int64_t ld_dst)
{
    const int64_t padded = em_attention_padded(n);
    for (int64_t d = 0; d < hd; d++) {
        float *row = dst + d * ld_dst;
        for (int64_t j = 0; j < n; j++)
            row[j] = src[j * ld_src + d];
        for (int64_t j = n; j < padded; j++)
            row[j] = 0.0f;
    }
}

/* s[r][j] = scale · Σ_d a[r][d]·bt[d][j] for rows r < nr and columns j < n. */
static void tile_scores(const float *a, int64_t lda, int nr, const float *bt, int64_t ldb, int64_t n,
                        int64_t hd, float scale, float *s, int64_t lds)
{
    const float *rows[ROWS];
    for (int r = 0; r < ROWS; r++)
        rows[r] = a + (r < nr ? r : nr - 1) * lda;
    for (int64_t j0 = 0; j0 < n; j0 += BLOCK) {
        float acc[ROWS][BLOCK] = {{0}};
        const float *b = bt + j0;
        for (int64_t d = 0; d < hd; d++) {
            const float *bd = b + d * ldb;
            for (int r = 0; r < ROWS; r++) {
                const float ad = rows[r][d];
                for (int l = 0; l < BLOCK; l++)
                    acc[r][l] += ad * bd[l];
            }
        }
        const int64_t w = n - j0 < BLOCK ? n - j0 : BLOCK;
        for (int r = 0; r < nr; r++)
            for (int64_t l = 0; l < w; l++)
                s[r * lds + j0 + l] = acc[r][l] * scale;
    }
}

/* out[r][:] (+)= Σ_{j<n} w[r][j]·src[j][:] for rows r < nr, over hd channels. */
static void tile_weighted_rows(const float *w, int64_t ldw, int nr, const float *src, int64_t lds,
                               int64_t n, int64_t hd, float *out, int64_t ldo, bool accumulate)
{
    const float *wrow[ROWS];
    for (int r = 0; r < ROWS; r++)
        wrow[r] = w + (r < nr ? r : nr - 1) * ldw;
    for (int64_t d0 = 0; d0 < hd; d0 += BLOCK) {
        float acc[ROWS][BLOCK] = {{0}};
        const int64_t width = hd - d0 < BLOCK ? hd - d0 : BLOCK;
        if (width == BLOCK) {
            for (int64_t j = 0; j < n; j++) {
                const float *sr = src + j * lds + d0;
                for (int r = 0; r < ROWS; r++) {
                    const float wj = wrow[r][j];
                    for (int l = 0; l < BLOCK; l++)
                        acc[r][l] += wj * sr[l];
                }
            }
        } else {
            for (int64_t j = 0; j < n; j++) {
                const float *sr = src + j * lds + d0;
                for (int r = 0; r < ROWS; r++) {
                    const float wj = wrow[r][j];
                    for (int64_t l = 0; l < width; l++)
                        acc[r][l] += wj * sr[l];
                }
            }
        }
        for (int r = 0; r < nr; r++) {
            float *o = out + r * ldo + d0;
            if (accumulate)
                for (int64_t l = 0; l < width; l++)
                    o[l] += acc[r][l];
            else
                for (int64_t l = 0; l < width; l++)
                    o[l] = acc[r][l];
        }
    }
}

/* out[r][:] += Σ_{j0<=i<n} w[i][j0+r]·src[i][:] for r < nr: the transposed product,
 * for gradients of keys and values. w must be zero above the diagonal within the tile
 * of rows j0.. (as the forward and backward tiles leave it). */
static void tile_weighted_rows_t(const float *w, int64_t ldw, int64_t j0, int nr, int64_t n,
                                 const float *src, int64_t lds, int64_t hd, float *out, int64_t ldo)
{
    int64_t col[ROWS];
    for (int r = 0; r < ROWS; r++)
        col[r] = j0 + (r < nr ? r : nr - 1);
    for (int64_t d0 = 0; d0 < hd; d0 += BLOCK) {
        float acc[ROWS][BLOCK] = {{0}};
        const int64_t width = hd - d0 < BLOCK ? hd - d0 : BLOCK;
        if (width == BLOCK) {
            for (int64_t i = j0; i < n; i++) {
                const float *wi = w + i * ldw, *sr = src + i * lds + d0;
                for (int r = 0; r < ROWS; r++) {
                    const float wij = wi[col[r]];
                    for (int l = 0; l < BLOCK; l++)
                        acc[r][l] += wij * sr[l];
                }
            }
        } else {
            for (int64_t i = j0; i < n; i++) {
                const float *wi = w + i * ldw, *sr = src + i * lds + d0;
                for (int r = 0; r < ROWS; r++) {
                    const float wij = wi[col[r]];
                    for (int64_t l = 0; l < width; l++)
                        acc[r][l] += wij * sr[l];
                }
            }
        }
        for (int r = 0; r < nr; r++) {
            float *o = out + r * ldo + d0;
            for (int64_t l = 0; l < width; l++)
                o[l] += acc[r][l];
        }
    }
}

/* In place: p[0..n_valid) = softmax(p[0..n_valid)), p[n_valid..n_row) = 0. */
static void softmax_prefix(float *p, int64_t n_valid, int64_t n_row)
{
    float m = p[0];
    for (int64_t j = 1; j < n_valid; j++)
        m = p[j] > m ? p[j] : m;
    float part[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= n_valid; j += LANES)
        for (int l = 0; l < LANES; l++) {
            float e = em_fast_expf(p[j + l] - m);
            p[j + l] = e;
            part[l] += e;
        }
    float sum = 0.0f;
    for (; j < n_valid; j++) {
        float e = em_fast_expf(p[j] - m);
        p[j] = e;
        sum += e;
    }
    for (int l = 0; l < LANES; l++)
        sum += part[l];
    const float inv = 1.0f / sum;
    for (j = 0; j < n_valid; j++)
        p[j] *= inv;
    for (j = n_valid; j < n_row; j++)
        p[j] = 0.0f;
}

void em_attention_rows_forward(const float *q, int64_t ldq, int64_t first, int64_t n_rows,
                               const float *kt, int64_t ldkt, const float *v, int64_t ldv,
                               float *y, int64_t ldy, float *p, int64_t ldp, bool p_per_tile,
                               int64_t hd, float scale)
{
    for (int64_t t0 = 0; t0 < n_rows; t0 += ROWS) {
        const int nr = n_rows - t0 < ROWS ? (int)(n_rows - t0) : ROWS;
        const int64_t i0 = first + t0, n_keys = i0 + nr;
        float *pt = p_per_tile ? p : p + t0 * ldp;
        tile_scores(q + t0 * ldq, ldq, nr, kt, ldkt, n_keys, hd, scale, pt, ldp);
        for (int r = 0; r < nr; r++)
            softmax_prefix(pt + r * ldp, i0 + r + 1, n_keys);
        tile_weighted_rows(pt, ldp, nr, v, ldv, n_keys, hd, y + t0 * ldy, ldy, false);
    }
}

void em_attention_head_backward(const float *q, int64_t ldq, const float *k, int64_t ldk,
                                const float *v, int64_t ldv, const float *p, int64_t ldp,
                                const float *dy, int64_t ldy, float *dq, int64_t lddq, float *dk,
                                int64_t lddk, float *dv, int64_t lddv, int64_t t, int64_t hd,
                                float scale, float *vt, float *ds)
{
    if (dq || dk) {
        em_attention_transpose(v, ldv, t, hd, vt, em_attention_padded(t));
        for (int64_t i0 = 0; i0 < t; i0 += ROWS) {
            const int nr = t - i0 < ROWS ? (int)(t - i0) : ROWS;
            const int64_t n_keys = i0 + nr;
            float *dst = ds + i0 * ldp;
            /* dP = dY·Vᵀ, then dS = P∘(dP - rowsum(P∘dP)), scaled for the q·kᵀ product. */
            tile_scores(dy + i0 * ldy, ldy, nr, vt, em_attention_padded(t), n_keys, hd, 1.0f, dst, ldp);
            for (int r = 0; r < nr; r++) {
                const int64_t i = i0 + r;
                const float *pr = p + i * ldp;
                float *sr = dst + r * ldp;
                float dot = 0.0f;
                for (int64_t j = 0; j <= i; j++)
                    dot += pr[j] * sr[j];
                for (int64_t j = 0; j <= i; j++)
                    sr[j] = scale * pr[j] * (sr[j] - dot);
                for (int64_t j = i + 1; j < n_keys; j++)
                    sr[j] = 0.0f;
            }
            if (dq)
                tile_weighted_rows(dst, ldp, nr, k, ldk, n_keys, hd, dq + i0 * lddq, lddq, true);
        }
    }
    for (int64_t j0 = 0; j0 < t; j0 += ROWS) {
        const int nr = t - j0 < ROWS ? (int)(t - j0) : ROWS;
        if (dk)
            tile_weighted_rows_t(ds, ldp, j0, nr, t, q, ldq, hd, dk + j0 * lddk, lddk);
        if (dv)
            tile_weighted_rows_t(p, ldp, j0, nr, t, dy, ldy, hd, dv + j0 * lddv, lddv);
    }
}
