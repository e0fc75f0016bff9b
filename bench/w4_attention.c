/* The attention and layer-norm part of one W4 block (bench/WORKLOADS.md: byte-level GPT,
 * width 128, 4 heads, context 128, batch 16), forward + backward, for tuning:
 *   layer_norm   x [16, 128, 128] with weight and bias
 *   attention    em_causal_attention_qkv on qkv [16, 128, 384]
 *   sub-block    ln → linear 128→384 → attention → linear 128→128 (the whole attention
 *                half of a pre-LN block, so the two ops can be seen next to the GEMMs)
 * plus attention forward alone with gradients off, and one generation step through the
 * key/value cache at each length up to the context.
 *
 * Each figure is the median (and the fastest) over --iters timed iterations (after
 * warm-up) of one step: the forward, em_backward_with of a fixed upstream gradient,
 * em_step_end. CPU time is the whole process's, all threads.
 *
 * Usage: w4_attention [--iters N] [--threads N] [--batch B] [--seq T] */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ember.h"

typedef struct config {
    int64_t batch, seq, channels;
    int heads, iters;
} config;

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct bench_state {
    const config *cfg;
    em_tensor *x, *qkv_in;
    em_tensor *ln_w, *ln_b, *attn_w, *attn_b, *proj_w, *proj_b;
    float *upstream; /* [B, T, C] */
} bench_state;

typedef em_tensor *(*step_fn)(bench_state *s);

/* CPU seconds of the whole process (all threads): on a shared machine, with --threads 1,
 * a steadier figure than wall time. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct timing {
    double wall_ms, cpu_ms; /* medians */
    double best_ms;         /* fastest wall time: the figure least disturbed by other load */
} timing;

static em_tensor *step_layer_norm(bench_state *s) { return em_layer_norm(s->x, s->ln_w, s->ln_b, 1e-5f); }

static em_tensor *step_attention(bench_state *s) { return em_causal_attention_qkv(s->qkv_in, s->cfg->heads); }

static em_tensor *step_sub_block(bench_state *s)
{
    const config *c = s->cfg;
    em_tensor *h = em_layer_norm(s->x, s->ln_w, s->ln_b, 1e-5f);
    h = em_reshape(h, 2, (int64_t[]){c->batch * c->seq, c->channels});
    em_tensor *qkv = em_linear(h, s->attn_w, s->attn_b, EM_ACT_NONE, 0.0f);
    qkv = em_reshape(qkv, 3, (int64_t[]){c->batch, c->seq, 3 * c->channels});
    em_tensor *y = em_causal_attention_qkv(qkv, c->heads);
    y = em_reshape(y, 2, (int64_t[]){c->batch * c->seq, c->channels});
    y = em_linear(y, s->proj_w, s->proj_b, EM_ACT_NONE, 0.0f);
    return em_reshape(y, 3, (int64_t[]){c->batch, c->seq, c->channels});
}

/* Median milliseconds of forward (+ backward when `backward`). */
static timing time_steps(bench_state *s, step_fn fn, bool backward)
{
    const int iters = s->cfg->iters, warmup = 3;
    double *times = malloc((size_t)iters * sizeof(double)), *cpu = malloc((size_t)iters * sizeof(double));
    bool was = em_set_grad_enabled(backward);
    for (int i = -warmup; i < iters; i++) {
        double t0 = em_now(), c0 = cpu_now();
        em_tensor *out = fn(s);
        if (!out) {
            fprintf(stderr, "w4_attention: %s\n", ember_last_error());
            exit(1);
        }
        if (backward && em_backward_with(out, s->upstream) != EM_OK) {
            fprintf(stderr, "w4_attention: backward: %s\n", ember_last_error());
            exit(1);
        }
        em_step_end();
        double dt = em_now() - t0, dc = cpu_now() - c0;
        if (i >= 0) {
            times[i] = dt * 1e3;
            cpu[i] = dc * 1e3;
        }
    }
    em_set_grad_enabled(was);
    timing m = {median(times, iters), median(cpu, iters), times[0]}; /* sorted by median() */
    free(times);
    free(cpu);
    return m;
}

/* Multiply-adds of causal attention: two products of the lower triangle per head forward,
 * four backward. */
static double attention_flops(const config *c, bool backward)
{
    double tri = (double)c->seq * (double)(c->seq + 1) / 2.0;
    double per_product = 2.0 * tri * (double)(c->channels / c->heads);
    return (double)(c->batch * c->heads) * per_product * (backward ? 6.0 : 2.0);
}

/* Microseconds per token of a batch-1 generation pass through a cache of the full
 * context (one layer's attention only), averaged over the positions. */
