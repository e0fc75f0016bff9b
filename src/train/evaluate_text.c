/* A language model's figures on a text: the text is cut into tracks read window by
 * window, and each byte is predicted once (but for the first, and the last few that do
 * not make a track of their own). A model that carries
 * state sees each track as one continuous text (the best figure it can give); one that
 * does not sees each window afresh. The cross-entropy is summed in double from the
 * logits directly (log-sum-exp per position), so no tape or loss tensor is involved. */
#include <math.h>
#include <stdlib.h>

#include "ember/error.h"
#include "ember/lm.h"

#define DEFAULT_EVAL_BATCH 64

void em_lm_figures_set(em_lm_figures *f, double loss_sum, int64_t correct, int64_t n)
{
    f->bytes = n;
    f->loss = n ? loss_sum / (double)n : NAN;
    f->bits_per_byte = f->loss / log(2.0);
    f->perplexity = exp(f->loss);
    f->accuracy = n ? (double)correct / (double)n : NAN;
}

/* Adds the cross-entropy of rows of logits [n, v] against targets to *loss_sum. */
static void score(const float *logits, int64_t n, int64_t v, const int32_t *targets, double *loss_sum, int64_t *correct)
{
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * v;
        int64_t best = 0;
        for (int64_t j = 1; j < v; j++)
            if (row[j] > row[best])
                best = j;
        double top = row[best], sum = 0.0;
        for (int64_t j = 0; j < v; j++)
            sum += exp((double)row[j] - top);
        *loss_sum += top + log(sum) - (double)row[targets[i]];
        *correct += best == targets[i];
    }
}

int em_evaluate_text(em_model *m, const em_text *t, int64_t seq_len, int64_t batch, int64_t max_bytes,
                     em_lm_figures *out)
{
    em_lm_figures_set(out, 0.0, 0, 0);
    if (!m || !t)
        return em_error("evaluate text: no %s", m ? "text" : "model");
    if (em_model_vocab_size(m) == 0)
        return em_error("evaluate text: the model does not take token ids (its first layer is not an embedding)");
    if (seq_len < 1 || batch < 0 || max_bytes < 0)
        return em_error("evaluate text: sequence length %lld, batch %lld and max_bytes %lld out of range",
                        (long long)seq_len, (long long)batch, (long long)max_bytes);
    if (em_text_check_vocab(t, em_model_vocab_size(m)) != EM_OK)
        return EM_ERR;
    int64_t size = max_bytes > 0 && max_bytes < t->size ? max_bytes : t->size;
    if (size < 2)
        return em_error("%s: %lld byte%s: nothing to predict", t->source, (long long)size, size == 1 ? "" : "s");
    if (batch == 0)
        batch = DEFAULT_EVAL_BATCH;
    int64_t steps = seq_len < size - 1 ? seq_len : size - 1;
    int64_t tracks = (size - 1) / steps < batch ? (size - 1) / steps : batch;
    /* Each track's last window takes what is left of it. */
    int64_t track = (size - 1) / tracks, windows = (track + steps - 1) / steps;

    int32_t *ids = malloc((size_t)(2 * tracks * steps) * sizeof *ids);
    if (!ids)
        return em_error("evaluate text: out of memory");
    int32_t *targets = ids + tracks * steps;
    bool was_training = em_model_is_training(m), was_carrying = em_model_carries(m);
    bool grad_was = em_set_grad_enabled(false);
    em_model_set_training(m, false);
    em_model_set_carry(m, em_model_has_carry(m));

    double loss_sum = 0.0;
    int64_t correct = 0, n = 0;
    int rc = EM_OK;
    for (int64_t k = 0; k < windows && rc == EM_OK; k++) {
        const int64_t len = k + 1 < windows ? steps : track - k * steps;
        for (int64_t r = 0; r < tracks; r++) {
            const uint8_t *src = t->bytes + r * track + k * steps;
            for (int64_t i = 0; i < len; i++) {
                ids[r * len + i] = src[i];
                targets[r * len + i] = src[i + 1];
            }
        }
        em_tensor *logits = em_forward_tokens(m, ids, tracks, len);
        if (!logits) {
            rc = em_error_prefix("evaluating %s: ", t->source);
        } else {
            int64_t v = logits->shape[logits->ndim - 1];
            if (logits->ndim != 3 || v < em_model_vocab_size(m)) {
                rc = em_error("evaluating %s: the model's output %s is not logits [N, T, V] over its vocabulary of %lld",
                              t->source, em_shape_str(logits), (long long)em_model_vocab_size(m));
            } else {
                em_tensor *dense = em_contiguous(logits);
                score(dense->data, tracks * len, v, targets, &loss_sum, &correct);
                n += tracks * len;
            }
        }
        em_step_end();
    }
    em_model_set_carry(m, was_carrying);
    em_model_set_training(m, was_training);
    em_set_grad_enabled(grad_was);
    free(ids);
    if (rc == EM_OK)
        em_lm_figures_set(out, loss_sum, correct, n);
    return rc;
}
