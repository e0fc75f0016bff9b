/* Text for language models: files read whole as bytes, Debian's fortunes corpus, the
 * train/validation split and the unigram entropy that a model has to beat. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ember/error.h"
#include "ember/text.h"

#define DEFAULT_FORTUNES_DIR "/usr/share/games/fortunes"
/* Larger texts are refused rather than read: ids are int32, and a typo in a path should
 * not fill the memory. */
#define MAX_TEXT_BYTES (INT64_C(1) << 31)

/* Cut to the field's size. */
static void set_source(em_text *t, const char *source)
{
    size_t n = strnlen(source, sizeof t->source - 1);
    memcpy(t->source, source, n);
    t->source[n] = '\0';
}

em_text *em_text_from_bytes(const void *bytes, int64_t size, const char *source)
{
    if (!bytes || size < 1) {
        em_error("text %s: empty (no bytes)", source ? source : "");
        return NULL;
    }
    em_text *t = calloc(1, sizeof *t);
    uint8_t *copy = t ? malloc((size_t)size) : NULL;
    if (!copy) {
        free(t);
        em_error("text %s: out of memory for %lld bytes", source ? source : "", (long long)size);
        return NULL;
    }
    memcpy(copy, bytes, (size_t)size);
    t->bytes = copy;
    t->size = size;
    t->storage = copy;
    set_source(t, source ? source : "text");
    return t;
}

void em_text_free(em_text *t)
{
    if (!t)
        return;
    free(t->storage);
    free(t);
}

/* Appends the file's bytes to *buf (growing it); EM_ERR naming the path. */
static int append_file(const char *path, uint8_t **buf, int64_t *size, int64_t *cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return em_error("cannot open text file %s: %s", path, strerror(errno));
    int rc = EM_OK;
    for (;;) {
        if (*cap - *size < 65536) {
            int64_t new_cap = *cap ? *cap * 2 : (int64_t)1 << 20;
            uint8_t *grown = new_cap <= MAX_TEXT_BYTES ? realloc(*buf, (size_t)new_cap) : NULL;
            if (!grown) {
                rc = new_cap > MAX_TEXT_BYTES ? em_error("%s: larger than %lld bytes", path, (long long)MAX_TEXT_BYTES)
                                              : em_error("%s: out of memory", path);
                break;
            }
            *buf = grown;
            *cap = new_cap;
        }
        errno = 0;
        size_t n = fread(*buf + *size, 1, (size_t)(*cap - *size), f);
        *size += (int64_t)n;
        if (n == 0) {
            if (ferror(f))
                rc = em_error("cannot read text file %s: %s", path, errno ? strerror(errno) : "read error");
            break;
        }
    }
    fclose(f);
    return rc;
}

static em_text *take(uint8_t *buf, int64_t size, const char *source)
{
    em_text *t = calloc(1, sizeof *t);
    if (!t) {
        free(buf);
        em_error("text %s: out of memory", source);
        return NULL;
    }
    t->bytes = buf;
    t->storage = buf;
    t->size = size;
    set_source(t, source);
    return t;
}

em_text *em_text_load(const char *path)
{
    if (!path || !*path) {
        em_error("text: no file name given");
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        em_error("text file %s is a directory", path);
        return NULL;
    }
    uint8_t *buf = NULL;
    int64_t size = 0, cap = 0;
    if (append_file(path, &buf, &size, &cap) != EM_OK) {
        free(buf);
        return NULL;
    }
    if (size == 0) {
        free(buf);
        em_error("text file %s is empty: a language model needs text to learn from", path);
        return NULL;
    }
    return take(buf, size, path);
}

/* ---- fortunes ---------------------------------------------------------------------- */

typedef struct path_list {
    char **items;
    int64_t n, cap;
} path_list;

static bool skipped_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] == '.' || (n >= 4 && strcmp(name + n - 4, ".dat") == 0) ||
           (n >= 3 && strcmp(name + n - 3, ".u8") == 0);
}

