/* 3x3 stride-1 convolutions by Winograd's minimal filtering F(m x m, 3x3), m = 2 or 4.
 *
 * Each m x m block of outputs comes from an a x a input tile d (a = m + 2) as
 * Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A: a² products per channel pair instead of the 9m² of the
 * direct form. With the weights transformed once (U = G g Gᵀ) and the input tiles
 * transformed into V = Bᵀ d B, the sum over input channels becomes a² independent GEMMs,
 * one per position ξ of the transformed tile: M_ξ [tiles, O] = V_ξ [tiles, C] · U_ξᵀ [C, O];
 * the output transform Aᵀ M A then gives the outputs. F(2x2) does 16/36 of im2col's GEMM
 * work, F(4x4) 36/144 (less where its tiles overhang the output); F(4x4)'s transforms have
 * larger coefficients and lose more precision (about ten times F(2x2)'s rounding error,
 * which is itself a few times that of a direct sum).
 *
 * Backward differentiates exactly this computation, so it stays in the same domain:
 * dM = A dY Aᵀ per tile, dU_ξ += dM_ξᵀ · V_ξ, dV_ξ = dM_ξ · U_ξ, then dW = Gᵀ dU G and dx
 * gets B dV Bᵀ added at each tile's place (tiles overlap by two rows and columns).
 *
 * Inside, data is channel-last: tiles are few per row (a 14x14 plane has rows of 7 or 4
 * tiles), so the transforms run across 16 channels at a time instead, on vectors. Each
 * image's input is copied once into a zero-padded channel-last band, and the outputs go
 * back to NCHW through 16x16 block transposes, so the transforms never test bounds.
 * Channel counts are padded to multiples of 16 in these buffers; the GEMMs read only the
 * real channels.
 *
 * Work goes in blocks of whole images (or bands of tile rows when one image has more tiles
 * than a block holds), sized so that a block's transformed data stays in L2 between the
 * transforms and the GEMMs; threads take blocks, BLAS runs on one thread in each. */
#include <cblas.h>
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <string.h>

#include "ember/error.h"
#include "ops/conv_internal.h"
#include "ops/vec16.h"

#define MAX_A 6            /* largest transformed tile side: m + 2 with m = 4 */
/* Transformed data (V, dV and dM in backward) per block: about this many bytes. */
#define BLOCK_BYTES (1024 * 1024)
/* Fewer channels than this make GEMMs too thin for the transforms to pay. */
#define MIN_CHANNELS 8

static em_conv_algorithm forced_algorithm;
static int forced_tile;

void em_conv_force_algorithm(em_conv_algorithm algorithm) { forced_algorithm = algorithm; }

void em_conv_force_winograd_tile(int m) { forced_tile = m == 2 || m == 4 ? m : 0; }

bool em_conv_winograd_applies(const conv_geom *g)
{
    bool possible = g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 &&
                    g->dw == 1 && g->groups == 1;
    if (!possible || forced_algorithm == EM_CONV_UNFOLDED)
        return false;
    if (forced_algorithm == EM_CONV_WINOGRAD)
        return true;
    return g->c >= MIN_CHANNELS && g->o >= MIN_CHANNELS;
}

/* ---- blocks ------------------------------------------------------------------------ */

typedef struct wino_plan {
    int m, a, xi;         /* output tile side, input tile side m + 2, positions a² */
    int64_t th, tw;       /* tile rows and columns per image */
    int64_t cp, op;       /* channels padded to multiples of 16 */
    int64_t band_cols;    /* padded input row: m·tw + 2 */
    int64_t band_rows;    /* most padded input rows a block needs: m·(tile rows) + 2 */
    bool whole_images;    /* blocks of whole images, else bands of one image */
    int64_t per_block;    /* images per block, or tile rows per band */
    int64_t items;        /* units of parallel work: blocks of images, or single images */
    int64_t bands;        /* bands per item (1 with whole images) */
    int64_t max_tiles;    /* tiles in the largest block */
} wino_plan;

typedef struct wino_block {
    int64_t n0, n1;   /* images */
    int64_t ty0, ty1; /* tile rows of each image */
    int64_t tiles;
} wino_block;

static int64_t round16(int64_t v) { return (v + 15) / 16 * 16; }

int em_conv_winograd_tile(const conv_geom *g)
{
    if (forced_tile)
        return forced_tile;
    /* GEMM work per image and channel pair. F(4x4) costs about ten times F(2x2)'s
     * rounding error and its transforms are heavier, so it must save a good part of the
     * work: on W2's 14x14 planes it would save 27% of the GEMMs but measured only 3% of
     * the layer's time; on 28x28 planes it saves 44%. */
    int64_t work2 = 16 * ((g->oh + 1) / 2) * ((g->ow + 1) / 2);
    int64_t work4 = 36 * ((g->oh + 3) / 4) * ((g->ow + 3) / 4);
    return 10 * work4 < 7 * work2 ? 4 : 2;
}

static void make_plan_for(const conv_geom *g, wino_plan *p, bool share_images_by_bands);

static void make_plan(const conv_geom *g, wino_plan *p) { make_plan_for(g, p, true); }

/* With share_images_by_bands false, a batch smaller than the team still gets whole-image
 * blocks (the threads then share each block by output channels instead). */
static void make_plan_for(const conv_geom *g, wino_plan *p, bool share_images_by_bands)
{
    p->m = g->winograd_tile == 4 ? 4 : 2;
    p->a = p->m + 2;
    p->xi = p->a * p->a;
    p->th = (g->oh + p->m - 1) / p->m;
    p->tw = (g->ow + p->m - 1) / p->m;
    p->cp = round16(g->c);
    p->op = round16(g->o);
    p->band_cols = p->m * p->tw + 2;
    const int64_t tpi = p->th * p->tw;
    int64_t tile_bytes = (int64_t)p->xi * (2 * p->cp + p->op) * (int64_t)sizeof(float);
    int64_t budget = BLOCK_BYTES / tile_bytes;
    if (budget < 1)
        budget = 1;
    /* Fewer images than threads (batch-1 inference): bands of tile rows, so that every
     * thread gets a share of each image (forward only runs bands of one image at once). */
    const int nt = omp_get_max_threads();
    const bool share_images = share_images_by_bands && g->n < nt && p->th >= nt;
    if (tpi <= budget && !share_images) {
        p->whole_images = true;
        p->per_block = budget / tpi;
        if (p->per_block > g->n)
            p->per_block = g->n;
        /* Every thread should get blocks: shrink them when the batch is small. */
        while (p->per_block > 1 && (g->n + p->per_block - 1) / p->per_block < nt)
            p->per_block--;
        p->items = (g->n + p->per_block - 1) / p->per_block;
        p->bands = 1;
        p->max_tiles = p->per_block * tpi;
        p->band_rows = p->m * p->th + 2;
    } else {
        p->whole_images = false;
        p->per_block = budget / p->tw > 0 ? budget / p->tw : 1;
        if (share_images && p->per_block > (p->th + nt - 1) / nt)
            p->per_block = (p->th + nt - 1) / nt;
        p->items = g->n;
        p->bands = (p->th + p->per_block - 1) / p->per_block;
        p->max_tiles = p->per_block * p->tw;
        p->band_rows = p->m * p->per_block + 2;
    }
}

