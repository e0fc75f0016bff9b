/* safetensors reading (mmap, every length and offset checked before use) and writing
 * (F32, atomic). The layout: u64 little-endian header length N, N bytes of JSON, then
 * the data section that every data_offsets pair indexes into. */
#include "ember/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ember/error.h"
#include "io/atomic_file.h"
#include "io/half.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ember reads and writes little-endian data in place; big-endian hosts need byte swaps"
#endif

/* The reference implementation refuses larger headers too; a bigger one is damage
 * or an attack, not a model. */
#define ST_MAX_HEADER_BYTES ((uint64_t)100 << 20)
/* Integers above 2^53 do not survive the trip through a JSON double. */
#define ST_MAX_JSON_INTEGER ((uint64_t)1 << 53)
/* Names from a file are shown in messages, but not without limit. */
#define NAME_FMT "%.200s"

typedef struct st_item {
    em_st_entry entry; /* what callers see */
    uint64_t begin, end; /* byte range within the data section */
} st_item;

struct em_st_file {
    char *path;
    unsigned char *map;
    size_t map_size;
    const unsigned char *data; /* the data section */
    uint64_t data_size;
    int n;
    st_item *items;  /* in header order */
    const st_item **by_name; /* sorted by name */
    int n_meta;
    char **meta_keys; /* in header order */
    char **meta_values;
};

static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *out = malloc(n);
    if (out)
        memcpy(out, s, n);
    return out;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* NULL when the n strings are distinct, else one that repeats. */
static const char *find_duplicate(int n, const char *const *strings, int *failed)
{
    *failed = 0;
    if (n < 2)
        return NULL;
    const char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) {
        *failed = 1;
        return NULL;
    }
    memcpy(sorted, strings, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, compare_strings);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            dup = sorted[i];
    free(sorted);
    return dup;
}

/* ---- dtypes --------------------------------------------------------------------- */

typedef struct dtype_info {
    const char *name;
    int bytes;
} dtype_info;

/* Every dtype of the safetensors format with a whole number of bytes per element, so
 * that files holding integer tensors can still be listed and checked. */
static const dtype_info known_dtypes[] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"I32", 4}, {"I16", 2},
    {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
    {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
};

static em_dtype dtype_from_name(const char *name)
{
    static const struct {
        const char *name;
        em_dtype dtype;
    } loadable[] = {
        {"F32", EM_F32}, {"F16", EM_F16}, {"BF16", EM_BF16}, {"F64", EM_F64}, {"I64", EM_I64},
        {"I32", EM_I32}, {"I16", EM_I16}, {"I8", EM_I8},     {"U8", EM_U8},   {"BOOL", EM_BOOL},
    };
    for (size_t i = 0; i < sizeof loadable / sizeof loadable[0]; i++)
        if (strcmp(name, loadable[i].name) == 0)
            return loadable[i].dtype;
    return EM_DTYPE_OTHER;
}

/* Bytes per element, 0 when the dtype is unknown (its byte count cannot be checked). */
static int dtype_bytes(const char *name)
{
    for (size_t i = 0; i < sizeof known_dtypes / sizeof known_dtypes[0]; i++)
        if (strcmp(name, known_dtypes[i].name) == 0)
            return known_dtypes[i].bytes;
    return 0;
}

/* ---- header parsing ------------------------------------------------------------- */

/* NULL when item is an integer in [0, 2^53], else what is wrong with it. */
static const char *json_to_u64(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return "is not a number";
    double d = item->valuedouble;
    if (isnan(d))
        return "is not a number";
    if (d < 0)
        return "is negative";
    if (d > (double)ST_MAX_JSON_INTEGER)
        return "is too large";
    if (d != floor(d))
        return "is not an integer";
    *out = (uint64_t)d;
    return NULL;
}

static int parse_shape(const char *path, const char *name, const cJSON *shape, em_st_entry *e)
{
    if (!shape)
        return em_error("%s: tensor '" NAME_FMT "': missing \"shape\"", path, name);
    if (!cJSON_IsArray(shape))
        return em_error("%s: tensor '" NAME_FMT "': \"shape\" is not an array", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > EM_MAX_DIMS)
        return em_error("%s: tensor '" NAME_FMT "': \"shape\" has %d dimensions, more than the "
                        "%d ember supports", path, name, ndim, EM_MAX_DIMS);
    e->ndim = ndim;
    e->numel = 1;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
        uint64_t v;
        const char *why = json_to_u64(dim, &v);
        if (why)
            return em_error("%s: tensor '" NAME_FMT "': \"shape\" dimension %d %s", path, name,
                            d, why);
        e->shape[d] = (int64_t)v;
        if (v != 0 && e->numel > INT64_MAX / (int64_t)v)
            return em_error("%s: tensor '" NAME_FMT "': \"shape\" dimension %d (%" PRIu64 ") "
                            "makes the element count overflow 64 bits", path, name, d, v);
        e->numel *= (int64_t)v;
    }
    for (; d < EM_MAX_DIMS; d++)
        e->shape[d] = 0;
    return EM_OK;
}

