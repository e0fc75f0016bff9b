/* IDX files (the MNIST format): a big-endian magic 0x0000TTNN (TT the element type,
 * NN the number of dimensions), NN big-endian uint32 dimensions, then the elements.
 * zlib's gzread reads plain and gzip-compressed files alike (it decides by the 1f 8b
 * magic, not by the name), so the .gz files Debian ships load without unpacking. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/data_internal.h"
#include "ember/error.h"

enum {
    IDX_TYPE_UBYTE = 0x08,
    IDX_MAGIC_IMAGES = 0x00000803, /* unsigned bytes, 3 dimensions: count, rows, cols */
    IDX_MAGIC_LABELS = 0x00000801, /* unsigned bytes, 1 dimension: count */
};

/* Larger than zlib's 8 KB default: the 26 MB training images inflate noticeably faster. */
#define IDX_GZ_BUFFER (256u * 1024u)
/* The first allocation for the elements; it doubles as data actually arrives, so that
 * a header claiming terabytes costs nothing unless the file really holds them. */
#define IDX_INITIAL_CAPACITY ((size_t)1 << 20)

typedef struct idx_file {
    gzFile gz;
    const char *path;
    uint32_t magic;
    int ndim;
    uint32_t dims[4];
    int64_t header_bytes;
} idx_file;

static uint32_t read_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static const char *compression_note(gzFile gz) {
    return gzdirect(gz) ? "" : " (after gzip decompression)";
}

static const char gz_ends_early[] = "the gzip stream ends early";

/* zlib's messages start with the path, which ours already name. */
static const char *without_path(const char *msg, const char *path) {
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') return msg + n + 2;
    return msg;
}

/* Reads up to n bytes; returns how many arrived. Fewer than n means the end of the data,
 * or a damaged file that *damaged then describes (gz_ends_early for a cut-off gzip
 * stream, which is a truncation like any other). */
static int64_t read_some(gzFile gz, const char *path, void *dst, int64_t n,
                         const char **damaged) {
    int64_t got = 0;
    *damaged = NULL;
    while (got < n) {
        int64_t want = n - got;
        if (want > (1 << 30)) want = 1 << 30;
        int r = gzread(gz, (char *)dst + got, (unsigned)want);
        if (r <= 0) {
            /* gzread reports a cut-off gzip stream as an end with an error pending. */
            int code = Z_OK;
            const char *msg = gzerror(gz, &code);
            if (code == Z_BUF_ERROR) *damaged = gz_ends_early;
            else if (code != Z_OK) *damaged = without_path(msg, path);
            return got;
        }
        got += r;
    }
    return got;
}

/* The error for `got` bytes where `expected` were due. */
static int short_read_error(const idx_file *f, const char *kind, const char *what,
                            int64_t expected, int64_t got, const char *damaged) {
    if (damaged && damaged != gz_ends_early) {
        /* zlib cannot say how much of the failing read was good, so no offset. */
        return em_error("cannot read %s file '%s': %s%s", kind, f->path, damaged,
                        gzdirect(f->gz) ? "" : " (damaged gzip data)");
    }
    return em_error("%s file '%s' is truncated: expected %lld bytes (%s), got %lld%s%s%s", kind,
                    f->path, (long long)expected, what, (long long)got, compression_note(f->gz),
                    damaged ? ": " : "", damaged ? damaged : "");
}

