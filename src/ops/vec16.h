/* Internal: 16-float vectors as GCC/Clang vector extensions, which the compiler lowers to
 * AVX-512, AVX2 or SSE as the target allows; for kernels whose loops the auto-vectoriser
 * handles badly (short rows, sums kept in registers across an inner loop). */
#ifndef EMBER_VEC16_H
#define EMBER_VEC16_H

#include <stdint.h>
#include <string.h>

/* Built without AVX-512 (EMBER_NATIVE off), GCC and Clang note that 64-byte vector
 * returns would change the ABI; these helpers are static inline, so no call crosses an
 * ABI boundary. (Stays in effect for the files that include this one.) */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float em_vf16 __attribute__((vector_size(16 * sizeof(float))));
/* Lane masks (all ones or zero, as comparisons of em_vf16 give) and 32-bit integers. */
typedef int32_t em_vi16 __attribute__((vector_size(16 * sizeof(int32_t))));

/* Unaligned; memcpy keeps them free of aliasing assumptions. */
static inline em_vf16 em_load16(const float *p)
{
    em_vf16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void em_store16(float *p, em_vf16 v) { memcpy(p, &v, sizeof v); }

static inline em_vf16 em_splat16(float s)
{
    em_vf16 v = {s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s};
    return v;
}

/* Lanes of a where mask is set, else of b (C has no ?: on vectors). */
static inline em_vf16 em_select16(em_vi16 mask, em_vf16 a, em_vf16 b)
{
    return (em_vf16)(((em_vi16)a & mask) | ((em_vi16)b & ~mask));
}

static inline em_vi16 em_select16i(em_vi16 mask, em_vi16 a, em_vi16 b) { return (a & mask) | (b & ~mask); }

/* Even and odd lanes of the 32 floats lo:hi. */
static inline em_vf16 em_even16(em_vf16 lo, em_vf16 hi)
{
    return __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}

static inline em_vf16 em_odd16(em_vf16 lo, em_vf16 hi)
{
    return __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

/* The 32 floats a0 b0 a1 b1 ... a15 b15 as lo:hi (the inverse of em_even16/em_odd16). */
static inline em_vf16 em_interleave_lo16(em_vf16 a, em_vf16 b)
{
    return __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}

static inline em_vf16 em_interleave_hi16(em_vf16 a, em_vf16 b)
{
    return __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
}

/* One step of a 16x16 transpose: with rows r and r+b (r & b == 0), swaps the b-wide
 * off-diagonal blocks; steps with b = 8, 4, 2, 1 transpose the whole. */
static inline void em_transpose16_step8(em_vf16 *r)
{
    for (int i = 0; i < 8; i++) {
        em_vf16 a = r[i], c = r[i + 8];
        r[i] = __builtin_shufflevector(a, c, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        r[i + 8] = __builtin_shufflevector(a, c, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    }
}

static inline void em_transpose16_step4(em_vf16 *r)
{
    for (int i = 0; i < 16; i++) {
        if (i & 4)
            continue;
        em_vf16 a = r[i], c = r[i + 4];
        r[i] = __builtin_shufflevector(a, c, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        r[i + 4] = __builtin_shufflevector(a, c, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    }
}

static inline void em_transpose16_step2(em_vf16 *r)
{
    for (int i = 0; i < 16; i++) {
        if (i & 2)
            continue;
        em_vf16 a = r[i], c = r[i + 2];
        r[i] = __builtin_shufflevector(a, c, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        r[i + 2] = __builtin_shufflevector(a, c, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
}

static inline void em_transpose16_step1(em_vf16 *r)
{
    for (int i = 0; i < 16; i += 2) {
        em_vf16 a = r[i], c = r[i + 1];
        r[i] = __builtin_shufflevector(a, c, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
        r[i + 1] = __builtin_shufflevector(a, c, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    }
}

/* The 16x16 block at src (row stride ss) transposed into dst (row stride ds), added to
 * what dst holds when add is set. */
static inline void em_transpose16(const float *src, int64_t ss, float *dst, int64_t ds, int add)
{
    em_vf16 r[16];
    for (int i = 0; i < 16; i++)
        r[i] = em_load16(src + i * ss);
    em_transpose16_step8(r);
    em_transpose16_step4(r);
    em_transpose16_step2(r);
    em_transpose16_step1(r);
    for (int i = 0; i < 16; i++)
        em_store16(dst + i * ds, add ? em_load16(dst + i * ds) + r[i] : r[i]);
}

#endif
