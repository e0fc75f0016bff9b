/* W2 of WORKLOADS.md in ember: conv 1->32 3x3 pad 1, ReLU, max pool 2; conv 32->64 3x3
 * pad 1, ReLU, max pool 2; flatten; linear 3136->128, ReLU; linear 128->10 (the network
 * of models/cnn.ember) with cross-entropy, Adam lr 1e-3, batch 64, one epoch of
 * Fashion-MNIST's 60k training images in file order (the last partial batch included),
 * PyTorch's default init schemes, seed 0.
 * Timed region: the training loop, with the images in memory as bytes and each batch
 * converted to float32 inside the loop (as the PyTorch side does). Test accuracy over
 * the 10k test images afterwards (batches of 500, as `ember train` evaluates), not timed.
 * The JSON names the OpenMP wait policy of the run (OMP_WAIT_POLICY, read when the
 * OpenMP runtime starts: bench/run.sh runs this program with and without it).
 *
 * Usage: w2_cnn [--threads N] [--repeat N] [--steps N] [--data SPEC] [--json FILE]
 *        (--steps N: stop after N batches, for quick checks; 0 = the whole epoch) */
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "ember.h"

#define TEST_BATCH 500

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

static int run_once(const em_dataset *train, const em_dataset *test, int64_t max_steps, bench_run *r)
{
    em_model *m = em_model_parse(cnn_description, "w2_cnn", 0);
    if (!m)
        return bench_fail("w2_cnn", "model");
    em_optim_opts opts = em_optim_defaults(EM_OPTIM_ADAM);
    opts.lr = 1e-3f;
    return bench_epoch("w2_cnn", m, EM_OPTIM_ADAM, &opts, train, 64, max_steps, test, TEST_BATCH, r);
}

static int write_json(const char *path, int threads, int64_t max_steps, const bench_run *best,
                      const bench_run *runs, int n_runs)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    const char *policy = getenv("OMP_WAIT_POLICY");
    fprintf(f, "{\"workload\": \"W2\", \"side\": \"ember\", \"threads\": %d, \"omp_wait_policy\": \"%s\",\n",
            threads, policy && *policy ? policy : "default");
    fprintf(f, " \"steps\": %lld, \"seconds\": %.4f, \"test_accuracy\": %.4f, \"last_loss\": %.4f, "
               "\"batches\": %lld,\n",
            (long long)max_steps, best->seconds, best->test_accuracy, best->last_loss, (long long)best->batches);
    bench_json_all_seconds(f, runs, n_runs);
    return fclose(f) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    bench_args args;
    if (bench_parse_args(argc, argv, true, &args) != 0)
        return 2;
    em_set_num_threads(args.threads);
    em_dataset *train = em_dataset_open(args.data, EM_SPLIT_TRAIN, -1);
    em_dataset *test = train ? em_dataset_open(args.data, EM_SPLIT_TEST, -1) : NULL;
    if (!test) {
        fprintf(stderr, "w2_cnn: %s\n", ember_last_error());
        em_dataset_free(train);
        return 1;
    }

    bench_run best = {0}, runs[BENCH_MAX_RUNS];
    for (int i = 0; i < args.n_runs; i++) {
        if (run_once(train, test, args.max_steps, &runs[i]) != EM_OK) {
            em_dataset_free(train);
            em_dataset_free(test);
            return 1;
        }
        bench_record(runs, i, &best);
    }
    int status = args.json_path ? write_json(args.json_path, args.threads, args.max_steps, &best, runs, args.n_runs)
                                : 0;
    em_dataset_free(train);
    em_dataset_free(test);
    em_release_thread_state();
    return status;
}
