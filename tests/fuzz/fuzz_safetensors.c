/* libFuzzer target for the safetensors reader: every input is written to a file and
 * opened; whatever opens is listed and its loadable tensors converted. Build with
 * -DEMBER_FUZZ=ON -DCMAKE_C_COMPILER=clang (which instruments the library too);
 * tests/test_fuzz_corpus.c replays tests/fuzz/corpus/safetensors. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ember.h"
#include "fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static em_arena *arena;
    if (!arena && !(arena = em_arena_create(0)))
        abort();
    const char *path = fuzz_write_file("safetensors", data, size);
    em_clear_error();
    em_st_file *f = em_st_open(path);
    if (f) {
        for (int i = 0; i < em_st_count(f); i++) {
            const em_st_entry *e = em_st_entry_at(f, i);
            /* Cap the work per input; the parser, not the copy, is under test. */
            if (e->dtype != EM_DTYPE_OTHER && e->numel > 0 && e->nbytes <= (1u << 20))
                em_st_load(f, e->name, arena);
        }
        for (int i = 0; i < em_st_metadata_count(f); i++)
            em_st_metadata(f, em_st_metadata_key(f, i));
        em_st_close(f);
    } else if (!ember_last_error()[0]) {
        abort(); /* a failure must say why */
    }
    em_arena_reset(arena);
    unlink(path);
    return 0;
}
