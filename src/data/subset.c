/* Views of a dataset: a validation split, a training subset, a learning curve's sample.
 * A view keeps an index into the examples of the dataset it came from (a view of a view
 * points straight at the original rows) and its own copy of the labels, so that code
 * reading ds->labels[i] works on views unchanged; only the gather looks at the index. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "ember/error.h"

em_dataset *em_dataset_subset(const em_dataset *ds, const int64_t *idx, int64_t n, const char *what)
{
    if (!ds || (n > 0 && !idx) || n < 1) {
        em_error("em_dataset_subset: needs a dataset and at least one example index (got %lld)", (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->count) {
            em_error("%s: subset index %lld at position %lld is out of range (%lld examples)", ds->source,
                     (long long)idx[i], (long long)i, (long long)ds->count);
            return NULL;
        }
    em_dataset *view = em_dataset_alloc();
    if (!view)
        return NULL;
    em_dataset_storage *st = em_dataset_storage_of(view);
    st->labels = malloc((size_t)n * sizeof *st->labels);
    st->index = malloc((size_t)n * sizeof *st->index);
    if (!st->labels || !st->index) {
        em_dataset_free(view);
        em_error("%s: out of memory for a view of %lld examples", ds->source, (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        st->labels[i] = ds->labels[idx[i]];
        st->index[i] = ds->index ? ds->index[idx[i]] : idx[i];
    }
    view->count = n;
    view->item_ndim = ds->item_ndim;
    memcpy(view->item_shape, ds->item_shape, sizeof view->item_shape);
    view->item_numel = ds->item_numel;
    view->pixels = ds->pixels;
    view->features = ds->features;
    view->labels = st->labels;
    view->index = st->index;
    view->num_classes = ds->num_classes;
    view->class_names = ds->class_names;
    /* The parent's name first, cut so that the description of the view always fits. */
    snprintf(view->source, sizeof view->source, "%.180s (%s: %lld of %lld)", ds->source,
             what && what[0] ? what : "subset", (long long)n, (long long)ds->count);
    return view;
}

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The dataset's indices in a seeded random order (malloc'd). */
static int64_t *shuffled_indices(const em_dataset *ds, uint64_t seed)
{
    int64_t *order = malloc((size_t)ds->count * sizeof *order);
    if (!order) {
        em_error("%s: out of memory shuffling %lld indices", ds->source, (long long)ds->count);
        return NULL;
    }
    for (int64_t i = 0; i < ds->count; i++)
        order[i] = i;
    em_rng rng;
    em_rng_seed(&rng, seed);
    em_rng_shuffle(&rng, order, ds->count);
    return order;
}

int em_dataset_split(const em_dataset *ds, double fraction, uint64_t seed, em_dataset **train, em_dataset **val)
{
    if (train)
        *train = NULL;
    if (val)
        *val = NULL;
    if (!ds || !train || !val)
        return em_error("em_dataset_split: needs a dataset and two outputs");
    if (!(fraction > 0.0 && fraction < 1.0))
        return em_error("%s: the validation fraction must be between 0 and 1 (exclusive), got %g", ds->source,
                        fraction);
    int64_t n_val = (int64_t)llround(fraction * (double)ds->count);
    if (n_val < 1)
        n_val = 1;
    if (n_val >= ds->count)
        return em_error("%s: a validation fraction of %g leaves no training examples out of %lld", ds->source,
                        fraction, (long long)ds->count);
    int64_t *order = shuffled_indices(ds, seed);
    if (!order)
        return EM_ERR;
    /* Each part in the dataset's order: evaluation reads memory forwards, and the
     * training loader shuffles anyway. */
    qsort(order, (size_t)n_val, sizeof *order, compare_int64);
    qsort(order + n_val, (size_t)(ds->count - n_val), sizeof *order, compare_int64);
    *val = em_dataset_subset(ds, order, n_val, "validation split");
    *train = *val ? em_dataset_subset(ds, order + n_val, ds->count - n_val, "training part") : NULL;
    free(order);
    if (!*train) {
        em_dataset_free(*val);
        *val = NULL;
        return EM_ERR;
    }
    return EM_OK;
}

em_dataset *em_dataset_sample(const em_dataset *ds, int64_t n, uint64_t seed)
{
    if (!ds) {
        em_error("em_dataset_sample: no dataset");
        return NULL;
    }
    if (n < 1 || n > ds->count) {
        em_error("%s: cannot sample %lld of %lld examples", ds->source, (long long)n, (long long)ds->count);
        return NULL;
    }
    int64_t *order = shuffled_indices(ds, seed);
    if (!order)
        return NULL;
    qsort(order, (size_t)n, sizeof *order, compare_int64);
    em_dataset *view = em_dataset_subset(ds, order, n, "sample");
    free(order);
    return view;
}
