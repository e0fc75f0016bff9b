/* Inverted dropout: kept elements are scaled by 1/(1-p) during training so that
 * evaluation is the identity. The mask comes from the caller's generator, one 32-bit
 * draw per element (two per 64-bit output), so a seed fixes it on every platform; it is
 * kept as bytes for backward. */
#include <math.h>

#include "ember/cnn_ops.h"
#include "ember/error.h"

typedef struct dropout_saved {
    const uint8_t *keep;
    float scale;
} dropout_saved;

static void dropout_backward(em_node *node)
{
    const dropout_saved *s = node->saved;
    em_tensor *x = node->in[0];
    const float *dy = node->out->grad;
    for (int64_t i = 0; i < x->numel; i++)
        x->grad[i] += s->keep[i] ? dy[i] * s->scale : 0.0f;
}

em_tensor *em_dropout(em_tensor *x, float p, bool training, em_rng *rng)
{
    if (!x)
        return NULL;
    if (!(p >= 0.0f && p <= 1.0f))
        return em_error("dropout: probability %g must lie in [0, 1] (input %s)", (double)p,
                        em_shape_str(x)), NULL;
    if (!training || p == 0.0f)
        return x;
    if (!rng)
        return em_error("dropout: training with p=%g needs a random generator (input %s)", (double)p,
                        em_shape_str(x)), NULL;
    em_tensor *src = em_contiguous(x);
    if (!src)
        return NULL;
    em_tensor *out = em_tensor_empty(NULL, src->ndim, src->shape);
    uint8_t *keep = em_arena_alloc(em_step_arena(), (size_t)src->numel);
    if (!out || !keep)
        return NULL;
    /* An element is dropped when its 32-bit draw falls below p·2^32. */
    const uint64_t threshold = (uint64_t)ldexp((double)p, 32);
    const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const int64_t n = src->numel;
    for (int64_t i = 0; i < n; i += 2) {
        uint64_t r = em_rng_next(rng);
        keep[i] = (r & 0xffffffffu) >= threshold;
        if (i + 1 < n)
            keep[i + 1] = (r >> 32) >= threshold;
    }
    for (int64_t i = 0; i < n; i++)
        out->data[i] = keep[i] ? src->data[i] * scale : 0.0f;
    em_node *node = em_record("dropout", out, 1, &src, dropout_backward);
    if (node) {
        dropout_saved *s = em_arena_alloc(em_step_arena(), sizeof *s);
        if (!s)
            return NULL;
        s->keep = keep;
        s->scale = scale;
        node->saved = s;
    }
    return out;
}
