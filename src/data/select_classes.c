/* A view of some classes of a dataset, relabelled from 0, with at most so many examples
 * of each: the data of a transfer-learning task ("learn classes 5-9 from 100 images of
 * each") carved out of a labelled dataset without copying its examples. */
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "ember/error.h"

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

em_dataset *em_dataset_select_classes(const em_dataset *ds, const int *classes, int n_classes,
                                      int64_t per_class, uint64_t seed)
{
    if (!ds || !classes || n_classes < 1) {
        em_error("selecting classes: needs a dataset and at least one class");
        return NULL;
    }
    int *new_label = malloc((size_t)(ds->num_classes > 0 ? ds->num_classes : 1) * sizeof *new_label);
    int64_t *idx = malloc((size_t)ds->count * sizeof *idx);
    int64_t *of_class = malloc((size_t)ds->count * sizeof *of_class);
    em_dataset *view = NULL;
    if (!new_label || !idx || !of_class) {
        em_error("%s: out of memory selecting classes", ds->source);
        goto done;
    }
    for (int c = 0; c < ds->num_classes; c++)
        new_label[c] = -1;
    for (int k = 0; k < n_classes; k++) {
        int c = classes[k];
        if (c < 0 || c >= ds->num_classes) {
            em_error("%s has classes 0 to %d; there is no class %d", ds->source, ds->num_classes - 1, c);
            goto done;
        }
        if (new_label[c] >= 0) {
            em_error("class %d is listed twice", c);
            goto done;
        }
        new_label[c] = k;
    }
    /* Class by class: every example, or a seeded sample of per_class in file order. */
    em_rng rng;
    em_rng_seed(&rng, seed);
    int64_t n = 0;
    for (int k = 0; k < n_classes; k++) {
        int64_t m = 0;
        for (int64_t i = 0; i < ds->count; i++)
            if (ds->labels[i] == classes[k])
                of_class[m++] = i;
        if (m == 0) {
            em_error("%s has no example of class %d", ds->source, classes[k]);
            goto done;
        }
        if (per_class > 0 && m > per_class) {
            em_rng_shuffle(&rng, of_class, m);
            m = per_class;
        }
        memcpy(idx + n, of_class, (size_t)m * sizeof *idx);
        n += m;
    }
    qsort(idx, (size_t)n, sizeof *idx, compare_int64);
    char what[64];
    snprintf(what, sizeof what, "%d classes", n_classes);
    view = em_dataset_subset(ds, idx, n, what);
    if (!view)
        goto done;
    int32_t *labels = em_dataset_storage_of(view)->labels;
    for (int64_t i = 0; i < n; i++)
        labels[i] = new_label[labels[i]];
    view->num_classes = n_classes;
    view->class_names = NULL; /* the parent's names are numbered the old way */
done:
    free(new_label);
    free(idx);
    free(of_class);
    return view;
}
