/* Text as a sequence of byte tokens (a vocabulary of 256) for language models: loading
 * a file or Debian's fortunes corpus, a seeded train/validation split, and batches of
 * windows (inputs and the next-byte targets) drawn at random or read in order. */
#ifndef EMBER_TEXT_H
#define EMBER_TEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "ember/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EM_TEXT_VOCAB 256

typedef struct em_text {
    const uint8_t *bytes;
    int64_t size;
    char source[256]; /* for messages: the file(s) it came from, and which part */
    void *storage;    /* owned */
} em_text;

/* A file's bytes. A missing, unreadable or empty file is an error naming it. */
em_text *em_text_load(const char *path);
/* Debian's fortunes: every file under dir (NULL: $EMBER_FORTUNES_DIR, else
 * /usr/share/games/fortunes) without a .dat or .u8 suffix, in sorted order of their
 * paths, concatenated (subdirectories included, symbolic links not followed). */
em_text *em_text_load_fortunes(const char *dir);
/* "fortunes" or "text:FILE". */
em_text *em_text_open(const char *spec);
/* True when spec names text ("fortunes", "text:..."), as opposed to a dataset. */
bool em_text_is_spec(const char *spec);
/* A copy of size bytes (size >= 1). */
em_text *em_text_from_bytes(const void *bytes, int64_t size, const char *source);
void em_text_free(em_text *t);

/* Entropy of the text's byte frequencies in bits per byte: what a model that knows only
 * how often each byte occurs achieves, the bar a language model must clear. */
double em_text_unigram_bits(const em_text *t);
/* EM_ERR naming the first byte >= vocab and its offset (a model with a smaller
 * vocabulary than the text uses). */
int em_text_check_vocab(const em_text *t, int64_t vocab);

/* ---- train / validation split -------------------------------------------------------
 * chunk == 0: the last val_fraction of the text is the validation part (the default: no
 * validation text sits between training texts). chunk > 0: the text is cut into chunks
 * of that many bytes and a seeded random choice of round(val_fraction * chunks) of them
 * (at least one) is the validation part; each part is its chunks concatenated in order.
 * val_fraction in (0, 1); both parts must keep at least two bytes. */
int em_text_split(const em_text *t, double val_fraction, int64_t chunk, uint64_t seed, em_text **train,
                  em_text **val);

/* ---- windows --------------------------------------------------------------------------
 * A batch holds `batch` windows of `steps` bytes as inputs and the bytes one position
 * later as targets (int32 ids, [batch, steps] row-major).
 * EM_TEXT_RANDOM: every window starts at a uniformly drawn offset.
 * EM_TEXT_SEQUENTIAL: the text is cut into `batch` tracks of equal length and batch k
 * holds the k-th window of every track, so that row b of one batch continues row b of
 * the one before (state carried across batches sees one continuous text per row); after
 * the last whole window the tracks start over. */
typedef enum em_text_order { EM_TEXT_RANDOM = 0, EM_TEXT_SEQUENTIAL = 1 } em_text_order;

typedef struct em_text_batch {
    const int32_t *inputs;  /* batch * steps ids, valid until the next call */
    const int32_t *targets;
    int64_t batch, steps;
    int64_t index;          /* batch number within the pass over the text */
    bool restart;           /* sequential: the tracks started over with this batch */
} em_text_batch;

typedef struct em_text_windows em_text_windows;

/* EM_ERR-like NULL with a message when the text is too short: a window needs steps + 1
 * bytes, sequential tracks need batch * steps + 1. */
em_text_windows *em_text_windows_new(const em_text *t, int64_t batch, int64_t steps, em_text_order order,
                                     uint64_t seed);
void em_text_windows_free(em_text_windows *w);
void em_text_windows_next(em_text_windows *w, em_text_batch *b);
/* Batches in one pass over the text: as many windows as the text holds without overlap
 * (random order: the text's positions over the batch's). */
int64_t em_text_windows_per_pass(const em_text_windows *w);

/* Where the windows stand, for checkpoints: the generator of the random offsets and the
 * next batch's number within the pass. Windows over the same text, batch, length and
 * order that seek there give the batches that would have come next. */
typedef struct em_text_windows_position {
    em_rng rng;
    int64_t next;
} em_text_windows_position;

em_text_windows_position em_text_windows_tell(const em_text_windows *w);
/* EM_ERR (windows unchanged) when next exceeds a pass. */
int em_text_windows_seek(em_text_windows *w, const em_text_windows_position *p);

#ifdef __cplusplus
}
#endif
#endif
