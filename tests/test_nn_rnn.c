/* Recurrent layer kinds as models: models/lstm.ember has PyTorch's names, shapes and
 * init bounds; language models (embedding + 2-layer LSTM, GRU or RNN + linear) match
 * PyTorch's logits, loss, every gradient and final states, batch-first and time-major,
 * with given initial states (tests/fixtures/gen_nn_rnn.py); carrying state across
 * batches equals one long forward and matches PyTorch's truncated backpropagation
 * through time; whole-model gradient checks; descriptions round-trip; errors. */
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"
#include "testlib.h"

/* The twin of gen_nn_rnn.py's LanguageModel: V 11, D 5, H 6, nominal length 4. */
static const char *description_of(const char *prefix)
{
    if (strcmp(prefix, "lstm_bf") == 0 || strcmp(prefix, "tbptt") == 0)
        return "input 4\nembedding 11 5 padding_idx=2\nlstm 6 layers=2\nlinear 11\n";
    if (strcmp(prefix, "lstm_sf") == 0)
        return "input 4\nembedding 11 5 padding_idx=2\nlstm 6 2 batch_first=false\nlinear 11\n";
    if (strcmp(prefix, "gru") == 0)
        return "input 4\nembedding 11 5\ngru 6 layers=2 batch_first=false\nlinear 11\n";
    if (strcmp(prefix, "gru_bf") == 0)
        return "input 4\nembedding 11 5\ngru 6 layers=2\nlinear 11\n";
    if (strcmp(prefix, "rnn_sf") == 0)
        return "input 4\nembedding 11 5\nrnn 6 layers=2 batch_first=false\nlinear 11\n";
    return "input 4\nembedding 11 5\nrnn hidden=6 num_layers=2 nonlinearity=relu bias=false\nlinear 11\n";
}

static em_model *model_from_fixture(em_st_file *f, const char *prefix)
{
    em_model *m = em_model_parse(description_of(prefix), prefix, 1);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (m) {
        char init[64];
        snprintf(init, sizeof init, "%s.init", prefix);
        test_fixture_load_state(f, m, init);
    }
    return m;
}

static void check_hidden(em_st_file *f, const em_model *m, const char *prefix, const char *state,
                         const char *fixture_name, int64_t batch)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", prefix, fixture_name);
    em_tensor *expected = test_fixture_tensor(f, name);
    float *got = malloc((size_t)expected->numel * sizeof(float));
    CHECK_MSG(em_model_get_hidden(m, state, batch, got) == EM_OK, "%s", ember_last_error());
    em_tensor *t = em_tensor_wrap(NULL, expected->ndim, expected->shape, got);
    CHECK(test_tensor_close(name, t, expected->data, 1e-5, 1e-4));
    free(got);
}

static void test_parity(const char *prefix, bool with_h0, bool with_c0)
{
    em_st_file *f = test_fixture("nn_rnn");
    em_model *m = model_from_fixture(f, prefix);
    char name[64];
    int64_t batch, steps, tb, ts;
    int32_t *ids = test_fixture_ids(f, prefix, "ids", &batch, &steps);
    int32_t *targets = test_fixture_ids(f, prefix, "targets", &tb, &ts);
    if (!m || !ids || !targets)
        goto done;
    CHECK(em_model_vocab_size(m) == 11 && em_model_has_carry(m) && em_model_hidden_count(m) == (with_c0 || strstr(prefix, "lstm") ? 2 : 1));
    if (with_h0) {
        snprintf(name, sizeof name, "%s.h0", prefix);
        CHECK_MSG(em_model_set_hidden(m, "1.h", batch, test_fixture_tensor(f, name)->data) == EM_OK, "%s",
                  ember_last_error());
    }
    if (with_c0) {
        snprintf(name, sizeof name, "%s.c0", prefix);
        CHECK_MSG(em_model_set_hidden(m, "1.c", batch, test_fixture_tensor(f, name)->data) == EM_OK, "%s",
                  ember_last_error());
    }
    em_tensor *logits = em_forward_tokens(m, ids, batch, steps);
    CHECK_MSG(logits && logits->ndim == 3 && logits->shape[0] == batch && logits->shape[1] == steps &&
                  logits->shape[2] == 11,
              "%s: %s", prefix, logits ? em_shape_str(logits) : ember_last_error());
    if (!test_sequence_parity(f, m, prefix, logits, targets))
        goto done;
    check_hidden(f, m, prefix, "1.h", "h_n", batch);
    if (strstr(prefix, "lstm"))
        check_hidden(f, m, prefix, "1.c", "c_n", batch);
done:
    em_step_end();
    free(ids);
    free(targets);
    em_model_free(m);
    em_st_close(f);
}

