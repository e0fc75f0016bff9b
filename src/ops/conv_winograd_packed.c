/* Winograd-domain weights kept for inference, and the product that reads them.
 *
 * Without gradients the same weights usually come back call after call (a model serving
 * requests), and at batch 1 transforming them costs as much as a sixth of the layer. So
 * each thread keeps the transformed weights of the last few layers it ran, together with
 * a copy of the weights they came from. A hit requires the same address, shape and tile
 * and equal values (a comparison of the raw weights is a fraction of the transform's
 * cost), so an update of the weights, in place or not, is never missed.
 *
 * The cached weights are packed [a²][c][o rounded up to 16]: each transformed position
 * is a row-major K x N matrix whose rows of output channels are whole vectors, which the
 * product below multiplies by the transformed input tiles without BLAS's packing (the
 * matrices are too small for it to pay: 49 tiles by 32 channels on W2's second layer). */
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "ops/conv_internal.h"
#include "ops/vec16.h"

#define CACHE_ENTRIES 8
/* Raw and transformed weights held per thread at most. */
#define CACHE_MAX_BYTES ((size_t)64 << 20)

typedef struct packed_entry {
    const float *w; /* the weights' address when cached */
    int64_t o, c;
    int m;
    float *raw;    /* a copy of the weights, o·c·9 */
    float *packed; /* a²·c·round16(o) */
    size_t bytes;
    unsigned long last_use;
} packed_entry;

static _Thread_local packed_entry cache[CACHE_ENTRIES];
static _Thread_local unsigned long use_clock;

static void drop(packed_entry *e)
{
    free(e->raw);
    free(e->packed);
    *e = (packed_entry){0};
}

void em_conv_release_cache(void)
{
    for (int i = 0; i < CACHE_ENTRIES; i++)
        drop(&cache[i]);
}

static size_t cached_bytes(void)
{
    size_t total = 0;
    for (int i = 0; i < CACHE_ENTRIES; i++)
        total += cache[i].bytes;
    return total;
}

/* Fills e from w: the transform into scratch [a²][o·c], then each position transposed
 * to [c][op] with zero columns past o. */
static int fill(packed_entry *e, const conv_geom *g, int m, const float *w)
{
    const int64_t a2 = (int64_t)(m + 2) * (m + 2), oc = g->o * g->c, op = (g->o + 15) / 16 * 16;
    size_t raw_bytes = (size_t)oc * 9 * sizeof(float), packed_bytes = (size_t)(a2 * g->c * op) * sizeof(float);
    if (raw_bytes + packed_bytes > CACHE_MAX_BYTES)
        return EM_ERR;
    while (cached_bytes() + raw_bytes + packed_bytes > CACHE_MAX_BYTES) {
        packed_entry *oldest = NULL;
        for (int i = 0; i < CACHE_ENTRIES; i++)
            if (cache[i].raw && (!oldest || cache[i].last_use < oldest->last_use))
                oldest = &cache[i];
        drop(oldest);
    }
    float *scratch = malloc((size_t)(a2 * oc) * sizeof(float));
    e->raw = malloc(raw_bytes);
    e->packed = malloc(packed_bytes);
    if (!scratch || !e->raw || !e->packed) {
        free(scratch);
        drop(e);
        return EM_ERR;
    }
    memcpy(e->raw, w, raw_bytes);
    em_conv_winograd_weights(g, m, w, scratch);
    for (int64_t xi = 0; xi < a2; xi++)
        for (int64_t ci = 0; ci < g->c; ci++) {
            float *row = e->packed + (xi * g->c + ci) * op;
            for (int64_t oi = 0; oi < g->o; oi++)
                row[oi] = scratch[xi * oc + oi * g->c + ci];
            for (int64_t oi = g->o; oi < op; oi++)
                row[oi] = 0.0f;
        }
    free(scratch);
    e->w = w;
    e->o = g->o;
    e->c = g->c;
    e->m = m;
    e->bytes = raw_bytes + packed_bytes;
    return EM_OK;
}

