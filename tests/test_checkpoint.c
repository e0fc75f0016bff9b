/* Checkpoints: a save/load round trip is bit-identical, the stored description
 * rebuilds the model, and every kind of mismatch is an error naming the tensor. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testlib.h"

/* 4 -> hidden -> relu -> 3, optionally followed by relu -> extra. */
static em_model *small_model(int64_t hidden, int64_t extra, uint64_t seed)
{
    int64_t in = 4;
    em_model *m = em_model_new(1, &in, seed);
    if (!m || em_model_add_linear(m, hidden, true) != EM_OK ||
        em_model_add_activation(m, EM_ACT_RELU, 0.0f) != EM_OK || em_model_add_linear(m, 3, true) != EM_OK) {
        fprintf(stderr, "building a model: %s\n", ember_last_error());
        em_model_free(m);
        return NULL;
    }
    if (extra > 0 && (em_model_add_activation(m, EM_ACT_RELU, 0.0f) != EM_OK ||
                      em_model_add_linear(m, extra, true) != EM_OK)) {
        em_model_free(m);
        return NULL;
    }
    return m;
}

/* Every named tensor of a equals b's bit for bit. */
static bool same_state(const em_model *a, const em_model *b)
{
    int na = 0, nb = 0;
    const em_named_tensor *sa = em_model_state(a, &na);
    const em_named_tensor *sb = em_model_state(b, &nb);
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++) {
        if (strcmp(sa[i].name, sb[i].name) != 0 || !em_same_shape(sa[i].tensor, sb[i].tensor))
            return false;
        if (memcmp(sa[i].tensor->data, sb[i].tensor->data, (size_t)sa[i].tensor->numel * sizeof(float)) != 0)
            return false;
    }
    return true;
}

static const char *path_in(const char *dir, const char *name)
{
    static char buf[4][1024];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%.900s/%s", dir, name);
    return p;
}

static void test_round_trip(const char *dir)
{
    em_model *a = small_model(8, 0, 1);
    em_model *b = small_model(8, 0, 2);
    CHECK(a && b);
    if (!a || !b)
        return;
    CHECK(!same_state(a, b)); /* different seeds: the comparison can fail */
    const char *path = path_in(dir, "round.safetensors");
    CHECK_MSG(em_save_weights(a, path) == EM_OK, "%s", ember_last_error());
    int missing = -1, unexpected = -1;
    CHECK_MSG(em_load_weights(b, path, true, &missing, &unexpected) == EM_OK, "%s", ember_last_error());
    CHECK(missing == 0 && unexpected == 0);
    CHECK(same_state(a, b));

    /* The file holds PyTorch's names and the description. */
    em_st_file *f = em_st_open(path);
    CHECK(f != NULL);
    if (f) {
        CHECK(em_st_count(f) == 4);
        const em_st_entry *w = em_st_find(f, "0.weight");
        CHECK(w && w->ndim == 2 && w->shape[0] == 8 && w->shape[1] == 4 && w->dtype == EM_F32);
        CHECK(em_st_find(f, "2.bias") != NULL);
        const char *desc = em_st_metadata(f, "ember.model");
        CHECK(desc && strcmp(desc, em_model_description(a)) == 0);
        em_st_close(f);
    }

    /* The checkpoint alone rebuilds the model. */
    em_model *c = em_model_from_checkpoint(path);
    CHECK_MSG(c != NULL, "%s", ember_last_error());
    if (c) {
        CHECK(same_state(a, c));
        CHECK(strcmp(em_model_description(a), em_model_description(c)) == 0);
        /* Same outputs for the same input. */
        float xs[8] = {0.5f, -1.0f, 2.0f, 0.25f, -0.5f, 1.5f, 0.0f, 3.0f};
        bool g = em_set_grad_enabled(false);
        em_tensor *x = em_tensor_from(NULL, 2, (int64_t[]){2, 4}, xs);
        em_tensor *ya = em_forward(a, x), *yc = em_forward(c, x);
        CHECK(ya && yc && memcmp(ya->data, yc->data, 6 * sizeof(float)) == 0);
        em_set_grad_enabled(g);
        em_step_end();
        em_model_free(c);
    }

    /* Saving again replaces the file atomically and leaves no temporary behind. */
    CHECK(em_save_weights(b, path) == EM_OK);
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            entries++;
            CHECK_MSG(strcmp(e->d_name, "round.safetensors") == 0, "stray file %s", e->d_name);
        }
    if (d)
        closedir(d);
    CHECK(entries == 1);
    em_model_free(a);
    em_model_free(b);
}

