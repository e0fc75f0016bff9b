/* The convolutional part of W2 (bench/WORKLOADS.md) in ember, op level, for tuning:
 * conv 1->32 3x3 pad 1 + ReLU, max pool 2, conv 32->64 3x3 pad 1 + ReLU, max pool 2 on
 * [64, 1, 28, 28] batches of random data (the input needs no gradient, as in training).
 * Times, per batch: the forward of each stage, the whole forward + backward (a fixed
 * upstream gradient, as the rest of the network would send), and each conv layer's
 * forward + backward on its own. Median over the iterations, after warm-up.
 *
 * Usage: w2_conv_layers [--threads N] [--iters N] [--batch N] [--algorithm auto|unfolded|winograd] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "ops/conv_internal.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v; the median. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median and fastest (a shared machine adds noise only upwards). */
static void report(const char *what, double *v, int n)
{
    double m = median(v, n);
    printf("  %-30s %8.3f %8.3f\n", what, 1e3 * m, 1e3 * v[0]);
}

static void die(const char *what)
{
    fprintf(stderr, "w2_conv_layers: %s: %s\n", what, ember_last_error());
    exit(1);
}

typedef struct layers {
    em_tensor *w1, *b1, *w2, *b2;
} layers;

#define STAGES 5
static const char *const stage_names[STAGES] = {"conv1+relu", "pool1", "conv2+relu", "pool2", "backward"};

/* One training step of the four stages; t[] gets each stage's seconds. */
static void step(const layers *l, em_tensor *x, const float *upstream, double *t)
{
    double t0 = em_now();
    em_tensor *h = em_conv2d(x, l->w1, l->b1, 1, 1, 1, 1, 1, 1, 1, EM_ACT_RELU, 0);
    double t1 = em_now();
    h = em_max_pool2d(h, 2, 2, 2, 2, 0, 0);
    double t2 = em_now();
    h = em_conv2d(h, l->w2, l->b2, 1, 1, 1, 1, 1, 1, 1, EM_ACT_RELU, 0);
    double t3 = em_now();
    h = em_max_pool2d(h, 2, 2, 2, 2, 0, 0);
    double t4 = em_now();
    if (!h || em_backward_with(h, upstream) != EM_OK)
        die("step");
    double t5 = em_now();
    t[0] = t1 - t0;
    t[1] = t2 - t1;
    t[2] = t3 - t2;
    t[3] = t4 - t3;
    t[4] = t5 - t4;
}

/* One conv layer's forward + backward alone. */
static double conv_alone(em_tensor *x, em_tensor *w, em_tensor *b, const float *upstream)
{
    double t0 = em_now();
    em_tensor *y = em_conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1, EM_ACT_RELU, 0);
    if (!y || em_backward_with(y, upstream) != EM_OK)
        die("conv");
    return em_now() - t0;
}

int main(int argc, char **argv)
{
    int threads = 2, iters = 50;
    int64_t batch = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--algorithm") && i + 1 < argc) {
            const char *a = argv[++i];
            em_conv_force_algorithm(!strcmp(a, "unfolded") ? EM_CONV_UNFOLDED
                                    : !strcmp(a, "winograd") ? EM_CONV_WINOGRAD : EM_CONV_AUTO);
        }
        else {
            fprintf(stderr, "usage: %s [--threads N] [--iters N] [--batch N] [--algorithm auto|unfolded|winograd]\n",
                    argv[0]);
            return 2;
        }
    }
    if (iters < 1 || batch < 1) {
        fprintf(stderr, "w2_conv_layers: --iters and --batch must be >= 1\n");
        return 2;
    }
    em_set_num_threads(threads);
    em_arena *params = em_arena_create(0);
    em_rng rng;
    em_rng_seed(&rng, 0);
    layers l = {
        em_param_new(params, 4, (int64_t[]){32, 1, 3, 3}, "conv1.weight"),
        em_param_new(params, 1, (int64_t[]){32}, "conv1.bias"),
        em_param_new(params, 4, (int64_t[]){64, 32, 3, 3}, "conv2.weight"),
        em_param_new(params, 1, (int64_t[]){64}, "conv2.bias"),
    };
    if (!l.w1 || !l.b1 || !l.w2 || !l.b2)
        die("parameters");
    em_init_kaiming_uniform(l.w1, &rng, 2.2360679f);
    em_init_uniform(l.b1, &rng, -0.3f, 0.3f);
    em_init_kaiming_uniform(l.w2, &rng, 2.2360679f);
    em_init_uniform(l.b2, &rng, -0.05f, 0.05f);

    /* Inputs and upstream gradients live outside the step arena. */
    em_tensor *x = em_tensor_empty(params, 4, (int64_t[]){batch, 1, 28, 28});
    em_tensor *x2 = em_tensor_empty(params, 4, (int64_t[]){batch, 32, 14, 14});
    float *up = em_arena_alloc(params, (size_t)(batch * 64 * 7 * 7) * sizeof(float));
    float *up1 = em_arena_alloc(params, (size_t)(batch * 32 * 28 * 28) * sizeof(float));
    float *up2 = em_arena_alloc(params, (size_t)(batch * 64 * 14 * 14) * sizeof(float));
    if (!x || !x2 || !up || !up1 || !up2)
        die("buffers");
    em_init_uniform(x, &rng, 0.0f, 1.0f);
    em_init_uniform(x2, &rng, 0.0f, 1.0f);
    x2->requires_grad = true;
    for (int64_t i = 0; i < batch * 64 * 7 * 7; i++)
        up[i] = 1e-3f * em_rng_normal(&rng);
    for (int64_t i = 0; i < batch * 32 * 28 * 28; i++)
        up1[i] = 1e-3f * em_rng_normal(&rng);
    for (int64_t i = 0; i < batch * 64 * 14 * 14; i++)
        up2[i] = 1e-3f * em_rng_normal(&rng);

    double *samples[STAGES + 3];
    for (int s = 0; s < STAGES + 3; s++)
        samples[s] = calloc((size_t)iters, sizeof(double));
    const int warmup = 3;
    for (int it = -warmup; it < iters; it++) {
        double t[STAGES];
        step(&l, x, up, t);
        em_step_end();
        double c1 = conv_alone(x, l.w1, l.b1, up1);
        em_step_end();
        x2->grad = NULL;
        double c2 = conv_alone(x2, l.w2, l.b2, up2);
        em_step_end();
        if (it < 0)
            continue;
        double total = 0;
        for (int s = 0; s < STAGES; s++) {
            samples[s][it] = t[s];
            total += t[s];
        }
        samples[STAGES][it] = total;
        samples[STAGES + 1][it] = c1;
        samples[STAGES + 2][it] = c2;
    }
    printf("W2 conv layers, batch %lld, %d threads, %d steps (ms per batch):\n", (long long)batch,
           threads, iters);
    printf("  %-30s %8s %8s\n", "", "median", "fastest");
    for (int s = 0; s < STAGES; s++)
        report(stage_names[s], samples[s], iters);
    report("forward + backward", samples[STAGES], iters);
    printf("  %-30s %8.2f %8.2f\n", "  x 938 batches (s per epoch)", 938 * samples[STAGES][iters / 2],
           938 * samples[STAGES][0]);
    report("conv1 fwd+bwd alone", samples[STAGES + 1], iters);
    report("conv2 fwd+bwd alone (with dx)", samples[STAGES + 2], iters);
    for (int s = 0; s < STAGES + 3; s++)
        free(samples[s]);
    em_arena_destroy(params);
    em_release_thread_state();
    return 0;
}
