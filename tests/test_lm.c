/* Language models: evaluation on text equals the cross-entropy of one long forward;
 * a seeded training run on a small text brings the validation bits per byte well below
 * the text's unigram entropy (both printed), with random windows and with sequential
 * windows carrying state; sampling (temperature 0, top-k, top-p, frequencies, seeds);
 * generation equals sampling from full recomputations; errors. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* Seeded sentences from a small grammar: bytes whose frequencies say little (about 4
 * bits each) but whose words and order say a lot. */
static em_text *grammar_text(int64_t size, uint64_t seed)
{
    static const char *const subjects[] = {"the cat", "a dog", "my old friend", "the teacher", "every child",
                                           "some birds", "the river"};
    static const char *const verbs[] = {"sees", "likes", "follows", "paints", "remembers", "finds"};
    static const char *const objects[] = {"the moon", "a red kite", "the quiet garden", "seven stones",
                                          "the long road", "an apple"};
    char *buf = malloc((size_t)size + 64);
    em_rng rng;
    em_rng_seed(&rng, seed);
    int64_t n = 0;
    while (n < size) {
        /* drawn one by one: the order of a call's arguments is unspecified */
        const char *subject = subjects[em_rng_below(&rng, 7)];
        const char *verb = verbs[em_rng_below(&rng, 6)];
        const char *object = objects[em_rng_below(&rng, 6)];
        n += sprintf(buf + n, "%s %s %s.\n", subject, verb, object);
    }
    em_text *t = em_text_from_bytes(buf, size, "grammar");
    free(buf);
    return t;
}

static const char *const SMALL_LSTM = "input 32\nembedding 256 16\nlstm 64\nlinear 256\n";

/* Windows carried along one track give the loss of one forward over the whole track. */
static void test_evaluate_matches_forward(void)
{
    em_text *t = grammar_text(2 * 20 + 1, 4);
    em_model *m = em_model_parse(SMALL_LSTM, "small", 2);
    CHECK_MSG(t && m, "%s", ember_last_error());
    if (!t || !m)
        return;
    em_lm_figures f;
    CHECK_MSG(em_evaluate_text(m, t, 20, 1, 0, &f) == EM_OK, "%s", ember_last_error());
    CHECK(f.bytes == 40);
    int32_t ids[40], targets[40];
    for (int i = 0; i < 40; i++) {
        ids[i] = t->bytes[i];
        targets[i] = t->bytes[i + 1];
    }
    em_model_set_training(m, false);
    em_tensor *logits = em_forward_tokens(m, ids, 1, 40);
    em_tensor *loss = em_cross_entropy(em_reshape(logits, 2, (int64_t[]){40, 256}), targets, 0.0f);
    CHECK(loss != NULL);
    if (loss)
        CHECK_NEAR(f.loss, em_item(loss), 1e-5);
    CHECK_NEAR(f.bits_per_byte, f.loss / log(2.0), 1e-12);
    CHECK_NEAR(f.perplexity, exp(f.loss), 1e-9);
    em_step_end();
    /* Its carried state is reset afterwards, and the training flag restored. */
    CHECK(!em_model_carries(m) && !em_model_is_training(m));
    /* A text shorter than the sequence: one window of what there is. */
    em_text *short_text = em_text_from_bytes("abcde", 5, "abcde");
    CHECK(em_evaluate_text(m, short_text, 20, 8, 0, &f) == EM_OK && f.bytes == 4);
    em_text_free(short_text);
    em_model_free(m);
    em_text_free(t);
}

typedef struct run_figures {
    double unigram, val_bpb, first_val_bpb;
} run_figures;

static void train_on_grammar(em_text_order order, int64_t steps, run_figures *out)
{
    em_text *all = grammar_text(test_quick() ? 6000 : 12000, 1), *train = NULL, *val = NULL;
    CHECK(em_text_split(all, 0.1, 0, 0, &train, &val) == EM_OK);
    em_model *m = em_model_parse(SMALL_LSTM, "small", 7);
    em_lm_opts o = em_lm_defaults();
    o.train.batch_size = 16;
    o.seq_len = 32;
    o.steps = steps;
    o.order = order;
    o.train.optim.lr = 1e-2f;
    o.train.progress = EM_PROGRESS_QUIET;
    o.eval_every = steps / 2;
    em_train_history h;
    em_history_init(&h);
    o.train.history = &h;
    em_lm_result r;
    int rc = em_train_lm(m, train, val, &o, &r);
    CHECK_MSG(rc == EM_OK, "%s", ember_last_error());
    out->unigram = em_text_unigram_bits(val);
    out->val_bpb = r.val.bits_per_byte;
    out->first_val_bpb = h.n_epochs > 0 ? h.epochs[0].val_loss / log(2.0) : NAN;
    CHECK(r.steps == steps && r.evaluations == 2 && h.n_epochs == 2 && h.n_steps == steps);
    CHECK(r.val.bytes > 0 && r.train_eval.bytes == r.val.bytes);
    CHECK(r.tokens_per_second > 0.0);
    printf("%s windows, %lld steps: validation %.3f bits/byte (%.3f after %lld steps), training text %.3f; "
           "unigram entropy of the validation text %.3f bits/byte\n",
           order == EM_TEXT_SEQUENTIAL ? "sequential" : "random", (long long)steps, out->val_bpb, out->first_val_bpb,
           (long long)(steps / 2), r.train_eval.bits_per_byte, out->unigram);
    em_history_free(&h);
    em_model_free(m);
    em_text_free(all);
    em_text_free(train);
    em_text_free(val);
}

