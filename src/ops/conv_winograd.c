/* 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3).
 *
 * Each 2x2 block of outputs comes from a 4x4 input tile d as Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A:
 * 16 products per channel pair instead of the 36 of the direct form. With the weights
 * transformed once (U = G g Gᵀ) and the input tiles transformed into V = Bᵀ d B, the sum
 * over input channels becomes 16 independent GEMMs, one per position ξ of the 4x4
 * transformed tile: M_ξ [O, tiles] = U_ξ [O, C] · V_ξ [C, tiles]; the output transform
 * Aᵀ M A then gives the 2x2 outputs. So the GEMM work is 16/36 of im2col's.
 *
 * Backward differentiates exactly this computation, so it stays in the same domain:
 * dM = A dY Aᵀ per tile, dU_ξ += dM_ξ · V_ξᵀ, dV_ξ = U_ξᵀ · dM_ξ, then dW = Gᵀ dU G and
 * dx gets B dV Bᵀ added at each tile's place (tiles overlap by two rows and columns).
 *
 * Work goes in blocks of whole images (or bands of tile rows when one image has more tiles
 * than a block holds), sized so that a block's transformed data stays in L2 between the
 * transforms and the GEMMs; threads take blocks, BLAS runs on one thread in each. Inputs
 * are read through a zero-padded copy of the rows a band needs, so the transforms never
 * test bounds. */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "ember/error.h"
#include "ops/conv_internal.h"

#define XI 16 /* positions in a transformed 4x4 tile */
/* Transformed data (V, dV and dM in backward) per block: about this many bytes. */
#define BLOCK_BYTES (512 * 1024)
/* Fewer channels than this make GEMMs too thin for the transforms to pay. */
#define MIN_CHANNELS 8

static em_conv_algorithm forced_algorithm;

void em_conv_force_algorithm(em_conv_algorithm algorithm) { forced_algorithm = algorithm; }

bool em_conv_winograd_applies(const conv_geom *g)
{
    bool possible = g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 &&
                    g->dw == 1 && g->groups == 1;
    if (!possible || forced_algorithm == EM_CONV_UNFOLDED)
        return false;
    if (forced_algorithm == EM_CONV_WINOGRAD)
        return true;
    return g->c >= MIN_CHANNELS && g->o >= MIN_CHANNELS && g->n >= omp_get_max_threads();
}

/* ---- blocks ------------------------------------------------------------------------ */

