/* Internal: exp, expm1, tanh, sigmoid and erfc in float32 written so that a loop calling
 * them vectorises (libm's versions are opaque calls without -ffast-math). Branch-free:
 * every special case is a select. Accuracy: a few ulp over the whole float range, with
 * overflow to inf, underflow to 0 and NaN passed through.
 *
 * exp: x = n·ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial of degree 7
 * (truncation < 6e-9), 2^n assembled from exponent bits in two halves so that results
 * down in the subnormal range stay right.
 * erfc: erfc(z) = t·exp(-z² + Q(t)) with t = 1/(1 + z/2); Q is a degree-10 least-squares
 * fit in powers of (t - 1/2) of log(erfc(z)/t) + z² over z in [0, 10.5] (|error| < 1e-8;
 * centring keeps the coefficients near 1 so Horner's rule loses little), and -z² enters exp
 * split into two floats so that its rounding does not cost accuracy in the tail. */
#ifndef EMBER_FASTMATH_H
#define EMBER_FASTMATH_H

#include <math.h>
#include <stdint.h>

#define EM_EXP_MAX 88.72283935546875f /* ln(FLT_MAX) */
#define EM_EXP_MIN -104.0f            /* below ln of the smallest subnormal */
#define EM_LOG2E 1.44269504088896341f
#define EM_LN2_HI 0.693359375f        /* 9 significant bits: n·EM_LN2_HI is exact */
#define EM_LN2_LO -2.12194440e-4f     /* ln2 - EM_LN2_HI */
#define EM_ROUND_MAGIC 12582912.0f    /* 1.5·2^23: adding it rounds to an integer */

typedef union em_f32_bits {
    float f;
    uint32_t u;
} em_f32_bits;

static inline float em_pow2_bits(uint32_t biased_exponent)
{
    em_f32_bits b;
    b.u = biased_exponent << 23;
    return b.f;
}

/* e^r for |r| <= ln2/2: the Taylor polynomial of degree 7 by Horner's rule. r may be a
 * float or a vector of floats (fastmath16.h), with the same arithmetic in each lane. */
#define EM_EXP_REDUCED(r)                                                                              \
    ((((((((1.0f / 5040.0f) * (r) + 1.0f / 720.0f) * (r) + 1.0f / 120.0f) * (r) + 1.0f / 24.0f) * (r) + \
        1.0f / 6.0f) * (r) + 0.5f) * (r) + 1.0f) * (r) + 1.0f)

/* exp(hi + lo) for |lo| much smaller than |hi| or both small. */
static inline float em_exp_parts(float hi, float lo)
{
    float s = hi + lo;
    int over = s > EM_EXP_MAX, under = s < EM_EXP_MIN;
    hi = over ? EM_EXP_MAX : (under ? EM_EXP_MIN : hi);
    lo = (over || under) ? 0.0f : lo;
    s = hi + lo;
    em_f32_bits k;
    k.f = s * EM_LOG2E + EM_ROUND_MAGIC;
    float n = k.f - EM_ROUND_MAGIC;
    em_f32_bits magic;
    magic.f = EM_ROUND_MAGIC;
    int32_t ni = (int32_t)(k.u - magic.u);
    float r = (hi - n * EM_LN2_HI) - n * EM_LN2_LO + lo;
    float p = EM_EXP_REDUCED(r);
    int32_t n1 = ni / 2, n2 = ni - n1;
    float v = p * em_pow2_bits((uint32_t)(n1 + 127)) * em_pow2_bits((uint32_t)(n2 + 127));
    return over ? INFINITY : (under ? 0.0f : v);
}

static inline float em_fast_expf(float x) { return em_exp_parts(x, 0.0f); }

/* exp(x) - 1 without cancellation near 0; for x <= 88. */
static inline float em_fast_expm1f(float x)
{
    float c = x < -30.0f ? -30.0f : (x > 88.0f ? 88.0f : x); /* expm1(-30) is -1 in float */
    em_f32_bits k;
    k.f = c * EM_LOG2E + EM_ROUND_MAGIC;
    float n = k.f - EM_ROUND_MAGIC;
    em_f32_bits magic;
    magic.f = EM_ROUND_MAGIC;
    int32_t ni = (int32_t)(k.u - magic.u);
    float r = (c - n * EM_LN2_HI) - n * EM_LN2_LO;
    /* expm1(r) = r + r²·(1/2 + r/6 + ... + r^6/8!) */
    float p = 1.0f / 40320.0f;
    p = p * r + 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    float q = r + r * r * p;
    float scale = em_pow2_bits((uint32_t)(ni + 127));
    /* 2^n·(1 + q) - 1, with 2^n - 1 exact for the n that matter */
    float v = scale * q + (scale - 1.0f);
    return x > 88.0f ? INFINITY : v;
}

/* tanh(x) = sign(x)·(-m)/(2 + m) with m = expm1(-2|x|) in (-1, 0]. */
static inline float em_fast_tanhf(float x)
{
    float m = em_fast_expm1f(-2.0f * fabsf(x));
    return copysignf(-m / (2.0f + m), x);
}

/* 1/(1 + exp(-x)) from exp(-|x|), which never overflows. */
static inline float em_fast_sigmoidf(float x)
{
    float e = em_fast_expf(-fabsf(x));
    float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}

static inline float em_fast_erfcf(float z)
{
    float a = fabsf(z);
    float t = 1.0f / (1.0f + 0.5f * a);
    float u = t - 0.5f;
    float q = -1.406173323e-01f;
    q = q * u + 2.612850211e-01f;
    q = q * u - 1.077261739e-02f;
    q = q * u - 2.931474466e-01f;
    q = q * u + 1.093169045e-01f;
    q = q * u + 2.821747338e-01f;
    q = q * u - 1.578102299e-01f;
    q = q * u - 3.751634731e-01f;
    q = q * u + 1.893707247e-01f;
    q = q * u + 1.345286460e+00f;
    q = q * u - 6.717940774e-01f;
    float sq = a * a;
    float sq_err = fmaf(a, a, -sq); /* a² = sq + sq_err exactly */
    float e = t * em_exp_parts(-sq, q - sq_err);
    e = a > 10.5f ? 0.0f : e; /* beyond the fit; erfc(10.5) < 1e-48 */
    return z >= 0.0f ? e : 2.0f - e;
}

#endif
