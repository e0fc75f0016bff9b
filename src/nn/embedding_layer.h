/* Internal: what a recurrent layer that folds its embedding in (recurrent_layer.c)
 * needs from the embedding layer (embedding_layer.c). */
#ifndef EMBER_NN_EMBEDDING_LAYER_H
#define EMBER_NN_EMBEDDING_LAYER_H

#include "nn/layer.h"

/* True when l is an embedding layer. */
bool em_layer_is_embedding(const em_layer *l);
/* The ids that x (float ids [N, T], as em_forward carries them) holds, as int32 in the
 * step arena; NULL with a message naming the first id that is not an integer of the
 * vocabulary. */
int32_t *em_embedding_layer_ids(const em_layer *l, em_tensor *x);
/* The weight [V, D] and the padding row (-1: none). */
em_tensor *em_embedding_layer_weight(const em_layer *l, int64_t *padding_idx);

#endif
