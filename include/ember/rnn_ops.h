/* Ops of recurrent networks: embedding lookup, and one layer in one direction of an
 * Elman RNN, an LSTM or a GRU over a whole sequence. Weights have PyTorch's names and
 * layouts, so a state_dict maps onto them one to one; stacking layers (and reversing a
 * direction) is the layer code's job: it calls the op once per layer, feeding one
 * layer's output sequence to the next. Every op follows the contract of ops.h: new
 * tensors in the step arena, recorded on the tape when a gradient is needed, NULL with
 * an error naming the shapes when the inputs do not fit, NULL in gives NULL out. */
#ifndef EMBER_RNN_OPS_H
#define EMBER_RNN_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "ember/ops.h"
#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- embedding (src/ops/embedding.c) --------------------------------------------- */
/* Rows of weight [V, D] picked by ids, an int32 array of shape ids_shape (ids_ndim from
 * 0 to EM_MAX_DIMS - 1): the output is [ids_shape..., D]. Every id must lie in [0, V);
 * the first that does not is named with its position. padding_idx in [0, V) marks an id
 * whose row gets no gradient (its row is still looked up, as in PyTorch); a negative
 * padding_idx means none (PyTorch's None: PyTorch's negative indices counting from the
 * end are not accepted here; pass V - 1). The ids are copied, so the caller's buffer may
 * change after the call. */
em_tensor *em_embedding(const int32_t *ids, int ids_ndim, const int64_t *ids_shape,
                        em_tensor *weight, int64_t padding_idx);

/* ---- recurrent layers (src/ops/rnn_*.c, lstm.c, gru.c) -------------------------- */
/* One layer's weights, PyTorch's weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k},
 * bias_hh_l{k}: weight_ih [G·H, I], weight_hh [G·H, H], the biases [G·H] or NULL (both
 * NULL is PyTorch's bias=False). G is 1 for the Elman RNN, 4 for the LSTM (gates in the
 * order input, forget, cell, output) and 3 for the GRU (reset, update, new). */
typedef struct em_rnn_params {
    em_tensor *weight_ih;
    em_tensor *weight_hh;
    em_tensor *bias_ih;
    em_tensor *bias_hh;
} em_rnn_params;

/* Shared conventions of em_rnn, em_lstm and em_gru:
 * - x is [T, B, I], or [B, T, I] when batch_first; the returned sequence of hidden
 *   states is [T, B, H] (or [B, T, H]), one row per time step and sequence.
 * - h0 (and c0) is the initial state [B, H] (a [1, B, H] slice of a stacked state is
 *   accepted too), NULL for zeros. It may require a gradient.
 * - h_n (and c_n), when not NULL, receive the final states [B, H]. They are outputs of
 *   the tape in their own right: a loss may use the sequence, the final states or any
 *   mix, and backward delivers the sum of what reaches each. On error they are set to
 *   NULL.
 * - No gradient is computed for x when x does not require one (a first layer), nor for
 *   any weight or state that does not. */

/* h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh); nonlinearity EM_ACT_TANH or
 * EM_ACT_RELU (PyTorch's nonlinearity='tanh' or 'relu'). */
em_tensor *em_rnn(em_tensor *x, const em_rnn_params *params, em_tensor *h0,
                  em_activation nonlinearity, bool batch_first, em_tensor **h_n);

/* PyTorch's LSTM: i, f, o = sigmoid(...), g = tanh(...) of W_i* x_t + b_i* + W_h* h_{t-1}
 * + b_h*; c_t = f c_{t-1} + i g; h_t = o tanh(c_t). */
em_tensor *em_lstm(em_tensor *x, const em_rnn_params *params, em_tensor *h0, em_tensor *c0,
                   bool batch_first, em_tensor **h_n, em_tensor **c_n);

/* PyTorch's GRU: r, z = sigmoid(W_i* x_t + b_i* + W_h* h_{t-1} + b_h*);
 * n = tanh(W_in x_t + b_in + r (W_hn h_{t-1} + b_hn)); h_t = (1 - z) n + z h_{t-1}. */
em_tensor *em_gru(em_tensor *x, const em_rnn_params *params, em_tensor *h0, bool batch_first,
                  em_tensor **h_n);

/* ---- token input: an embedding folded into the first layer -------------------------
 * em_embedding followed by em_rnn / em_lstm / em_gru on its output, in one op: the same
 * values and gradients (for the embedding weight too, none into its padding row), with
 * the input projection W_ih·e computed once per vocabulary entry instead of once per
 * position; worth it when the vocabulary has fewer entries than the batch has
 * positions. ids are [batch, steps] row-major when batch_first, else [steps, batch]. */
typedef struct em_token_input {
    const int32_t *ids;
    int64_t batch, steps;
    em_tensor *embedding; /* [num_embeddings, embedding_dim] */
    int64_t padding_idx;  /* a row that gets no gradient, or negative for none */
} em_token_input;

em_tensor *em_rnn_embedded(const em_token_input *tokens, const em_rnn_params *params, em_tensor *h0,
                           em_activation nonlinearity, bool batch_first, em_tensor **h_n);
em_tensor *em_lstm_embedded(const em_token_input *tokens, const em_rnn_params *params, em_tensor *h0,
                            em_tensor *c0, bool batch_first, em_tensor **h_n, em_tensor **c_n);
em_tensor *em_gru_embedded(const em_token_input *tokens, const em_rnn_params *params, em_tensor *h0,
                           bool batch_first, em_tensor **h_n);

#ifdef __cplusplus
}
#endif
#endif
