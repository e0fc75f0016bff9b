/* Key/value cache of one attention layer for generation (batch 1, inference only).
 *
 * Keys are stored transposed per head, [heads][hd][ld] with ld the padded capacity, which
 * is the layout the score kernel reads; the training op builds the same layout per call.
 * Values are stored as rows [max_len][C]. Attending calls the very kernel the training
 * op uses, so a cached position's output equals the full forward's row for it. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ember/error.h"
#include "ember/transformer_ops.h"
#include "ops/attention_kernel.h"
#include "ops/decode_rows.h"

struct em_kv_cache {
    int64_t max_len, ld, channels, hd;
    int heads;
    int64_t length;
    float *keys_t; /* [heads][hd][ld] */
    float *values; /* [max_len][channels] */
};

em_kv_cache *em_kv_cache_new(em_arena *arena, int64_t max_len, int64_t channels, int n_heads)
{
    if (!arena)
        return em_error("kv_cache: an arena is required (the cache outlives steps)"), NULL;
    if (max_len < 1 || channels < 1 || n_heads < 1)
        return em_error("kv_cache: max_len %lld, channels %lld and n_heads %d must all be >= 1",
                        (long long)max_len, (long long)channels, n_heads), NULL;
    if (channels % n_heads != 0)
        return em_error("kv_cache: C = %lld channels is not divisible by %d heads",
                        (long long)channels, n_heads), NULL;
    if (max_len > (INT64_MAX / 4 - 64) / channels)
        return em_error("kv_cache: max_len %lld x %lld channels is too large", (long long)max_len,
                        (long long)channels), NULL;
    em_kv_cache *c = em_arena_alloc(arena, sizeof *c);
    if (!c)
        return NULL;
    c->max_len = max_len;
    c->ld = em_attention_padded(max_len);
    c->channels = channels;
    c->heads = n_heads;
    c->hd = channels / n_heads;
    c->length = 0;
    /* zeroed: the score kernel reads whole key blocks, past the cached length too */
    c->keys_t = em_arena_calloc(arena, (size_t)(channels * c->ld), sizeof(float));
    c->values = em_arena_calloc(arena, (size_t)(max_len * channels), sizeof(float));
    if (!c->keys_t || !c->values)
        return NULL;
    return c;
}

void em_kv_cache_clear(em_kv_cache *cache)
{
    if (cache)
        cache->length = 0;
}

int64_t em_kv_cache_length(const em_kv_cache *cache) { return cache ? cache->length : 0; }
int64_t em_kv_cache_capacity(const em_kv_cache *cache) { return cache ? cache->max_len : 0; }

/* Rows of x [T, cols] or [1, T, cols] as a pointer and a row stride (channels dense). */
typedef struct row_view {
    const float *data;
    int64_t rows, stride;
} row_view;

static int rows_of(const char *op, const char *what, em_tensor *x, int64_t cols, row_view *rv)
{
    if (!x)
        return EM_ERR;
    bool ok = (x->ndim == 2 || (x->ndim == 3 && x->shape[0] == 1)) && x->shape[x->ndim - 1] == cols;
    if (!ok)
        return em_error("%s: %s must be [T, %lld] or [1, T, %lld] (batch 1), got %s", op, what,
                        (long long)cols, (long long)cols, em_shape_str(x));
    if (x->stride[x->ndim - 1] != 1 && cols > 1) {
        bool was = em_set_grad_enabled(false);
        x = em_contiguous(x);
        em_set_grad_enabled(was);
        if (!x)
            return EM_ERR;
    }
    rv->data = x->data;
    rv->rows = x->shape[x->ndim - 2];
    rv->stride = rv->rows == 1 ? cols : x->stride[x->ndim - 2];
    return EM_OK;
}

static int check_room(const em_kv_cache *c, int64_t rows)
{
    if (rows > c->max_len - c->length)
        return em_error("kv_cache: appending %lld positions to %lld would exceed the capacity "
                        "of %lld", (long long)rows, (long long)c->length, (long long)c->max_len);
    return EM_OK;
}

/* k and v rows have channels dense at k + j·ldk. */
static void append_rows(em_kv_cache *c, const float *k, int64_t ldk, const float *v, int64_t ldv,
                        int64_t rows)
{
    for (int64_t j = 0; j < rows; j++) {
        const int64_t pos = c->length + j;
        const float *kr = k + j * ldk;
        for (int64_t ch = 0; ch < c->channels; ch++)
            c->keys_t[ch * c->ld + pos] = kr[ch]; /* channel h·hd + d is row d of head h */
        memcpy(c->values + pos * c->channels, v + j * ldv, (size_t)c->channels * sizeof(float));
    }
    c->length += rows;
}