static int idx_open(idx_file *f, const char *path, uint32_t expected_magic, const char *kind) {
    memset(f, 0, sizeof *f);
    f->path = path;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return em_error("%s file '%s' is a directory", kind, path);
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz) {
        return em_error("cannot open %s file '%s': %s", kind, path,
                        errno ? strerror(errno) : "out of memory");
    }
    gzbuffer(f->gz, IDX_GZ_BUFFER);

    unsigned char head[4 + 4 * 4];
    const char *damaged = NULL;
    int64_t got = read_some(f->gz, path, head, 4, &damaged);
    if (got == 0 && !damaged) {
        return em_error("%s file '%s' is empty%s", kind, path, compression_note(f->gz));
    }
    if (got < 4) return short_read_error(f, kind, "an IDX magic number", 4, got, damaged);
    f->magic = read_be32(head);
    if (f->magic != expected_magic) {
        const char *hint = "";
        if (expected_magic == IDX_MAGIC_IMAGES && f->magic == IDX_MAGIC_LABELS)
            hint = "; it looks like a labels file (are images and labels swapped?)";
        else if (expected_magic == IDX_MAGIC_LABELS && f->magic == IDX_MAGIC_IMAGES)
            hint = "; it looks like an images file (are images and labels swapped?)";
        else if ((f->magic >> 16) == 0 && ((f->magic >> 8) & 0xff) != IDX_TYPE_UBYTE)
            hint = "; only unsigned-byte (type 0x08) IDX files are supported";
        else if ((f->magic >> 16) != 0)
            hint = "; not an IDX file";
        return em_error("%s file '%s': bad magic 0x%08x, expected 0x%08x (IDX, unsigned bytes, "
                        "%u dimension%s)%s", kind, path, (unsigned)f->magic,
                        (unsigned)expected_magic, (unsigned)(expected_magic & 0xff),
                        (expected_magic & 0xff) == 1 ? "" : "s", hint);
    }
    f->ndim = (int)(f->magic & 0xff);
    int64_t dim_bytes = 4 * (int64_t)f->ndim;
    got = read_some(f->gz, path, head + 4, dim_bytes, &damaged);
    if (got < dim_bytes) {
        char what[64];
        snprintf(what, sizeof what, "the IDX header with %d dimensions", f->ndim);
        return short_read_error(f, kind, what, 4 + dim_bytes, 4 + got, damaged);
    }
    for (int i = 0; i < f->ndim; i++) f->dims[i] = read_be32(head + 4 + 4 * i);
    f->header_bytes = 4 + dim_bytes;
    return EM_OK;
}

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Reads exactly `expected` element bytes into a buffer grown as data arrives, then
 * checks that nothing follows them. */
static uint8_t *idx_read_elements(idx_file *f, int64_t expected, const char *kind,
                                  const char *layout) {
    size_t capacity = (size_t)expected < IDX_INITIAL_CAPACITY ? (size_t)expected
                                                               : IDX_INITIAL_CAPACITY;
    uint8_t *buf = malloc(capacity ? capacity : 1);
    if (!buf) {
        em_error("out of memory reading %s file '%s'", kind, f->path);
        return NULL;
    }
    int64_t got = 0;
    const char *damaged = NULL;
    while (got < expected) {
        if ((size_t)got == capacity) {
            size_t grown = capacity * 2;
            if (grown > (size_t)expected) grown = (size_t)expected;
            uint8_t *bigger = realloc(buf, grown);
            if (!bigger) {
                free(buf);
                em_error("out of memory reading %s file '%s' (%lld bytes)", kind, f->path,
                         (long long)expected);
                return NULL;
            }
            buf = bigger;
            capacity = grown;
        }
        int64_t want = (int64_t)capacity - got;
        int64_t n = read_some(f->gz, f->path, buf + got, want, &damaged);
        got += n;
        if (n < want) break;
    }
    if (got < expected) {
        free(buf);
        char what[200];
        snprintf(what, sizeof what, "%lld-byte header + %s", (long long)f->header_bytes, layout);
        short_read_error(f, kind, what, f->header_bytes + expected, f->header_bytes + got,
                         damaged);
        return NULL;
    }
    unsigned char extra;
    int64_t more = read_some(f->gz, f->path, &extra, 1, &damaged);
    if (more > 0 || damaged) {
        free(buf);
        if (damaged == gz_ends_early)
            em_error("%s file '%s' is truncated: the gzip stream ends before its checksum", kind,
                     f->path);
        else if (damaged)
            short_read_error(f, kind, "", 0, f->header_bytes + expected, damaged);
        else
            em_error("%s file '%s' is longer than its header says: expected %lld bytes "
                     "(%lld-byte header + %s)%s", kind, f->path,
                     (long long)(f->header_bytes + expected), (long long)f->header_bytes,
                     layout, compression_note(f->gz));
        return NULL;
    }
    return buf;
}

