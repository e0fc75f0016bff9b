/* Running out of memory is an error, not a crash: the arena allocator is made to fail
 * at its 0th, 1st, 2nd, ... allocation while a small MLP and a small CNN are built and
 * trained (model, optimizer, loader batches, forward, loss, backward, optimizer step,
 * inference, and the whole em_train loop with evaluation), until a run needs fewer
 * allocations than the failure point. Every run that hit the failure must return an error whose message says
 * "out of memory"; every other run must succeed. Under the sanitizers this also shows
 * that every error path frees what it had allocated. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define FEATURES 4
#define CLASSES 3

static const char *mlp = "input 4\nlinear 8\nrelu\nlinear 3\n";
/* Every layer kind with state or saved context: convolution, batch norm, pooling, dropout. */
static const char *cnn = "input 1x2x2\nconv2d 4 2 pad=1\nbatchnorm\nrelu\nmaxpool 2\nflatten\n"
                         "dropout 0.2\nlinear 3\n";
static const char *description;

/* A dataset of 10 seeded examples (allocated before any failure is armed). */
static em_dataset *make_dataset(void)
{
    em_dataset *ds = calloc(1, sizeof *ds);
    float *x = malloc(10 * FEATURES * sizeof(float));
    int32_t *y = malloc(10 * sizeof(int32_t));
    em_rng rng;
    em_rng_seed(&rng, 5);
    for (int i = 0; i < 10 * FEATURES; i++)
        x[i] = em_rng_normal(&rng);
    for (int i = 0; i < 10; i++)
        y[i] = i % CLASSES;
    ds->count = 10;
    ds->item_ndim = 1;
    ds->item_shape[0] = FEATURES;
    ds->item_numel = FEATURES;
    ds->features = x;
    ds->labels = y;
    ds->num_classes = CLASSES;
    snprintf(ds->source, sizeof ds->source, "ten examples");
    return ds;
}

static void free_dataset(em_dataset *ds)
{
    free((void *)ds->features);
    free((void *)ds->labels);
    free(ds);
}

/* Two steps by hand; EM_ERR at the first failure. */
static int manual_steps(const em_dataset *ds, em_optim_kind kind)
{
    int rc = EM_ERR;
    em_optim *opt = NULL;
    em_loader *loader = NULL;
    em_model *m = em_model_parse(description, "tiny", 3);
    if (!m)
        goto done;
    em_optim_opts o = em_optim_defaults(kind);
    o.momentum = kind == EM_OPTIM_SGD ? 0.9f : o.momentum;
    if (!(opt = em_optim_new(m, kind, &o)))
        goto done;
    if (!(loader = em_loader_new(ds, 4, true, 1)))
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
    /* Inference on one example without gradients. */
    bool was = em_set_grad_enabled(false);
    int64_t shape[EM_MAX_DIMS] = {1};
    int ndim = em_model_input_shape(m, shape + 1) + 1;
    em_tensor *x = em_tensor_zeros(NULL, ndim, shape);
    em_tensor *y = x ? em_forward(m, x) : NULL;
    em_set_grad_enabled(was);
    if (!y)
        goto done;
    rc = EM_OK;
done:
    em_step_end();
    em_loader_free(loader);
    em_optim_free(opt);
    em_model_free(m);
    return rc;
}

static int whole_training(const em_dataset *ds, em_optim_kind kind)
{
    em_model *m = em_model_parse(description, "tiny", 3);
    if (!m)
        return EM_ERR;
    em_train_opts o = em_train_defaults();
    o.epochs = test_quick() ? 1 : 2; /* EMBER_QUICK: each point of one epoch still fails in turn */
    o.batch_size = 4;
    o.optimizer = kind;
    o.optim = em_optim_defaults(kind);
    o.progress = EM_PROGRESS_QUIET;
    em_train_result r;
    int rc = em_train(m, ds, ds, &o, &r);
    em_model_free(m);
    return rc;
}

typedef int (*scenario)(const em_dataset *ds, em_optim_kind kind);

/* Fails allocation k = 0, 1, 2, ... until the scenario completes without reaching it.
 * Returns the number of allocations a full run needs. */
static long fail_each_allocation(const char *what, scenario run, const em_dataset *ds, em_optim_kind kind)
{
    int bad_messages = 0;
    for (long k = 0; k < 100000; k++) {
        /* A fresh step arena each time, so that every run allocates the same way. */
        em_release_thread_state();
        em_clear_error();
        em_arena_inject_failure_after(k);
        int rc = run(ds, kind);
        bool fired = em_arena_inject_failure_after(-1) > 0;
        if (!fired) {
            CHECK_MSG(rc == EM_OK, "%s: failed without an injected failure: %s", what, ember_last_error());
            printf("%-30s %ld allocations, each failed in turn: an error every time\n", what, k);
            return k;
        }
        CHECK_MSG(rc == EM_ERR, "%s: allocation %ld failed but the run reported success", what, k);
        if (rc == EM_ERR && !strstr(ember_last_error(), "out of memory") && bad_messages++ < 5)
            CHECK_MSG(0, "%s: allocation %ld failed with an unclear message: %s", what, k, ember_last_error());
    }
    CHECK_MSG(0, "%s: never completed", what);
    return -1;
}

int main(void)
{
    em_dataset *ds = make_dataset();
    description = mlp;
    CHECK(manual_steps(ds, EM_OPTIM_SGD) == EM_OK);
    long n = fail_each_allocation("MLP steps, SGD momentum", manual_steps, ds, EM_OPTIM_SGD);
    CHECK(n >= 4); /* model, optimizer, step arena and more: the test reached them */
    fail_each_allocation("MLP steps, Adam", manual_steps, ds, EM_OPTIM_ADAM);
    fail_each_allocation("MLP em_train with evaluation", whole_training, ds, EM_OPTIM_ADAM);
    /* The runs must still work after all that failing. */
    CHECK(manual_steps(ds, EM_OPTIM_SGD) == EM_OK);
    CHECK(whole_training(ds, EM_OPTIM_SGD) == EM_OK);

    description = cnn;
    CHECK(em_dataset_set_item_shape(ds, 3, (const int64_t[]){1, 2, 2}) == EM_OK);
    CHECK_MSG(manual_steps(ds, EM_OPTIM_ADAM) == EM_OK, "%s", ember_last_error());
    fail_each_allocation("CNN steps, Adam", manual_steps, ds, EM_OPTIM_ADAM);
    fail_each_allocation("CNN em_train with evaluation", whole_training, ds, EM_OPTIM_SGD);
    CHECK(whole_training(ds, EM_OPTIM_SGD) == EM_OK);
    free_dataset(ds);
    em_release_thread_state();
    return test_finish();
}