static int collect(const char *dir, path_list *list, int depth)
{
    if (depth > 8)
        return EM_OK;
    DIR *d = opendir(dir);
    if (!d)
        return em_error("cannot read the fortunes directory %s: %s", dir, strerror(errno));
    int rc = EM_OK;
    struct dirent *e;
    while (rc == EM_OK && (e = readdir(d)) != NULL) {
        if (skipped_name(e->d_name))
            continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(len);
        if (!path) {
            rc = em_error("fortunes: out of memory");
            break;
        }
        snprintf(path, len, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0 || S_ISLNK(st.st_mode) || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
            free(path);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = collect(path, list, depth + 1);
            free(path);
            continue;
        }
        if (list->n == list->cap) {
            int64_t cap = list->cap ? list->cap * 2 : 64;
            char **grown = realloc(list->items, (size_t)cap * sizeof *grown);
            if (!grown) {
                free(path);
                rc = em_error("fortunes: out of memory");
                break;
            }
            list->items = grown;
            list->cap = cap;
        }
        list->items[list->n++] = path;
    }
    closedir(d);
    return rc;
}

static int compare_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

em_text *em_text_load_fortunes(const char *dir)
{
    if (!dir)
        dir = getenv("EMBER_FORTUNES_DIR");
    if (!dir || !*dir)
        dir = DEFAULT_FORTUNES_DIR;
    path_list list = {0};
    uint8_t *buf = NULL;
    int64_t size = 0, cap = 0;
    int rc = collect(dir, &list, 0);
    if (rc == EM_OK && list.n == 0)
        rc = em_error("no fortune files in %s (install Debian's 'fortunes' package, or set EMBER_FORTUNES_DIR)",
                      dir);
    if (rc == EM_OK)
        qsort(list.items, (size_t)list.n, sizeof *list.items, compare_paths);
    for (int64_t i = 0; rc == EM_OK && i < list.n; i++)
        rc = append_file(list.items[i], &buf, &size, &cap);
    for (int64_t i = 0; i < list.n; i++)
        free(list.items[i]);
    free(list.items);
    if (rc == EM_OK && size == 0)
        rc = em_error("the fortune files in %s are empty", dir);
    if (rc != EM_OK) {
        free(buf);
        return NULL;
    }
    char source[256];
    snprintf(source, sizeof source, "fortunes (%lld files in %s)", (long long)list.n, dir);
    return take(buf, size, source);
}

bool em_text_is_spec(const char *spec)
{
    return spec && (strcmp(spec, "fortunes") == 0 || strncmp(spec, "text:", 5) == 0);
}

em_text *em_text_open(const char *spec)
{
    if (spec && strcmp(spec, "fortunes") == 0)
        return em_text_load_fortunes(NULL);
    if (spec && strncmp(spec, "text:", 5) == 0)
        return em_text_load(spec + 5);
    em_error("'%s' is not text: use fortunes or text:FILE", spec ? spec : "(null)");
    return NULL;
}

/* ---- statistics -------------------------------------------------------------------- */

double em_text_unigram_bits(const em_text *t)
{
    if (!t || t->size < 1)
        return 0.0;
    int64_t counts[256] = {0};
    for (int64_t i = 0; i < t->size; i++)
        counts[t->bytes[i]]++;
    double bits = 0.0;
    for (int b = 0; b < 256; b++) {
        if (!counts[b])
            continue;
        double p = (double)counts[b] / (double)t->size;
        bits -= p * log2(p);
    }
    return bits;
}

int em_text_check_vocab(const em_text *t, int64_t vocab)
{
    if (vocab >= 256)
        return EM_OK;
    for (int64_t i = 0; i < t->size; i++)
        if (t->bytes[i] >= vocab)
            return em_error("%s: byte %u (0x%02x) at offset %lld is outside the model's vocabulary of %lld tokens",
                            t->source, t->bytes[i], t->bytes[i], (long long)i, (long long)vocab);
    return EM_OK;
}

