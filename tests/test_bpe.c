/* GPT-2's byte-level BPE: the tiny tokenizer of tests/fixtures/gpt2_tiny (256 byte
 * symbols, 40 merges, <|endoftext|>) encodes the fixture's strings (contractions, digits,
 * runs of spaces and newlines, accents, symbols, emoji, numbers of other scripts,
 * <|endoftext|> as its one token) to the ids of the Python reference in
 * tests/fixtures/gen_gpt.py; a vocabulary without <|endoftext|> reads it as text; decoding gives back the
 * bytes of any input, invalid UTF-8 included; malformed vocab.json and merges.txt give
 * messages naming the file and the line or entry. */
#include <stdlib.h>
#include <string.h>

#include "ember/bpe.h"
#include "testlib.h"

static char *decode(const em_bpe *b, const int32_t *ids, int64_t n, size_t *len)
{
    size_t cap = 16, used = 0;
    char *out = malloc(cap);
    for (int64_t i = 0; i < n; i++) {
        size_t k;
        const char *bytes = em_bpe_token_bytes(b, ids[i], &k);
        if (!bytes) {
            free(out);
            return NULL;
        }
        while (used + k + 1 > cap)
            out = realloc(out, cap *= 2);
        memcpy(out + used, bytes, k);
        used += k;
    }
    out[used] = '\0';
    *len = used;
    return out;
}

static void test_fixture_cases(void)
{
    em_bpe *b = em_bpe_load_dir(test_path("tests/fixtures/gpt2_tiny"));
    CHECK_MSG(b != NULL, "%s", ember_last_error());
    if (!b)
        return;
    CHECK(em_bpe_vocab_size(b) == 297 && em_bpe_merge_count(b) == 40);
    CHECK(em_bpe_find(b, "<|endoftext|>") == 296 && em_bpe_find(b, "!") == 0 && em_bpe_find(b, "nope") == -1);
    CHECK(em_bpe_end_of_text(b) == 296);
    size_t len;
    const char *eot = em_bpe_token_bytes(b, 296, &len);
    CHECK(eot && len == 13 && memcmp(eot, "<|endoftext|>", 13) == 0);
    const char *newline = em_bpe_token_bytes(b, em_bpe_find(b, "\xc4\x8a"), &len); /* Ċ stands for '\n' */
    CHECK(newline && len == 1 && newline[0] == '\n');

    em_st_file *f = test_fixture("gpt2_tiny");
    int cases = atoi(em_st_metadata(f, "bpe.count"));
    CHECK(cases == 9);
    for (int i = 0; i < cases; i++) {
        char key[64];
        snprintf(key, sizeof key, "bpe.%d.text", i);
        const char *text = em_st_metadata(f, key);
        snprintf(key, sizeof key, "bpe.%d.ids", i);
        em_tensor *want = test_fixture_tensor(f, key);
        int64_t n_want = want->numel == 1 && want->data[0] < 0 ? 0 : want->numel;
        int32_t *ids = NULL;
        int64_t n = em_bpe_encode(b, text, strlen(text), &ids);
        bool same = n == n_want;
        for (int64_t k = 0; same && k < n; k++)
            same = ids[k] == (int32_t)want->data[k];
        CHECK_MSG(same, "case %d (\"%s\"): %lld ids, expected %lld", i, text, (long long)n, (long long)n_want);
        char *back = decode(b, ids, n, &len);
        CHECK_MSG(back && len == strlen(text) && memcmp(back, text, len) == 0, "case %d does not decode back", i);
        free(back);
        free(ids);
    }
    em_st_close(f);

    /* any bytes round-trip, invalid UTF-8 and NULs included */
    em_rng rng;
    em_rng_seed(&rng, 3);
    for (int trial = 0; trial < 200; trial++) {
        char text[64];
        size_t n = 1 + em_rng_below(&rng, sizeof text);
        for (size_t k = 0; k < n; k++) {
            /* mostly a few letters, spaces and high bytes, so that pieces merge and split */
            static const char pool[] = "the fox  \n\t'sre12\xc3\xa9\xe2\x80\x94\xff\x80";
            text[k] = em_rng_below(&rng, 4) ? pool[em_rng_below(&rng, sizeof pool - 1)]
                                           : (char)em_rng_below(&rng, 256);
        }
        int32_t *ids = NULL;
        int64_t count = em_bpe_encode(b, text, n, &ids);
        char *back = decode(b, ids, count, &len);
        CHECK_MSG(count > 0 && count <= (int64_t)n && back && len == n && memcmp(back, text, n) == 0,
                  "trial %d: %zu bytes do not round-trip", trial, n);
        free(back);
        free(ids);
    }
    /* merges apply: "the" is one token, " the" another */
    int32_t *ids = NULL;
    CHECK(em_bpe_encode(b, "the the", 7, &ids) == 2 && ids[0] == em_bpe_find(b, "the") &&
          ids[1] == em_bpe_find(b, "\xc4\xa0the"));
    free(ids);
    em_bpe_free(b);
}

