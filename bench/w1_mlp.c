/* W1 of WORKLOADS.md in ember: a 784-512-256-10 ReLU MLP with cross-entropy, SGD
 * momentum 0.9, lr 0.05, batch 128, one epoch of Fashion-MNIST's 60k training images in
 * file order (the last partial batch included), PyTorch's default init schemes, seed 0.
 * Timed region: the training loop, with the images in memory as bytes and each batch
 * converted to float32 inside the loop (as the PyTorch side does). Test accuracy over
 * the 10k test images afterwards, not timed.
 *
 * Usage: w1_mlp [--threads N] [--repeat N] [--data SPEC] [--json FILE] */
#include <stdio.h>

#include "bench_common.h"
#include "ember.h"

static int run_once(const em_dataset *train, const em_dataset *test, bench_run *r)
{
    em_model *m = em_model_new(1, (int64_t[]){784}, 0);
    if (!m)
        return bench_fail("w1_mlp", "model");
    if (em_model_add_linear(m, 512, true) != EM_OK ||
        em_model_add_activation(m, EM_ACT_RELU, 0.0f) != EM_OK ||
        em_model_add_linear(m, 256, true) != EM_OK ||
        em_model_add_activation(m, EM_ACT_RELU, 0.0f) != EM_OK ||
        em_model_add_linear(m, 10, true) != EM_OK) {
        em_model_free(m);
        return bench_fail("w1_mlp", "model");
    }
    em_optim_opts opts = em_optim_defaults(EM_OPTIM_SGD);
    opts.lr = 0.05f;
    opts.momentum = 0.9f;
    return bench_epoch("w1_mlp", m, EM_OPTIM_SGD, &opts, train, 128, 0, test, 1000, r);
}

int main(int argc, char **argv)
{
    bench_args args;
    if (bench_parse_args(argc, argv, false, &args) != 0)
        return 2;
    em_set_num_threads(args.threads);
    em_dataset *train = em_dataset_open(args.data, EM_SPLIT_TRAIN, -1);
    em_dataset *test = train ? em_dataset_open(args.data, EM_SPLIT_TEST, -1) : NULL;
    /* The images as 784 features, as the PyTorch side reshapes them. */
    const int64_t flat[1] = {784};
    if (!test || em_dataset_set_item_shape(train, 1, flat) != EM_OK ||
        em_dataset_set_item_shape(test, 1, flat) != EM_OK) {
        fprintf(stderr, "w1_mlp: %s\n", ember_last_error());
        em_dataset_free(train);
        em_dataset_free(test);
        return 1;
    }

    bench_run best = {0}, runs[BENCH_MAX_RUNS];
    for (int i = 0; i < args.n_runs; i++) {
        if (run_once(train, test, &runs[i]) != EM_OK) {
            em_dataset_free(train);
            em_dataset_free(test);
            return 1;
        }
        bench_record(runs, i, &best);
    }
    if (args.json_path) {
        FILE *f = fopen(args.json_path, "w");
        if (!f) {
            perror(args.json_path);
            return 1;
        }
        fprintf(f, "{\"workload\": \"W1\", \"side\": \"ember\", \"threads\": %d,\n", args.threads);
        fprintf(f, " \"seconds\": %.4f, \"test_accuracy\": %.4f, \"last_loss\": %.4f, \"batches\": %lld,\n",
                best.seconds, best.test_accuracy, best.last_loss, (long long)best.batches);
        bench_json_all_seconds(f, runs, args.n_runs);
        fclose(f);
    }
    em_dataset_free(train);
    em_dataset_free(test);
    em_release_thread_state();
    return 0;
}
