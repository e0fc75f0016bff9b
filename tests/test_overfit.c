/* Overfitting and early stopping: an over-parameterised MLP (8 -> 256 -> 256 -> 4, 68k
 * parameters) on 240 noisy examples learns its training set by heart. The history of
 * the run shows the validation loss rising while the training loss falls, the
 * diagnosis and the comparison report say so, and early stopping ends the run and
 * leaves the model with exactly the weights of the best validation epoch. Also: the
 * metrics file has validation columns, the training plot and the report's plot are
 * written, and a schedule and gradient clipping act inside em_train. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

#define FEATURES 8
#define CLASSES 4
#define COUNT 400

typedef struct noisy {
    em_dataset ds;
    float features[COUNT * FEATURES];
    int32_t labels[COUNT];
} noisy;

/* Four overlapping blobs with a quarter of the labels replaced at random: nothing can be
 * learnt about those, so fitting them is memorising. */
static void make_noisy(noisy *b)
{
    memset(b, 0, sizeof *b);
    em_rng rng;
    em_rng_seed(&rng, 77);
    for (int i = 0; i < COUNT; i++) {
        int32_t c = (int32_t)em_rng_below(&rng, CLASSES);
        for (int j = 0; j < FEATURES; j++) {
            float centre = ((c >> (j % 2)) & 1) ? 1.2f : -1.2f;
            b->features[i * FEATURES + j] = centre * (j < 2 ? 1.0f : 0.3f) + 0.8f * em_rng_normal(&rng);
        }
        b->labels[i] = em_rng_below(&rng, 4) == 0 ? (int32_t)em_rng_below(&rng, CLASSES) : c;
    }
    b->ds.count = COUNT;
    b->ds.item_ndim = 1;
    b->ds.item_shape[0] = FEATURES;
    b->ds.item_numel = FEATURES;
    b->ds.features = b->features;
    b->ds.labels = b->labels;
    b->ds.num_classes = CLASSES;
    snprintf(b->ds.source, sizeof b->ds.source, "noisy blobs");
}

static em_model *big_mlp(void)
{
    int64_t in = FEATURES;
    em_model *m = em_model_new(1, &in, 11);
    if (!m || em_model_add_linear(m, 256, true) != EM_OK || em_model_add_activation(m, EM_ACT_RELU, 0) != EM_OK ||
        em_model_add_linear(m, 256, true) != EM_OK || em_model_add_activation(m, EM_ACT_RELU, 0) != EM_OK ||
        em_model_add_linear(m, CLASSES, true) != EM_OK) {
        em_model_free(m);
        return NULL;
    }
    return m;
}

