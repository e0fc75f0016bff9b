/* Exact resume: training N steps straight and training N/2, writing a full checkpoint,
 * then resuming for the rest give bit-identical weights and optimizer state, for every
 * optimizer, with dropout (the model's generator) and shuffling (the loader's), whether
 * the cut falls inside an epoch or between two. Also: checkpointing does not perturb a
 * run, a stop request ends a run cleanly after one step, resuming refuses data that
 * would change the order, the loader's position replays an epoch exactly, and a
 * resumed run's history and metrics file are those of a run never stopped (the
 * checkpoint carries the records; one written without them still resumes). */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define COUNT 200
#define FEATURES 6
#define CLASSES 3

static float features[COUNT * FEATURES];
static int32_t labels[COUNT];

/* Three Gaussian blobs: learnable, but not in a few steps. */
static em_dataset make_data(void)
{
    em_rng rng;
    em_rng_seed(&rng, 99);
    for (int i = 0; i < COUNT; i++) {
        labels[i] = (int32_t)em_rng_below(&rng, CLASSES);
        for (int j = 0; j < FEATURES; j++)
            features[i * FEATURES + j] = em_rng_normal(&rng) + (j % CLASSES == labels[i] ? 1.5f : 0.0f);
    }
    em_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.count = COUNT;
    ds.item_ndim = 1;
    ds.item_shape[0] = FEATURES;
    ds.item_numel = FEATURES;
    ds.features = features;
    ds.labels = labels;
    ds.num_classes = CLASSES;
    snprintf(ds.source, sizeof ds.source, "blobs");
    return ds;
}

static const char *const description = "input 6\nlinear 16\nrelu\ndropout 0.25\nlinear 12\ntanh\nlinear 3\n";

static const char *tmp(const char *name)
{
    static char buf[4][1024];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return p;
}

typedef struct run_spec {
    em_optim_kind kind;
    em_optim_opts optim;
    int epochs;
    int64_t batch;
    int64_t max_steps;
    int64_t every;
    const char *checkpoint;
    const char *resume;
    volatile sig_atomic_t *stop;
    void (*tweak)(em_train_opts *o); /* schedules, validation, early stopping, ... */
    em_train_history *history;
    const char *metrics;
} run_spec;

/* Trains a fresh model (seed 7) as specified; NULL after a failure (reported). */
static em_model *train(const em_dataset *ds, const run_spec *s, em_train_result *result)
{
    em_model *m = em_model_parse(description, "test_resume", 7);
    if (!m)
        return NULL;
    em_train_opts o = em_train_defaults();
    o.epochs = s->epochs;
    o.batch_size = s->batch;
    o.optimizer = s->kind;
    o.optim = s->optim;
    o.seed = 1234;
    o.progress = EM_PROGRESS_QUIET;
    o.checkpoint_path = s->checkpoint;
    o.checkpoint_every = s->every;
    o.resume_path = s->resume;
    o.max_steps = s->max_steps;
    o.stop_requested = s->stop;
    o.history = s->history;
    o.metrics_path = s->metrics;
    if (s->tweak)
        s->tweak(&o);
    if (em_train(m, ds, ds, &o, result) != EM_OK) {
        fprintf(stderr, "training: %s\n", ember_last_error());
        em_model_free(m);
        return NULL;
    }
    return m;
}

/* The first differing tensor's name, or NULL when every tensor agrees bit for bit. */
static const char *first_difference(const em_model *a, const em_model *b)
{
    int na = 0, nb = 0;
    const em_named_tensor *sa = em_model_state(a, &na), *sb = em_model_state(b, &nb);
    if (na != nb)
        return "(tensor count)";
    for (int i = 0; i < na; i++)
        if (!em_same_shape(sa[i].tensor, sb[i].tensor) ||
            memcmp(sa[i].tensor->data, sb[i].tensor->data, (size_t)sa[i].tensor->numel * sizeof(float)) != 0)
            return sa[i].name;
    return NULL;
}