const float *em_conv_winograd_packed_weights(const conv_geom *g, int m, const float *w)
{
    const size_t raw_bytes = (size_t)(g->o * g->c * 9) * sizeof(float);
    packed_entry *slot = NULL;
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        packed_entry *e = &cache[i];
        if (e->raw && e->w == w && e->o == g->o && e->c == g->c && e->m == m) {
            if (memcmp(e->raw, w, raw_bytes) == 0) {
                e->last_use = ++use_clock;
                return e->packed;
            }
            drop(e); /* the same layer with new values */
        }
    }
    for (int i = 0; i < CACHE_ENTRIES && !(slot && !slot->raw); i++)
        if (!slot || !cache[i].raw || cache[i].last_use < slot->last_use)
            slot = &cache[i]; /* an empty entry, else the least recently used */
    drop(slot);
    if (fill(slot, g, m, w) != EM_OK)
        return NULL;
    slot->last_use = ++use_clock;
    return slot->packed;
}

/* ---- the product ------------------------------------------------------------------- */

/* c [rows, 16·nv] = a [rows, k] · b [k, 16·nv] for rows <= 6 and nv <= 4: all partial
 * sums stay in registers; each step broadcasts one element of each row of a and loads
 * one row of b. Compiled for each constant pair by the switch below. */
static inline __attribute__((always_inline)) void
block(int rows, int nv, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
      int64_t ldc)
{
    em_vf16 acc[6][4];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = em_splat16(0.0f);
    for (int64_t kk = 0; kk < k; kk++) {
        em_vf16 bv[4];
        for (int v = 0; v < nv; v++)
            bv[v] = em_load16(b + kk * ldb + 16 * v);
        for (int r = 0; r < rows; r++) {
            em_vf16 av = em_splat16(a[r * lda + kk]);
            for (int v = 0; v < nv; v++)
                acc[r][v] += av * bv[v];
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++)
            em_store16(c + r * ldc + 16 * v, acc[r][v]);
}

#define BLOCK_CASE(r, v)                                                                           \
    case (r) * 8 + (v): block((r), (v), k, a, lda, b, ldb, c, ldc); break

static void block_any(int rows, int nv, int64_t k, const float *a, int64_t lda, const float *b,
                      int64_t ldb, float *c, int64_t ldc)
{
    switch (rows * 8 + nv) {
        BLOCK_CASE(6, 4); BLOCK_CASE(5, 4); BLOCK_CASE(4, 4); BLOCK_CASE(3, 4); BLOCK_CASE(2, 4); BLOCK_CASE(1, 4);
        BLOCK_CASE(6, 3); BLOCK_CASE(5, 3); BLOCK_CASE(4, 3); BLOCK_CASE(3, 3); BLOCK_CASE(2, 3); BLOCK_CASE(1, 3);
        BLOCK_CASE(6, 2); BLOCK_CASE(5, 2); BLOCK_CASE(4, 2); BLOCK_CASE(3, 2); BLOCK_CASE(2, 2); BLOCK_CASE(1, 2);
        BLOCK_CASE(6, 1); BLOCK_CASE(5, 1); BLOCK_CASE(4, 1); BLOCK_CASE(3, 1); BLOCK_CASE(2, 1); BLOCK_CASE(1, 1);
    default: break;
    }
}

void em_conv_packed_gemm(int64_t rows, int64_t k, int64_t n, const float *a, int64_t lda, const float *b,
                         int64_t ldb, float *c, int64_t ldc)
{
    for (int64_t j = 0; j < n; j += 64) {
        int nv = (int)((n - j) / 16 < 4 ? (n - j) / 16 : 4);
        for (int64_t i = 0; i < rows; i += 6)
            block_any((int)(rows - i < 6 ? rows - i : 6), nv, k, a + i * lda, lda, b + j, ldb, c + i * ldc + j,
                      ldc);
    }
}
