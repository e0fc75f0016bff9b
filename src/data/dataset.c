/* Datasets by name: the spec strings the CLI and the C API share, where the named
 * datasets live on disk, and the lifetime of a dataset's buffers. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "ember/error.h"

em_dataset *em_dataset_alloc(void) {
    em_dataset *ds = calloc(1, sizeof *ds);
    em_dataset_storage *st = calloc(1, sizeof *st);
    if (!ds || !st) {
        free(ds);
        free(st);
        em_error("out of memory allocating a dataset");
        return NULL;
    }
    ds->storage = st;
    return ds;
}

em_dataset_storage *em_dataset_storage_of(em_dataset *ds) {
    return (em_dataset_storage *)ds->storage;
}

void em_dataset_publish(em_dataset *ds) {
    em_dataset_storage *st = em_dataset_storage_of(ds);
    ds->pixels = st->pixels;
    ds->features = st->features;
    ds->labels = st->labels;
}

void em_dataset_free(em_dataset *ds) {
    if (!ds) return;
    em_dataset_storage *st = em_dataset_storage_of(ds);
    if (st) {
        free(st->pixels);
        free(st->features);
        free(st->labels);
        free(st->index);
        free(st);
    }
    free(ds);
}

int em_labels_num_classes(const int32_t *labels, int64_t count, const char *source) {
    int32_t max = -1;
    for (int64_t i = 0; i < count; i++) {
        if (labels[i] < 0) {
            return em_error("%s: example %lld has the negative label %d", source, (long long)i,
                            (int)labels[i]);
        }
        if (labels[i] > max) max = labels[i];
    }
    return max + 1;
}

int em_dataset_set_item_shape(em_dataset *ds, int ndim, const int64_t *shape) {
    if (!ds || !shape) return em_error("em_dataset_set_item_shape: no dataset or shape");
    if (ndim < 1 || ndim > EM_MAX_DIMS - 1) {
        return em_error("%s: an item shape needs 1 to %d dimensions (the batch takes one), "
                        "got %d", ds->source, EM_MAX_DIMS - 1, ndim);
    }
    if (em_check_shape(ndim, shape) != EM_OK) {
        return em_error_prefix("%s: item shape: ", ds->source);
    }
    int64_t numel = em_shape_numel(ndim, shape);
    if (numel != ds->item_numel) {
        return em_error("%s: cannot view items of shape %s (%lld values) as %s (%lld values)",
                        ds->source, em_dims_str(ds->item_ndim, ds->item_shape),
                        (long long)ds->item_numel, em_dims_str(ndim, shape), (long long)numel);
    }
    ds->item_ndim = ndim;
    for (int i = 0; i < EM_MAX_DIMS; i++) ds->item_shape[i] = i < ndim ? shape[i] : 0;
    return EM_OK;
}

/* ---- named datasets ------------------------------------------------------------- */

static const char *const fashion_mnist_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};
static const char *const mnist_classes[10] = {"0", "1", "2", "3", "4",
                                              "5", "6", "7", "8", "9"};

typedef struct named_dataset {
    const char *name;      /* spec and directory name */
    const char *package;   /* the Debian package that installs it, or NULL */
    const char *const *class_names;
    int num_classes;
} named_dataset;

static const named_dataset named_datasets[] = {
    {"fashion-mnist", "dataset-fashion-mnist", fashion_mnist_classes, 10},
    {"mnist", NULL, mnist_classes, 10},
};

#define SYSTEM_DATASET_DIR "/usr/share/datasets"

/* "fashion-mnist", "Fashion_MNIST" and "fashionmnist" all name the same dataset. */
static bool same_name(const char *spec, const char *name) {
    for (;;) {
        while (*spec == '-' || *spec == '_') spec++;
        while (*name == '-') name++;
        if (!*spec || !*name) return !*spec && !*name;
        if (tolower((unsigned char)*spec) != *name) return false;
        spec++, name++;
    }
}

const char *const *em_dataset_class_names(const char *name, int *num_classes) {
    for (size_t i = 0; name && i < sizeof named_datasets / sizeof named_datasets[0]; i++) {
        if (same_name(name, named_datasets[i].name)) {
            if (num_classes) *num_classes = named_datasets[i].num_classes;
            return named_datasets[i].class_names;
        }
    }
    return NULL;
}

/* path = dir/stem or dir/stem.gz, whichever exists (the plain file first). */
static bool find_file(const char *dir, const char *stem, char *path, size_t size) {
    int n = snprintf(path, size, "%s/%s", dir, stem);
    if (n < 0 || (size_t)n >= size) return false;
    if (access(path, F_OK) == 0) return true;
    n = snprintf(path, size, "%s/%s.gz", dir, stem);
    return n >= 0 && (size_t)n < size && access(path, F_OK) == 0;
}