static void block_of(const conv_geom *g, const wino_plan *p, int64_t item, int64_t band, wino_block *b)
{
    if (p->whole_images) {
        b->n0 = item * p->per_block;
        b->n1 = b->n0 + p->per_block < g->n ? b->n0 + p->per_block : g->n;
        b->ty0 = 0;
        b->ty1 = p->th;
    } else {
        b->n0 = item;
        b->n1 = item + 1;
        b->ty0 = band * p->per_block;
        b->ty1 = b->ty0 + p->per_block < p->th ? b->ty0 + p->per_block : p->th;
    }
    b->tiles = (b->n1 - b->n0) * (b->ty1 - b->ty0) * p->tw;
}

/* Index of tile (n, ty, tx) within its block. */
static inline int64_t tile_index(const wino_plan *p, const wino_block *b, int64_t n, int64_t ty, int64_t tx)
{
    return ((n - b->n0) * (b->ty1 - b->ty0) + (ty - b->ty0)) * p->tw + tx;
}

/* ---- one-dimensional transforms ----------------------------------------------------
 * Each maps a column of values (scalars for the weights, 16-channel vectors elsewhere);
 * the two-dimensional transforms apply them along columns, then along rows. */

/* G g: 3 -> m + 2, on 16 filters at a time */
static inline void g_2(const em_vf16 *v, em_vf16 *o)
{
    o[0] = v[0];
    o[1] = 0.5f * (v[0] + v[1] + v[2]);
    o[2] = 0.5f * (v[0] - v[1] + v[2]);
    o[3] = v[2];
}

#define SIXTH (1.0f / 6.0f)
#define TWELFTH (1.0f / 12.0f)
#define TWENTY_FOURTH (1.0f / 24.0f)

static inline void g_4(const em_vf16 *v, em_vf16 *o)
{
    o[0] = 0.25f * v[0];
    o[1] = -SIXTH * (v[0] + v[1] + v[2]);
    o[2] = -SIXTH * (v[0] - v[1] + v[2]);
    o[3] = TWENTY_FOURTH * v[0] + TWELFTH * v[1] + SIXTH * v[2];
    o[4] = TWENTY_FOURTH * v[0] - TWELFTH * v[1] + SIXTH * v[2];
    o[5] = v[2];
}

/* Gᵀ u: m + 2 -> 3 */
static void gt_2(const float *u, float *o)
{
    o[0] = u[0] + 0.5f * (u[1] + u[2]);
    o[1] = 0.5f * (u[1] - u[2]);
    o[2] = 0.5f * (u[1] + u[2]) + u[3];
}

static void gt_4(const float *u, float *o)
{
    o[0] = 0.25f * u[0] - SIXTH * (u[1] + u[2]) + TWENTY_FOURTH * (u[3] + u[4]);
    o[1] = SIXTH * (u[2] - u[1]) + TWELFTH * (u[3] - u[4]);
    o[2] = SIXTH * (u[3] + u[4] - u[1] - u[2]) + u[5];
}

/* Bᵀ d: a -> a (the input transform) */
static inline void bt_2(const em_vf16 *d, em_vf16 *t)
{
    t[0] = d[0] - d[2];
    t[1] = d[1] + d[2];
    t[2] = d[2] - d[1];
    t[3] = d[1] - d[3];
}

static inline void bt_4(const em_vf16 *d, em_vf16 *t)
{
    const em_vf16 four = em_splat16(4.0f), five = em_splat16(5.0f), two = em_splat16(2.0f);
    em_vf16 d4_d2 = d[4] - d[2], d3_d1 = d[3] - d[1];
    t[0] = four * d[0] - five * d[2] + d[4];
    t[1] = d[3] + d[4] - four * (d[1] + d[2]);
    t[2] = d[4] - d[3] + four * (d[1] - d[2]);
    t[3] = d4_d2 + two * d3_d1;
    t[4] = d4_d2 - two * d3_d1;
    t[5] = four * d[1] - five * d[3] + d[5];
}

/* B v: a -> a (the input gradient's transform) */
static inline void b_2(const em_vf16 *v, em_vf16 *t)
{
    t[0] = v[0];
    t[1] = v[1] - v[2] + v[3];
    t[2] = v[1] + v[2] - v[0];
    t[3] = -v[3];
}

static inline void b_4(const em_vf16 *v, em_vf16 *t)
{
    const em_vf16 four = em_splat16(4.0f), five = em_splat16(5.0f), two = em_splat16(2.0f);
    t[0] = four * v[0];
    t[1] = four * (v[2] - v[1] + v[5]) + two * (v[4] - v[3]);
    t[2] = -five * v[0] - four * (v[1] + v[2]) - v[3] - v[4];
    t[3] = v[1] - v[2] + two * (v[3] - v[4]) - five * v[5];
    t[4] = v[0] + v[1] + v[2] + v[3] + v[4];
    t[5] = v[5];
}

/* Aᵀ m: a -> m (the output transform) */
static inline void at_2(const em_vf16 *v, em_vf16 *y)
{
    y[0] = v[0] + v[1] + v[2];
    y[1] = v[1] - v[2] - v[3];
}

static inline void at_4(const em_vf16 *v, em_vf16 *y)
{
    const em_vf16 two = em_splat16(2.0f), four = em_splat16(4.0f), eight = em_splat16(8.0f);
    em_vf16 s12 = v[1] + v[2], d12 = v[1] - v[2], s34 = v[3] + v[4], d34 = v[3] - v[4];
    y[0] = v[0] + s12 + s34;
    y[1] = d12 + two * d34;
    y[2] = s12 + four * s34;
    y[3] = d12 + eight * d34 + v[5];
}

/* A y: m -> a (the output gradient's transform) */
static inline void a_2(const em_vf16 *y, em_vf16 *v)
{
    v[0] = y[0];
    v[1] = y[0] + y[1];
    v[2] = y[0] - y[1];
    v[3] = -y[1];
}

