/* Text data: loading (and the messages for a missing, empty or directory path), the
 * fortunes corpus (files in sorted order, .dat/.u8 and links skipped), unigram entropy,
 * the vocabulary check, the tail and chunk splits, and random and sequential windows
 * (targets one byte on, tracks continuing from batch to batch, too-long sequences). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "%s", path);
    if (!f)
        return;
    fputs(content, f);
    fclose(f);
}

static void test_load_errors(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/missing.txt", test_tmpdir());
    CHECK(em_text_load(path) == NULL);
    CHECK_ERROR_CONTAINS("cannot open text file");
    CHECK_ERROR_CONTAINS("missing.txt: No such file or directory");
    snprintf(path, sizeof path, "%s/empty.txt", test_tmpdir());
    write_file(path, "");
    CHECK(em_text_load(path) == NULL);
    CHECK_ERROR_CONTAINS("empty.txt is empty");
    CHECK(em_text_load(test_tmpdir()) == NULL);
    CHECK_ERROR_CONTAINS("is a directory");
    CHECK(em_text_open("mnist") == NULL);
    CHECK_ERROR_CONTAINS("'mnist' is not text: use fortunes or text:FILE");
    CHECK(em_text_is_spec("fortunes") && em_text_is_spec("text:a.txt") && !em_text_is_spec("csv:a.csv"));

    snprintf(path, sizeof path, "%s/hello.txt", test_tmpdir());
    write_file(path, "hello\n");
    char spec[600];
    snprintf(spec, sizeof spec, "text:%s", path);
    em_text *t = em_text_open(spec);
    CHECK_MSG(t && t->size == 6 && memcmp(t->bytes, "hello\n", 6) == 0, "%s", ember_last_error());
    CHECK(t && strstr(t->source, "hello.txt"));
    em_text_free(t);
}

/* A directory like /usr/share/games/fortunes: the text files in sorted path order. */
static void test_fortunes_directory(void)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/fortunes", test_tmpdir());
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/b", dir);
    write_file(path, "B\n%\n");
    snprintf(path, sizeof path, "%s/a", dir);
    write_file(path, "A\n%\n");
    snprintf(path, sizeof path, "%s/a.dat", dir);
    write_file(path, "index");
    snprintf(path, sizeof path, "%s/sub", dir);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/sub/c", dir);
    write_file(path, "C\n");
    char target[600];
    snprintf(target, sizeof target, "%s/a", dir);
    snprintf(path, sizeof path, "%s/b.u8", dir);
    CHECK(symlink(target, path) == 0);
    snprintf(path, sizeof path, "%s/z-link", dir);
    CHECK(symlink(target, path) == 0);
    em_text *t = em_text_load_fortunes(dir);
    CHECK_MSG(t != NULL, "%s", ember_last_error());
    if (t) {
        CHECK_MSG(t->size == 10 && memcmp(t->bytes, "A\n%\nB\n%\nC\n", 10) == 0, "%.*s", (int)t->size,
                  (const char *)t->bytes);
        CHECK(strstr(t->source, "3 files"));
    }
    em_text_free(t);
    snprintf(path, sizeof path, "%s/none", test_tmpdir());
    mkdir(path, 0777);
    CHECK(em_text_load_fortunes(path) == NULL);
    CHECK_ERROR_CONTAINS("no fortune files in");

    /* Debian's corpus, when installed: WORKLOADS.md's text. */
    struct stat st;
    if (stat("/usr/share/games/fortunes/fortunes", &st) == 0) {
        t = em_text_load_fortunes(NULL);
        CHECK_MSG(t && t->size > 1000000, "%s", ember_last_error());
        if (t)
            printf("fortunes: %lld bytes from %s, unigram entropy %.4f bits/byte\n", (long long)t->size, t->source,
                   em_text_unigram_bits(t));
        em_text_free(t);
    }
}

static void test_statistics(void)
{
    em_text *t = em_text_from_bytes("aabb", 4, "ab");
    CHECK_NEAR(em_text_unigram_bits(t), 1.0, 1e-12);
    em_text_free(t);
    t = em_text_from_bytes("abcdabcd", 8, "abcd");
    CHECK_NEAR(em_text_unigram_bits(t), 2.0, 1e-12);
    CHECK(em_text_check_vocab(t, 256) == EM_OK && em_text_check_vocab(t, 101) == EM_OK);
    CHECK(em_text_check_vocab(t, 99) == EM_ERR);
    CHECK_ERROR_CONTAINS("abcd: byte 99 (0x63) at offset 2 is outside the model's vocabulary of 99 tokens");
    em_text_free(t);
    t = em_text_from_bytes("aaaa", 4, "a");
    CHECK_NEAR(em_text_unigram_bits(t), 0.0, 1e-12);
    em_text_free(t);
    CHECK(em_text_from_bytes("", 0, "nothing") == NULL);
}