int em_kv_cache_append(em_kv_cache *cache, em_tensor *k, em_tensor *v)
{
    static const char op[] = "kv_cache_append";
    if (!cache)
        return em_error("%s: no cache", op);
    row_view kr = {0}, vr = {0};
    if (rows_of(op, "k", k, cache->channels, &kr) != EM_OK ||
        rows_of(op, "v", v, cache->channels, &vr) != EM_OK)
        return EM_ERR;
    if (kr.rows != vr.rows)
        return em_error("%s: k %s and v %s must hold the same positions", op, em_shape_str(k),
                        em_shape_str(v));
    if (check_room(cache, kr.rows) != EM_OK)
        return EM_ERR;
    append_rows(cache, kr.data, kr.stride, vr.data, vr.stride, kr.rows);
    return EM_OK;
}

/* Output rows for the newest `rows` positions into y [rows][channels]. */
static float *probability_tile(const em_kv_cache *c)
{
    return em_arena_alloc(em_step_arena(), (size_t)(EM_ATTENTION_TILE * c->ld) * sizeof(float));
}

/* Output rows for the newest `rows` positions into y [rows][channels]; p from
 * probability_tile. */
static void attend_rows(const em_kv_cache *c, const float *q, int64_t ldq, int64_t rows, float *y,
                        float *p)
{
    const int64_t first = c->length - rows;
    const float scale = 1.0f / sqrtf((float)c->hd);
    for (int h = 0; h < c->heads; h++) {
        const int64_t off = h * c->hd;
        em_attention_rows_forward(q + off, ldq, first, rows, c->keys_t + off * c->ld, c->ld,
                                  c->values + off, c->channels, y + off, c->channels, p, c->ld,
                                  true, c->hd, scale, NULL);
    }
}

static em_tensor *output_like(const em_tensor *x, int64_t rows, int64_t channels)
{
    int64_t shape[3] = {1, rows, channels};
    return x->ndim == 3 ? em_tensor_empty(NULL, 3, shape) : em_tensor_empty(NULL, 2, shape + 1);
}

em_tensor *em_kv_cache_attend(em_kv_cache *cache, em_tensor *q)
{
    static const char op[] = "kv_cache_attend";
    if (!cache)
        return em_error("%s: no cache", op), NULL;
    row_view qr = {0};
    if (rows_of(op, "q", q, cache->channels, &qr) != EM_OK)
        return NULL;
    if (qr.rows > cache->length)
        return em_error("%s: q %s has %lld positions but the cache holds only %lld", op,
                        em_shape_str(q), (long long)qr.rows, (long long)cache->length), NULL;
    em_tensor *y = output_like(q, qr.rows, cache->channels);
    float *p = probability_tile(cache);
    if (!y || !p)
        return NULL;
    attend_rows(cache, qr.data, qr.stride, qr.rows, y->data, p);
    return y;
}

em_tensor *em_kv_cache_step_qkv(em_kv_cache *cache, em_tensor *qkv)
{
    static const char op[] = "kv_cache_step_qkv";
    if (!cache)
        return em_error("%s: no cache", op), NULL;
    row_view r = {0};
    if (rows_of(op, "qkv", qkv, 3 * cache->channels, &r) != EM_OK || check_room(cache, r.rows) != EM_OK)
        return NULL;
    const int64_t c = cache->channels;
    em_tensor *y = output_like(qkv, r.rows, c);
    float *p = probability_tile(cache);
    if (!y || !p)
        return NULL;
    append_rows(cache, r.data + c, r.stride, r.data + 2 * c, r.stride, r.rows);
    attend_rows(cache, r.data, r.stride, r.rows, y->data, p);
    return y;
}

int64_t em_kv_cache_tile_floats(const em_kv_cache *c) { return EM_ATTENTION_TILE * c->ld; }

void em_kv_cache_step_heads(em_kv_cache *c, const float *qkv, int h0, int h1, float *y, float *p)
{
    const int64_t pos = c->length, C = c->channels;
    const float scale = 1.0f / sqrtf((float)c->hd);
    for (int64_t ch = h0 * c->hd; ch < h1 * c->hd; ch++) {
        c->keys_t[ch * c->ld + pos] = qkv[C + ch];
        c->values[pos * C + ch] = qkv[2 * C + ch];
    }
    for (int h = h0; h < h1; h++) {
        const int64_t off = h * c->hd;
        em_attention_rows_forward(qkv + off, 3 * C, pos, 1, c->keys_t + off * c->ld, c->ld, c->values + off, C,
                                  y + off, C, p, c->ld, true, c->hd, scale, NULL);
    }
}

void em_kv_cache_advance(em_kv_cache *c, int64_t rows) { c->length += rows; }
