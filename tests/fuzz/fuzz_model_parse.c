/* libFuzzer target for model descriptions: every input is parsed as description text;
 * a model that parses is summarised, described and parsed again from its own
 * description, which must succeed, and a small one is run forward and backward. Build
 * with -DEMBER_FUZZ=ON -DCMAKE_C_COMPILER=clang. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A model that parsed must also run: a batch of two through forward in training mode
 * (with backward) and in evaluation mode, giving the output shape the model reports.
 * Only small models, so that the parser stays what is under test. */
static void fuzz_model_run(em_model *m)
{
    int64_t in[EM_MAX_DIMS], out[EM_MAX_DIMS];
    int in_ndim = em_model_input_shape(m, in + 1), out_ndim = em_model_output_shape(m, out);
    in[0] = 2;
    if (em_shape_numel(in_ndim, in + 1) > 4096 || em_model_param_count(m) > 100000)
        return;
    for (int training = 1; training >= 0; training--) {
        em_model_set_training(m, training);
        bool was = em_set_grad_enabled(training);
        em_tensor *x = em_tensor_full(NULL, in_ndim + 1, in, 0.5f);
        em_tensor *y = x ? em_forward(m, x) : NULL;
        if (!y || y->ndim != out_ndim + 1 || y->shape[0] != 2)
            abort();
        for (int d = 0; d < out_ndim; d++)
            if (y->shape[d + 1] != out[d])
                abort();
        if (training && em_model_param_count(m) > 0 &&
            (!y->requires_grad || em_backward(em_sum_all(y)) != EM_OK))
            abort();
        em_set_grad_enabled(was);
        em_step_end();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    /* Every tensor's size is a product of numbers in the text: bounding their product
     * keeps each model small (the library's own cap, 2^28 elements, is for users). */
    double product = 1, largest = 0;
    for (size_t i = 0; i < size;) {
        if (data[i] < '0' || data[i] > '9') {
            i++;
            continue;
        }
        double v = 0;
        while (i < size && data[i] >= '0' && data[i] <= '9')
            v = v * 10 + (data[i++] - '0');
        product *= v > 1 ? v : 1;
        largest = v > largest ? v : largest;
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
        /* Activations grow with padding squared, which the product does not bound: run
         * only models whose every number is small. */
        if (product <= 1e5 && largest <= 64)
            fuzz_model_run(m);
        em_model_free(m);
    }
    free(text);
    return 0;
}
