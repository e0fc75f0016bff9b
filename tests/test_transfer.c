/* Transfer learning: a model pre-trained in PyTorch (the CNN of gen_import.py) gets a
 * new head, its features are frozen (no gradient computed or kept, no optimizer state,
 * values unchanged by training), the head trains, and unfreezing later trains the rest
 * with its own learning rate (with parameter groups and a schedule, every group's rate
 * is its own base times the schedule's factor). Also the load report's names, pattern errors, the class
 * selection of a dataset, and the refusals of replace-head. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static em_model *pretrained_cnn(void)
{
    em_st_file *cases = test_fixture("import_cases");
    em_model *m = em_model_parse(em_st_metadata(cases, "cnn.description"), "cnn", 0);
    em_st_close(cases);
    if (!m || em_load_weights(m, test_path("tests/fixtures/import_cnn.safetensors"), true, NULL, NULL) != EM_OK) {
        fprintf(stderr, "pre-trained cnn: %s\n", ember_last_error());
        em_model_free(m);
        return NULL;
    }
    return m;
}

/* Copies of every tensor's values, to see what training changed. */
static float **snapshot(const em_model *m)
{
    int n = 0;
    const em_named_tensor *s = em_model_state(m, &n);
    float **copy = calloc((size_t)n, sizeof *copy);
    for (int i = 0; i < n; i++) {
        copy[i] = malloc((size_t)s[i].tensor->numel * sizeof(float));
        memcpy(copy[i], s[i].tensor->data, (size_t)s[i].tensor->numel * sizeof(float));
    }
    return copy;
}

static bool unchanged(const em_model *m, float **copy, int i)
{
    int n = 0;
    const em_named_tensor *s = em_model_state(m, &n);
    return memcmp(copy[i], s[i].tensor->data, (size_t)s[i].tensor->numel * sizeof(float)) == 0;
}

static void free_snapshot(const em_model *m, float **copy)
{
    int n = 0;
    em_model_state(m, &n);
    for (int i = 0; i < n; i++)
        free(copy[i]);
    free(copy);
}

/* Random 2x8x8 examples of `classes` classes whose mean depends on the class. */
static em_dataset make_images(int64_t count, int classes, float *pixels, int32_t *labels)
{
    em_rng rng;
    em_rng_seed(&rng, 5);
    for (int64_t i = 0; i < count; i++) {
        labels[i] = (int32_t)(i % classes);
        for (int j = 0; j < 128; j++)
            pixels[i * 128 + j] = em_rng_normal(&rng) + 0.5f * (float)labels[i] * (j < 64 ? 1.0f : -1.0f);
    }
    em_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.count = count;
    ds.item_ndim = 3;
    ds.item_shape[0] = 2, ds.item_shape[1] = 8, ds.item_shape[2] = 8;
    ds.item_numel = 128;
    ds.features = pixels;
    ds.labels = labels;
    ds.num_classes = classes;
    snprintf(ds.source, sizeof ds.source, "images");
    return ds;
}

