/* safetensors: round trips through ember's writer, a PyTorch-written fixture with F32,
 * F16 and BF16 tensors, shape checks of em_st_load_into, and hostile files that must
 * be refused with a message naming the file and what is wrong. */
#include <dirent.h>
#include <fcntl.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static const char *tmp_file(const char *name)
{
    static char buf[4][512];
    static int next;
    char *out = buf[next];
    next = (next + 1) % 4;
    snprintf(out, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return out;
}

static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp || (n && fwrite(bytes, 1, n, fp) != n)) {
        perror(path);
        exit(1);
    }
    fclose(fp);
}

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    size_t n = fread(buf, 1, cap, fp);
    fclose(fp);
    return n;
}

/* A file of the given header length field, header text and data section. */
static const char *write_st(const char *name, uint64_t header_len, const char *header,
                            size_t data_len)
{
    const char *path = tmp_file(name);
    size_t text_len = strlen(header);
    size_t total = 8 + text_len + data_len;
    unsigned char *bytes = calloc(1, total);
    for (int i = 0; i < 8; i++)
        bytes[i] = (unsigned char)(header_len >> (8 * i));
    memcpy(bytes + 8, header, text_len);
    for (size_t i = 0; i < data_len; i++)
        bytes[8 + text_len + i] = (unsigned char)(i * 37 + 11);
    write_bytes(path, bytes, total);
    free(bytes);
    return path;
}

/* A well-formed frame around header (its real length) with data_len bytes of data. */
static const char *write_header(const char *name, const char *header, size_t data_len)
{
    return write_st(name, strlen(header), header, data_len);
}

/* em_st_open refuses the file with a message naming it, `word` and (if given) `what`. */
static void expect_refused(const char *path, const char *word, const char *what)
{
    em_clear_error();
    em_st_file *f = em_st_open(path);
    CHECK_MSG(f == NULL, "%s was accepted (expected an error with \"%s\")", path, word);
    em_st_close(f);
    CHECK_ERROR_CONTAINS(word);
    CHECK_ERROR_CONTAINS(path);
    if (what)
        CHECK_ERROR_CONTAINS(what);
}