/* Every tensor of two checkpoint files agrees bit for bit (optimizer state included). */
static bool same_files(const char *a, const char *b)
{
    em_st_file *fa = em_st_open(a), *fb = em_st_open(b);
    bool same = fa && fb && em_st_count(fa) == em_st_count(fb);
    for (int i = 0; same && i < em_st_count(fa); i++) {
        const em_st_entry *ea = em_st_entry_at(fa, i);
        const em_st_entry *eb = em_st_find(fb, ea->name);
        same = eb && ea->nbytes == eb->nbytes && memcmp(ea->data, eb->data, ea->nbytes) == 0;
        if (!same)
            fprintf(stderr, "checkpoints differ at '%s'\n", ea->name);
    }
    em_st_close(fa);
    em_st_close(fb);
    return same;
}

static void test_split_resume_with(const em_dataset *ds, const char *what, em_optim_kind kind, em_optim_opts optim,
                                   int64_t cut, void (*tweak)(em_train_opts *), int64_t total)
{
    /* 200 examples in batches of 32: 7 steps an epoch, 21 in three (fewer with a
     * validation split: 160 examples, 5 steps an epoch). */
    run_spec straight = {.kind = kind, .optim = optim, .epochs = 3, .batch = 32, .checkpoint = tmp("straight.st"),
                         .tweak = tweak};
    em_train_result r_straight, r_first, r_second;
    em_model *a = train(ds, &straight, &r_straight);
    CHECK_MSG(a && r_straight.steps == total && !r_straight.interrupted, "%s: %lld steps", what,
              (long long)r_straight.steps);

    run_spec first = straight;
    first.checkpoint = tmp("half.st");
    first.max_steps = cut;
    em_model *b = train(ds, &first, &r_first);
    CHECK_MSG(b && r_first.interrupted && r_first.steps == cut && r_first.checkpoints_written == 1,
              "%s: first half: steps %lld, interrupted %d", what, (long long)r_first.steps, r_first.interrupted);
    if (a && b)
        CHECK_MSG(first_difference(a, b) != NULL, "%s: the half-trained model equals the full one", what);

    run_spec second = straight;
    second.checkpoint = tmp("resumed.st");
    second.resume = first.checkpoint;
    em_model *c = train(ds, &second, &r_second);
    CHECK_MSG(c && r_second.steps == total && !r_second.interrupted, "%s: resumed run", what);
    if (a && c) {
        const char *diff = first_difference(a, c);
        CHECK_MSG(diff == NULL, "%s, cut after step %lld: tensor '%s' differs after resuming", what, (long long)cut,
                  diff);
        /* The same epoch figures, the interrupted epoch's mean loss included. */
        CHECK(r_second.last.train_loss == r_straight.last.train_loss);
        CHECK(r_second.last.test_accuracy == r_straight.last.test_accuracy);
        CHECK(r_second.last.train_accuracy == r_straight.last.train_accuracy);
        CHECK(r_second.last.val_loss == r_straight.last.val_loss || (isnan(r_second.last.val_loss) &&
                                                                     isnan(r_straight.last.val_loss)));
        CHECK(r_second.best_epoch == r_straight.best_epoch && r_second.restored_epoch == r_straight.restored_epoch);
        /* And the final checkpoints agree, optimizer state and step counts included. */
        CHECK_MSG(same_files(straight.checkpoint, second.checkpoint), "%s: final checkpoints differ", what);
    }
    em_model_free(a);
    em_model_free(b);
    em_model_free(c);
}

static void test_split_resume(const em_dataset *ds, const char *what, em_optim_kind kind, em_optim_opts optim,
                              int64_t cut)
{
    test_split_resume_with(ds, what, kind, optim, cut, NULL, 21);
}

/* Linear warm-up then cosine, ticked every step; a validation split; early stopping
 * that keeps the best weights; gradient clipping; no decay on biases. */
static void cosine_and_early_stopping(em_train_opts *o)
{
    o->schedule = em_schedule_defaults(EM_SCHEDULE_COSINE);
    o->schedule.warmup = 4;
    o->val_split = 0.2;
    o->patience = 1;
    o->clip_grad_norm = 0.5;
    static em_param_group no_decay = {.pattern = "*.bias", .set_weight_decay = true, .weight_decay = 0.0f};
    o->param_groups = &no_decay;
    o->n_param_groups = 1;
}

/* ReduceLROnPlateau on the validation loss, reducing at every epoch without progress. */
static void plateau(em_train_opts *o)
{
    o->schedule = em_schedule_defaults(EM_SCHEDULE_PLATEAU);
    o->schedule.patience = 0;
    o->schedule.factor = 0.5;
    o->schedule.threshold = 0.5; /* an improvement must halve the loss: rarely */
    o->val_split = 0.2;
}

