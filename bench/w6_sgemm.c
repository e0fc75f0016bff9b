/* W6 of WORKLOADS.md: C = A·B, row-major float32, M = N = K, through ember's matmul
 * path (em_matmul with gradients off) and, for reference, cblas_sgemm called directly.
 * Also measures the machine's float32 peak with an FMA loop: one thread and all
 * threads, and the clock implied by a chain of dependent FMAs.
 *
 * Usage: w6_sgemm [--threads N] [--seconds S] [--sizes 64,128,...] [--json FILE]
 * Prints a table; with --json also writes the figures as one JSON object. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "ember.h"

typedef float v16f __attribute__((vector_size(64)));

/* Twelve independent FMA chains in registers: enough to cover the FMA latency (4
 * cycles) on both FMA pipes. */
#define CHAINS 12

static double fma_throughput_loop(long iters)
{
    v16f mul, add, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;
    for (int i = 0; i < 16; i++) {
        mul[i] = 0.999999f;
        add[i] = 1e-7f;
        a0[i] = (float)i, a1[i] = a0[i] + 1, a2[i] = a0[i] + 2, a3[i] = a0[i] + 3;
        a4[i] = a0[i] + 4, a5[i] = a0[i] + 5, a6[i] = a0[i] + 6, a7[i] = a0[i] + 7;
        a8[i] = a0[i] + 8, a9[i] = a0[i] + 9, a10[i] = a0[i] + 10, a11[i] = a0[i] + 11;
    }
    for (long it = 0; it < iters; it++) {
        a0 = a0 * mul + add, a1 = a1 * mul + add, a2 = a2 * mul + add, a3 = a3 * mul + add;
        a4 = a4 * mul + add, a5 = a5 * mul + add, a6 = a6 * mul + add, a7 = a7 * mul + add;
        a8 = a8 * mul + add, a9 = a9 * mul + add, a10 = a10 * mul + add, a11 = a11 * mul + add;
    }
    v16f sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    return (double)sum[0];
}

/* flop/s of `threads` threads each running the FMA loop. */
static double measure_peak(int threads, double *sink)
{
    const long iters = 20000000;
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = em_now(), s = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
        s += fma_throughput_loop(iters);
        double dt = em_now() - t0;
        *sink += s;
        double flops = (double)threads * (double)iters * CHAINS * 16 * 2;
        if (flops / dt > best)
            best = flops / dt;
    }
    return best;
}

/* Clock from a dependent chain of scalar FMAs (latency 4 cycles on Zen 4). */
static double measure_clock_ghz(int fma_latency, double *sink)
{
    const long iters = 200000000;
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        float x = 1.0f, m = 0.9999999f, a = 1e-8f;
        double t0 = em_now();
        for (long i = 0; i < iters; i++) {
            x = x * m + a;
            __asm__ volatile("" : "+x"(x));
        }
        double dt = em_now() - t0;
        *sink += x;
        double ghz = (double)iters * fma_latency / dt * 1e-9;
        if (ghz > best)
            best = ghz;
    }
    return best;
}

typedef struct size_result {
    int n;
    double ember_best, ember_median;   /* GFLOP/s */
    double blas_best, blas_median;
} size_result;

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs fn repeatedly for about `seconds` (at least 5 times), GFLOP/s best and median. */
typedef void (*gemm_fn)(void *ctx);

static void time_gemm(gemm_fn fn, void *ctx, int n, double seconds, double *best, double *median)
{
    enum { MAX_RUNS = 4096 };
    static double rates[MAX_RUNS];
    double flops = 2.0 * n * (double)n * n;
    fn(ctx); /* warm up: pages, BLAS buffers, thread pool */
    fn(ctx);
    int runs = 0;
    double start = em_now();
    while (runs < MAX_RUNS && (runs < 5 || em_now() - start < seconds)) {
        double t0 = em_now();
        fn(ctx);
        rates[runs++] = flops / (em_now() - t0) * 1e-9;
    }
    qsort(rates, (size_t)runs, sizeof rates[0], compare_double);
    *best = rates[runs - 1];
    *median = rates[runs / 2];
}

typedef struct gemm_ctx {
    em_tensor *a, *b;
    int n;
    float *c;
} gemm_ctx;

static void run_ember(void *p)
{
    gemm_ctx *g = p;
    em_tensor *c = em_matmul(g->a, g->b);
    if (!c) {
        fprintf(stderr, "em_matmul: %s\n", ember_last_error());
        exit(1);
    }
    em_step_end();
}