static void test_shape_mismatch(const char *dir)
{
    em_model *a = small_model(8, 0, 1);
    em_model *wide = small_model(9, 0, 3);
    em_model *wide_copy = small_model(9, 0, 3);
    CHECK(a && wide && wide_copy);
    if (!a || !wide || !wide_copy)
        return;
    const char *path = path_in(dir, "shape.safetensors");
    CHECK(em_save_weights(a, path) == EM_OK);
    CHECK(em_load_weights(wide, path, false, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("'0.weight'");
    CHECK_ERROR_CONTAINS("[8, 4]");
    CHECK_ERROR_CONTAINS("[9, 4]");
    CHECK_ERROR_CONTAINS("shape.safetensors");
    /* Nothing was written into the model. */
    CHECK(same_state(wide, wide_copy));
    CHECK(em_load_weights(wide, path, true, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("'0.weight'");
    em_model_free(a);
    em_model_free(wide);
    em_model_free(wide_copy);
}

static void test_missing_and_unexpected(const char *dir)
{
    em_model *small = small_model(8, 0, 1);
    em_model *big = small_model(8, 2, 5);
    em_model *big_copy = small_model(8, 2, 5);
    CHECK(small && big && big_copy);
    if (!small || !big || !big_copy)
        return;
    const char *small_path = path_in(dir, "small.safetensors");
    const char *big_path = path_in(dir, "big.safetensors");
    CHECK(em_save_weights(small, small_path) == EM_OK);
    CHECK(em_save_weights(big, big_path) == EM_OK);

    /* The small file lacks the big model's last layer. */
    CHECK(em_load_weights(big, small_path, true, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("missing tensors (2): '4.weight', '4.bias'");
    CHECK(same_state(big, big_copy));
    int missing = -1, unexpected = -1;
    CHECK(em_load_weights(big, small_path, false, &missing, &unexpected) == EM_OK);
    CHECK(missing == 2 && unexpected == 0);
    /* The layers present were loaded, the rest kept. */
    CHECK(memcmp(em_model_find(big, "0.weight")->data, em_model_find(small, "0.weight")->data,
                 32 * sizeof(float)) == 0);
    CHECK(memcmp(em_model_find(big, "4.weight")->data, em_model_find(big_copy, "4.weight")->data,
                 6 * sizeof(float)) == 0);

    /* The big file has two tensors the small model does not know. */
    CHECK(em_load_weights(small, big_path, true, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("unexpected tensors (2):");
    CHECK_ERROR_CONTAINS("'4.weight'");
    CHECK_ERROR_CONTAINS("'4.bias'");
    CHECK(em_load_weights(small, big_path, false, &missing, &unexpected) == EM_OK);
    CHECK(missing == 0 && unexpected == 2);

    /* Both at once. */
    em_model *other = small_model(8, 0, 1);
    int64_t in = 4;
    em_model *renamed = em_model_new(1, &in, 1);
    CHECK(renamed && em_model_add_activation(renamed, EM_ACT_RELU, 0.0f) == EM_OK &&
          em_model_add_linear(renamed, 8, true) == EM_OK);
    if (renamed) {
        CHECK(em_load_weights(renamed, small_path, true, NULL, NULL) == EM_ERR);
        CHECK_ERROR_CONTAINS("missing tensors (2): '1.weight', '1.bias'");
        CHECK_ERROR_CONTAINS("unexpected tensors (4)");
    }
    em_model_free(renamed);
    em_model_free(other);
    em_model_free(small);
    em_model_free(big);
    em_model_free(big_copy);
}

static void test_bad_files(const char *dir)
{
    em_model *a = small_model(8, 0, 1);
    CHECK(a != NULL);
    if (!a)
        return;
    const char *nowhere = path_in(dir, "no-such.safetensors");
    CHECK(em_load_weights(a, nowhere, true, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("no-such.safetensors");
    CHECK(em_model_from_checkpoint(nowhere) == NULL);
    CHECK_ERROR_CONTAINS("no-such.safetensors");
    CHECK(em_save_weights(a, path_in(dir, "no-dir/x.safetensors")) == EM_ERR);
    CHECK_ERROR_CONTAINS("no-dir");

    /* A safetensors file without the description cannot rebuild a model. */
    const char *bare = path_in(dir, "bare.safetensors");
    em_tensor *t = em_model_find(a, "0.weight");
    const char *name = "0.weight";
    CHECK(em_st_save(bare, 1, &name, (const em_tensor *const *)&t, 0, NULL, NULL) == EM_OK);
    CHECK(em_model_from_checkpoint(bare) == NULL);
    CHECK_ERROR_CONTAINS("ember.model");
    /* A description that does not parse names the file. */
    const char *key = "ember.model", *value = "input 4\nlinear banana\n";
    const char *broken = path_in(dir, "broken.safetensors");
    CHECK(em_st_save(broken, 1, &name, (const em_tensor *const *)&t, 1, &key, &value) == EM_OK);
    CHECK(em_model_from_checkpoint(broken) == NULL);
    CHECK_ERROR_CONTAINS("broken.safetensors");
    /* A description whose model lacks the file's tensors. */
    const char *value2 = "input 4\nlinear 8\nrelu\nlinear 3\n";
    const char *partial = path_in(dir, "partial.safetensors");
    CHECK(em_st_save(partial, 1, &name, (const em_tensor *const *)&t, 1, &key, &value2) == EM_OK);
    CHECK(em_model_from_checkpoint(partial) == NULL);
    CHECK_ERROR_CONTAINS("missing tensors (3)");
    CHECK(em_save_weights(NULL, bare) == EM_ERR);
    CHECK(em_load_weights(NULL, bare, true, NULL, NULL) == EM_ERR);
    em_model_free(a);
}

int main(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/round", test_tmpdir());
    CHECK(mkdir(dir, 0700) == 0);
    test_round_trip(dir);
    test_shape_mismatch(test_tmpdir());
    test_missing_and_unexpected(test_tmpdir());
    test_bad_files(test_tmpdir());
    em_release_thread_state();
    return test_finish();
}
