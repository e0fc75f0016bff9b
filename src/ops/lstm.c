/* The LSTM cell (PyTorch's gate order input, forget, cell, output):
 *   i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g), c_t = f c_{t-1} + i g, h_t = o tanh(c_t),
 * where a = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh arrives from the driver. Forward keeps the
 * four activated gates in place of a; backward recomputes tanh(c_t), which is cheaper
 * than storing it. */
#include "ops/fastmath.h"
#include "ops/rnn_cell.h"

static void lstm_forward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        float *restrict a = s->gates + b * 4 * H;
        const float *restrict c_prev = s->c_prev + b * H;
        float *restrict c = s->c + b * H;
        float *restrict h = s->h + b * H;
        for (int64_t j = 0; j < H; j++) {
            float i = em_fast_sigmoidf(a[j]);
            float f = em_fast_sigmoidf(a[H + j]);
            float g = em_fast_tanhf(a[2 * H + j]);
            float o = em_fast_sigmoidf(a[3 * H + j]);
            float ct = f * c_prev[j] + i * g;
            c[j] = ct;
            h[j] = o * em_fast_tanhf(ct);
            a[j] = i;
            a[H + j] = f;
            a[2 * H + j] = g;
            a[3 * H + j] = o;
        }
    }
}

static void lstm_backward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        const float *restrict act = s->gates + b * 4 * H;
        const float *restrict c_prev = s->c_prev + b * H;
        const float *restrict c = s->c + b * H;
        const float *restrict dh = s->dh + b * H;
        const float *restrict dc = s->dc + b * H;
        float *restrict dc_prev = s->dc_prev + b * H;
        float *restrict da = s->dgates + b * 4 * H;
        for (int64_t j = 0; j < H; j++) {
            float i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j];
            float tc = em_fast_tanhf(c[j]);
            float dct = dc[j] + dh[j] * o * (1.0f - tc * tc);
            da[j] = dct * g * i * (1.0f - i);
            da[H + j] = dct * c_prev[j] * f * (1.0f - f);
            da[2 * H + j] = dct * i * (1.0f - g * g);
            da[3 * H + j] = dh[j] * tc * o * (1.0f - o);
            dc_prev[j] += dct * f;
        }
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
    return em_rnn_sequence(&lstm_cell, x, params, h0, c0, EM_ACT_NONE, batch_first, h_n, c_n);
}