typedef struct wino_plan {
    int64_t th, tw, tpi;  /* tile rows and columns per image, tiles per image */
    int64_t band_cols;    /* padded input row: 2·tw + 2 */
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

static void make_plan(const conv_geom *g, wino_plan *p)
{
    p->th = (g->oh + 1) / 2;
    p->tw = (g->ow + 1) / 2;
    p->tpi = p->th * p->tw;
    p->band_cols = 2 * p->tw + 2;
    int64_t tile_bytes = (int64_t)XI * (2 * g->c + g->o) * (int64_t)sizeof(float);
    int64_t budget = BLOCK_BYTES / tile_bytes;
    if (budget < 1)
        budget = 1;
    if (p->tpi <= budget) {
        p->whole_images = true;
        p->per_block = budget / p->tpi;
        if (p->per_block > g->n)
            p->per_block = g->n;
        /* Every thread should get blocks: shrink them when the batch is small. */
        int nt = omp_get_max_threads();
        while (p->per_block > 1 && (g->n + p->per_block - 1) / p->per_block < nt)
            p->per_block--;
        p->items = (g->n + p->per_block - 1) / p->per_block;
        p->bands = 1;
        p->max_tiles = p->per_block * p->tpi;
    } else {
        p->whole_images = false;
        p->per_block = budget / p->tw > 0 ? budget / p->tw : 1;
        p->items = g->n;
        p->bands = (p->th + p->per_block - 1) / p->per_block;
        p->max_tiles = p->per_block * p->tw;
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

/* Images of an item: [*n0, *n1). */
static void item_images(const conv_geom *g, const wino_plan *p, int64_t item, int64_t *n0, int64_t *n1)
{
    wino_block b;
    block_of(g, p, item, 0, &b);
    *n0 = b.n0;
    *n1 = b.n1;
}

/* Rows 2·ty0 .. 2·ty1+1 of the zero-padded input plane, band_cols wide. */
static void load_band(const conv_geom *g, const wino_plan *p, const float *plane, const wino_block *b,
                      float *band)
{
    const int64_t cols = p->band_cols, rows = 2 * (b->ty1 - b->ty0) + 2;
    int64_t copy = g->w < cols - g->pw ? g->w : cols - g->pw;
    for (int64_t r = 0; r < rows; r++) {
        float *dst = band + r * cols;
        int64_t iy = 2 * b->ty0 + r - g->ph;
        if (iy < 0 || iy >= g->h || copy <= 0) {
            memset(dst, 0, (size_t)cols * sizeof(float));
            continue;
        }
        memset(dst, 0, (size_t)g->pw * sizeof(float));
        memcpy(dst + g->pw, plane + iy * g->w, (size_t)copy * sizeof(float));
        memset(dst + g->pw + copy, 0, (size_t)(cols - g->pw - copy) * sizeof(float));
    }
}

/* ---- transforms -------------------------------------------------------------------- */

/* U_ξ[o][c] = (G g Gᵀ)_ξ for every 3x3 kernel g = w[o][c]. */
static void weight_transform(const conv_geom *g, const float *w, float *u)
{
    const int64_t oc = g->o * g->c;
    for (int64_t k = 0; k < oc; k++) {
        const float *f = w + 9 * k;
        float t[4][3]; /* G g */
        for (int j = 0; j < 3; j++) {
            t[0][j] = f[j];
            t[1][j] = 0.5f * (f[j] + f[3 + j] + f[6 + j]);
            t[2][j] = 0.5f * (f[j] - f[3 + j] + f[6 + j]);
            t[3][j] = f[6 + j];
        }
        for (int i = 0; i < 4; i++) {
            u[(4 * i + 0) * oc + k] = t[i][0];
            u[(4 * i + 1) * oc + k] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
            u[(4 * i + 2) * oc + k] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
            u[(4 * i + 3) * oc + k] = t[i][2];
        }
    }
}

/* dw[o][c] += (Gᵀ dU G) for each [o][c]. */
static void weight_grad_transform(const conv_geom *g, const float *du, float *dw)
{
    const int64_t oc = g->o * g->c;
    for (int64_t k = 0; k < oc; k++) {
        float m[4][4], t[3][4]; /* dU and Gᵀ dU */
        for (int x = 0; x < XI; x++)
            m[x / 4][x % 4] = du[x * oc + k];
        for (int j = 0; j < 4; j++) {
            t[0][j] = m[0][j] + 0.5f * (m[1][j] + m[2][j]);
            t[1][j] = 0.5f * (m[1][j] - m[2][j]);
            t[2][j] = 0.5f * (m[1][j] + m[2][j]) + m[3][j];
        }
        float *f = dw + 9 * k;
        for (int i = 0; i < 3; i++) {
            f[3 * i + 0] += t[i][0] + 0.5f * (t[i][1] + t[i][2]);
            f[3 * i + 1] += 0.5f * (t[i][1] - t[i][2]);
            f[3 * i + 2] += 0.5f * (t[i][1] + t[i][2]) + t[i][3];
        }
    }
}

/* V_ξ[c][t] = (Bᵀ d B)_ξ for every tile t of the block (V_ξ at v + ξ·C·T). */
static void input_transform(const conv_geom *g, const wino_plan *p, const wino_block *b, const float *x,
                            float *v, float *band)
{
    const int64_t T = b->tiles, stride = g->c * T, rows = b->ty1 - b->ty0, cols = p->band_cols;
    for (int64_t n = b->n0; n < b->n1; n++)
        for (int64_t c = 0; c < g->c; c++) {
            load_band(g, p, x + (n * g->c + c) * g->h * g->w, b, band);
            for (int64_t ty = 0; ty < rows; ty++) {
                const float *r0 = band + 2 * ty * cols, *r1 = r0 + cols, *r2 = r1 + cols, *r3 = r2 + cols;
                float *out = v + c * T + ((n - b->n0) * rows + ty) * p->tw;
                for (int64_t tx = 0; tx < p->tw; tx++) {
                    const int64_t q = 2 * tx;
                    float t[4][4]; /* Bᵀ d */
                    for (int j = 0; j < 4; j++) {
                        t[0][j] = r0[q + j] - r2[q + j];
                        t[1][j] = r1[q + j] + r2[q + j];
                        t[2][j] = r2[q + j] - r1[q + j];
                        t[3][j] = r1[q + j] - r3[q + j];
                    }
                    for (int i = 0; i < 4; i++) {
                        out[(4 * i + 0) * stride + tx] = t[i][0] - t[i][2];
                        out[(4 * i + 1) * stride + tx] = t[i][1] + t[i][2];
                        out[(4 * i + 2) * stride + tx] = t[i][2] - t[i][1];
                        out[(4 * i + 3) * stride + tx] = t[i][1] - t[i][3];
                    }
                }
            }
        }
}

/* The 2x2 outputs (Aᵀ M A) + bias of every tile into pre, dropping those past the edge. */
static void output_transform(const conv_geom *g, const wino_plan *p, const wino_block *b, const float *m,
                             const float *bias, float *pre)
{
    const int64_t T = b->tiles, stride = g->o * T, rows = b->ty1 - b->ty0;
    const int64_t full_tx = g->ow / 2; /* tiles whose two columns are both inside */
    for (int64_t n = b->n0; n < b->n1; n++)
        for (int64_t o = 0; o < g->o; o++) {
            const float bo = bias ? bias[o] : 0.0f;
            float *plane = pre + (n * g->o + o) * g->p;
            for (int64_t ty = 0; ty < rows; ty++) {
                const int64_t oy = 2 * (b->ty0 + ty);
                const bool second_row = oy + 1 < g->oh;
                const float *in = m + o * T + ((n - b->n0) * rows + ty) * p->tw;
                float *y0 = plane + oy * g->ow, *y1 = second_row ? y0 + g->ow : NULL;
                for (int64_t tx = 0; tx < p->tw; tx++) {
                    float s[2][4]; /* Aᵀ M */
                    for (int j = 0; j < 4; j++) {
                        float a0 = in[j * stride + tx], a1 = in[(4 + j) * stride + tx];
                        float a2 = in[(8 + j) * stride + tx], a3 = in[(12 + j) * stride + tx];
                        s[0][j] = a0 + a1 + a2;
                        s[1][j] = a1 - a2 - a3;
                    }
                    float v00 = s[0][0] + s[0][1] + s[0][2] + bo, v01 = s[0][1] - s[0][2] - s[0][3] + bo;
                    float v10 = s[1][0] + s[1][1] + s[1][2] + bo, v11 = s[1][1] - s[1][2] - s[1][3] + bo;
                    y0[2 * tx] = v00;
                    if (tx < full_tx)
                        y0[2 * tx + 1] = v01;
                    if (y1) {
                        y1[2 * tx] = v10;
                        if (tx < full_tx)
                            y1[2 * tx + 1] = v11;
                    }
                }
            }
        }
}

/* dM = A dZ Aᵀ of every tile, dZ being zero past the output's edge (dM_ξ at dm + ξ·O·T). */
static void output_grad_transform(const conv_geom *g, const wino_plan *p, const wino_block *b,
                                  const float *dz_images, float *dm)
{
    const int64_t T = b->tiles, stride = g->o * T, rows = b->ty1 - b->ty0;
    const int64_t full_tx = g->ow / 2;
    for (int64_t n = b->n0; n < b->n1; n++)
        for (int64_t o = 0; o < g->o; o++) {
            const float *plane = dz_images + ((n - b->n0) * g->o + o) * g->p;
            for (int64_t ty = 0; ty < rows; ty++) {
                const int64_t oy = 2 * (b->ty0 + ty);
                const float *z0 = plane + oy * g->ow, *z1 = oy + 1 < g->oh ? z0 + g->ow : NULL;
                float *out = dm + o * T + ((n - b->n0) * rows + ty) * p->tw;
                for (int64_t tx = 0; tx < p->tw; tx++) {
                    bool second_col = tx < full_tx;
                    float a = z0[2 * tx], bb = second_col ? z0[2 * tx + 1] : 0.0f;
                    float c = z1 ? z1[2 * tx] : 0.0f, d = z1 && second_col ? z1[2 * tx + 1] : 0.0f;
                    const float r[4][2] = {{a, bb}, {a + c, bb + d}, {a - c, bb - d}, {-c, -d}};
                    for (int i = 0; i < 4; i++) {
                        out[(4 * i + 0) * stride + tx] = r[i][0];
                        out[(4 * i + 1) * stride + tx] = r[i][0] + r[i][1];
                        out[(4 * i + 2) * stride + tx] = r[i][0] - r[i][1];
                        out[(4 * i + 3) * stride + tx] = -r[i][1];
                    }
                }
            }
        }
}

/* dx += B dV Bᵀ of every tile at its place (through a padded band, like the input). */
static void input_grad_transform(const conv_geom *g, const wino_plan *p, const wino_block *b,
                                 const float *dv, float *dx, float *band)
{
    const int64_t T = b->tiles, stride = g->c * T, rows = b->ty1 - b->ty0, cols = p->band_cols;
    const int64_t band_rows = 2 * rows + 2;
    for (int64_t n = b->n0; n < b->n1; n++)
        for (int64_t c = 0; c < g->c; c++) {
            memset(band, 0, (size_t)(band_rows * cols) * sizeof(float));
            for (int64_t ty = 0; ty < rows; ty++) {
                const float *in = dv + c * T + ((n - b->n0) * rows + ty) * p->tw;
                float *r0 = band + 2 * ty * cols;
                for (int64_t tx = 0; tx < p->tw; tx++) {
                    float m[4][4], t[4][4]; /* dV and B dV */
                    for (int x = 0; x < XI; x++)
                        m[x / 4][x % 4] = in[x * stride + tx];
                    for (int j = 0; j < 4; j++) {
                        t[0][j] = m[0][j];
                        t[1][j] = m[1][j] - m[2][j] + m[3][j];
                        t[2][j] = -m[0][j] + m[1][j] + m[2][j];
                        t[3][j] = -m[3][j];
                    }
                    for (int i = 0; i < 4; i++) {
                        float *r = r0 + i * cols + 2 * tx;
                        r[0] += t[i][0];
                        r[1] += t[i][1] - t[i][2] + t[i][3];
                        r[2] += -t[i][0] + t[i][1] + t[i][2];
                        r[3] += -t[i][3];
                    }
                }
            }
            /* The band's rows inside the real input, added to dx. */
            float *plane = dx + (n * g->c + c) * g->h * g->w;
            int64_t copy = g->w < cols - g->pw ? g->w : cols - g->pw;
            for (int64_t r = 0; r < band_rows && copy > 0; r++) {
                int64_t iy = 2 * b->ty0 + r - g->ph;
                if (iy < 0 || iy >= g->h)
                    continue;
                const float *src = band + r * cols + g->pw;
                float *dst = plane + iy * g->w;
                for (int64_t i = 0; i < copy; i++)
                    dst[i] += src[i];
            }
        }
}

/* ---- forward ----------------------------------------------------------------------- */

static void products(int o, int c, int t, const float *u, const float *v, float *m)
{
    for (int x = 0; x < XI; x++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, o, t, c, 1.0f, u + (size_t)x * o * c, c,
                    v + (size_t)x * c * t, t, 0.0f, m + (size_t)x * o * t, t);
}

/* Per-thread scratch, rounded to cache lines. */
static size_t lines(int64_t floats) { return (size_t)((floats + 15) / 16 * 16); }

int em_conv_winograd_forward(const conv_geom *g, const float *x, const float *w, const float *bias,
                             em_activation act, float act_param, float *pre, float *y)
{
    wino_plan p;
    make_plan(g, &p);
    int nt = omp_get_max_threads();
    if (nt > p.items)
        nt = (int)p.items;
    const size_t band_size = lines((2 * (p.whole_images ? p.th : p.per_block) + 2) * p.band_cols);
    const size_t per_thread = lines(XI * g->c * p.max_tiles) + lines(XI * g->o * p.max_tiles) + band_size;
    float *u = em_arena_alloc(em_step_arena(), (size_t)(XI * g->o * g->c) * sizeof(float));
    float *scratch = em_arena_alloc(em_step_arena(), (size_t)nt * per_thread * sizeof(float));
    if (!u || !scratch)
        return EM_ERR;
    weight_transform(g, w, u);
    const int64_t out_image = g->o * g->p;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *v = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *m = v + lines(XI * g->c * p.max_tiles);
        float *band = m + lines(XI * g->o * p.max_tiles);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < p.items; item++) {
            for (int64_t k = 0; k < p.bands; k++) {
                wino_block b;
                block_of(g, &p, item, k, &b);
                input_transform(g, &p, &b, x, v, band);
                products((int)g->o, (int)g->c, (int)b.tiles, u, v, m);
                output_transform(g, &p, &b, m, bias, pre);
            }
            int64_t n0, n1;
            item_images(g, &p, item, &n0, &n1);
            em_conv_activate(act, act_param, pre + n0 * out_image, y + n0 * out_image,
                             (n1 - n0) * out_image);
        }
    }
    return EM_OK;
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
    const int64_t out_image = g->o * g->p, usize = XI * g->o * g->c;
    const int64_t item_images_max = p.whole_images ? p.per_block : 1;
    const bool need_dz = s->act != EM_ACT_NONE;
    const size_t v_size = need_w ? lines(XI * g->c * p.max_tiles) : 0;
    const size_t dv_size = need_x ? lines(XI * g->c * p.max_tiles) : 0;
    const size_t dm_size = lines(XI * g->o * p.max_tiles);
    const size_t dz_size = need_dz ? lines(item_images_max * out_image) : 0;
    const size_t band_size = lines((2 * (p.whole_images ? p.th : p.per_block) + 2) * p.band_cols);
    const size_t du_size = need_w ? lines(usize) : 0, db_size = need_b ? lines(g->o) : 0;
    const size_t per_thread = v_size + dv_size + dm_size + dz_size + band_size + du_size + db_size;
    float *u = em_arena_alloc(em_step_arena(), (size_t)usize * sizeof(float));
    float *scratch = em_arena_alloc(em_step_arena(), (size_t)nt * per_thread * sizeof(float));
    if (!u || !scratch)
        return EM_ERR;
    weight_transform(g, w->data, u);

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *v = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *dv = v + v_size, *dm = dv + dv_size, *dz_buf = dm + dm_size, *band = dz_buf + dz_size;
        float *du = band + band_size, *db = du + du_size;
        if (need_w)
            memset(du, 0, (size_t)usize * sizeof(float));
        if (need_b)
            memset(db, 0, (size_t)g->o * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t item = 0; item < p.items; item++) {
            int64_t n0, n1;
            item_images(g, &p, item, &n0, &n1);
            const int64_t count = (n1 - n0) * out_image;
            const float *dz = em_conv_activation_grad(s->act, s->act_param,
                                                      s->pre ? s->pre + n0 * out_image : NULL,
                                                      y + n0 * out_image, dy + n0 * out_image, dz_buf,
                                                      count);
            if (need_b)
                for (int64_t n = 0; n < n1 - n0; n++)
                    for (int64_t o = 0; o < g->o; o++) {
                        const float *plane = dz + (n * g->o + o) * g->p;
                        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                        for (int64_t q = 0; q < g->p; q++)
                            acc += plane[q];
                        db[o] += acc;
                    }
            if (!need_w && !need_x)
                continue;
            for (int64_t k = 0; k < p.bands; k++) {
                wino_block blk;
                block_of(g, &p, item, k, &blk);
                const int t = (int)blk.tiles, o = (int)g->o, c = (int)g->c;
                output_grad_transform(g, &p, &blk, dz, dm);
                if (need_w) {
                    input_transform(g, &p, &blk, x->data, v, band);
                    for (int xi = 0; xi < XI; xi++)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, o, c, t, 1.0f,
                                    dm + (size_t)xi * o * t, t, v + (size_t)xi * c * t, t, 1.0f,
                                    du + (size_t)xi * o * c, c);
                }
                if (need_x) {
                    for (int xi = 0; xi < XI; xi++)
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, t, o, 1.0f,
                                    u + (size_t)xi * o * c, c, dm + (size_t)xi * o * t, t, 0.0f,
                                    dv + (size_t)xi * c * t, t);
                    input_grad_transform(g, &p, &blk, dv, x->grad, band);
                }
            }
        }
    }
    /* Sum the threads' partial dU into the first, then transform once. */
    float *du0 = scratch + v_size + dv_size + dm_size + dz_size + band_size;
    for (int t = 1; t < nt && need_w; t++) {
        const float *part = du0 + (size_t)t * per_thread;
        for (int64_t i = 0; i < usize; i++)
            du0[i] += part[i];
    }
    if (need_w)
        weight_grad_transform(g, du0, w->grad);
    for (int t = 0; t < nt && need_b; t++) {
        const float *part = du0 + du_size + (size_t)t * per_thread;
        for (int64_t o = 0; o < g->o; o++)
            b->grad[o] += part[o];
    }
    return EM_OK;
}
