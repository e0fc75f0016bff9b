/* A seeded training comparison: a small GPT and an LSTM of about the same size (137k and
 * 149k parameters) train on the same text for the same budget (steps, batch 16, windows
 * of 64 bytes, one thread) with the set-up that suits each (GPT: AdamW, cosine schedule
 * with warm-up, gradient clipping; LSTM: Adam, W3's recipe), and their validation bits
 * per byte are compared. The text is lines of words from a small vocabulary, each line
 * written twice: the second copy is predictable from the first, which attention looks up
 * directly and a recurrent state has to carry. At 600 steps the GPT's validation figure
 * is below the LSTM's; on natural text at such budgets it is not (docs/gpt.md, "GPT
 * against the LSTM at the same budget"). EMBER_QUICK runs 150 steps and checks only that both learn. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static em_text *repeated_lines(int64_t size, uint64_t seed)
{
    static const char *const words[] = {"the", "cat", "dog", "sun", "moon", "red", "blue", "runs", "sees", "big",
                                        "old", "new", "one", "two", "sky", "sea", "tree", "fish", "bird", "stone"};
    char *buf = malloc((size_t)size + 256);
    em_rng rng;
    em_rng_seed(&rng, seed);
    int64_t n = 0;
    while (n < size) {
        char line[128];
        int len = 0, count = 3 + (int)em_rng_below(&rng, 4);
        for (int w = 0; w < count; w++)
            len += sprintf(line + len, "%s%s", w ? " " : "", words[em_rng_below(&rng, 20)]);
        n += sprintf(buf + n, "%s\n%s\n\n", line, line);
    }
    em_text *t = em_text_from_bytes(buf, size, "repeated lines");
    free(buf);
    return t;
}

typedef struct outcome {
    double val_bpb, train_bpb;
    int64_t params;
} outcome;

static outcome train(const char *description, bool gpt, const em_text *train_text, const em_text *val, int64_t steps)
{
    outcome out = {NAN, NAN, 0};
    em_model *m = em_model_parse(description, gpt ? "gpt" : "lstm", 5);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return out;
    em_lm_opts o = em_lm_defaults();
    o.train.batch_size = 16;
    o.seq_len = 64;
    o.steps = steps;
    o.train.seed = 3;
    o.train.progress = EM_PROGRESS_QUIET;
    o.eval_every = steps;
    o.eval_bytes = 16384;
    o.train.optimizer = gpt ? EM_OPTIM_ADAMW : EM_OPTIM_ADAM;
    o.train.optim = em_optim_defaults(o.train.optimizer);
    o.train.optim.lr = 6e-3f;
    if (gpt) {
        o.train.optim.weight_decay = 0.1f;
        o.train.schedule = em_schedule_defaults(EM_SCHEDULE_COSINE);
        o.train.schedule.warmup = 30;
        o.train.clip_grad_norm = 1.0;
    }
    em_lm_result r;
    CHECK_MSG(em_train_lm(m, train_text, val, &o, &r) == EM_OK, "%s", ember_last_error());
    out.val_bpb = r.val.bits_per_byte;
    out.train_bpb = r.train_eval.bits_per_byte;
    out.params = em_model_param_count(m);
    em_model_free(m);
    return out;
}

int main(void)
{
    em_set_num_threads(1);
    const int64_t steps = test_quick() ? 150 : 600;
    em_text *all = repeated_lines(300000, 2), *train_text = NULL, *val = NULL;
    CHECK(em_text_split(all, 0.1, 0, 0, &train_text, &val) == EM_OK);
    const double unigram = em_text_unigram_bits(val);
    outcome g = train("input 64\ngpt vocab=256 context=64 layers=2 heads=4 width=64\n", true, train_text, val, steps);
    outcome l = train("input 64\nembedding 256 64\nlstm 128\nlinear 256\n", false, train_text, val, steps);
    printf("%lld steps of batch 16 x 64 bytes: gpt (%lld parameters) validation %.4f bits/byte (training text %.4f); "
           "lstm (%lld parameters) %.4f (%.4f); unigram entropy %.4f\n",
           (long long)steps, (long long)g.params, g.val_bpb, g.train_bpb, (long long)l.params, l.val_bpb, l.train_bpb,
           unigram);
    CHECK(g.params > 0.8 * l.params && g.params < 1.2 * l.params);
    /* both learn far more than byte frequencies */
    CHECK_MSG(g.val_bpb < 0.6 * unigram && l.val_bpb < 0.6 * unigram, "gpt %.3f, lstm %.3f, unigram %.3f", g.val_bpb,
              l.val_bpb, unigram);
    if (!test_quick())
        CHECK_MSG(g.val_bpb < l.val_bpb, "gpt %.4f bits/byte is not below the lstm's %.4f", g.val_bpb, l.val_bpb);
    em_text_free(all);
    em_text_free(train_text);
    em_text_free(val);
    return test_finish();
}
