/* libFuzzer target for GPT-2-format checkpoints (em_gpt_load): every input is a
 * safetensors file named model.safetensors, alone in its folder, loaded with one head
 * unless its metadata says otherwise. A model that loads has a configuration that
 * agrees with its tensors, and one that is small feeds two tokens through the decoder.
 * Build with -DEMBER_FUZZ=ON -DCMAKE_C_COMPILER=clang; tests/test_fuzz_corpus.c replays
 * tests/fuzz/corpus/gpt_import. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "ember.h"
#include "ember/gpt.h"
#include "fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_gpt_run(em_model *m)
{
    em_gpt_config c;
    if (em_model_gpt_config(m, &c) != EM_OK || c.vocab < 1 || c.context < 1 || c.layers < 0 ||
        c.heads < 1 || c.width < 1 || c.width % c.heads != 0)
        abort();
    const em_tensor *wte = em_model_find(m, "wte.weight");
    if (!wte || wte->shape[0] != c.vocab || wte->shape[1] != c.width)
        abort();
    if (c.vocab * c.width > 65536 || c.layers > 8)
        return; /* the decoder's arithmetic is not what is under test */
    em_gpt_decoder *d = em_gpt_decoder_new(m);
    float *logits = malloc((size_t)c.vocab * sizeof *logits);
    if (!d || !logits)
        abort();
    int32_t ids[2] = {0, (int32_t)(c.vocab - 1)};
    if (em_gpt_decoder_feed(d, ids, c.context >= 2 ? 2 : 1, logits, false) != EM_OK)
        abort();
    free(logits);
    em_gpt_decoder_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16))
        return 0;
    const char *path = fuzz_write_file("model.safetensors", data, size);
    em_clear_error();
    em_model *m = em_gpt_load(path, 1, 1);
    if (m) {
        fuzz_gpt_run(m);
        em_model_free(m);
    } else if (!ember_last_error()[0]) {
        abort(); /* a failure must say why */
    }
    em_step_end();
    unlink(path);
    return 0;
}
