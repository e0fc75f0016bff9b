/* W3 of WORKLOADS.md in ember: models/lstm.ember (byte embedding 256->64, one LSTM
 * layer 64->256, linear 256->256 at every position) trained on Debian's fortunes with
 * Adam lr 2e-3, batch 32, random windows of 64 bytes, 200 steps, seed 0 -- the library's
 * language-model loop (em_train_lm, as `ember train models/lstm.ember --data fortunes`
 * runs it) without evaluations. Timed region: the 200 training steps (window sampling,
 * forward, cross-entropy at all 2048 positions, backward, gradient norm, Adam); the
 * figure is training tokens (32 x 64 per step) per second.
 *
 * Usage: w3_lstm [--threads N] [--repeat N] [--steps N] [--model FILE] [--json FILE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

/* models/lstm.ember without its comments (--model reads another description). */
static const char W3_DESCRIPTION[] = "input 64\nembedding 256 64\nlstm 256\nlinear 256\n";

typedef struct run_result {
    double tokens_per_second, seconds, mean_loss_bits;
} run_result;

static int run_once(const char *model_path, const em_text *text, int64_t steps, run_result *r)
{
    em_model *m = model_path ? em_model_load(model_path, 0) : em_model_parse(W3_DESCRIPTION, "W3", 0);
    if (!m) {
        fprintf(stderr, "w3_lstm: %s\n", ember_last_error());
        return EM_ERR;
    }
    em_lm_opts o = em_lm_defaults(); /* Adam lr 2e-3, batch 32, sequence 64, random windows */
    o.steps = steps;
    o.train.progress = EM_PROGRESS_QUIET;
    em_lm_result res;
    int rc = em_train_lm(m, text, NULL, &o, &res);
    if (rc != EM_OK)
        fprintf(stderr, "w3_lstm: %s\n", ember_last_error());
    r->tokens_per_second = res.tokens_per_second;
    r->seconds = res.seconds;
    r->mean_loss_bits = res.train.bits_per_byte;
    em_model_free(m);
    em_step_end();
    return rc;
}

int main(int argc, char **argv)
{
    int threads = 2, repeat = 1;
    int64_t steps = 200;
    const char *json_path = NULL, *model_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model_path = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--repeat N] [--steps N] [--model FILE] [--json FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    if (repeat < 1)
        repeat = 1;
    if (repeat > 16)
        repeat = 16;
    if (steps < 1)
        steps = 1;
    em_set_num_threads(threads);
    em_text *text = em_text_load_fortunes(NULL);
    if (!text) {
        fprintf(stderr, "w3_lstm: %s\n", ember_last_error());
        return 1;
    }
    run_result runs[16], best = {0};
    for (int i = 0; i < repeat; i++) {
        if (run_once(model_path, text, steps, &runs[i]) != EM_OK) {
            em_text_free(text);
            return 1;
        }
        printf("%.0f training tokens/s (%lld steps in %.3f s), mean loss %.3f bits/byte\n", runs[i].tokens_per_second,
               (long long)steps, runs[i].seconds, runs[i].mean_loss_bits);
        fflush(stdout);
        if (i == 0 || runs[i].tokens_per_second > best.tokens_per_second)
            best = runs[i];
    }
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) {
            perror(json_path);
            return 1;
        }
        fprintf(f, "{\"workload\": \"W3\", \"side\": \"ember\", \"threads\": %d, \"steps\": %lld, \"batch\": 32, "
                   "\"seq_len\": 64,\n",
                threads, (long long)steps);
        fprintf(f, " \"tokens_per_second\": %.1f, \"seconds\": %.4f, \"mean_loss_bits\": %.4f,\n",
                best.tokens_per_second, best.seconds, best.mean_loss_bits);
        fprintf(f, " \"all_tokens_per_second\": [");
        for (int i = 0; i < repeat; i++)
            fprintf(f, "%s%.1f", i ? ", " : "", runs[i].tokens_per_second);
        fprintf(f, "]}\n");
        fclose(f);
    }
    em_text_free(text);
    em_release_thread_state();
    return 0;
}
