/* Loading GPT-2-format checkpoints (em_gpt_load): the Hugging Face-style file of
 * tests/fixtures/gpt2_tiny ("transformer." names, causal-mask buffers, tied head, heads
 * from config.json) gives the logits of the plain-torch GPT-2 of gen_gpt.py; ember's own
 * saved gpt files load back (by em_gpt_load and em_model_from_checkpoint) with the same
 * logits, as F16 too; files with missing or extra tensors, wrong shapes, no head count
 * or a bad config.json are refused with messages naming what is wrong. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static const char *tmp_path(const char *name)
{
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", test_tmpdir(), name);
    return p;
}

/* Logits of the fixture's ids, compared with the fixture's (named `expected`). */
static void check_logits_of(em_model *m, const char *what, const char *expected, double atol)
{
    em_st_file *f = test_fixture("gpt2_tiny");
    em_tensor *ids_f = test_fixture_tensor(f, "ids");
    int32_t ids[64];
    for (int64_t i = 0; i < ids_f->numel; i++)
        ids[i] = (int32_t)ids_f->data[i];
    bool grad = em_set_grad_enabled(false);
    em_tensor *y = em_forward_tokens(m, ids, 1, ids_f->numel);
    CHECK_MSG(y != NULL, "%s: %s", what, ember_last_error());
    if (y)
        CHECK_MSG(test_tensor_close(what, y, test_fixture_tensor(f, expected)->data, atol, 1e-4), "%s", what);
    em_set_grad_enabled(grad);
    em_step_end();
    em_st_close(f);
}

static void check_logits(em_model *m, const char *what, double atol) { check_logits_of(m, what, "logits", atol); }

static void test_hugging_face_file(void)
{
    char path[1024]; /* test_path's buffer is reused */
    snprintf(path, sizeof path, "%s", test_path("tests/fixtures/gpt2_tiny/model.safetensors"));
    em_model *m = em_gpt_load(path, 0, 1);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    if (!m)
        return;
    em_gpt_config c;
    CHECK(em_model_gpt_config(m, &c) == EM_OK && c.vocab == 297 && c.context == 16 && c.layers == 2 &&
          c.heads == 2 && c.width == 16 && c.tied);
    check_logits(m, "Hugging Face file", 1e-5);

    /* GPT2Model's names (no prefix, no mask buffers) in float16 */
    em_model *half = em_gpt_load(test_path("tests/fixtures/gpt2_tiny/model_f16.safetensors"), 0, 1);
    CHECK_MSG(half != NULL, "%s", ember_last_error());
    if (half)
        check_logits_of(half, "float16 file", "logits_f16", 1e-5);
    em_model_free(half);

    /* ember's own file of it: same names, loads back both ways, also as F16 weights */
    const char *saved = tmp_path("gpt2_tiny_ember.safetensors");
    CHECK_MSG(em_save_weights(m, saved) == EM_OK, "%s", ember_last_error());
    em_model *again = em_gpt_load(saved, 0, 2);
    CHECK_MSG(again != NULL, "%s", ember_last_error());
    if (again)
        check_logits(again, "ember's file via em_gpt_load", 1e-5);
    em_model_free(again);
    again = em_model_from_checkpoint(saved);
    CHECK_MSG(again != NULL, "%s", ember_last_error());
    if (again)
        check_logits(again, "ember's file via em_model_from_checkpoint", 1e-5);
    em_model_free(again);

    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    const char *names[64];
    const em_tensor *tensors[64];
    for (int i = 0; i < count; i++) {
        names[i] = state[i].name;
        tensors[i] = state[i].tensor;
    }
    /* heads given explicitly override config.json */
    em_model *four = em_gpt_load(path, 4, 1);
    CHECK_MSG(four && em_model_gpt_config(four, &c) == EM_OK && c.heads == 4, "%s", ember_last_error());
    em_model_free(four);

    /* a file whose directory has no config.json needs the head count */
    const char *lone = tmp_path("lone.safetensors");
    CHECK(em_st_save(lone, count, names, tensors, 0, NULL, NULL) == EM_OK);
    CHECK(em_gpt_load(lone, 0, 1) == NULL);
    CHECK_ERROR_CONTAINS("the number of attention heads is not in the weights");
    em_model *two = em_gpt_load(lone, 2, 1);
    CHECK_MSG(two != NULL, "%s", ember_last_error());
    if (two)
        check_logits(two, "file without config.json, heads given", 1e-5);
    em_model_free(two);

    /* a malformed config.json is named */
    FILE *cfg = fopen(tmp_path("config.json"), "w");
    fputs("{\n  \"n_layer\": 2,\n  \"n_head\": ,\n}\n", cfg);
    fclose(cfg);
    CHECK(em_gpt_load(lone, 0, 1) == NULL);
    CHECK_ERROR_CONTAINS("config.json:3: not valid JSON");
    cfg = fopen(tmp_path("config.json"), "w");
    fputs("{\"n_head\": 2.5}", cfg);
    fclose(cfg);
    CHECK(em_gpt_load(lone, 0, 1) == NULL);
    CHECK_ERROR_CONTAINS("\"n_head\" must be a positive integer");
    cfg = fopen(tmp_path("config.json"), "w");
    fputs("{\"n_head\": 3}", cfg);
    fclose(cfg);
    CHECK(em_gpt_load(lone, 0, 1) == NULL);
    CHECK_ERROR_CONTAINS("width 16 is not a multiple of heads 3");
    remove(tmp_path("config.json"));

    /* missing and extra tensors are named */
    const char *names2[64];
    const em_tensor *tensors2[64];
    int n2 = 0;
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], "h.1.ln_2.bias") != 0 && strcmp(names[i], "ln_f.weight") != 0) {
            names2[n2] = names[i];
            tensors2[n2++] = tensors[i];
        }
    names2[n2] = "h.0.attn.c_attn.extra";
    tensors2[n2++] = tensors[0];
    names2[n2] = "lm_head.bias";
    tensors2[n2++] = tensors[0];
    const char *broken = tmp_path("broken.safetensors");
    CHECK(em_st_save(broken, n2, names2, tensors2, 0, NULL, NULL) == EM_OK);
    CHECK(em_gpt_load(broken, 2, 1) == NULL);
    CHECK_ERROR_CONTAINS("2 missing tensors ('h.1.ln_2.bias', 'ln_f.weight')");
    CHECK_ERROR_CONTAINS("2 unexpected tensors ('h.0.attn.c_attn.extra', 'lm_head.bias')");
    CHECK_ERROR_CONTAINS(broken);

    /* a block missing entirely shows as its tensors missing */
    n2 = 0;
    for (int i = 0; i < count; i++)
        if (strncmp(names[i], "h.0.", 4) != 0) {
            names2[n2] = names[i];
            tensors2[n2++] = tensors[i];
        }
    CHECK(em_st_save(broken, n2, names2, tensors2, 0, NULL, NULL) == EM_OK);
    CHECK(em_gpt_load(broken, 2, 1) == NULL);
    CHECK_ERROR_CONTAINS("12 missing tensors ('h.0.ln_1.weight'");

    /* a wrong shape names the tensor and both shapes */
    n2 = 0;
    for (int i = 0; i < count; i++) {
        names2[n2] = names[i];
        tensors2[n2++] = strcmp(names[i], "h.1.mlp.c_fc.weight") == 0 ? em_model_find(m, "h.1.mlp.c_proj.weight")
                                                                       : tensors[i];
    }
    CHECK(em_st_save(broken, n2, names2, tensors2, 0, NULL, NULL) == EM_OK);
    CHECK(em_gpt_load(broken, 2, 1) == NULL);
    CHECK_ERROR_CONTAINS("h.1.mlp.c_fc.weight");
    CHECK_ERROR_CONTAINS("[64, 16]");
    {
        /* the whole message: the file once, the tensor, the file's shape and the model's */
        em_gpt_config read_as;
        CHECK(em_model_gpt_config(m, &read_as) == EM_OK);
        char line[256] = "", expected[1536]; /* em_gpt_describe appends */
        em_gpt_describe(&read_as, line, sizeof line);
        snprintf(expected, sizeof expected,
                 "%s: tensor 'h.1.mlp.c_fc.weight' has shape [64, 16] in the file but [16, 64] in the model (%s)",
                 broken, line);
        CHECK_MSG(strcmp(ember_last_error(), expected) == 0, "got \"%s\"\n  expected \"%s\"", ember_last_error(),
                  expected);
    }

    /* not GPT-2 at all */
    em_model *mlp = em_model_parse("input 4\nlinear 3\n", "mlp", 1);
    const char *mlp_path = tmp_path("mlp.safetensors");
    CHECK(em_save_weights(mlp, mlp_path) == EM_OK);
    CHECK(em_gpt_load(mlp_path, 0, 1) == NULL);
    CHECK_ERROR_CONTAINS("not a gpt");
    CHECK(em_gpt_load(mlp_path, 2, 1) == NULL);
    CHECK_ERROR_CONTAINS("is not a GPT-2-format file: it has no token embedding");
    em_model_free(mlp);
    CHECK(em_gpt_load("/nonexistent/model.safetensors", 2, 1) == NULL);
    CHECK_ERROR_CONTAINS("/nonexistent/model.safetensors");
    em_model_free(m);
}