static const char *write_file(const char *name, const char *text)
{
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    fputs(text, f);
    fclose(f);
    return p;
}

/* A valid vocab.json of the 256 byte symbols plus extra entries. */
static char *byte_vocab(const char *extra)
{
    em_bpe *b = em_bpe_load_dir(test_path("tests/fixtures/gpt2_tiny"));
    size_t cap = 16384 + strlen(extra);
    char *out = malloc(cap);
    strcpy(out, "{");
    for (int32_t id = 0; id < 256; id++) {
        /* token texts of the fixture's first 256 ids, JSON-escaped where needed */
        size_t len;
        em_bpe_token_bytes(b, id, &len);
        char text[16];
        int32_t found = -1;
        for (int cp = 0x21; cp < 0x200 && found != id; cp++) {
            char u[8];
            size_t k = cp < 0x80 ? (u[0] = (char)cp, 1) : (u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), 2);
            u[k] = '\0';
            found = em_bpe_find(b, u);
            if (found == id)
                strcpy(text, u);
        }
        const char *escaped = strcmp(text, "\"") == 0 ? "\\\"" : strcmp(text, "\\") == 0 ? "\\\\" : text;
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s\"%s\": %d", id ? ", " : "", escaped, (int)id);
    }
    size_t used = strlen(out);
    snprintf(out + used, cap - used, "%s}", extra);
    em_bpe_free(b);
    return out;
}

static void expect_failure(const char *vocab_text, const char *merges_text, const char *needle)
{
    const char *vocab = write_file("vocab.json", vocab_text);
    const char *merges = write_file("merges.txt", merges_text);
    em_bpe *b = em_bpe_load(vocab, merges);
    CHECK_MSG(b == NULL && test_error_contains(needle), "expected \"%s\", got \"%s\"", needle,
              b ? "(loaded)" : ember_last_error());
    em_bpe_free(b);
}

static void test_malformed(void)
{
    char *good = byte_vocab(", \"th\": 256, \"the\": 257");
    const char *merges = "#version: 0.2\nt h\nth e\n";
    /* the good pair loads */
    em_bpe *b = em_bpe_load(write_file("vocab.json", good), write_file("merges.txt", merges));
    CHECK_MSG(b && em_bpe_vocab_size(b) == 258 && em_bpe_merge_count(b) == 2, "%s", ember_last_error());
    /* without <|endoftext|> in the vocabulary, it is ordinary text */
    if (b) {
        CHECK(em_bpe_end_of_text(b) == -1);
        int32_t *ids = NULL;
        int64_t n = em_bpe_encode(b, "<|endoftext|>", 13, &ids);
        /* no merge applies: one token per byte */
        CHECK_MSG(n == 13 && ids[0] == em_bpe_find(b, "<") && ids[12] == em_bpe_find(b, ">"),
                  "<|endoftext|> as text: %lld ids", (long long)n);
        free(ids);
    }
    em_bpe_free(b);

    expect_failure("{\"a\": 1,\n \"b\": }", merges, "vocab.json:2:");
    expect_failure("{\"a\": 1,\n \"b\": }", merges, "not valid JSON");
    expect_failure("[1, 2]", merges, "vocab.json: expected an object of \"token\": id pairs, got an array");
    expect_failure("{}", merges, "got an empty object");
    char *bad = byte_vocab(", \"th\": \"x\"");
    expect_failure(bad, merges, "vocab.json: entry 257 (\"th\"): the id must be an integer");
    free(bad);
    bad = byte_vocab(", \"th\": 2.5");
    expect_failure(bad, merges, "got a number 2.5");
    free(bad);
    bad = byte_vocab(", \"th\": 3");
    expect_failure(bad, merges, "id 3 is given to both");
    free(bad);
    expect_failure("{\"a\": 0, \"b\": 1}", merges, "no token for byte 0x00");
    expect_failure(good, "#version: 0.2\nt h\nthe\n", "merges.txt:3: expected two symbols separated by one space, got \"the\"");
    expect_failure(good, "t h\nt  h\n", "merges.txt:2: expected two symbols");
    expect_failure(good, "t h\nth q\xc3\xa9\n", "merges.txt:2: the symbol \"q\xc3\xa9\" is not in the vocabulary");
    expect_failure(good, "t h\nh e\n", "merges.txt:2: merging \"h\" and \"e\" gives \"he\", which is not in the vocabulary");
    /* a missing file is named */
    b = em_bpe_load(write_file("vocab.json", good), "/nonexistent/merges.txt");
    CHECK(b == NULL);
    CHECK_ERROR_CONTAINS("/nonexistent/merges.txt: No such file or directory");
    b = em_bpe_load_dir("/nonexistent");
    CHECK(b == NULL);
    CHECK_ERROR_CONTAINS("/nonexistent/vocab.json");
    free(good);
}

int main(void)
{
    test_fixture_cases();
    test_malformed();
    return test_finish();
}