static em_dataset *open_named(const named_dataset *nd, em_split split) {
    const char *prefix = split == EM_SPLIT_TEST ? "t10k" : "train";
    char images_stem[64], labels_stem[64];
    snprintf(images_stem, sizeof images_stem, "%s-images-idx3-ubyte", prefix);
    snprintf(labels_stem, sizeof labels_stem, "%s-labels-idx1-ubyte", prefix);

    /* $EMBER_DATA_DIR/<name>, $EMBER_DATA_DIR itself, then the system directory. */
    char dirs[3][1024];
    int ndirs = 0;
    const char *env = getenv("EMBER_DATA_DIR");
    if (env && strlen(env) > 900) {
        em_error("EMBER_DATA_DIR is too long (%zu characters)", strlen(env));
        return NULL;
    }
    if (env && *env) {
        snprintf(dirs[ndirs++], sizeof dirs[0], "%s/%s", env, nd->name);
        snprintf(dirs[ndirs++], sizeof dirs[0], "%s", env);
    }
    snprintf(dirs[ndirs++], sizeof dirs[0], "%s/%s", SYSTEM_DATASET_DIR, nd->name);

    char images[1100], labels[1100];
    for (int d = 0; d < ndirs; d++) {
        if (!find_file(dirs[d], images_stem, images, sizeof images)) continue;
        if (!find_file(dirs[d], labels_stem, labels, sizeof labels)) {
            em_error("%s: found '%s' but not %s or %s.gz beside it", nd->name, images,
                     labels_stem, labels_stem);
            return NULL;
        }
        em_dataset *ds = em_dataset_load_idx(images, labels);
        if (!ds) {
            em_error_prefix("%s %s split: ", nd->name, prefix);
            return NULL;
        }
        if (ds->num_classes > nd->num_classes) {
            em_error("%s: labels file '%s' has the label %d; %s has classes 0..%d", nd->name,
                     labels, ds->num_classes - 1, nd->name, nd->num_classes - 1);
            em_dataset_free(ds);
            return NULL;
        }
        ds->num_classes = nd->num_classes;
        ds->class_names = nd->class_names;
        return ds;
    }

    char tried[3500];
    int len = 0;
    for (int d = 0; d < ndirs; d++)
        len += snprintf(tried + len, sizeof tried - (size_t)len, "%s%s/", d ? ", " : "", dirs[d]);
    char hint[160] = "";
    if (nd->package)
        snprintf(hint, sizeof hint, "; install it with `apt-get install %s` or", nd->package);
    else
        snprintf(hint, sizeof hint, ";");
    em_error("%s: %s(.gz) not found in %s%s set EMBER_DATA_DIR to a directory holding "
             "%s-{images-idx3,labels-idx1}-ubyte(.gz)", nd->name, images_stem, tried, hint,
             prefix);
    return NULL;
}

static const char dataset_forms[] =
    "fashion-mnist, mnist, idx:IMAGES,LABELS (two IDX files) or csv:FILE";

em_dataset *em_dataset_open(const char *spec, em_split split, int label_column) {
    if (!spec || !*spec) {
        em_error("no dataset given: expected %s", dataset_forms);
        return NULL;
    }
    for (size_t i = 0; i < sizeof named_datasets / sizeof named_datasets[0]; i++)
        if (same_name(spec, named_datasets[i].name)) return open_named(&named_datasets[i], split);

    if (strncasecmp(spec, "idx:", 4) == 0) {
        const char *images = spec + 4;
        const char *comma = strrchr(images, ',');
        if (!comma || comma == images || !comma[1]) {
            em_error("dataset '%s': expected idx:IMAGES,LABELS (two paths separated by a comma)",
                     spec);
            return NULL;
        }
        char images_path[1024];
        size_t n = (size_t)(comma - images);
        if (n >= sizeof images_path) {
            em_error("dataset '%s': the images path is too long", spec);
            return NULL;
        }
        memcpy(images_path, images, n);
        images_path[n] = '\0';
        return em_dataset_load_idx(images_path, comma + 1);
    }
    if (strncasecmp(spec, "csv:", 4) == 0) {
        if (!spec[4]) {
            em_error("dataset '%s': expected csv:FILE", spec);
            return NULL;
        }
        return em_dataset_load_csv(spec + 4, label_column);
    }

    if (access(spec, F_OK) == 0) {
        em_error("unknown dataset '%s': expected %s ('%s' is a file: write csv:%s, or "
                 "idx:IMAGES,LABELS for IDX files)", spec, dataset_forms, spec, spec);
    } else {
        em_error("unknown dataset '%s': expected %s", spec, dataset_forms);
    }
    return NULL;
}
