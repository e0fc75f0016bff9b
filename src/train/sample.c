/* Drawing the next token from logits: temperature, top-k, top-p (nucleus), seeded.
 *
 * The probabilities are computed in double from logits / temperature (the largest
 * subtracted first). Top-k and top-p need the tokens in order of probability; ties keep
 * the lower id first, so the choice never depends on a sort's whims. The draw is one
 * 53-bit uniform number from the sampler's own xoshiro generator, walked along the
 * kept tokens in that order: the same seed, options and logits give the same token on
 * every platform. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "ember/lm.h"

struct em_sampler {
    int64_t vocab;
    em_sample_opts o;
    em_rng rng;
    double *prob;     /* vocab */
    int32_t *order;   /* vocab: token ids by decreasing probability */
    int32_t *scratch; /* vocab: merge sort's other half */
};

em_sample_opts em_sample_defaults(void)
{
    em_sample_opts o = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    return o;
}

em_sampler *em_sampler_new(int64_t vocab, const em_sample_opts *o)
{
    em_sample_opts opts = o ? *o : em_sample_defaults();
    if (vocab < 1 || vocab > INT32_MAX) {
        em_error("sampler: the vocabulary must have 1 to %d tokens, got %lld", INT32_MAX, (long long)vocab);
        return NULL;
    }
    if (!(opts.temperature >= 0.0f) || !isfinite(opts.temperature)) {
        em_error("sampler: the temperature must be a finite number >= 0 (0: always the most likely token), got %g",
                 (double)opts.temperature);
        return NULL;
    }
    if (opts.top_k < 0) {
        em_error("sampler: top-k must be >= 0 (0: no limit), got %lld", (long long)opts.top_k);
        return NULL;
    }
    if (!(opts.top_p > 0.0f && opts.top_p <= 1.0f)) {
        em_error("sampler: top-p must be in (0, 1] (1: no limit), got %g", (double)opts.top_p);
        return NULL;
    }
    em_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        em_error("sampler: out of memory");
        return NULL;
    }
    s->vocab = vocab;
    s->o = opts;
    em_rng_seed(&s->rng, opts.seed);
    s->prob = malloc((size_t)vocab * sizeof *s->prob);
    s->order = malloc((size_t)vocab * sizeof *s->order);
    s->scratch = malloc((size_t)vocab * sizeof *s->scratch);
    if (!s->prob || !s->order || !s->scratch) {
        em_sampler_free(s);
        em_error("sampler: out of memory for a vocabulary of %lld", (long long)vocab);
        return NULL;
    }
    return s;
}

void em_sampler_free(em_sampler *s)
{
    if (!s)
        return;
    free(s->prob);
    free(s->order);
    free(s->scratch);
    free(s);
}

static bool before(const double *p, int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); }

/* Bottom-up merge sort of order[0..n) by decreasing p (stable, lower id first on ties). */
static void sort_by_probability(const double *p, int32_t *order, int32_t *tmp, int64_t n)
{
    int32_t *src = order, *dst = tmp;
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = before(p, src[j], src[i]) ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        int32_t *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != order)
        memcpy(order, src, (size_t)n * sizeof *order);
}

int32_t em_sampler_next(em_sampler *s, const float *logits)
{
    const int64_t v = s->vocab;
    int64_t best = 0;
    for (int64_t i = 1; i < v; i++)
        if (logits[i] > logits[best] || (isnan(logits[best]) && !isnan(logits[i])))
            best = i;
    if (s->o.temperature == 0.0f)
        return (int32_t)best;
    const double inv_t = 1.0 / (double)s->o.temperature, top = logits[best];
    double total = 0.0;
    for (int64_t i = 0; i < v; i++) {
        double p = exp(((double)logits[i] - top) * inv_t);
        s->prob[i] = isfinite(p) ? p : 0.0;
        total += s->prob[i];
    }
    /* The kept tokens: all of them in id order, or the most likely ones. */
    int64_t kept = v;
    bool ranked = s->o.top_k > 0 || s->o.top_p < 1.0f;
    for (int64_t i = 0; i < v; i++)
        s->order[i] = (int32_t)i;
    if (ranked) {
        sort_by_probability(s->prob, s->order, s->scratch, v);
        if (s->o.top_k > 0 && s->o.top_k < kept)
            kept = s->o.top_k;
        double kept_total = 0.0;
        for (int64_t i = 0; i < kept; i++)
            kept_total += s->prob[s->order[i]];
        if (s->o.top_p < 1.0f) {
            double cumulative = 0.0, target = (double)s->o.top_p * kept_total;
            int64_t i = 0;
            while (i < kept) {
                cumulative += s->prob[s->order[i++]];
                if (cumulative >= target)
                    break;
            }
            kept = i;
        }
        total = 0.0;
        for (int64_t i = 0; i < kept; i++)
            total += s->prob[s->order[i]];
    }
    if (!(total > 0.0))
        return (int32_t)best;
    double u = (double)(em_rng_next(&s->rng) >> 11) * 0x1.0p-53 * total, cumulative = 0.0;
    for (int64_t i = 0; i < kept; i++) {
        cumulative += s->prob[s->order[i]];
        if (u < cumulative)
            return s->order[i];
    }
    return s->order[kept - 1];
}
