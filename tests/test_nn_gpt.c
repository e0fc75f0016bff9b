/* The gpt layer kind: models/gpt.ember is W4 with GPT-2's names, shapes, order and
 * initialisation (875,264 parameters untied); two tiny GPTs (untied with two layers,
 * tied with one) match the plain-torch GPT-2 of tests/fixtures/gen_gpt.py in logits,
 * loss and every parameter gradient; whole-model gradient checks; generation with the
 * key/value cache gives the logits of a full recomputation bit for bit, through prompts,
 * single tokens and the re-prefill when the context fills, at W4's sizes too; dropout; description round trip;
 * errors (a sequence longer than the context, bad options, ids out of range). */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static em_gpt_config config_of(const char *prefix)
{
    if (strcmp(prefix, "a") == 0)
        return (em_gpt_config){.vocab = 13, .context = 8, .layers = 2, .heads = 2, .width = 8, .tied = false};
    return (em_gpt_config){.vocab = 11, .context = 6, .layers = 1, .heads = 4, .width = 16, .tied = true};
}

static em_model *model_from_fixture(em_st_file *f, const char *prefix)
{
    em_gpt_config c = config_of(prefix);
    em_model *m = em_gpt_new(&c, 3);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (m)
        test_fixture_load_state(f, m, prefix);
    return m;
}

static void test_w4_description(void)
{
    em_model *m = em_model_load(test_path("models/gpt.ember"), 1);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    CHECK(em_model_param_count(m) == 875264);
    CHECK(em_model_vocab_size(m) == 256);
    em_gpt_config c;
    CHECK(em_model_gpt_config(m, &c) == EM_OK && c.vocab == 256 && c.context == 128 && c.layers == 4 &&
          c.heads == 4 && c.width == 128 && !c.tied);
    /* GPT-2's state_dict order, names and Conv1D [in, out] layouts */
    static const struct {
        const char *name;
        int64_t rows, cols;
    } expect[] = {
        {"wte.weight", 256, 128},          {"wpe.weight", 128, 128},          {"h.0.ln_1.weight", 128, 0},
        {"h.0.ln_1.bias", 128, 0},          {"h.0.attn.c_attn.weight", 128, 384}, {"h.0.attn.c_attn.bias", 384, 0},
        {"h.0.attn.c_proj.weight", 128, 128}, {"h.0.attn.c_proj.bias", 128, 0}, {"h.0.ln_2.weight", 128, 0},
        {"h.0.ln_2.bias", 128, 0},          {"h.0.mlp.c_fc.weight", 128, 512}, {"h.0.mlp.c_fc.bias", 512, 0},
        {"h.0.mlp.c_proj.weight", 512, 128}, {"h.0.mlp.c_proj.bias", 128, 0}, {"h.1.ln_1.weight", 128, 0},
    };
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    CHECK(count == 2 + 4 * 12 + 3);
    for (size_t i = 0; i < sizeof expect / sizeof expect[0] && (int)i < count; i++) {
        const em_tensor *t = state[i].tensor;
        CHECK_MSG(strcmp(state[i].name, expect[i].name) == 0 && t->shape[0] == expect[i].rows &&
                      (expect[i].cols ? t->ndim == 2 && t->shape[1] == expect[i].cols : t->ndim == 1),
                  "%zu: %s %s", i, state[i].name, em_shape_str(t));
    }
    CHECK(strcmp(state[count - 3].name, "ln_f.weight") == 0 && strcmp(state[count - 1].name, "lm_head.weight") == 0);

    /* GPT-2's init: N(0, 0.02), c_proj N(0, 0.02/sqrt(8)), zero biases, unit LN weights */
    struct {
        const char *name;
        double std;
    } stats[] = {{"wte.weight", 0.02}, {"h.2.attn.c_attn.weight", 0.02}, {"h.3.mlp.c_fc.weight", 0.02},
                 {"h.0.attn.c_proj.weight", 0.02 / sqrt(8.0)}, {"h.1.mlp.c_proj.weight", 0.02 / sqrt(8.0)},
                 {"lm_head.weight", 0.02}};
    for (size_t s = 0; s < sizeof stats / sizeof stats[0]; s++) {
        const em_tensor *t = em_model_find(m, stats[s].name);
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < t->numel; i++) {
            sum += t->data[i];
            sq += (double)t->data[i] * t->data[i];
        }
        double mean = sum / (double)t->numel, sd = sqrt(sq / (double)t->numel - mean * mean);
        CHECK_MSG(fabs(sd / stats[s].std - 1.0) < 0.03 && fabs(mean) < 0.1 * stats[s].std, "%s: mean %g std %g",
                  stats[s].name, mean, sd);
    }
    const em_tensor *ln = em_model_find(m, "h.3.ln_2.weight"), *bias = em_model_find(m, "h.3.mlp.c_fc.bias");
    bool ones = true, zeros = true;
    for (int64_t i = 0; i < ln->numel; i++)
        ones = ones && ln->data[i] == 1.0f;
    for (int64_t i = 0; i < bias->numel; i++)
        zeros = zeros && bias->data[i] == 0.0f;
    CHECK(ones && zeros);

    /* the description round-trips, and tied=true drops lm_head */
    const char *text = em_model_description(m);
    em_model *again = em_model_parse(text, "round trip", 1);
    CHECK_MSG(again && strcmp(em_model_description(again), text) == 0 && em_model_param_count(again) == 875264,
              "%s", again ? em_model_description(again) : ember_last_error());
    em_model_free(again);
    em_model *tied = em_model_parse("input 128\ngpt vocab=256 context=128 layers=4 heads=4 width=128 tied=true\n",
                                    "tied", 1);
    CHECK(tied && em_model_param_count(tied) == 842496 && !em_model_find(tied, "lm_head.weight"));
    em_model_free(tied);
    em_model_free(m);
}