static int parse_entry(const em_st_file *f, const cJSON *item, st_item *out)
{
    const char *path = f->path;
    const char *name = item->string;
    em_st_entry *e = &out->entry;
    if (!cJSON_IsObject(item))
        return em_error("%s: tensor '" NAME_FMT "': entry is not a JSON object", path, name);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!dtype)
        return em_error("%s: tensor '" NAME_FMT "': missing \"dtype\"", path, name);
    if (!cJSON_IsString(dtype))
        return em_error("%s: tensor '" NAME_FMT "': \"dtype\" is not a string", path, name);
    e->dtype_name = copy_string(dtype->valuestring);
    if (!e->dtype_name)
        return em_error("%s: out of memory", path);
    e->dtype = dtype_from_name(e->dtype_name);

    if (parse_shape(path, name, cJSON_GetObjectItemCaseSensitive(item, "shape"), e) != EM_OK)
        return EM_ERR;

    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!offsets)
        return em_error("%s: tensor '" NAME_FMT "': missing \"data_offsets\"", path, name);
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return em_error("%s: tensor '" NAME_FMT "': \"data_offsets\" is not an array of two "
                        "numbers", path, name);
    const char *why = json_to_u64(offsets->child, &out->begin);
    if (why)
        return em_error("%s: tensor '" NAME_FMT "': \"data_offsets\" begin %s", path, name, why);
    why = json_to_u64(offsets->child->next, &out->end);
    if (why)
        return em_error("%s: tensor '" NAME_FMT "': \"data_offsets\" end %s", path, name, why);
    if (out->begin > out->end)
        return em_error("%s: tensor '" NAME_FMT "': \"data_offsets\" begin %" PRIu64
                        " is after end %" PRIu64, path, name, out->begin, out->end);
    if (out->end > f->data_size)
        return em_error("%s: tensor '" NAME_FMT "': \"data_offsets\" [%" PRIu64 ", %" PRIu64
                        "] out of range: the data section has %" PRIu64 " bytes (file "
                        "truncated?)", path, name, out->begin, out->end, f->data_size);

    uint64_t nbytes = out->end - out->begin;
    int elem = dtype_bytes(e->dtype_name);
    if (elem > 0) {
        /* numel * elem cannot overflow here once numel fits the range checked above */
        if ((uint64_t)e->numel > f->data_size / (uint64_t)elem ||
            (uint64_t)e->numel * (uint64_t)elem != nbytes)
            return em_error("%s: tensor '" NAME_FMT "': %" PRIu64 " bytes in \"data_offsets\" "
                            "but dtype %s and shape %s need %" PRId64 " x %d bytes", path, name,
                            nbytes, e->dtype_name, em_dims_str(e->ndim, e->shape), e->numel,
                            elem);
    }
    e->data = f->data + out->begin;
    e->nbytes = (size_t)nbytes;
    return EM_OK;
}