static void step_schedule(em_train_opts *o)
{
    o->schedule = em_schedule_defaults(EM_SCHEDULE_STEP);
    o->schedule.step_size = 1;
    o->schedule.gamma = 0.3;
}

static void test_schedules_and_early_stopping(const em_dataset *ds)
{
    em_optim_opts sgd = em_optim_defaults(EM_OPTIM_SGD);
    sgd.lr = 0.1f, sgd.momentum = 0.9f, sgd.weight_decay = 1e-3f;
    em_optim_opts adam = em_optim_defaults(EM_OPTIM_ADAM);
    adam.lr = 0.02f;
    test_split_resume_with(ds, "cosine, validation, early stopping", EM_OPTIM_SGD, sgd, 7, cosine_and_early_stopping,
                           15);
    test_split_resume_with(ds, "cosine, validation, early stopping, epoch boundary", EM_OPTIM_SGD, sgd, 5,
                           cosine_and_early_stopping, 15);
    test_split_resume_with(ds, "plateau", EM_OPTIM_ADAM, adam, 8, plateau, 15);
    test_split_resume_with(ds, "plateau, epoch boundary", EM_OPTIM_ADAM, adam, 10, plateau, 15);
    test_split_resume_with(ds, "step schedule", EM_OPTIM_ADAM, adam, 9, step_schedule, 21);
}

static void test_every_optimizer(const em_dataset *ds)
{
    em_optim_opts sgd = em_optim_defaults(EM_OPTIM_SGD);
    sgd.lr = 0.05f, sgd.momentum = 0.9f, sgd.nesterov = true, sgd.weight_decay = 1e-3f;
    em_optim_opts adam = em_optim_defaults(EM_OPTIM_ADAM);
    adam.lr = 0.01f, adam.amsgrad = true;
    em_optim_opts rms = em_optim_defaults(EM_OPTIM_RMSPROP);
    rms.momentum = 0.5f, rms.centered = true, rms.lr = 0.003f;
    em_optim_opts adagrad = em_optim_defaults(EM_OPTIM_ADAGRAD);
    adagrad.lr_decay = 0.01f, adagrad.initial_accumulator_value = 0.1f;
    em_optim_opts adamw = em_optim_defaults(EM_OPTIM_ADAMW);
    adamw.lr = 0.01f;
    test_split_resume(ds, "sgd nesterov", EM_OPTIM_SGD, sgd, 10);
    test_split_resume(ds, "adam amsgrad", EM_OPTIM_ADAM, adam, 10);
    test_split_resume(ds, "rmsprop centered", EM_OPTIM_RMSPROP, rms, 10);
    test_split_resume(ds, "adagrad", EM_OPTIM_ADAGRAD, adagrad, 10);
    test_split_resume(ds, "adamw", EM_OPTIM_ADAMW, adamw, 10);
    /* Cuts at an epoch's end, right after the first step, and before the last step. */
    test_split_resume(ds, "adam, epoch boundary", EM_OPTIM_ADAM, adam, 7);
    test_split_resume(ds, "adam, after step 1", EM_OPTIM_ADAM, adam, 1);
    test_split_resume(ds, "sgd, before the last step", EM_OPTIM_SGD, sgd, 20);
}

