/* Internal: what the elementwise, softmax, reduction and loss ops share: dense access to
 * possibly strided inputs, and the size from which a loop pays for an OpenMP team. */
#ifndef EMBER_DENSE_H
#define EMBER_DENSE_H

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

#endif