static void test_replace_head(void)
{
    em_model *m = pretrained_cnn();
    CHECK(m != NULL);
    if (!m)
        return;
    CHECK(em_model_head_index(m) == 15);
    em_model *h = em_model_replace_head(m, 3, 42);
    CHECK_MSG(h != NULL, "%s", ember_last_error());
    if (h) {
        int64_t out[EM_MAX_DIMS];
        CHECK(em_model_output_shape(h, out) == 1 && out[0] == 3);
        em_tensor *w = em_model_find(h, "15.weight");
        CHECK(w && w->shape[0] == 3 && w->shape[1] == 8);
        /* Everything before the head is the pre-trained model's, buffers included. */
        int n = 0;
        const em_named_tensor *s = em_model_state(h, &n);
        int copied = 0;
        for (int i = 0; i < n; i++) {
            if (strncmp(s[i].name, "15.", 3) == 0)
                continue;
            const em_tensor *o = em_model_find(m, s[i].name);
            CHECK(o && memcmp(o->data, s[i].tensor->data, (size_t)o->numel * sizeof(float)) == 0);
            copied++;
        }
        CHECK(copied == n - 2);
        /* The new head starts as PyTorch starts an nn.Linear: |w| <= 1/sqrt(fan_in). */
        float bound = 1.0f / sqrtf(8.0f), worst = 0.0f;
        for (int64_t i = 0; w && i < w->numel; i++)
            worst = fabsf(w->data[i]) > worst ? fabsf(w->data[i]) : worst;
        CHECK(worst > 0.0f && worst <= bound);
        /* The same seed gives the same head. */
        em_model *h2 = em_model_replace_head(m, 3, 42);
        CHECK(h2 && memcmp(em_model_find(h2, "15.weight")->data, w->data, 24 * sizeof(float)) == 0);
        em_model_free(h2);
    }
    em_model_free(h);

    /* Refusals. */
    int64_t in = 4;
    em_model *no_linear = em_model_new(1, &in, 1);
    em_model_add_activation(no_linear, EM_ACT_RELU, 0.0f);
    CHECK(em_model_replace_head(no_linear, 3, 1) == NULL);
    CHECK_ERROR_CONTAINS("no linear layer");
    em_model *after = em_model_parse("input 4\nlinear 6\nbatchnorm\n", "after", 1);
    CHECK(after && em_model_replace_head(after, 3, 1) == NULL);
    CHECK_ERROR_CONTAINS("layer 1 (batchnorm)");
    CHECK(em_model_replace_head(m, 0, 1) == NULL);
    CHECK_ERROR_CONTAINS("at least 1 output");
    em_model_free(no_linear);
    em_model_free(after);
    em_model_free(m);
}

static void test_freeze_patterns(void)
{
    em_model *m = pretrained_cnn();
    if (!m)
        return;
    int64_t all = em_model_trainable_count(m);
    CHECK(all == em_model_param_count(m));
    CHECK(em_model_freeze(m, "0.*,4.*") == 3); /* 0.weight, 0.bias, 4.weight (no bias) */
    CHECK(em_param_is_frozen(em_model_find(m, "0.weight")) && !em_param_is_frozen(em_model_find(m, "1.weight")));
    CHECK(em_model_trainable_count(m) == all - 72 - 4 - 216);
    /* Buffers are never "frozen": they are not parameters. */
    CHECK(!em_param_is_frozen(em_model_find(m, "1.running_mean")));
    CHECK(em_model_freeze(m, "0.*|4.*") == 0); /* already frozen */
    CHECK(em_model_freeze(m, "*.weight,nothing.*") == EM_ERR);
    CHECK_ERROR_CONTAINS("'nothing.*' matches no parameter");
    CHECK_ERROR_CONTAINS("'0.weight', '0.bias'");
    CHECK(em_param_is_frozen(em_model_find(m, "0.weight")) && !em_param_is_frozen(em_model_find(m, "15.weight")));
    CHECK(em_model_freeze(m, ",") == EM_ERR);
    CHECK_ERROR_CONTAINS("no name pattern");
    CHECK(em_model_unfreeze(m, "4.weight") == 1);
    CHECK(em_model_unfreeze(m, NULL) == 2);
    CHECK(em_model_trainable_count(m) == all);
    em_model_free(m);
}

/* Frozen features, a new head, training: only the head and the trainable batch norm
 * change; frozen tensors get no gradient and no optimizer state. */
