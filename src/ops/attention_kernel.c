/* Per-head kernels of causal attention (see attention_kernel.h).
 *
 * Every product is a register tile of EM_ATTENTION_TILE rows by 32 (or 16) columns held in
 * 16-float vectors: scores put keys along the lanes (reading transposed keys), weighted
 * sums of rows put channels along the lanes with the weight broadcast. Per step of the
 * inner loop a tile loads two vectors and eight scalars for sixteen fused multiply-adds,
 * which keeps the FMA units, not the loads, the limit. A tile whose last rows lie past the
 * end repeats its last real row, so the loops keep fixed trip counts; the repeated results
 * are dropped. Causality bounds every loop: a tile of rows starting at i0 reads keys up to
 * i0+tile-1 only (scores round that up to 16 keys), which skips about half of each T x T
 * product.
 *
 * The vectors are GCC/Clang vector extensions (vec16.h), which the compiler lowers to
 * AVX-512, AVX2 or SSE as the target allows. Head sizes that are not a multiple of 16 take plain
 * loops for the channels past the last multiple.
 *
 * Dropout weights the values by a second, dropped copy of a tile's probabilities, made
 * right after its softmax; the softmax gradient then reads both copies.
 *
 * Each output element is one sequential chain of fused multiply-adds over the same
 * operands whatever the tile it was computed in; this is what lets the key/value cache
 * reproduce the full forward exactly. */
#include <math.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "ops/attention_kernel.h"
#include "ops/fastmath16.h"
#include "ops/vec16.h"

#define ROWS EM_ATTENTION_TILE
#define VEC 16             /* floats per vector */
#define BLOCK (2 * VEC)    /* columns per register tile */

int64_t em_attention_padded(int64_t t) { return (t + BLOCK - 1) / BLOCK * BLOCK; }

void em_attention_transpose(const float *src, int64_t ld_src, int64_t n, int64_t hd, float *dst,
                            int64_t ld_dst)
{
    const int64_t padded = em_attention_padded(n), n16 = n / VEC * VEC, hd16 = hd / VEC * VEC;
    for (int64_t j0 = 0; j0 < n16; j0 += VEC)
        for (int64_t d0 = 0; d0 < hd16; d0 += VEC)
            em_transpose16(src + j0 * ld_src + d0, ld_src, dst + d0 * ld_dst + j0, ld_dst, 0);
    /* the edges: channels past the last multiple of 16, then positions likewise */
    for (int64_t d = hd16; d < hd; d++)
        for (int64_t j = 0; j < n; j++)
            dst[d * ld_dst + j] = src[j * ld_src + d];
    for (int64_t d = 0; d < hd16; d++)
        for (int64_t j = n16; j < n; j++)
            dst[d * ld_dst + j] = src[j * ld_src + d];
    for (int64_t d = 0; d < hd; d++)
        for (int64_t j = n; j < padded; j++)
            dst[d * ld_dst + j] = 0.0f;
}

/* s[r][j] = scale · Σ_d a[r][d]·bt[d][j] for rows r < nr and columns j < n. Whole
 * vectors are stored: columns up to n rounded up to 16 are written (lds and ldb >= that). */
static inline __attribute__((always_inline)) void
tile_scores_of(const int computed, const float *a, int64_t lda, int nr, const float *bt, int64_t ldb, int64_t n,
               int64_t hd, float scale, float *s, int64_t lds)
{
    const float *rows[ROWS];
    for (int r = 0; r < ROWS; r++)
        rows[r] = a + (r < nr ? r : nr - 1) * lda;
    int64_t j0 = 0;
    for (; n - j0 > VEC; j0 += BLOCK) {
        em_vf16 acc0[ROWS] = {0}, acc1[ROWS] = {0};
        for (int64_t d = 0; d < hd; d++) {
            const float *bd = bt + d * ldb + j0;
            const em_vf16 b0 = em_load16(bd), b1 = em_load16(bd + VEC);
            for (int r = 0; r < computed; r++) {
                const float ad = rows[r][d];
                acc0[r] += ad * b0;
                acc1[r] += ad * b1;
            }
        }
        for (int r = 0; r < nr; r++) {
            em_store16(s + r * lds + j0, acc0[r] * scale);
            em_store16(s + r * lds + j0 + VEC, acc1[r] * scale);
        }
    }
    if (j0 < n) {
        em_vf16 acc[ROWS] = {0};
        for (int64_t d = 0; d < hd; d++) {
            const em_vf16 b = em_load16(bt + d * ldb + j0);
            for (int r = 0; r < computed; r++)
                acc[r] += rows[r][d] * b;
        }
        for (int r = 0; r < nr; r++)
            em_store16(s + r * lds + j0, acc[r] * scale);
    }
}

