/* Destroying a model, optimizer, loader and dataset gives back everything they took:
 * after warm-up cycles (thread pools, BLAS buffers), twenty cycles of load CSV, parse a
 * model (an MLP or a small CNN with batch norm, pooling and dropout), build an
 * optimizer, train two steps and a short em_train, save and reload a
 * checkpoint, free it all, leave the bytes in use on the heap exactly where they were.
 * (The sanitizer run checks the same with the leak checker; this catches a leak in the
 * normal build.) */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

static const char *mlp = "input 4\nlinear 16\nrelu\nlinear 3\n";
static const char *cnn = "input 1x2x2\nconv2d 4 2 pad=1\nbatchnorm\nrelu\nmaxpool 2\nflatten\n"
                         "dropout 0.2\nlinear 3\n";

static int cycle(const char *csv, const char *weights, em_optim_kind kind, bool convolutional)
{
    int rc = EM_ERR;
    em_dataset *ds = em_dataset_load_csv(csv, -1);
    if (ds && convolutional && em_dataset_set_item_shape(ds, 3, (const int64_t[]){1, 2, 2}) != EM_OK)
        return EM_ERR;
    em_model *m = em_model_parse(convolutional ? cnn : mlp, "lifetime", 1);
    em_optim *opt = m ? em_optim_new(m, kind, NULL) : NULL;
    em_loader *loader = ds ? em_loader_new(ds, 8, true, 2) : NULL;
    em_model *reloaded = NULL;
    if (!ds || !m || !opt || !loader)
        goto done;
    for (int step = 0; step < 2; step++) {
        em_batch b;
        if (!em_loader_next(loader, &b))
            goto done;
        em_tensor *loss = em_cross_entropy(em_forward(m, b.x), b.y, 0.0f);
        if (!loss || em_backward(loss) != EM_OK)
            goto done;
        em_optim_step(opt);
    }
    em_train_opts o = em_train_defaults();
    o.batch_size = 8;
    o.optimizer = kind;
    o.optim = em_optim_defaults(kind);
    o.progress = EM_PROGRESS_QUIET;
    if (em_train(m, ds, ds, &o, NULL) != EM_OK || em_save_weights(m, weights) != EM_OK)
        goto done;
    reloaded = em_model_from_checkpoint(weights);
    if (!reloaded || em_load_weights(reloaded, weights, true, NULL, NULL) != EM_OK)
        goto done;
    rc = EM_OK;
done:
    em_model_free(reloaded);
    em_loader_free(loader);
    em_optim_free(opt);
    em_model_free(m);
    em_dataset_free(ds);
    em_release_thread_state();
    return rc;
}

int main(int argc, char **argv)
{
    /* glibc's per-thread cache keeps freed blocks that mallinfo2 counts as in use; the
     * count is exact only without it, which takes a tunable read at start-up. */
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (argc >= 1 && (!tunables || !strstr(tunables, "tcache_count=0"))) {
        setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
        execv("/proc/self/exe", argv);
        /* no /proc: go on with the cache; the slack below absorbs it */
    }
    bool exact = getenv("GLIBC_TUNABLES") && strstr(getenv("GLIBC_TUNABLES"), "tcache_count=0");
    char csv[1024], weights[1024];
    snprintf(csv, sizeof csv, "%s/data.csv", test_tmpdir());
    snprintf(weights, sizeof weights, "%s/w.safetensors", test_tmpdir());
    FILE *f = fopen(csv, "w");
    CHECK(f != NULL);
    if (!f)
        return test_finish();
    fprintf(f, "a,b,c,d,label\n");
    for (int i = 0; i < 40; i++)
        fprintf(f, "%g,%g,%g,%g,%d\n", i * 0.1, (i % 7) * 0.5, (i % 3) - 1.0, (i % 5) * 0.2, i % 3);
    fclose(f);

    for (int path = 0; path < 4; path++) /* warm-up, each code path once */
        CHECK_MSG(cycle(csv, weights, path % 2 ? EM_OPTIM_SGD : EM_OPTIM_ADAM, path >= 2) == EM_OK, "%s",
                  ember_last_error());
    size_t before = mallinfo2().uordblks;
    int failed = 0;
    for (int i = 0; i < 20; i++)
        failed += cycle(csv, weights, i % 2 ? EM_OPTIM_SGD : EM_OPTIM_ADAM, i % 4 >= 2) != EM_OK;
    size_t after = mallinfo2().uordblks;
    CHECK_MSG(failed == 0, "%d cycles failed: %s", failed, ember_last_error());
    CHECK_MSG(after <= before + (exact ? 0 : 16384), "heap in use grew by %lld bytes over 20 cycles",
              (long long)after - (long long)before);
    printf("heap in use: %zu bytes before, %zu after 20 cycles\n", before, after);
    return test_finish();
}
