/* libFuzzer target for the IDX reader. An input is two files: its first two bytes
 * (little-endian) give the length of the labels file, which follows them; the rest is
 * the images file. Either may be gzip-compressed. A dataset that loads goes through
 * fuzz_use_dataset. Build with -DEMBER_FUZZ=ON
 * -DCMAKE_C_COMPILER=clang; tests/test_fuzz_corpus.c replays tests/fuzz/corpus/idx. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ember.h"
#include "fuzz/fuzz_dataset.h"
#include "fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 16))
        return 0;
    size_t labels_len = (size_t)data[0] | (size_t)data[1] << 8;
    if (labels_len > size - 2)
        labels_len = size - 2;
    const uint8_t *labels = data + 2, *images = labels + labels_len;
    size_t images_len = size - 2 - labels_len;
    const char *labels_path = fuzz_write_file("labels", labels, labels_len);
    const char *images_path = fuzz_write_file("images", images, images_len);
    em_clear_error();
    em_dataset *ds = em_dataset_load_idx(images_path, labels_path);
    if (ds) {
        if (!ds->pixels)
            abort();
        fuzz_use_dataset(ds);
        em_dataset_free(ds);
    } else if (!ember_last_error()[0]) {
        abort(); /* a failure must say why */
    }
    unlink(labels_path);
    unlink(images_path);
    return 0;
}