/* A single row (a generated token's query) computes only itself: the tile's other
 * rows would repeat it eight times over. Each row's arithmetic is the same either way. */
static void tile_scores(const float *a, int64_t lda, int nr, const float *bt, int64_t ldb, int64_t n, int64_t hd,
                        float scale, float *s, int64_t lds)
{
    if (nr == 1)
        tile_scores_of(1, a, lda, nr, bt, ldb, n, hd, scale, s, lds);
    else
        tile_scores_of(ROWS, a, lda, nr, bt, ldb, n, hd, scale, s, lds);
}

/* out[r][c] (+)= Σ_{j_begin<=j<j_end} w[r][j·wstride]·src[j][c] over hd channels, for the
 * rows r < nr (w has ROWS entries, the last ones repeating the last real row). */
static inline __attribute__((always_inline)) void
tile_weighted_of(const int computed, const float *const *w, int64_t wstride, int64_t j_begin, int64_t j_end,
                 const float *src, int64_t lds, int64_t hd, float *out, int64_t ldo, int nr, bool accumulate)
{
    int64_t d0 = 0;
    while (hd - d0 >= VEC) {
        const bool two = hd - d0 >= BLOCK;
        em_vf16 acc0[ROWS] = {0}, acc1[ROWS] = {0};
        if (two) {
            for (int64_t j = j_begin; j < j_end; j++) {
                const float *sj = src + j * lds + d0;
                const em_vf16 s0 = em_load16(sj), s1 = em_load16(sj + VEC);
                for (int r = 0; r < computed; r++) {
                    const float wj = w[r][j * wstride];
                    acc0[r] += wj * s0;
                    acc1[r] += wj * s1;
                }
            }
        } else {
            for (int64_t j = j_begin; j < j_end; j++) {
                const em_vf16 s0 = em_load16(src + j * lds + d0);
                for (int r = 0; r < computed; r++)
                    acc0[r] += w[r][j * wstride] * s0;
            }
        }
        for (int r = 0; r < nr; r++) {
            float *o = out + r * ldo + d0;
            if (accumulate) {
                em_store16(o, em_load16(o) + acc0[r]);
                if (two)
                    em_store16(o + VEC, em_load16(o + VEC) + acc1[r]);
            } else {
                em_store16(o, acc0[r]);
                if (two)
                    em_store16(o + VEC, acc1[r]);
            }
        }
        d0 += two ? BLOCK : VEC;
    }
    if (d0 < hd) {
        /* channels past the last multiple of 16, one row at a time */
        for (int r = 0; r < nr; r++) {
            float acc[VEC] = {0};
            for (int64_t j = j_begin; j < j_end; j++) {
                const float wj = w[r][j * wstride];
                for (int64_t c = d0; c < hd; c++)
                    acc[c - d0] += wj * src[j * lds + c];
            }
            float *o = out + r * ldo;
            for (int64_t c = d0; c < hd; c++)
                o[c] = accumulate ? o[c] + acc[c - d0] : acc[c - d0];
        }
    }
}

static void tile_weighted(const float *const *w, int64_t wstride, int64_t j_begin, int64_t j_end, const float *src,
                          int64_t lds, int64_t hd, float *out, int64_t ldo, int nr, bool accumulate)
{
    if (nr == 1)
        tile_weighted_of(1, w, wstride, j_begin, j_end, src, lds, hd, out, ldo, nr, accumulate);
    else
        tile_weighted_of(ROWS, w, wstride, j_begin, j_end, src, lds, hd, out, ldo, nr, accumulate);
}

/* out[r][:] (+)= Σ_{j<n} w[r][j]·src[j][:] for rows r < nr. */
static void tile_weighted_rows(const float *w, int64_t ldw, int nr, const float *src, int64_t lds,
                               int64_t n, int64_t hd, float *out, int64_t ldo, bool accumulate)
{
    const float *wrow[ROWS];
    for (int r = 0; r < ROWS; r++)
        wrow[r] = w + (r < nr ? r : nr - 1) * ldw;
    tile_weighted(wrow, 1, 0, n, src, lds, hd, out, ldo, nr, accumulate);
}

/* out[r][:] (+)= Σ_{j0<=i<n} w[i][j0+r]·src[i][:] for r < nr: the transposed product, for
 * the gradients of keys and values. w must be zero above the diagonal within the tile of
 * rows j0.. (as the forward and backward tiles leave it). */
static void tile_weighted_rows_t(const float *w, int64_t ldw, int64_t j0, int nr, int64_t n,
                                 const float *src, int64_t lds, int64_t hd, float *out, int64_t ldo,
                                 bool accumulate)
{
    const float *wcol[ROWS];
    for (int r = 0; r < ROWS; r++)
        wcol[r] = w + j0 + (r < nr ? r : nr - 1);
    tile_weighted(wcol, ldw, j0, n, src, lds, hd, out, ldo, nr, accumulate);
}