static void test_parity(const char *prefix)
{
    em_st_file *f = test_fixture("gpt");
    em_model *m = model_from_fixture(f, prefix);
    int64_t batch, steps, tb, ts;
    int32_t *ids = test_fixture_ids(f, prefix, "ids", &batch, &steps);
    int32_t *targets = test_fixture_ids(f, prefix, "targets", &tb, &ts);
    em_gpt_config c = config_of(prefix);
    if (!m)
        goto done;
    em_tensor *logits = em_forward_tokens(m, ids, batch, steps);
    CHECK_MSG(logits && logits->ndim == 3 && logits->shape[0] == batch && logits->shape[1] == steps &&
                  logits->shape[2] == c.vocab,
              "%s: %s", prefix, logits ? em_shape_str(logits) : ember_last_error());
    test_sequence_parity(f, m, prefix, logits, targets);
done:
    em_step_end();
    free(ids);
    free(targets);
    em_model_free(m);
    em_st_close(f);
}

static void check_model_gradients(const char *prefix)
{
    em_st_file *f = test_fixture("gpt");
    em_model *m = model_from_fixture(f, prefix);
    double worst = 1;
    if (m)
        CHECK_MSG(em_model_gradcheck(m, 2, 5, NULL, &worst) == EM_OK, "%s: %s", prefix, ember_last_error());
    printf("gradcheck %s: worst relative error %.2e\n", prefix, worst);
    em_model_free(m);
    em_st_close(f);
}

/* Logits of a full forward in evaluation mode over ids [1, n], malloc'd. */
static float *full_logits(em_model *m, const int32_t *ids, int64_t n)
{
    bool grad = em_set_grad_enabled(false);
    em_tensor *y = em_forward_tokens(m, ids, 1, n);
    float *out = NULL;
    if (y) {
        out = malloc((size_t)y->numel * sizeof *out);
        em_copy_to(y, out);
    } else {
        CHECK_MSG(0, "%s", ember_last_error());
    }
    em_set_grad_enabled(grad);
    em_step_end();
    return out;
}

/* Cached logits against full recomputation: a prompt, then one token at a time through
 * the end of the context and beyond (re-prefills); every comparison is exact. */
