/* The panel kernel of the recurrent steps: C += A·B against a double-precision loop, for
 * row counts that use every row block (16, 8, 4, 2, 1), widths that end in a partial
 * panel, depths over several K chunks, padded row strides, both packing orientations
 * (B as a matrix and as the transpose of one), and C being added to, not overwritten. */
#include <stdlib.h>
#include <string.h>

#include "ops/panel_gemm.h"
#include "testlib.h"

static void check_shape(int64_t m, int64_t n, int64_t k, bool transposed, em_rng *rng)
{
    const int64_t lda = k + 3, ldc = n + 5;
    float *a = malloc((size_t)(m * lda) * sizeof(float));
    float *src = malloc((size_t)(k * n) * sizeof(float));
    float *c = malloc((size_t)(m * ldc) * sizeof(float));
    float *packed = aligned_alloc(64, (size_t)((em_panel_packed_floats(k, n) * 4 + 63) / 64 * 64));
    float *want = malloc((size_t)(m * ldc) * sizeof(float));
    for (int64_t i = 0; i < m * lda; i++)
        a[i] = em_rng_normal(rng);
    for (int64_t i = 0; i < k * n; i++)
        src[i] = em_rng_normal(rng);
    for (int64_t i = 0; i < m * ldc; i++)
        c[i] = em_rng_normal(rng);
    /* B[kk][j] is src[kk*n + j] as a matrix, src[j*k + kk] as the transpose of one. */
    const int64_t rs = transposed ? 1 : n, cs = transposed ? k : 1;
    em_panel_pack(src, rs, cs, k, n, packed);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t j = 0; j < ldc; j++) {
            double acc = c[r * ldc + j];
            for (int64_t kk = 0; j < n && kk < k; kk++)
                acc += (double)a[r * lda + kk] * src[kk * rs + j * cs];
            want[r * ldc + j] = (float)acc;
        }
    }
    em_panel_gemm(m, n, k, a, lda, packed, c, ldc);
    /* Columns past n (the padding of each row of C) must be untouched. */
    double tol = 1e-6 * (double)k;
    CHECK_MSG(test_max_violation(c, want, m * ldc, tol, 1e-5) <= 1.0,
              "m %lld n %lld k %lld%s: worst violation %g", (long long)m, (long long)n, (long long)k,
              transposed ? " (transposed)" : "", test_max_violation(c, want, m * ldc, tol, 1e-5));
    free(a);
    free(src);
    free(c);
    free(packed);
    free(want);
}

int main(void)
{
    em_rng rng;
    em_rng_seed(&rng, 8);
    static const int64_t shapes[][3] = {{16, 64, 256}, {32, 1024, 256}, {13, 37, 300}, {31, 16, 5},
                                        {1, 16, 1},    {5, 1, 1},       {15, 200, 50}, {3, 50, 600}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < 2; t++)
            check_shape(shapes[i][0], shapes[i][1], shapes[i][2], t, &rng);
    CHECK(em_panel_packed_floats(7, 17) == 7 * 32);
    return test_finish();
}
