/* W4 of WORKLOADS.md in ember: the byte-level GPT of models/gpt.ember (4 layers, 4 heads,
 * width 128, context 128, untied head, 875,264 parameters, GPT-2's init from seed 0).
 *
 * Training: AdamW lr 3e-4, weight decay 0.1 (every parameter, as
 * torch.optim.AdamW(model.parameters())), batch 16 windows of 128 bytes drawn at random
 * from Debian's fortunes (seed 0), next-byte cross-entropy. Three untimed warm-up steps,
 * then 100 timed steps: training tokens per second = 100 · 16 · 128 / seconds.
 *
 * Generation: from the trained model, 200 new tokens after a one-byte prompt ("\n"),
 * batch 1, temperature 1 (em_sampler: softmax sampling, seed 0), through the key/value cache
 * (em_gpt_decoder: one position per token, and one re-prefill of 64 positions when the
 * 128-position context fills), on one thread (as ember generate by default) and on the
 * --threads team (the threads share each token), the faster of the two counting. Timed
 * from the prompt to the 200th token, best and median of --gen-repeat runs. PyTorch's side (bench/torch_w4_gpt.py) recomputes the
 * cropped context for every token, as most users' generation code does.
 *
 * Usage: w4_gpt [--threads N] [--repeat N] [--steps N] [--gen-repeat N] [--json FILE] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"
#include "ember/lm.h"
#include "ember/text.h"

#define BATCH 16
#define SEQ 128
#define WARMUP_STEPS 3
#define NEW_TOKENS 200
#define MAX_RUNS 16

typedef struct run_result {
    double train_seconds, train_tokens_per_second, last_loss;
    double gen_best, gen_median; /* tokens per second */
    int gen_threads;             /* the thread count they come from */
} run_result;

static int fail(const char *what)
{
    fprintf(stderr, "w4_gpt: %s: %s\n", what, ember_last_error());
    return EM_ERR;
}