static void test_frozen_training(void)
{
    em_model *pre = pretrained_cnn();
    if (!pre)
        return;
    CHECK(em_model_freeze(pre, "*") == 15);
    em_model *m = em_model_replace_head(pre, 3, 7);
    em_model_free(pre);
    CHECK(m != NULL);
    if (!m)
        return;
    CHECK(em_model_trainable_count(m) == 3 * 8 + 3);
    em_optim *opt = em_optim_new(m, EM_OPTIM_ADAM, NULL);
    em_named_tensor *list = NULL;
    int count = 0;
    CHECK(opt && em_optim_state_tensors(opt, NULL, &list, &count) == EM_OK && count == 4);
    for (int i = 0; i < count; i++)
        CHECK(strncmp(list[i].name, "optim.state.15.", 15) == 0);
    em_optim_free(opt);
    em_step_end();

    static float pixels[96 * 128];
    static int32_t labels[96];
    em_dataset ds = make_images(96, 3, pixels, labels);
    float **before = snapshot(m);
    em_train_opts o = em_train_defaults();
    o.epochs = 3;
    o.batch_size = 16;
    o.optimizer = EM_OPTIM_ADAM;
    o.optim = em_optim_defaults(EM_OPTIM_ADAM);
    o.optim.lr = 0.05f;
    o.progress = EM_PROGRESS_QUIET;
    em_train_result r;
    double loss_before = 0, accuracy_before = 0;
    CHECK(em_evaluate(m, &ds, 32, &loss_before, &accuracy_before) == EM_OK);
    CHECK_MSG(em_train(m, &ds, &ds, &o, &r) == EM_OK, "%s", ember_last_error());
    int n = 0;
    const em_named_tensor *s = em_model_state(m, &n);
    for (int i = 0; i < n; i++) {
        bool head = strncmp(s[i].name, "15.", 3) == 0;
        /* Batch norm's running statistics move in training mode even when its scale and
         * shift are frozen, as in PyTorch. */
        bool stats = strstr(s[i].name, "running_") || strstr(s[i].name, "num_batches");
        if (head || stats)
            CHECK_MSG(!unchanged(m, before, i), "'%s' did not train", s[i].name);
        else
            CHECK_MSG(unchanged(m, before, i), "frozen '%s' changed", s[i].name);
        /* No gradient was ever computed for a frozen parameter. */
        if (!s[i].is_buffer && !head) {
            bool zero = true;
            for (int64_t j = 0; j < s[i].tensor->numel && zero; j++)
                zero = s[i].tensor->grad[j] == 0.0f;
            CHECK_MSG(zero, "frozen '%s' has a gradient", s[i].name);
        }
    }
    printf("frozen features, new head: loss %.3f -> %.3f, accuracy %.1f%% -> %.1f%% on the 3-class toy set\n",
           loss_before, r.last.test_loss, 100.0 * accuracy_before, 100.0 * r.last.test_accuracy);
    CHECK(r.last.test_loss < loss_before);

    /* Unfreezing after 1 epoch of 3: the features train from epoch 2. */
    free_snapshot(m, before);
    before = snapshot(m);
    o.unfreeze_after = 1;
    o.unfreeze_lr = 1e-3f;
    CHECK(em_model_freeze(m, "0.*,1.*,4.*,5.*,7.*,12.*,13.*") == 0); /* still frozen */
    CHECK_MSG(em_train(m, &ds, &ds, &o, &r) == EM_OK, "%s", ember_last_error());
    CHECK(!unchanged(m, before, 0)); /* 0.weight */
    CHECK(!em_param_is_frozen(em_model_find(m, "0.weight")));
    free_snapshot(m, before);
    em_model_free(m);
}

/* The learning rates of the optimizer's groups in a full checkpoint, in group order
 * (the "lr" of each group in "ember.optimizer"); returns how many. */
static int checkpoint_group_lrs(const char *path, double *lr, int cap)
{
    em_st_file *f = em_st_open(path);
    const char *json = f ? em_st_metadata(f, "ember.optimizer") : NULL;
    const char *groups = json ? strstr(json, "\"groups\":[") : NULL;
    const char *end = groups ? strstr(groups, "]") : NULL;
    int n = 0;
    for (const char *p = groups; p && n < cap && (p = strstr(p, "\"lr\":")) != NULL && p < end; p++)
        lr[n++] = strtod(p + 5, NULL);
    em_st_close(f);
    return n;
}

/* The schedule's base rate of each group in a full checkpoint; returns how many. */
static int checkpoint_schedule_bases(const char *path, double *base, int cap)
{
    em_train_position pos;
    const char *p = em_checkpoint_read_position(path, &pos) == EM_OK ? strstr(pos.schedule, " base=") : NULL;
    int n = 0;
    for (p = p ? p + 6 : NULL; p && n < cap; p++) {
        char *next;
        base[n++] = strtod(p, &next);
        if (*next != ',')
            break;
        p = next;
    }
    return n;
}