static int64_t round_up_vec(int64_t n) { return (n + VEC - 1) / VEC * VEC; }

/* Lane-wise maximum (either operand when equal; NaN lanes of x are dropped, but a NaN
 * score makes every exponential NaN anyway). */
static inline em_vf16 max16(em_vf16 m, em_vf16 x)
{
    return em_select16(x > m, x, m);
}

/* Horizontal reductions. AVX-512 has shuffle sequences for them; elsewhere a tree
 * (depth 4, not a chain of 15 dependent operations). Element-wise trees compile to
 * round trips through the stack with AVX-512, whose partial reloads stall. */
#if defined(__AVX512F__)
static inline float hmax16(em_vf16 v) { return _mm512_reduce_max_ps((__m512)v); }
static inline float hsum16(em_vf16 v) { return _mm512_reduce_add_ps((__m512)v); }
#else
static inline float hmax16(em_vf16 v)
{
    float a[VEC / 2];
    for (int l = 0; l < VEC / 2; l++)
        a[l] = v[l] > v[l + VEC / 2] ? v[l] : v[l + VEC / 2];
    for (int w = VEC / 4; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            a[l] = a[l] > a[l + w] ? a[l] : a[l + w];
    return a[0];
}

static inline float hsum16(em_vf16 v)
{
    float a[VEC / 2];
    for (int l = 0; l < VEC / 2; l++)
        a[l] = v[l] + v[l + VEC / 2];
    for (int w = VEC / 4; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            a[l] += a[l + w];
    return a[0];
}
#endif

/* x with the lanes from `valid` on (0 < valid <= 16) replaced by `fill`. In registers:
 * scalar stores followed by a vector load of the same bytes would stall the load. */
static inline em_vf16 keep_lanes(em_vf16 x, int64_t valid, float fill)
{
    static const em_vi16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return em_select16(lane < (int32_t)valid, x, em_splat16(fill));
}

/* In place for the rows r < nr of a tile starting at position i0: row r becomes the
 * softmax of its first i0+r+1 entries followed by zeros up to n_row (and at least up to
 * its own length rounded up to 16). Whole vectors throughout: the lanes past a row's
 * length count as -inf, so they take no part in the maximum and their exponentials are 0.
 * Each phase runs over all rows of the tile before the next, so that the rows' short
 * dependent chains (reductions, exponentials, a division) overlap instead of queueing. */
static void softmax_tile(float *p, int64_t ldp, int nr, int64_t i0, int64_t n_row)
{
    float inv[ROWS], m[ROWS];
    for (int r = 0; r < nr; r++) {
        float *pr = p + r * ldp;
        const int64_t n_valid = i0 + r + 1, last = round_up_vec(n_valid) - VEC;
        em_vf16 mv = keep_lanes(em_load16(pr + last), n_valid - last, -INFINITY);
        for (int64_t j = 0; j < last; j += VEC)
            mv = max16(mv, em_load16(pr + j));
        m[r] = hmax16(mv);
    }
    for (int r = 0; r < nr; r++) {
        float *pr = p + r * ldp;
        const int64_t n_valid = i0 + r + 1, last = round_up_vec(n_valid) - VEC;
        em_vf16 sv = {0};
        for (int64_t j = 0; j < last; j += VEC) {
            const em_vf16 e = em_exp_nonpositive16(em_load16(pr + j) - m[r]);
            em_store16(pr + j, e);
            sv += e;
        }
        const em_vf16 tail = keep_lanes(em_load16(pr + last), n_valid - last, -INFINITY);
        const em_vf16 e = em_exp_nonpositive16(tail - m[r]);
        em_store16(pr + last, e);
        sv += e;
        inv[r] = 1.0f / hsum16(sv);
    }
    for (int r = 0; r < nr; r++) {
        float *pr = p + r * ldp;
        const int64_t n_vec = round_up_vec(i0 + r + 1);
        for (int64_t j = 0; j < n_vec; j += VEC)
            em_store16(pr + j, em_load16(pr + j) * inv[r]);
        for (int64_t j = n_vec; j < n_row; j++)
            pr[j] = 0.0f;
    }
}

/* pd = p with the dropped entries zeroed and the kept ones scaled, over the same columns
 * as softmax_tile leaves valid in each row (zeros stay zeros). */
static void dropout_tile(const float *p, float *pd, int64_t ldp, int nr, int64_t i0, int64_t n_row,
                         const em_attention_dropout *d)
{
    for (int r = 0; r < nr; r++) {
        const int64_t i = i0 + r, n = round_up_vec(i + 1) > n_row ? round_up_vec(i + 1) : n_row;
        const uint64_t counter = d->first + (uint64_t)(i * d->t);
        const float *pr = p + r * ldp;
        float *dr = pd + r * ldp;
        for (int64_t j = 0; j <= i; j++)
            dr[j] = em_attention_dropout_bits(d->seed, counter + (uint64_t)j) >= d->threshold ? pr[j] * d->scale
                                                                                              : 0.0f;
        for (int64_t j = i + 1; j < n; j++)
            dr[j] = 0.0f;
    }
}

void em_attention_rows_forward(const float *q, int64_t ldq, int64_t first, int64_t n_rows,
                               const float *kt, int64_t ldkt, const float *v, int64_t ldv,
                               float *y, int64_t ldy, float *p, int64_t ldp, bool p_per_tile,
                               int64_t hd, float scale, const em_attention_dropout *drop)
{
    for (int64_t t0 = 0; t0 < n_rows; t0 += ROWS) {
        const int nr = n_rows - t0 < ROWS ? (int)(n_rows - t0) : ROWS;
        const int64_t i0 = first + t0, n_keys = i0 + nr;
        float *pt = p_per_tile ? p : p + t0 * ldp;
        tile_scores(q + t0 * ldq, ldq, nr, kt, ldkt, n_keys, hd, scale, pt, ldp);
        softmax_tile(pt, ldp, nr, i0, n_keys);
        const float *weights = pt;
        if (drop) {
            float *pdt = p_per_tile ? drop->pd : drop->pd + t0 * ldp;
            dropout_tile(pt, pdt, ldp, nr, i0, n_keys, drop);
            weights = pdt;
        }
        tile_weighted_rows(weights, ldp, nr, v, ldv, n_keys, hd, y + t0 * ldy, ldy, false);
    }
}

/* Row i of dS from dP in place, where w are the probabilities that weighted the values:
 * P itself, or after dropout pd = P·M/(1-p), whose gradient for P_j is dP_j·M_j/(1-p), so
 * that P_j times it is w_j·dP_j either way:
 *   dS_j = scale·(w_j·dP_j - P_j·Σ_k w_k·dP_k) for j <= i, zero for i < j < n_row.
 * P and w are zero past i up to i+1 rounded up to 16 (softmax_tile, dropout_tile), so
 * whole vectors can be used. */
static void score_gradient_row(const float *p, const float *w, float *ds, int64_t i, int64_t n_row, float scale)
{
    const int64_t n_vec = round_up_vec(i + 1);
    em_vf16 dv = {0};
    for (int64_t j = 0; j < n_vec; j += VEC)
        dv += em_load16(w + j) * em_load16(ds + j);
    const float dot = hsum16(dv);
    for (int64_t j = 0; j < n_vec; j += VEC)
        em_store16(ds + j, scale * (em_load16(w + j) * em_load16(ds + j) - em_load16(p + j) * dot));
    for (int64_t j = i + 1; j < n_row; j++)
        ds[j] = 0.0f;
}

void em_attention_head_backward(const float *q, int64_t ldq, const float *k, int64_t ldk,
                                const float *v, int64_t ldv, const float *p, const float *pd,
                                int64_t ldp, const float *dy, int64_t ldy, float *dq, int64_t lddq, float *dk,
                                int64_t lddk, float *dv, int64_t lddv, int64_t t, int64_t hd,
                                float scale, float *vt, float *ds, bool accumulate)
{
    const int64_t ldvt = em_attention_padded(t);
    if (dq || dk) {
        em_attention_transpose(v, ldv, t, hd, vt, ldvt);
        for (int64_t i0 = 0; i0 < t; i0 += ROWS) {
            const int nr = t - i0 < ROWS ? (int)(t - i0) : ROWS;
            const int64_t n_keys = i0 + nr;
            float *dst = ds + i0 * ldp;
            tile_scores(dy + i0 * ldy, ldy, nr, vt, ldvt, n_keys, hd, 1.0f, dst, ldp); /* dP */
            for (int r = 0; r < nr; r++) {
                const int64_t row = (i0 + r) * ldp;
                score_gradient_row(p + row, (pd ? pd : p) + row, dst + r * ldp, i0 + r, n_keys, scale);
            }
            if (dq)
                tile_weighted_rows(dst, ldp, nr, k, ldk, n_keys, hd, dq + i0 * lddq, lddq, accumulate);
        }
    }
    for (int64_t j0 = 0; j0 < t; j0 += ROWS) {
        const int nr = t - j0 < ROWS ? (int)(t - j0) : ROWS;
        if (dk)
            tile_weighted_rows_t(ds, ldp, j0, nr, t, q, ldq, hd, dk + j0 * lddk, lddk, accumulate);
        if (dv)
            tile_weighted_rows_t(pd ? pd : p, ldp, j0, nr, t, dy, ldy, hd, dv + j0 * lddv, lddv, accumulate);
    }
}
