/* What the dataset fuzz targets do with a dataset that loads: the checks and the work of
 * a training run's first batches, so that a reader accepting something inconsistent
 * (a count its buffers do not hold, a label past num_classes) shows up here. */
#ifndef EMBER_FUZZ_DATASET_H
#define EMBER_FUZZ_DATASET_H

#include <stdlib.h>

#include "ember.h"

static inline void fuzz_use_dataset(em_dataset *ds)
{
    if (ds->count < 1 || ds->item_numel < 1 || !ds->labels || ds->num_classes < 1 ||
        (!ds->pixels && !ds->features))
        abort();
    for (int64_t i = 0; i < ds->count; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= ds->num_classes)
            abort();
    if (ds->item_numel > (1 << 16))
        return; /* the gathers below would copy more than they test */
    /* First, last and a middle example, through the loader's gather. */
    int64_t idx[3] = {0, ds->count - 1, ds->count / 2};
    int32_t labels[3];
    em_arena *arena = em_arena_create(0);
    if (!arena)
        abort();
    em_tensor *x = em_dataset_gather(ds, idx, 3, arena, labels);
    if (!x || x->shape[0] != 3 || labels[1] != ds->labels[ds->count - 1])
        abort();
    for (int64_t i = 0; ds->pixels && i < x->numel; i++)
        if (!(x->data[i] >= 0.0f && x->data[i] <= 1.0f))
            abort(); /* pixels scale to [0, 1] */
    em_arena_destroy(arena);
    /* A few shuffled batches of two, then the same items viewed flat. */
    em_loader *loader = em_loader_new(ds, 2, true, 7);
    if (!loader)
        abort();
    em_batch b;
    for (int i = 0; i < 3 && em_loader_next(loader, &b); i++)
        em_step_end();
    em_loader_free(loader);
    em_step_end();
    int64_t flat = ds->item_numel;
    if (em_dataset_set_item_shape(ds, 1, &flat) != EM_OK)
        abort();
}

#endif
