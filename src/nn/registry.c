/* The layer kinds a description can name. A new kind is one file defining its
 * em_layer_kind and one line in each list below. */
#include <string.h>

#include "nn/layer.h"

extern const em_layer_kind em_layer_flatten;
extern const em_layer_kind em_layer_linear;
extern const em_layer_kind em_layer_relu;
extern const em_layer_kind em_layer_leaky_relu;
extern const em_layer_kind em_layer_sigmoid;
extern const em_layer_kind em_layer_tanh;
extern const em_layer_kind em_layer_gelu;
extern const em_layer_kind em_layer_gelu_tanh;
extern const em_layer_kind em_layer_silu;
extern const em_layer_kind em_layer_conv2d;
extern const em_layer_kind em_layer_maxpool;
extern const em_layer_kind em_layer_avgpool;
extern const em_layer_kind em_layer_adaptive_avgpool;
extern const em_layer_kind em_layer_batchnorm;
extern const em_layer_kind em_layer_dropout;
extern const em_layer_kind em_layer_embedding;
extern const em_layer_kind em_layer_rnn;
extern const em_layer_kind em_layer_lstm;
extern const em_layer_kind em_layer_gru;
extern const em_layer_kind em_layer_gpt;

static const em_layer_kind *const kinds[] = {
    &em_layer_flatten,
    &em_layer_linear,
    &em_layer_relu,
    &em_layer_leaky_relu,
    &em_layer_sigmoid,
    &em_layer_tanh,
    &em_layer_gelu,
    &em_layer_gelu_tanh,
    &em_layer_silu,
    &em_layer_conv2d,
    &em_layer_maxpool,
    &em_layer_avgpool,
    &em_layer_adaptive_avgpool,
    &em_layer_batchnorm,
    &em_layer_dropout,
    &em_layer_embedding,
    &em_layer_rnn,
    &em_layer_lstm,
    &em_layer_gru,
    &em_layer_gpt,
};

#define KIND_COUNT ((int)(sizeof kinds / sizeof kinds[0]))

const em_layer_kind *em_layer_kind_find(const char *name)
{
    for (int i = 0; i < KIND_COUNT; i++)
        if (strcmp(kinds[i]->name, name) == 0)
            return kinds[i];
    return NULL;
}

int em_layer_kind_count(void) { return KIND_COUNT; }

const em_layer_kind *em_layer_kind_at(int i) { return i >= 0 && i < KIND_COUNT ? kinds[i] : NULL; }

void em_layer_kind_list(char *buf, size_t size)
{
    if (size == 0)
        return;
    buf[0] = '\0';
    for (int i = 0; i < KIND_COUNT; i++)
        em_text_append(buf, size, "%s%s", i ? ", " : "", kinds[i]->name);
}
