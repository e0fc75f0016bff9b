/* Internal: max pooling over planes for ops that pool their own output while it is in
 * cache (the inference-time convolution + max pooling of conv.c). */
#ifndef EMBER_POOL_INTERNAL_H
#define EMBER_POOL_INTERNAL_H

#include <stdint.h>

#include "ember/tensor.h"

typedef struct pool_geom {
    int64_t planes, h, w, oh, ow;
    int64_t kh, kw, sh, sw, ph, pw;
} pool_geom;

/* The geometry of max_pool2d over x (strides <= 0 mean the kernel), or EM_ERR with the
 * message em_max_pool2d gives. */
int em_max_pool_geometry(const em_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw, pool_geom *g);

/* y = the max pooling of `planes` consecutive planes of x (no threads); argmax, when not
 * NULL, gets each maximum's position in its input plane. */
void em_max_pool_planes(const pool_geom *g, const float *x, float *y, int32_t *argmax, int64_t planes);

#endif
