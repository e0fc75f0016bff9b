/* What `ember predict` avoids at start-up, and that the shortcuts change no result:
 * - a model built from a checkpoint draws no initial values (the strict load overwrites
 *   them all): its tensors equal the saved ones exactly, its predictions equal those of
 *   a model built normally and loaded, and a layer added afterwards is initialised;
 * - em_arena_calloc leaves never-used chunk memory alone (it is zero from calloc) but
 *   still clears memory handed out before a reset, wholly or in part, and so does
 *   em_tensor_zeros. */
#include <stdio.h>
#include <string.h>

#include "ember.h"
#include "testlib.h"

static const char description[] = "input 1x6x6\n"
                                  "conv2d 3 3 pad=1\n"
                                  "relu\n"
                                  "maxpool 2\n"
                                  "flatten\n"
                                  "linear 5\n"
                                  "relu\n"
                                  "linear 4\n";

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void test_arena_calloc_clears_used_memory(void)
{
    em_arena *a = em_arena_create(4096);
    /* fresh memory */
    unsigned char *fresh = em_arena_calloc(a, 1000, 1);
    CHECK(fresh && all_zero(fresh, 1000));
    memset(fresh, 0xab, 1000);
    em_arena_reset(a);
    /* the same bytes again: they must be cleared */
    unsigned char *again = em_arena_calloc(a, 1000, 1);
    CHECK(again == fresh);
    CHECK_MSG(again && all_zero(again, 1000), "calloc over memory used before the reset is not zero");
    memset(again, 0xcd, 1000);
    em_arena_reset(a);
    /* a block reaching past the used part: the used head is cleared, the tail is fresh */
    unsigned char *head = em_arena_alloc(a, 512);
    memset(head, 0xef, 512);
    unsigned char *straddle = em_arena_calloc(a, 2048, 1);
    CHECK(straddle == head + 512);
    CHECK_MSG(straddle && all_zero(straddle, 2048), "calloc straddling used and fresh memory is not zero");
    em_arena_destroy(a);

    /* em_tensor_zeros in a reused step arena */
    em_tensor *t = em_tensor_zeros(NULL, 2, (int64_t[]){16, 16});
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = 1.0f;
    em_step_end();
    em_tensor *u = em_tensor_zeros(NULL, 2, (int64_t[]){16, 16});
    CHECK(u->data == t->data);
    CHECK(all_zero((const unsigned char *)u->data, (size_t)u->numel * sizeof(float)));
    em_step_end();
}

static void test_checkpoint_model_skips_nothing_that_matters(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/cnn.safetensors", test_tmpdir());
    em_model *trained = em_model_parse(description, "test", 7);
    CHECK(trained != NULL);
    if (!trained)
        return;
    CHECK(em_save_weights(trained, path) == EM_OK);

    em_model *loaded = em_model_from_checkpoint(path);
    em_model *reference = em_model_parse(description, "test", 123); /* other initial values */
    CHECK(loaded && reference);
    if (!loaded || !reference) {
        em_model_free(trained);
        em_model_free(loaded);
        em_model_free(reference);
        return;
    }
    CHECK(em_load_weights(reference, path, true, NULL, NULL) == EM_OK);

    int n_trained, n_loaded;
    const em_named_tensor *a = em_model_state(trained, &n_trained);
    const em_named_tensor *b = em_model_state(loaded, &n_loaded);
    CHECK(n_trained == n_loaded && n_loaded == 6);
    for (int i = 0; i < n_loaded && i < n_trained; i++) {
        CHECK(strcmp(a[i].name, b[i].name) == 0);
        CHECK_MSG(a[i].tensor->numel == b[i].tensor->numel &&
                      memcmp(a[i].tensor->data, b[i].tensor->data, (size_t)a[i].tensor->numel * sizeof(float)) == 0,
                  "%s differs from the saved values", a[i].name);
    }

    em_rng rng;
    em_rng_seed(&rng, 5);
    em_tensor *x = test_randn(&rng, 4, (int64_t[]){3, 1, 6, 6}, 1.0f);
    bool grad_was = em_set_grad_enabled(false);
    em_model_set_training(loaded, false);
    em_model_set_training(reference, false);
    em_tensor *y_loaded = em_contiguous(em_forward(loaded, x));
    em_tensor *y_reference = em_contiguous(em_forward(reference, x));
    CHECK(y_loaded && y_reference);
    if (y_loaded && y_reference)
        CHECK(test_tensor_close("logits from the checkpoint", y_loaded, y_reference->data, 0.0, 0.0));
    em_set_grad_enabled(grad_was);
    em_step_end();

    /* A head added after loading is drawn as usual (not left at zero). */
    CHECK(em_model_add_linear(loaded, 3, true) == EM_OK);
    em_tensor *head = em_model_find(loaded, "7.weight");
    CHECK(head != NULL);
    if (head) {
        float biggest = 0.0f;
        for (int64_t i = 0; i < head->numel; i++)
            biggest = head->data[i] > biggest ? head->data[i] : (-head->data[i] > biggest ? -head->data[i] : biggest);
        CHECK_MSG(biggest > 0.01f, "the layer added after loading was not initialised (largest |w| %g)",
                  (double)biggest);
    }
    em_model_free(trained);
    em_model_free(loaded);
    em_model_free(reference);
}

int main(void)
{
    test_arena_calloc_clears_used_memory();
    test_checkpoint_model_skips_nothing_that_matters();
    em_release_thread_state();
    return test_finish();
}