static int parse_metadata(em_st_file *f, const cJSON *meta)
{
    if (!cJSON_IsObject(meta))
        return em_error("%s: \"__metadata__\" is not a JSON object", f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
    f->meta_values = calloc((size_t)n + 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values)
        return em_error("%s: out of memory", f->path);
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return em_error("%s: \"__metadata__\" value of '" NAME_FMT "' is not a string",
                            f->path, kv->string);
        f->meta_keys[f->n_meta] = copy_string(kv->string);
        f->meta_values[f->n_meta] = copy_string(kv->valuestring);
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
            return em_error("%s: out of memory", f->path);
    }
    int failed;
    const char *dup = find_duplicate(f->n_meta, (const char *const *)f->meta_keys, &failed);
    if (failed)
        return em_error("%s: out of memory", f->path);
    if (dup)
        return em_error("%s: \"__metadata__\" has key '" NAME_FMT "' twice", f->path, dup);
    return EM_OK;
}

static int compare_by_name(const void *a, const void *b)
{
    const st_item *x = *(const st_item *const *)a, *y = *(const st_item *const *)b;
    return strcmp(x->entry.name, y->entry.name);
}

static int compare_by_begin(const void *a, const void *b)
{
    const st_item *x = *(const st_item *const *)a, *y = *(const st_item *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Names unique, byte ranges disjoint; builds the by-name index for em_st_find. */
static int check_layout(em_st_file *f)
{
    size_t n = (size_t)f->n;
    f->by_name = malloc((n + 1) * sizeof *f->by_name);
    const st_item **by_begin = malloc((n + 1) * sizeof *by_begin);
    if (!f->by_name || !by_begin) {
        free(by_begin);
        return em_error("%s: out of memory", f->path);
    }
    for (size_t i = 0; i < n; i++)
        f->by_name[i] = by_begin[i] = &f->items[i];
    qsort(f->by_name, n, sizeof *f->by_name, compare_by_name);
    qsort(by_begin, n, sizeof *by_begin, compare_by_begin);
    int rc = EM_OK;
    for (size_t i = 1; i < n && rc == EM_OK; i++) {
        const char *a = f->by_name[i - 1]->entry.name;
        if (strcmp(a, f->by_name[i]->entry.name) == 0)
            rc = em_error("%s: tensor '" NAME_FMT "' appears twice (duplicate name)", f->path, a);
    }
    const st_item *last = NULL; /* the non-empty range reaching furthest so far */
    for (size_t i = 0; i < n && rc == EM_OK; i++) {
        const st_item *it = by_begin[i];
        if (it->begin == it->end)
            continue;
        if (last && it->begin < last->end)
            rc = em_error("%s: tensors '" NAME_FMT "' (bytes %" PRIu64 "..%" PRIu64 ") and '"
                          NAME_FMT "' (bytes %" PRIu64 "..%" PRIu64 ") overlap", f->path,
                          last->entry.name, last->begin, last->end, it->entry.name, it->begin,
                          it->end);
        if (!last || it->end > last->end)
            last = it;
    }
    free(by_begin);
    return rc;
}

static int parse_header(em_st_file *f, const char *text, size_t len)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root)
        return em_error("%s: header is not valid JSON (error near byte %zu of %zu)", f->path,
                        end ? (size_t)(end - text) : (size_t)0, len);
    int rc = EM_OK;
    for (const char *p = end; p < text + len && rc == EM_OK; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            rc = em_error("%s: header is not valid JSON: unexpected text after the JSON object "
                          "at byte %zu of %zu", f->path, (size_t)(p - text), len);
    if (rc == EM_OK && !cJSON_IsObject(root))
        rc = em_error("%s: header is not a JSON object", f->path);

    int count = 0, seen_meta = 0;
    for (const cJSON *it = rc == EM_OK ? root->child : NULL; it && rc == EM_OK; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (seen_meta++)
                rc = em_error("%s: \"__metadata__\" appears twice", f->path);
            else
                rc = parse_metadata(f, it);
        } else {
            count++;
        }
    }
    if (rc == EM_OK) {
        f->items = calloc((size_t)count + 1, sizeof *f->items);
        if (!f->items)
            rc = em_error("%s: out of memory", f->path);
    }
    for (const cJSON *it = rc == EM_OK ? root->child : NULL; it && rc == EM_OK; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0)
            continue;
        st_item *item = &f->items[f->n++];
        item->entry.name = copy_string(it->string);
        if (!item->entry.name)
            rc = em_error("%s: out of memory", f->path);
        else
            rc = parse_entry(f, it, item);
    }
    cJSON_Delete(root);
    if (rc == EM_OK)
        rc = check_layout(f);
    return rc;
}