/* Writing checkpoints along the way changes nothing; the last one is the end state. */
static void test_checkpointing_is_invisible(const em_dataset *ds)
{
    em_optim_opts adam = em_optim_defaults(EM_OPTIM_ADAM);
    run_spec plain = {.kind = EM_OPTIM_ADAM, .optim = adam, .epochs = 2, .batch = 16};
    run_spec every = plain;
    every.checkpoint = tmp("every.st");
    every.every = 3;
    em_train_result rp, re;
    em_model *a = train(ds, &plain, &rp);
    em_model *b = train(ds, &every, &re);
    CHECK(a && b && first_difference(a, b) == NULL);
    /* 13 steps an epoch: checkpoints at 3, 6, ..., 24, and at the end (26). */
    CHECK_MSG(re.checkpoints_written == 9, "%d checkpoints", re.checkpoints_written);
    em_train_position pos;
    CHECK(em_checkpoint_read_position(every.checkpoint, &pos) == EM_OK);
    CHECK(pos.step == 26 && pos.epoch == 3 && pos.loader.batches_done == 0 && pos.batch_size == 16);
    /* The weights in it load into a plain model, the optimizer state not counting as
     * unexpected; the file rebuilds the model too. */
    em_model *c = em_model_parse(description, "test", 1);
    int missing = -1, unexpected = -1;
    CHECK(c && em_load_weights(c, every.checkpoint, true, &missing, &unexpected) == EM_OK);
    CHECK(missing == 0 && unexpected == 0 && first_difference(b, c) == NULL);
    em_model *d = em_model_from_checkpoint(every.checkpoint);
    CHECK(d && first_difference(b, d) == NULL);
    em_st_file *f = em_st_open(every.checkpoint);
    CHECK(f && em_st_find(f, "optim.state.0.weight.exp_avg") && em_st_find(f, "optim.state.5.bias.exp_avg_sq"));
    CHECK(f && !em_st_find(f, "optim.state.0.weight.max_exp_avg_sq")); /* no amsgrad */
    CHECK(f && em_st_metadata(f, "ember.optimizer") && strstr(em_st_metadata(f, "ember.optimizer"), "\"adam\""));
    em_st_close(f);
    em_model_free(a);
    em_model_free(b);
    em_model_free(c);
    em_model_free(d);
}

/* Both NaN, or the same bits. */
static bool same_value(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

/* The first record where a and b differ (timings aside), or NULL. b's records are
 * compared from its step `from_step` and epoch `from_epoch` on (1-based). */
static const char *history_difference(const em_train_history *a, const em_train_history *b, int64_t from_step,
                                      int from_epoch)
{
    static char what[128];
    if (a->n_steps != b->n_steps - (from_step - 1) || a->n_epochs != b->n_epochs - (from_epoch - 1)) {
        snprintf(what, sizeof what, "%lld steps and %d epochs vs %lld and %d", (long long)a->n_steps, a->n_epochs,
                 (long long)b->n_steps, b->n_epochs);
        return what;
    }
    for (int64_t i = 0; i < a->n_steps; i++) {
        const em_step_record *x = &a->steps[i], *y = &b->steps[i + from_step - 1];
        if (x->step != y->step || !same_value(x->loss, y->loss) || !same_value(x->lr, y->lr) ||
            !same_value(x->grad_norm, y->grad_norm) || !same_value(x->accuracy, y->accuracy)) {
            snprintf(what, sizeof what, "step record %lld (step %lld vs %lld)", (long long)i + 1, (long long)x->step,
                     (long long)y->step);
            return what;
        }
    }
    for (int i = 0; i < a->n_epochs; i++) {
        const em_epoch_record *x = &a->epochs[i], *y = &b->epochs[i + from_epoch - 1];
        if (x->epoch != y->epoch || x->steps != y->steps || !same_value(x->train_loss, y->train_loss) ||
            !same_value(x->train_accuracy, y->train_accuracy) || !same_value(x->val_loss, y->val_loss) ||
            !same_value(x->val_accuracy, y->val_accuracy) || !same_value(x->test_loss, y->test_loss) ||
            !same_value(x->test_accuracy, y->test_accuracy) || !same_value(x->lr, y->lr) ||
            !same_value(x->grad_norm, y->grad_norm)) {
            snprintf(what, sizeof what, "epoch record %d", i + 1);
            return what;
        }
    }
    return NULL;
}

/* The metrics file without its last column (seconds), or NULL. */
static char *metrics_without_seconds(const char *path, int *epoch_rows)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap), line[512];
    *epoch_rows = 0;
    while (out && fgets(line, sizeof line, f)) {
        char *last = strrchr(line, ',');
        if (last)
            *last = '\0';
        *epoch_rows += line[0] >= '0' && line[0] <= '9' && strstr(line, ",epoch,") != NULL;
        size_t n = strlen(line);
        if (len + n + 2 > cap) {
            char *grown = realloc(out, cap *= 2);
            if (!grown) {
                free(out);
                out = NULL;
                break;
            }
            out = grown;
        }
        memcpy(out + len, line, n);
        out[len + n] = '\n';
        len += n + 1;
        out[len] = '\0';
    }
    fclose(f);
    return out;
}

