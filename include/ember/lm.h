/* Language models: training on text (cross-entropy of the next byte at every position,
 * reported in bits per byte and perplexity), evaluation on text, and generation with
 * seeded sampling (temperature, top-k, top-p). A language model is any model that
 * takes token ids and gives logits [N, T, V] (em_forward_tokens): an embedding, a
 * recurrent stack and a linear head, or a transformer. */
#ifndef EMBER_LM_H
#define EMBER_LM_H

#include <stdio.h>

#include "ember/nn.h"
#include "ember/text.h"
#include "ember/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- training ------------------------------------------------------------------------ */
typedef struct em_lm_opts {
    /* From the classification loop's options: batch_size, optimizer and optim,
     * seed (window order), progress and log, save_path, plot_path, metrics_path,
     * schedule (a cosine schedule's total 0 means the whole run), clip_grad_norm and
     * clip_grad_value, param_groups, patience and min_delta (counted in evaluations),
     * keep_last_weights, history, stop_requested and max_steps (stop early as Ctrl-C
     * does), checkpoint_path, checkpoint_every, interrupt_path and resume_path (full
     * checkpoints: a resumed run continues bit for bit, carried states included),
     * eval_batch_size (sequences per evaluation forward, 0: 64). epochs are passes over
     * the training text when steps is 0. Not for text: validation and val_split (split
     * the text with em_text_split), unfreezing. */
    em_train_opts train;
    int64_t seq_len;      /* bytes per window (default 64) */
    int64_t steps;        /* > 0: the run's length in optimizer steps; 0: train.epochs passes */
    em_text_order order;  /* random windows (default) or sequential tracks */
    bool carry;           /* sequential order: each batch starts from the states the one
                           * before ended with, detached (truncated backpropagation
                           * through time); on by default, for models that carry state */
    int64_t eval_every;   /* steps between evaluations of the validation text; 0: after
                           * each pass over the training text, and at the end */
    int64_t eval_bytes;   /* bytes of the validation text evaluated each time (0: all) */
} em_lm_opts;

/* Batch 32, sequence 64, random windows, Adam lr 2e-3 (W3's set-up), one pass. */
em_lm_opts em_lm_defaults(void);

typedef struct em_lm_figures {
    double loss;          /* mean cross-entropy in nats per predicted byte */
    double bits_per_byte; /* loss / ln 2 */
    double perplexity;    /* exp(loss) */
    double accuracy;      /* next bytes predicted right (argmax) */
    int64_t bytes;        /* predictions counted; 0: no figures */
} em_lm_figures;

typedef struct em_lm_result {
    int64_t steps;
    int evaluations;
    em_lm_figures train;       /* the last interval's batches as they went by */
    em_lm_figures val;         /* the last evaluation of the validation text */
    em_lm_figures train_eval;  /* at the end, as many bytes of the training text evaluated
                                * like the validation text: the two compare directly */
    double seconds;            /* training (evaluations excluded) */
    double tokens_per_second;  /* training tokens (batch x seq_len per step) per second */
    int best_evaluation;       /* lowest validation loss (1-based, 0: none) */
    bool early_stopped, interrupted, diverged;
} em_lm_result;

/* val may be NULL. Every byte of both texts must lie in the model's vocabulary; the
 * model's output must have a logit per token (V >= the vocabulary). EM_ERR naming the
 * step when the loss diverges. */
int em_train_lm(em_model *m, const em_text *train, const em_text *val, const em_lm_opts *o,
                em_lm_result *result);

/* Figures of m on a text in evaluation mode without gradients: `batch` tracks of the
 * text read in windows of seq_len (shorter when the text is), each window continuing
 * its track's state when the model carries state: each byte is predicted once, but for
 * the first and the few at the end that do not make a whole track (fewer than `batch`;
 * the figures say how many were counted). max_bytes > 0 evaluates only the text's first
 * max_bytes. The model's carried state is reset afterwards. */
int em_evaluate_text(em_model *m, const em_text *t, int64_t seq_len, int64_t batch, int64_t max_bytes,
                     em_lm_figures *out);
/* Fills the derived figures from a loss sum over n predictions. */
void em_lm_figures_set(em_lm_figures *f, double loss_sum, int64_t correct, int64_t n);

/* ---- sampling (src/train/sample.c) -----------------------------------------------------
 * Temperature 0 takes the most likely token (ties: the lowest id); otherwise softmax of
 * logits / temperature, restricted to the top_k most likely tokens (0: all) and then to
 * the smallest set of most likely ones whose probability reaches top_p (1: all),
 * renormalised, and drawn with the sampler's seeded generator: the same seed gives the
 * same tokens on every platform. */
typedef struct em_sample_opts {
    float temperature;   /* >= 0; default 1 */
    int64_t top_k;       /* >= 0; 0: no limit */
    float top_p;         /* in (0, 1]; 1: no limit */
    uint64_t seed;
} em_sample_opts;

em_sample_opts em_sample_defaults(void);

typedef struct em_sampler em_sampler;

/* NULL with a message when an option is out of range. */
em_sampler *em_sampler_new(int64_t vocab, const em_sample_opts *o);
void em_sampler_free(em_sampler *s);
/* The next token given the logits of one position (vocab floats); never allocates. */
int32_t em_sampler_next(em_sampler *s, const float *logits);

/* ---- generation (src/train/generate.c) --------------------------------------------------
 * Feeds the prompt, then samples n_tokens tokens one at a time, calling on_token with
 * each as soon as it is drawn (stop early by returning non-zero). A model that carries
 * state (recurrent layers) reads the prompt once and then one token per step; others
 * are run on the latest tokens up to their nominal input length each step. Runs in
 * evaluation mode without gradients and leaves the model's carried state reset. */
typedef int (*em_token_fn)(void *user, int32_t token);

int em_generate(em_model *m, const int32_t *prompt, int64_t n_prompt, int64_t n_tokens, const em_sample_opts *o,
                em_token_fn on_token, void *user);

#ifdef __cplusplus
}
#endif
#endif
