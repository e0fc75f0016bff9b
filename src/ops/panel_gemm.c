/* Small-row GEMM against a pre-packed right operand (see panel_gemm.h).
 *
 * The micro-kernel holds an MR x 16 block of C in MR vector registers (MR = 16 with
 * AVX-512's 32 registers) and, for each k, loads one row of the B panel and does MR
 * fused multiply-adds, each broadcasting one element of A straight from memory. K is cut
 * into chunks so that the rows of A being broadcast stay in L1 while every panel passes.
 * Written with the compiler's vector extensions, so it compiles anywhere; only with
 * AVX-512 is it faster than BLAS, which is what em_panel_gemm_enabled() reports. */
#include <string.h>

#include "ops/panel_gemm.h"

typedef float panel_vec __attribute__((vector_size(EM_PANEL * sizeof(float))));
/* The same vector at any float alignment, for rows of C. */
typedef float panel_vec_unaligned __attribute__((vector_size(EM_PANEL * sizeof(float)), aligned(4)));

/* 256 floats of 16 rows of A take 16 KiB: half of L1. */
#define K_CHUNK 256

static bool disabled_by_test;

bool em_panel_gemm_enabled(void)
{
#if defined(__AVX512F__)
    return !disabled_by_test;
#else
    return false;
#endif
}

void em_panel_gemm_set_disabled(bool disabled) { disabled_by_test = disabled; }

int64_t em_panel_packed_floats(int64_t k, int64_t n)
{
    return k * ((n + EM_PANEL - 1) / EM_PANEL) * EM_PANEL;
}

void em_panel_pack(const float *src, int64_t rs, int64_t cs, int64_t k, int64_t n, float *dst)
{
    const int64_t panels = (n + EM_PANEL - 1) / EM_PANEL;
    /* Called outside parallel regions, once per sequence: worth a team when large. */
#pragma omp parallel for schedule(static) if (k * n >= (1 << 16))
    for (int64_t p = 0; p < panels; p++) {
        float *panel = dst + p * k * EM_PANEL;
        const int64_t j0 = p * EM_PANEL, width = n - j0 < EM_PANEL ? n - j0 : EM_PANEL;
        for (int64_t kk = 0; kk < k; kk++) {
            float *row = panel + kk * EM_PANEL;
            const float *s = src + kk * rs + j0 * cs;
            for (int64_t j = 0; j < width; j++)
                row[j] = s[j * cs];
            for (int64_t j = width; j < EM_PANEL; j++)
                row[j] = 0.0f;
        }
    }
}

/* C[mr rows, cols <= 16] += A[mr, kk0..kk1) · panel rows kk0..kk1. Inlined into one
 * function per row count, so that the accumulators become registers. */
static inline __attribute__((always_inline)) void
micro_kernel(const int mr, const float *a, int64_t lda, const float *panel, int64_t kk0, int64_t kk1,
             float *c, int64_t ldc, int64_t cols)
{
    panel_vec acc[EM_PANEL];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
        acc[r] = (panel_vec){0};
    for (int64_t kk = kk0; kk < kk1; kk++) {
        const panel_vec b = *(const panel_vec *)(panel + kk * EM_PANEL);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++)
            acc[r] += a[r * lda + kk] * b;
    }
    if (cols == EM_PANEL) {
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++)
            *(panel_vec_unaligned *)(c + r * ldc) += acc[r];
    } else {
        for (int r = 0; r < mr; r++)
            for (int64_t j = 0; j < cols; j++)
                c[r * ldc + j] += acc[r][j];
    }
}

#define DEFINE_ROWS_KERNEL(MR)                                                                   \
    static void kernel_rows_##MR(const float *a, int64_t lda, const float *panel, int64_t kk0,    \
                                 int64_t kk1, float *c, int64_t ldc, int64_t cols)               \
    {                                                                                            \
        micro_kernel(MR, a, lda, panel, kk0, kk1, c, ldc, cols);                                 \
    }
DEFINE_ROWS_KERNEL(16)
DEFINE_ROWS_KERNEL(8)
DEFINE_ROWS_KERNEL(4)
DEFINE_ROWS_KERNEL(2)
DEFINE_ROWS_KERNEL(1)
#undef DEFINE_ROWS_KERNEL

/* One row against four whole panels at once. With a single row, micro_kernel's one
 * accumulator waits on each FMA's latency; four panels give four independent chains.
 * Each element gets micro_kernel's arithmetic exactly (its own FMA chain over the chunk
 * from zero, then added to C), so results do not depend on which path ran. */
static void kernel_row_4_panels(const float *a, const float *panel, int64_t panel_stride, int64_t kk0, int64_t kk1,
                                float *c)
{
    panel_vec acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
    const float *p0 = panel, *p1 = panel + panel_stride, *p2 = panel + 2 * panel_stride, *p3 = panel + 3 * panel_stride;
    for (int64_t kk = kk0; kk < kk1; kk++) {
        const float x = a[kk];
        acc0 += x * *(const panel_vec *)(p0 + kk * EM_PANEL);
        acc1 += x * *(const panel_vec *)(p1 + kk * EM_PANEL);
        acc2 += x * *(const panel_vec *)(p2 + kk * EM_PANEL);
        acc3 += x * *(const panel_vec *)(p3 + kk * EM_PANEL);
    }
    *(panel_vec_unaligned *)(c) += acc0;
    *(panel_vec_unaligned *)(c + EM_PANEL) += acc1;
    *(panel_vec_unaligned *)(c + 2 * EM_PANEL) += acc2;
    *(panel_vec_unaligned *)(c + 3 * EM_PANEL) += acc3;
}

typedef void (*rows_kernel)(const float *a, int64_t lda, const float *panel, int64_t kk0, int64_t kk1,
                            float *c, int64_t ldc, int64_t cols);

void em_panel_gemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *packed,
                   float *c, int64_t ldc)
{
    static const struct {
        int rows;
        rows_kernel fn;
    } kernels[] = {{16, kernel_rows_16}, {8, kernel_rows_8}, {4, kernel_rows_4}, {2, kernel_rows_2},
                   {1, kernel_rows_1}};
    const int64_t panels = (n + EM_PANEL - 1) / EM_PANEL;
    int64_t r0 = 0;
    for (size_t v = 0; v < sizeof kernels / sizeof kernels[0]; v++) {
        const int mr = kernels[v].rows;
        for (; m - r0 >= mr; r0 += mr) {
            const float *ab = a + r0 * lda;
            float *cb = c + r0 * ldc;
            for (int64_t k0 = 0; k0 < k; k0 += K_CHUNK) {
                const int64_t k1 = k - k0 < K_CHUNK ? k : k0 + K_CHUNK;
                int64_t p = 0;
                if (mr == 1) /* whole panels four at a time */
                    for (; (p + 4) * EM_PANEL <= n; p += 4)
                        kernel_row_4_panels(ab, packed + p * k * EM_PANEL, k * EM_PANEL, k0, k1, cb + p * EM_PANEL);
                for (; p < panels; p++) {
                    const int64_t j0 = p * EM_PANEL;
                    const int64_t cols = n - j0 < EM_PANEL ? n - j0 : EM_PANEL;
                    kernels[v].fn(ab, lda, packed + p * k * EM_PANEL, k0, k1, cb + j0, ldc, cols);
                }
            }
        }
    }
}
