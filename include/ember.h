/* ember: a deep-learning framework in C11. One include for the whole public API. */
#ifndef EMBER_H
#define EMBER_H

#include "ember/error.h"
#include "ember/arena.h"
#include "ember/tensor.h"
#include "ember/autograd.h"
#include "ember/ops.h"
#include "ember/cnn_ops.h"
#include "ember/transformer_ops.h"
#include "ember/gpt.h"
#include "ember/bpe.h"
#include "ember/rnn_ops.h"
#include "ember/nn.h"
#include "ember/optim.h"
#include "ember/optim_state.h"
#include "ember/schedule.h"
#include "ember/data.h"
#include "ember/image.h"
#include "ember/safetensors.h"
#include "ember/runtime.h"
#include "ember/checkpoint.h"
#include "ember/transfer.h"
#include "ember/history.h"
#include "ember/train.h"
#include "ember/compare.h"
#include "ember/text.h"
#include "ember/lm.h"

#endif
