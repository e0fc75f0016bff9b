/* GPT-2-style decoder-only transformers: the `gpt` layer kind (a whole language model in
 * one description line), generation with a key/value cache, and loading GPT-2-format
 * checkpoints (the Hugging Face safetensors names and layouts).
 *
 * The model is GPT-2's: token embedding wte [V, C] plus learned positions wpe [context, C];
 * `layers` blocks of x += c_proj(attn(c_attn(ln_1(x)))), x += mlp.c_proj(gelu_tanh(
 * mlp.c_fc(ln_2(x)))); then ln_f and the head (wte itself when tied, lm_head.weight [V, C]
 * when not). Parameters carry the Hugging Face names without a layer prefix ("wte.weight",
 * "h.0.attn.c_attn.weight", "ln_f.bias", "lm_head.weight") and the Conv1D layout [in, out]
 * for c_attn, c_proj, c_fc, so that a model's saved weights are a GPT-2-format file and a
 * GPT-2-format file loads without conversion. */
#ifndef EMBER_GPT_H
#define EMBER_GPT_H

#include <stdbool.h>
#include <stdint.h>

#include "ember/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct em_gpt_config {
    int64_t vocab;   /* token ids lie in [0, vocab) */
    int64_t context; /* positions: rows of wpe, the longest sequence the model takes */
    int64_t layers;  /* blocks (n_layer) */
    int64_t heads;   /* attention heads (n_head); width must be a multiple */
    int64_t width;   /* channels (n_embd) */
    bool tied;       /* the head is wte (GPT-2) or a separate lm_head.weight */
    float dropout;   /* on the embeddings and each residual branch while training (GPT-2's
                      * embd_pdrop and resid_pdrop); attention probabilities are not dropped */
} em_gpt_config;

/* W4 of the benchmarks: vocab 256 (bytes), context 128, 4 layers, 4 heads, width 128,
 * untied, no dropout (875,264 parameters). */
em_gpt_config em_gpt_w4(void);

/* A model of one gpt layer taking sequences of up to config->context token ids, GPT-2's
 * initialisation drawn from seed: N(0, 0.02) for embeddings and weights, N(0, 0.02 /
 * sqrt(2 · layers)) for the two c_proj weights of each block, zero biases, LayerNorm
 * weights one. */
em_model *em_gpt_new(const em_gpt_config *config, uint64_t seed);
/* The same as a layer of a model being built (it must be the first: it takes ids). */
int em_model_add_gpt(em_model *m, const em_gpt_config *config);
/* True when m's first layer is a gpt. */
bool em_model_is_gpt(const em_model *m);
/* The configuration of m's gpt layer; EM_ERR when m has none. */
int em_model_gpt_config(const em_model *m, em_gpt_config *config);
/* "gpt vocab=256 context=128 layers=4 heads=4 width=128 tied=false": a description line. */
void em_gpt_describe(const em_gpt_config *config, char *buf, size_t size);

/* ---- generation with a key/value cache (src/nn/gpt_decode.c) ----------------------
 * A decoder keeps each layer's keys and values of one sequence, so that a new token
 * costs one position instead of a pass over the whole context. It runs without
 * gradients and takes memory from the system only when created; each feed or push
 * ends the current step (em_step_end), so call them between training steps. The logits it gives equal, bit for bit,
 * those of em_forward over the same tokens in evaluation mode without gradients. It
 * keeps the weights packed as they were when it was made: make a new decoder after the
 * weights change. */
typedef struct em_gpt_decoder em_gpt_decoder;

/* A decoder for m's gpt layer (the model must outlive it). */
em_gpt_decoder *em_gpt_decoder_new(em_model *m);
void em_gpt_decoder_free(em_gpt_decoder *d);
/* Forgets the sequence. */
void em_gpt_decoder_reset(em_gpt_decoder *d);
/* Tokens in the cache, and the most it holds (the model's context). */
int64_t em_gpt_decoder_length(const em_gpt_decoder *d);
int64_t em_gpt_decoder_capacity(const em_gpt_decoder *d);
/* How many of the latest tokens stay when the context is full and a new token comes
 * (default: half the context, at least 1; clamped to [1, context]). */
void em_gpt_decoder_set_keep(em_gpt_decoder *d, int64_t keep);

/* Appends n tokens at the next positions (a prompt in one pass, or one token) and
 * writes the logits of the last of them (vocab floats) to logits, or of all n ([n,
 * vocab]) when all_positions. EM_ERR, with nothing appended, when an id is outside the
 * vocabulary or the tokens do not fit the room left (em_gpt_decoder_push crops). */
int em_gpt_decoder_feed(em_gpt_decoder *d, const int32_t *ids, int64_t n, float *logits, bool all_positions);

/* Generation's step: appends one token and writes the logits for the next. When the
 * context is full, the cache is cleared and the latest `keep` - 1 tokens are fed again
 * with the new one as a fresh prompt (learned absolute positions change every cached
 * key when the window slides, so the cache cannot simply drop its oldest position);
 * keeping half the context makes that re-prefill happen once per context/2 tokens. */
int em_gpt_decoder_push(em_gpt_decoder *d, int32_t id, float *logits);
/* How many re-prefills push has done since creation (for tests and reports). */
int64_t em_gpt_decoder_refills(const em_gpt_decoder *d);

/* ---- GPT-2-format checkpoints (src/nn/gpt_import.c) --------------------------------
 * A safetensors file with GPT-2's names and layouts: those of ember's own gpt models,
 * or a Hugging Face GPT2Model / GPT2LMHeadModel file (an optional "transformer." prefix
 * on the names; the causal-mask buffers "h.N.attn.bias" and "h.N.attn.masked_bias" of
 * older files are skipped, since they hold no weights). The configuration comes from
 * the shapes (vocab and width from wte, context from wpe, layers from the h.N blocks,
 * tied when there is no lm_head.weight) and the head count from, in order: `heads` when
 * > 0, the file's ember.model description (which then gives the whole model), or a
 * config.json beside the file ("n_head").
 * Every tensor of the model must be in the file and every tensor of the file must
 * belong to the model: otherwise the message names the missing and the unexpected
 * ones. F16 and BF16 files load too (widened exactly). */
em_model *em_gpt_load(const char *path, int64_t heads, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