static void tick_per_epoch_by_half(em_train_opts *o)
{
    o->schedule = em_schedule_defaults(EM_SCHEDULE_STEP);
    o->schedule.gamma = 0.5;
}

static void cosine_with_warmup(em_train_opts *o)
{
    o->schedule = em_schedule_defaults(EM_SCHEDULE_COSINE);
    o->schedule.warmup = 3;
}

/* Trains a fresh copy of a small classifier whose first linear layer is frozen, with a
 * parameter group of its own for the head's bias, unfreezing after epoch 1. */
static void train_unfreezing(const em_dataset *ds, void (*schedule)(em_train_opts *), int64_t max_steps,
                             const char *checkpoint, const char *resume)
{
    em_model *m = em_model_parse("input 2x8x8\nflatten\nlinear 8\nrelu\nlinear 3\n", "unfreezing", 3);
    CHECK(m && em_model_freeze(m, "1.*") == 2);
    static em_param_group head_bias = {.pattern = "3.bias", .set_lr = true, .lr = 0.05f};
    em_train_opts o = em_train_defaults();
    o.epochs = 3;
    o.batch_size = 16;
    o.optim.lr = 0.1f;
    o.progress = EM_PROGRESS_QUIET;
    o.param_groups = &head_bias;
    o.n_param_groups = 1;
    o.unfreeze_after = 1;
    o.unfreeze_lr = 0.02f;
    o.max_steps = max_steps;
    o.checkpoint_path = checkpoint;
    o.resume_path = resume;
    schedule(&o);
    em_train_result r;
    CHECK_MSG(m && em_train(m, ds, NULL, &o, &r) == EM_OK, "%s", ember_last_error());
    em_model_free(m);
}

/* After unfreezing, the optimizer's groups are the default one (the head's weight), the
 * unfrozen tensors and the run's own group (the head's bias): each group's rate must be
 * its own base rate times the schedule's factor at that step. */
static void check_group_rates(const char *what, const char *path, double factor)
{
    const double base[3] = {0.1f, 0.02f, 0.05f};
    double lr[4], sched[4];
    int n = checkpoint_group_lrs(path, lr, 4);
    CHECK_MSG(n == 3, "%s: %d groups", what, n);
    int nb = checkpoint_schedule_bases(path, sched, 4);
    CHECK_MSG(nb == 3, "%s: %d schedule bases", what, nb);
    for (int g = 0; g < 3 && g < n; g++)
        CHECK_MSG(fabs(lr[g] - base[g] * factor) <= 1e-6 * base[g] * factor,
                  "%s: group %d's rate %.9g, expected %.9g x %.9g = %.9g", what, g, lr[g], base[g], factor,
                  base[g] * factor);
    for (int g = 0; g < 3 && g < nb; g++)
        CHECK_MSG(sched[g] == base[g], "%s: group %d's schedule base %.9g, expected %.9g", what, g, sched[g], base[g]);
}

static void test_unfreezing_with_groups_and_schedule(void)
{
    static float pixels[96 * 128];
    static int32_t labels[96];
    em_dataset ds = make_images(96, 3, pixels, labels); /* 6 steps an epoch */
    char path[1024], resumed[1024];
    snprintf(path, sizeof path, "%s/unfreeze.st", test_tmpdir());
    snprintf(resumed, sizeof resumed, "%s/unfreeze_resumed.st", test_tmpdir());

    /* Halved after every epoch: x0.5 during epoch 2, x0.125 after epoch 3's tick. */
    train_unfreezing(&ds, tick_per_epoch_by_half, 8, path, NULL);
    check_group_rates("step schedule, step 8", path, 0.5);
    train_unfreezing(&ds, tick_per_epoch_by_half, 0, resumed, path);
    check_group_rates("step schedule, resumed at step 8, end", resumed, 0.125);
    train_unfreezing(&ds, tick_per_epoch_by_half, 0, path, NULL);
    check_group_rates("step schedule, end", path, 0.125);

    /* Warm-up then cosine, ticked every step: the default group's rate gives the factor. */
    train_unfreezing(&ds, cosine_with_warmup, 9, path, NULL);
    double lr[3];
    if (checkpoint_group_lrs(path, lr, 3) >= 1)
        check_group_rates("cosine, step 9", path, lr[0] / (double)0.1f);
    CHECK(lr[0] < 0.1 && lr[0] > 0.01); /* a factor that tells the groups apart */
}

