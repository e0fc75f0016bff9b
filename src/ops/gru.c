/* The GRU cell, with PyTorch's formula (the reset gate scales the hidden product
 * including its bias, which is why the driver keeps W_hh h + b_hh apart):
 *   r = sigmoid(a_r + q_r), z = sigmoid(a_z + q_z), n = tanh(a_n + r q_n),
 *   h_t = (1 - z) n + z h_{t-1},
 * with a = W_ih x_t + b_ih and q = W_hh h_{t-1} + b_hh. Forward keeps r, z, n in place of
 * a; q stays for backward, which needs q_n. */
#include "ops/fastmath.h"
#include "ops/rnn_cell.h"

static void gru_forward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        float *restrict a = s->gates + b * 3 * H;
        const float *restrict q = s->hidden_gates + b * 3 * H;
        const float *restrict h_prev = s->h_prev + b * H;
        float *restrict h = s->h + b * H;
        for (int64_t j = 0; j < H; j++) {
            float r = em_fast_sigmoidf(a[j] + q[j]);
            float z = em_fast_sigmoidf(a[H + j] + q[H + j]);
            float n = em_fast_tanhf(a[2 * H + j] + r * q[2 * H + j]);
            h[j] = n + z * (h_prev[j] - n);
            a[j] = r;
            a[H + j] = z;
            a[2 * H + j] = n;
        }
    }
}

static void gru_backward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        const float *restrict act = s->gates + b * 3 * H;
        const float *restrict q = s->hidden_gates + b * 3 * H;
        const float *restrict h_prev = s->h_prev + b * H;
        const float *restrict dh = s->dh + b * H;
        float *restrict dh_prev = s->dh_prev + b * H;
        float *restrict da = s->dgates + b * 3 * H;
        float *restrict dq = s->dhidden_gates + b * 3 * H;
        for (int64_t j = 0; j < H; j++) {
            float r = act[j], z = act[H + j], n = act[2 * H + j];
            float dn = dh[j] * (1.0f - z) * (1.0f - n * n);
            float dz = dh[j] * (h_prev[j] - n) * z * (1.0f - z);
            float dr = dn * q[2 * H + j] * r * (1.0f - r);
            da[j] = dr;
            da[H + j] = dz;
            da[2 * H + j] = dn;
            dq[j] = dr;
            dq[H + j] = dz;
            dq[2 * H + j] = dn * r;
            dh_prev[j] += dh[j] * z;
        }
    }
}

static const rnn_cell gru_cell = {
    .name = "gru",
    .gates = 3,
    .has_cell_state = false,
    .hidden_apart = true,
    .forward = gru_forward,
    .backward = gru_backward,
};

em_tensor *em_gru(em_tensor *x, const em_rnn_params *params, em_tensor *h0, bool batch_first,
                  em_tensor **h_n)
{
    return em_rnn_sequence(&gru_cell, x, params, h0, NULL, EM_ACT_NONE, batch_first, h_n, NULL);
}