static int train_step(em_model *m, em_optim *opt, em_text_windows *w, double *loss_out)
{
    em_text_batch b;
    em_text_windows_next(w, &b);
    em_tensor *logits = em_forward_tokens(m, b.inputs, b.batch, b.steps);
    em_tensor *flat = logits ? em_reshape(logits, 2, (int64_t[]){b.batch * b.steps, logits->shape[2]}) : NULL;
    em_tensor *loss = em_cross_entropy(flat, b.targets, 0.0f);
    if (!loss || em_backward(loss) != EM_OK)
        return fail("training step");
    *loss_out = em_item(loss);
    em_optim_step(opt);
    em_step_end();
    return EM_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Tokens per second of generating NEW_TOKENS after the prompt, best and median. */
static int generate(em_model *m, int repeats, double *best, double *median)
{
    em_gpt_decoder *d = em_gpt_decoder_new(m);
    em_sample_opts so = em_sample_defaults(); /* temperature 1, no top-k or top-p */
    so.seed = 0;
    em_sampler *s = d ? em_sampler_new(256, &so) : NULL;
    float *logits = malloc(256 * sizeof *logits);
    double rates[MAX_RUNS];
    if (!s || !logits) {
        em_gpt_decoder_free(d);
        free(logits);
        return fail("generation set-up");
    }
    for (int r = 0; r < repeats; r++) {
        const int32_t prompt = '\n';
        double start = em_now();
        em_gpt_decoder_reset(d);
        if (em_gpt_decoder_feed(d, &prompt, 1, logits, false) != EM_OK)
            return fail("generation");
        for (int i = 0; i < NEW_TOKENS; i++) {
            int32_t next = em_sampler_next(s, logits);
            if (i + 1 < NEW_TOKENS && em_gpt_decoder_push(d, next, logits) != EM_OK)
                return fail("generation");
        }
        rates[r] = NEW_TOKENS / (em_now() - start);
    }
    qsort(rates, (size_t)repeats, sizeof rates[0], cmp_double);
    *best = rates[repeats - 1];
    *median = rates[repeats / 2];
    em_sampler_free(s);
    em_gpt_decoder_free(d);
    free(logits);
    return EM_OK;
}

static int run_once(const em_text *text, int steps, int gen_repeat, run_result *r)
{
    em_gpt_config c = em_gpt_w4();
    em_model *m = em_gpt_new(&c, 0);
    em_optim_opts o = em_optim_defaults(EM_OPTIM_ADAMW);
    o.lr = 3e-4f;
    o.weight_decay = 0.1f;
    em_optim *opt = m ? em_optim_new(m, EM_OPTIM_ADAMW, &o) : NULL;
    em_text_windows *w = opt ? em_text_windows_new(text, BATCH, SEQ, EM_TEXT_RANDOM, 0) : NULL;
    int status = w ? EM_OK : fail("set-up");
    for (int i = 0; i < WARMUP_STEPS && status == EM_OK; i++)
        status = train_step(m, opt, w, &r->last_loss);
    double start = em_now();
    for (int i = 0; i < steps && status == EM_OK; i++)
        status = train_step(m, opt, w, &r->last_loss);
    r->train_seconds = em_now() - start;
    r->train_tokens_per_second = (double)steps * BATCH * SEQ / r->train_seconds;
    if (status == EM_OK) {
        /* one thread (ember generate's default: with passive waiting a team's wake-ups
         * per token cost more than they save), then the whole team sharing each token */
        const int threads = em_num_threads();
        em_model_set_training(m, false);
        r->gen_best = r->gen_median = 0.0;
        r->gen_threads = 1;
        for (int t = 1; t <= threads && status == EM_OK; t = t == 1 && threads > 1 ? threads : threads + 1) {
            double best = 0.0, median = 0.0;
            em_set_num_threads(t);
            status = generate(m, gen_repeat, &best, &median);
            printf("generation on %d thread%s: %.0f tokens/s best, %.0f median\n", t, t == 1 ? "" : "s", best, median);
            if (status == EM_OK && best > r->gen_best)
                r->gen_best = best, r->gen_median = median, r->gen_threads = t;
        }
        em_set_num_threads(threads);
    }
    em_text_windows_free(w);
    em_optim_free(opt);
    em_model_free(m);
    return status;
}

int main(int argc, char **argv)
{
    int threads = 2, repeat = 1, steps = 100, gen_repeat = 5;
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen-repeat") && i + 1 < argc)
            gen_repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json_path = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--repeat N] [--steps N] [--gen-repeat N] [--json FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    repeat = repeat < 1 ? 1 : repeat > MAX_RUNS ? MAX_RUNS : repeat;
    gen_repeat = gen_repeat < 1 ? 1 : gen_repeat > MAX_RUNS ? MAX_RUNS : gen_repeat;
    steps = steps < 1 ? 1 : steps;
    em_set_num_threads(threads);
    em_text *text = em_text_load_fortunes(NULL);
    if (!text)
        return fail("fortunes") == EM_OK;

    run_result runs[MAX_RUNS], best = {0};
    for (int i = 0; i < repeat; i++) {
        if (run_once(text, steps, gen_repeat, &runs[i]) != EM_OK) {
            em_text_free(text);
            return 1;
        }
        printf("training: %.0f tokens/s (%d steps in %.3f s, last loss %.4f); generation: %.0f tokens/s best, %.0f "
               "median\n",
               runs[i].train_tokens_per_second, steps, runs[i].train_seconds, runs[i].last_loss, runs[i].gen_best,
               runs[i].gen_median);
        fflush(stdout);
        if (i == 0 || runs[i].train_tokens_per_second > best.train_tokens_per_second)
            best.train_tokens_per_second = runs[i].train_tokens_per_second, best.train_seconds = runs[i].train_seconds,
            best.last_loss = runs[i].last_loss;
        if (i == 0 || runs[i].gen_best > best.gen_best)
            best.gen_best = runs[i].gen_best, best.gen_median = runs[i].gen_median,
            best.gen_threads = runs[i].gen_threads;
    }
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) {
            perror(json_path);
            return 1;
        }
        fprintf(f, "{\"workload\": \"W4\", \"side\": \"ember\", \"threads\": %d, \"params\": 875264, \"tied\": false,\n",
                threads);
        fprintf(f, " \"steps\": %d, \"batch\": %d, \"seq\": %d,\n", steps, BATCH, SEQ);
        fprintf(f, " \"train_tokens_per_second\": %.1f, \"train_seconds\": %.4f, \"last_loss\": %.4f,\n",
                best.train_tokens_per_second, best.train_seconds, best.last_loss);
        fprintf(f, " \"gen_tokens_per_second\": %.1f, \"gen_median_tokens_per_second\": %.1f, \"new_tokens\": %d,\n",
                best.gen_best, best.gen_median, NEW_TOKENS);
        fprintf(f, " \"gen_threads\": %d,\n", best.gen_threads);
        fprintf(f, " \"all_train_tokens_per_second\": [");
        for (int i = 0; i < repeat; i++)
            fprintf(f, "%s%.1f", i ? ", " : "", runs[i].train_tokens_per_second);
        fprintf(f, "],\n \"all_gen_tokens_per_second\": [");
        for (int i = 0; i < repeat; i++)
            fprintf(f, "%s%.1f", i ? ", " : "", runs[i].gen_best);
        fprintf(f, "]}\n");
        fclose(f);
    }
    em_text_free(text);
    em_release_thread_state();
    return 0;
}