static inline void a_4(const em_vf16 *y, em_vf16 *v)
{
    const em_vf16 two = em_splat16(2.0f), four = em_splat16(4.0f), eight = em_splat16(8.0f);
    em_vf16 even = y[0] + y[2], odd = y[1] + y[3];
    em_vf16 even4 = y[0] + four * y[2], odd8 = two * y[1] + eight * y[3];
    v[0] = y[0];
    v[1] = even + odd;
    v[2] = even - odd;
    v[3] = even4 + odd8;
    v[4] = even4 - odd8;
    v[5] = y[3];
}

/* ---- weights ----------------------------------------------------------------------- */

/* U_ξ[o][c] = (G g Gᵀ)_ξ for every 3x3 kernel g = w[o][c]. */
/* Tap t of 16 consecutive filters (9 taps each) as one vector. */
static inline em_vf16 filter_taps(const float *w, int t)
{
#if defined(__AVX512F__)
    const __m512i stride9 = _mm512_set_epi32(135, 126, 117, 108, 99, 90, 81, 72, 63, 54, 45, 36, 27, 18, 9, 0);
    return (em_vf16)_mm512_i32gather_ps(stride9, w + t, 4);
#else
    em_vf16 v;
    for (int l = 0; l < 16; l++)
        v[l] = w[9 * l + t];
    return v;
#endif
}

static void weight_transform(const conv_geom *g, const wino_plan *p, const float *w, float *u)
{
    const int64_t oc = g->o * g->c;
    const int a = p->a;
    /* 16 filters at a time, so that each transformed position is stored as one vector
     * (u keeps each position's filters together: scattered scalar stores there cost more
     * than all of the arithmetic). */
    for (int64_t k0 = 0; k0 < oc; k0 += 16) {
        const int64_t lanes = oc - k0 < 16 ? oc - k0 : 16;
        float tail[16 * 9];
        const float *f = w + 9 * k0;
        if (lanes < 16) {
            memset(tail, 0, sizeof tail);
            memcpy(tail, f, (size_t)(9 * lanes) * sizeof(float));
            f = tail;
        }
        em_vf16 col[3], gcol[MAX_A], t[MAX_A][3], row[MAX_A]; /* t = G g */
        for (int j = 0; j < 3; j++) {
            for (int i = 0; i < 3; i++)
                col[i] = filter_taps(f, 3 * i + j);
            p->m == 2 ? g_2(col, gcol) : g_4(col, gcol);
            for (int i = 0; i < a; i++)
                t[i][j] = gcol[i];
        }
        for (int i = 0; i < a; i++) {
            p->m == 2 ? g_2(t[i], row) : g_4(t[i], row);
            for (int j = 0; j < a; j++) {
                float *dst = u + (a * i + j) * oc + k0;
                if (lanes == 16) {
                    em_store16(dst, row[j]);
                } else {
                    float partial[16];
                    em_store16(partial, row[j]);
                    memcpy(dst, partial, (size_t)lanes * sizeof(float));
                }
            }
        }
    }
}

/* dw[o][c] += Gᵀ dU G for each [o][c]. */
static void weight_grad_transform(const conv_geom *g, const wino_plan *p, const float *du, float *dw)
{
    const int64_t oc = g->o * g->c;
    const int a = p->a;
    for (int64_t k = 0; k < oc; k++) {
        float col[MAX_A], t[3][MAX_A], out[3]; /* t = Gᵀ dU */
        for (int j = 0; j < a; j++) {
            for (int i = 0; i < a; i++)
                col[i] = du[(a * i + j) * oc + k];
            p->m == 2 ? gt_2(col, out) : gt_4(col, out);
            for (int i = 0; i < 3; i++)
                t[i][j] = out[i];
        }
        float *f = dw + 9 * k;
        for (int i = 0; i < 3; i++) {
            p->m == 2 ? gt_2(t[i], out) : gt_4(t[i], out);
            for (int j = 0; j < 3; j++)
                f[3 * i + j] += out[j];
        }
    }
}

/* ---- layout changes ---------------------------------------------------------------- */

/* dst[j·ds + i] (+)= src[i·ss + j] for i < rows, j < cols, in 16x16 blocks. With mask,
 * source elements whose mask element (same layout as src) is not positive count as 0:
 * ReLU's derivative applied on the way. Compiled once per combination of mask and add. */
static inline __attribute__((always_inline)) void
transpose_body(const float *src, const float *mask, int64_t ss, int64_t rows, int64_t cols, float *dst,
               int64_t ds, const bool masked, const bool add)
{
    const int64_t rf = rows / 16 * 16, cf = cols / 16 * 16;
    const em_vf16 zero = em_splat16(0.0f);
    for (int64_t i = 0; i < rf; i += 16)
        for (int64_t j = 0; j < cf; j += 16) {
            em_vf16 r[16];
            const float *s0 = src + i * ss + j;
            for (int k = 0; k < 16; k++) {
                r[k] = em_load16(s0 + k * ss);
                if (masked)
                    r[k] = em_select16(em_load16(mask + i * ss + j + k * ss) > zero, r[k], zero);
            }
            em_transpose16_step8(r);
            em_transpose16_step4(r);
            em_transpose16_step2(r);
            em_transpose16_step1(r);
            float *d0 = dst + j * ds + i;
            for (int k = 0; k < 16; k++)
                em_store16(d0 + k * ds, add ? em_load16(d0 + k * ds) + r[k] : r[k]);
        }
    /* The edges: columns past the last full block, then rows past it. */
    for (int64_t j = cf; j < cols; j++)
        for (int64_t i = 0; i < rows; i++) {
            float v = src[i * ss + j];
            if (masked && !(mask[i * ss + j] > 0.0f))
                v = 0.0f;
            dst[j * ds + i] = add ? dst[j * ds + i] + v : v;
        }
    for (int64_t j = 0; j < cf; j++)
        for (int64_t i = rf; i < rows; i++) {
            float v = src[i * ss + j];
            if (masked && !(mask[i * ss + j] > 0.0f))
                v = 0.0f;
            dst[j * ds + i] = add ? dst[j * ds + i] + v : v;
        }
}

static void transpose(const float *src, int64_t ss, int64_t rows, int64_t cols, float *dst, int64_t ds)
{
    transpose_body(src, NULL, ss, rows, cols, dst, ds, false, false);
}

static void transpose_add(const float *src, int64_t ss, int64_t rows, int64_t cols, float *dst, int64_t ds)
{
    transpose_body(src, NULL, ss, rows, cols, dst, ds, false, true);
}

static void transpose_masked(const float *src, const float *mask, int64_t ss, int64_t rows, int64_t cols,
                             float *dst, int64_t ds)
{
    transpose_body(src, mask, ss, rows, cols, dst, ds, true, false);
}