/* A run resumed from a checkpoint has the history and metrics rows of a run never
 * stopped, the epochs before the checkpoint included; the restored records have no
 * timings (seconds NaN, an empty column), the new ones do. */
static void check_history_resume(const em_dataset *ds, const char *what, int first_epochs, int64_t max_steps,
                                 void (*tweak)(em_train_opts *))
{
    em_optim_opts adam = em_optim_defaults(EM_OPTIM_ADAM);
    adam.lr = 0.02f;
    em_train_history hs, h1, hr;
    em_history_init(&hs);
    em_history_init(&h1);
    em_history_init(&hr);
    run_spec straight = {.kind = EM_OPTIM_ADAM, .optim = adam, .epochs = 3, .batch = 32, .tweak = tweak,
                         .history = &hs, .metrics = tmp("straight.csv")};
    run_spec first = straight;
    first.epochs = first_epochs;
    first.max_steps = max_steps;
    first.checkpoint = tmp("history.st");
    first.history = &h1;
    first.metrics = tmp("first.csv");
    run_spec resumed = straight;
    resumed.resume = first.checkpoint;
    resumed.history = &hr;
    resumed.metrics = tmp("resumed.csv");
    em_train_result r;
    em_model *a = train(ds, &straight, &r);
    em_model *b = train(ds, &first, &r);
    int64_t cut = r.steps;
    em_model *c = train(ds, &resumed, &r);
    CHECK_MSG(a && b && c, "%s: a run failed", what);
    CHECK_MSG(hs.n_epochs == 3 && hr.n_epochs == 3, "%s: %d and %d epochs recorded", what, hs.n_epochs, hr.n_epochs);
    const char *diff = history_difference(&hs, &hr, 1, 1);
    CHECK_MSG(diff == NULL, "%s: the resumed history differs from the straight one at %s", what, diff);
    for (int64_t i = 0; i < hr.n_steps; i++)
        CHECK_MSG(isnan(hr.steps[i].seconds) == (hr.steps[i].step <= cut), "%s: step %lld's seconds %g", what,
                  (long long)hr.steps[i].step, (double)hr.steps[i].seconds);
    int rows_straight = 0, rows_resumed = 0;
    char *cs = metrics_without_seconds(straight.metrics, &rows_straight);
    char *cr = metrics_without_seconds(resumed.metrics, &rows_resumed);
    CHECK_MSG(cs && cr && rows_straight == 3 && rows_resumed == 3, "%s: %d and %d epoch rows", what, rows_straight,
              rows_resumed);
    CHECK_MSG(cs && cr && strcmp(cs, cr) == 0, "%s: the resumed metrics file differs:\n%s\nvs\n%s", what,
              cs ? cs : "", cr ? cr : "");
    free(cs);
    free(cr);
    em_history_free(&hs);
    em_history_free(&h1);
    em_history_free(&hr);
    em_model_free(a);
    em_model_free(b);
    em_model_free(c);
}

