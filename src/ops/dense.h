/* Internal: what the elementwise, softmax, reduction and loss ops share: dense access to
 * possibly strided inputs, and the size from which a loop pays for an OpenMP team. */
#ifndef EMBER_DENSE_H
#define EMBER_DENSE_H

#include <math.h>

#include "ember/autograd.h"
#include "ember/tensor.h"

/* Below this many elements, starting threads costs more than it saves. */
#define EM_PARALLEL_MIN_ELEMENTS (1 << 16)

/* t's elements in row-major order: t->data itself when contiguous, else a copy in the
 * step arena (NULL, with the error set, if that allocation fails). */
static inline const float *em_dense_data(const em_tensor *t)
{
    if (em_is_contiguous(t))
        return t->data;
    float *copy = em_arena_alloc(em_step_arena(), (size_t)t->numel * sizeof(float));
    if (copy)
        em_copy_to(t, copy);
    return copy;
}

/* Reductions with 16 independent partials: strict ISO float semantics forbid the
 * compiler from reassociating a single accumulator, which would keep these loops
 * scalar; the partials vectorise (and sum more accurately, too). */
#define EM_PARTIALS 16

static inline float em_sum_floats(const float *v, int64_t n)
{
    float acc[EM_PARTIALS] = {0};
    int64_t i = 0;
    for (; i + EM_PARTIALS <= n; i += EM_PARTIALS)
        for (int j = 0; j < EM_PARTIALS; j++)
            acc[j] += v[i + j];
    float total = 0.0f;
    for (; i < n; i++)
        total += v[i];
    for (int j = 0; j < EM_PARTIALS; j++)
        total += acc[j];
    return total;
}

/* Σ a[i]·b[i] */
static inline float em_dot_floats(const float *a, const float *b, int64_t n)
{
    float acc[EM_PARTIALS] = {0};
    int64_t i = 0;
    for (; i + EM_PARTIALS <= n; i += EM_PARTIALS)
        for (int j = 0; j < EM_PARTIALS; j++)
            acc[j] += a[i + j] * b[i + j];
    float total = 0.0f;
    for (; i < n; i++)
        total += a[i] * b[i];
    for (int j = 0; j < EM_PARTIALS; j++)
        total += acc[j];
    return total;
}

/* Largest of n >= 1 values. NaNs are skipped (tracking them would keep the loop
 * scalar); callers that exponentiate x - max still turn a NaN row into NaNs. Without
 * the simd pragma, gcc unrolls the partials into 16 scalar max chains. */
static inline float em_max_floats(const float *v, int64_t n)
{
    float acc[EM_PARTIALS];
    for (int j = 0; j < EM_PARTIALS; j++)
        acc[j] = v[0];
    int64_t i = 0;
    for (; i + EM_PARTIALS <= n; i += EM_PARTIALS)
#pragma omp simd
        for (int j = 0; j < EM_PARTIALS; j++)
            acc[j] = v[i + j] > acc[j] ? v[i + j] : acc[j];
    float m = acc[0];
    for (; i < n; i++)
        m = v[i] > m ? v[i] : m;
    for (int j = 1; j < EM_PARTIALS; j++)
        m = acc[j] > m ? acc[j] : m;
    return m;
}

#endif
