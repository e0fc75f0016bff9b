/* W5 of WORKLOADS.md in ember: batch-1 forward latency of W2's network (models/cnn.ember,
 * default init, seed 0) in evaluation mode with gradients off. The input is the first
 * Fashion-MNIST test image. Each call is one em_forward plus the em_step_end that frees
 * its activations; after warm-up calls, 1000 calls are timed one by one and their median
 * is the figure (in microseconds). Measured with 1 and 2 threads (a batch of one image
 * may not pay for waking a second thread); the faster is the headline.
 *
 * Usage: w5_latency [--threads N] [--calls N] [--repeat N] [--json FILE]
 *        (--threads N: only that count; default: 1 and 2) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

#define MAX_CALLS 100000
#define WARMUP_CALLS 200

static const char cnn_description[] =
    "input    1x28x28\n"
    "conv2d   32 3 pad=1\n"
    "relu\n"
    "maxpool  2\n"
    "conv2d   64 3 pad=1\n"
    "relu\n"
    "maxpool  2\n"
    "flatten\n"
    "linear   128\n"
    "relu\n"
    "linear   10\n";

typedef struct latency {
    int threads;
    double median_us, best_us, p90_us; /* of the best of the repeats (by median) */
    double all_median_us[16];
    int repeats;
    int predicted_class;
} latency;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int fail(const char *what)
{
    fprintf(stderr, "w5_latency: %s: %s\n", what, ember_last_error());
    return EM_ERR;
}

/* One forward and the end of its step; the predicted class (-1 on failure). */
static int classify_once(em_model *m, em_tensor *x)
{
    em_tensor *logits = em_forward(m, x);
    int32_t cls = -1;
    if (logits)
        em_argmax_rows(logits, &cls);
    em_step_end();
    return cls;
}

static int measure(em_model *m, em_tensor *x, int threads, int calls, int repeats, double *times, latency *out)
{
    em_set_num_threads(threads);
    *out = (latency){.threads = threads, .repeats = repeats};
    for (int i = 0; i < WARMUP_CALLS; i++)
        if (classify_once(m, x) < 0)
            return fail("forward");
    for (int r = 0; r < repeats; r++) {
        for (int i = 0; i < calls; i++) {
            double start = em_now();
            out->predicted_class = classify_once(m, x);
            times[i] = em_now() - start;
        }
        qsort(times, (size_t)calls, sizeof *times, cmp_double);
        double median = 1e6 * (calls % 2 ? times[calls / 2] : 0.5 * (times[calls / 2 - 1] + times[calls / 2]));
        out->all_median_us[r] = median;
        if (r == 0 || median < out->median_us) {
            out->median_us = median;
            out->best_us = 1e6 * times[0];
            out->p90_us = 1e6 * times[(calls * 9) / 10];
        }
    }
    printf("%d thread%s: median %.1f us per image (fastest call %.1f, 90th percentile %.1f), class %d\n", threads,
           threads == 1 ? "" : "s", out->median_us, out->best_us, out->p90_us, out->predicted_class);
    fflush(stdout);
    return EM_OK;
}

static int write_json(const char *path, int calls, const latency *runs, int n, int fastest)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    fprintf(f, "{\"workload\": \"W5\", \"side\": \"ember\", \"calls\": %d, \"warmup\": %d,\n", calls, WARMUP_CALLS);
    fprintf(f, " \"median_us\": %.2f, \"threads\": %d,\n \"by_threads\": [", runs[fastest].median_us,
            runs[fastest].threads);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\n  {\"threads\": %d, \"median_us\": %.2f, \"best_us\": %.2f, \"p90_us\": %.2f, "
                   "\"all_median_us\": [",
                i ? "," : "", runs[i].threads, runs[i].median_us, runs[i].best_us, runs[i].p90_us);
        for (int r = 0; r < runs[i].repeats; r++)
            fprintf(f, "%s%.2f", r ? ", " : "", runs[i].all_median_us[r]);
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    int only_threads = 0, calls = 1000, repeat = 1;
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            only_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--calls") && i + 1 < argc)
            calls = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--calls N] [--repeat N] [--json FILE]\n", argv[0]);
            return 2;
        }
    }
    if (calls < 1 || calls > MAX_CALLS)
        calls = 1000;
    if (repeat < 1 || repeat > 16)
        repeat = repeat < 1 ? 1 : 16;

    em_dataset *test = em_dataset_open("fashion-mnist", EM_SPLIT_TEST, -1);
    em_model *m = test ? em_model_parse(cnn_description, "w5_latency", 0) : NULL;
    em_arena *arena = m ? em_arena_create(0) : NULL;
    int32_t label = -1;
    em_tensor *x = arena ? em_dataset_gather(test, (const int64_t[]){0}, 1, arena, &label) : NULL;
    double *times = x ? malloc((size_t)calls * sizeof *times) : NULL;
    int status = 1;
    if (!times) {
        fail("set-up");
        goto done;
    }
    em_model_set_training(m, false);
    em_set_grad_enabled(false);

    latency runs[2];
    int n = 0;
    if (only_threads > 0) {
        if (measure(m, x, only_threads, calls, repeat, times, &runs[n++]) != EM_OK)
            goto done;
    } else {
        for (int t = 1; t <= 2; t++)
            if (measure(m, x, t, calls, repeat, times, &runs[n++]) != EM_OK)
                goto done;
    }
    int fastest = 0;
    for (int i = 1; i < n; i++)
        if (runs[i].median_us < runs[fastest].median_us)
            fastest = i;
    printf("fastest: %d thread%s, %.1f us per image\n", runs[fastest].threads, runs[fastest].threads == 1 ? "" : "s",
           runs[fastest].median_us);
    status = json_path ? write_json(json_path, calls, runs, n, fastest) : 0;
done:
    free(times);
    em_arena_destroy(arena);
    em_model_free(m);
    em_dataset_free(test);
    em_release_thread_state();
    return status;
}
