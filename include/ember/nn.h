/* Models: a sequence of layers with PyTorch-style parameter names ("0.weight",
 * "0.bias", weight [out, in]), built from the C API or from a model description file
 * (see models/NAME.ember and the README). Each layer's forward is a composition of ops,
 * so backward comes from the tape. */
#ifndef EMBER_NN_H
#define EMBER_NN_H

#include "ember/ops.h"
#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct em_model em_model;

/* A named tensor of a model: a parameter (trainable unless frozen) or a buffer
 * (like batch norm's running mean: saved, never trained). */
typedef struct em_named_tensor {
    const char *name;
    em_tensor *tensor;
    bool is_buffer;
} em_named_tensor;

/* ---- building from C ------------------------------------------------------------
 * input_shape excludes the batch dimension ({784} or {1, 28, 28}). The seed fixes
 * initialisation (PyTorch's default schemes) and dropout masks. */
em_model *em_model_new(int input_ndim, const int64_t *input_shape, uint64_t seed);
/* Each add returns EM_OK or EM_ERR (e.g. a linear after a 3-D output without flatten). */
int em_model_add_linear(em_model *m, int64_t out_features, bool bias);
int em_model_add_activation(em_model *m, em_activation act, float param);
int em_model_add_flatten(em_model *m);

/* ---- from a description ----------------------------------------------------------
 * `source` names the text in error messages ("models/mlp.ember:3: ..."). */
em_model *em_model_parse(const char *text, const char *source, uint64_t seed);
em_model *em_model_load(const char *path, uint64_t seed);
/* The description text the model was built from (regenerated for C-built models). */
const char *em_model_description(const em_model *m);

void em_model_free(em_model *m);

/* ---- running ---------------------------------------------------------------------- */
/* x: [N, input_shape...]. Records on the tape when gradients are on. */
em_tensor *em_forward(em_model *m, em_tensor *x);
/* Training mode (dropout active, batch statistics) vs evaluation. Default: training. */
void em_model_set_training(em_model *m, bool training);
bool em_model_is_training(const em_model *m);

/* ---- language models: token ids in, a prediction per position out -----------------
 * A model whose first layer is an embedding takes token ids: an example is a sequence
 * of ids, 'input T' gives its nominal length (what a gradient check or a model without
 * carried state uses), and any length runs. em_forward takes the ids as float values
 * [N, T]; em_forward_tokens takes them as integers. A following recurrent layer and a
 * linear layer make it a language model: logits [N, T, V]. */
/* The embedding's vocabulary; 0 when the model does not take tokens. */
int64_t em_model_vocab_size(const em_model *m);
/* ids: batch * steps ids, row-major [batch, steps]. */
em_tensor *em_forward_tokens(em_model *m, const int32_t *ids, int64_t batch, int64_t steps);

/* ---- state carried from one forward to the next (recurrent layers) ----------------
 * A recurrent layer (rnn, lstm, gru) starts a forward from zeros, as PyTorch does with
 * h0=None, unless carrying is on: then each forward starts where the previous one
 * ended, sequence by sequence of the batch, detached from the previous graph (no
 * gradient flows back into earlier batches: truncated backpropagation through time,
 * and generation one token at a time). The states are named "<layer index>.h" and, for
 * an LSTM, "<layer index>.c", each [num_layers, batch, hidden] as PyTorch's h_n. */
/* True when some layer carries state. */
bool em_model_has_carry(const em_model *m);
/* Turns carrying on or off; either way the next forward starts from zeros. */
void em_model_set_carry(em_model *m, bool carry);
bool em_model_carries(const em_model *m);
/* The next forward starts from zeros (a new sequence), carrying or not. */
void em_model_reset_carry(em_model *m);
/* The carried states: their number, and the name and per-sequence shape
 * ({num_layers, hidden}) of the i-th (NULL when i is out of range). */
int em_model_hidden_count(const em_model *m);
const char *em_model_hidden_name(const em_model *m, int i, int64_t shape[2]);
/* Copies the final state of the last forward (batch sequences: num_layers * batch *
 * hidden floats) out; EM_ERR naming the state and the batch sizes when they differ. */
int em_model_get_hidden(const em_model *m, const char *name, int64_t batch, float *values);
/* The next forward (of the same batch size) starts from these values; the layer's other
 * state keeps its values (zeros after em_model_reset_carry). */
int em_model_set_hidden(em_model *m, const char *name, int64_t batch, const float *values);

/* ---- introspection ---------------------------------------------------------------- */
/* Parameters and buffers in PyTorch's state_dict order. The array belongs to m. */
const em_named_tensor *em_model_state(const em_model *m, int *count);
em_tensor *em_model_find(const em_model *m, const char *name);
int64_t em_model_param_count(const em_model *m);     /* trainable scalars */
int em_model_output_shape(const em_model *m, int64_t *shape); /* returns ndim, no batch */
int em_model_input_shape(const em_model *m, int64_t *shape);
/* One line per layer with output shape and parameter count. */
void em_model_summary(const em_model *m, FILE *out);
void em_model_zero_grad(em_model *m);
/* The arena holding the model's parameters (optimizers allocate their state beside). */
em_arena *em_model_arena(const em_model *m);
/* The model's random generator (dropout), part of a checkpoint's state. */
em_rng *em_model_rng(em_model *m);

/* ---- checking the whole model ------------------------------------------------------
 * A seeded random batch of `batch` examples (<= 0: 4) goes through the model; the
 * outputs weighted by fixed random numbers and summed (in double) make the scalar whose
 * gradient backward computes. At up to EM_MODEL_GRADCHECK_PROBES elements of each
 * parameter, that gradient is compared with finite differences (central and one-sided,
 * so that a relu kink on one side does not count as an error; dropout masks repeat
 * across forwards). Prints one line per parameter with its worst relative error to
 * report_out (NULL: silent) and stores the worst over all parameters in *worst (may be
 * NULL). Returns EM_OK when every parameter is within EM_MODEL_GRADCHECK_TOLERANCE,
 * EM_ERR naming the worst parameter otherwise or when the model fails. Ends the current
 * step (the tape and step arena are reset) and leaves the parameters' gradients zeroed. */
#define EM_MODEL_GRADCHECK_PROBES 64
#define EM_MODEL_GRADCHECK_TOLERANCE 2e-2
int em_model_gradcheck(em_model *m, int64_t batch, uint64_t seed, FILE *report_out, double *worst);

#ifdef __cplusplus
}
#endif
#endif
