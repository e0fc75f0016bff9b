/* Shared by the dataset readers: one way to allocate a dataset and its owned buffers,
 * so that em_dataset_free is the only release path whatever the format. */
#ifndef EMBER_DATA_INTERNAL_H
#define EMBER_DATA_INTERNAL_H

#include "ember/data.h"

typedef struct em_dataset_storage {
    uint8_t *pixels;
    float *features;
    int32_t *labels;
    int64_t *index;    /* a view's rows in the dataset it was made from */
} em_dataset_storage;

/* A dataset with no examples yet and zeroed storage; NULL and an error when out of
 * memory. The reader fills storage's buffers and then calls em_dataset_publish. */
em_dataset *em_dataset_alloc(void);
em_dataset_storage *em_dataset_storage_of(em_dataset *ds);
/* Points the public const fields at the storage buffers. */
void em_dataset_publish(em_dataset *ds);

/* Largest label + 1, or an error naming `source` when a label is negative. */
int em_labels_num_classes(const int32_t *labels, int64_t count, const char *source);

#endif
