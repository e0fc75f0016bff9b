/* Generation: the prompt goes in, then tokens come out one at a time, each handed to
 * the caller as soon as it is drawn (a CLI prints and flushes it: text streams).
 *
 * A model that carries state (recurrent layers) reads the prompt in one forward and
 * then costs one step per token, its state carried from each forward to the next. A
 * gpt model does the same through its key/value cache (em_gpt_decoder: one position
 * per token, a re-prefill of half the context when the context fills). A
 * model without carried state is run on the latest tokens up to its nominal input
 * length every time: correct for any model that takes tokens, and as fast as the model
 * allows without a cache. */
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "ember/gpt.h"
#include "ember/lm.h"

/* The logits of the last position of [1, T, V] into the sampler. */
static int32_t next_token(em_sampler *s, const em_tensor *logits)
{
    em_tensor *dense = em_contiguous((em_tensor *)logits);
    int64_t v = logits->shape[logits->ndim - 1];
    return em_sampler_next(s, dense->data + (dense->numel - v));
}

static int check(em_model *m, const int32_t *prompt, int64_t n_prompt, int64_t n_tokens)
{
    if (!m)
        return em_error("generate: no model");
    int64_t vocab = em_model_vocab_size(m);
    if (vocab == 0)
        return em_error("generate: the model does not take token ids (its first layer is not an embedding)");
    int64_t out[EM_MAX_DIMS];
    int nd = em_model_output_shape(m, out);
    if (nd != 2 || out[1] < vocab)
        return em_error("generate: the model's output %s is not logits over its vocabulary of %lld at every "
                        "position",
                        em_dims_str(nd, out), (long long)vocab);
    if (n_prompt < 1 || !prompt)
        return em_error("generate: the prompt is empty; give at least one token to start from");
    if (n_tokens < 0)
        return em_error("generate: %lld tokens asked for", (long long)n_tokens);
    for (int64_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= vocab)
            return em_error("generate: the prompt's token %lld is %d, outside the model's vocabulary of %lld tokens "
                            "(0..%lld)",
                            (long long)i, prompt[i], (long long)vocab, (long long)vocab - 1);
    return EM_OK;
}

static int generate_carried(em_model *m, em_sampler *s, const int32_t *prompt, int64_t n_prompt, int64_t n_tokens,
                            em_token_fn on_token, void *user)
{
    em_model_set_carry(m, true);
    em_tensor *logits = em_forward_tokens(m, prompt, 1, n_prompt);
    for (int64_t i = 0; i < n_tokens; i++) {
        if (!logits)
            return EM_ERR;
        int32_t token = next_token(s, logits);
        em_step_end();
        if (on_token && on_token(user, token) != 0)
            return EM_OK;
        logits = i + 1 < n_tokens ? em_forward_tokens(m, &token, 1, 1) : NULL;
    }
    em_step_end();
    return EM_OK;
}

static int generate_cached(em_model *m, em_sampler *s, const int32_t *prompt, int64_t n_prompt, int64_t n_tokens,
                           em_token_fn on_token, void *user)
{
    em_gpt_decoder *d = em_gpt_decoder_new(m);
    float *logits = d ? malloc((size_t)em_model_vocab_size(m) * sizeof *logits) : NULL;
    int rc = logits ? EM_OK : d ? em_error("out of memory") : EM_ERR;
    /* a prompt longer than the context: its latest tokens, as the windowed path reads */
    int64_t fed = n_prompt < em_gpt_decoder_capacity(d) ? n_prompt : em_gpt_decoder_capacity(d);
    if (rc == EM_OK && n_tokens > 0)
        rc = em_gpt_decoder_feed(d, prompt + n_prompt - fed, fed, logits, false);
    for (int64_t i = 0; i < n_tokens && rc == EM_OK; i++) {
        int32_t token = em_sampler_next(s, logits);
        if (on_token && on_token(user, token) != 0)
            break;
        if (i + 1 < n_tokens)
            rc = em_gpt_decoder_push(d, token, logits);
    }
    free(logits);
    em_gpt_decoder_free(d);
    return rc;
}

static int generate_windowed(em_model *m, em_sampler *s, const int32_t *prompt, int64_t n_prompt, int64_t n_tokens,
                             em_token_fn on_token, void *user)
{
    int64_t nominal[EM_MAX_DIMS];
    em_model_input_shape(m, nominal);
    int64_t context = nominal[0];
    int32_t *seq = malloc((size_t)(n_prompt + n_tokens) * sizeof *seq);
    if (!seq)
        return em_error("generate: out of memory");
    memcpy(seq, prompt, (size_t)n_prompt * sizeof *seq);
    int64_t len = n_prompt;
    int rc = EM_OK;
    for (int64_t i = 0; i < n_tokens; i++) {
        int64_t window = len < context ? len : context;
        em_tensor *logits = em_forward_tokens(m, seq + len - window, 1, window);
        if (!logits) {
            rc = EM_ERR;
            break;
        }
        int32_t token = next_token(s, logits);
        em_step_end();
        seq[len++] = token;
        if (on_token && on_token(user, token) != 0)
            break;
    }
    em_step_end();
    free(seq);
    return rc;
}

int em_generate(em_model *m, const int32_t *prompt, int64_t n_prompt, int64_t n_tokens, const em_sample_opts *o,
                em_token_fn on_token, void *user)
{
    if (check(m, prompt, n_prompt, n_tokens) != EM_OK)
        return EM_ERR;
    em_sampler *s = em_sampler_new(em_model_vocab_size(m), o);
    if (!s)
        return em_error_prefix("generate: ");
    bool was_training = em_model_is_training(m), was_carrying = em_model_carries(m);
    bool grad_was = em_set_grad_enabled(false);
    em_model_set_training(m, false);
    int rc = em_model_is_gpt(m)      ? generate_cached(m, s, prompt, n_prompt, n_tokens, on_token, user)
             : em_model_has_carry(m) ? generate_carried(m, s, prompt, n_prompt, n_tokens, on_token, user)
                                     : generate_windowed(m, s, prompt, n_prompt, n_tokens, on_token, user);
    if (rc != EM_OK)
        em_error_prefix("generate: ");
    em_model_set_carry(m, was_carrying);
    em_model_set_training(m, was_training);
    em_set_grad_enabled(grad_was);
    em_sampler_free(s);
    return rc;
}
