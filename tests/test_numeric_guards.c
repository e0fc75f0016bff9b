/* The training loop's numeric guards: a non-finite gradient stops the step before the
 * update (weights unchanged) naming the tensor and element; a NaN loss names the step and
 * where the non-finite values came from; with anomaly detection on, the message names the
 * first op that produced one; the checkpoint left on disk is the last good step's. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define FEATURES 4
#define COUNT 24

static const char *description = "input 4\nlinear 8\nrelu\nlinear 3\n";

/* COUNT examples; `scale` multiplies the features (3e38 overflows the first forward
 * after one update). */
typedef struct data {
    em_dataset ds;
    float x[COUNT * FEATURES];
    int32_t y[COUNT];
} data;

static void make_data(data *d, float scale)
{
    memset(d, 0, sizeof *d);
    em_rng rng;
    em_rng_seed(&rng, 11);
    for (int i = 0; i < COUNT; i++) {
        d->y[i] = i % 3;
        for (int j = 0; j < FEATURES; j++)
            d->x[i * FEATURES + j] = scale * (0.5f + em_rng_uniform(&rng)) * (j == d->y[i] ? 2.0f : 1.0f);
    }
    d->ds.count = COUNT;
    d->ds.item_ndim = 1;
    d->ds.item_shape[0] = FEATURES;
    d->ds.item_numel = FEATURES;
    d->ds.features = d->x;
    d->ds.labels = d->y;
    d->ds.num_classes = 3;
    snprintf(d->ds.source, sizeof d->ds.source, "guard data");
}

static em_train_opts options(void)
{
    em_train_opts o = em_train_defaults();
    o.epochs = 3;
    o.batch_size = 8;
    o.shuffle = false;
    o.progress = EM_PROGRESS_QUIET;
    return o;
}

static bool all_finite(const em_model *m)
{
    int n = 0;
    const em_named_tensor *st = em_model_state(m, &n);
    for (int i = 0; i < n; i++)
        for (int64_t e = 0; e < st[i].tensor->numel; e++)
            if (!isfinite(st[i].tensor->data[e]))
                return false;
    return true;
}

/* A gradient that is infinite while the loss is finite (here planted before the run:
 * backward adds to it) stops step 1 before the update. */
static void test_gradient_guard(void)
{
    data d;
    make_data(&d, 1.0f);
    em_model *m = em_model_parse(description, "guard", 5);
    em_tensor *w = em_model_find(m, "2.weight");
    float before[24];
    em_copy_to(w, before);
    w->grad[7] = INFINITY;
    em_train_opts o = options();
    em_train_result r;
    CHECK(em_train(m, &d.ds, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("training diverged at epoch 1, step 1 (batch 1 of 3 in the epoch)");
    CHECK_ERROR_CONTAINS("but the gradient norm is infinite");
    CHECK_ERROR_CONTAINS("the gradient of '2.weight' [3, 8] has inf at element 7");
    float after[24];
    em_copy_to(w, after);
    CHECK(memcmp(before, after, sizeof before) == 0); /* no update happened */
    CHECK(all_finite(m));
    em_model_free(m);

    /* A NaN gradient the same way, with Adam. */
    m = em_model_parse(description, "guard", 5);
    em_model_find(m, "0.bias")->grad[2] = NAN;
    o.optimizer = EM_OPTIM_ADAM;
    o.optim = em_optim_defaults(EM_OPTIM_ADAM);
    CHECK(em_train(m, &d.ds, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("the gradient norm is NaN; the gradient of '0.bias' [8] has NaN at element 2");
    CHECK(all_finite(m));
    em_model_free(m);
}

/* Features near the float limit: the first update is finite, the second forward
 * overflows. The message names the step and says the parameters are finite. */
static void test_loss_guard(void)
{
    data d;
    make_data(&d, 1e38f);
    em_model *m = em_model_parse(description, "guard", 5);
    em_train_opts o = options();
    em_train_result r;
    CHECK(em_train(m, &d.ds, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("training diverged at epoch 1, step 2 (batch 2 of 3 in the epoch): the loss is NaN");
    CHECK_ERROR_CONTAINS("every parameter is finite, so the forward pass itself overflowed");
    CHECK_ERROR_CONTAINS("or anomaly detection to find the first op");
    CHECK(all_finite(m));
    em_model_free(m);

    /* The same run with anomaly detection names the op where it started. */
    em_set_detect_anomaly(true);
    m = em_model_parse(description, "guard", 5);
    CHECK(em_train(m, &d.ds, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("training diverged at epoch 1, step 2");
    CHECK_ERROR_CONTAINS("anomaly detection: op 'linear' produced");
    CHECK_ERROR_CONTAINS("from finite inputs");
    em_set_detect_anomaly(false);
    em_model_free(m);
}

/* With a checkpoint every step, the one on disk after a divergence is the last good
 * step's, and its weights are finite. */
static void test_last_good_checkpoint(void)
{
    data d;
    make_data(&d, 1e38f);
    char path[1024];
    snprintf(path, sizeof path, "%s/guard.safetensors", test_tmpdir());
    em_model *m = em_model_parse(description, "guard", 5);
    em_train_opts o = options();
    o.checkpoint_path = path;
    o.checkpoint_every = 1;
    em_train_result r;
    CHECK(em_train(m, &d.ds, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("training diverged at epoch 1, step 2");
    em_train_position pos;
    CHECK_MSG(em_checkpoint_read_position(path, &pos) == EM_OK, "%s", ember_last_error());
    CHECK(pos.step == 1);
    em_model *back = em_model_parse(description, "guard", 6);
    CHECK_MSG(em_load_weights(back, path, false, NULL, NULL) == EM_OK, "%s", ember_last_error());
    CHECK(all_finite(back));
    em_model_free(back);
    em_model_free(m);
}

/* A parameter holding infinity (from a bad checkpoint, say) is named when the loss
 * goes NaN. */
static void test_bad_parameter(void)
{
    data d;
    make_data(&d, 1.0f);
    em_model *m = em_model_parse(description, "guard", 5);
    em_model_find(m, "0.weight")->data[5] = -INFINITY;
    em_train_opts o = options();
    em_train_result r;
    CHECK(em_train(m, &d.ds, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("training diverged at epoch 1");
    CHECK_ERROR_CONTAINS("the loss is NaN; the parameter '0.weight' [8, 4] holds");
    CHECK_ERROR_CONTAINS("at element 5");
    em_model_free(m);
}

/* Finite training is untouched by the guards: it runs to the end. */
static void test_finite_run(void)
{
    data d;
    make_data(&d, 1.0f);
    em_model *m = em_model_parse(description, "guard", 5);
    em_train_opts o = options();
    em_train_result r;
    CHECK_MSG(em_train(m, &d.ds, NULL, &o, &r) == EM_OK, "%s", ember_last_error());
    CHECK(r.steps == 9);
    em_model_free(m);
}

int main(void)
{
    test_gradient_guard();
    test_loss_guard();
    test_last_good_checkpoint();
    test_bad_parameter();
    test_finite_run();
    em_release_thread_state();
    return test_finish();
}