/* Per-thread buffers. */
typedef struct wino_work {
    float *v, *dv, *m;  /* transformed input, its gradient, transformed output (or its gradient) */
    float *band;        /* padded channel-last input rows (or their gradient) */
    float *in_t;        /* input rows of one image, channel-last, padding lanes zero */
    float *out_t;       /* output rows of one image, channel-last, padding lanes zero */
    float *dz;          /* output gradient through a non-ReLU activation, NCHW */
    float *du, *db;     /* partial weight and bias gradients */
} wino_work;

/* Input rows [iy0, iy1) of a block's band: those that exist in x. */
static void band_input_rows(const conv_geom *g, const wino_plan *p, const wino_block *b, int64_t *iy0,
                            int64_t *iy1)
{
    int64_t lo = p->m * b->ty0 - g->ph, hi = p->m * b->ty1 + 2 - g->ph;
    *iy0 = lo < 0 ? 0 : lo;
    *iy1 = hi > g->h ? g->h : hi;
    if (*iy1 < *iy0)
        *iy1 = *iy0;
}

/* ---- inputs ------------------------------------------------------------------------ */

/* Rows m·ty0 .. m·ty1+1 of image n's zero-padded input, channel-last: band[r][col][cp]. */
static void load_band(const conv_geom *g, const wino_plan *p, const wino_block *b, const float *x,
                      int64_t n, wino_work *wk)
{
    const int64_t cols = p->band_cols, rows = p->m * (b->ty1 - b->ty0) + 2, cp = p->cp;
    int64_t iy0, iy1;
    band_input_rows(g, p, b, &iy0, &iy1);
    const int64_t plane = g->h * g->w;
    transpose(x + n * g->c * plane + iy0 * g->w, plane, g->c, (iy1 - iy0) * g->w, wk->in_t, cp);
    const int64_t copy = g->w < cols - g->pw ? g->w : cols - g->pw;
    for (int64_t r = 0; r < rows; r++) {
        float *dst = wk->band + r * cols * cp;
        int64_t iy = p->m * b->ty0 + r - g->ph;
        if (iy < iy0 || iy >= iy1 || copy <= 0) {
            memset(dst, 0, (size_t)(cols * cp) * sizeof(float));
            continue;
        }
        memset(dst, 0, (size_t)(g->pw * cp) * sizeof(float));
        memcpy(dst + g->pw * cp, wk->in_t + (iy - iy0) * g->w * cp, (size_t)(copy * cp) * sizeof(float));
        memset(dst + (g->pw + copy) * cp, 0, (size_t)((cols - g->pw - copy) * cp) * sizeof(float));
    }
}

/* V_ξ[t][c] = (Bᵀ d B)_ξ for every tile of the block (V_ξ at v + ξ·T·cp). */
static inline __attribute__((always_inline)) void
input_transform_body(const conv_geom *g, const wino_plan *p, const wino_block *b, const float *x,
                     wino_work *wk, const int m)
{
    const int a = m + 2;
    const int64_t T = b->tiles, cp = p->cp, cols = p->band_cols, row = cols * cp;
    for (int64_t n = b->n0; n < b->n1; n++) {
        load_band(g, p, b, x, n, wk);
        for (int64_t ty = b->ty0; ty < b->ty1; ty++)
            for (int64_t tx = 0; tx < p->tw; tx++) {
                const float *d = wk->band + (m * (ty - b->ty0) * cols + m * tx) * cp;
                float *out = wk->v + tile_index(p, b, n, ty, tx) * cp;
                for (int64_t c = 0; c < cp; c += 16) {
                    em_vf16 t[MAX_A][MAX_A], col[MAX_A], res[MAX_A]; /* t = Bᵀ d */
                    for (int j = 0; j < a; j++) {
                        for (int i = 0; i < a; i++)
                            col[i] = em_load16(d + i * row + j * cp + c);
                        m == 2 ? bt_2(col, res) : bt_4(col, res);
                        for (int i = 0; i < a; i++)
                            t[i][j] = res[i];
                    }
                    for (int i = 0; i < a; i++) {
                        m == 2 ? bt_2(t[i], res) : bt_4(t[i], res);
                        for (int j = 0; j < a; j++)
                            em_store16(out + (a * i + j) * T * cp + c, res[j]);
                    }
                }
            }
    }
}

static void input_transform(const conv_geom *g, const wino_plan *p, const wino_block *b, const float *x,
                            wino_work *wk)
{
    if (p->m == 2)
        input_transform_body(g, p, b, x, wk, 2);
    else
        input_transform_body(g, p, b, x, wk, 4);
}

/* dx += B dV Bᵀ of every tile at its place, accumulated in a channel-last band first. */
static inline __attribute__((always_inline)) void
input_grad_transform_body(const conv_geom *g, const wino_plan *p, const wino_block *b, float *dx,
                          wino_work *wk, const int m)
{
    const int a = m + 2;
    const int64_t T = b->tiles, cp = p->cp, cols = p->band_cols, row = cols * cp;
    const int64_t rows = m * (b->ty1 - b->ty0) + 2;
    for (int64_t n = b->n0; n < b->n1; n++) {
        memset(wk->band, 0, (size_t)(rows * row) * sizeof(float));
        for (int64_t ty = b->ty0; ty < b->ty1; ty++)
            for (int64_t tx = 0; tx < p->tw; tx++) {
                const float *in = wk->dv + tile_index(p, b, n, ty, tx) * cp;
                float *d = wk->band + (m * (ty - b->ty0) * cols + m * tx) * cp;
                for (int64_t c = 0; c < cp; c += 16) {
                    em_vf16 t[MAX_A][MAX_A], col[MAX_A], res[MAX_A]; /* t = B dV */
                    for (int j = 0; j < a; j++) {
                        for (int i = 0; i < a; i++)
                            col[i] = em_load16(in + (a * i + j) * T * cp + c);
                        m == 2 ? b_2(col, res) : b_4(col, res);
                        for (int i = 0; i < a; i++)
                            t[i][j] = res[i];
                    }
                    for (int i = 0; i < a; i++) {
                        m == 2 ? b_2(t[i], res) : b_4(t[i], res);
                        float *r = d + i * row + c;
                        for (int j = 0; j < a; j++)
                            em_store16(r + j * cp, em_load16(r + j * cp) + res[j]);
                    }
                }
            }
        /* The band's cells inside the real input, gathered channel-last, then back to NCHW. */
        int64_t iy0, iy1;
        band_input_rows(g, p, b, &iy0, &iy1);
        const int64_t copy = g->w < cols - g->pw ? g->w : cols - g->pw;
        if (copy < g->w)
            memset(wk->in_t, 0, (size_t)((iy1 - iy0) * g->w * cp) * sizeof(float));
        for (int64_t iy = iy0; iy < iy1; iy++)
            memcpy(wk->in_t + (iy - iy0) * g->w * cp, wk->band + ((iy + g->ph - m * b->ty0) * cols + g->pw) * cp,
                   (size_t)(copy * cp) * sizeof(float));
        const int64_t plane = g->h * g->w;
        transpose_add(wk->in_t, cp, (iy1 - iy0) * g->w, g->c, dx + n * g->c * plane + iy0 * g->w, plane);
    }
}

