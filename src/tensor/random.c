/* xoshiro256** seeded through splitmix64: fast, small state (so a checkpoint can hold
 * it), and the same sequence on every platform. */
#include <math.h>

#include "ember/tensor.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void em_rng_seed(em_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t em_rng_next(em_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float em_rng_uniform(em_rng *rng)
{
    return (float)(em_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

float em_rng_normal(em_rng *rng)
{
    /* Box-Muller with 53-bit uniforms; u1 in (0, 1] keeps the log finite. */
    double u1 = ((double)(em_rng_next(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(em_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t em_rng_below(em_rng *rng, uint64_t n)
{
    if (n == 0)
        return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = em_rng_next(rng);
    while (x >= limit);
    return x % n;
}

void em_rng_shuffle(em_rng *rng, int64_t *items, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)em_rng_below(rng, (uint64_t)i + 1);
        int64_t tmp = items[i];
        items[i] = items[j];
        items[j] = tmp;
    }
}

/* Initialisers write dense data of freshly created parameters. */
void em_init_uniform(em_tensor *t, em_rng *rng, float lo, float hi)
{
    if (!rng)
        return;
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = lo + (hi - lo) * em_rng_uniform(rng);
}

void em_init_normal(em_tensor *t, em_rng *rng, float mean, float std)
{
    if (!rng)
        return;
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = mean + std * em_rng_normal(rng);
}

void em_fan_in_out(const em_tensor *w, int64_t *fan_in, int64_t *fan_out)
{
    if (w->ndim < 2) {
        *fan_in = *fan_out = w->numel;
        return;
    }
    int64_t receptive = 1;
    for (int d = 2; d < w->ndim; d++)
        receptive *= w->shape[d];
    *fan_in = w->shape[1] * receptive;
    *fan_out = w->shape[0] * receptive;
}

static float leaky_relu_gain(float negative_slope)
{
    return sqrtf(2.0f / (1.0f + negative_slope * negative_slope));
}

void em_init_kaiming_uniform(em_tensor *t, em_rng *rng, float negative_slope)
{
    int64_t fan_in, fan_out;
    em_fan_in_out(t, &fan_in, &fan_out);
    float bound = leaky_relu_gain(negative_slope) * sqrtf(3.0f / (float)fan_in);
    em_init_uniform(t, rng, -bound, bound);
}

void em_init_kaiming_normal(em_tensor *t, em_rng *rng, float negative_slope)
{
    int64_t fan_in, fan_out;
    em_fan_in_out(t, &fan_in, &fan_out);
    em_init_normal(t, rng, 0.0f, leaky_relu_gain(negative_slope) / sqrtf((float)fan_in));
}

void em_init_xavier_uniform(em_tensor *t, em_rng *rng, float gain)
{
    int64_t fan_in, fan_out;
    em_fan_in_out(t, &fan_in, &fan_out);
    float bound = gain * sqrtf(6.0f / (float)(fan_in + fan_out));
    em_init_uniform(t, rng, -bound, bound);
}

void em_init_xavier_normal(em_tensor *t, em_rng *rng, float gain)
{
    int64_t fan_in, fan_out;
    em_fan_in_out(t, &fan_in, &fan_out);
    em_init_normal(t, rng, 0.0f, gain * sqrtf(2.0f / (float)(fan_in + fan_out)));
}