/* PyTorch's loop: a no-grad forward over one chunk, then the next chunk from its final
 * states detached; the gradients are those of the second chunk's loss alone. */
static void test_truncated_bptt(void)
{
    em_st_file *f = test_fixture("nn_rnn");
    em_model *m = model_from_fixture(f, "tbptt");
    int64_t b1, t1, b2, t2, tb, ts;
    int32_t *ids = test_fixture_ids(f, "tbptt", "ids", &b1, &t1);
    int32_t *ids2 = test_fixture_ids(f, "tbptt", "ids2", &b2, &t2);
    int32_t *targets2 = test_fixture_ids(f, "tbptt", "targets2", &tb, &ts);
    if (!m || !ids || !ids2 || !targets2)
        goto done;
    em_model_set_carry(m, true);
    CHECK(em_model_carries(m));
    /* The first chunk with gradients on: what reaches the second chunk is detached. */
    CHECK(em_forward_tokens(m, ids, b1, t1) != NULL);
    em_step_end();
    em_tensor *logits2 = em_forward_tokens(m, ids2, b2, t2);
    em_tensor *loss2 = test_sequence_loss(logits2, targets2);
    if (!loss2)
        goto done;
    CHECK(test_tensor_close("tbptt.logits2", logits2, test_fixture_tensor(f, "tbptt.logits2")->data, 1e-5, 1e-4));
    CHECK_NEAR(em_item(loss2), test_fixture_tensor(f, "tbptt.loss2")->data[0], 1e-5);
    CHECK(em_backward(loss2) == EM_OK);
    test_fixture_check_grads(f, m, "tbptt");
done:
    em_step_end();
    free(ids);
    free(ids2);
    free(targets2);
    em_model_free(m);
    em_st_close(f);
}

/* Carrying: two forwards over halves give the logits of one forward over the whole;
 * without carrying, the second half starts afresh; a reset starts afresh too; another
 * batch size while carrying is an error that names both sizes. */
static void test_carry_matches_one_forward(const char *kind_line)
{
    char text[256];
    snprintf(text, sizeof text, "input 8\nembedding 13 4\n%s\nlinear 13\n", kind_line);
    em_model *m = em_model_parse(text, kind_line, 5);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    em_model_set_training(m, false);
    enum { B = 3, T = 10, HALF = 6 };
    int32_t ids[B * T], first[B * HALF], second[B * (T - HALF)];
    em_rng rng;
    em_rng_seed(&rng, 9);
    for (int i = 0; i < B * T; i++)
        ids[i] = (int32_t)em_rng_below(&rng, 13);
    for (int b = 0; b < B; b++) {
        memcpy(first + b * HALF, ids + b * T, HALF * sizeof(int32_t));
        memcpy(second + b * (T - HALF), ids + b * T + HALF, (T - HALF) * sizeof(int32_t));
    }
    float whole[B * T * 13], part[B * (T - HALF) * 13], fresh[B * (T - HALF) * 13];
    em_tensor *y = em_forward_tokens(m, ids, B, T);
    CHECK(y != NULL);
    if (y)
        em_copy_to(y, whole);
    em_step_end();
    em_model_set_carry(m, true);
    CHECK(em_forward_tokens(m, first, B, HALF) != NULL);
    em_step_end();
    y = em_forward_tokens(m, second, B, T - HALF);
    if (y)
        em_copy_to(y, part);
    em_step_end();
    double worst = 0.0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T - HALF; t++)
            for (int v = 0; v < 13; v++)
                worst = fmax(worst, fabs(part[(b * (T - HALF) + t) * 13 + v] - whole[(b * T + HALF + t) * 13 + v]));
    CHECK_MSG(worst < 1e-5, "%s: carried halves differ from one forward by %g", kind_line, worst);

    /* A reset forgets, and so does carrying off. */
    em_model_reset_carry(m);
    y = em_forward_tokens(m, second, B, T - HALF);
    if (y)
        em_copy_to(y, fresh);
    em_step_end();
    CHECK(memcmp(fresh, part, sizeof fresh) != 0);
    em_model_set_carry(m, false);
    CHECK(!em_model_carries(m));
    y = em_forward_tokens(m, second, B, T - HALF);
    CHECK(y && memcmp(y->data, fresh, sizeof fresh) == 0);
    em_step_end();

    /* Another batch size while carrying: a clear error, then a reset allows it. */
    em_model_set_carry(m, true);
    CHECK(em_forward_tokens(m, ids, B, T) != NULL);
    em_step_end();
    CHECK(em_forward_tokens(m, ids, 1, T) == NULL);
    CHECK_ERROR_CONTAINS("holds 3 sequences, this batch has 1");
    em_step_end();
    em_model_reset_carry(m);
    CHECK(em_forward_tokens(m, ids, 1, T) != NULL);
    em_step_end();
    em_model_free(m);
}