static void test_history_across_resume(const em_dataset *ds)
{
    check_history_resume(ds, "two epochs then a third", 2, 0, NULL);
    check_history_resume(ds, "stopped inside epoch 2", 3, 10, NULL);
    check_history_resume(ds, "validation split, cosine, early stopping, stopped inside epoch 2", 3, 7,
                         cosine_and_early_stopping);

    /* A checkpoint without a history (as written before checkpoints carried one): the
     * resumed run's history starts at the resume. */
    em_optim_opts adam = em_optim_defaults(EM_OPTIM_ADAM);
    em_train_history hs, hr;
    em_history_init(&hs);
    em_history_init(&hr);
    run_spec straight = {.kind = EM_OPTIM_ADAM, .optim = adam, .epochs = 3, .batch = 32, .history = &hs};
    run_spec first = straight;
    first.epochs = 2;
    first.history = NULL;
    first.checkpoint = tmp("with_history.st");
    em_train_result r;
    em_model *a = train(ds, &straight, &r);
    em_model *b = train(ds, &first, &r);
    em_model *m = em_model_parse(description, "test_resume", 7);
    em_optim *opt = m ? em_optim_new(m, EM_OPTIM_ADAM, &adam) : NULL;
    em_train_position pos;
    CHECK(opt && em_checkpoint_load(first.checkpoint, m, opt, &pos) == EM_OK &&
          em_checkpoint_save(tmp("no_history.st"), m, opt, &pos) == EM_OK);
    em_st_file *f = em_st_open(tmp("no_history.st"));
    CHECK(f && !em_st_metadata(f, "ember.history") && !em_st_find(f, "train.history.steps"));
    em_st_close(f);
    run_spec resumed = straight;
    resumed.history = &hr;
    resumed.resume = tmp("no_history.st");
    em_model *c = train(ds, &resumed, &r);
    CHECK(c && hr.n_steps == 7 && hr.n_epochs == 1 && hr.steps[0].step == 15 && hr.epochs[0].epoch == 3);
    const char *diff = history_difference(&hr, &hs, 15, 3);
    CHECK_MSG(diff == NULL, "resumed without a history: differs at %s", diff);

    /* The history in the checkpoint, read back: the first run's records. */
    em_train_history read;
    em_history_init(&read);
    CHECK(em_checkpoint_read_history(first.checkpoint, &read) == EM_OK);
    CHECK(read.n_steps == 14 && read.n_epochs == 2 && read.steps[0].step == 1 && isnan(read.epochs[1].seconds));
    em_train_history hs_first2 = hs;
    hs_first2.n_steps = 14;
    hs_first2.n_epochs = 2;
    diff = history_difference(&read, &hs_first2, 1, 1);
    CHECK_MSG(diff == NULL, "read back: differs at %s", diff);
    /* It appends; a file without a history adds nothing. */
    CHECK(em_checkpoint_read_history(tmp("no_history.st"), &read) == EM_OK && read.n_steps == 14);
    CHECK(em_checkpoint_read_history(tmp("missing.st"), &read) == EM_ERR && read.n_steps == 14);
    CHECK_ERROR_CONTAINS("missing.st");
    /* Malformed histories are refused by name, the history unchanged. */
    const char *bad = tmp("bad_history.st");
    const char *names[] = {"train.history.steps"};
    const em_tensor *tensors[] = {em_tensor_zeros2(NULL, 3, 4)};
    const char *keys[] = {"ember.history"};
    const char *short_list[] = {"{\"version\":1,\"first_step\":1,\"steps\":2,\"epochs\":[]}"};
    CHECK(em_st_save(bad, 1, names, tensors, 1, keys, short_list) == EM_OK);
    CHECK(em_checkpoint_read_history(bad, &read) == EM_ERR && read.n_steps == 14 && read.n_epochs == 2);
    CHECK_ERROR_CONTAINS("bad_history.st: \"ember.history\" lists 2 steps but tensor 'train.history.steps' is [3, 4], "
                         "not [2, 4]");
    const char *bad_hex[] = {"{\"version\":1,\"first_step\":1,\"steps\":3,\"epochs\":[{\"epoch\":1,\"steps\":3,"
                             "\"train_loss\":\"zz\"}]}"};
    CHECK(em_st_save(bad, 1, names, tensors, 1, keys, bad_hex) == EM_OK);
    CHECK(em_checkpoint_read_history(bad, &read) == EM_ERR && read.n_steps == 14 && read.n_epochs == 2);
    CHECK_ERROR_CONTAINS("epoch 1's \"train_loss\" is not 16 hexadecimal digits");
    em_step_end();
    em_history_free(&read);

    em_optim_free(opt);
    em_history_free(&hs);
    em_history_free(&hr);
    em_model_free(a);
    em_model_free(b);
    em_model_free(c);
    em_model_free(m);
}

static void test_stop_request(const em_dataset *ds)
{
    volatile sig_atomic_t stop = 1; /* as if Ctrl-C came during the first step */
    em_optim_opts sgd = em_optim_defaults(EM_OPTIM_SGD);
    sgd.momentum = 0.9f;
    run_spec s = {.kind = EM_OPTIM_SGD, .optim = sgd, .epochs = 2, .batch = 50, .checkpoint = tmp("stop.st"),
                  .stop = &stop};
    em_train_result r;
    em_model *a = train(ds, &s, &r);
    CHECK(a && r.interrupted && r.steps == 1 && r.checkpoints_written == 1);
    em_train_position pos;
    CHECK(em_checkpoint_read_position(s.checkpoint, &pos) == EM_OK && pos.step == 1 && pos.epoch == 1 &&
          pos.loader.batches_done == 1);
    stop = 0;
    s.resume = s.checkpoint;
    s.checkpoint = tmp("stop_resumed.st");
    em_model *b = train(ds, &s, &r);
    s.resume = NULL;
    s.stop = NULL;
    em_model *c = train(ds, &s, &r);
    CHECK(b && c && first_difference(b, c) == NULL && r.steps == 8);
    em_model_free(a);
    em_model_free(b);
    em_model_free(c);
}

