/* libFuzzer target for the CSV reader. The first byte of an input picks the label column
 * (its value mod 5, minus 2: -2..2, so both counting directions and out-of-range columns
 * are reached); the rest is the file. A dataset that loads goes through
 * fuzz_use_dataset. Build with -DEMBER_FUZZ=ON -DCMAKE_C_COMPILER=clang;
 * tests/test_fuzz_corpus.c replays tests/fuzz/corpus/csv. */
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
    if (size < 1 || size > (1u << 16))
        return 0;
    int label_column = data[0] % 5 - 2;
    const char *path = fuzz_write_file("csv", data + 1, size - 1);
    em_clear_error();
    em_dataset *ds = em_dataset_load_csv(path, label_column);
    if (ds) {
        if (!ds->features || ds->item_ndim != 1)
            abort();
        fuzz_use_dataset(ds);
        em_dataset_free(ds);
    } else if (!ember_last_error()[0]) {
        abort(); /* a failure must say why */
    }
    unlink(path);
    return 0;
}