static void test_cache_equals_recomputation(const char *prefix)
{
    em_st_file *f = test_fixture("gpt");
    em_model *m = model_from_fixture(f, prefix);
    em_gpt_decoder *d = m ? em_gpt_decoder_new(m) : NULL;
    CHECK_MSG(d != NULL, "%s", ember_last_error());
    if (!d)
        goto done;
    em_model_set_training(m, false);
    const em_gpt_config c = config_of(prefix);
    const int64_t V = c.vocab, T = c.context, total = 3 * T;
    int32_t *seq = malloc((size_t)total * sizeof *seq);
    em_rng rng;
    em_rng_seed(&rng, 11);
    for (int64_t i = 0; i < total; i++)
        seq[i] = (int32_t)em_rng_below(&rng, (uint64_t)V);
    float *got = malloc((size_t)(T * V) * sizeof *got);

    /* a prompt of 3 with every position's logits */
    CHECK_MSG(em_gpt_decoder_feed(d, seq, 3, got, true) == EM_OK, "%s", ember_last_error());
    float *want = full_logits(m, seq, 3);
    CHECK(want && memcmp(got, want, (size_t)(3 * V) * sizeof *got) == 0);
    free(want);

    /* then single tokens; the window [start, i] is what the decoder holds */
    em_gpt_decoder_set_keep(d, T / 2);
    int64_t start = 0, mismatches = 0;
    for (int64_t i = 3; i < total; i++) {
        if (i - start == T)
            start = i - (T / 2 - 1);
        CHECK_MSG(em_gpt_decoder_push(d, seq[i], got) == EM_OK, "%s", ember_last_error());
        want = full_logits(m, seq + start, i - start + 1);
        if (!want || memcmp(got, want + (i - start) * V, (size_t)V * sizeof *got) != 0)
            mismatches++;
        free(want);
        CHECK(em_gpt_decoder_length(d) == i - start + 1);
    }
    CHECK_MSG(mismatches == 0, "%s: %lld of %lld steps differ from recomputation", prefix, (long long)mismatches,
              (long long)(total - 3));
    CHECK(em_gpt_decoder_refills(d) >= 2);

    /* a prompt longer than the room left is refused, the cache unchanged */
    int64_t held = em_gpt_decoder_length(d);
    CHECK(em_gpt_decoder_feed(d, seq, T, got, false) == EM_ERR);
    CHECK_ERROR_CONTAINS("do not fit the context");
    CHECK(em_gpt_decoder_length(d) == held);
    int32_t bad = (int32_t)V;
    CHECK(em_gpt_decoder_feed(d, &bad, 1, got, false) == EM_ERR);
    CHECK_ERROR_CONTAINS("outside the vocabulary");
    free(seq);
    free(got);
done:
    em_gpt_decoder_free(d);
    em_model_free(m);
    em_st_close(f);
}

/* At W4's sizes (K up to 512, 128 positions) BLAS would give one row other roundings
 * than 128 rows; the decoder's prompt, its single tokens and one forward over all 128
 * positions agree bit for bit, on any thread count. */
static void test_cache_exact_at_w4_size(void)
{
    em_gpt_config c = em_gpt_w4();
    c.layers = test_quick() ? 1 : 2;
    em_model *m = em_gpt_new(&c, 8);
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    em_rng rng;
    em_rng_seed(&rng, 12);
    for (int i = 0; i < count; i++) /* biases and LayerNorms away from 0 and 1 */
        for (int64_t k = 0; k < state[i].tensor->numel; k++)
            state[i].tensor->data[k] += 0.05f * em_rng_normal(&rng);
    em_model_set_training(m, false);
    int32_t ids[128];
    for (int i = 0; i < 128; i++)
        ids[i] = (int32_t)em_rng_below(&rng, 256);
    float *want = full_logits(m, ids, 128), *got = malloc(128 * 256 * sizeof *got);
    for (int threads = 1; threads <= 2; threads++) {
        em_set_num_threads(threads);
        em_gpt_decoder *d = em_gpt_decoder_new(m);
        int status = em_gpt_decoder_feed(d, ids, 5, got, true);
        for (int i = 5; i < 128 && status == EM_OK; i++)
            status = em_gpt_decoder_feed(d, ids + i, 1, got + i * 256, false);
        CHECK_MSG(status == EM_OK, "%s", ember_last_error());
        int64_t differ = 0;
        for (int64_t k = 0; want && k < 128 * 256; k++)
            differ += got[k] != want[k];
        CHECK_MSG(want && differ == 0, "%d threads: %lld of %d logits differ from the full forward", threads,
                  (long long)differ, 128 * 256);
        em_gpt_decoder_free(d);
    }
    em_set_num_threads(0);
    free(want);
    free(got);
    em_model_free(m);
}

