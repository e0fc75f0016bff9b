/* The GRU cell, with PyTorch's formula (the reset gate scales the hidden product
 * including its bias, which is why the driver keeps W_hh h + b_hh apart):
 *   r = sigmoid(a_r + q_r), z = sigmoid(a_z + q_z), n = tanh(a_n + r q_n),
 *   h_t = (1 - z) n + z h_{t-1},
 * with a = W_ih x_t + b_ih and q = W_hh h_{t-1} + b_hh. Forward keeps r, z, n in place of
 * a; q stays for backward, which needs q_n. */
#include "ember/error.h"
#include "ops/fastmath.h"
#include "ops/rnn_cell.h"

/* One batch row. Separate restrict pointers per gate, in a function of their own: GCC
 * does not vectorise the loop over offsets into one array, nor restrict pointers declared
 * inside the loop over rows. */
static void gru_forward_row(float *restrict a_r, float *restrict a_z, float *restrict a_n,
                            const float *restrict q_r, const float *restrict q_z,
                            const float *restrict q_n, const float *restrict h_prev,
                            float *restrict h, int64_t H)
{
    for (int64_t j = 0; j < H; j++) {
        float r = em_fast_sigmoidf(a_r[j] + q_r[j]);
        float z = em_fast_sigmoidf(a_z[j] + q_z[j]);
        float n = em_fast_tanhf(a_n[j] + r * q_n[j]);
        h[j] = n + z * (h_prev[j] - n);
        a_r[j] = r;
        a_z[j] = z;
        a_n[j] = n;
    }
}

static void gru_forward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        float *a = s->gates + b * s->gate_stride;
        const float *q = s->hidden_gates + b * s->gate_stride;
        gru_forward_row(a, a + H, a + 2 * H, q, q + H, q + 2 * H, s->h_prev + b * H, s->h + b * H, H);
    }
}

static void gru_backward_row(const float *restrict act_r, const float *restrict act_z,
                             const float *restrict act_n, const float *restrict q_n,
                             const float *restrict h_prev, const float *restrict dh,
                             float *restrict dh_prev, float *restrict da_r, float *restrict da_z,
                             float *restrict da_n, float *restrict dq_r, float *restrict dq_z,
                             float *restrict dq_n, int64_t H)
{
    for (int64_t j = 0; j < H; j++) {
        float r = act_r[j], z = act_z[j], n = act_n[j];
        float dn = dh[j] * (1.0f - z) * (1.0f - n * n);
        float dz = dh[j] * (h_prev[j] - n) * z * (1.0f - z);
        float dr = dn * q_n[j] * r * (1.0f - r);
        da_r[j] = dr;
        da_z[j] = dz;
        da_n[j] = dn;
        dq_r[j] = dr;
        dq_z[j] = dz;
        dq_n[j] = dn * r;
        dh_prev[j] += dh[j] * z;
    }
}

static void gru_backward(const rnn_step *s)
{
    const int64_t H = s->hidden;
    for (int64_t b = s->b0; b < s->b1; b++) {
        const float *act = s->gates + b * s->gate_stride, *q = s->hidden_gates + b * s->gate_stride;
        float *da = s->dgates + b * s->gate_stride, *dq = s->dhidden_gates + b * s->gate_stride;
        gru_backward_row(act, act + H, act + 2 * H, q + 2 * H, s->h_prev + b * H, s->dh + b * H,
                         s->dh_prev + b * H, da, da + H, da + 2 * H, dq, dq + H, dq + 2 * H, H);
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
    return em_rnn_sequence(&gru_cell, x, NULL, params, h0, NULL, EM_ACT_NONE, batch_first, h_n, NULL);
}

em_tensor *em_gru_embedded(const em_token_input *tokens, const em_rnn_params *params, em_tensor *h0,
                           bool batch_first, em_tensor **h_n)
{
    if (!tokens)
        return em_error("gru: no token input given"), NULL;
    return em_rnn_sequence(&gru_cell, NULL, tokens, params, h0, NULL, EM_ACT_NONE, batch_first, h_n, NULL);
}
