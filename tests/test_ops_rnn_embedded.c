/* Token input folded into the first recurrent layer (em_rnn_embedded, em_lstm_embedded,
 * em_gru_embedded): the outputs, final states and the gradients of every input (the
 * embedding with its padding row, both weights, both biases, the initial states) equal
 * those of em_embedding followed by the plain op (which test_ops_rnn checks against
 * PyTorch), batch-first and time-major, on one thread and on two; bad ids are named. */
#include <string.h>

#include "testlib.h"

enum { V = 9, I = 5, H = 7, B = 3, T = 6 };
enum cell { RNN, LSTM, GRU };

typedef struct result {
    float out[B * T * H], h_n[B * H], c_n[B * H];
    float grads[8][4 * H * 4 * H];
} result;

static int gates_of(enum cell c) { return c == LSTM ? 4 : c == GRU ? 3 : 1; }

static void run(enum cell c, bool embedded, bool batch_first, const int32_t *ids, em_tensor *const *leaves,
                result *r)
{
    em_tensor *emb = leaves[0], *h0 = leaves[5], *c0 = leaves[6];
    em_rnn_params p = {leaves[1], leaves[2], leaves[3], leaves[4]};
    for (int k = 0; k < 7; k++)
        em_zero_grad(leaves[k]);
    em_tensor *h_n = NULL, *c_n = NULL, *y;
    int64_t ids_shape[2] = {batch_first ? B : T, batch_first ? T : B};
    em_token_input tokens = {ids, B, T, emb, 2};
    em_tensor *x = embedded ? NULL : em_embedding(ids, 2, ids_shape, emb, 2);
    if (c == LSTM)
        y = embedded ? em_lstm_embedded(&tokens, &p, h0, c0, batch_first, &h_n, &c_n)
                     : em_lstm(x, &p, h0, c0, batch_first, &h_n, &c_n);
    else if (c == GRU)
        y = embedded ? em_gru_embedded(&tokens, &p, h0, batch_first, &h_n) : em_gru(x, &p, h0, batch_first, &h_n);
    else
        y = embedded ? em_rnn_embedded(&tokens, &p, h0, EM_ACT_TANH, batch_first, &h_n)
                     : em_rnn(x, &p, h0, EM_ACT_TANH, batch_first, &h_n);
    CHECK_MSG(y && h_n, "%s", ember_last_error());
    if (!y || !h_n)
        return;
    /* A loss using the sequence and the final states, weighted so that every element counts. */
    em_tensor *w = em_tensor_empty(NULL, y->ndim, y->shape);
    for (int64_t i = 0; i < w->numel; i++)
        w->data[i] = (float)((i * 37 % 11) - 5) * 0.1f;
    em_tensor *loss = em_add(em_sum_all(em_mul(y, w)), em_sum_all(em_mul_scalar(h_n, 0.7f)));
    if (c_n)
        loss = em_add(loss, em_sum_all(em_mul_scalar(c_n, -0.3f)));
    CHECK(em_backward(loss) == EM_OK);
    em_copy_to(y, r->out);
    em_copy_to(h_n, r->h_n);
    if (c_n)
        em_copy_to(c_n, r->c_n);
    for (int k = 0; k < 7; k++)
        memcpy(r->grads[k], leaves[k]->grad, (size_t)leaves[k]->numel * sizeof(float));
    em_step_end();
}