static void test_dropout(void)
{
    em_gpt_config c = {.vocab = 7, .context = 5, .layers = 2, .heads = 2, .width = 8, .dropout = 0.3f};
    em_model *m = em_gpt_new(&c, 4);
    c.dropout = 0.0f;
    em_model *plain = em_gpt_new(&c, 4);
    CHECK(m && plain);
    if (!m || !plain)
        goto done;
    int32_t ids[10] = {1, 2, 3, 4, 5, 6, 0, 1, 2, 3};
    em_model_set_training(m, true);
    em_tensor *a = em_forward_tokens(m, ids, 2, 5), *b = em_forward_tokens(plain, ids, 2, 5);
    CHECK(a && b && test_max_violation(a->data, b->data, a->numel, 1e-6, 0) > 1);
    em_model_set_training(m, false);
    a = em_forward_tokens(m, ids, 2, 5);
    CHECK(a && b && memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0);
    em_model_set_training(m, true);
    double worst;
    CHECK_MSG(em_model_gradcheck(m, 2, 9, NULL, &worst) == EM_OK, "dropout: %s", ember_last_error());
done:
    em_step_end();
    em_model_free(m);
    em_model_free(plain);
}

static void test_errors(void)
{
    em_gpt_config c = config_of("a");
    em_model *m = em_gpt_new(&c, 1);
    int32_t ids[20] = {0};
    CHECK(em_forward_tokens(m, ids, 1, 9) == NULL);
    CHECK_ERROR_CONTAINS("a sequence of 9 tokens is longer than the model's context of 8 positions");
    ids[3] = 13;
    CHECK(em_forward_tokens(m, ids, 2, 4) == NULL);
    CHECK_ERROR_CONTAINS("token id 13 at [0, 3] is out of range (vocabulary of 13)");
    em_step_end();
    em_model_free(m);

    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"input 8\ngpt vocab=10 context=8 layers=2 heads=3 width=8\n", "width 8 is not a multiple of heads 3"},
        {"input 8\ngpt vocab=10 context=8 layers=2 width=8\n", "missing heads"},
        {"input 9\ngpt vocab=10 context=8 layers=2 heads=2 width=8\n", "exceed the model's context of 8"},
        {"input 8\ngpt vocab=10 context=8 layers=2 heads=2 width=8 colour=red\n", "colour"},
        {"input 8\ngpt vocab=10 context=8 layers=2 heads=2 width=8 dropout=1\n", "dropout"},
        {"input 8\nlinear 4\ngpt vocab=10 context=8 layers=2 heads=2 width=8\n", "must be the first layer"},
        {"input 2x4\ngpt vocab=10 context=8 layers=2 heads=2 width=8\n", "sequence of token ids"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        em_model *bad = em_model_parse(cases[i].text, "bad.ember", 1);
        CHECK_MSG(bad == NULL && test_error_contains(cases[i].needle), "case %zu: '%s' lacks '%s'", i,
                  ember_last_error(), cases[i].needle);
        em_model_free(bad);
    }
    em_model *mlp = em_model_parse("input 4\nlinear 3\n", "mlp", 1);
    CHECK(em_gpt_decoder_new(mlp) == NULL);
    CHECK_ERROR_CONTAINS("needs a gpt model");
    em_model_free(mlp);
}

int main(void)
{
    test_w4_description();
    test_parity("a");
    test_parity("b");
    check_model_gradients("a");
    check_model_gradients("b");
    test_cache_equals_recomputation("a");
    test_cache_equals_recomputation("b");
    test_cache_exact_at_w4_size();
    test_dropout();
    test_errors();
    return test_finish();
}