/* The embedding folded into the first recurrent layer (vocabulary smaller than the batch's
 * positions) gives what the embedding's own forward followed by the layer gives: one
 * sequence (10 positions, vocabulary 13: not folded) and the same sequence twice (20:
 * folded), with gradients summed over the rows. */
static void test_folded_embedding(const char *kind_line)
{
    char text[256];
    snprintf(text, sizeof text, "input 8\nembedding 13 4 padding_idx=3\n%s\nlinear 13\n", kind_line);
    em_model *m = em_model_parse(text, kind_line, 5);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    CHECK(em_model_layer_at(m, 0)->fused && em_model_layer_at(m, 0)->fused_into == 1);
    int32_t ids[20] = {1, 3, 12, 0, 5, 3, 7, 7, 2, 11};
    memcpy(ids + 10, ids, 10 * sizeof(int32_t));
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    float single_out[10 * 13], *single_grads[16] = {NULL};
    for (int pass = 0; pass < 2; pass++) {
        int64_t batch = pass + 1;
        em_model_zero_grad(m);
        em_tensor *y = em_forward_tokens(m, ids, batch, 10);
        CHECK_MSG(y != NULL, "%s", ember_last_error());
        if (!y)
            break;
        float w[20 * 13];
        for (int i = 0; i < 20 * 13; i++)
            w[i] = (float)((i % 130) * 7 % 13 - 6) * 0.05f;
        CHECK(em_backward_with(y, w) == EM_OK);
        em_tensor *dense = em_contiguous(y);
        for (int row = 0; row < batch; row++) {
            if (pass == 0)
                memcpy(single_out, dense->data, sizeof single_out);
            else
                CHECK_MSG(test_max_violation(dense->data + row * 130, single_out, 130, 1e-6, 1e-5) <= 1.0,
                          "%s: row %d of the folded forward", kind_line, row);
        }
        for (int i = 0; i < count && i < 16; i++) {
            em_tensor *t = state[i].tensor;
            if (pass == 0) {
                single_grads[i] = malloc((size_t)t->numel * sizeof(float));
                memcpy(single_grads[i], t->grad, (size_t)t->numel * sizeof(float));
                for (int64_t j = 0; j < t->numel; j++)
                    single_grads[i][j] *= 2.0f;
            } else {
                CHECK_MSG(test_max_violation(t->grad, single_grads[i], t->numel, 1e-5, 1e-4) <= 1.0, "%s: %s",
                          kind_line, state[i].name);
            }
        }
        em_step_end();
    }
    for (int i = 0; i < 16; i++)
        free(single_grads[i]);
    em_model_free(m);
}

static void test_lstm_description(void)
{
    em_model *m = em_model_load(test_path("models/lstm.ember"), 1);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    static const char *const names[] = {"0.weight",      "1.weight_ih_l0", "1.weight_hh_l0", "1.bias_ih_l0",
                                        "1.bias_hh_l0", "2.weight",       "2.bias"};
    static const int64_t shapes[][2] = {{256, 64}, {1024, 64}, {1024, 256}, {1024, 0}, {1024, 0}, {256, 256}, {256, 0}};
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    CHECK(count == 7);
    for (int i = 0; i < count && i < 7; i++) {
        CHECK_MSG(strcmp(state[i].name, names[i]) == 0, "%s", state[i].name);
        CHECK(state[i].tensor->shape[0] == shapes[i][0] &&
              (shapes[i][1] ? state[i].tensor->ndim == 2 && state[i].tensor->shape[1] == shapes[i][1]
                            : state[i].tensor->ndim == 1));
    }
    /* nn.Embedding(256, 64) + nn.LSTM(64, 256) + nn.Linear(256, 256) */
    CHECK(em_model_param_count(m) == 256 * 64 + 4 * 256 * (64 + 256) + 2 * 1024 + 256 * 256 + 256);
    CHECK(em_model_vocab_size(m) == 256);
    int64_t shape[EM_MAX_DIMS];
    CHECK(em_model_output_shape(m, shape) == 2 && shape[0] == 64 && shape[1] == 256);
    /* U(-1/16, 1/16) for every LSTM parameter; N(0, 1) embedding */
    for (int i = 1; i <= 4; i++) {
        const em_tensor *t = state[i].tensor;
        float largest = 0.0f;
        for (int64_t j = 0; j < t->numel; j++)
            largest = fmaxf(largest, fabsf(t->data[j]));
        CHECK_MSG(largest <= 1.0f / 16.0f && largest > 0.9f / 16.0f, "%s: largest %g", state[i].name, largest);
    }
    double sum2 = 0.0;
    for (int64_t j = 0; j < state[0].tensor->numel; j++)
        sum2 += (double)state[0].tensor->data[j] * state[0].tensor->data[j];
    CHECK_NEAR(sum2 / (double)state[0].tensor->numel, 1.0, 0.05);
    int64_t hidden_shape[2];
    CHECK(em_model_hidden_count(m) == 2);
    const char *h = em_model_hidden_name(m, 0, hidden_shape);
    CHECK(h && strcmp(h, "1.h") == 0 && hidden_shape[0] == 1 && hidden_shape[1] == 256);
    CHECK(em_model_hidden_name(m, 2, NULL) == NULL);
    em_model_free(m);
}