static void input_grad_transform(const conv_geom *g, const wino_plan *p, const wino_block *b, float *dx,
                                 wino_work *wk)
{
    if (p->m == 2)
        input_grad_transform_body(g, p, b, dx, wk, 2);
    else
        input_grad_transform_body(g, p, b, dx, wk, 4);
}

/* ---- outputs ----------------------------------------------------------------------- */

/* Output rows [oy0, oy1) of a block. */
static void band_output_rows(const conv_geom *g, const wino_plan *p, const wino_block *b, int64_t *oy0,
                             int64_t *oy1)
{
    *oy0 = p->m * b->ty0;
    *oy1 = p->m * b->ty1 < g->oh ? p->m * b->ty1 : g->oh;
}

/* The m x m outputs Aᵀ M A + bias of every tile (ReLU applied here when relu is set),
 * gathered channel-last per image, then stored to NCHW pre; outputs past the edge are
 * dropped. */
static inline __attribute__((always_inline)) void
output_transform_body(const conv_geom *g, const wino_plan *p, const wino_block *b, const float *bias_padded,
                      bool relu, float *pre, wino_work *wk, int64_t c0, int64_t c1, const int m)
{
    const int a = m + 2;
    const int64_t T = b->tiles, op = p->op;
    int64_t oy0, oy1;
    band_output_rows(g, p, b, &oy0, &oy1);
    const em_vf16 zero = em_splat16(0.0f);
    for (int64_t n = b->n0; n < b->n1; n++) {
        for (int64_t ty = b->ty0; ty < b->ty1; ty++)
            for (int64_t tx = 0; tx < p->tw; tx++) {
                const float *in = wk->m + tile_index(p, b, n, ty, tx) * op;
                const int64_t oy = m * ty, ox = m * tx;
                const int rows = oy + m <= g->oh ? m : (int)(g->oh - oy);
                const int cols = ox + m <= g->ow ? m : (int)(g->ow - ox);
                float *out = wk->out_t + ((oy - oy0) * g->ow + ox) * op;
                for (int64_t o0 = c0; o0 < c1; o0 += 16) {
                    em_vf16 s[MAX_A][MAX_A], col[MAX_A], res[MAX_A]; /* s = Aᵀ M, m x a */
                    for (int k = 0; k < MAX_A; k++)
                        res[k] = zero; /* (only the first m are read; this tells the compiler) */
                    for (int j = 0; j < a; j++) {
                        for (int i = 0; i < a; i++)
                            col[i] = em_load16(in + (a * i + j) * T * op + o0);
                        m == 2 ? at_2(col, res) : at_4(col, res);
                        for (int i = 0; i < m; i++)
                            s[i][j] = res[i];
                    }
                    em_vf16 bias = em_load16(bias_padded + o0);
                    for (int i = 0; i < rows; i++) {
                        m == 2 ? at_2(s[i], res) : at_4(s[i], res);
                        for (int j = 0; j < cols; j++) {
                            em_vf16 v = res[j] + bias;
                            if (relu)
                                v = em_select16(v > zero, v, zero);
                            em_store16(out + (i * g->ow + j) * op + o0, v);
                        }
                    }
                }
            }
        const int64_t last = c1 < g->o ? c1 : g->o;
        transpose(wk->out_t + c0, op, (oy1 - oy0) * g->ow, last - c0,
                  pre + n * g->o * g->p + c0 * g->p + oy0 * g->ow, g->p);
    }
}

/* Output channels [c0, c1) (multiples of 16; c1 may pass o up to op). */
static void output_transform_channels(const conv_geom *g, const wino_plan *p, const wino_block *b,
                                      const float *bias_padded, bool relu, float *pre, wino_work *wk,
                                      int64_t c0, int64_t c1)
{
    if (p->m == 2)
        output_transform_body(g, p, b, bias_padded, relu, pre, wk, c0, c1, 2);
    else
        output_transform_body(g, p, b, bias_padded, relu, pre, wk, c0, c1, 4);
}

static void output_transform(const conv_geom *g, const wino_plan *p, const wino_block *b,
                             const float *bias_padded, bool relu, float *pre, wino_work *wk)
{
    output_transform_channels(g, p, b, bias_padded, relu, pre, wk, 0, p->op);
}

/* Image n's output gradient over the block's tiles, channel-last and zero past the edges
 * (dz_t[oy][ox][op] with rows of m·tw), into wk->band. dz is NCHW for the item's images
 * from n0; y gives ReLU's mask when relu_mask is set. */
static void load_output_grad(const conv_geom *g, const wino_plan *p, const wino_block *b, int64_t n,
                             int64_t n0, const float *dz, const float *y, bool relu_mask, float *db,
                             wino_work *wk)
{
    const int64_t op = p->op, cols = p->m * p->tw, rows = p->m * (b->ty1 - b->ty0);
    int64_t oy0, oy1;
    band_output_rows(g, p, b, &oy0, &oy1);
    const int64_t image = (n - n0) * g->o * g->p + oy0 * g->ow;
    if (relu_mask)
        transpose_masked(dz + image, y + image, g->p, g->o, (oy1 - oy0) * g->ow, wk->out_t, op);
    else
        transpose(dz + image, g->p, g->o, (oy1 - oy0) * g->ow, wk->out_t, op);
    if (db) {
        /* The bias gradient from the channel-last rows, while they are in cache (padding
         * lanes are zero; db has room for them). */
        for (int64_t o0 = 0; o0 < op; o0 += 16) {
            em_vf16 acc = em_splat16(0.0f);
            for (int64_t r = 0; r < (oy1 - oy0) * g->ow; r++)
                acc += em_load16(wk->out_t + r * op + o0);
            em_store16(db + o0, em_load16(db + o0) + acc);
        }
    }
    float *dz_t = wk->band;
    for (int64_t r = 0; r < rows; r++) {
        float *dst = dz_t + r * cols * op;
        if (oy0 + r >= oy1) {
            memset(dst, 0, (size_t)(cols * op) * sizeof(float));
            continue;
        }
        memcpy(dst, wk->out_t + r * g->ow * op, (size_t)(g->ow * op) * sizeof(float));
        memset(dst + g->ow * op, 0, (size_t)((cols - g->ow) * op) * sizeof(float));
    }
}

