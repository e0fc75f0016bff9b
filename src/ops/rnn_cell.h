/* Internal: what the recurrent driver (rnn_sequence.c) needs from a cell kind (Elman
 * RNN, LSTM, GRU). The driver does the matrix products: the input projection of all
 * steps at once, the per-step h_{t-1}·W_hh^T, and in backward the per-step dGates·W_hh and
 * the weight gradients over all steps at the end. A cell does the elementwise part of one
 * step (gates, activations, states) for a range of batch rows, in one pass.
 *
 * Batch rows are independent sequences, so the driver gives each thread its own rows for
 * the whole sequence: the recurrence then needs no barrier between steps. */
#ifndef EMBER_RNN_CELL_H
#define EMBER_RNN_CELL_H

#include <stdbool.h>
#include <stdint.h>

#include "ember/rnn_ops.h"

/* One step over batch rows [b0, b1). Row b of a [B, H] buffer starts at b·H, row b of a
 * gate buffer [B, G·H] at b·gate_stride (>= G·H: padded so that rows do not share cache
 * sets). */
typedef struct rnn_step {
    int64_t b0, b1, hidden, gate_stride;
    em_activation act;    /* Elman RNN only */
    /* Forward: gates holds the pre-activations of the input side (W_ih x + b_ih, and for
     * cells without hidden_apart also W_hh h + b_hh); the cell overwrites them with
     * what its backward needs (the activated gates). hidden_gates (GRU) holds
     * W_hh h + b_hh and is kept. */
    float *gates;         /* [B, G·H] */
    float *hidden_gates;  /* [B, G·H] or NULL */
    const float *h_prev;  /* [B, H] */
    float *h;             /* [B, H] written by forward, read by backward */
    const float *c_prev;  /* LSTM: [B, H] */
    float *c;             /* LSTM: [B, H] */
    /* Backward: dh is the whole d(loss)/dh_t. The cell writes the gradients at the
     * input-side pre-activations (dgates) and, for hidden_apart cells, at W_hh h + b_hh
     * (dhidden_gates); it ADDS into dh_prev whatever reaches h_{t-1} other than through
     * W_hh, and for the LSTM reads d(loss)/dc_t from dc and ADDS d(loss)/dc_{t-1} into
     * dc_prev. */
    const float *dh;
    float *dh_prev;
    const float *dc;
    float *dc_prev;
    float *dgates;
    float *dhidden_gates;
} rnn_step;

typedef struct rnn_cell {
    const char *name;      /* for messages and the tape: "rnn", "lstm", "gru" */
    int gates;             /* G */
    bool has_cell_state;   /* LSTM */
    bool hidden_apart;     /* GRU: W_hh h + b_hh enters a gate multiplied, not summed */
    void (*forward)(const rnn_step *s);
    void (*backward)(const rnn_step *s);
} rnn_cell;

/* The whole op for one layer and one direction, on x or (x NULL) on token input; em_rnn,
 * em_lstm, em_gru and their _embedded forms check their own arguments' presence and
 * call this. c0 and c_n only for cells with a cell state. */
em_tensor *em_rnn_sequence(const rnn_cell *cell, em_tensor *x, const em_token_input *tokens,
                           const em_rnn_params *params, em_tensor *h0, em_tensor *c0, em_activation act,
                           bool batch_first, em_tensor **h_n, em_tensor **c_n);

#endif
