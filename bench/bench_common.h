/* What the epoch benchmarks (w1_mlp, w2_cnn) share: their command line, one timed
 * epoch of an explicit training loop followed by an untimed test evaluation, the line
 * printed per run and the runs' seconds in the JSON. Every C file of bench/ is a program
 * of its own, so the helpers are static inline here rather than a linked file. */
#ifndef EMBER_BENCH_COMMON_H
#define EMBER_BENCH_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

#define BENCH_MAX_RUNS 16

typedef struct bench_args {
    int threads;
    int n_runs;          /* --repeat, within 1..BENCH_MAX_RUNS */
    long long max_steps; /* --steps (when the program takes it): 0 = the whole epoch */
    const char *data;
    const char *json_path;
} bench_args;

typedef struct bench_run {
    double seconds;
    double test_accuracy;
    double last_loss;
    int64_t batches;
} bench_run;

/* --threads N (default 2), --repeat N (1), --steps N (only with_steps), --data SPEC
 * (fashion-mnist), --json FILE. Returns 0, or 2 after printing the usage. */
static inline int bench_parse_args(int argc, char **argv, bool with_steps, bench_args *a)
{
    int repeat = 1;
    *a = (bench_args){.threads = 2, .data = "fashion-mnist"};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            a->threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (with_steps && !strcmp(argv[i], "--steps") && i + 1 < argc)
            a->max_steps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--data") && i + 1 < argc)
            a->data = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            a->json_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--repeat N]%s [--data SPEC] [--json FILE]\n", argv[0],
                    with_steps ? " [--steps N]" : "");
            return 2;
        }
    }
    a->n_runs = repeat < 1 ? 1 : repeat < BENCH_MAX_RUNS ? repeat : BENCH_MAX_RUNS;
    return 0;
}

static inline int bench_fail(const char *program, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", program, what, ember_last_error());
    return EM_ERR;
}

/* Trains m (freed here) with a fresh optimizer on train in file order, batches of
 * batch, for an epoch or max_steps batches (when > 0); only that loop is timed. Then
 * the test accuracy, in batches of test_batch. */
static inline int bench_epoch(const char *program, em_model *m, em_optim_kind kind, const em_optim_opts *opts,
                              const em_dataset *train, int64_t batch, int64_t max_steps, const em_dataset *test,
                              int64_t test_batch, bench_run *r)
{
    em_optim *opt = em_optim_new(m, kind, opts);
    em_loader *loader = opt ? em_loader_new(train, batch, false, 0) : NULL;
    if (!loader) {
        em_optim_free(opt);
        em_model_free(m);
        return bench_fail(program, "optimizer/loader");
    }

    int status = EM_OK;
    double start = em_now();
    em_batch b;
    r->batches = 0;
    while ((max_steps <= 0 || r->batches < max_steps) && em_loader_next(loader, &b)) {
        em_tensor *loss = em_cross_entropy(em_forward(m, b.x), b.y, 0.0f);
        if (!loss || em_backward(loss) != EM_OK) {
            status = bench_fail(program, "training step");
            break;
        }
        r->last_loss = em_item(loss);
        em_optim_step(opt);
        r->batches++;
    }
    r->seconds = em_now() - start;

    double test_loss = NAN;
    r->test_accuracy = NAN;
    if (status == EM_OK && em_evaluate(m, test, test_batch, &test_loss, &r->test_accuracy) != EM_OK)
        status = bench_fail(program, "evaluation");
    em_loader_free(loader);
    em_optim_free(opt);
    em_model_free(m);
    em_step_end();
    return status;
}

/* Prints run i's line and keeps the fastest run in *best. */
static inline void bench_record(const bench_run *runs, int i, bench_run *best)
{
    printf("%.3f s/epoch (%lld batches), last loss %.4f, test accuracy %.4f\n", runs[i].seconds,
           (long long)runs[i].batches, runs[i].last_loss, runs[i].test_accuracy);
    fflush(stdout);
    if (i == 0 || runs[i].seconds < best->seconds)
        *best = runs[i];
}

/* The JSON's last entry, closing the object: every run's seconds. */
static inline void bench_json_all_seconds(FILE *f, const bench_run *runs, int n_runs)
{
    fprintf(f, " \"all_seconds\": [");
    for (int i = 0; i < n_runs; i++)
        fprintf(f, "%s%.4f", i ? ", " : "", runs[i].seconds);
    fprintf(f, "]}\n");
}

#endif