static em_train_opts overfit_opts(int epochs)
{
    em_train_opts o = em_train_defaults();
    o.epochs = epochs;
    o.batch_size = 16;
    o.optimizer = EM_OPTIM_ADAM;
    o.optim = em_optim_defaults(EM_OPTIM_ADAM);
    o.optim.lr = 5e-4f;
    o.val_split = 0.4;
    o.seed = 5;
    o.progress = EM_PROGRESS_QUIET;
    return o;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_overfitting_seen_and_stopped(const noisy *data)
{
    int epochs = test_quick() ? 25 : 40;
    /* 1. Run to the end: the history shows overfitting. */
    em_model *m = big_mlp();
    CHECK(m != NULL);
    if (!m)
        return;
    em_train_history h;
    em_history_init(&h);
    em_train_opts o = overfit_opts(epochs);
    o.history = &h;
    char metrics[1024], plot[1024];
    snprintf(metrics, sizeof metrics, "%s/overfit.csv", test_tmpdir());
    snprintf(plot, sizeof plot, "%s/overfit.png", test_tmpdir());
    o.metrics_path = metrics;
    o.plot_path = plot;
    em_train_result r;
    CHECK_MSG(em_train(m, &data->ds, NULL, &o, &r) == EM_OK, "%s", ember_last_error());
    CHECK(h.n_epochs == epochs && h.n_steps == r.steps && r.steps == (int64_t)epochs * 15);
    CHECK(!r.early_stopped && r.restored_epoch == 0 && !r.diverged);
    em_diagnosis d;
    em_history_diagnose(&h, 5, 0.0, 0.9, 15, &d);
    const em_epoch_record *last = &h.epochs[h.n_epochs - 1], *best = &h.epochs[d.best_epoch - 1];
    printf("best epoch %d: val loss %.4f, train loss %.4f; last: val loss %.4f, train loss %.4f, train acc %.3f, "
           "val acc %.3f\n%s\n",
           d.best_epoch, best->val_loss, best->train_loss, last->val_loss, last->train_loss, last->train_accuracy,
           last->val_accuracy, d.verdict);
    CHECK(d.has_validation && d.overfitting);
    CHECK(d.best_epoch >= 2 && d.best_epoch < epochs - 5);
    CHECK(last->val_loss > 1.2 * best->val_loss && last->train_loss < 0.8 * best->train_loss);
    CHECK(last->train_accuracy > last->val_accuracy + 0.1);
    CHECK(d.stop_epoch == d.best_epoch + 5 && d.stop_keep_epoch == d.best_epoch);
    CHECK(strstr(d.verdict, "overfitting: validation loss rose from") != NULL);
    CHECK(d.steps_to_target > 0);
    /* The validation set is 40% of the 400 examples; the rest trained. */
    CHECK(r.best_epoch == d.best_epoch);

    /* The metrics file: validation columns filled on epoch rows. */
    char *csv = read_all(metrics);
    CHECK(csv != NULL);
    if (csv) {
        char *row = strstr(csv, "\n15,1,epoch,");
        double tl = 0, ta = 0, vl = 0, va = 0;
        CHECK(row && sscanf(row + 1, "15,1,epoch,%lf,%lf,%lf,%lf,,,", &tl, &ta, &vl, &va) == 4);
        CHECK_NEAR(vl, h.epochs[0].val_loss, 1e-6 * vl);
        CHECK_NEAR(va, h.epochs[0].val_accuracy, 1e-9);
        free(csv);
    }
    char *png = read_all(plot);
    CHECK(png && memcmp(png, "\x89PNG", 4) == 0);
    free(png);

    /* 2. The comparison report of that run says so. */
    em_compare_run run;
    memset(&run, 0, sizeof run);
    snprintf(run.name, sizeof run.name, "big mlp");
    snprintf(run.settings, sizeof run.settings, "adam lr 0.003");
    run.history = h;
    run.test_accuracy = NAN;
    run.seconds = r.total_seconds;
    em_comparison c = {.axis = EM_COMPARE_MODELS, .title = "Overfitting", .runs = &run, .n_runs = 1,
                       .patience = 5, .min_delta = 0.0, .target_loss = 0.9, .window = 15};
    char report[1024], report_png[1024];
    snprintf(report, sizeof report, "%s/overfit.md", test_tmpdir());
    snprintf(report_png, sizeof report_png, "%s/overfit-compare.png", test_tmpdir());
    CHECK(em_compare_write_report(&c, report, "overfit-compare.png") == EM_OK);
    CHECK(em_compare_plot(&c, report_png) == EM_OK);
    char *md = read_all(report);
    CHECK(md && strstr(md, "**big mlp**: overfitting: validation loss rose from") != NULL);
    CHECK(md && strstr(md, "early stopping (patience 5) would stop after epoch") != NULL);
    CHECK(md && strstr(md, "overfitting after epoch") != NULL);
    CHECK(md && strstr(md, "![Overfitting](overfit-compare.png)") != NULL);
    free(md);

    /* 3. With a patience of 5 the same run stops at the same place and keeps the best
     * epoch's weights: their validation loss is that epoch's, bit for bit. */
    em_model *m2 = big_mlp();
    em_train_history h2;
    em_history_init(&h2);
    o = overfit_opts(epochs);
    o.history = &h2;
    o.patience = 5;
    em_train_result r2;
    CHECK_MSG(em_train(m2, &data->ds, NULL, &o, &r2) == EM_OK, "%s", ember_last_error());
    CHECK(r2.early_stopped && h2.early_stopped);
    CHECK(r2.epochs_run == d.best_epoch + 5 && h2.stopped_epoch == d.best_epoch + 5);
    CHECK(r2.best_epoch == d.best_epoch && r2.restored_epoch == d.best_epoch && h2.restored_epoch == d.best_epoch);
    em_dataset *train_part = NULL, *val_part = NULL;
    CHECK(em_dataset_split(&data->ds, 0.4, 5, &train_part, &val_part) == EM_OK);
    double vl = 0, va = 0;
    CHECK(em_evaluate(m2, val_part, 0, &vl, &va) == EM_OK);
    CHECK(vl == h.epochs[d.best_epoch - 1].val_loss);
    CHECK(va == h.epochs[d.best_epoch - 1].val_accuracy);
    /* ... and not those of the last epoch. */
    CHECK(vl < h2.epochs[h2.n_epochs - 1].val_loss);
    /* With keep_last_weights the last epoch's stay. */
    em_model *m3 = big_mlp();
    o.history = NULL;
    o.keep_last_weights = true;
    CHECK(em_train(m3, &data->ds, NULL, &o, &r2) == EM_OK);
    CHECK(r2.early_stopped && r2.restored_epoch == 0);
    CHECK(em_evaluate(m3, val_part, 0, &vl, &va) == EM_OK);
    CHECK(vl == h2.epochs[h2.n_epochs - 1].val_loss);

    em_dataset_free(train_part);
    em_dataset_free(val_part);
    em_history_free(&h);
    em_history_free(&h2);
    em_model_free(m);
    em_model_free(m2);
    em_model_free(m3);
}

/* Options em_train checks, and a schedule and clipping that act on the run. */
static void test_options(const noisy *data)
{
    em_model *m = big_mlp();
    em_train_opts o = overfit_opts(3);
    o.val_split = 0.0;
    o.patience = 2;
    CHECK(em_train(m, &data->ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("early stopping (patience 2) needs a validation set");
    o = overfit_opts(3);
    o.val_split = 1.5;
    CHECK(em_train(m, &data->ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("validation split must be between 0 and 1");

    /* A step schedule ticking per epoch: epoch e trains at 0.01 * 0.5^(e-1); clipping
     * by norm keeps every recorded norm finite and the run learns. */
    em_train_history h;
    em_history_init(&h);
    o = overfit_opts(3);
    o.optimizer = EM_OPTIM_SGD;
    o.optim = em_optim_defaults(EM_OPTIM_SGD);
    o.optim.lr = 0.01f;
    o.schedule = em_schedule_defaults(EM_SCHEDULE_STEP);
    o.schedule.gamma = 0.5;
    o.clip_grad_norm = 0.5;
    o.history = &h;
    em_param_group no_decay = {.max_ndim = 1, .set_lr = true, .lr = 0.02f};
    o.param_groups = &no_decay;
    o.n_param_groups = 1;
    CHECK_MSG(em_train(m, &data->ds, NULL, &o, NULL) == EM_OK, "%s", ember_last_error());
    CHECK(h.n_epochs == 3 && h.n_steps == 45);
    CHECK(h.steps[0].lr == 0.01f && h.steps[15].lr == 0.005f && h.steps[44].lr == 0.0025f);
    CHECK(h.epochs[2].lr == 0.0025f); /* the rate the epoch trained with */
    bool finite = true;
    for (int64_t i = 0; i < h.n_steps; i++)
        finite &= isfinite(h.steps[i].grad_norm) && h.steps[i].grad_norm > 0.0f;
    CHECK(finite);
    em_history_free(&h);
    em_model_free(m);
}

/* The diagnosis on hand-made histories: each verdict and the early-stopping rule. */
static void add_epoch(em_train_history *h, double train_loss, double val_loss)
{
    em_epoch_record e = {.epoch = h->n_epochs + 1, .steps = (h->n_epochs + 1) * 10, .train_loss = train_loss,
                         .train_accuracy = 0.9, .val_loss = val_loss, .val_accuracy = 0.8,
                         .test_loss = NAN, .test_accuracy = NAN};
    em_history_add_epoch(h, &e);
}

static void test_diagnosis_cases(void)
{
    em_train_history h;
    em_diagnosis d;
    /* Still improving. */
    em_history_init(&h);
    add_epoch(&h, 1.0, 1.1);
    add_epoch(&h, 0.8, 0.9);
    add_epoch(&h, 0.6, 0.7);
    em_history_diagnose(&h, 2, 0.0, 0.5, 5, &d);
    CHECK(!d.overfitting && d.best_epoch == 3 && d.stop_epoch == 0);
    CHECK(strstr(d.verdict, "no overfitting yet") != NULL);
    CHECK(d.steps_to_target == -1); /* no step records */
    /* One epoch of a small rise: too early to call. */
    add_epoch(&h, 0.5, 0.73);
    em_history_diagnose(&h, 2, 0.0, 0.5, 5, &d);
    CHECK(!d.overfitting && strstr(d.verdict, "possibly the start of overfitting") != NULL);
    CHECK(strstr(d.verdict, "would not have stopped yet (1 epoch without improvement)") != NULL);
    /* A second epoch above the best: overfitting, and patience 2 stops after epoch 5. */
    add_epoch(&h, 0.4, 0.76);
    em_history_diagnose(&h, 2, 0.0, 0.5, 5, &d);
    CHECK(d.overfitting && d.best_epoch == 3 && d.stop_epoch == 5 && d.stop_keep_epoch == 3);
    CHECK(strstr(d.verdict, "would stop after epoch 5 and keep epoch 3") != NULL);
    CHECK_NEAR(d.loss_gap, 0.36, 1e-12);
    /* min_delta: a decrease smaller than it is no improvement. */
    em_history_diagnose(&h, 2, 0.45, 0.5, 5, &d);
    CHECK(d.best_epoch == 1 && d.stop_epoch == 3);
    em_history_free(&h);
    /* A dip, a plateau long enough to stop, then a better epoch: early stopping would
     * have stopped at the plateau and kept the epoch before it. */
    em_history_init(&h);
    add_epoch(&h, 1.0, 0.9);
    add_epoch(&h, 0.9, 0.8);
    add_epoch(&h, 0.8, 0.82);
    add_epoch(&h, 0.7, 0.83);
    add_epoch(&h, 0.6, 0.70);
    add_epoch(&h, 0.5, 0.75);
    add_epoch(&h, 0.4, 0.80);
    em_history_diagnose(&h, 2, 0.0, 0.5, 5, &d);
    CHECK(d.stop_epoch == 4 && d.stop_keep_epoch == 2 && d.best_epoch == 5 && d.overfitting);
    CHECK(strstr(d.verdict, "would stop after epoch 4 and keep epoch 2, missing the later best") != NULL);
    em_history_free(&h);
    /* Flat: no rise beyond 2%. */
    em_history_init(&h);
    add_epoch(&h, 1.0, 0.70);
    add_epoch(&h, 0.9, 0.60);
    add_epoch(&h, 0.8, 0.605);
    add_epoch(&h, 0.7, 0.606);
    em_history_diagnose(&h, 5, 0.0, 0.5, 5, &d);
    CHECK(!d.overfitting && strstr(d.verdict, "levelled off after epoch 2") != NULL);
    em_history_free(&h);
    /* Steps to a target: the mean of the last 3 losses. */
    em_history_init(&h);
    const float losses[] = {2.0f, 1.0f, 0.6f, 0.5f, 0.4f, 0.45f, NAN};
    for (int i = 0; i < 6; i++) {
        em_step_record r = {.step = i + 1, .loss = losses[i]};
        em_history_add_step(&h, &r);
    }
    em_history_diagnose(&h, 2, 0.0, 0.51, 3, &d);
    CHECK(d.steps_to_target == 5); /* (0.6 + 0.5 + 0.4) / 3 */
    em_history_diagnose(&h, 2, 0.0, 0.4, 3, &d);
    CHECK(d.steps_to_target == -1);
    CHECK(strstr(d.verdict, "no complete epoch") != NULL);
    em_step_record bad = {.step = 7, .loss = losses[6]};
    em_history_add_step(&h, &bad);
    h.diverged = true;
    em_history_diagnose(&h, 2, 0.0, 0.5, 3, &d);
    CHECK(strstr(d.verdict, "diverged before the end of the first epoch") != NULL);
    em_history_free(&h);
}

int main(void)
{
    /* A model this small gains nothing from a second thread. */
    em_set_num_threads(1);
    static noisy data;
    make_noisy(&data);
    test_overfitting_seen_and_stopped(&data);
    test_options(&data);
    test_diagnosis_cases();
    return test_finish();
}
