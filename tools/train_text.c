/* ember train MODEL --data fortunes|text:FILE: a language model on bytes of text. The
 * text is split (the last --val-split of it for validation, or a seeded choice of
 * --val-chunk chunks), the model is checked against the text's bytes, and em_train_lm
 * trains it; the figures are bits per byte and perplexity, beside the unigram entropy
 * of the training text (what knowing only byte frequencies achieves). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "cli_common.h"
#include "cli_stop.h"
#include "cli_training.h"
#include "train_text.h"

static void print_figures(const char *what, const em_lm_figures *f)
{
    printf("%s %.4f bits/byte (perplexity %.3f)", what, f->bits_per_byte, f->perplexity);
}

int train_text_main(const cli_text_options *t, em_model *model, em_train_opts *train)
{
    int exit_status = EXIT_LIBRARY_ERROR;
    em_text *all = NULL, *train_text = NULL, *val_text = NULL, *test_text = NULL;
    all = em_text_open(t->data_spec);
    if (!all)
        goto fail;
    if (em_text_split(all, t->val_fraction, t->val_chunk, train->seed, &train_text, &val_text) != EM_OK)
        goto fail;
    if (t->test_spec && !(test_text = em_text_open(t->test_spec)))
        goto fail;
    if (em_model_vocab_size(model) == 0) {
        em_error("%s does not take text: a language model starts with an 'embedding VOCAB DIM' line (see "
                 "models/lstm.ember)",
                 t->model_path);
        goto fail;
    }
    if (em_text_check_vocab(all, em_model_vocab_size(model)) != EM_OK) {
        em_error_prefix("%s: ", t->model_path);
        goto fail;
    }

    em_lm_opts o = em_lm_defaults();
    o.train = *train;
    o.train.val_split = 0.0; /* the text is split above */
    o.seq_len = t->seq_len;
    o.steps = t->steps;
    o.order = t->sequential ? EM_TEXT_SEQUENTIAL : EM_TEXT_RANDOM;
    o.eval_every = t->eval_every;
    o.eval_bytes = t->eval_bytes;
    if (t->warmup_auto) {
        em_text_windows *w = em_text_windows_new(train_text, o.train.batch_size, o.seq_len, o.order, o.train.seed);
        if (!w)
            goto fail;
        const int64_t total = o.steps > 0 ? o.steps : em_text_windows_per_pass(w) * o.train.epochs;
        em_text_windows_free(w);
        o.train.schedule.warmup = total / 10 < 100 ? total / 10 : 100;
    }

    printf("model %s: %lld parameters; text %s: %lld training bytes, %lld validation bytes (%s); %s lr %g, "
           "batch %lld x %lld bytes, %d thread%s\n",
           t->model_path, (long long)em_model_param_count(model), all->source, (long long)train_text->size,
           (long long)val_text->size,
           t->val_chunk > 0 ? "a seeded choice of chunks" : "the end of the text", em_optim_name(o.train.optimizer),
           (double)o.train.optim.lr, (long long)o.train.batch_size, (long long)o.seq_len, em_num_threads(),
           em_num_threads() == 1 ? "" : "s");
    char setup[512];
    cli_training_describe(&o.train, setup, sizeof setup);
    if (setup[0])
        printf("with %s\n", setup);
    printf("unigram entropy: %.4f bits/byte on the training text, %.4f on the validation text\n",
           em_text_unigram_bits(train_text), em_text_unigram_bits(val_text));
    fflush(stdout);

    em_lm_result result;
    o.train.stop_requested = cli_stop_install();
    int trained = em_train_lm(model, train_text, val_text, &o, &result);
    cli_stop_restore();
    if (trained != EM_OK)
        goto fail;
    if (result.interrupted) {
        em_train_result stopped = {.steps = result.steps};
        exit_status = cli_report_stop(&stopped, train->checkpoint_path);
        goto done;
    }
    printf("final: %lld steps in %.1f s, %.0f tokens/s", (long long)result.steps, result.seconds,
           result.tokens_per_second);
    if (result.early_stopped)
        printf(" (early stopping after evaluation %d)", result.best_evaluation);
    printf("\n");
    if (result.val.bytes > 0 && result.train_eval.bytes > 0) {
        printf("evaluated alike on %lld bytes each: ", (long long)result.val.bytes);
        print_figures("train", &result.train_eval);
        print_figures(", validation", &result.val);
        printf("\n");
    } else {
        print_figures("train (last batches)", &result.train);
        printf("\n");
    }
    if (test_text) {
        em_lm_figures test;
        if (em_evaluate_text(model, test_text, o.seq_len, o.train.eval_batch_size, 0, &test) != EM_OK)
            goto fail;
        print_figures("test", &test);
        printf(" on %lld bytes of %s\n", (long long)test.bytes, test_text->source);
    }
    cli_report_outputs(train);
    exit_status = EXIT_OK;
    goto done;
fail:
    fflush(stdout);
    cli_library_error();
done:
    em_text_free(all);
    em_text_free(train_text);
    em_text_free(val_text);
    em_text_free(test_text);
    em_model_free(model);
    return exit_status;
}
