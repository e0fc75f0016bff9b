/* float32 tensors of up to EM_MAX_DIMS dimensions: a data pointer, a shape and strides
 * (in elements). Views share data with their base; ops that need dense input call
 * em_contiguous. Every tensor lives in an arena; none is freed on its own. */
#ifndef EMBER_TENSOR_H
#define EMBER_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ember/arena.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EM_MAX_DIMS 6

typedef struct em_node em_node;

typedef struct em_tensor {
    float *data;                 /* first element */
    int64_t shape[EM_MAX_DIMS];
    int64_t stride[EM_MAX_DIMS]; /* in elements; unused dims hold 0 */
    int ndim;                    /* 0 for a scalar */
    int64_t numel;
    /* Gradient, dense in row-major order of `shape` (whatever the strides), numel
     * floats. Parameters own one for their lifetime; other tensors get one in the step
     * arena when a gradient first reaches them. */
    float *grad;
    bool requires_grad;
    bool is_param;     /* leaf whose gradient persists and accumulates across steps */
    em_node *creator;  /* the tape node that produced it, NULL for leaves */
    const char *name;  /* optional, for messages */
} em_tensor;

/* ---- creation (arena NULL means the current step arena) -------------------------- */
em_tensor *em_tensor_empty(em_arena *arena, int ndim, const int64_t *shape);
em_tensor *em_tensor_zeros(em_arena *arena, int ndim, const int64_t *shape);
em_tensor *em_tensor_full(em_arena *arena, int ndim, const int64_t *shape, float value);
em_tensor *em_tensor_from(em_arena *arena, int ndim, const int64_t *shape, const float *values);
em_tensor *em_tensor_scalar(em_arena *arena, float value);
/* A trainable leaf: requires_grad, is_param, zeroed grad buffer in the same arena. */
em_tensor *em_param_new(em_arena *arena, int ndim, const int64_t *shape, const char *name);
/* Shorthands for literal shapes: em_tensor_zeros2(NULL, 3, 4). */
em_tensor *em_tensor_zeros1(em_arena *arena, int64_t d0);
em_tensor *em_tensor_zeros2(em_arena *arena, int64_t d0, int64_t d1);
em_tensor *em_tensor_zeros3(em_arena *arena, int64_t d0, int64_t d1, int64_t d2);
em_tensor *em_tensor_zeros4(em_arena *arena, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* A tensor header over caller-owned memory (no copy); the caller keeps it alive. */
em_tensor *em_tensor_wrap(em_arena *arena, int ndim, const int64_t *shape, float *data);
/* A dense copy (not recorded on the tape). */
em_tensor *em_tensor_clone(em_arena *arena, const em_tensor *t);

/* ---- inspection ------------------------------------------------------------------- */
bool em_is_contiguous(const em_tensor *t);
bool em_same_shape(const em_tensor *a, const em_tensor *b);
/* Offset in elements of the element with multi-index idx (ndim entries). */
int64_t em_offset(const em_tensor *t, const int64_t *idx);
/* "[64, 784]". Uses rotating thread-local buffers: valid for a few calls, which is
 * what error messages need (em_error("%s vs %s", em_shape_str(a), em_shape_str(b))). */
const char *em_shape_str(const em_tensor *t);
const char *em_dims_str(int ndim, const int64_t *shape);
/* Value of a one-element tensor. */
float em_item(const em_tensor *t);
/* Copies the elements in row-major order into dst (numel floats). */
void em_copy_to(const em_tensor *t, float *dst);
/* Writes the elements of src (row-major) into t, honouring t's strides. */
void em_copy_from(em_tensor *t, const float *src);
void em_fill(em_tensor *t, float value);
/* Prints shape and values (elided past `max_items` per dimension when > 0). */
void em_tensor_print(FILE *out, const em_tensor *t, const char *label, int max_items);
/* Validates ndim and dims (1..EM_MAX_DIMS, every dim > 0, product fits in int64). */
int em_check_shape(int ndim, const int64_t *shape);
int64_t em_shape_numel(int ndim, const int64_t *shape);

/* ---- random numbers: xoshiro256**, seeded, identical on every platform ----------- */
typedef struct em_rng {
    uint64_t s[4];
} em_rng;

void em_rng_seed(em_rng *rng, uint64_t seed);
uint64_t em_rng_next(em_rng *rng);
float em_rng_uniform(em_rng *rng);             /* [0, 1) */
float em_rng_normal(em_rng *rng);              /* N(0, 1) */
uint64_t em_rng_below(em_rng *rng, uint64_t n); /* [0, n), unbiased */
void em_rng_shuffle(em_rng *rng, int64_t *items, int64_t n);

/* Initialisers. A NULL rng leaves the values as they are: a model whose parameters are
 * all about to be loaded skips drawing them. */
void em_init_uniform(em_tensor *t, em_rng *rng, float lo, float hi);
void em_init_normal(em_tensor *t, em_rng *rng, float mean, float std);
/* fan_in/fan_out as PyTorch computes them for the weight's shape. */
void em_fan_in_out(const em_tensor *weight, int64_t *fan_in, int64_t *fan_out);
/* PyTorch's kaiming_uniform_(a=negative_slope, mode='fan_in', nonlinearity='leaky_relu'). */
void em_init_kaiming_uniform(em_tensor *t, em_rng *rng, float negative_slope);
void em_init_kaiming_normal(em_tensor *t, em_rng *rng, float negative_slope);
void em_init_xavier_uniform(em_tensor *t, em_rng *rng, float gain);
void em_init_xavier_normal(em_tensor *t, em_rng *rng, float gain);

#ifdef __cplusplus
}
#endif
#endif