static double time_cache(const config *c, em_rng *rng)
{
    em_arena *arena = em_arena_create(0);
    em_kv_cache *cache = em_kv_cache_new(arena, c->seq, c->channels, c->heads);
    em_tensor *qkv = em_tensor_empty(arena, 2, (int64_t[]){c->seq, 3 * c->channels});
    if (!cache || !qkv) {
        fprintf(stderr, "w4_attention: %s\n", ember_last_error());
        exit(1);
    }
    em_init_normal(qkv, rng, 0.0f, 1.0f);
    bool was = em_set_grad_enabled(false);
    double best = INFINITY;
    for (int rep = 0; rep < 5; rep++) {
        em_kv_cache_clear(cache);
        double t0 = em_now();
        for (int64_t pos = 0; pos < c->seq; pos++) {
            em_tensor *row = em_tensor_wrap(NULL, 2, (int64_t[]){1, 3 * c->channels},
                                            qkv->data + pos * 3 * c->channels);
            if (!em_kv_cache_step_qkv(cache, row)) {
                fprintf(stderr, "w4_attention: %s\n", ember_last_error());
                exit(1);
            }
            em_step_end();
        }
        double dt = (em_now() - t0) / (double)c->seq * 1e6;
        best = dt < best ? dt : best;
    }
    em_set_grad_enabled(was);
    em_arena_destroy(arena);
    return best;
}

int main(int argc, char **argv)
{
    config cfg = {16, 128, 128, 4, 50};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            cfg.iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            omp_set_num_threads(atoi(argv[++i]));
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            cfg.batch = atoll(argv[++i]);
        else if (strcmp(argv[i], "--seq") == 0 && i + 1 < argc)
            cfg.seq = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--iters N] [--threads N] [--batch B] [--seq T]\n", argv[0]);
            return 2;
        }
    }
    if (cfg.iters < 1 || cfg.batch < 1 || cfg.seq < 1) {
        fprintf(stderr, "w4_attention: --iters, --batch and --seq must be >= 1\n");
        return 2;
    }
    em_arena *arena = em_arena_create(0);
    em_rng rng;
    em_rng_seed(&rng, 0);
    const int64_t b = cfg.batch, t = cfg.seq, c = cfg.channels;
    bench_state s = {&cfg, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    s.x = em_param_new(arena, 3, (int64_t[]){b, t, c}, "x");
    s.qkv_in = em_param_new(arena, 3, (int64_t[]){b, t, 3 * c}, "qkv");
    s.ln_w = em_param_new(arena, 1, (int64_t[]){c}, "ln.weight");
    s.ln_b = em_param_new(arena, 1, (int64_t[]){c}, "ln.bias");
    s.attn_w = em_param_new(arena, 2, (int64_t[]){3 * c, c}, "attn.weight");
    s.attn_b = em_param_new(arena, 1, (int64_t[]){3 * c}, "attn.bias");
    s.proj_w = em_param_new(arena, 2, (int64_t[]){c, c}, "proj.weight");
    s.proj_b = em_param_new(arena, 1, (int64_t[]){c}, "proj.bias");
    em_tensor *up = em_tensor_empty(arena, 3, (int64_t[]){b, t, c});
    if (!s.x || !s.qkv_in || !s.ln_w || !s.ln_b || !s.attn_w || !s.attn_b || !s.proj_w ||
        !s.proj_b || !up) {
        fprintf(stderr, "w4_attention: %s\n", ember_last_error());
        return 1;
    }
    em_init_normal(s.x, &rng, 0.0f, 1.0f);
    em_init_normal(s.qkv_in, &rng, 0.0f, 1.0f);
    em_fill(s.ln_w, 1.0f);
    em_init_normal(s.attn_w, &rng, 0.0f, 0.02f);
    em_init_normal(s.proj_w, &rng, 0.0f, 0.02f);
    em_init_normal(up, &rng, 0.0f, 1.0f);
    s.upstream = up->data;

    printf("W4 attention block: B=%lld T=%lld C=%lld heads=%d, %d threads, median of %d\n",
           (long long)b, (long long)t, (long long)c, cfg.heads, omp_get_max_threads(), cfg.iters);
    timing ln = time_steps(&s, step_layer_norm, true);
    timing att = time_steps(&s, step_attention, true);
    timing att_fwd = time_steps(&s, step_attention, false);
    timing block = time_steps(&s, step_sub_block, true);
    double cache_us = time_cache(&cfg, &rng);
    printf("                            wall ms   cpu ms  best ms  GFLOP/s (causal flops, best)\n");
    printf("layer_norm fwd+bwd          %8.3f %8.3f %8.3f\n", ln.wall_ms, ln.cpu_ms, ln.best_ms);
    printf("attention fwd+bwd           %8.3f %8.3f %8.3f  %6.1f\n", att.wall_ms, att.cpu_ms,
           att.best_ms, attention_flops(&cfg, true) / (att.best_ms * 1e-3) * 1e-9);
    printf("attention fwd, no grad      %8.3f %8.3f %8.3f  %6.1f\n", att_fwd.wall_ms,
           att_fwd.cpu_ms, att_fwd.best_ms,
           attention_flops(&cfg, false) / (att_fwd.best_ms * 1e-3) * 1e-9);
    printf("ln+linear+attn+linear f+b   %8.3f %8.3f %8.3f  (attention + 1 layer_norm = %.0f%%)\n",
           block.wall_ms, block.cpu_ms, block.best_ms,
           100.0 * (att.best_ms + ln.best_ms) / block.best_ms);
    printf("kv-cache step, 1 layer      %8.2f us per token (mean over positions 1..%lld)\n",
           cache_us, (long long)t);
    em_release_thread_state();
    em_arena_destroy(arena);
    return 0;
}
