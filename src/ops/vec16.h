/* Internal: 16-float vectors as GCC/Clang vector extensions, which the compiler lowers to
 * AVX-512, AVX2 or SSE as the target allows; for kernels whose loops the auto-vectoriser
 * handles badly (short rows, sums kept in registers across an inner loop). */
#ifndef EMBER_VEC16_H
#define EMBER_VEC16_H

#include <stdint.h>
#include <string.h>

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

#endif
