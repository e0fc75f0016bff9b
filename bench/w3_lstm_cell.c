/* The recurrent core of W3 (bench/WORKLOADS.md): byte embedding 256→64 and one LSTM
 * layer 64→256 over batch 32, sequence 64, timed forward and backward per training step,
 * for tuning the op. With --head it adds W3's linear head 256→256 and the cross-entropy
 * loss, which makes it W3's whole step except the Adam update (under a millisecond for
 * W3's 0.41M parameters), and prints training tokens per second against W3's target of
 * 1.5 × PyTorch's 34,000.
 *
 * Usage: w3_lstm_cell [--threads N] [--steps S] [--warmup W] [--batch-first] [--head]
 *                     [--blas] [--json FILE]
 * --blas runs the per-step products through BLAS instead of the panel kernel.
 * Prints the median and best step times of the phases. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "ops/panel_gemm.h"

enum { VOCAB = 256, EMBED = 64, HIDDEN = 256, BATCH = 32, SEQ = 64 };
#define TARGET_TOKENS_PER_S (1.5 * 34000.0)

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--threads N] [--steps S] [--warmup W] [--batch-first] [--head] "
                    "[--blas] [--json FILE]\n", argv0);
}

int main(int argc, char **argv)
{
    int threads = 2, steps = 30, warmup = 3;
    bool batch_first = false, head = false, blas = false;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) {
            warmup = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--batch-first")) {
            batch_first = true;
        } else if (!strcmp(argv[i], "--head")) {
            head = true;
        } else if (!strcmp(argv[i], "--blas")) {
            blas = true;
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json = argv[++i];
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    if (steps < 1 || warmup < 0) {
        usage(argv[0]);
        return 2;
    }
    em_set_num_threads(threads);
    em_panel_gemm_set_disabled(blas);

    /* Parameters with PyTorch's initialisation ranges: N(0,1) embedding, U(±1/√H) LSTM,
     * U(±1/√in) head. */
    em_arena *params = em_arena_create(0);
    em_rng rng;
    em_rng_seed(&rng, 3);
    em_tensor *emb = em_param_new(params, 2, (int64_t[]){VOCAB, EMBED}, "embedding.weight");
    em_rnn_params lstm = {
        em_param_new(params, 2, (int64_t[]){4 * HIDDEN, EMBED}, "lstm.weight_ih_l0"),
        em_param_new(params, 2, (int64_t[]){4 * HIDDEN, HIDDEN}, "lstm.weight_hh_l0"),
        em_param_new(params, 1, (int64_t[]){4 * HIDDEN}, "lstm.bias_ih_l0"),
        em_param_new(params, 1, (int64_t[]){4 * HIDDEN}, "lstm.bias_hh_l0"),
    };
    em_tensor *head_w = em_param_new(params, 2, (int64_t[]){VOCAB, HIDDEN}, "head.weight");
    em_tensor *head_b = em_param_new(params, 1, (int64_t[]){VOCAB}, "head.bias");
    if (!emb || !lstm.weight_ih || !lstm.weight_hh || !lstm.bias_ih || !lstm.bias_hh || !head_w ||
        !head_b) {
        fprintf(stderr, "w3_lstm_cell: %s\n", ember_last_error());
        return 1;
    }
    em_init_normal(emb, &rng, 0.0f, 1.0f);
    const float k = 1.0f / 16.0f; /* 1/√256 */
    em_init_uniform(lstm.weight_ih, &rng, -k, k);
    em_init_uniform(lstm.weight_hh, &rng, -k, k);
    em_init_uniform(lstm.bias_ih, &rng, -k, k);
    em_init_uniform(lstm.bias_hh, &rng, -k, k);
    em_init_uniform(head_w, &rng, -k, k);
    em_init_uniform(head_b, &rng, -k, k);
    em_tensor *all[] = {emb, lstm.weight_ih, lstm.weight_hh, lstm.bias_ih, lstm.bias_hh, head_w, head_b};

    /* Random bytes stand in for text: the arithmetic does not depend on them. */
    const int64_t tokens = (int64_t)BATCH * SEQ;
    int32_t *ids = malloc((size_t)tokens * sizeof *ids);
    int32_t *labels = malloc((size_t)tokens * sizeof *labels);
    float *upstream = malloc((size_t)(tokens * HIDDEN) * sizeof *upstream);
    double *t_fwd = malloc((size_t)steps * sizeof(double)), *t_bwd = malloc((size_t)steps * sizeof(double));
    double *t_all = malloc((size_t)steps * sizeof(double));
    if (!ids || !labels || !upstream || !t_fwd || !t_bwd || !t_all) {
        fprintf(stderr, "w3_lstm_cell: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < tokens; i++) {
        ids[i] = (int32_t)em_rng_below(&rng, VOCAB);
        labels[i] = (int32_t)em_rng_below(&rng, VOCAB);
    }
    for (int64_t i = 0; i < tokens * HIDDEN; i++)
        upstream[i] = em_rng_normal(&rng) * 1e-3f;

    const int64_t ids_shape[2] = {batch_first ? BATCH : SEQ, batch_first ? SEQ : BATCH};
    size_t step_allocs = 0;
    for (int s = -warmup; s < steps; s++) {
        if (s == 0)
            step_allocs = em_arena_system_allocs(em_step_arena());
        double t0 = em_now();
        em_tensor *x = em_embedding(ids, 2, ids_shape, emb, -1);
        em_tensor *y = em_lstm(x, &lstm, NULL, NULL, batch_first, NULL, NULL);
        em_tensor *loss = NULL;
        if (head) {
            em_tensor *logits = em_linear(em_reshape(y, 2, (int64_t[]){tokens, HIDDEN}), head_w, head_b,
                                          EM_ACT_NONE, 0.0f);
            loss = em_cross_entropy(logits, labels, 0.0f);
        }
        double t1 = em_now();
        int status = head ? em_backward(loss) : em_backward_with(y, upstream);
        double t2 = em_now();
        if (!y || status != EM_OK) {
            fprintf(stderr, "w3_lstm_cell: %s\n", ember_last_error());
            return 1;
        }
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            em_zero_grad(all[i]);
        em_step_end();
        if (s >= 0) {
            t_fwd[s] = t1 - t0;
            t_bwd[s] = t2 - t1;
            t_all[s] = t2 - t0;
        }
    }
    step_allocs = em_arena_system_allocs(em_step_arena()) - step_allocs;

    double best = t_all[0];
    for (int s = 1; s < steps; s++)
        best = t_all[s] < best ? t_all[s] : best;
    double fwd = median(t_fwd, steps), bwd = median(t_bwd, steps), total = median(t_all, steps);
    double tok_s = (double)tokens / total;
    printf("W3 %s: embedding %d->%d, LSTM %d->%d, batch %d, seq %d, %s, %d threads, %d steps, "
           "per-step products by %s\n", head ? "step without Adam" : "recurrent core", VOCAB, EMBED,
           EMBED, HIDDEN, BATCH, SEQ, batch_first ? "batch_first" : "seq-first", threads, steps,
           em_panel_gemm_enabled() ? "the panel kernel" : "BLAS");
    if (head)
        printf("  + linear head %d->%d and cross-entropy\n", HIDDEN, VOCAB);
    printf("  forward  %8.3f ms (median)\n", fwd * 1e3);
    printf("  backward %8.3f ms (median)\n", bwd * 1e3);
    printf("  step     %8.3f ms (median), %.3f ms (best)\n", total * 1e3, best * 1e3);
    printf("  %.0f training tokens/s (%s); W3's target is %.0f for the whole step with Adam\n", tok_s,
           head ? "whole step but Adam" : "core only", TARGET_TOKENS_PER_S);
    printf("  step-arena system allocations after warm-up: %zu\n", step_allocs);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        fprintf(f, "{\"workload\": \"w3_lstm_cell\", \"panel_kernel\": %s, \"head\": %s, "
                   "\"batch_first\": %s, \"threads\": %d, "
                   "\"steps\": %d, \"forward_ms\": %.4f, \"backward_ms\": %.4f, \"step_ms\": %.4f, "
                   "\"best_step_ms\": %.4f, \"tokens_per_s\": %.1f, \"step_system_allocs\": %zu}\n",
                em_panel_gemm_enabled() ? "true" : "false", head ? "true" : "false", batch_first ? "true" : "false", threads, steps, fwd * 1e3,
                bwd * 1e3, total * 1e3, best * 1e3, tok_s, step_allocs);
        fclose(f);
    }
    free(ids);
    free(labels);
    free(upstream);
    free(t_fwd);
    free(t_bwd);
    free(t_all);
    em_arena_destroy(params);
    em_release_thread_state();
    return 0;
}