static void test_training_learns(void)
{
    run_figures f;
    train_on_grammar(EM_TEXT_RANDOM, test_quick() ? 60 : 100, &f);
    /* A model that knew only byte frequencies would get the unigram entropy. */
    CHECK_MSG(f.val_bpb < (test_quick() ? 0.8 : 0.5) * f.unigram, "validation %.3f bits/byte, unigram %.3f",
              f.val_bpb, f.unigram);
    CHECK(f.val_bpb < f.first_val_bpb);
    train_on_grammar(EM_TEXT_SEQUENTIAL, test_quick() ? 40 : 60, &f);
    CHECK_MSG(f.val_bpb < (test_quick() ? 0.85 : 0.7) * f.unigram, "validation %.3f bits/byte, unigram %.3f", f.val_bpb, f.unigram);
}

static void test_training_errors(void)
{
    em_text *t = grammar_text(500, 2);
    em_lm_opts o = em_lm_defaults();
    o.train.progress = EM_PROGRESS_QUIET;
    o.steps = 2;
    em_lm_result r;
    em_model *mlp = em_model_parse("input 4\nlinear 3\n", "mlp", 1);
    CHECK(em_train_lm(mlp, t, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("its first layer must be an embedding");
    em_model_free(mlp);
    em_model *no_head = em_model_parse("input 8\nembedding 256 4\nlstm 8\n", "no head", 1);
    CHECK(em_train_lm(no_head, t, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("this model's output is [8, 8]: end it with 'linear 256'");
    em_model_free(no_head);
    em_model *small_vocab = em_model_parse("input 8\nembedding 100 4\nlstm 8\nlinear 100\n", "ascii", 1);
    CHECK(em_train_lm(small_vocab, t, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("grammar: byte 109 (0x6d) at offset 0 is outside the model's vocabulary of 100 tokens");
    em_model_free(small_vocab);
    em_model *m = em_model_parse(SMALL_LSTM, "small", 1);
    o.seq_len = 600;
    CHECK(em_train_lm(m, t, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("the sequence length 600 is longer than grammar allows: 500 bytes");
    o.seq_len = 16;
    o.train.patience = 2;
    CHECK(em_train_lm(m, t, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("needs validation text");
    em_model_free(m);
    em_text_free(t);
}

static void test_sampler(void)
{
    const float logits[4] = {logf(0.5f), logf(0.3f), logf(0.2f), -INFINITY};
    em_sample_opts o = em_sample_defaults();
    o.temperature = 0.0f;
    em_sampler *s = em_sampler_new(4, &o);
    CHECK(s && em_sampler_next(s, logits) == 0);
    em_sampler_free(s);

    /* Frequencies: all tokens, top-2 (renormalised), top-p 0.6 (the first two reach it),
     * top-p 0.5 (the first alone reaches it). */
    const struct {
        int64_t k;
        float p, temperature;
        double expected[3];
    } cases[] = {{0, 1.0f, 1.0f, {0.5, 0.3, 0.2}},
                 {2, 1.0f, 1.0f, {0.625, 0.375, 0.0}},
                 {0, 0.6f, 1.0f, {0.625, 0.375, 0.0}},
                 {0, 0.5f, 1.0f, {1.0, 0.0, 0.0}},
                 {1, 1.0f, 3.0f, {1.0, 0.0, 0.0}},
                 /* temperature 2: probabilities as sqrt(p), renormalised */
                 {0, 1.0f, 2.0f, {0.4198, 0.3251, 0.2551}}};
    const int draws = test_quick() ? 4000 : 40000;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        o = em_sample_defaults();
        o.top_k = cases[c].k;
        o.top_p = cases[c].p;
        o.temperature = cases[c].temperature;
        o.seed = 11;
        s = em_sampler_new(4, &o);
        int counts[4] = {0};
        for (int i = 0; s && i < draws; i++)
            counts[em_sampler_next(s, logits)]++;
        CHECK(counts[3] == 0);
        for (int j = 0; j < 3; j++)
            CHECK_MSG(fabs((double)counts[j] / draws - cases[c].expected[j]) < (test_quick() ? 0.03 : 0.01),
                      "case %zu token %d: %d of %d", c, j, counts[j], draws);
        em_sampler_free(s);
    }
    /* The same seed gives the same tokens; another seed other ones. */
    int32_t a[64], b[64], d[64];
    for (int run = 0; run < 3; run++) {
        o = em_sample_defaults();
        o.seed = run == 2 ? 5 : 4;
        s = em_sampler_new(4, &o);
        for (int i = 0; i < 64; i++)
            (run == 0 ? a : run == 1 ? b : d)[i] = em_sampler_next(s, logits);
        em_sampler_free(s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(a, d, sizeof a) != 0);

    o = em_sample_defaults();
    o.top_p = 0.0f;
    CHECK(em_sampler_new(4, &o) == NULL);
    CHECK_ERROR_CONTAINS("top-p must be in (0, 1]");
    o = em_sample_defaults();
    o.temperature = -1.0f;
    CHECK(em_sampler_new(4, &o) == NULL);
    CHECK_ERROR_CONTAINS("temperature must be a finite number >= 0");
}

typedef struct collected {
    int32_t tokens[64];
    int n, stop_after;
} collected;

static int collect(void *user, int32_t token)
{
    collected *c = user;
    c->tokens[c->n++] = token;
    return c->stop_after && c->n >= c->stop_after;
}

/* The carried state makes each new token one step; the tokens must be those that
 * sampling from a full forward over everything so far gives. */
static void test_generate(void)
{
    em_model *m = em_model_parse("input 4\nembedding 50 8\ngru 12 layers=2\nlinear 50\n", "gen", 3);
    const int32_t prompt[3] = {4, 17, 9};
    em_sample_opts o = em_sample_defaults();
    o.seed = 21;
    o.temperature = 1.5f; /* flatter: more varied tokens */
    collected c = {.n = 0};
    CHECK_MSG(em_generate(m, prompt, 3, 40, &o, collect, &c) == EM_OK, "%s", ember_last_error());
    CHECK(c.n == 40 && em_model_is_training(m) && !em_model_carries(m));

    em_sampler *s = em_sampler_new(50, &o);
    int32_t seq[64];
    memcpy(seq, prompt, sizeof prompt);
    em_model_set_training(m, false);
    bool grad_was = em_set_grad_enabled(false);
    int distinct = 0;
    for (int i = 0; i < 40; i++) {
        em_tensor *logits = em_contiguous(em_forward_tokens(m, seq, 1, 3 + i));
        int32_t expected = em_sampler_next(s, logits->data + (logits->numel - 50));
        CHECK_MSG(c.tokens[i] == expected, "token %d: %d, full forward gives %d", i, c.tokens[i], expected);
        distinct += i == 0 || c.tokens[i] != c.tokens[i - 1];
        seq[3 + i] = c.tokens[i];
        em_step_end();
    }
    em_set_grad_enabled(grad_was);
    CHECK(distinct > 10);
    em_sampler_free(s);

    /* Stopping early; the same seed again gives the same start. */
    collected again = {.n = 0, .stop_after = 5};
    CHECK(em_generate(m, prompt, 3, 40, &o, collect, &again) == EM_OK);
    CHECK(again.n == 5 && memcmp(again.tokens, c.tokens, 5 * sizeof(int32_t)) == 0);

    const int32_t bad[2] = {4, 50};
    CHECK(em_generate(m, bad, 2, 5, &o, collect, &again) == EM_ERR);
    CHECK_ERROR_CONTAINS("the prompt's token 1 is 50, outside the model's vocabulary of 50 tokens (0..49)");
    CHECK(em_generate(m, prompt, 0, 5, &o, collect, &again) == EM_ERR);
    CHECK_ERROR_CONTAINS("the prompt is empty");
    em_model_free(m);

    /* A model without carried state runs on a window of its nominal length. */
    m = em_model_parse("input 2\nembedding 10 3\nlinear 10\n", "bigram", 3);
    collected w = {.n = 0};
    CHECK_MSG(em_generate(m, prompt, 1, 12, &o, collect, &w) == EM_OK, "%s", ember_last_error());
    CHECK(w.n == 12);
    em_model_free(m);
}

int main(void)
{
    test_evaluate_matches_forward();
    test_sampler();
    test_generate();
    test_training_errors();
    test_training_learns();
    return test_finish();
}