/* Image bytes fit in memory only well below this; it also keeps every product exact. */
#define IDX_MAX_ELEMENTS ((int64_t)1 << 40)

em_dataset *em_dataset_load_idx(const char *images_path, const char *labels_path) {
    if (!images_path || !labels_path) {
        em_error("IDX dataset: images and labels paths are both required");
        return NULL;
    }
    em_dataset *ds = NULL;
    idx_file images, labels;
    memset(&labels, 0, sizeof labels);
    char layout[128];

    if (idx_open(&images, images_path, IDX_MAGIC_IMAGES, "images") != EM_OK) goto fail;
    int64_t count = images.dims[0], rows = images.dims[1], cols = images.dims[2];
    if (count == 0 || rows == 0 || cols == 0) {
        em_error("images file '%s': header declares %lld images of %lldx%lld pixels; every "
                 "dimension must be positive", images_path, (long long)count, (long long)rows,
                 (long long)cols);
        goto fail;
    }
    /* Both are below 2^32, so the product fits in 64 bits unsigned (not always signed). */
    uint64_t item_pixels = (uint64_t)rows * (uint64_t)cols;
    if (item_pixels > (uint64_t)IDX_MAX_ELEMENTS || count > IDX_MAX_ELEMENTS / (int64_t)item_pixels) {
        em_error("images file '%s': header declares %lld images of %lldx%lld pixels, too "
                 "large to hold in memory", images_path, (long long)count, (long long)rows,
                 (long long)cols);
        goto fail;
    }
    int64_t item_numel = (int64_t)item_pixels;
    snprintf(layout, sizeof layout, "%lld images x %lld x %lld pixels", (long long)count,
             (long long)rows, (long long)cols);

    /* The labels header first: a count mismatch is found before inflating 47 MB. */
    if (idx_open(&labels, labels_path, IDX_MAGIC_LABELS, "labels") != EM_OK) goto fail;
    if ((int64_t)labels.dims[0] != count) {
        em_error("images file '%s' holds %lld images but labels file '%s' holds %lld labels",
                 images_path, (long long)count, labels_path, (long long)labels.dims[0]);
        goto fail;
    }

    ds = em_dataset_alloc();
    if (!ds) goto fail;
    em_dataset_storage *st = em_dataset_storage_of(ds);
    st->pixels = idx_read_elements(&images, count * item_numel, "images", layout);
    if (!st->pixels) goto fail;

    snprintf(layout, sizeof layout, "%lld one-byte labels", (long long)count);
    uint8_t *raw_labels = idx_read_elements(&labels, count, "labels", layout);
    if (!raw_labels) goto fail;
    st->labels = malloc((size_t)count * sizeof *st->labels);
    if (!st->labels) {
        free(raw_labels);
        em_error("out of memory reading labels file '%s'", labels_path);
        goto fail;
    }
    for (int64_t i = 0; i < count; i++) st->labels[i] = raw_labels[i];
    free(raw_labels);
    idx_close(&images);
    idx_close(&labels);

    ds->count = count;
    /* Channels first, so that a convolution takes the items as they are and an MLP's
     * flatten or first linear layer sees rows*cols features. */
    ds->item_ndim = 3;
    ds->item_shape[0] = 1;
    ds->item_shape[1] = rows;
    ds->item_shape[2] = cols;
    ds->item_numel = item_numel;
    snprintf(ds->source, sizeof ds->source, "%s, %s", images_path, labels_path);
    em_dataset_publish(ds);
    ds->num_classes = em_labels_num_classes(ds->labels, count, labels_path);
    return ds;

fail:
    idx_close(&images);
    idx_close(&labels);
    em_dataset_free(ds);
    return NULL;
}
