/* The Elman RNN cell: h_t = act(a) with a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh from the
 * driver, act tanh or relu. Both derivatives follow from h_t itself, so nothing else is
 * kept. */
#include "ember/error.h"
#include "ops/fastmath.h"
#include "ops/rnn_cell.h"

static void elman_forward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        const float *restrict a = s->gates + b * s->gate_stride;
        float *restrict h = s->h + b * H;
        if (s->act == EM_ACT_RELU)
            for (int64_t j = 0; j < H; j++)
                h[j] = a[j] > 0.0f ? a[j] : 0.0f;
        else
            for (int64_t j = 0; j < H; j++)
                h[j] = em_fast_tanhf(a[j]);
    }
}

static void elman_backward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        const float *restrict h = s->h + b * H;
        const float *restrict dh = s->dh + b * H;
        float *restrict da = s->dgates + b * s->gate_stride;
        if (s->act == EM_ACT_RELU)
            for (int64_t j = 0; j < H; j++)
                da[j] = h[j] > 0.0f ? dh[j] : 0.0f;
        else
            for (int64_t j = 0; j < H; j++)
                da[j] = dh[j] * (1.0f - h[j] * h[j]);
    }
}

static const rnn_cell elman_cell = {
    .name = "rnn",
    .gates = 1,
    .has_cell_state = false,
    .hidden_apart = false,
    .forward = elman_forward,
    .backward = elman_backward,
};

em_tensor *em_rnn(em_tensor *x, const em_rnn_params *params, em_tensor *h0,
                  em_activation nonlinearity, bool batch_first, em_tensor **h_n)
{
    return em_rnn_sequence(&elman_cell, x, NULL, params, h0, NULL, nonlinearity, batch_first, h_n, NULL);
}

em_tensor *em_rnn_embedded(const em_token_input *tokens, const em_rnn_params *params, em_tensor *h0,
                           em_activation nonlinearity, bool batch_first, em_tensor **h_n)
{
    if (!tokens)
        return em_error("rnn: no token input given"), NULL;
    return em_rnn_sequence(&elman_cell, NULL, tokens, params, h0, NULL, nonlinearity, batch_first, h_n, NULL);
}
