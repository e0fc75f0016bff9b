/* Datasets held in memory as they are on disk (bytes for images: a 60k Fashion-MNIST
 * set is 47 MB, not 188), converted to float32 one batch at a time. */
#ifndef EMBER_DATA_H
#define EMBER_DATA_H

#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_split { EM_SPLIT_TRAIN = 0, EM_SPLIT_TEST = 1 } em_split;

typedef struct em_dataset {
    int64_t count;                   /* examples */
    int item_ndim;                   /* shape of one example, e.g. 1 {784} or 3 {1,28,28} */
    int64_t item_shape[EM_MAX_DIMS];
    int64_t item_numel;
    const uint8_t *pixels;           /* count*item_numel bytes, scaled by 1/255; or */
    const float *features;           /* count*item_numel floats (CSV) */
    const int32_t *labels;           /* count class indices */
    int num_classes;
    const char *const *class_names;  /* num_classes entries or NULL */
    char source[256];                /* for messages: the file(s) it came from */
    void *storage;                   /* owned memory */
    /* A view (em_dataset_subset): example i is row index[i] of pixels or features,
     * which belong to the dataset the view was made from. NULL: example i is row i. */
    const int64_t *index;
} em_dataset;

/* IDX files (MNIST format), plain or gzip-compressed (by magic, not by name). Items are
 * {1, rows, cols}: channels first for a convolution; flatten or linear takes them too. */
em_dataset *em_dataset_load_idx(const char *images_path, const char *labels_path);
/* Numeric CSV: one example per line, the label in label_column (0-based; negative counts
 * from the end, -1 is the last column), a first line with a non-numeric cell taken as a
 * header. Labels must be integers >= 0; num_classes is the largest label + 1. Messages
 * number lines and columns from 1, as editors do. */
em_dataset *em_dataset_load_csv(const char *path, int label_column);
/* "fashion-mnist" (Debian's dataset-fashion-mnist, or $EMBER_DATA_DIR), "mnist",
 * "idx:IMAGES,LABELS" (split ignored), "csv:FILE" (split ignored). A named dataset is
 * {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] in $EMBER_DATA_DIR/<name>/, else in
 * $EMBER_DATA_DIR/, else in /usr/share/datasets/<name>/. */
em_dataset *em_dataset_open(const char *spec, em_split split, int label_column);
void em_dataset_free(em_dataset *ds);
/* The class names of a named dataset ("fashion-mnist", "mnist") without opening it
 * (for labelling predictions), with their count in *num_classes; NULL if unknown. */
const char *const *em_dataset_class_names(const char *name, int *num_classes);
/* The examples at idx[0..n) as a float tensor [n, item_shape...] and their labels. */
em_tensor *em_dataset_gather(const em_dataset *ds, const int64_t *idx, int64_t n,
                             em_arena *arena, int32_t *labels_out);
/* Reshapes items (e.g. 784 features to 1x28x28); numel must agree. */
int em_dataset_set_item_shape(em_dataset *ds, int ndim, const int64_t *shape);

/* ---- views: subsets without copying the examples --------------------------------- */
/* The examples idx[0..n) of ds (in that order) as a dataset of their own. Pixels and
 * features stay where they are (ds, or the dataset ds is a view of, must outlive the
 * view); the view holds its labels and an index. Free it with em_dataset_free. */
em_dataset *em_dataset_subset(const em_dataset *ds, const int64_t *idx, int64_t n, const char *what);
/* A seeded random split: *val gets round(fraction * count) examples (at least one),
 * *train the rest, each in the dataset's order. The same seed gives the same split. */
int em_dataset_split(const em_dataset *ds, double fraction, uint64_t seed, em_dataset **train, em_dataset **val);
/* n examples drawn at random with the seed, in the dataset's order; for the same seed a
 * smaller sample is part of a larger one (nested subsets, for learning curves). */
em_dataset *em_dataset_sample(const em_dataset *ds, int64_t n, uint64_t seed);
/* The examples of the listed classes, relabelled 0..n_classes-1 in the order listed
 * (a transfer task: "classes 5-9"), in the dataset's order; with per_class > 0, a
 * seeded sample of at most that many of each class. Errors name a class that is out of
 * range, listed twice or has no example. */
em_dataset *em_dataset_select_classes(const em_dataset *ds, const int *classes, int n_classes,
                                      int64_t per_class, uint64_t seed);

/* ---- batching ---------------------------------------------------------------------- */
typedef struct em_batch {
    em_tensor *x;       /* [n, item_shape...] in the step arena */
    const int32_t *y;   /* n labels, valid until the next call */
    int64_t n;
    int64_t index;      /* batch number within the epoch */
} em_batch;

typedef struct em_loader em_loader;

/* Visits every example once per epoch, in file order or shuffled with a seeded
 * generator; the last partial batch is included. Each epoch shuffles the identity
 * order, so the generator's state when an epoch starts fixes that epoch's order. */
em_loader *em_loader_new(const em_dataset *ds, int64_t batch_size, bool shuffle, uint64_t seed);
void em_loader_free(em_loader *l);
/* Fills b with the next batch (x in em_step_arena()); false at the end of the epoch
 * (and on running out of memory, with an error set). */
bool em_loader_next(em_loader *l, em_batch *b);
/* Starts the next epoch (reshuffling when shuffling). */
void em_loader_reset(em_loader *l);
int64_t em_loader_batches(const em_loader *l);
em_rng *em_loader_rng(em_loader *l);

/* Where a loader stands, for checkpoints: the generator state the current epoch's order
 * was drawn from, and how many of its batches were delivered. A loader over the same
 * dataset, batch size and shuffling that seeks there continues with exactly the batches
 * that would have come next. */
typedef struct em_loader_position {
    em_rng epoch_rng;
    int64_t batches_done;
} em_loader_position;

em_loader_position em_loader_tell(const em_loader *l);
/* EM_ERR (loader unchanged) when batches_done exceeds the batches of an epoch. */
int em_loader_seek(em_loader *l, const em_loader_position *pos);

#ifdef __cplusplus
}
#endif
#endif