/* ---- the split --------------------------------------------------------------------- */

int em_text_split(const em_text *t, double val_fraction, int64_t chunk, uint64_t seed, em_text **train,
                  em_text **val)
{
    *train = *val = NULL;
    if (!t)
        return em_error("text split: no text");
    if (!(val_fraction > 0.0 && val_fraction < 1.0))
        return em_error("text split: the validation fraction must be between 0 and 1 (exclusive), got %g",
                        val_fraction);
    if (chunk < 0)
        return em_error("text split: the chunk size must be >= 0 (0: the tail), got %lld", (long long)chunk);
    int64_t n_chunks = chunk > 0 ? (t->size + chunk - 1) / chunk : 0;
    uint8_t *in_val = NULL;
    int64_t val_size = 0;
    if (chunk == 0) {
        val_size = (int64_t)llround(val_fraction * (double)t->size);
    } else {
        /* A seeded choice of chunks: the first k of a shuffled order. */
        int64_t k = (int64_t)llround(val_fraction * (double)n_chunks);
        if (k < 1)
            k = 1;
        int64_t *order = malloc((size_t)n_chunks * sizeof *order);
        in_val = calloc((size_t)n_chunks, 1);
        if (!order || !in_val) {
            free(order);
            free(in_val);
            return em_error("text split: out of memory");
        }
        for (int64_t i = 0; i < n_chunks; i++)
            order[i] = i;
        em_rng rng;
        em_rng_seed(&rng, seed);
        em_rng_shuffle(&rng, order, n_chunks);
        for (int64_t i = 0; i < k && i < n_chunks; i++)
            in_val[order[i]] = 1;
        free(order);
        for (int64_t c = 0; c < n_chunks; c++)
            if (in_val[c])
                val_size += (c + 1) * chunk <= t->size ? chunk : t->size - c * chunk;
    }
    int64_t train_size = t->size - val_size;
    if (val_size < 2 || train_size < 2) {
        free(in_val);
        return em_error("%s: %lld bytes split %g for validation leaves %lld training and %lld validation bytes; "
                        "each part needs at least 2 (a byte and the next one to predict)",
                        t->source, (long long)t->size, val_fraction, (long long)train_size, (long long)val_size);
    }
    uint8_t *tb = malloc((size_t)train_size), *vb = malloc((size_t)val_size);
    if (!tb || !vb) {
        free(tb);
        free(vb);
        free(in_val);
        return em_error("text split: out of memory");
    }
    if (chunk == 0) {
        memcpy(tb, t->bytes, (size_t)train_size);
        memcpy(vb, t->bytes + train_size, (size_t)val_size);
    } else {
        int64_t ti = 0, vi = 0;
        for (int64_t c = 0; c < n_chunks; c++) {
            int64_t start = c * chunk, len = start + chunk <= t->size ? chunk : t->size - start;
            if (in_val[c]) {
                memcpy(vb + vi, t->bytes + start, (size_t)len);
                vi += len;
            } else {
                memcpy(tb + ti, t->bytes + start, (size_t)len);
                ti += len;
            }
        }
    }
    free(in_val);
    char source[sizeof t->source + 64]; /* cut to fit by take() */
    if (chunk == 0)
        snprintf(source, sizeof source, "the first %.4g%% of %s", 100.0 * (1.0 - val_fraction), t->source);
    else
        snprintf(source, sizeof source, "the training chunks of %s", t->source);
    *train = take(tb, train_size, source);
    if (chunk == 0)
        snprintf(source, sizeof source, "the last %.4g%% of %s", 100.0 * val_fraction, t->source);
    else
        snprintf(source, sizeof source, "the validation chunks of %s", t->source);
    *val = take(vb, val_size, source);
    if (!*train || !*val) {
        em_text_free(*train);
        em_text_free(*val);
        *train = *val = NULL;
        return EM_ERR;
    }
    return EM_OK;
}
