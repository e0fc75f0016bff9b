/* Internal: 16-float vectors as GCC/Clang vector extensions, which the compiler lowers to
 * AVX-512, AVX2 or SSE as the target allows; for kernels whose loops the auto-vectoriser
 * handles badly (short rows, sums kept in registers across an inner loop). */
#ifndef EMBER_VEC16_H
#define EMBER_VEC16_H

#include <string.h>

typedef float em_vf16 __attribute__((vector_size(16 * sizeof(float))));

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

#endif
