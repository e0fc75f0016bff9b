/* Batches of text windows: inputs and next-byte targets, drawn at random offsets or
 * read in order along `batch` parallel tracks (for state carried across batches). The
 * id buffers are allocated once; a batch costs a pass over its bytes. */
#include <stdlib.h>

#include "ember/error.h"
#include "ember/text.h"

struct em_text_windows {
    const em_text *text;
    int64_t batch, steps;
    em_text_order order;
    em_rng rng;
    int64_t track;        /* sequential: bytes per track */
    int64_t per_pass;     /* batches in a pass over the text */
    int64_t next;         /* batch number within the pass */
    int32_t *inputs, *targets;
};

em_text_windows *em_text_windows_new(const em_text *t, int64_t batch, int64_t steps, em_text_order order,
                                     uint64_t seed)
{
    if (!t) {
        em_error("text windows: no text");
        return NULL;
    }
    if (batch < 1 || steps < 1) {
        em_error("text windows: batch %lld and sequence length %lld must be at least 1", (long long)batch,
                 (long long)steps);
        return NULL;
    }
    if (order != EM_TEXT_RANDOM && order != EM_TEXT_SEQUENTIAL) {
        em_error("text windows: unknown order %d", (int)order);
        return NULL;
    }
    /* A window of T inputs needs T + 1 bytes: its targets reach one byte further. */
    if (steps > t->size - 1) {
        em_error("the sequence length %lld is longer than %s allows: %lld bytes hold windows of at most %lld "
                 "(each needs one more byte for its last target)",
                 (long long)steps, t->source, (long long)t->size, (long long)(t->size - 1));
        return NULL;
    }
    int64_t track = (t->size - 1) / batch;
    if (order == EM_TEXT_SEQUENTIAL && track < steps) {
        em_error("%s: %lld bytes cut into %lld sequential tracks give %lld bytes each, fewer than the sequence "
                 "length %lld: use a smaller batch, a shorter sequence or random windows",
                 t->source, (long long)t->size, (long long)batch, (long long)track, (long long)steps);
        return NULL;
    }
    em_text_windows *w = calloc(1, sizeof *w);
    int32_t *ids = w ? malloc((size_t)(2 * batch * steps) * sizeof *ids) : NULL;
    if (!ids) {
        free(w);
        em_error("text windows: out of memory for %lld x %lld ids", (long long)batch, (long long)steps);
        return NULL;
    }
    w->text = t;
    w->batch = batch;
    w->steps = steps;
    w->order = order;
    em_rng_seed(&w->rng, seed);
    w->track = track;
    w->inputs = ids;
    w->targets = ids + batch * steps;
    if (order == EM_TEXT_SEQUENTIAL) {
        w->per_pass = track / steps;
    } else {
        w->per_pass = (t->size - 1) / (batch * steps);
        if (w->per_pass < 1)
            w->per_pass = 1;
    }
    return w;
}

void em_text_windows_free(em_text_windows *w)
{
    if (!w)
        return;
    free(w->inputs);
    free(w);
}

int64_t em_text_windows_per_pass(const em_text_windows *w) { return w ? w->per_pass : 0; }

static void fill_row(em_text_windows *w, int64_t row, int64_t start)
{
    const uint8_t *src = w->text->bytes + start;
    int32_t *in = w->inputs + row * w->steps, *tg = w->targets + row * w->steps;
    for (int64_t t = 0; t < w->steps; t++) {
        in[t] = src[t];
        tg[t] = src[t + 1];
    }
}

void em_text_windows_next(em_text_windows *w, em_text_batch *b)
{
    if (w->next == w->per_pass)
        w->next = 0;
    int64_t k = w->next++;
    for (int64_t row = 0; row < w->batch; row++) {
        int64_t start = w->order == EM_TEXT_SEQUENTIAL
                            ? row * w->track + k * w->steps
                            : (int64_t)em_rng_below(&w->rng, (uint64_t)(w->text->size - w->steps));
        fill_row(w, row, start);
    }
    b->restart = k == 0 && w->order == EM_TEXT_SEQUENTIAL;
    b->inputs = w->inputs;
    b->targets = w->targets;
    b->batch = w->batch;
    b->steps = w->steps;
    b->index = k;
}

em_text_windows_position em_text_windows_tell(const em_text_windows *w)
{
    em_text_windows_position p = {w->rng, w->next};
    return p;
}

int em_text_windows_seek(em_text_windows *w, const em_text_windows_position *p)
{
    if (p->next < 0 || p->next > w->per_pass)
        return em_error("text windows: batch %lld of a pass of %lld", (long long)p->next, (long long)w->per_pass);
    w->rng = p->rng;
    w->next = p->next;
    return EM_OK;
}
