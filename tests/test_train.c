/* The training loop: a small seeded run learns a synthetic task to a stated accuracy,
 * twice with bit-identical weights; a diverging run stops naming the step; the step
 * arena stops growing; progress, metrics, plot and checkpoint come out as documented. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* The plot's text goes through fontconfig, which keeps a cache for the life of the
 * process that the leak checker reports; it is not ember's memory. (Read by the leak
 * checker when the tests run under the sanitizers; unused otherwise.) */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

#define FEATURES 8
#define CLASSES 4

/* Four Gaussian blobs in 8 dimensions, centres at fixed corners, noise 0.6: the classes
 * overlap, so that about 93% is the best a classifier can do (chance is 25%). */
typedef struct blobs {
    em_dataset ds;
    float *features;
    int32_t *labels;
} blobs;

static void make_blobs(blobs *b, int64_t count, uint64_t seed)
{
    memset(b, 0, sizeof *b);
    b->features = malloc((size_t)count * FEATURES * sizeof(float));
    b->labels = malloc((size_t)count * sizeof(int32_t));
    em_rng rng;
    em_rng_seed(&rng, seed);
    for (int64_t i = 0; i < count; i++) {
        int32_t c = (int32_t)em_rng_below(&rng, CLASSES);
        b->labels[i] = c;
        for (int j = 0; j < FEATURES; j++) {
            float centre = ((c >> (j % 2)) & 1) ? 1.0f : -1.0f;
            if (j >= 2)
                centre *= 0.25f;
            b->features[i * FEATURES + j] = centre + 0.6f * em_rng_normal(&rng);
        }
    }
    b->ds.count = count;
    b->ds.item_ndim = 1;
    b->ds.item_shape[0] = FEATURES;
    b->ds.item_numel = FEATURES;
    b->ds.features = b->features;
    b->ds.labels = b->labels;
    b->ds.num_classes = CLASSES;
    snprintf(b->ds.source, sizeof b->ds.source, "synthetic blobs (seed %llu)", (unsigned long long)seed);
}

static void free_blobs(blobs *b)
{
    free(b->features);
    free(b->labels);
}

static em_model *mlp(uint64_t seed)
{
    int64_t in = FEATURES;
    em_model *m = em_model_new(1, &in, seed);
    if (!m || em_model_add_linear(m, 32, true) != EM_OK || em_model_add_activation(m, EM_ACT_RELU, 0) != EM_OK ||
        em_model_add_linear(m, CLASSES, true) != EM_OK) {
        fprintf(stderr, "building the model: %s\n", ember_last_error());
        em_model_free(m);
        return NULL;
    }
    return m;
}

static bool same_weights(const em_model *a, const em_model *b)
{
    int na = 0, nb = 0;
    const em_named_tensor *sa = em_model_state(a, &na), *sb = em_model_state(b, &nb);
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (memcmp(sa[i].tensor->data, sb[i].tensor->data, (size_t)sa[i].tensor->numel * sizeof(float)))
            return false;
    return true;
}

static char *read_all(const char *path, long *size)
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
    if (size)
        *size = n;
    return buf;
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == c;
    return n;
}

static em_train_opts base_opts(FILE *log)
{
    em_train_opts o = em_train_defaults();
    o.epochs = 4;
    o.batch_size = 32;
    o.optimizer = EM_OPTIM_SGD;
    o.optim = em_optim_defaults(EM_OPTIM_SGD);
    o.optim.lr = 0.05f;
    o.optim.momentum = 0.9f;
    o.seed = 11;
    o.shuffle = true;
    o.progress = EM_PROGRESS_LINES;
    o.log = log;
    return o;
}

