/* GPT-2's byte-level BPE tokenizer from its two files: vocab.json ({"token": id, ...},
 * tokens written in GPT-2's printable stand-ins for the 256 bytes) and merges.txt (an
 * optional "#version" line, then one merge "a b" a line, earliest merges first).
 *
 * Encoding splits the text as GPT-2's pattern does ('s 't 're 've 'm 'll 'd, an optional
 * space before a run of letters, of numbers or of other symbols, and white space that
 * leaves its last space to the next word), maps each piece's bytes to their single-byte
 * tokens and applies the merges by rank. Letters and numbers are Unicode's general
 * categories L and N (tables generated from the Unicode database), white space what
 * Python's str.isspace accepts; bytes that are not valid UTF-8 count as symbols. Decoding
 * maps tokens back to their bytes, so decode(encode(text)) == text for any bytes.
 * "<|endoftext|>" in a text is that one token when the vocabulary has it (as Hugging
 * Face's GPT-2 tokenizer reads it); the text on each side is split on its own. */
#ifndef EMBER_BPE_H
#define EMBER_BPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct em_bpe em_bpe;

/* NULL with a message naming the file and the line (merges.txt) or entry (vocab.json)
 * when a file is missing, not in GPT-2's format, or the two do not agree (a merge whose
 * symbols or result are not in the vocabulary, a byte without its token). */
em_bpe *em_bpe_load(const char *vocab_path, const char *merges_path);
/* DIR/vocab.json and DIR/merges.txt. */
em_bpe *em_bpe_load_dir(const char *dir);
void em_bpe_free(em_bpe *b);

/* The largest id + 1. */
int64_t em_bpe_vocab_size(const em_bpe *b);
int64_t em_bpe_merge_count(const em_bpe *b);

/* The ids of len bytes of text: their count, with *ids malloc'd (the caller frees it;
 * NULL when there are none), or EM_ERR. */
int64_t em_bpe_encode(const em_bpe *b, const char *text, size_t len, int32_t **ids);
/* The bytes a token stands for (valid while b lives), NULL for an id that is not in the
 * vocabulary. */
const char *em_bpe_token_bytes(const em_bpe *b, int32_t id, size_t *len);
/* The id of a token written as in vocab.json ("<|endoftext|>"), or -1. */
int32_t em_bpe_find(const em_bpe *b, const char *token);
/* The id of <|endoftext|>, or -1 when the vocabulary has none. */
int32_t em_bpe_end_of_text(const em_bpe *b);

#ifdef __cplusplus
}
#endif
#endif
