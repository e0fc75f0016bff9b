/* libFuzzer target for model descriptions: every input is parsed as description text;
 * a model that parses is summarised, described and parsed again from its own
 * description, which must succeed. Build with -DEMBER_FUZZ=ON
 * -DCMAKE_C_COMPILER=clang. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    /* Every tensor's size is a product of numbers in the text: bounding their product
     * keeps each model small (the library's own cap, 2^28 elements, is for users). */
    double product = 1;
    for (size_t i = 0; i < size;) {
        if (data[i] < '0' || data[i] > '9') {
            i++;
            continue;
        }
        double v = 0;
        while (i < size && data[i] >= '0' && data[i] <= '9')
            v = v * 10 + (data[i++] - '0');
        product *= v > 1 ? v : 1;
    }
    if (product > 1e7)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    em_model *m = em_model_parse(text, "fuzz", 1);
    if (m) {
        FILE *null = fopen("/dev/null", "w");
        em_model_summary(m, null);
        if (null)
            fclose(null);
        em_model *again = em_model_parse(em_model_description(m), "fuzz-again", 1);
        if (!again || em_model_param_count(again) != em_model_param_count(m))
            abort();
        em_model_free(again);
        em_model_free(m);
    }
    free(text);
    return 0;
}