/* ---- opening and closing -------------------------------------------------------- */

void em_st_close(em_st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++) {
        free((char *)f->items[i].entry.name);
        free((char *)f->items[i].entry.dtype_name);
    }
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    if (f->map)
        munmap(f->map, f->map_size);
    free(f->items);
    free(f->by_name);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    free(f);
}

static int map_file(em_st_file *f)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return em_error("%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        em_error("%s: cannot stat: %s", f->path, strerror(errno));
        close(fd);
        return EM_ERR;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return em_error("%s: not a regular file", f->path);
    }
    if (st.st_size < 8) {
        close(fd);
        return em_error("%s: %lld bytes, too short for a safetensors file (the header length "
                        "alone takes 8)", f->path, (long long)st.st_size);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return em_error("%s: too large to map", f->path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (map == MAP_FAILED)
        return em_error("%s: cannot map: %s", f->path, strerror(saved));
    f->map = map;
    f->map_size = (size_t)st.st_size;
    return EM_OK;
}

em_st_file *em_st_open(const char *path)
{
    if (!path) {
        em_error("em_st_open: NULL path");
        return NULL;
    }
    em_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = copy_string(path))) {
        free(f);
        em_error("%s: out of memory", path);
        return NULL;
    }
    if (map_file(f) != EM_OK) {
        em_st_close(f);
        return NULL;
    }
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | f->map[i];
    uint64_t after_length = (uint64_t)f->map_size - 8;
    if (header_len > after_length) {
        em_error("%s: header length %" PRIu64 " runs past the end of the file (%zu bytes): "
                 "truncated or not a safetensors file", path, header_len, f->map_size);
        em_st_close(f);
        return NULL;
    }
    if (header_len > ST_MAX_HEADER_BYTES) {
        em_error("%s: header length %" PRIu64 " is absurdly large (limit %" PRIu64 " bytes)",
                 path, header_len, ST_MAX_HEADER_BYTES);
        em_st_close(f);
        return NULL;
    }
    if (header_len < 2) {
        em_error("%s: header length %" PRIu64 " is too small for a JSON object", path,
                 header_len);
        em_st_close(f);
        return NULL;
    }
    f->data = f->map + 8 + header_len;
    f->data_size = after_length - header_len;
    /* A private, terminated copy: the JSON parser then cannot step past the mapping,
     * whatever it does at the end of its input. */
    char *text = malloc((size_t)header_len + 1);
    if (!text) {
        em_error("%s: out of memory for a %" PRIu64 "-byte header", path, header_len);
        em_st_close(f);
        return NULL;
    }
    memcpy(text, f->map + 8, (size_t)header_len);
    text[header_len] = '\0';
    int rc = parse_header(f, text, (size_t)header_len);
    free(text);
    if (rc != EM_OK) {
        em_st_close(f);
        return NULL;
    }
    return f;
}

/* ---- lookup --------------------------------------------------------------------- */

int em_st_count(const em_st_file *f)
{
    return f ? f->n : 0;
}