static void test_load_report(void)
{
    /* The pre-trained CNN's file into a model whose head differs and which has an extra
     * layer: the names of what did not fit. */
    const char *desc = "input 2x8x8\nconv2d 4 3 pad=1\nbatchnorm\nrelu\nmaxpool 2\n"
                       "conv2d 6 3 stride=2 pad=1 bias=false\nbatchnorm momentum=0.2\nsilu\n"
                       "conv2d 6 3 pad=1 groups=3\ntanh\navgpool 2\ndropout 0.3\nflatten\nlinear 8\nbatchnorm\n"
                       "sigmoid\nlinear 8\nrelu\nlinear 2\n";
    em_model *m = em_model_parse(desc, "longer", 1);
    CHECK(m != NULL);
    if (!m)
        return;
    const char *path = test_path("tests/fixtures/import_cnn.safetensors");
    em_load_report r;
    CHECK(em_load_weights_report(m, path, true, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("'15.weight' has shape [5, 8] in the checkpoint but [8, 8] in the model");
    em_model_free(m);
    desc = "input 2x8x8\nconv2d 4 3 pad=1\nbatchnorm\nrelu\nmaxpool 2\nflatten\nrelu\nlinear 3\n";
    m = em_model_parse(desc, "shorter", 1);
    CHECK(m && em_load_weights_report(m, path, false, &r) == EM_OK);
    CHECK(r.loaded == 7 && r.missing == 2 && r.unexpected == 17);
    CHECK(strcmp(r.missing_names, "'6.weight', '6.bias'") == 0);
    CHECK(strstr(r.unexpected_names, "'4.weight'") && strstr(r.unexpected_names, "'15.bias'"));
    CHECK(m && em_load_weights_report(m, path, true, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("missing tensors (2): '6.weight', '6.bias'; unexpected tensors (17):");
    em_model_free(m);
}

static void test_select_classes(void)
{
    static float pixels[60 * 128];
    static int32_t labels[60];
    em_dataset ds = make_images(60, 6, pixels, labels);
    int five_to_three[] = {5, 4, 3};
    em_dataset *v = em_dataset_select_classes(&ds, five_to_three, 3, 4, 11);
    CHECK_MSG(v != NULL, "%s", ember_last_error());
    if (v) {
        CHECK(v->count == 12 && v->num_classes == 3);
        int per[3] = {0, 0, 0};
        for (int64_t i = 0; i < v->count; i++) {
            per[v->labels[i]]++;
            /* Class 5 is now 0, 4 is 1, 3 is 2; the examples are the originals. */
            CHECK(labels[v->index[i]] == five_to_three[v->labels[i]]);
            CHECK(i == 0 || v->index[i] > v->index[i - 1]);
        }
        CHECK(per[0] == 4 && per[1] == 4 && per[2] == 4);
        int64_t idx = 0;
        int32_t y;
        em_tensor *x = em_dataset_gather(v, &idx, 1, NULL, &y);
        CHECK(x && memcmp(x->data, pixels + v->index[0] * 128, 128 * sizeof(float)) == 0);
        em_step_end();
    }
    em_dataset_free(v);
    int bad[] = {2, 9};
    CHECK(em_dataset_select_classes(&ds, bad, 2, 0, 1) == NULL);
    CHECK_ERROR_CONTAINS("no class 9");
    int twice[] = {2, 2};
    CHECK(em_dataset_select_classes(&ds, twice, 2, 0, 1) == NULL);
    CHECK_ERROR_CONTAINS("class 2 is listed twice");
}

int main(void)
{
    test_replace_head();
    test_freeze_patterns();
    test_frozen_training();
    test_unfreezing_with_groups_and_schedule();
    test_load_report();
    test_select_classes();
    em_release_thread_state();
    return test_finish();
}
