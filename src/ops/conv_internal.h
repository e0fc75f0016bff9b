/* Internal: what the two convolution algorithms share. conv.c checks the arguments,
 * records the op and runs im2col + GEMM; conv_winograd.c runs 3x3 stride-1 layers in the
 * Winograd domain. Both fuse the same bias and activation. */
#ifndef EMBER_CONV_INTERNAL_H
#define EMBER_CONV_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "ember/cnn_ops.h"
#include "ops/pool_internal.h"

typedef struct conv_geom {
    int64_t n, c, h, w;     /* input */
    int64_t o, kh, kw;      /* weight: [o, cg, kh, kw] */
    int64_t oh, ow;         /* output plane */
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t groups, cg, og; /* groups; input and output channels per group */
    int64_t k;              /* rows of a group's column matrix: cg·kh·kw */
    int64_t p;              /* output positions per plane: oh·ow */
    bool direct;            /* 1x1, stride 1, no padding: the input is its own column matrix */
    bool winograd;          /* computed by conv_winograd.c */
    int winograd_tile;      /* its output tile side, 2 or 4 */
} conv_geom;

/* What backward needs besides the node's inputs and output. */
typedef struct conv_saved {
    conv_geom g;
    em_activation act;
    float act_param;
    const float *pre; /* pre-activation when act' needs it, else NULL */
    const float *winograd_u; /* the Winograd-domain weights of the forward, or NULL */
} conv_saved;

/* Threads for a loop over images: the whole team when every thread gets work, else one
 * (BLAS then parallelises each product on its own). */
int em_conv_batch_threads(int64_t images);

/* y = act(pre) over n elements (pre and y may coincide; none leaves y alone, so the
 * caller passes pre == y for it). */
void em_conv_activate(em_activation act, float param, const float *pre, float *y, int64_t n);

/* dz = dy·act'(z) over n elements, from y alone when pre is NULL (see
 * em_conv_keeps_pre_activation). Returns dy itself for no activation, else dz. */
const float *em_conv_activation_grad(em_activation act, float param, const float *pre,
                                     const float *y, const float *dy, float *dz, int64_t n);

/* Whether backward needs the pre-activation kept (its derivative is not a function of
 * the output). */
bool em_conv_keeps_pre_activation(em_activation act, float param);

/* ---- Winograd F(2x2, 3x3) and F(4x4, 3x3) (conv_winograd.c) --------------------------- */
/* Whether the layer runs in the Winograd domain: it must be 3x3, stride 1, undilated and
 * ungrouped, and by default also have enough channels and more than one image for it to
 * pay. */
bool em_conv_winograd_applies(const conv_geom *g);
/* The output tile side for a layer that runs in the Winograd domain: 4 where its smaller
 * GEMMs pay for its larger transforms and its tiles' overhang, else 2. */
int em_conv_winograd_tile(const conv_geom *g);

/* Test and benchmark hook: AUTO chooses per layer as above; the others force one algorithm
 * wherever it can run. Not thread-safe: set it before running ops. */
typedef enum em_conv_algorithm {
    EM_CONV_AUTO = 0,
    EM_CONV_UNFOLDED,
    EM_CONV_WINOGRAD
} em_conv_algorithm;
void em_conv_force_algorithm(em_conv_algorithm algorithm);
/* Test and benchmark hook: Winograd's output tile side, 2 or 4 (0 chooses per layer). */
void em_conv_force_winograd_tile(int m);
/* pre = conv(x, w) + bias, then y = act(pre) (pre == y when no separate pre-activation is
 * kept). *u_out gets the transformed weights (step arena) for backward. EM_ERR if scratch
 * memory runs out. */
int em_conv_winograd_forward(const conv_geom *g, const float *x, const float *w, const float *bias,
                             em_activation act, float act_param, float *pre, float *y,
                             const float **u_out);
/* Max pooling applied by a convolution to its own output, plane by plane, by the thread
 * that computed each plane (inference on batches smaller than the team). */
typedef struct conv_pool_epilogue {
    const pool_geom *pool;
    float *out; /* [n, o, pool->oh, pool->ow] */
} conv_pool_epilogue;

/* The same without backward (*u_out NULL when the weights came from the per-thread
 * cache of conv_winograd_packed.c). With ep, *pooled tells whether ep's pooling was done
 * too (else the caller pools y). */
int em_conv_winograd_infer(const conv_geom *g, const float *x, const float *w, const float *bias,
                           em_activation act, float act_param, float *y, const float **u_out,
                           const conv_pool_epilogue *ep, bool *pooled);
/* Inference of a batch followed by ep's pooling, the threads taking whole images, with
 * only the pooled output kept; *done false (and nothing done) when the transformed
 * weights could not be cached. */
int em_conv_winograd_infer_pooled(const conv_geom *g, const float *x, const float *w, const float *bias,
                                  em_activation act, float act_param, const conv_pool_epilogue *ep, bool *done);
/* u [a²][o·c] = the Winograd transform of each 3x3 filter of w [o·c, 9], tile side m. */
void em_conv_winograd_weights(const conv_geom *g, int m, const float *w, float *u);

/* ---- inference (conv_winograd_packed.c) -------------------------------------------- */
/* w's transformed weights packed [a²][c][round16(o)], from this thread's cache when w
 * still holds the values they came from, else transformed and cached now. NULL if memory
 * runs out (the caller then transforms on its own). */
const float *em_conv_winograd_packed_weights(const conv_geom *g, int m, const float *w);
/* c [rows, n] = a [rows, k] · b [k, n] (row strides lda, ldb, ldc), n a multiple of 16. */
void em_conv_packed_gemm(int64_t rows, int64_t k, int64_t n, const float *a, int64_t lda, const float *b,
                         int64_t ldb, float *c, int64_t ldc);
/* Frees this thread's cached weights (em_release_thread_state calls it). */
void em_conv_release_cache(void);
/* Adds the gradients of the inputs that require one (x, w, b; b may be NULL). */
int em_conv_winograd_backward(const conv_saved *s, em_tensor *x, em_tensor *w, em_tensor *b,
                              const float *y, const float *dy);

#endif
