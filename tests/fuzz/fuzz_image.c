/* libFuzzer target for the image decoders (PNG, PGM, PPM): every input is decoded; an
 * image that decodes is converted to a grey 28x28 input and an RGB 5x7 one, whose
 * values must lie in [0, 1]. A refused input must say why. Build with -DEMBER_FUZZ=ON
 * -DCMAKE_C_COMPILER=clang; tests/test_fuzz_corpus.c replays tests/fuzz/corpus/image. */
#include <stdint.h>
#include <stdlib.h>

#include "ember.h"
#include "ember/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    em_clear_error();
    em_image *img = em_image_decode(data, size, "fuzz");
    if (!img) {
        if (!ember_last_error()[0])
            abort(); /* a failure must say why */
        return 0;
    }
    if (img->width < 1 || img->height < 1 || (img->channels != 1 && img->channels != 3))
        abort();
    /* Resampling cost grows with the image; the decoders are what is under test. */
    if (img->width * img->height <= (INT64_C(1) << 20)) {
        float grey[28 * 28], rgb[3 * 5 * 7];
        if (em_image_to_input(img, 1, 28, 28, false, grey) != EM_OK ||
            em_image_to_input(img, 3, 5, 7, true, rgb) != EM_OK)
            abort();
        for (int i = 0; i < 28 * 28; i++)
            if (!(grey[i] >= 0.0f && grey[i] <= 1.0f))
                abort();
        for (int i = 0; i < 3 * 5 * 7; i++)
            if (!(rgb[i] >= 0.0f && rgb[i] <= 1.0f))
                abort();
    }
    em_image_free(img);
    return 0;
}