static void test_learns_and_repeats(const blobs *train, const blobs *test)
{
    char metrics_path[1024], plot_path[1024], save_path[1024];
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.csv", test_tmpdir());
    snprintf(plot_path, sizeof plot_path, "%s/plot.png", test_tmpdir());
    snprintf(save_path, sizeof save_path, "%s/model.safetensors", test_tmpdir());
    FILE *log = tmpfile();
    em_train_opts o = base_opts(log);
    o.metrics_path = metrics_path;
    o.plot_path = getenv("EMBER_TEST_PLOT") ? getenv("EMBER_TEST_PLOT") : plot_path;
    o.save_path = save_path;

    em_model *a = mlp(42), *b = mlp(42);
    CHECK(a && b);
    if (!a || !b)
        return;
    em_train_result r;
    CHECK_MSG(em_train(a, &train->ds, &test->ds, &o, &r) == EM_OK, "%s", ember_last_error());
    const int64_t steps_per_epoch = (train->ds.count + 31) / 32;
    CHECK(r.epochs_run == 4);
    CHECK(r.steps == 4 * steps_per_epoch);
    CHECK(r.last.epoch == 4);
    CHECK_MSG(r.last.test_accuracy >= 0.88, "test accuracy %.4f", r.last.test_accuracy);
    CHECK_MSG(r.last.train_loss < 0.3 && r.last.test_loss < 0.3, "losses %g %g", r.last.train_loss,
              r.last.test_loss);
    CHECK(r.last.seconds > 0.0 && r.last.samples_per_second > 0.0 && r.total_seconds >= r.last.seconds);
    printf("blobs: test accuracy %.4f, test loss %.4f after %lld steps\n", r.last.test_accuracy,
           r.last.test_loss, (long long)r.steps);

    /* em_evaluate agrees with the loop's own evaluation. */
    double loss = 0, acc = 0;
    CHECK(em_evaluate(a, &test->ds, 100, &loss, &acc) == EM_OK);
    CHECK_NEAR(acc, r.last.test_accuracy, 1e-12);
    CHECK_NEAR(loss, r.last.test_loss, 1e-5);
    CHECK(em_model_is_training(a));
    CHECK(em_grad_enabled());

    /* The same seeds give the same weights, bit for bit. */
    em_train_opts o2 = base_opts(log);
    CHECK(em_train(b, &train->ds, &test->ds, &o2, NULL) == EM_OK);
    CHECK(same_weights(a, b));
    /* ...and a different data order gives different ones (the check can fail). */
    em_model *c = mlp(42);
    o2.seed = 12;
    CHECK(c && em_train(c, &train->ds, &test->ds, &o2, NULL) == EM_OK);
    CHECK(c && !same_weights(a, c));
    em_model_free(c);

    /* The checkpoint holds the trained weights. */
    em_model *loaded = em_model_from_checkpoint(save_path);
    CHECK_MSG(loaded != NULL, "%s", ember_last_error());
    if (loaded) {
        CHECK(same_weights(a, loaded));
        em_model_free(loaded);
    }

    /* Metrics: a header, one row per step, one per epoch. */
    char *csv = read_all(metrics_path, NULL);
    CHECK(csv != NULL);
    if (csv) {
        const char *header = "step,epoch,kind,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,"
                             "test_accuracy,lr,grad_norm,seconds\n";
        CHECK(strncmp(csv, header, strlen(header)) == 0);
        CHECK(count_char(csv, '\n') == 1 + (int)r.steps + 4);
        CHECK(strstr(csv, "\n1,1,") != NULL);
        /* The last line is the last epoch's summary with its accuracy. */
        char *last = csv + strlen(csv) - 1;
        while (last > csv && last[-1] != '\n')
            last--;
        long long step = 0;
        int epoch = 0;
        double tl = 0, tacc = 0, tel = 0, ta = 0, lr = 0, norm = 0;
        /* No validation set: its two columns are empty. */
        CHECK(sscanf(last, "%lld,%d,epoch,%lf,%lf,,,%lf,%lf,%lf,%lf", &step, &epoch, &tl, &tacc, &tel, &ta, &lr,
                     &norm) == 8);
        CHECK(tacc > 0.5 && tacc <= 1.0 && norm > 0.0 && isfinite(norm));
        CHECK(step == r.steps && epoch == 4);
        CHECK_NEAR(ta, r.last.test_accuracy, 1e-8);
        CHECK_NEAR(lr, 0.05, 1e-8);
        free(csv);
    }
    /* The plot is a PNG of the documented size. */
    long size = 0;
    char *png = read_all(o.plot_path, &size);
    CHECK(png && size > 10000 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
    free(png);

    /* Progress lines: one per epoch with the test columns. */
    rewind(log);
    char line[512];
    int epoch_lines = 0;
    while (fgets(line, sizeof line, log))
        if (strstr(line, "test accuracy") && strstr(line, "samples/s") && strncmp(line, "epoch ", 6) == 0)
            epoch_lines++;
    CHECK(epoch_lines == 4 + 4 + 4); /* three runs */
    fclose(log);
    em_model_free(a);
    em_model_free(b);
}

static void test_divergence_names_the_step(const blobs *train)
{
    char save_path[1024];
    snprintf(save_path, sizeof save_path, "%s/diverged.safetensors", test_tmpdir());
    FILE *log = tmpfile();
    em_train_opts o = base_opts(log);
    o.optim.lr = 1e9f;
    o.save_path = save_path;
    em_model *m = mlp(3);
    em_train_result r;
    CHECK(m && em_train(m, &train->ds, NULL, &o, &r) == EM_ERR);
    CHECK_ERROR_CONTAINS("diverged");
    CHECK_ERROR_CONTAINS("epoch 1, step ");
    CHECK_ERROR_CONTAINS("learning rate");
    printf("divergence: %s\n", ember_last_error());
    CHECK(r.steps >= 1 && r.steps < 20);
    CHECK(fopen(save_path, "rb") == NULL); /* no checkpoint of a diverged model */
    em_model_free(m);
    fclose(log);
}

static void test_bad_arguments(const blobs *train)
{
    em_train_opts o = base_opts(NULL);
    o.progress = EM_PROGRESS_QUIET;
    em_model *m = mlp(1);
    o.epochs = 0;
    CHECK(em_train(m, &train->ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("epochs");
    o.epochs = 1;
    o.batch_size = 0;
    CHECK(em_train(m, &train->ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("batch size");
    o.batch_size = 8;
    o.optim.lr = -1.0f;
    CHECK(em_train(m, &train->ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("learning rate -1");
    o.optim.lr = 0.1f;
    CHECK(em_train(NULL, &train->ds, NULL, &o, NULL) == EM_ERR);
    CHECK(em_train(m, NULL, NULL, &o, NULL) == EM_ERR);

    /* Examples that do not fit the model's input. */
    int64_t in = 5;
    em_model *five = em_model_new(1, &in, 1);
    CHECK(five && em_model_add_linear(five, CLASSES, true) == EM_OK);
    CHECK(em_train(five, &train->ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("[5]");
    CHECK_ERROR_CONTAINS("[8]");
    CHECK(em_evaluate(five, &train->ds, 0, NULL, NULL) == EM_ERR);
    em_model_free(five);
    /* Fewer outputs than classes. */
    in = FEATURES;
    em_model *two = em_model_new(1, &in, 1);
    CHECK(two && em_model_add_linear(two, 2, true) == EM_OK);
    CHECK(em_train(two, &train->ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("4 classes");
    em_model_free(two);
    /* An unwritable metrics file is reported before training. */
    o.metrics_path = "/nonexistent-dir/metrics.csv";
    CHECK(em_train(m, &train->ds, NULL, &o, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("/nonexistent-dir/metrics.csv");
    em_model_free(m);
}

/* Once the step arena has grown to a step's peak, training asks the system for no
 * more memory: a whole second run (training and evaluation) adds no chunk. */
static void test_steady_state_allocations(const blobs *train, const blobs *test)
{
    em_model *m = mlp(9);
    em_train_opts o = base_opts(NULL);
    o.progress = EM_PROGRESS_QUIET;
    o.epochs = 1;
    CHECK(em_train(m, &train->ds, &test->ds, &o, NULL) == EM_OK);
    size_t after_warmup = em_arena_system_allocs(em_step_arena());
    o.epochs = 3;
    CHECK(em_train(m, &train->ds, &test->ds, &o, NULL) == EM_OK);
    CHECK_MSG(em_arena_system_allocs(em_step_arena()) == after_warmup, "%zu system allocations, %zu before",
              em_arena_system_allocs(em_step_arena()), after_warmup);

    /* The same by hand, step by step. */
    em_optim *opt = em_optim_new(m, EM_OPTIM_ADAM, NULL);
    em_loader *l = em_loader_new(&train->ds, 16, true, 1);
    size_t at_step3 = 0;
    em_batch b;
    for (int step = 1; step <= 40; step++) {
        if (!em_loader_next(l, &b)) {
            em_loader_reset(l);
            CHECK(em_loader_next(l, &b));
        }
        em_tensor *loss = em_cross_entropy(em_forward(m, b.x), b.y, 0.0f);
        CHECK(em_backward(loss) == EM_OK);
        em_optim_step(opt);
        if (step == 3)
            at_step3 = em_arena_system_allocs(em_step_arena());
    }
    CHECK(em_arena_system_allocs(em_step_arena()) == at_step3);
    em_loader_free(l);
    em_optim_free(opt);
    em_model_free(m);
}

/* The bar redraws one line with \r and ends with the epoch line. */
static void test_progress_bar(const blobs *train)
{
    FILE *log = tmpfile();
    em_train_opts o = base_opts(log);
    o.progress = EM_PROGRESS_BAR;
    o.epochs = 1;
    em_model *m = mlp(2);
    CHECK(em_train(m, &train->ds, NULL, &o, NULL) == EM_OK);
    rewind(log);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, log);
    buf[n] = '\0';
    CHECK(strstr(buf, "\repoch 1/1 [") != NULL);
    CHECK(strstr(buf, "items/s") != NULL && strstr(buf, "ETA") != NULL);
    CHECK(strstr(buf, "\repoch 1/1  train loss ") != NULL);
    CHECK(n > 0 && buf[n - 1] == '\n');
    CHECK(count_char(buf, '\n') == 1);
    em_model_free(m);
    fclose(log);
}

/* A 2000-image subset of Fashion-MNIST, when the dataset is installed. */
static void test_fashion_subset(void)
{
    em_dataset *train = em_dataset_open("fashion-mnist", EM_SPLIT_TRAIN, -1);
    em_dataset *test = em_dataset_open("fashion-mnist", EM_SPLIT_TEST, -1);
    if (!train || !test) {
        printf("skipping the Fashion-MNIST run: %s\n", ember_last_error());
        em_dataset_free(train);
        em_dataset_free(test);
        return;
    }
    em_dataset train_part = *train, test_part = *test;
    train_part.count = 2000;
    test_part.count = 1000;
    int64_t in[3];
    int in_ndim = (int)train->item_ndim;
    memcpy(in, train->item_shape, sizeof(int64_t) * (size_t)in_ndim);
    em_model *m = em_model_new(in_ndim, in, 7);
    CHECK(m && (in_ndim == 1 || em_model_add_flatten(m) == EM_OK) && em_model_add_linear(m, 128, true) == EM_OK &&
          em_model_add_activation(m, EM_ACT_RELU, 0) == EM_OK && em_model_add_linear(m, 10, true) == EM_OK);
    em_train_opts o = base_opts(NULL);
    o.progress = EM_PROGRESS_QUIET;
    o.epochs = 3;
    o.batch_size = 64;
    o.optim.lr = 0.05f;
    em_train_result r;
    CHECK_MSG(em_train(m, &train_part, &test_part, &o, &r) == EM_OK, "%s", ember_last_error());
    printf("fashion-mnist 2000 images, 3 epochs: test accuracy %.4f (1000 test images)\n", r.last.test_accuracy);
    CHECK_MSG(r.last.test_accuracy >= 0.72, "test accuracy %.4f", r.last.test_accuracy);
    em_model_free(m);
    em_dataset_free(train);
    em_dataset_free(test);
}

int main(void)
{
    blobs train, test;
    make_blobs(&train, 1000, 1);
    make_blobs(&test, 400, 2);
    test_learns_and_repeats(&train, &test);
    test_divergence_names_the_step(&train);
    test_bad_arguments(&train);
    test_steady_state_allocations(&train, &test);
    test_progress_bar(&train);
    test_fashion_subset();
    free_blobs(&train);
    free_blobs(&test);
    em_release_thread_state();
    return test_finish();
}
