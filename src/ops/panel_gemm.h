/* Internal: C += A·B for a few rows of A (a recurrent step's batch block) against a right
 * operand packed once and reused for many products (the recurrent weights, reused at
 * every step of a sequence). BLAS repacks B on every call, which at these shapes costs
 * as much as the arithmetic; here B is packed into panels of EM_PANEL columns, each a
 * K x EM_PANEL block read with aligned vector loads, and every row of A is broadcast
 * against them. Compiled only where AVX-512 is available: elsewhere
 * em_panel_gemm_enabled() is false and callers use BLAS. */
#ifndef EMBER_PANEL_GEMM_H
#define EMBER_PANEL_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#define EM_PANEL 16

/* True when the kernel is compiled in and not switched off by the test hook. */
bool em_panel_gemm_enabled(void);
/* Test hook: forces callers onto their BLAS path (to test it on machines with AVX-512). */
void em_panel_gemm_set_disabled(bool disabled);

/* Floats needed for the packed form of a k x n matrix (n rounded up to whole panels). */
int64_t em_panel_packed_floats(int64_t k, int64_t n);
/* Packs the k x n matrix B[kk][j] = src[kk·rs + j·cs] (zero beyond column n). dst must be
 * 64-byte aligned. */
void em_panel_pack(const float *src, int64_t rs, int64_t cs, int64_t k, int64_t n, float *dst);
/* C[m, n] (row stride ldc) += A[m, k] (row stride lda) · B, B packed by em_panel_pack.
 * Single-threaded: callers split rows over threads. Row strides that are multiples of
 * 4 KiB make rows of A share cache sets; callers pad such strides. */
void em_panel_gemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *packed,
                   float *c, int64_t ldc);

#endif