static void test_refusals(const em_dataset *ds)
{
    em_optim_opts sgd = em_optim_defaults(EM_OPTIM_SGD);
    run_spec s = {.kind = EM_OPTIM_SGD, .optim = sgd, .epochs = 1, .batch = 32, .checkpoint = tmp("refuse.st")};
    em_train_result r;
    em_model_free(train(ds, &s, &r));

    em_model *m = em_model_parse(description, "test", 7);
    em_train_opts o = em_train_defaults();
    o.progress = EM_PROGRESS_QUIET;
    o.batch_size = 64; /* another batch size: another order */
    o.epochs = 2;
    o.resume_path = s.checkpoint;
    CHECK(em_train(m, ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("batches of 32");
    CHECK_ERROR_CONTAINS("refuse.st");
    o.batch_size = 32;
    o.epochs = 1; /* the checkpoint is at the start of epoch 2 */
    CHECK(em_train(m, ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("nothing left to train");
    o.epochs = 2;
    o.optimizer = EM_OPTIM_ADAM;
    o.optim = em_optim_defaults(EM_OPTIM_ADAM);
    CHECK(em_train(m, ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("holds sgd state");
    /* Weights only: not a full checkpoint. */
    CHECK(em_save_weights(m, tmp("weights.st")) == EM_OK);
    o.optimizer = EM_OPTIM_SGD;
    o.optim = sgd;
    o.resume_path = tmp("weights.st");
    CHECK(em_train(m, ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("not a full training checkpoint");
    /* Another model. */
    em_model *other = em_model_parse("input 6\nlinear 5\nrelu\nlinear 3\n", "other", 1);
    o.resume_path = s.checkpoint;
    CHECK(other && em_train(other, ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("'0.weight' has shape [16, 6] in the checkpoint but [5, 6] in the model");
    em_model_free(other);
    em_model_free(m);
}

/* The loader's position replays the rest of an epoch without gathering the rest. */
static void test_loader_position(const em_dataset *ds)
{
    em_loader *a = em_loader_new(ds, 30, true, 5), *b = em_loader_new(ds, 30, true, 77);
    em_batch x, y;
    for (int e = 0; e < 2; e++) {
        em_loader_reset(a);
        for (int i = 0; i < 3; i++)
            em_loader_next(a, &x);
    }
    em_loader_position pos = em_loader_tell(a);
    CHECK(pos.batches_done == 3);
    CHECK(em_loader_seek(b, &pos) == EM_OK);
    int batches = 0;
    bool same = true;
    while (em_loader_next(a, &x)) {
        int32_t ya[30];
        memcpy(ya, x.y, (size_t)x.n * sizeof *ya);
        same = same && em_loader_next(b, &y) && y.n == x.n && y.index == x.index &&
               memcmp(ya, y.y, (size_t)x.n * sizeof *ya) == 0;
        batches++;
    }
    CHECK(same && batches == 4 && !em_loader_next(b, &y));
    /* The next epochs agree too: the generators are in the same state. */
    em_loader_reset(a);
    em_loader_reset(b);
    CHECK(em_loader_next(a, &x));
    int32_t first[30];
    memcpy(first, x.y, sizeof first);
    CHECK(em_loader_next(b, &y) && memcmp(first, y.y, sizeof first) == 0);
    pos.batches_done = 8;
    CHECK(em_loader_seek(b, &pos) == EM_ERR);
    CHECK_ERROR_CONTAINS("has 7");
    em_loader_free(a);
    em_loader_free(b);
    em_step_end();
}

int main(void)
{
    em_set_num_threads(2);
    em_dataset ds = make_data();
    test_loader_position(&ds);
    test_every_optimizer(&ds);
    test_schedules_and_early_stopping(&ds);
    test_checkpointing_is_invisible(&ds);
    test_history_across_resume(&ds);
    test_stop_request(&ds);
    test_refusals(&ds);
    em_release_thread_state();
    return test_finish();
}