static void test_gradchecks(void)
{
    static const char *const lines[] = {
        "rnn 5 layers=2",
        "rnn 5 layers=2 nonlinearity=relu batch_first=false",
        "lstm 5 layers=2",
        "lstm 5 layers=2 batch_first=false bias=false",
        "gru 5 layers=2",
        "gru 5 layers=2 batch_first=false",
    };
    int n = (int)(sizeof lines / sizeof lines[0]);
    for (int i = 0; i < n; i++) {
        if (test_quick() && i % 2)
            continue;
        char text[256];
        snprintf(text, sizeof text, "input 5\nembedding 7 3\n%s\nlinear 4\n", lines[i]);
        em_model *m = em_model_parse(text, lines[i], 3);
        CHECK_MSG(m != NULL, "%s", ember_last_error());
        if (!m)
            continue;
        double worst = 1.0;
        int rc = em_model_gradcheck(m, 3, 11, NULL, &worst);
        CHECK_MSG(rc == EM_OK, "%s: %s", lines[i], ember_last_error());
        printf("gradient check %-52s worst relative error %.2e\n", lines[i], worst);
        em_model_free(m);
    }
    /* A recurrent layer on features (no embedding) checks too. */
    em_model *m = em_model_parse("input 4x3\nlstm 4 layers=2\nlinear 2\n", "features", 3);
    CHECK_MSG(m && em_model_gradcheck(m, 2, 5, NULL, NULL) == EM_OK, "%s", ember_last_error());
    em_model_free(m);
}

static void test_round_trip_and_dropout(void)
{
    const char *text = "input 6\n"
                       "embedding vocab=9 dim=4 padding_idx=-1\n"
                       "rnn 5 layers=3 nonlinearity=relu bias=false batch_first=false dropout=0.25\n"
                       "gru 3\n"
                       "linear 9\n";
    em_model *m = em_model_parse(text, "round trip", 1);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    char *generated = em_model_generate_description(m);
    CHECK_MSG(strstr(generated, "embedding 9 4 padding_idx=-1\n") &&
                  strstr(generated, "rnn 5 layers=3 nonlinearity=relu bias=false batch_first=false dropout=0.25\n") &&
                  strstr(generated, "gru 3\n"),
              "%s", generated);
    em_model *again = em_model_parse(generated, "generated", 1);
    CHECK_MSG(again != NULL, "%s", ember_last_error());
    em_model_free(again);
    free(generated);
    /* padding_idx=-1 is row 8: zero at init */
    const em_tensor *w = em_model_find(m, "0.weight");
    CHECK(w->data[8 * 4] == 0.0f && w->data[8 * 4 + 3] == 0.0f && w->data[0] != 0.0f);
    CHECK(em_model_find(m, "1.weight_hh_l2") && !em_model_find(m, "1.bias_ih_l0"));
    CHECK(em_model_find(m, "2.bias_hh_l0") && em_model_hidden_count(m) == 2);

    /* Dropout between the stacked layers: training differs from evaluation, which is
     * deterministic. */
    int32_t ids[2 * 6] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2};
    float train_out[2 * 6 * 9], eval_out[2 * 6 * 9];
    em_tensor *y = em_forward_tokens(m, ids, 2, 6);
    CHECK(y != NULL);
    if (y)
        em_copy_to(y, train_out);
    em_step_end();
    em_model_set_training(m, false);
    y = em_forward_tokens(m, ids, 2, 6);
    if (y)
        em_copy_to(y, eval_out);
    em_step_end();
    CHECK(memcmp(train_out, eval_out, sizeof eval_out) != 0);
    y = em_forward_tokens(m, ids, 2, 6);
    CHECK(y && memcmp(y->data, eval_out, sizeof eval_out) == 0);
    em_step_end();
    em_model_free(m);
}

