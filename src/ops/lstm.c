/* The LSTM cell (PyTorch's gate order input, forget, cell, output):
 *   i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g), c_t = f c_{t-1} + i g, h_t = o tanh(c_t),
 * where a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh arrives from the driver. Forward keeps the
 * four activated gates in place of a; backward recomputes tanh(c_t), which is cheaper
 * than storing it. */
#include "ember/error.h"
#include "ops/fastmath.h"
#include "ops/rnn_cell.h"

/* One batch row. Separate restrict pointers per gate, in a function of their own: GCC
 * does not vectorise the loop over offsets into one array, nor restrict pointers declared
 * inside the loop over rows. */
static void lstm_forward_row(float *restrict a_i, float *restrict a_f, float *restrict a_g,
                             float *restrict a_o, const float *restrict c_prev, float *restrict c,
                             float *restrict h, int64_t H)
{
    for (int64_t j = 0; j < H; j++) {
        float i = em_fast_sigmoidf(a_i[j]);
        float f = em_fast_sigmoidf(a_f[j]);
        float g = em_fast_tanhf(a_g[j]);
        float o = em_fast_sigmoidf(a_o[j]);
        float ct = f * c_prev[j] + i * g;
        c[j] = ct;
        h[j] = o * em_fast_tanhf(ct);
        a_i[j] = i;
        a_f[j] = f;
        a_g[j] = g;
        a_o[j] = o;
    }
}

static void lstm_forward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        float *a = s->gates + b * s->gate_stride;
        lstm_forward_row(a, a + H, a + 2 * H, a + 3 * H, s->c_prev + b * H, s->c + b * H, s->h + b * H, H);
    }
}

static void lstm_backward_row(const float *restrict act_i, const float *restrict act_f,
                              const float *restrict act_g, const float *restrict act_o,
                              const float *restrict c_prev, const float *restrict c,
                              const float *restrict dh, const float *restrict dc,
                              float *restrict dc_prev, float *restrict da_i, float *restrict da_f,
                              float *restrict da_g, float *restrict da_o, int64_t H)
{
    for (int64_t j = 0; j < H; j++) {
        float i = act_i[j], f = act_f[j], g = act_g[j], o = act_o[j];
        float tc = em_fast_tanhf(c[j]);
        float dct = dc[j] + dh[j] * o * (1.0f - tc * tc);
        da_i[j] = dct * g * i * (1.0f - i);
        da_f[j] = dct * c_prev[j] * f * (1.0f - f);
        da_g[j] = dct * i * (1.0f - g * g);
        da_o[j] = dh[j] * tc * o * (1.0f - o);
        dc_prev[j] += dct * f;
    }
}

static void lstm_backward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        const float *act = s->gates + b * s->gate_stride;
        float *da = s->dgates + b * s->gate_stride;
        lstm_backward_row(act, act + H, act + 2 * H, act + 3 * H, s->c_prev + b * H, s->c + b * H,
                          s->dh + b * H, s->dc + b * H, s->dc_prev + b * H, da, da + H, da + 2 * H,
                          da + 3 * H, H);
    }
}

static const rnn_cell lstm_cell = {
    .name = "lstm",
    .gates = 4,
    .has_cell_state = true,
    .hidden_apart = false,
    .forward = lstm_forward,
    .backward = lstm_backward,
};

em_tensor *em_lstm(em_tensor *x, const em_rnn_params *params, em_tensor *h0, em_tensor *c0,
                   bool batch_first, em_tensor **h_n, em_tensor **c_n)
{
    return em_rnn_sequence(&lstm_cell, x, NULL, params, h0, c0, EM_ACT_NONE, batch_first, h_n, c_n);
}

em_tensor *em_lstm_embedded(const em_token_input *tokens, const em_rnn_params *params, em_tensor *h0,
                            em_tensor *c0, bool batch_first, em_tensor **h_n, em_tensor **c_n)
{
    if (!tokens)
        return em_error("lstm: no token input given"), NULL;
    return em_rnn_sequence(&lstm_cell, NULL, tokens, params, h0, c0, EM_ACT_NONE, batch_first, h_n, c_n);
}