static void run_blas(void *p)
{
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->n, g->n, 1.0f, g->a->data, g->n,
                g->b->data, g->n, 0.0f, g->c, g->n);
}

int main(int argc, char **argv)
{
    int threads = 2;
    double seconds = 1.0;
    const char *json_path = NULL;
    int sizes[16] = {64, 128, 256, 512, 1024, 2048};
    int n_sizes = 6;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json_path = argv[++i];
        } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            n_sizes = 0;
            for (char *s = strtok(argv[++i], ","); s && n_sizes < 16; s = strtok(NULL, ","))
                sizes[n_sizes++] = atoi(s);
        } else {
            fprintf(stderr, "usage: %s [--threads N] [--seconds S] [--sizes 64,128,...] [--json FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    em_set_num_threads(threads);
    em_set_grad_enabled(false);

    double sink = 0.0;
    double peak1 = measure_peak(1, &sink);
    double peak_all = measure_peak(threads, &sink);
    double ghz = measure_clock_ghz(4, &sink);
    printf("float32 peak (FMA loop): %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads; "
           "clock from dependent FMAs: %.2f GHz (the loop reaches %.0f flop/cycle/core)\n",
           peak1 * 1e-9, peak_all * 1e-9, threads, ghz, peak_all * 1e-9 / (ghz * threads));
    const double peak_gflops = peak_all * 1e-9; /* fractions are of this machine's measured peak */
    printf("%6s %12s %12s %12s %12s %10s\n", "n", "ember best", "ember median", "BLAS best",
           "BLAS median", "of peak");

    em_arena *arena = em_arena_create(0);
    em_rng rng;
    em_rng_seed(&rng, 0);
    size_result results[16];
    for (int s = 0; s < n_sizes; s++) {
        int n = sizes[s];
        gemm_ctx g;
        g.n = n;
        g.a = em_tensor_empty(arena, 2, (int64_t[]){n, n});
        g.b = em_tensor_empty(arena, 2, (int64_t[]){n, n});
        g.c = em_arena_alloc(arena, (size_t)n * n * sizeof(float));
        if (!g.a || !g.b || !g.c) {
            fprintf(stderr, "%s\n", ember_last_error());
            return 1;
        }
        em_init_uniform(g.a, &rng, -1.0f, 1.0f);
        em_init_uniform(g.b, &rng, -1.0f, 1.0f);
        size_result *r = &results[s];
        r->n = n;
        time_gemm(run_ember, &g, n, seconds, &r->ember_best, &r->ember_median);
        time_gemm(run_blas, &g, n, seconds, &r->blas_best, &r->blas_median);
        printf("%6d %12.1f %12.1f %12.1f %12.1f %9.0f%%\n", n, r->ember_best, r->ember_median,
               r->blas_best, r->blas_median, 100.0 * r->ember_median / peak_gflops);
        fflush(stdout);
    }

    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) {
            perror(json_path);
            return 1;
        }
        fprintf(f, "{\"workload\": \"W6\", \"side\": \"ember\", \"threads\": %d,\n", threads);
        fprintf(f, " \"peak_gflops_1thread\": %.2f, \"peak_gflops\": %.2f, \"clock_ghz\": %.3f,\n",
                peak1 * 1e-9, peak_all * 1e-9, ghz);
        fprintf(f, " \"env\": {\"OMP_PROC_BIND\": \"%s\", \"OMP_WAIT_POLICY\": \"%s\"},\n",
                getenv("OMP_PROC_BIND") ? getenv("OMP_PROC_BIND") : "",
                getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "");
        fprintf(f, " \"sizes\": [\n");
        for (int s = 0; s < n_sizes; s++)
            fprintf(f,
                    "  {\"n\": %d, \"ember_best\": %.2f, \"ember_median\": %.2f, \"blas_best\": %.2f, "
                    "\"blas_median\": %.2f}%s\n",
                    results[s].n, results[s].ember_best, results[s].ember_median, results[s].blas_best,
                    results[s].blas_median, s + 1 < n_sizes ? "," : "");
        fprintf(f, " ]}\n");
        fclose(f);
    }
    em_arena_destroy(arena);
    em_release_thread_state();
    return sink == 12345.0; /* never: keeps the peak loops' results alive */
}
