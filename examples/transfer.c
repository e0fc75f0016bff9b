/* The transfer experiment: does a CNN that learned classes 0-4 of Fashion-MNIST help to
 * learn classes 5-9 from 100 labelled images each?
 *
 *   1. Pre-train models/cnn.ember (with a 5-way head) on every training image of
 *      classes 0-4 (T-shirt, trouser, pullover, dress, coat).
 *   2. Transfer: load those weights, freeze every layer, put a fresh 5-way head on
 *      top and train only the head on 100 images of each of classes 5-9 (sandal,
 *      shirt, sneaker, bag, ankle boot).
 *   3. Fine-tune: the same, and after a few epochs the features train too with a
 *      tenth of the learning rate.
 *   4. From scratch: the same network, freshly initialised, all layers trained on the
 *      same 500 images with the same budget.
 * Accuracy is measured on all 5000 test images of classes 5-9, for several seeds (each
 * draws other 100 images per class). The pre-trained weights are kept in the output
 * folder and reused by later runs.
 *
 * Run from the source tree (Fashion-MNIST from $EMBER_DATA_DIR or Debian's package):
 *   ./build/example_transfer [PRETRAIN_EPOCHS [PER_CLASS [SEEDS [EPOCHS [LR]]]]]
 * defaults 2, 100, 3, 30, 1e-2 (Adam, batch 32, the same for every method: a frozen
 * network's head needs the larger rate, training from scratch does as well with either
 * 1e-2 or 1e-3); `make transfer` runs it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ember.h"

#define MODEL "models/cnn.ember"
#define PRETRAINED "transfer-cnn-classes0to4.safetensors"

static const int old_classes[5] = {0, 1, 2, 3, 4};
static const int new_classes[5] = {5, 6, 7, 8, 9};

static int fail(const char *what)
{
    fprintf(stderr, "transfer: %s: %s\n", what, ember_last_error());
    return 1;
}

static float learning_rate = 1e-3f;

/* Adam, no test set during training (evaluated once at the end). */
static em_train_opts options(int epochs, int64_t batch, uint64_t seed)
{
    em_train_opts o = em_train_defaults();
    o.epochs = epochs;
    o.batch_size = batch;
    o.optimizer = EM_OPTIM_ADAM;
    o.optim = em_optim_defaults(EM_OPTIM_ADAM);
    o.optim.lr = learning_rate;
    o.seed = seed;
    o.progress = EM_PROGRESS_QUIET;
    return o;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* models/cnn.ember with a 5-way head, freshly initialised from seed. */
static em_model *five_way_cnn(uint64_t seed)
{
    em_model *ten = em_model_load(MODEL, seed);
    em_model *five = ten ? em_model_replace_head(ten, 5, seed) : NULL;
    em_model_free(ten);
    return five;
}

static int pretrain(const em_dataset *train, const em_dataset *test, int epochs)
{
    if (exists(PRETRAINED)) {
        printf("pre-trained weights: %s (delete it to pre-train again)\n", PRETRAINED);
        return 0;
    }
    em_dataset *old = em_dataset_select_classes(train, old_classes, 5, 0, 1);
    em_dataset *old_test = em_dataset_select_classes(test, old_classes, 5, 0, 1);
    em_model *m = five_way_cnn(1);
    if (!old || !old_test || !m)
        return fail("pre-training set-up");
    em_train_opts o = options(epochs, 64, 1);
    o.progress = EM_PROGRESS_LINES;
    o.save_path = PRETRAINED;
    em_train_result r;
    printf("pre-training %s on classes 0-4: %lld images, %d epochs\n", MODEL, (long long)old->count, epochs);
    fflush(stdout);
    if (em_train(m, old, old_test, &o, &r) != EM_OK)
        return fail("pre-training");
    printf("pre-trained: test accuracy on classes 0-4 %.2f%% (%.0f s)\n", 100.0 * r.last.test_accuracy,
           r.total_seconds);
    em_dataset_free(old);
    em_dataset_free(old_test);
    em_model_free(m);
    return 0;
}

typedef enum { FROZEN, FINETUNED, SCRATCH, N_METHODS } method;
static const char *const method_names[N_METHODS] = {
    "pre-trained features frozen, new head trained",
    "pre-trained, new head, all layers fine-tuned after 1/3 of the epochs",
    "same CNN from scratch, all layers trained",
};

static int run(method how, const em_dataset *few, const em_dataset *test, int epochs, uint64_t seed, double *accuracy)
{
    em_model *m = five_way_cnn(seed);
    if (!m)
        return fail("model");
    em_train_opts o = options(epochs, 32, seed);
    if (how != SCRATCH) {
        em_model *pre = five_way_cnn(seed);
        if (!pre || em_load_weights(pre, PRETRAINED, true, NULL, NULL) != EM_OK || em_model_freeze(pre, "*") < 0)
            return fail("loading the pre-trained weights");
        em_model_free(m);
        m = em_model_replace_head(pre, 5, seed); /* fresh and trainable; the rest frozen */
        em_model_free(pre);
        if (!m)
            return fail("new head");
        if (how == FINETUNED) {
            o.unfreeze_after = epochs / 3;
            o.unfreeze_lr = o.optim.lr / 10.0f;
        }
    }
    if (em_train(m, few, NULL, &o, NULL) != EM_OK)
        return fail(method_names[how]);
    double loss;
    if (em_evaluate(m, test, 500, &loss, accuracy) != EM_OK)
        return fail("evaluation");
    em_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    int pretrain_epochs = argc > 1 ? atoi(argv[1]) : 2;
    int per_class = argc > 2 ? atoi(argv[2]) : 100;
    int seeds = argc > 3 ? atoi(argv[3]) : 3;
    int epochs = argc > 4 ? atoi(argv[4]) : 30;
    float lr = argc > 5 ? strtof(argv[5], NULL) : 1e-2f;
    if (pretrain_epochs < 1 || per_class < 1 || seeds < 1 || epochs < 3 || !(lr > 0.0f)) {
        fprintf(stderr, "usage: %s [PRETRAIN_EPOCHS [PER_CLASS [SEEDS [EPOCHS (>= 3) [LR]]]]]\n", argv[0]);
        return 2;
    }
    em_dataset *train = em_dataset_open("fashion-mnist", EM_SPLIT_TRAIN, -1);
    em_dataset *test = em_dataset_open("fashion-mnist", EM_SPLIT_TEST, -1);
    if (!train || !test)
        return fail("Fashion-MNIST");
    /* The pre-training keeps Adam's usual 1e-3 whatever the few-shot rate. */
    if (pretrain(train, test, pretrain_epochs) != 0)
        return 1;
    learning_rate = lr;

    em_dataset *new_test = em_dataset_select_classes(test, new_classes, 5, 0, 1);
    if (!new_test)
        return fail("test set of classes 5-9");
    double acc[N_METHODS][16];
    if (seeds > 16)
        seeds = 16;
    printf("learning classes 5-9 from %d images each, %d epochs, Adam lr %g, batch 32; tested on %lld images\n",
           per_class, epochs, (double)lr, (long long)new_test->count);
    for (int s = 0; s < seeds; s++) {
        uint64_t seed = 100 + (uint64_t)s;
        em_dataset *few = em_dataset_select_classes(train, new_classes, 5, per_class, seed);
        if (!few)
            return fail("training sample");
        for (int h = 0; h < N_METHODS; h++) {
            double t0 = em_now();
            if (run((method)h, few, new_test, epochs, seed, &acc[h][s]) != 0)
                return 1;
            printf("  seed %llu: %-70s %6.2f%%  (%.0f s)\n", (unsigned long long)seed, method_names[h],
                   100.0 * acc[h][s], em_now() - t0);
            fflush(stdout);
        }
        em_dataset_free(few);
    }
    printf("\ntest accuracy on classes 5-9 (%d images per class to learn from; mean [min, max] over %d seeds)\n",
           per_class, seeds);
    for (int h = 0; h < N_METHODS; h++) {
        double sum = 0, lo = 1, hi = 0;
        for (int s = 0; s < seeds; s++) {
            sum += acc[h][s];
            lo = fmin(lo, acc[h][s]);
            hi = fmax(hi, acc[h][s]);
        }
        printf("  %-70s %6.2f%% [%.2f, %.2f]\n", method_names[h], 100.0 * sum / seeds, 100.0 * lo, 100.0 * hi);
    }
    em_dataset_free(new_test);
    em_dataset_free(train);
    em_dataset_free(test);
    em_release_thread_state();
    return 0;
}