/* dM = A dZ Aᵀ of every tile of image n (dM_ξ at m + ξ·T·op), from load_output_grad's rows. */
static inline __attribute__((always_inline)) void
output_grad_transform_body(const wino_plan *p, const wino_block *b, int64_t n, wino_work *wk, const int m)
{
    const int a = m + 2;
    const int64_t T = b->tiles, op = p->op, cols = m * p->tw;
    for (int64_t ty = b->ty0; ty < b->ty1; ty++)
        for (int64_t tx = 0; tx < p->tw; tx++) {
            const float *z = wk->band + (m * (ty - b->ty0) * cols + m * tx) * op;
            float *out = wk->m + tile_index(p, b, n, ty, tx) * op;
            for (int64_t o0 = 0; o0 < op; o0 += 16) {
                em_vf16 t[MAX_A][MAX_A], col[MAX_A], res[MAX_A]; /* t = A dZ, a x m */
                for (int j = 0; j < m; j++) {
                    for (int i = 0; i < m; i++)
                        col[i] = em_load16(z + (i * cols + j) * op + o0);
                    m == 2 ? a_2(col, res) : a_4(col, res);
                    for (int i = 0; i < a; i++)
                        t[i][j] = res[i];
                }
                for (int i = 0; i < a; i++) {
                    m == 2 ? a_2(t[i], res) : a_4(t[i], res);
                    for (int j = 0; j < a; j++)
                        em_store16(out + (a * i + j) * T * op + o0, res[j]);
                }
            }
        }
}

static void output_grad_transform(const wino_plan *p, const wino_block *b, int64_t n, wino_work *wk)
{
    if (p->m == 2)
        output_grad_transform_body(p, b, n, wk, 2);
    else
        output_grad_transform_body(p, b, n, wk, 4);
}

/* ---- scratch ----------------------------------------------------------------------- */

/* Floats rounded up to whole cache lines. */
static size_t lines(int64_t floats) { return (size_t)((floats + 15) / 16 * 16); }

typedef struct wino_sizes {
    size_t v, dv, m, band, in_t, out_t, dz, du, db, total;
} wino_sizes;

static void scratch_sizes(const conv_geom *g, const wino_plan *p, bool backward, bool need_x, bool need_w,
                          bool need_b, bool need_dz, wino_sizes *z)
{
    const int64_t tile_rows = p->whole_images ? p->th : p->per_block;
    const int64_t in_rows = p->m * tile_rows + 2 < g->h ? p->m * tile_rows + 2 : g->h;
    const int64_t out_rows = p->m * tile_rows < g->oh ? p->m * tile_rows : g->oh;
    const int64_t band_cp = p->band_rows * p->band_cols * p->cp;
    const int64_t band_op = p->m * tile_rows * p->m * p->tw * p->op; /* output gradient rows */
    z->v = !backward || need_w ? lines(p->xi * p->max_tiles * p->cp) : 0;
    z->dv = backward && need_x ? lines(p->xi * p->max_tiles * p->cp) : 0;
    z->m = lines(p->xi * p->max_tiles * p->op);
    z->band = lines(backward && band_op > band_cp ? band_op : band_cp);
    z->in_t = lines(in_rows * g->w * p->cp);
    z->out_t = lines(out_rows * g->ow * p->op);
    z->dz = backward && need_dz ? lines((p->whole_images ? p->per_block : 1) * g->o * g->p) : 0;
    z->du = backward && need_w ? lines(p->xi * g->o * g->c) : 0;
    z->db = backward && need_b ? lines(g->o) : 0;
    z->total = z->v + z->dv + z->m + z->band + z->in_t + z->out_t + z->dz + z->du + z->db;
}

/* Thread t's buffers, with the padding lanes (which no GEMM or transpose writes, when the
 * channel counts are not multiples of 16) set to zero, and the partial gradients. */
static void thread_work(const conv_geom *g, const wino_plan *p, const wino_sizes *z, float *scratch, int t,
                        wino_work *wk)
{
    float *c = scratch + (size_t)t * z->total;
    wk->v = c, c += z->v;
    wk->dv = c, c += z->dv;
    wk->m = c, c += z->m;
    wk->band = c, c += z->band;
    wk->in_t = c, c += z->in_t;
    wk->out_t = c, c += z->out_t;
    wk->dz = c, c += z->dz;
    wk->du = c, c += z->du;
    wk->db = c;
    if (p->cp != g->c) {
        memset(wk->dv, 0, z->dv * sizeof(float));
        memset(wk->in_t, 0, z->in_t * sizeof(float));
    }
    if (p->op != g->o) {
        memset(wk->m, 0, z->m * sizeof(float));
        memset(wk->out_t, 0, z->out_t * sizeof(float));
    }
    memset(wk->du, 0, (z->du + z->db) * sizeof(float));
}

/* ---- forward ----------------------------------------------------------------------- */

void em_conv_winograd_weights(const conv_geom *g, int m, const float *w, float *u)
{
    wino_plan p = {.m = m, .a = m + 2, .xi = (m + 2) * (m + 2)};
    weight_transform(g, &p, w, u);
}

/* Forward with the transformed weights either in [a²][o·c] (u, for BLAS and backward) or
 * packed [a²][c][op] (packed, from the inference cache). */
static int winograd_forward(const conv_geom *g, const wino_plan *pp, const float *x, const float *u,
                            const float *packed, const float *bias, em_activation act, float act_param,
                            float *pre, float *y)
{
    const wino_plan p = *pp;
    /* Forward's blocks write disjoint outputs, so bands of one image may run at once. */
    const int64_t jobs = p.items * p.bands;
    int nt = omp_get_max_threads();
    if (nt > jobs)
        nt = (int)jobs;
    wino_sizes z;
    scratch_sizes(g, &p, false, false, false, false, false, &z);
    float *scratch = em_arena_alloc(em_step_arena(), (size_t)nt * z.total * sizeof(float));
    float *bias_padded = em_arena_alloc(em_step_arena(), (size_t)p.op * sizeof(float));
    if (!scratch || !bias_padded)
        return EM_ERR;
    for (int64_t o = 0; o < p.op; o++)
        bias_padded[o] = bias && o < g->o ? bias[o] : 0.0f;
    const bool fused_relu = act == EM_ACT_RELU && pre == y;
    const int64_t out_image = g->o * g->p;
    const int o = (int)g->o, c = (int)g->c, cp = (int)p.cp, op = (int)p.op;
#pragma omp parallel num_threads(nt)
    {
        wino_work wk;
        thread_work(g, &p, &z, scratch, omp_get_thread_num(), &wk);
#pragma omp for schedule(static)
        for (int64_t job = 0; job < jobs; job++) {
            wino_block b;
            block_of(g, &p, job / p.bands, job % p.bands, &b);
            const int t = (int)b.tiles;
            input_transform(g, &p, &b, x, &wk);
            for (int xi = 0; xi < p.xi; xi++) {
                if (packed)
                    em_conv_packed_gemm(t, c, op, wk.v + (size_t)xi * t * cp, cp, packed + (size_t)xi * c * op,
                                        op, wk.m + (size_t)xi * t * op, op);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, o, c, 1.0f,
                                wk.v + (size_t)xi * t * cp, cp, u + (size_t)xi * o * c, c, 0.0f,
                                wk.m + (size_t)xi * t * op, op);
            }
            output_transform(g, &p, &b, bias_padded, fused_relu, pre, &wk);
            if (fused_relu)
                continue;
            if (p.whole_images) {
                em_conv_activate(act, act_param, pre + b.n0 * out_image, y + b.n0 * out_image,
                                 (b.n1 - b.n0) * out_image);
            } else {
                /* The band's output rows of each channel. */
                int64_t oy0, oy1;
                band_output_rows(g, &p, &b, &oy0, &oy1);
                for (int64_t ch = 0; ch < g->o; ch++) {
                    const int64_t at = b.n0 * out_image + ch * g->p + oy0 * g->ow;
                    em_conv_activate(act, act_param, pre + at, y + at, (oy1 - oy0) * g->ow);
                }
            }
        }
    }
    return EM_OK;
}

