/* Models that take token ids: the first layer (an embedding) names the vocabulary, and
 * ids given as integers become the float values em_forward carries to that layer, which
 * turns them back into ids. */
#include "ember/error.h"
#include "nn/layer.h"

int64_t em_model_vocab_size(const em_model *m)
{
    const em_layer *first = em_model_layer_at(m, 0);
    return first && first->kind->token_vocab ? first->kind->token_vocab(first) : 0;
}

em_tensor *em_forward_tokens(em_model *m, const int32_t *ids, int64_t batch, int64_t steps)
{
    if (!m || !ids) {
        em_error("em_forward_tokens: no %s", m ? "ids" : "model");
        return NULL;
    }
    if (em_model_vocab_size(m) == 0) {
        em_error("em_forward_tokens: the model does not take token ids (its first layer is not an embedding)");
        return NULL;
    }
    if (batch < 1 || steps < 1) {
        em_error("em_forward_tokens: %lld sequences of %lld tokens; both must be at least 1", (long long)batch,
                 (long long)steps);
        return NULL;
    }
    em_tensor *x = em_tensor_empty(NULL, 2, (int64_t[]){batch, steps});
    if (!x)
        return NULL;
    for (int64_t i = 0; i < batch * steps; i++)
        x->data[i] = (float)ids[i];
    return em_forward(m, x);
}