typedef struct collected {
    int32_t ids[16];
    int n;
} collected;

static int collect(void *user, int32_t token)
{
    collected *c = user;
    c->ids[c->n++] = token;
    return c->n == 16;
}

/* Temperature 0 through the key/value cache: the reference's greedy continuation. */
static void test_greedy_generation(void)
{
    em_model *m = em_gpt_load(test_path("tests/fixtures/gpt2_tiny/model.safetensors"), 0, 1);
    CHECK_MSG(m != NULL, "%s", ember_last_error());
    em_st_file *f = test_fixture("gpt2_tiny");
    em_tensor *prompt_f = test_fixture_tensor(f, "greedy.prompt"), *want = test_fixture_tensor(f, "greedy.ids");
    int32_t prompt[16], expected[16];
    const int64_t n_prompt = prompt_f->numel, n_want = want->numel;
    for (int64_t i = 0; i < n_prompt; i++)
        prompt[i] = (int32_t)prompt_f->data[i];
    for (int64_t i = 0; i < n_want; i++) /* the step arena is reset by generation */
        expected[i] = (int32_t)want->data[i];
    em_sample_opts o = em_sample_defaults();
    o.temperature = 0.0f;
    collected got = {{0}, 0};
    CHECK_MSG(m && em_generate(m, prompt, n_prompt, n_want, &o, collect, &got) == EM_OK, "%s",
              ember_last_error());
    bool same = got.n == n_want;
    for (int i = 0; same && i < got.n; i++)
        same = got.ids[i] == expected[i];
    CHECK_MSG(same, "greedy continuation differs (%d tokens)", got.n);
    for (int i = 0; !same && i < got.n; i++)
        fprintf(stderr, " %d", (int)got.ids[i]);
    em_st_close(f);
    em_model_free(m);
}

int main(void)
{
    test_hugging_face_file();
    test_greedy_generation();
    return test_finish();
}