int em_conv_winograd_forward(const conv_geom *g, const float *x, const float *w, const float *bias,
                             em_activation act, float act_param, float *pre, float *y,
                             const float **u_out)
{
    wino_plan p;
    make_plan(g, &p);
    float *u = em_arena_alloc(em_step_arena(), (size_t)(p.xi * g->o * g->c) * sizeof(float));
    if (!u)
        return EM_ERR;
    weight_transform(g, &p, w, u);
    *u_out = u;
    return winograd_forward(g, &p, x, u, NULL, bias, act, act_param, pre, y);
}

/* A batch smaller than the team, with packed weights: every thread transforms each block's
 * input on its own, then computes a share of the output channels. Unlike bands of tile
 * rows, this balances the products whatever the tile count, and each thread's outputs are
 * whole channel planes, which a following pooling layer splits the same way (planes in
 * order over the threads), so they are read by the core that wrote them. */
/* Output channels [c0, c1) of every block of plan p over x (the images of g) into y. */
static void infer_channels(const conv_geom *g, const wino_plan *p, const float *x, const float *packed,
                           const float *bias_padded, em_activation act, float act_param, float *y,
                           wino_work *wk, int64_t c0, int64_t c1)
{
    const bool fused_relu = act == EM_ACT_RELU;
    const int64_t out_image = g->o * g->p, jobs = p->items * p->bands;
    const int64_t c = g->c, cp = p->cp, op = p->op;
    for (int64_t job = 0; job < jobs && c1 > c0; job++) {
        wino_block b;
        block_of(g, p, job / p->bands, job % p->bands, &b);
        const int64_t tiles = b.tiles;
        input_transform(g, p, &b, x, wk);
        for (int xi = 0; xi < p->xi; xi++)
            em_conv_packed_gemm(tiles, c, c1 - c0, wk->v + (size_t)xi * tiles * cp, cp,
                                packed + (size_t)xi * c * op + c0, op, wk->m + (size_t)xi * tiles * op + c0, op);
        output_transform_channels(g, p, &b, bias_padded, fused_relu, y, wk, c0, c1);
        if (fused_relu)
            continue;
        int64_t oy0, oy1;
        band_output_rows(g, p, &b, &oy0, &oy1);
        const int64_t last = c1 < g->o ? c1 : g->o;
        for (int64_t n = b.n0; n < b.n1; n++)
            for (int64_t ch = c0; ch < last; ch++) {
                const int64_t at = n * out_image + ch * g->p + oy0 * g->ow;
                em_conv_activate(act, act_param, y + at, y + at, (oy1 - oy0) * g->ow);
            }
    }
}

static float *padded_bias(const wino_plan *p, const conv_geom *g, const float *bias)
{
    float *bias_padded = em_arena_alloc(em_step_arena(), (size_t)p->op * sizeof(float));
    if (bias_padded)
        for (int64_t o = 0; o < p->op; o++)
            bias_padded[o] = bias && o < g->o ? bias[o] : 0.0f;
    return bias_padded;
}

static int winograd_infer_by_channels(const conv_geom *g, const wino_plan *pp, const float *x,
                                      const float *packed, const float *bias, em_activation act,
                                      float act_param, float *y, const conv_pool_epilogue *ep)
{
    const wino_plan p = *pp;
    const int nt = omp_get_max_threads();
    wino_sizes z;
    scratch_sizes(g, &p, false, false, false, false, false, &z);
    float *scratch = em_arena_alloc(em_step_arena(), (size_t)nt * z.total * sizeof(float));
    float *bias_padded = padded_bias(&p, g, bias);
    if (!scratch || !bias_padded)
        return EM_ERR;
    const int64_t out_image = g->o * g->p;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        const int64_t units = p.op / 16;
        const int64_t c0 = units * t / team * 16, c1 = units * (t + 1) / team * 16;
        wino_work wk;
        thread_work(g, &p, &z, scratch, t, &wk);
        infer_channels(g, &p, x, packed, bias_padded, act, act_param, y, &wk, c0, c1);
        const int64_t last = c1 < g->o ? c1 : g->o;
        if (ep && last > c0)
            for (int64_t n = 0; n < g->n; n++)
                em_max_pool_planes(ep->pool, y + n * out_image + c0 * g->p,
                                   ep->out + (n * g->o + c0) * ep->pool->oh * ep->pool->ow, NULL, last - c0);
    }
    return EM_OK;
}

/* A batch with pooling after it: the threads take whole images; each image's output goes
 * to a buffer of the thread's own and is pooled from there, so that of the batch only
 * the pooled output is ever held (an evaluation pass at batch 500 on W2's second layer
 * would otherwise keep 25 MB of convolution output). */
int em_conv_winograd_infer_pooled(const conv_geom *g, const float *x, const float *w, const float *bias,
                                  em_activation act, float act_param, const conv_pool_epilogue *ep, bool *done)
{
    conv_geom one = *g;
    one.n = 1;
    wino_plan p;
    make_plan_for(&one, &p, false);
    const float *packed = em_conv_winograd_packed_weights(g, p.m, w);
    *done = packed != NULL;
    if (!packed)
        return EM_OK;
    int nt = omp_get_max_threads();
    if (nt > g->n)
        nt = (int)g->n;
    wino_sizes z;
    scratch_sizes(&one, &p, false, false, false, false, false, &z);
    const size_t image = (size_t)(g->o * g->p + 15) / 16 * 16;
    float *scratch = em_arena_alloc(em_step_arena(), (size_t)nt * z.total * sizeof(float));
    float *images = em_arena_alloc(em_step_arena(), (size_t)nt * image * sizeof(float));
    float *bias_padded = padded_bias(&p, g, bias);
    if (!scratch || !images || !bias_padded)
        return EM_ERR;
    const int64_t in_image = g->c * g->h * g->w, pooled = g->o * ep->pool->oh * ep->pool->ow;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        wino_work wk;
        thread_work(&one, &p, &z, scratch, t, &wk);
        float *y = images + (size_t)t * image;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g->n; n++) {
            infer_channels(&one, &p, x + n * in_image, packed, bias_padded, act, act_param, y, &wk, 0, p.op);
            em_max_pool_planes(ep->pool, y, ep->out + n * pooled, NULL, g->o);
        }
    }
    return EM_OK;
}

