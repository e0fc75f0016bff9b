/* Internal: exp of non-positive arguments and the sigmoid of fastmath.h on 16 lanes
 * (em_vf16), for softmax and the activations whose scalar loops gcc does not vectorise
 * well (the scalar exp keeps subnormal results exact, which costs a second power of two
 * and a handful of selects per element).
 *
 * At x <= 0 there is no overflow to handle: below EXP16_FLUSH (where exp is about
 * 1.2e-38, the edge of the normal range) the result is flushed to zero, the one departure
 * from em_fast_expf (which goes on into subnormals); -inf gives 0, NaN stays NaN. Above it
 * the arithmetic is em_exp_parts's: the same reduction and degree-7 polynomial, in about
 * half the instructions. */
#ifndef EMBER_FASTMATH16_H
#define EMBER_FASTMATH16_H

#include "ops/fastmath.h"
#include "ops/vec16.h"

#define EXP16_FLUSH -87.0f

/* exp(x) for x <= 0 (NaN lanes stay NaN); 0 below EXP16_FLUSH. */
static inline em_vf16 em_exp_nonpositive16(em_vf16 x)
{
    const em_vi16 flushed = x < EXP16_FLUSH;
    x = em_select16(flushed, em_splat16(EXP16_FLUSH), x);
    const em_vf16 k = x * EM_LOG2E + EM_ROUND_MAGIC;
    const em_vf16 n = k - EM_ROUND_MAGIC;
    const em_vi16 ni = (em_vi16)k - (em_vi16)em_splat16(EM_ROUND_MAGIC);
    const em_vf16 r = (x - n * EM_LN2_HI) - n * EM_LN2_LO;
    const em_vf16 p = EM_EXP_REDUCED(r);
    const em_vf16 scale = (em_vf16)((ni + 127) << 23);
    return em_select16(flushed, em_splat16(0.0f), p * scale);
}

/* 1/(1 + exp(-x)) from exp(-|x|), as em_fast_sigmoidf. */
static inline em_vf16 em_sigmoid16(em_vf16 x)
{
    const em_vi16 abs_mask = (em_vi16)em_splat16(0.0f) | 0x7fffffff;
    const em_vf16 e = em_exp_nonpositive16(-(em_vf16)((em_vi16)x & abs_mask));
    const em_vf16 s = 1.0f / (1.0f + e);
    return em_select16(x >= 0.0f, s, e * s);
}

#endif