const em_st_entry *em_st_entry_at(const em_st_file *f, int i)
{
    if (!f || i < 0 || i >= f->n)
        return NULL;
    return &f->items[i].entry;
}

const em_st_entry *em_st_find(const em_st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const em_st_entry *e = &f->by_name[mid]->entry;
        int c = strcmp(name, e->name);
        if (c == 0)
            return e;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *em_st_metadata(const em_st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

int em_st_metadata_count(const em_st_file *f)
{
    return f ? f->n_meta : 0;
}

const char *em_st_metadata_key(const em_st_file *f, int i)
{
    if (!f || i < 0 || i >= f->n_meta)
        return NULL;
    return f->meta_keys[i];
}

const char *em_st_path(const em_st_file *f)
{
    return f ? f->path : NULL;
}

/* ---- loading -------------------------------------------------------------------- */

/* The entry named `name` if ember can load it, else NULL and a message. */
static const em_st_entry *loadable_entry(const em_st_file *f, const char *name)
{
    if (!f || !name) {
        em_error("em_st_load: %s", !f ? "no file" : "no tensor name");
        return NULL;
    }
    const em_st_entry *e = em_st_find(f, name);
    if (!e) {
        em_error("%s: no tensor named '" NAME_FMT "' (the file has %d)", f->path, name, f->n);
        return NULL;
    }
    if (e->dtype == EM_DTYPE_OTHER) {
        em_error("%s: tensor '" NAME_FMT "' has dtype %s, which ember does not load (it loads F32, "
                 "F16, BF16, F64 and the integer and BOOL types)",
                 f->path, name, e->dtype_name);
        return NULL;
    }
    if (e->numel == 0) {
        em_error("%s: tensor '" NAME_FMT "' has shape %s with no elements, which ember "
                 "tensors cannot hold", f->path, name, em_dims_str(e->ndim, e->shape));
        return NULL;
    }
    return e;
}

/* The data section need not be aligned for wide types, so elements go through memcpy. */
#define WIDEN(type, src, dst, n)                                                          \
    do {                                                                                  \
        const unsigned char *from_ = (const unsigned char *)(src);                         \
        for (int64_t i_ = 0; i_ < (n); i_++) {                                            \
            type v_;                                                                      \
            memcpy(&v_, from_ + (size_t)i_ * sizeof v_, sizeof v_);                       \
            (dst)[i_] = (float)v_;                                                        \
        }                                                                                 \
    } while (0)

static void convert_to_f32(const em_st_entry *e, float *dst)
{
    const unsigned char *src = e->data;
    switch (e->dtype) {
    case EM_F32:
        memcpy(dst, src, (size_t)e->numel * sizeof(float));
        break;
    case EM_F16:
        em_f16_to_f32(src, dst, e->numel);
        break;
    case EM_BF16:
        em_bf16_to_f32(src, dst, e->numel);
        break;
    case EM_F64:
        WIDEN(double, src, dst, e->numel);
        break;
    case EM_I64:
        WIDEN(int64_t, src, dst, e->numel);
        break;
    case EM_I32:
        WIDEN(int32_t, src, dst, e->numel);
        break;
    case EM_I16:
        WIDEN(int16_t, src, dst, e->numel);
        break;
    case EM_I8:
        WIDEN(int8_t, src, dst, e->numel);
        break;
    case EM_U8:
        WIDEN(uint8_t, src, dst, e->numel);
        break;
    case EM_BOOL:
        /* Any non-zero byte is true, as numpy and PyTorch read it. */
        for (int64_t i = 0; i < e->numel; i++)
            dst[i] = src[i] ? 1.0f : 0.0f;
        break;
    case EM_DTYPE_OTHER:
        break; /* refused by loadable_entry */
    }
}

em_tensor *em_st_load(const em_st_file *f, const char *name, em_arena *arena)
{
    const em_st_entry *e = loadable_entry(f, name);
    if (!e)
        return NULL;
    em_tensor *t = em_tensor_empty(arena, e->ndim, e->shape);
    if (!t) {
        em_error_prefix("%s: tensor '" NAME_FMT "': ", f->path, name);
        return NULL;
    }
    convert_to_f32(e, t->data);
    return t;
}

int em_st_load_into(const em_st_file *f, const char *name, em_tensor *dst)
{
    if (!dst)
        return em_error("em_st_load_into: no destination tensor for '" NAME_FMT "'",
                        name ? name : "(null)");
    const em_st_entry *e = loadable_entry(f, name);
    if (!e)
        return EM_ERR;
    bool same = e->ndim == dst->ndim;
    for (int d = 0; same && d < e->ndim; d++)
        same = e->shape[d] == dst->shape[d];
    if (!same)
        return em_error("%s: tensor '" NAME_FMT "' has shape %s in the file but the destination "
                        "has shape %s", f->path, name, em_dims_str(e->ndim, e->shape),
                        em_shape_str(dst));
    if (em_is_contiguous(dst)) {
        convert_to_f32(e, dst->data);
        return EM_OK;
    }
    float *dense = malloc((size_t)e->numel * sizeof *dense);
    if (!dense)
        return em_error("%s: tensor '" NAME_FMT "': out of memory", f->path, name);
    convert_to_f32(e, dense);
    em_copy_from(dst, dense);
    free(dense);
    return EM_OK;
}

/* ---- writing -------------------------------------------------------------------- */

typedef struct text_buf {
    char *p;
    size_t len, cap;
    int failed;
} text_buf;

static void put_bytes(text_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put_text(text_buf *b, const char *s)
{
    put_bytes(b, s, strlen(s));
}

static void put_u64(text_buf *b, uint64_t v)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%" PRIu64, v);
    put_text(b, digits);
}

/* A JSON string literal; bytes from 0x80 up pass through (names are UTF-8). */
static void put_json_string(text_buf *b, const char *s)
{
    put_bytes(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': put_bytes(b, "\\\"", 2); break;
        case '\\': put_bytes(b, "\\\\", 2); break;
        case '\n': put_bytes(b, "\\n", 2); break;
        case '\r': put_bytes(b, "\\r", 2); break;
        case '\t': put_bytes(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                put_text(b, esc);
            } else {
                put_bytes(b, (const char *)p, 1);
            }
        }
    }
    put_bytes(b, "\"", 1);
}

static int check_save_args(const char *path, int n, const char *const *names,
                           const em_tensor *const *tensors, int n_meta,
                           const char *const *keys, const char *const *values)
{
    if (n < 0 || n_meta < 0)
        return em_error("%s: negative count (%d tensors, %d metadata pairs)", path, n, n_meta);
    if (n > 0 && (!names || !tensors))
        return em_error("%s: %d tensors but no %s array", path, n, !names ? "name" : "tensor");
    if (n_meta > 0 && (!keys || !values))
        return em_error("%s: %d metadata pairs but no %s array", path, n_meta,
                        !keys ? "key" : "value");
    for (int i = 0; i < n; i++) {
        if (!names[i] || !*names[i])
            return em_error("%s: tensor %d has no name", path, i);
        if (strcmp(names[i], "__metadata__") == 0)
            return em_error("%s: tensor %d: the name \"__metadata__\" is reserved", path, i);
        const em_tensor *t = tensors[i];
        if (!t)
            return em_error("%s: tensor '%s' is NULL", path, names[i]);
        if (t->ndim < 0 || t->ndim > EM_MAX_DIMS || t->numel < 0 || (t->numel > 0 && !t->data))
            return em_error("%s: tensor '%s' is malformed (ndim %d, numel %" PRId64 ")", path,
                            names[i], t->ndim, t->numel);
    }
    for (int i = 0; i < n_meta; i++)
        if (!keys[i] || !values[i])
            return em_error("%s: metadata pair %d has a NULL %s", path, i,
                            !keys[i] ? "key" : "value");
    int failed;
    const char *dup = find_duplicate(n, names, &failed);
    if (dup || failed)
        return failed ? em_error("%s: out of memory", path)
                      : em_error("%s: tensor name '%s' given twice", path, dup);
    dup = find_duplicate(n_meta, keys, &failed);
    if (dup || failed)
        return failed ? em_error("%s: out of memory", path)
                      : em_error("%s: metadata key '%s' given twice", path, dup);
    return EM_OK;
}

/* The JSON header, padded with spaces so that the data starts 8-byte aligned. */
static int build_header(const char *path, text_buf *b, int n, const char *const *names,
                        const em_tensor *const *tensors, int n_meta, const char *const *keys,
                        const char *const *values)
{
    put_text(b, "{");
    if (n_meta > 0) {
        put_text(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i)
                put_text(b, ",");
            put_json_string(b, keys[i]);
            put_text(b, ":");
            put_json_string(b, values[i]);
        }
        put_text(b, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const em_tensor *t = tensors[i];
        uint64_t nbytes = (uint64_t)t->numel * sizeof(float);
        if (offset + nbytes > ST_MAX_JSON_INTEGER)
            return em_error("%s: tensors total more than 2^53 bytes", path);
        if (i || n_meta > 0)
            put_text(b, ",");
        put_json_string(b, names[i]);
        put_text(b, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d)
                put_text(b, ",");
            put_u64(b, (uint64_t)t->shape[d]);
        }
        put_text(b, "],\"data_offsets\":[");
        put_u64(b, offset);
        put_text(b, ",");
        put_u64(b, offset + nbytes);
        put_text(b, "]}");
        offset += nbytes;
    }
    put_text(b, "}");
    while (!b->failed && b->len % 8 != 0)
        put_text(b, " ");
    if (b->failed)
        return em_error("%s: out of memory building the header", path);
    return EM_OK;
}