static void test_split(void)
{
    uint8_t bytes[100];
    for (int i = 0; i < 100; i++)
        bytes[i] = (uint8_t)i;
    em_text *t = em_text_from_bytes(bytes, 100, "count");
    em_text *train, *val;
    CHECK(em_text_split(t, 0.1, 0, 7, &train, &val) == EM_OK);
    CHECK(train && val && train->size == 90 && val->size == 10);
    CHECK(train && val && train->bytes[89] == 89 && val->bytes[0] == 90 && val->bytes[9] == 99);
    CHECK(val && strstr(val->source, "the last 10% of count"));
    em_text_free(train);
    em_text_free(val);

    /* Chunks: 10 of 10 bytes, 3 for validation, the same for the same seed. */
    em_text *train2, *val2;
    CHECK(em_text_split(t, 0.3, 10, 5, &train, &val) == EM_OK);
    CHECK(em_text_split(t, 0.3, 10, 5, &train2, &val2) == EM_OK);
    CHECK(train && val && train->size == 70 && val->size == 30);
    CHECK(val && val2 && memcmp(val->bytes, val2->bytes, 30) == 0);
    /* whole chunks, in text order, disjoint with the training ones */
    bool seen[100] = {false};
    for (int64_t i = 0; val && i < val->size; i++) {
        CHECK(i % 10 == 0 || val->bytes[i] == val->bytes[i - 1] + 1);
        CHECK(i % 10 != 0 || val->bytes[i] % 10 == 0);
        CHECK(i == 0 || i % 10 || val->bytes[i] > val->bytes[i - 1]);
        seen[val->bytes[i]] = true;
    }
    for (int64_t i = 0; train && i < train->size; i++) {
        CHECK(!seen[train->bytes[i]]);
        seen[train->bytes[i]] = true;
    }
    int all = 0;
    for (int i = 0; i < 100; i++)
        all += seen[i];
    CHECK(all == 100);
    /* Another seed picks other chunks (for these seeds). */
    em_text *train3, *val3;
    CHECK(em_text_split(t, 0.3, 10, 6, &train3, &val3) == EM_OK);
    CHECK(val && val3 && memcmp(val->bytes, val3->bytes, 30) != 0);
    em_text_free(train);
    em_text_free(val);
    em_text_free(train2);
    em_text_free(val2);
    em_text_free(train3);
    em_text_free(val3);

    CHECK(em_text_split(t, 1.0, 0, 0, &train, &val) == EM_ERR);
    CHECK_ERROR_CONTAINS("between 0 and 1");
    CHECK(em_text_split(t, 0.005, 0, 0, &train, &val) == EM_ERR);
    CHECK_ERROR_CONTAINS("each part needs at least 2");
    CHECK(train == NULL && val == NULL);
    em_text_free(t);
}

static void test_windows(void)
{
    uint8_t bytes[1001];
    for (int i = 0; i < 1001; i++)
        bytes[i] = (uint8_t)(i * 7 % 251);
    em_text *t = em_text_from_bytes(bytes, 1001, "sevens");

    /* Random: targets are the inputs one byte on, starts spread over the text. */
    em_text_windows *w = em_text_windows_new(t, 4, 10, EM_TEXT_RANDOM, 3);
    CHECK(w && em_text_windows_per_pass(w) == 25);
    int64_t lowest = 1000, highest = 0;
    for (int k = 0; w && k < 200; k++) {
        em_text_batch b;
        em_text_windows_next(w, &b);
        CHECK(b.batch == 4 && b.steps == 10 && !b.restart);
        for (int r = 0; r < 4; r++) {
            const int32_t *in = b.inputs + r * 10, *tg = b.targets + r * 10;
            /* byte i is 7i mod 251, so the next byte is always 7 more */
            for (int i = 0; i < 10; i++)
                CHECK(tg[i] == (in[i] + 7) % 251 && (i + 1 == 10 || tg[i] == in[i + 1]));
        }
        int32_t first = b.inputs[0];
        for (int64_t i = 0; i < 1001; i++)
            if (bytes[i] == first) {
                lowest = i < lowest ? i : lowest;
                highest = i > highest ? i : highest;
                break;
            }
    }
    CHECK(lowest < 100 && highest > 150);
    em_text_windows_free(w);

    /* Sequential: 4 tracks of 250 bytes, 25 windows of 10 each; row r of batch k+1 goes
     * on where it ended in batch k; after the last window the tracks start over. */
    w = em_text_windows_new(t, 4, 10, EM_TEXT_SEQUENTIAL, 0);
    CHECK(w && em_text_windows_per_pass(w) == 25);
    int32_t last_target[4] = {0};
    for (int k = 0; w && k < 27; k++) {
        em_text_batch b;
        em_text_windows_next(w, &b);
        CHECK(b.restart == (k % 25 == 0));
        CHECK(b.index == k % 25);
        for (int r = 0; r < 4; r++) {
            int64_t start = r * 250 + (k % 25) * 10;
            CHECK(b.inputs[r * 10] == bytes[start] && b.targets[r * 10 + 9] == bytes[start + 10]);
            if (k % 25)
                CHECK(b.inputs[r * 10] == last_target[r]);
            last_target[r] = b.targets[r * 10 + 9];
        }
    }
    em_text_windows_free(w);

    CHECK(em_text_windows_new(t, 4, 1001, EM_TEXT_RANDOM, 0) == NULL);
    CHECK_ERROR_CONTAINS("the sequence length 1001 is longer than sevens allows: 1001 bytes hold windows of at most 1000");
    w = em_text_windows_new(t, 1, 1000, EM_TEXT_RANDOM, 0);
    CHECK(w != NULL);
    em_text_windows_free(w);
    CHECK(em_text_windows_new(t, 200, 10, EM_TEXT_SEQUENTIAL, 0) == NULL);
    CHECK_ERROR_CONTAINS("200 sequential tracks give 5 bytes each, fewer than the sequence length 10");
    em_text_free(t);
}

int main(void)
{
    test_load_errors();
    test_fortunes_directory();
    test_statistics();
    test_split();
    test_windows();
    return test_finish();
}
