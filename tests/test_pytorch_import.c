/* Models trained in PyTorch, saved as bare state_dicts (tests/fixtures/gen_import.py:
 * one case per layer family ember has: linear and activations; conv2d, batch norm,
 * pooling, dropout; embedding, LSTM, GRU, RNN; GPT-2 blocks with layer norm and causal
 * attention), load into the matching ember descriptions by their own names and predict
 * what PyTorch predicted on a test batch. The other way:
 * what ember writes (weights, and full checkpoints with optimizer state) loads back into
 * PyTorch with strict names and gives PyTorch's logits exactly (checked by
 * check_ember_import.py when /usr/bin/python3 has torch; skipped with a note if not). */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static bool have_torch(void)
{
    static int known = -1;
    if (known < 0)
        known = system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
    return known == 1;
}

/* "CASE 'FILE' ..." for one run of check_ember_import.py over every file ember wrote
 * (importing torch once takes seconds). */
static char torch_args[16384];
static int torch_files;

static void check_in_pytorch(const char *name, const char *path)
{
    size_t used = strlen(torch_args);
    snprintf(torch_args + used, sizeof torch_args - used, " %s '%s'", name, path);
    torch_files++;
}

static bool pytorch_agrees(void)
{
    char cmd[sizeof torch_args + 1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s%s", test_path("tests/fixtures/check_ember_import.py"), torch_args);
    fflush(NULL);
    return system(cmd) == 0;
}

static bool same_weights(const em_model *a, const em_model *b)
{
    int na = 0, nb = 0;
    const em_named_tensor *sa = em_model_state(a, &na), *sb = em_model_state(b, &nb);
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (strcmp(sa[i].name, sb[i].name) != 0 || !em_same_shape(sa[i].tensor, sb[i].tensor) ||
            memcmp(sa[i].tensor->data, sb[i].tensor->data, (size_t)sa[i].tensor->numel * sizeof(float)) != 0)
            return false;
    return true;
}

static int argmax_row(const float *row, int64_t n)
{
    int best = 0;
    for (int64_t j = 1; j < n; j++)
        if (row[j] > row[best])
            best = (int)j;
    return best;
}

static void test_case(em_st_file *cases, const char *name)
{
    char key[128], path[1024];
    snprintf(key, sizeof key, "%s.description", name);
    const char *description = em_st_metadata(cases, key);
    CHECK_MSG(description != NULL, "no description for case %s", name);
    if (!description)
        return;
    em_model *m = em_model_parse(description, name, 0);
    CHECK_MSG(m != NULL, "%s: %s", name, ember_last_error());
    if (!m)
        return;
    snprintf(path, sizeof path, "%s", test_path("tests/fixtures/import_"));
    strncat(path, name, sizeof path - strlen(path) - 1);
    strncat(path, ".safetensors", sizeof path - strlen(path) - 1);

    /* Strict: every name of the state_dict is one of the model's, and vice versa. */
    em_load_report report;
    CHECK_MSG(em_load_weights_report(m, path, true, &report) == EM_OK, "%s: %s", name, ember_last_error());
    int count = 0;
    em_model_state(m, &count);
    CHECK_MSG(report.loaded == count && report.missing == 0 && report.unexpected == 0,
              "%s: %d of %d tensors loaded", name, report.loaded, count);

    /* PyTorch's eval-mode predictions on the test batch. */
    snprintf(key, sizeof key, "%s.input", name);
    em_tensor *x = test_fixture_tensor(cases, key);
    snprintf(key, sizeof key, "%s.logits", name);
    em_tensor *want = test_fixture_tensor(cases, key);
    em_model_set_training(m, false);
    bool was = em_set_grad_enabled(false);
    em_tensor *y = em_forward(m, x);
    em_set_grad_enabled(was);
    CHECK_MSG(y && em_same_shape(y, want), "%s: forward: %s", name, y ? "shape" : ember_last_error());
    if (y && em_same_shape(y, want)) {
        char what[64];
        snprintf(what, sizeof what, "%s logits", name);
        CHECK(test_tensor_close(what, y, want->data, 2e-5, 1e-4));
        /* Per example, or per position of a sequence model's [N, T, classes]. */
        int64_t classes = y->shape[y->ndim - 1], rows = y->numel / classes, agree = 0;
        for (int64_t r = 0; r < rows; r++)
            agree += argmax_row(y->data + r * classes, classes) == argmax_row(want->data + r * classes, classes);
        CHECK_MSG(agree == rows, "%s: %lld of %lld predictions agree with PyTorch", name, (long long)agree,
                  (long long)rows);
        printf("%s: %d tensors loaded by their PyTorch names; %lld of %lld predictions identical\n", name,
               report.loaded, (long long)agree, (long long)rows);
    }

    /* Written back by ember: the same tensors, loadable by ember and by PyTorch. */
    char written[1024], full[1024];
    snprintf(written, sizeof written, "%s/%s.safetensors", test_tmpdir(), name);
    snprintf(full, sizeof full, "%s/%s-full.safetensors", test_tmpdir(), name);
    CHECK(em_save_weights(m, written) == EM_OK);
    em_model *again = em_model_from_checkpoint(written);
    CHECK(again && same_weights(m, again));
    em_model_free(again);
    em_optim *opt = em_optim_new(m, EM_OPTIM_ADAM, NULL);
    em_train_position pos;
    memset(&pos, 0, sizeof pos);
    pos.epoch = 1, pos.batch_size = 1, pos.train_count = 1;
    em_rng_seed(&pos.loader.epoch_rng, 3);
    CHECK(opt && em_checkpoint_save(full, m, opt, &pos) == EM_OK);
    check_in_pytorch(name, written);
    check_in_pytorch(name, full);
    em_optim_free(opt);
    em_model_free(m);
    em_step_end();
}

int main(void)
{
    em_st_file *cases = test_fixture("import_cases");
    const char *list = em_st_metadata(cases, "cases");
    CHECK(list != NULL);
    int n = 0;
    char names[1024];
    snprintf(names, sizeof names, "%s", list ? list : "");
    for (char *save = NULL, *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save), n++)
        test_case(cases, name);
    CHECK_MSG(n >= 6, "only %d cases", n);
    if (have_torch()) {
        bool agrees = pytorch_agrees();
        CHECK_MSG(agrees, "PyTorch refused files written by ember (messages above)");
        printf("PyTorch loaded %d files written by ember (weights and full checkpoints): %s\n", torch_files,
               agrees ? "strict names, identical logits" : "FAILED");
    } else
        printf("note: /usr/bin/python3 with torch not found: the PyTorch side of the round trip was skipped\n");
    em_st_close(cases);
    em_release_thread_state();
    return test_finish();
}