int em_st_save(const char *path, int n, const char *const *names, const em_tensor *const *tensors,
               int n_meta, const char *const *meta_keys, const char *const *meta_values)
{
    if (!path || !*path)
        return em_error("em_st_save: no file name");
    if (check_save_args(path, n, names, tensors, n_meta, meta_keys, meta_values) != EM_OK)
        return EM_ERR;
    text_buf header = {0};
    if (build_header(path, &header, n, names, tensors, n_meta, meta_keys, meta_values) != EM_OK) {
        free(header.p);
        return EM_ERR;
    }
    /* One scratch buffer, big enough for the largest view that needs a dense copy. */
    int64_t scratch_numel = 0;
    for (int i = 0; i < n; i++)
        if (!em_is_contiguous(tensors[i]) && tensors[i]->numel > scratch_numel)
            scratch_numel = tensors[i]->numel;
    float *scratch = NULL;
    if (scratch_numel > 0 && !(scratch = malloc((size_t)scratch_numel * sizeof *scratch))) {
        free(header.p);
        return em_error("%s: out of memory for a dense copy of %" PRId64 " floats", path,
                        scratch_numel);
    }
    em_atomic_file *out = em_atomic_open(path);
    if (!out) {
        free(header.p);
        free(scratch);
        return EM_ERR;
    }
    unsigned char length[8];
    for (int i = 0; i < 8; i++)
        length[i] = (unsigned char)((uint64_t)header.len >> (8 * i));
    em_atomic_write(out, length, sizeof length);
    em_atomic_write(out, header.p, header.len);
    for (int i = 0; i < n; i++) {
        const em_tensor *t = tensors[i];
        if (t->numel == 0)
            continue;
        const float *dense = t->data;
        if (!em_is_contiguous(t)) {
            em_copy_to(t, scratch);
            dense = scratch;
        }
        em_atomic_write(out, dense, (size_t)t->numel * sizeof(float));
    }
    free(header.p);
    free(scratch);
    return em_atomic_commit(out);
}