static void compare(enum cell c, bool batch_first, int threads)
{
    em_set_num_threads(threads);
    em_rng rng;
    em_rng_seed(&rng, 40 + (uint64_t)c);
    const int64_t GH = gates_of(c) * H;
    em_tensor *leaves[7] = {
        test_randn(&rng, 2, (int64_t[]){V, I}, 1.0f),  test_randn(&rng, 2, (int64_t[]){GH, I}, 0.4f),
        test_randn(&rng, 2, (int64_t[]){GH, H}, 0.4f), test_randn(&rng, 1, (int64_t[]){GH}, 0.2f),
        test_randn(&rng, 1, (int64_t[]){GH}, 0.2f),    test_randn(&rng, 2, (int64_t[]){B, H}, 0.5f),
        test_randn(&rng, 2, (int64_t[]){B, H}, 0.5f),
    };
    em_arena *keep = em_arena_create(0);
    for (int k = 0; k < 7; k++) {
        /* out of the step arena, as parameters would be */
        em_tensor *t = em_param_new(keep, leaves[k]->ndim, leaves[k]->shape, "leaf");
        memcpy(t->data, leaves[k]->data, (size_t)t->numel * sizeof(float));
        leaves[k] = t;
    }
    em_step_end();
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)em_rng_below(&rng, V);
    ids[4] = 2; /* the padding row occurs */
    static result plain, folded;
    memset(&plain, 0, sizeof plain);
    memset(&folded, 0, sizeof folded);
    run(c, false, batch_first, ids, leaves, &plain);
    run(c, true, batch_first, ids, leaves, &folded);
    char what[96];
    snprintf(what, sizeof what, "%s %s %d threads", c == LSTM ? "lstm" : c == GRU ? "gru" : "rnn",
             batch_first ? "batch-first" : "time-major", threads);
    CHECK_MSG(test_max_violation(folded.out, plain.out, B * T * H, 1e-6, 1e-5) <= 1.0, "%s: outputs", what);
    CHECK_MSG(test_max_violation(folded.h_n, plain.h_n, B * H, 1e-6, 1e-5) <= 1.0, "%s: h_n", what);
    CHECK_MSG(test_max_violation(folded.c_n, plain.c_n, B * H, 1e-6, 1e-5) <= 1.0, "%s: c_n", what);
    static const char *const names[7] = {"embedding", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "h0", "c0"};
    for (int k = 0; k < 7; k++)
        CHECK_MSG(test_max_violation(folded.grads[k], plain.grads[k], leaves[k]->numel, 1e-5, 1e-4) <= 1.0,
                  "%s: gradient of %s", what, names[k]);
    /* no gradient into the padding row, some into the others */
    CHECK(folded.grads[0][2 * I] == 0.0f && folded.grads[0][2 * I + I - 1] == 0.0f);
    CHECK(folded.grads[1][0] != 0.0f);
    em_arena_destroy(keep);
    em_set_num_threads(0);
}

static void test_errors(void)
{
    em_rng rng;
    em_rng_seed(&rng, 1);
    em_tensor *emb = test_randn(&rng, 2, (int64_t[]){V, I}, 1.0f);
    em_rnn_params p = {test_randn(&rng, 2, (int64_t[]){4 * H, I}, 0.1f),
                       test_randn(&rng, 2, (int64_t[]){4 * H, H}, 0.1f), NULL, NULL};
    int32_t ids[B * T] = {0};
    ids[7] = V;
    em_token_input tokens = {ids, B, T, emb, -1};
    CHECK(em_lstm_embedded(&tokens, &p, NULL, NULL, true, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("lstm: token id 9 at [1, 1] is outside the embedding [9, 5]");
    ids[7] = 0;
    em_rnn_params wrong = {test_randn(&rng, 2, (int64_t[]){4 * H, I + 1}, 0.1f), p.weight_hh, NULL, NULL};
    CHECK(em_lstm_embedded(&tokens, &wrong, NULL, NULL, true, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("weight_ih [28, 6] does not fit input [3, 6, 5]");
    CHECK(em_lstm_embedded(NULL, &p, NULL, NULL, true, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("no token input given");
    em_step_end();
}

int main(void)
{
    for (int c = RNN; c <= GRU; c++)
        for (int bf = 0; bf < 2; bf++)
            for (int threads = 1; threads <= 2; threads++)
                compare((enum cell)c, bf, threads);
    test_errors();
    return test_finish();
}