static void check_parse_error(const char *text, const char *needle)
{
    em_model *m = em_model_parse(text, "bad.ember", 1);
    CHECK_MSG(m == NULL, "accepted:\n%s", text);
    CHECK_ERROR_CONTAINS(needle);
    em_model_free(m);
}

static void test_errors(void)
{
    check_parse_error("input 5\nembedding 10\n", "bad.ember:2: embedding: missing embedding_dim");
    check_parse_error("input 5\nembedding 10 4 padding_idx=10\n", "padding_idx must be within num_embeddings (10)");
    check_parse_error("input 5x3\nlinear 4\nembedding 10 4\n", "must be the first layer");
    check_parse_error("input 2x5\nembedding 10 4\n", "a sequence of token ids per example");
    check_parse_error("input 5\nlstm 4\n", "add an 'embedding VOCAB DIM' line before it");
    check_parse_error("input 5\nembedding 10 4\nlstm\n", "lstm: missing hidden_size");
    check_parse_error("input 5\nembedding 10 4\nlstm 4 nonlinearity=relu\n", "unknown option 'nonlinearity=relu'");
    check_parse_error("input 5\nembedding 10 4\nrnn 4 nonlinearity=sigmoid\n", "nonlinearity must be tanh or relu");
    check_parse_error("input 5\nembedding 10 4\ngru 4 layers=17\n", "num_layers must be at most 16");
    check_parse_error("input 5\nembedding 10 4\ngru 4 dropout=1\n", "dropout must be in [0, 1)");

    em_model *m = em_model_parse("input 3\nembedding 10 4\ngru 4\nlinear 10\n", "ok", 1);
    CHECK(m != NULL);
    if (!m)
        return;
    int32_t ids[3] = {1, 10, 2};
    CHECK(em_forward_tokens(m, ids, 1, 3) == NULL);
    CHECK_ERROR_CONTAINS("token id 10 at [0, 1] is out of range (vocabulary of 10)");
    em_step_end();
    em_tensor *x = em_tensor_full(NULL, 2, (int64_t[]){1, 3}, 1.5f);
    CHECK(em_forward(m, x) == NULL);
    CHECK_ERROR_CONTAINS("token id 1.5 at [0, 0] is not an integer");
    em_step_end();
    float h[4];
    CHECK(em_model_get_hidden(m, "1.c", 1, h) == EM_ERR);
    CHECK_ERROR_CONTAINS("no carried state named '1.c'; the model's are 1.h");
    CHECK(em_model_get_hidden(m, "1.h", 1, h) == EM_ERR);
    CHECK_ERROR_CONTAINS("no forward has run yet");
    em_model_free(m);

    m = em_model_parse("input 3\nlinear 2\n", "mlp", 1);
    CHECK(m && em_model_vocab_size(m) == 0 && !em_model_has_carry(m) && em_model_hidden_count(m) == 0);
    CHECK(em_forward_tokens(m, ids, 1, 3) == NULL);
    CHECK_ERROR_CONTAINS("does not take token ids");
    CHECK(em_model_set_hidden(m, "0.h", 1, h) == EM_ERR);
    CHECK_ERROR_CONTAINS("the model has none (no recurrent layer)");
    em_model_free(m);
}

int main(void)
{
    test_lstm_description();
    test_parity("lstm_bf", true, true);
    test_parity("lstm_sf", false, false);
    test_parity("gru", true, false);
    test_parity("rnn", true, false);
    test_parity("gru_bf", false, false);
    test_parity("rnn_sf", true, false);
    test_truncated_bptt();
    test_carry_matches_one_forward("lstm 6 layers=2");
    test_carry_matches_one_forward("gru 5 batch_first=false");
    test_carry_matches_one_forward("rnn 5 layers=2 nonlinearity=relu");
    test_folded_embedding("lstm 6 layers=2");
    test_folded_embedding("gru 5 batch_first=false layers=2");
    test_folded_embedding("rnn 5 nonlinearity=relu");
    test_gradchecks();
    test_round_trip_and_dropout();
    test_errors();
    return test_finish();
}