int em_conv_winograd_infer(const conv_geom *g, const float *x, const float *w, const float *bias,
                           em_activation act, float act_param, float *y, const float **u_out,
                           const conv_pool_epilogue *ep, bool *pooled)
{
    *pooled = false;
    const bool by_channels = g->n < omp_get_max_threads() && !omp_in_parallel();
    wino_plan p;
    make_plan_for(g, &p, !by_channels);
    const float *packed = em_conv_winograd_packed_weights(g, p.m, w);
    if (!packed)
        return em_conv_winograd_forward(g, x, w, bias, act, act_param, y, y, u_out);
    *u_out = NULL;
    if (by_channels) {
        *pooled = ep != NULL;
        return winograd_infer_by_channels(g, &p, x, packed, bias, act, act_param, y, ep);
    }
    return winograd_forward(g, &p, x, NULL, packed, bias, act, act_param, y, y);
}

/* ---- backward ---------------------------------------------------------------------- */

int em_conv_winograd_backward(const conv_saved *s, em_tensor *x, em_tensor *w, em_tensor *b,
                              const float *y, const float *dy)
{
    const conv_geom *g = &s->g;
    bool need_x = x->requires_grad, need_w = w->requires_grad, need_b = b && b->requires_grad;
    wino_plan p;
    make_plan(g, &p);
    int nt = omp_get_max_threads();
    if (nt > p.items)
        nt = (int)p.items;
    const int64_t out_image = g->o * g->p, usize = p.xi * g->o * g->c;
    /* ReLU's mask (and no activation) is applied while loading dy; others go through a
     * dz buffer first. */
    const bool relu_mask = s->act == EM_ACT_RELU;
    const bool need_dz = s->act != EM_ACT_NONE && !relu_mask;
    wino_sizes z;
    scratch_sizes(g, &p, true, need_x, need_w, need_b, need_dz, &z);
    const float *u = s->winograd_u;
    if (!u) {
        float *fresh = em_arena_alloc(em_step_arena(), (size_t)usize * sizeof(float));
        if (!fresh)
            return EM_ERR;
        weight_transform(g, &p, w->data, fresh);
        u = fresh;
    }
    float *scratch = em_arena_alloc(em_step_arena(), (size_t)nt * z.total * sizeof(float));
    if (!scratch)
        return EM_ERR;
    const int o = (int)g->o, c = (int)g->c, cp = (int)p.cp, op = (int)p.op;

#pragma omp parallel num_threads(nt)
    {
        wino_work wk;
        thread_work(g, &p, &z, scratch, omp_get_thread_num(), &wk);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < p.items; item++) {
            wino_block blk;
            block_of(g, &p, item, 0, &blk);
            const int64_t n0 = blk.n0, n1 = p.whole_images ? blk.n1 : n0 + 1;
            const float *y_item = y + n0 * out_image, *dz = dy + n0 * out_image;
            if (need_dz)
                dz = em_conv_activation_grad(s->act, s->act_param, s->pre ? s->pre + n0 * out_image : NULL,
                                             y_item, dz, wk.dz, (n1 - n0) * out_image);
            /* With the weight or input gradient, the bias gradient comes with the output
             * gradient's loading below. */
            const bool separate_db = need_b && !need_w && !need_x;
            if (separate_db)
                for (int64_t n = 0; n < n1 - n0; n++)
                    for (int64_t oc = 0; oc < g->o; oc++) {
                        const float *zp = dz + (n * g->o + oc) * g->p, *yp = y_item + (n * g->o + oc) * g->p;
                        float acc = 0.0f;
                        if (relu_mask) {
#pragma omp simd reduction(+ : acc)
                            for (int64_t q = 0; q < g->p; q++)
                                acc += yp[q] > 0.0f ? zp[q] : 0.0f;
                        } else {
#pragma omp simd reduction(+ : acc)
                            for (int64_t q = 0; q < g->p; q++)
                                acc += zp[q];
                        }
                        wk.db[oc] += acc;
                    }
            if (!need_w && !need_x)
                continue;
            for (int64_t k = 0; k < p.bands; k++) {
                block_of(g, &p, item, k, &blk);
                const int t = (int)blk.tiles;
                for (int64_t n = blk.n0; n < blk.n1; n++) {
                    load_output_grad(g, &p, &blk, n, n0, dz, y_item, relu_mask, need_b ? wk.db : NULL, &wk);
                    output_grad_transform(&p, &blk, n, &wk);
                }
                if (need_w) {
                    input_transform(g, &p, &blk, x->data, &wk);
                    for (int xi = 0; xi < p.xi; xi++)
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o, c, t, 1.0f,
                                    wk.m + (size_t)xi * t * op, op, wk.v + (size_t)xi * t * cp, cp, 1.0f,
                                    wk.du + (size_t)xi * o * c, c);
                }
                if (need_x) {
                    for (int xi = 0; xi < p.xi; xi++)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, c, o, 1.0f,
                                    wk.m + (size_t)xi * t * op, op, u + (size_t)xi * o * c, c, 0.0f,
                                    wk.dv + (size_t)xi * t * cp, cp);
                    input_grad_transform(g, &p, &blk, x->grad, &wk);
                }
            }
        }
    }
    /* Sum the threads' partial dU into the first, then transform once. */
    wino_work w0;
    w0.du = scratch + z.v + z.dv + z.m + z.band + z.in_t + z.out_t + z.dz;
    w0.db = w0.du + z.du;
    for (int t = 1; t < nt && need_w; t++) {
        const float *part = w0.du + (size_t)t * z.total;
        for (int64_t i = 0; i < usize; i++)
            w0.du[i] += part[i];
    }
    if (need_w)
        weight_grad_transform(g, &p, w0.du, w->grad);
    for (int t = 0; t < nt && need_b; t++) {
        const float *part = w0.db + (size_t)t * z.total;
        for (int64_t oc = 0; oc < g->o; oc++)
            b->grad[oc] += part[oc];
    }
    return EM_OK;
}
