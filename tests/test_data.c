/* Datasets and batching: IDX (plain and gzip) and CSV readers with their error
 * messages, dataset specs, and the loader's visiting order. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "testlib.h"

static char tmp_path[4][1024];

/* A path in the test's temporary directory (four rotating buffers). */
static const char *tmp(const char *name) {
    static int next = 0;
    char *p = tmp_path[next++ % 4];
    snprintf(p, sizeof tmp_path[0], "%s/%s", test_tmpdir(), name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n, bool gzip) {
    if (gzip) {
        gzFile gz = gzopen(path, "wb");
        CHECK(gz != NULL);
        if (!gz) return;
        if (n) CHECK(gzwrite(gz, data, (unsigned)n) == (int)n);
        CHECK(gzclose(gz) == Z_OK);
    } else {
        FILE *fp = fopen(path, "wb");
        CHECK(fp != NULL);
        if (!fp) return;
        if (n) CHECK(fwrite(data, 1, n, fp) == n);
        fclose(fp);
    }
}

static void write_text(const char *path, const char *text) {
    write_bytes(path, text, strlen(text), false);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* An IDX images file of count images of rows x cols, pixel (i, j) = pixel_of(i, j). */
static size_t make_images(uint8_t *buf, uint32_t magic, uint32_t count, uint32_t rows,
                          uint32_t cols) {
    put_be32(buf, magic);
    put_be32(buf + 4, count);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    size_t n = 16;
    for (uint32_t i = 0; i < count; i++)
        for (uint32_t j = 0; j < rows * cols; j++) buf[n++] = (uint8_t)(i * 50 + j * 7);
    return n;
}

static size_t make_labels(uint8_t *buf, uint32_t count, const uint8_t *labels) {
    put_be32(buf, 0x00000801);
    put_be32(buf + 4, count);
    memcpy(buf + 8, labels, count);
    return 8 + count;
}

static const uint8_t three_labels[3] = {4, 0, 2};

/* Bit-exact comparison of a dense tensor with expected values. */
static void check_exact(const char *what, const em_tensor *t, const float *expected) {
    CHECK(em_is_contiguous(t));
    int64_t bad = -1;
    for (int64_t i = 0; i < t->numel && bad < 0; i++)
        if (memcmp(&t->data[i], &expected[i], sizeof(float)) != 0) bad = i;
    CHECK_MSG(bad < 0, "%s: element %lld is %.9g, expected %.9g", what, (long long)bad,
              bad < 0 ? 0.0 : (double)t->data[bad], bad < 0 ? 0.0 : (double)expected[bad]);
}

static void check_small_idx(em_dataset *ds) {
    CHECK(ds != NULL);
    if (!ds) {
        fprintf(stderr, "  error: %s\n", ember_last_error());
        return;
    }
    CHECK(ds->count == 3);
    CHECK(ds->item_ndim == 3);
    CHECK(ds->item_shape[0] == 1 && ds->item_shape[1] == 2 && ds->item_shape[2] == 3);
    CHECK(ds->item_numel == 6);
    CHECK(ds->pixels != NULL && ds->features == NULL);
    CHECK(ds->num_classes == 5);
    CHECK(ds->class_names == NULL);
    int exact = 1;
    for (int i = 0; i < 3; i++) {
        CHECK(ds->labels[i] == three_labels[i]);
        for (int j = 0; j < 6; j++) exact &= ds->pixels[i * 6 + j] == (uint8_t)(i * 50 + j * 7);
    }
    CHECK(exact);

    int64_t idx[2] = {2, 0};
    int32_t y[2] = {-1, -1};
    em_tensor *x = em_dataset_gather(ds, idx, 2, NULL, y);
    CHECK(x != NULL);
    if (x) {
        CHECK(x->ndim == 4 && x->shape[0] == 2 && x->shape[1] == 1 && x->shape[2] == 2 &&
              x->shape[3] == 3);
        float expected[12];
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < 6; j++)
                expected[b * 6 + j] = (float)(uint8_t)(idx[b] * 50 + j * 7) / 255.0f;
        check_exact("gathered pixels", x, expected);
    }
    CHECK(y[0] == 2 && y[1] == 4);
    em_step_end();
}

static void test_idx_roundtrip(void) {
    uint8_t img[64], lab[16];
    size_t ni = make_images(img, 0x00000803, 3, 2, 3);
    size_t nl = make_labels(lab, 3, three_labels);

    write_bytes(tmp("plain-images"), img, ni, false);
    write_bytes(tmp("plain-labels"), lab, nl, false);
    em_dataset *ds = em_dataset_load_idx(tmp("plain-images"), tmp("plain-labels"));
    check_small_idx(ds);
    if (ds) CHECK(strstr(ds->source, "plain-images") && strstr(ds->source, "plain-labels"));

    /* Reshaping items: 6 values as {6} or {3, 2}, not as {4}. */
    if (ds) {
        CHECK(em_dataset_set_item_shape(ds, 1, (int64_t[]){6}) == EM_OK);
        CHECK(ds->item_ndim == 1 && ds->item_shape[0] == 6);
        CHECK(em_dataset_set_item_shape(ds, 1, (int64_t[]){4}) == EM_ERR);
        CHECK_ERROR_CONTAINS("(6 values)");
        CHECK(em_dataset_set_item_shape(ds, 2, (int64_t[]){3, 2}) == EM_OK);
        em_tensor *x = em_dataset_gather(ds, (int64_t[]){1}, 1, NULL, NULL);
        CHECK(x && x->ndim == 3 && x->shape[1] == 3 && x->shape[2] == 2);
        CHECK(em_dataset_gather(ds, (int64_t[]){3}, 1, NULL, NULL) == NULL);
        CHECK_ERROR_CONTAINS("example index 3 out of range");
        em_step_end();
    }
    em_dataset_free(ds);

    /* gzip by content: the names carry no .gz. */
    write_bytes(tmp("gz-images"), img, ni, true);
    write_bytes(tmp("gz-labels"), lab, nl, true);
    ds = em_dataset_load_idx(tmp("gz-images"), tmp("gz-labels"));
    check_small_idx(ds);
    em_dataset_free(ds);

    /* One plain, one gzipped, through the spec string. */
    char spec[2200];
    snprintf(spec, sizeof spec, "idx:%s,%s", tmp("gz-images"), tmp("plain-labels"));
    ds = em_dataset_open(spec, EM_SPLIT_TEST, -1);
    check_small_idx(ds);
    em_dataset_free(ds);
}

static void expect_idx_error(const char *images, const char *labels, const char *needle1,
                             const char *needle2) {
    em_clear_error();
    em_dataset *ds = em_dataset_load_idx(images, labels);
    CHECK_MSG(ds == NULL, "loading %s, %s should fail", images, labels);
    em_dataset_free(ds);
    CHECK_ERROR_CONTAINS(needle1);
    if (needle2) CHECK_ERROR_CONTAINS(needle2);
}

static void test_idx_errors(void) {
    uint8_t img[64], lab[16], bad[64];
    size_t ni = make_images(img, 0x00000803, 3, 2, 3);
    size_t nl = make_labels(lab, 3, three_labels);
    write_bytes(tmp("ok-images"), img, ni, false);
    write_bytes(tmp("ok-labels"), lab, nl, false);

    /* Truncated: two pixels short, plain and gzipped. 16 + 18 bytes expected. */
    write_bytes(tmp("short-images"), img, ni - 2, false);
    expect_idx_error(tmp("short-images"), tmp("ok-labels"), tmp("short-images"),
                     "expected 34 bytes");
    CHECK_ERROR_CONTAINS("got 32");
    write_bytes(tmp("short-images.gz"), img, ni - 2, true);
    expect_idx_error(tmp("short-images.gz"), tmp("ok-labels"), tmp("short-images.gz"),
                     "truncated");
    /* A gzip stream cut off in the middle. */
    {
        uint8_t big[16 + 4000];
        make_images(big, 0x00000803, 4, 25, 40);
        for (size_t i = 16; i < sizeof big; i++) big[i] = (uint8_t)(i * 2654435761u >> 13);
        write_bytes(tmp("cut.gz"), big, sizeof big, true);
        FILE *fp = fopen(tmp("cut.gz"), "rb");
        uint8_t gz[8192];
        size_t n = fp ? fread(gz, 1, sizeof gz, fp) : 0;
        if (fp) fclose(fp);
        CHECK(n > 100);
        write_bytes(tmp("cut.gz"), gz, n / 2, false);
        uint8_t four[4] = {1, 2, 3, 4};
        uint8_t lab4[16];
        write_bytes(tmp("four-labels"), lab4, make_labels(lab4, 4, four), false);
        expect_idx_error(tmp("cut.gz"), tmp("four-labels"), tmp("cut.gz"), "truncated");
    }
    /* Header too short. */
    write_bytes(tmp("tiny-images"), img, 9, false);
    expect_idx_error(tmp("tiny-images"), tmp("ok-labels"), tmp("tiny-images"), "expected 16 bytes");
    /* A gzip stream whose data does not match its checksum. */
    {
        uint8_t big[16 + 400];
        make_images(big, 0x00000803, 4, 10, 10);
        for (size_t i = 16; i < sizeof big; i++) big[i] = (uint8_t)(i * 2654435761u >> 13);
        write_bytes(tmp("corrupt.gz"), big, sizeof big, true);
        FILE *fp = fopen(tmp("corrupt.gz"), "rb");
        uint8_t gz[2048];
        size_t n = fp ? fread(gz, 1, sizeof gz, fp) : 0;
        if (fp) fclose(fp);
        CHECK(n > 300);
        gz[n / 2] ^= 0x10;
        write_bytes(tmp("corrupt.gz"), gz, n, false);
        uint8_t four[4] = {1, 2, 3, 4};
        uint8_t lab4[16];
        write_bytes(tmp("four-labels"), lab4, make_labels(lab4, 4, four), false);
        expect_idx_error(tmp("corrupt.gz"), tmp("four-labels"), tmp("corrupt.gz"), "cannot read");
    }
    expect_idx_error(test_tmpdir(), tmp("ok-labels"), test_tmpdir(), "directory");
    /* A header that claims far more data than the file holds fails without allocating it. */
    memcpy(bad, img, ni);
    put_be32(bad + 4, 4000000000u);
    write_bytes(tmp("huge-images"), bad, ni, false);
    put_be32(lab + 4, 4000000000u);
    write_bytes(tmp("huge-labels"), lab, nl, false);
    expect_idx_error(tmp("huge-images"), tmp("huge-labels"), tmp("huge-images"), "truncated");
    put_be32(lab + 4, 3);
    /* Extra bytes after the declared data. */
    memcpy(bad, img, ni);
    bad[ni] = 7;
    write_bytes(tmp("long-images"), bad, ni + 1, false);
    expect_idx_error(tmp("long-images"), tmp("ok-labels"), tmp("long-images"), "longer");

    /* Wrong magic: a labels file given as images, and garbage. */
    expect_idx_error(tmp("ok-labels"), tmp("ok-labels"), tmp("ok-labels"), "bad magic 0x00000801");
    CHECK_ERROR_CONTAINS("swapped");
    write_text(tmp("text-images"), "hello, this is not an IDX file at all");
    expect_idx_error(tmp("text-images"), tmp("ok-labels"), tmp("text-images"), "bad magic");
    expect_idx_error(tmp("ok-images"), tmp("ok-images"), tmp("ok-images"), "expected 0x00000801");
    /* Zero dimension. */
    make_images(bad, 0x00000803, 3, 0, 3);
    write_bytes(tmp("zero-images"), bad, 16, false);
    expect_idx_error(tmp("zero-images"), tmp("ok-labels"), tmp("zero-images"), "positive");

    /* Count mismatch names both files. */
    uint8_t lab4[16];
    uint8_t four[4] = {0, 1, 2, 3};
    write_bytes(tmp("four-labels"), lab4, make_labels(lab4, 4, four), false);
    expect_idx_error(tmp("ok-images"), tmp("four-labels"), tmp("ok-images"), tmp("four-labels"));
    CHECK_ERROR_CONTAINS("3 images");
    CHECK_ERROR_CONTAINS("4 labels");

    /* Missing and empty files. */
    expect_idx_error(tmp("no-such-file"), tmp("ok-labels"), tmp("no-such-file"),
                     "No such file");
    write_bytes(tmp("empty"), "", 0, false);
    expect_idx_error(tmp("empty"), tmp("ok-labels"), tmp("empty"), "empty");
    expect_idx_error(tmp("ok-images"), tmp("empty"), tmp("empty"), "empty");
}

static em_dataset *load_csv_text(const char *name, const char *text, int label_column) {
    write_text(tmp(name), text);
    em_clear_error();
    return em_dataset_load_csv(tmp(name), label_column);
}

static void expect_csv_error(const char *name, const char *text, int label_column,
                             const char *needle1, const char *needle2) {
    em_dataset *ds = load_csv_text(name, text, label_column);
    CHECK_MSG(ds == NULL, "%s should fail", name);
    em_dataset_free(ds);
    CHECK_ERROR_CONTAINS(tmp(name));
    CHECK_ERROR_CONTAINS(needle1);
    if (needle2) CHECK_ERROR_CONTAINS(needle2);
}

static void test_csv(void) {
    /* Header, CRLF line ends, spaces, a blank last line; label last. */
    em_dataset *ds = load_csv_text("header.csv",
                                   "x1, x2 ,label\r\n1,2.5,0\r\n-3e2, 4 ,2\r\n0.125,7,1\r\n\r\n", -1);
    CHECK(ds != NULL);
    if (ds) {
        CHECK(ds->count == 3 && ds->item_ndim == 1 && ds->item_shape[0] == 2);
        CHECK(ds->features != NULL && ds->pixels == NULL);
        const float f[6] = {1, 2.5f, -300, 4, 0.125f, 7};
        CHECK(memcmp(ds->features, f, sizeof f) == 0);
        CHECK(ds->labels[0] == 0 && ds->labels[1] == 2 && ds->labels[2] == 1);
        CHECK(ds->num_classes == 3);
        int32_t y[2];
        em_tensor *x = em_dataset_gather(ds, (int64_t[]){2, 1}, 2, NULL, y);
        const float expected[4] = {0.125f, 7, -300, 4};
        CHECK(x && x->ndim == 2 && x->shape[0] == 2 && x->shape[1] == 2);
        if (x) check_exact("csv gather", x, expected);
        CHECK(y[0] == 1 && y[1] == 2);
        em_step_end();
    }
    em_dataset_free(ds);

    /* No header; the label in column 0 (and the same with -3 from the end). */
    for (int pass = 0; pass < 2; pass++) {
        ds = load_csv_text("first.csv", "3,0.5,0.25\n0,1,2\n7,8,9", pass ? -3 : 0);
        CHECK(ds != NULL);
        if (!ds) continue;
        CHECK(ds->count == 3 && ds->item_shape[0] == 2 && ds->num_classes == 8);
        const float f[6] = {0.5f, 0.25f, 1, 2, 8, 9};
        CHECK(memcmp(ds->features, f, sizeof f) == 0);
        CHECK(ds->labels[0] == 3 && ds->labels[1] == 0 && ds->labels[2] == 7);
        em_dataset_free(ds);
    }
    /* Middle label column, through the spec string. */
    write_text(tmp("middle.csv"), "a,b,c\n1,1,2\n3,0,4\n");
    char spec[1100];
    snprintf(spec, sizeof spec, "csv:%s", tmp("middle.csv"));
    ds = em_dataset_open(spec, EM_SPLIT_TRAIN, 1);
    CHECK(ds && ds->count == 2 && ds->labels[0] == 1 && ds->labels[1] == 0 &&
          ds->features[0] == 1 && ds->features[1] == 2 && ds->features[3] == 4);
    em_dataset_free(ds);

    /* A non-numeric cell names file, line and column (and the header's name). */
    expect_csv_error("word.csv", "p,q,label\n1,2,0\n1,abc,1\n", -1, "line 3", "column 2");
    CHECK_ERROR_CONTAINS("\"q\"");
    CHECK_ERROR_CONTAINS("'abc'");
    expect_csv_error("word2.csv", "1,2,0\n\n4,5,x\n", -1, "line 3", "column 3");
    expect_csv_error("emptycell.csv", "1,2,0\n4,,1\n", -1, "line 2", "column 2");
    expect_csv_error("nan.csv", "1,2,0\n4,nan,1\n", -1, "line 2", "not a number");
    /* Ragged rows. */
    expect_csv_error("ragged.csv", "1,2,0\n1,2,3,0\n", -1, "line 2", "4 cells, expected 3");
    expect_csv_error("short.csv", "a,b,label\n1,2,0\n1,1\n", -1, "line 3", "2 cells");
    /* Labels: integers >= 0. */
    expect_csv_error("halflabel.csv", "1,2,0\n1,2,1.5\n", -1, "line 2", "label '1.5'");
    expect_csv_error("neglabel.csv", "1,2,-1\n", -1, "line 1", "label '-1'");
    /* Empty, header-only, one column, bad label column. */
    expect_csv_error("empty.csv", "", -1, "empty", NULL);
    expect_csv_error("blank.csv", "\n \n", -1, "empty", NULL);
    expect_csv_error("headeronly.csv", "a,b,c\n", -1, "no data rows", NULL);
    expect_csv_error("onecol.csv", "1\n2\n", -1, "1 column", NULL);
    expect_csv_error("badcol.csv", "1,2,0\n", 3, "label column 3", "3 columns");
    em_clear_error();
    CHECK(em_dataset_load_csv(tmp("missing.csv"), -1) == NULL);
    CHECK_ERROR_CONTAINS("missing.csv");
}

/* Ten 1x1x4 images: example i has pixels {25i, 255, 0, i} and label i. */
static em_dataset *ten_examples(void) {
    uint8_t img[16 + 40], lab[8 + 10];
    put_be32(img, 0x00000803);
    put_be32(img + 4, 10);
    put_be32(img + 8, 1);
    put_be32(img + 12, 4);
    uint8_t labels[10];
    for (int i = 0; i < 10; i++) {
        uint8_t *p = img + 16 + 4 * i;
        p[0] = (uint8_t)(25 * i), p[1] = 255, p[2] = 0, p[3] = (uint8_t)i;
        labels[i] = (uint8_t)i;
    }
    write_bytes(tmp("ten-images"), img, sizeof img, false);
    write_bytes(tmp("ten-labels"), lab, make_labels(lab, 10, labels), false);
    return em_dataset_load_idx(tmp("ten-images"), tmp("ten-labels"));
}

/* Runs one epoch; writes the visiting order and checks batch sizes and contents. */
static void run_epoch(em_loader *l, int64_t batch_size, int64_t *order) {
    em_batch b;
    int64_t seen = 0, batches = 0;
    while (em_loader_next(l, &b)) {
        int64_t want = 10 - seen < batch_size ? 10 - seen : batch_size;
        CHECK(b.n == want);
        CHECK(b.index == batches);
        CHECK(b.x->ndim == 4 && b.x->shape[0] == b.n && b.x->shape[1] == 1 &&
              b.x->shape[2] == 1 && b.x->shape[3] == 4);
        for (int64_t k = 0; k < b.n; k++) {
            int32_t i = b.y[k];
            const float *row = b.x->data + 4 * k;
            CHECK(row[0] == (float)(25 * i) / 255.0f);
            CHECK(row[1] == 1.0f && row[2] == 0.0f);
            CHECK(row[3] == (float)i / 255.0f);
            if (seen < 10) order[seen] = i;
            seen++;
        }
        batches++;
        em_step_end();
    }
    CHECK(seen == 10);
    CHECK(batches == em_loader_batches(l));
    CHECK(!em_loader_next(l, &b)); /* stays at the end until reset */
    int count[10] = {0};
    for (int k = 0; k < 10; k++) count[order[k]]++;
    for (int k = 0; k < 10; k++) CHECK_MSG(count[k] == 1, "example %d seen %d times", k, count[k]);
}

static int same_order(const int64_t *a, const int64_t *b) {
    return memcmp(a, b, 10 * sizeof *a) == 0;
}

static void test_loader(void) {
    em_dataset *ds = ten_examples();
    CHECK(ds != NULL);
    if (!ds) return;
    int64_t order[10], again[10], other[10], next_epoch[10];

    /* File order without shuffling, batches 3,3,3,1. */
    em_loader *l = em_loader_new(ds, 3, false, 1);
    CHECK(em_loader_batches(l) == 4);
    run_epoch(l, 3, order);
    for (int k = 0; k < 10; k++) CHECK(order[k] == k);
    em_loader_reset(l);
    run_epoch(l, 3, order);
    for (int k = 0; k < 10; k++) CHECK(order[k] == k);
    em_loader_free(l);

    /* Seeded shuffling: same seed same order, other seed other order, new each epoch. */
    l = em_loader_new(ds, 4, true, 42);
    run_epoch(l, 4, order);
    em_loader_reset(l);
    run_epoch(l, 4, next_epoch);
    em_loader_free(l);
    l = em_loader_new(ds, 4, true, 42);
    run_epoch(l, 4, again);
    em_loader_free(l);
    l = em_loader_new(ds, 4, true, 43);
    run_epoch(l, 4, other);
    em_loader_free(l);
    int64_t identity[10];
    for (int k = 0; k < 10; k++) identity[k] = k;
    CHECK(same_order(order, again));
    CHECK(!same_order(order, other));
    CHECK(!same_order(order, next_epoch));
    CHECK(!same_order(order, identity));

    /* One batch larger than the dataset. */
    l = em_loader_new(ds, 64, true, 7);
    CHECK(em_loader_batches(l) == 1);
    run_epoch(l, 64, order);
    CHECK(em_loader_rng(l) != NULL);
    em_loader_free(l);

    CHECK(em_loader_new(ds, 0, false, 1) == NULL);
    CHECK_ERROR_CONTAINS("batch size");
    em_dataset_free(ds);
}

static void test_specs(void) {
    em_clear_error();
    CHECK(em_dataset_open("cifar-100", EM_SPLIT_TRAIN, -1) == NULL);
    CHECK_ERROR_CONTAINS("unknown dataset 'cifar-100'");
    CHECK_ERROR_CONTAINS("fashion-mnist");
    CHECK_ERROR_CONTAINS("idx:IMAGES,LABELS");
    CHECK_ERROR_CONTAINS("csv:FILE");
    CHECK(em_dataset_open("idx:onlyone", EM_SPLIT_TRAIN, -1) == NULL);
    CHECK_ERROR_CONTAINS("idx:IMAGES,LABELS");
    write_text(tmp("bare.csv"), "1,0\n");
    CHECK(em_dataset_open(tmp("bare.csv"), EM_SPLIT_TRAIN, -1) == NULL);
    CHECK_ERROR_CONTAINS("csv:");

    /* A named dataset found through $EMBER_DATA_DIR/<name>/, labels checked against its
     * ten classes. */
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/fashion-mnist", test_tmpdir());
    mkdir(dir, 0755);
    uint8_t img[64], lab[16];
    size_t ni = make_images(img, 0x00000803, 3, 2, 3);
    size_t nl = make_labels(lab, 3, three_labels);
    write_bytes(tmp("fashion-mnist/t10k-images-idx3-ubyte.gz"), img, ni, true);
    write_bytes(tmp("fashion-mnist/t10k-labels-idx1-ubyte"), lab, nl, false);
    setenv("EMBER_DATA_DIR", test_tmpdir(), 1);
    em_dataset *ds = em_dataset_open("Fashion_MNIST", EM_SPLIT_TEST, -1);
    CHECK(ds != NULL);
    if (ds) {
        CHECK(ds->count == 3 && ds->num_classes == 10 && ds->class_names);
        CHECK(strcmp(ds->class_names[0], "T-shirt/top") == 0);
        CHECK(strcmp(ds->class_names[9], "Ankle boot") == 0);
        CHECK(strstr(ds->source, test_tmpdir()) != NULL);
    }
    em_dataset_free(ds);
    uint8_t eleven[3] = {1, 10, 2};
    write_bytes(tmp("fashion-mnist/t10k-labels-idx1-ubyte"), lab, make_labels(lab, 3, eleven),
                false);
    CHECK(em_dataset_open("fashion-mnist", EM_SPLIT_TEST, -1) == NULL);
    CHECK_ERROR_CONTAINS("label 10");
    CHECK_ERROR_CONTAINS("t10k-labels-idx1-ubyte");
    unsetenv("EMBER_DATA_DIR");

    struct stat st;
    if (stat("/usr/share/datasets/mnist", &st) != 0) {
        CHECK(em_dataset_open("mnist", EM_SPLIT_TRAIN, -1) == NULL);
        CHECK_ERROR_CONTAINS("train-images-idx3-ubyte");
        CHECK_ERROR_CONTAINS("EMBER_DATA_DIR");
    }
}

static void test_fashion_mnist(void) {
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist", &st) != 0) {
        printf("note: /usr/share/datasets/fashion-mnist absent (apt-get install "
               "dataset-fashion-mnist); skipping the real-data check\n");
        return;
    }
    unsetenv("EMBER_DATA_DIR");
    static const int64_t expected_count[2] = {60000, 10000};
    for (int split = 0; split < 2; split++) {
        double t0 = em_now();
        em_dataset *ds = em_dataset_open("fashion-mnist", (em_split)split, -1);
        double seconds = em_now() - t0;
        CHECK_MSG(ds != NULL, "%s", ember_last_error());
        if (!ds) continue;
        printf("fashion-mnist %s: %lld examples in %.2f s\n", split ? "test" : "train",
               (long long)ds->count, seconds);
        CHECK(ds->count == expected_count[split]);
        CHECK(ds->num_classes == 10);
        CHECK(ds->item_ndim == 3 && ds->item_shape[0] == 1 && ds->item_shape[1] == 28 &&
              ds->item_shape[2] == 28);
        CHECK(strcmp(ds->class_names[9], "Ankle boot") == 0);
        /* Both splits are balanced: a tenth of the examples in every class. */
        int64_t per_class[10] = {0};
        for (int64_t i = 0; i < ds->count; i++) per_class[ds->labels[i]]++;
        for (int c = 0; c < 10; c++) CHECK(per_class[c] == ds->count / 10);

        /* A batch as the trainer sees it, and the gather's speed. */
        em_loader *l = em_loader_new(ds, 64, true, 1);
        em_batch b;
        CHECK(em_loader_next(l, &b) && b.n == 64);
        float lo = 1, hi = 0;
        for (int64_t i = 0; i < b.x->numel; i++) {
            if (b.x->data[i] < lo) lo = b.x->data[i];
            if (b.x->data[i] > hi) hi = b.x->data[i];
        }
        CHECK(lo == 0.0f && hi <= 1.0f && hi > 0.5f);
        em_step_end();
        if (split == 0) {
            em_loader_reset(l);
            t0 = em_now();
            int64_t n = 0;
            while (em_loader_next(l, &b)) {
                n += b.n;
                em_step_end();
            }
            printf("one shuffled epoch of 64-example batches: %.1f ms (%.2f us per batch)\n",
                   (em_now() - t0) * 1e3, (em_now() - t0) * 1e6 / (double)em_loader_batches(l));
            CHECK(n == 60000);
        }
        em_loader_free(l);
        em_dataset_free(ds);
    }
}

int main(void) {
    test_idx_roundtrip();
    test_idx_errors();
    test_csv();
    test_loader();
    test_specs();
    test_fashion_mnist();
    return test_finish();
}
