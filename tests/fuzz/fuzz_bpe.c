/* libFuzzer target for GPT-2 tokenizer files. An input is two files: its first two bytes
 * (little-endian) give the length of merges.txt, which follows them; the rest is
 * vocab.json. A tokenizer that loads encodes both files' bytes as text, and every
 * encoding must decode back to the same bytes. Build with -DEMBER_FUZZ=ON
 * -DCMAKE_C_COMPILER=clang; tests/test_fuzz_corpus.c replays tests/fuzz/corpus/bpe. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ember.h"
#include "ember/bpe.h"
#include "fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* encode, then decode token by token: the bytes must come back unchanged. */
static void fuzz_bpe_round_trip(const em_bpe *b, const uint8_t *text, size_t len)
{
    int32_t *ids = NULL;
    int64_t n = em_bpe_encode(b, (const char *)text, len, &ids);
    if (n < 0)
        abort(); /* any bytes encode */
    size_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t piece = 0;
        const char *bytes = em_bpe_token_bytes(b, ids[i], &piece);
        if (!bytes || piece == 0 || at + piece > len || memcmp(text + at, bytes, piece) != 0)
            abort();
        at += piece;
    }
    if (at != len)
        abort();
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 16))
        return 0;
    size_t merges_len = (size_t)data[0] | (size_t)data[1] << 8;
    if (merges_len > size - 2)
        merges_len = size - 2;
    const uint8_t *merges = data + 2, *vocab = merges + merges_len;
    size_t vocab_len = size - 2 - merges_len;
    const char *merges_path = fuzz_write_file("merges.txt", merges, merges_len);
    const char *vocab_path = fuzz_write_file("vocab.json", vocab, vocab_len);
    em_clear_error();
    em_bpe *b = em_bpe_load(vocab_path, merges_path);
    if (b) {
        if (em_bpe_vocab_size(b) < 256 || em_bpe_merge_count(b) < 0)
            abort();
        fuzz_bpe_round_trip(b, merges, merges_len);
        fuzz_bpe_round_trip(b, vocab, vocab_len);
        em_bpe_free(b);
    } else if (!ember_last_error()[0]) {
        abort(); /* a failure must say why */
    }
    unlink(merges_path);
    unlink(vocab_path);
    return 0;
}