static uint32_t bits_of(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* Same shape and the same bits (so NaN and -0 count too). */
static int same_tensor(const em_tensor *got, const em_tensor *want)
{
    if (!got || !want || !em_same_shape(got, want))
        return 0;
    float *a = malloc((size_t)got->numel * sizeof(float));
    float *b = malloc((size_t)want->numel * sizeof(float));
    em_copy_to(got, a);
    em_copy_to(want, b);
    int same = memcmp(a, b, (size_t)got->numel * sizeof(float)) == 0;
    free(a);
    free(b);
    return same;
}

static int count_leftovers(void)
{
    DIR *dir = opendir(test_tmpdir());
    int n = 0;
    for (struct dirent *de; dir && (de = readdir(dir));)
        if (strstr(de->d_name, ".tmp."))
            n++;
    if (dir)
        closedir(dir);
    return n;
}

/* ---- round trip ------------------------------------------------------------------ */

static void test_round_trip(void)
{
    em_rng rng;
    em_rng_seed(&rng, 42);
    float grid[12];
    for (int i = 0; i < 12; i++)
        grid[i] = 0.5f * (float)i - 3.0f;
    em_tensor *matrix = em_tensor_from(NULL, 2, (int64_t[]){3, 4}, grid);
    int64_t six_shape[6] = {2, 1, 3, 1, 2, 2};
    em_tensor *six = em_tensor_empty(NULL, 6, six_shape);
    em_init_normal(six, &rng, 0.0f, 1.0f);
    em_tensor *scalar = em_tensor_scalar(NULL, -3.75f);
    float special_values[6] = {NAN, -0.0f, INFINITY, -INFINITY, 1e-45f, FLT_MAX};
    em_tensor *specials = em_tensor_from(NULL, 1, (int64_t[]){6}, special_values);
    /* A transposed view and a strided slice, built by hand to keep this test free of
     * the ops: both must be written as dense row-major copies. */
    em_tensor transposed = *matrix;
    transposed.shape[0] = 4, transposed.shape[1] = 3;
    transposed.stride[0] = 1, transposed.stride[1] = 4;
    em_tensor every_other = *matrix;
    every_other.ndim = 1;
    every_other.shape[0] = 6, every_other.shape[1] = 0;
    every_other.stride[0] = 2, every_other.stride[1] = 0;
    every_other.numel = 6;
    CHECK(!em_is_contiguous(&transposed));
    CHECK(!em_is_contiguous(&every_other));

    const char *names[] = {"layer.0.weight", "six_d", "scalar", "quote\"back\\slash",
                           "tab\tnew\nline \x01", "\u00fcnic\u00f6de", "specials"};
    const em_tensor *tensors[] = {matrix, six, scalar, &transposed, &every_other, matrix,
                                  specials};
    int n = 7;
    const char *keys[] = {"epoch", "note"};
    const char *values[] = {"3", "line1\nline2 \"quoted\" \\ \xc3\xa9"};
    const char *path = tmp_file("round_trip.safetensors");
    CHECK_MSG(em_st_save(path, n, names, tensors, 2, keys, values) == EM_OK, "%s",
              ember_last_error());
    CHECK(count_leftovers() == 0);

    em_st_file *f = em_st_open(path);
    CHECK_MSG(f != NULL, "%s", ember_last_error());
    if (!f)
        return;
    CHECK(strcmp(em_st_path(f), path) == 0);
    CHECK(em_st_count(f) == n);
    for (int i = 0; i < n && i < em_st_count(f); i++) {
        const em_st_entry *e = em_st_entry_at(f, i);
        CHECK_MSG(strcmp(e->name, names[i]) == 0, "entry %d is '%s'", i, e->name);
        CHECK(e->dtype == EM_F32 && strcmp(e->dtype_name, "F32") == 0);
        CHECK(e->ndim == tensors[i]->ndim && e->numel == tensors[i]->numel);
        CHECK(e->nbytes == (size_t)tensors[i]->numel * 4);
        CHECK(em_st_find(f, names[i]) == e);
        em_tensor *back = em_st_load(f, names[i], NULL);
        CHECK_MSG(same_tensor(back, tensors[i]), "tensor '%s' changed in the round trip",
                  names[i]);
    }
    CHECK(em_st_entry_at(f, -1) == NULL && em_st_entry_at(f, n) == NULL);
    CHECK(em_st_find(f, "missing") == NULL);
    const em_st_entry *sc = em_st_find(f, "scalar");
    CHECK(sc && sc->ndim == 0 && sc->numel == 1);
    em_tensor *back_scalar = em_st_load(f, "scalar", NULL);
    CHECK(back_scalar && back_scalar->ndim == 0 && em_item(back_scalar) == -3.75f);
    em_tensor *back_six = em_st_load(f, "six_d", NULL);
    CHECK(back_six && back_six->ndim == 6 && back_six->shape[4] == 2 && back_six->shape[5] == 2);
    em_tensor *back_specials = em_st_load(f, "specials", NULL);
    if (back_specials)
        for (int i = 0; i < 6; i++)
            CHECK(bits_of(back_specials->data[i]) == bits_of(special_values[i]));
    em_tensor *back_t = em_st_load(f, "quote\"back\\slash", NULL);
    CHECK(back_t && em_is_contiguous(back_t) && back_t->shape[0] == 4 &&
          back_t->data[1] == grid[4] && back_t->data[3] == grid[1]);

    CHECK(em_st_metadata_count(f) == 2);
    CHECK(em_st_metadata_key(f, 0) && strcmp(em_st_metadata_key(f, 0), "epoch") == 0);
    CHECK(em_st_metadata_key(f, 2) == NULL);
    CHECK(em_st_metadata(f, "epoch") && strcmp(em_st_metadata(f, "epoch"), "3") == 0);
    CHECK(em_st_metadata(f, "note") && strcmp(em_st_metadata(f, "note"), values[1]) == 0);
    CHECK(em_st_metadata(f, "missing") == NULL);
    em_st_close(f);

    /* The layout: header padded with spaces to 8 bytes, data packed in the given order. */
    static unsigned char raw[1 << 16];
    size_t size = read_bytes(path, raw, sizeof raw);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | raw[i];
    int64_t data_bytes = 0;
    for (int i = 0; i < n; i++)
        data_bytes += tensors[i]->numel * 4;
    CHECK(header_len % 8 == 0);
    CHECK(size == 8 + header_len + (uint64_t)data_bytes);
    CHECK(raw[8] == '{');
    size_t last = 8 + header_len - 1;
    while (raw[last] == ' ')
        last--;
    CHECK(raw[last] == '}' && 8 + header_len - 1 - last < 8);
    float first;
    memcpy(&first, raw + 8 + header_len, 4);
    CHECK(first == grid[0]);

    /* Saving again replaces the file whole. */
    const char *one_name[] = {"only"};
    const em_tensor *one[] = {scalar};
    CHECK(em_st_save(path, 1, one_name, one, 0, NULL, NULL) == EM_OK);
    f = em_st_open(path);
    CHECK(f && em_st_count(f) == 1 && em_st_metadata_count(f) == 0 && em_st_find(f, "only"));
    em_st_close(f);

    /* No tensors at all is still a valid file. */
    CHECK(em_st_save(path, 0, NULL, NULL, 0, NULL, NULL) == EM_OK);
    f = em_st_open(path);
    CHECK(f && em_st_count(f) == 0);
    em_st_close(f);
    CHECK(count_leftovers() == 0);
}

static void test_save_errors(void)
{
    em_tensor *a = em_tensor_zeros1(NULL, 3);
    const em_tensor *two[] = {a, a};
    const char *dup_names[] = {"w", "w"};
    const char *path = tmp_file("save_errors.safetensors");
    CHECK(em_st_save(path, 2, dup_names, two, 0, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("'w' given twice");
    CHECK_ERROR_CONTAINS(path);

    const char *reserved[] = {"__metadata__"};
    CHECK(em_st_save(path, 1, reserved, two, 0, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("reserved");

    const em_tensor *none[] = {NULL};
    const char *name[] = {"gone"};
    CHECK(em_st_save(path, 1, name, none, 0, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS("'gone' is NULL");

    const char *keys[] = {"k", "k"};
    const char *values[] = {"1", "2"};
    CHECK(em_st_save(path, 1, name, two, 2, keys, values) == EM_ERR);
    CHECK_ERROR_CONTAINS("metadata key 'k' given twice");

    const char *missing_dir = tmp_file("no/such/folder/x.safetensors");
    CHECK(em_st_save(missing_dir, 1, name, two, 0, NULL, NULL) == EM_ERR);
    CHECK_ERROR_CONTAINS(missing_dir);
    CHECK_ERROR_CONTAINS("No such file");

    /* A refused save leaves an existing file as it was. */
    CHECK(em_st_save(path, 1, name, two, 0, NULL, NULL) == EM_OK);
    CHECK(em_st_save(path, 2, dup_names, two, 0, NULL, NULL) == EM_ERR);
    em_st_file *f = em_st_open(path);
    CHECK(f && em_st_find(f, "gone"));
    em_st_close(f);
    CHECK(count_leftovers() == 0);
}

/* ---- a file written by PyTorch --------------------------------------------------- */

static void test_pytorch_fixture(void)
{
    em_st_file *f = test_fixture("safetensors_dtypes");
    CHECK(em_st_count(f) == 32);
    CHECK(em_st_metadata(f, "format") && strcmp(em_st_metadata(f, "format"), "pt") == 0);

    static const struct {
        const char *name;
        em_dtype dtype;
        const char *dtype_name;
        int ndim;
        int bytes;
    } cases[] = {
        {"f16_grid", EM_F16, "F16", 3, 2},       {"f16_six_d", EM_F16, "F16", 6, 2},
        {"f16_patterns", EM_F16, "F16", 1, 2},   {"bf16_matrix", EM_BF16, "BF16", 2, 2},
        {"bf16_scalar", EM_BF16, "BF16", 0, 2},  {"bf16_patterns", EM_BF16, "BF16", 1, 2},
        {"f64_values", EM_F64, "F64", 1, 8},     {"i64_counts", EM_I64, "I64", 2, 8},
        {"i32_values", EM_I32, "I32", 1, 4},     {"i16_values", EM_I16, "I16", 1, 2},
        {"i8_values", EM_I8, "I8", 1, 1},        {"u8_values", EM_U8, "U8", 1, 1},
        {"bool_mask", EM_BOOL, "BOOL", 2, 1},    {"i64_step", EM_I64, "I64", 0, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const em_st_entry *e = em_st_find(f, cases[i].name);
        CHECK_MSG(e != NULL, "%s missing", cases[i].name);
        if (!e)
            continue;
        CHECK(e->dtype == cases[i].dtype && strcmp(e->dtype_name, cases[i].dtype_name) == 0);
        CHECK(e->ndim == cases[i].ndim && e->nbytes == (size_t)e->numel * (size_t)cases[i].bytes);
        char reference[64];
        snprintf(reference, sizeof reference, "%s_as_f32", cases[i].name);
        em_tensor *got = em_st_load(f, cases[i].name, NULL);
        em_tensor *want = test_fixture_tensor(f, reference);
        /* Bit for bit what PyTorch's .float() gives, NaN payloads included. */
        CHECK_MSG(same_tensor(got, want), "%s differs from PyTorch's float32 values",
                  cases[i].name);
    }
    const em_st_entry *pat = em_st_find(f, "f16_patterns");
    CHECK(pat && pat->numel > 9000);

    em_tensor *scalar = test_fixture_tensor(f, "f32_scalar");
    CHECK(scalar->ndim == 0 && scalar->numel == 1 && em_item(scalar) == -7.25f);
    em_tensor *bf_scalar = test_fixture_tensor(f, "bf16_scalar");
    CHECK(bf_scalar->ndim == 0 && em_item(bf_scalar) == 2.5f);
    em_tensor *specials = test_fixture_tensor(f, "f32_specials");
    float want_specials[8] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f, 3.4028235e38f, -1.5f};
    for (int i = 0; i < 8; i++)
        CHECK(i == 4 ? isnan(specials->data[i])
                     : bits_of(specials->data[i]) == bits_of(want_specials[i]));

    /* Integer tensors load as floats (the int64 counters of PyTorch's state_dicts). */
    const em_st_entry *labels = em_st_find(f, "i64_labels");
    CHECK(labels && labels->dtype == EM_I64 && strcmp(labels->dtype_name, "I64") == 0);
    CHECK(labels && labels->numel == 5 && labels->nbytes == 40);
    em_tensor *label_values = em_st_load(f, "i64_labels", NULL);
    CHECK(label_values && label_values->data[0] == 0.0f && label_values->data[4] == 4.0f);
    em_tensor *counts = em_st_load(f, "i64_counts", NULL);
    CHECK(counts && counts->data[3] == 16777216.0f && counts->data[5] == -1099511627776.0f);
    CHECK(em_st_load(f, "nope", NULL) == NULL);
    CHECK_ERROR_CONTAINS("no tensor named 'nope'");

    /* Loading into a view honours its strides. */
    em_tensor *dense = em_tensor_zeros2(NULL, 4, 3);
    em_tensor view = *dense;
    view.shape[0] = 3, view.shape[1] = 4;
    view.stride[0] = 1, view.stride[1] = 3;
    CHECK(em_st_load_into(f, "f32_matrix", &view) == EM_OK);
    em_tensor *matrix = test_fixture_tensor(f, "f32_matrix");
    CHECK(same_tensor(&view, matrix));
    CHECK(dense->data[3 * 2 + 1] == matrix->data[1 * 4 + 2]);
    em_tensor *grid = em_tensor_zeros3(NULL, 2, 3, 4);
    CHECK(em_st_load_into(f, "f16_grid", grid) == EM_OK);
    CHECK(same_tensor(grid, test_fixture_tensor(f, "f16_grid_as_f32")));
    em_st_close(f);
}

static void test_load_into_mismatch(void)
{
    em_st_file *f = test_fixture("safetensors_dtypes");
    em_tensor *wrong = em_tensor_zeros2(NULL, 4, 3);
    CHECK(em_st_load_into(f, "f32_matrix", wrong) == EM_ERR);
    CHECK_ERROR_CONTAINS("'f32_matrix'");
    CHECK_ERROR_CONTAINS("[3, 4]");
    CHECK_ERROR_CONTAINS("[4, 3]");
    CHECK_ERROR_CONTAINS("safetensors_dtypes.safetensors");
    em_tensor *flat = em_tensor_zeros1(NULL, 12);
    CHECK(em_st_load_into(f, "f32_matrix", flat) == EM_ERR);
    CHECK_ERROR_CONTAINS("[12]");
    em_tensor *one = em_tensor_zeros1(NULL, 1);
    CHECK(em_st_load_into(f, "f32_scalar", one) == EM_ERR);
    CHECK_ERROR_CONTAINS("'f32_scalar'");
    CHECK(em_st_load_into(f, "f32_matrix", NULL) == EM_ERR);
    em_st_close(f);
}

/* ---- hostile files --------------------------------------------------------------- */

static void test_hostile_frames(void)
{
    expect_refused(tmp_file("does_not_exist.safetensors"), "cannot open", NULL);
    expect_refused(test_tmpdir(), "not a regular file", NULL);

    const char *empty = tmp_file("empty.safetensors");
    write_bytes(empty, "", 0);
    expect_refused(empty, "too short", NULL);
    const char *five = tmp_file("five.safetensors");
    write_bytes(five, "\x10\0\0\0\0", 5);
    expect_refused(five, "too short", NULL);

    expect_refused(write_st("past_end.safetensors", 1000, "{}", 4), "past the end", NULL);
    expect_refused(write_st("huge_len.safetensors", (uint64_t)1 << 63, "{}", 0), "past the end",
                   NULL);
    expect_refused(write_st("all_ones_len.safetensors", UINT64_MAX, "{}", 0), "past the end",
                   NULL);
    expect_refused(write_st("zero_len.safetensors", 0, "", 8), "too small", NULL);

    /* A header length within the file but beyond any sane header: a sparse file. */
    const char *big = tmp_file("absurd_header.safetensors");
    uint64_t big_len = (uint64_t)101 << 20;
    int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++)
        len_bytes[i] = (unsigned char)(big_len >> (8 * i));
    CHECK(fd >= 0 && write(fd, len_bytes, 8) == 8 && ftruncate(fd, (off_t)(8 + big_len)) == 0);
    close(fd);
    expect_refused(big, "absurdly large", NULL);
    unlink(big);
}

static void test_hostile_headers(void)
{
    static const struct {
        const char *file, *header;
        size_t data;
        const char *word, *what;
    } cases[] = {
        {"not_json", "this is not JSON", 0, "not valid JSON", NULL},
        {"truncated_json", "{\"w\":{\"dtype\":\"F32\"", 0, "not valid JSON", NULL},
        {"trailing", "{} junk", 0, "not valid JSON", NULL},
        {"array", "[1, 2, 3]", 0, "not a JSON object", NULL},
        {"string", "\"hello\"", 0, "not a JSON object", NULL},
        {"entry_number", "{\"w_num\":5}", 0, "not a JSON object", "w_num"},
        {"no_dtype", "{\"w_nodtype\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "\"dtype\"",
         "w_nodtype"},
        {"dtype_number", "{\"w_dt\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "\"dtype\" is not a string", "w_dt"},
        {"no_shape", "{\"w_noshape\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8,
         "missing \"shape\"", "w_noshape"},
        {"shape_string", "{\"w_ss\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}",
         8, "\"shape\" is not an array", "w_ss"},
        {"dim_string", "{\"w_ds\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}",
         8, "dimension 0 is not a number", "w_ds"},
        {"dim_negative", "{\"w_neg\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,8]}}",
         8, "dimension 1 is negative", "w_neg"},
        {"dim_fraction", "{\"w_fr\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}",
         8, "not an integer", "w_fr"},
        {"dim_huge", "{\"w_big\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}",
         8, "too large", "w_big"},
        {"dim_overflow",
         "{\"w_ovf\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,0]}}",
         0, "overflow", "w_ovf"},
        {"seven_dims",
         "{\"w_7d\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
         "7 dimensions", "w_7d"},
        {"no_offsets", "{\"w_nooff\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
         "missing \"data_offsets\"", "w_nooff"},
        {"offsets_one", "{\"w_o1\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", 8,
         "\"data_offsets\" is not an array of two", "w_o1"},
        {"offsets_strings",
         "{\"w_os\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}}", 8,
         "\"data_offsets\" begin is not a number", "w_os"},
        {"offsets_negative",
         "{\"w_on\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
         "begin is negative", "w_on"},
        {"offsets_past_end",
         "{\"w_far\":{\"dtype\":\"F32\",\"shape\":[250],\"data_offsets\":[0,1000]}}", 16,
         "out of range", "w_far"},
        {"offsets_huge",
         "{\"w_fh\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}",
         16, "too large", "w_fh"},
        {"offsets_reversed",
         "{\"w_rev\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16,
         "begin 8 is after end 4", "w_rev"},
        {"bytes_mismatch",
         "{\"w_bm\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16,
         "8 bytes", "w_bm"},
        {"bytes_mismatch_f16",
         "{\"w_bh\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16,
         "16 bytes", "w_bh"},
        {"bytes_mismatch_i64",
         "{\"w_bi\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16,
         "need 3 x 8 bytes", "w_bi"},
        {"overlap",
         "{\"w_a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"w_b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16,
         "overlap", "'w_a' (bytes 0..8) and 'w_b' (bytes 4..12)"},
        {"overlap_inside",
         "{\"w_out\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"w_x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
         "\"w_in\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 16,
         "overlap", "w_out"},
        {"duplicate",
         "{\"w_dup\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"w_dup\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
         "duplicate", "w_dup"},
        {"meta_array", "{\"__metadata__\":[1]}", 0, "\"__metadata__\" is not a JSON object", NULL},
        {"meta_number", "{\"__metadata__\":{\"epoch\":3}}", 0, "\"__metadata__\" value", "epoch"},
        {"meta_twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "twice", "__metadata__"},
        {"meta_key_twice", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "twice", "'k'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s.safetensors", cases[i].file);
        expect_refused(write_header(name, cases[i].header, cases[i].data), cases[i].word,
                       cases[i].what);
    }

    /* Deep nesting must not exhaust the parser's stack. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 8);
    memcpy(deep, "{\"a\":", 5);
    memset(deep + 5, '[', depth);
    memset(deep + 5 + depth, ']', depth);
    strcpy(deep + 5 + 2 * depth, "}");
    expect_refused(write_header("deep.safetensors", deep, 0), "not valid JSON", NULL);
    free(deep);
}

/* Files that open: unknown dtypes list but do not load; empty tensors likewise. */
static void test_unusual_but_valid(void)
{
    const char *path = write_header(
        "unusual.safetensors",
        "{\"q\":{\"dtype\":\"Q9\",\"shape\":[3],\"data_offsets\":[0,5]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[5,5]},"
        "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12],\"extra\":true}}   ", 12);
    em_st_file *f = em_st_open(path);
    CHECK_MSG(f != NULL, "%s", ember_last_error());
    if (!f)
        return;
    const em_st_entry *q = em_st_find(f, "q");
    CHECK(q && q->dtype == EM_DTYPE_OTHER && strcmp(q->dtype_name, "Q9") == 0 && q->nbytes == 5);
    CHECK(em_st_load(f, "q", NULL) == NULL);
    CHECK_ERROR_CONTAINS("dtype Q9");
    CHECK_ERROR_CONTAINS(path);
    const em_st_entry *empty = em_st_find(f, "empty");
    CHECK(empty && empty->numel == 0 && empty->ndim == 2);
    CHECK(em_st_load(f, "empty", NULL) == NULL);
    CHECK_ERROR_CONTAINS("no elements");
    em_tensor *s = em_st_load(f, "s", NULL);
    float want;
    unsigned char bytes[4];
    for (int i = 0; i < 4; i++)
        bytes[i] = (unsigned char)((8 + i) * 37 + 11);
    memcpy(&want, bytes, 4);
    CHECK(s && s->ndim == 0 && bits_of(em_item(s)) == bits_of(want));
    em_st_close(f);
}

/* Integer data at an odd offset converts element by element (no aligned loads), and a
 * dtype ember lists but cannot convert is refused by name. */
static void test_unaligned_and_unconvertible(void)
{
    const char *path = tmp_file("unaligned.safetensors");
    const char *header = "{\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[1,9]},"
                         "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[9,17]},"
                         "\"u\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[17,25]}}";
    size_t text_len = strlen(header);
    unsigned char bytes[512] = {0};
    for (int i = 0; i < 8; i++)
        bytes[i] = (unsigned char)((uint64_t)text_len >> (8 * i));
    memcpy(bytes + 8, header, text_len);
    unsigned char *data = bytes + 8 + text_len;
    int32_t ints[2] = {-123456, 16777217};
    double d = -0.1;
    memcpy(data + 1, ints, sizeof ints);
    memcpy(data + 9, &d, sizeof d);
    write_bytes(path, bytes, 8 + text_len + 25);
    em_st_file *f = em_st_open(path);
    CHECK_MSG(f != NULL, "%s", ember_last_error());
    if (!f)
        return;
    em_tensor *i = em_st_load(f, "i", NULL);
    CHECK(i && i->data[0] == -123456.0f && i->data[1] == 16777216.0f); /* rounded to even */
    em_tensor *dt = em_st_load(f, "d", NULL);
    CHECK(dt && dt->data[0] == -0.1f);
    CHECK(em_st_load(f, "u", NULL) == NULL);
    CHECK_ERROR_CONTAINS("'u' has dtype U64");
    CHECK_ERROR_CONTAINS(path);
    em_st_close(f);
}

/* Every prefix of a valid file is refused, and random damage to the header never
 * crashes: whatever opens has every tensor inside the file. */
static void test_truncation_and_damage(void)
{
    em_tensor *a = em_tensor_full(NULL, 2, (int64_t[]){2, 3}, 1.5f);
    em_tensor *b = em_tensor_scalar(NULL, 2.0f);
    const char *names[] = {"a", "b"};
    const em_tensor *ts[] = {a, b};
    const char *keys[] = {"k"};
    const char *values[] = {"v"};
    const char *path = tmp_file("whole.safetensors");
    CHECK(em_st_save(path, 2, names, ts, 1, keys, values) == EM_OK);
    unsigned char raw[4096];
    size_t size = read_bytes(path, raw, sizeof raw);
    CHECK(size > 8 && size < sizeof raw);
    const char *cut = tmp_file("cut.safetensors");
    int accepted = 0;
    for (size_t n = 0; n < size; n++) {
        write_bytes(cut, raw, n);
        em_st_file *f = em_st_open(cut);
        accepted += f != NULL;
        em_st_close(f);
    }
    CHECK_MSG(accepted == 0, "%d truncated files were accepted", accepted);

    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | raw[i];
    em_rng rng;
    em_rng_seed(&rng, 7);
    int trials = test_quick() ? 300 : 3000, opened = 0;
    unsigned char damaged[4096];
    for (int t = 0; t < trials; t++) {
        memcpy(damaged, raw, size);
        int flips = 1 + (int)em_rng_below(&rng, 3);
        for (int k = 0; k < flips; k++)
            damaged[em_rng_below(&rng, 8 + header_len)] = (unsigned char)em_rng_below(&rng, 256);
        write_bytes(cut, damaged, size);
        em_st_file *f = em_st_open(cut);
        if (!f) {
            CHECK_MSG(strstr(ember_last_error(), cut) != NULL, "message lacks the file: %s",
                      ember_last_error());
            continue;
        }
        opened++;
        for (int i = 0; i < em_st_count(f); i++) {
            const em_st_entry *e = em_st_entry_at(f, i);
            CHECK(e->nbytes <= size - 8);
            if (e->dtype != EM_DTYPE_OTHER && e->numel > 0)
                CHECK(em_st_load(f, e->name, NULL) != NULL);
        }
        em_st_close(f);
    }
    printf("damaged headers: %d of %d still opened\n", opened, trials);
}

/* The files here are small but many; the folder goes when the test ends. */
static void remove_tmpdir(void)
{
    DIR *dir = opendir(test_tmpdir());
    for (struct dirent *de; dir && (de = readdir(dir));)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            unlink(tmp_file(de->d_name));
    if (dir)
        closedir(dir);
    rmdir(test_tmpdir());
}

int main(void)
{
    test_round_trip();
    test_save_errors();
    test_pytorch_fixture();
    test_load_into_mismatch();
    test_hostile_frames();
    test_hostile_headers();
    test_unusual_but_valid();
    test_unaligned_and_unconvertible();
    test_truncation_and_damage();
    remove_tmpdir();
    return test_finish();
}
