/* rnn / lstm / gru HIDDEN [layers=1] [nonlinearity=tanh|relu (rnn)] [bias=true]
 * [batch_first=true] [dropout=0]: PyTorch's nn.RNN, nn.LSTM and nn.GRU over [T, I]
 * examples, output [T, HIDDEN] per example (the hidden state at every step of the top
 * layer), so that a following linear layer predicts at every position.
 *
 * Parameters as PyTorch names them (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
 * then _l1 ...), in its order, all drawn from U(-1/sqrt(HIDDEN), 1/sqrt(HIDDEN)). Dropout
 * applies to the outputs of every layer but the last, in training, as in PyTorch.
 *
 * A model's tensors are always batch-first ([N, T, I]); batch_first says how the layers
 * run: true hands the ops the batch-first sequences, false transposes once to the
 * time-major layout for all the stacked layers and back at the end. Both give the same
 * numbers, so PyTorch's flag may be written either way.
 *
 * The final states of the last forward are kept in the layer (model_carry.c), and the
 * next forward starts from them when carrying is on or when the caller set them.
 *
 * Right after an embedding (a language model's first layers), the layer takes the
 * embedding over: its forward gets the token ids and, when the vocabulary has fewer
 * entries than the batch has positions, runs the lookup and the first stacked layer as
 * one op (em_lstm_embedded ...: the input projection once per token instead of once per
 * position); otherwise it runs the embedding's own forward first. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ember/cnn_ops.h"
#include "ember/error.h"
#include "ember/rnn_ops.h"
#include "nn/embedding_layer.h"

#define MAX_LAYERS 16

enum cell_kind { CELL_RNN, CELL_LSTM, CELL_GRU };

typedef struct recurrent_config {
    int64_t hidden_size, num_layers;
    em_activation nonlinearity; /* rnn only */
    bool bias, batch_first;
    float dropout;
    em_rnn_params params[MAX_LAYERS];
    em_layer_carry carry;
    em_layer *embedding; /* the embedding this layer took over, or NULL */
} recurrent_config;

static int gate_count(const em_layer_kind *kind)
{
    return kind->variant == CELL_LSTM ? 4 : kind->variant == CELL_GRU ? 3 : 1;
}

static int recurrent_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    recurrent_config *c = config;
    int r = em_option_int(o, 0, "hidden_size|hidden", 1, INT32_MAX, &c->hidden_size);
    if (r <= 0)
        return r == 0 ? em_option_missing(o, "hidden_size") : EM_ERR;
    c->num_layers = 1;
    c->bias = true;
    c->batch_first = true;
    c->nonlinearity = EM_ACT_TANH;
    if (em_option_int(o, 1, "num_layers|layers", 1, MAX_LAYERS, &c->num_layers) < 0 ||
        em_option_bool(o, -1, "bias", &c->bias) < 0 || em_option_bool(o, -1, "batch_first", &c->batch_first) < 0 ||
        em_option_float(o, -1, "dropout", 0.0, 1.0, &c->dropout) < 0)
        return EM_ERR;
    if (kind->variant == CELL_RNN) {
        const char *act;
        r = em_option_word(o, -1, "nonlinearity", &act);
        if (r < 0)
            return EM_ERR;
        if (r == 1 && strcmp(act, "tanh") == 0)
            c->nonlinearity = EM_ACT_TANH;
        else if (r == 1 && strcmp(act, "relu") == 0)
            c->nonlinearity = EM_ACT_RELU;
        else if (r == 1)
            return em_error("rnn: nonlinearity must be tanh or relu, got '%s'", act);
    }
    return EM_OK;
}

static int recurrent_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const recurrent_config *c = l->config;
    if (c->hidden_size < 1 || c->num_layers < 1 || c->num_layers > MAX_LAYERS)
        return em_error("hidden_size must be at least 1 and num_layers in 1..%d, got %lld and %lld", MAX_LAYERS,
                        (long long)c->hidden_size, (long long)c->num_layers);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return em_error("dropout must be in [0, 1), got %g", (double)c->dropout);
    if (l->kind->variant == CELL_RNN && c->nonlinearity != EM_ACT_TANH && c->nonlinearity != EM_ACT_RELU)
        return em_error("nonlinearity must be tanh or relu");
    if (in->ndim != 2)
        return em_error("%s takes a sequence of feature vectors per example ([steps, features]), but the input "
                        "is %s%s",
                        l->kind->name, em_dims_str(in->ndim, in->dim),
                        in->ndim == 1 ? ": for token ids, add an 'embedding VOCAB DIM' line before it" : "");
    out->ndim = 2;
    out->dim[0] = in->dim[0];
    out->dim[1] = c->hidden_size;
    return EM_OK;
}

static int recurrent_create(em_layer *l, em_rng *rng)
{
    recurrent_config *c = l->config;
    const int64_t H = c->hidden_size, GH = gate_count(l->kind) * H;
    const float bound = 1.0f / sqrtf((float)H);
    for (int64_t k = 0; k < c->num_layers; k++) {
        int64_t in = k == 0 ? l->in.dim[1] : H;
        char name[4][48];
        snprintf(name[0], sizeof name[0], "weight_ih_l%lld", (long long)k);
        snprintf(name[1], sizeof name[1], "weight_hh_l%lld", (long long)k);
        snprintf(name[2], sizeof name[2], "bias_ih_l%lld", (long long)k);
        snprintf(name[3], sizeof name[3], "bias_hh_l%lld", (long long)k);
        em_rnn_params *p = &c->params[k];
        p->weight_ih = em_layer_param(l, name[0], 2, (int64_t[]){GH, in});
        p->weight_hh = p->weight_ih ? em_layer_param(l, name[1], 2, (int64_t[]){GH, H}) : NULL;
        if (!p->weight_hh)
            return EM_ERR;
        if (c->bias) {
            p->bias_ih = em_layer_param(l, name[2], 1, (int64_t[]){GH});
            p->bias_hh = p->bias_ih ? em_layer_param(l, name[3], 1, (int64_t[]){GH}) : NULL;
            if (!p->bias_hh)
                return EM_ERR;
        }
    }
    /* PyTorch's reset_parameters: every parameter, in state_dict order, from one range. */
    for (int64_t k = 0; k < c->num_layers; k++) {
        em_tensor *each[4] = {c->params[k].weight_ih, c->params[k].weight_hh, c->params[k].bias_ih,
                              c->params[k].bias_hh};
        for (int i = 0; i < 4; i++)
            if (each[i])
                em_init_uniform(each[i], rng, -bound, bound);
    }
    em_layer_carry *carry = &c->carry;
    memset(carry, 0, sizeof *carry);
    carry->count = l->kind->variant == CELL_LSTM ? 2 : 1;
    carry->names[0] = "h";
    carry->names[1] = "c";
    carry->rows = c->num_layers;
    carry->width = H;
    return EM_OK;
}

/* One stacked layer on x, or on token input; x, the ids and the output in the layout
 * `batch_first` says. */
static em_tensor *run_layer(em_layer *l, em_tensor *x, const em_token_input *tokens, int64_t k, bool batch_first)
{
    recurrent_config *c = l->config;
    em_layer_carry *carry = &c->carry;
    em_tensor *h0 = em_carry_initial(carry, 0, k);
    em_tensor *h_n = NULL, *c_n = NULL, *y;
    const em_rnn_params *p = &c->params[k];
    if (l->kind->variant == CELL_LSTM) {
        em_tensor *c0 = em_carry_initial(carry, 1, k);
        y = tokens ? em_lstm_embedded(tokens, p, h0, c0, batch_first, &h_n, &c_n)
                   : em_lstm(x, p, h0, c0, batch_first, &h_n, &c_n);
    } else if (l->kind->variant == CELL_GRU) {
        y = tokens ? em_gru_embedded(tokens, p, h0, batch_first, &h_n) : em_gru(x, p, h0, batch_first, &h_n);
    } else {
        y = tokens ? em_rnn_embedded(tokens, p, h0, c->nonlinearity, batch_first, &h_n)
                   : em_rnn(x, p, h0, c->nonlinearity, batch_first, &h_n);
    }
    if (!y)
        return NULL;
    em_carry_store(carry, 0, k, h_n);
    if (c_n)
        em_carry_store(carry, 1, k, c_n);
    return y;
}


static em_tensor *recurrent_forward(em_layer *l, em_tensor *x, bool training)
{
    recurrent_config *c = l->config;
    if (x->ndim != (c->embedding ? 2 : 3))
        return NULL;
    /* Token ids in: the embedding folded into the first stacked layer when the
     * vocabulary is the smaller, its own forward otherwise. */
    em_token_input tokens = {NULL, x->shape[0], x->shape[1], NULL, -1};
    em_tensor *seq = x;
    if (c->embedding) {
        tokens.embedding = em_embedding_layer_weight(c->embedding, &tokens.padding_idx);
        bool fold = tokens.embedding->shape[0] < tokens.batch * tokens.steps;
        if (fold)
            tokens.ids = em_embedding_layer_ids(c->embedding, x);
        else
            seq = c->embedding->kind->forward(c->embedding, x, training);
        if (fold ? !tokens.ids : !seq)
            return NULL;
    }
    if (em_carry_begin(l, &c->carry, x->shape[0]) < 0)
        return NULL;
    /* The stored states are overwritten layer by layer, after each has read its own. */
    const bool time_major = !c->batch_first;
    int64_t first = 0;
    if (tokens.ids) {
        seq = run_layer(l, NULL, &tokens, 0, true);
        first = 1;
        if (seq && c->num_layers > 1 && c->dropout > 0.0f)
            seq = em_dropout(seq, c->dropout, training, em_model_rng(l->model));
    }
    if (seq && time_major && first < c->num_layers)
        seq = em_contiguous(em_transpose(seq, 0, 1));
    for (int64_t k = first; seq && k < c->num_layers; k++) {
        seq = run_layer(l, seq, NULL, k, !time_major);
        if (seq && k + 1 < c->num_layers && c->dropout > 0.0f)
            seq = em_dropout(seq, c->dropout, training, em_model_rng(l->model));
    }
    em_carry_end(&c->carry);
    return seq && time_major && first < c->num_layers ? em_contiguous(em_transpose(seq, 0, 1)) : seq;
}

static bool recurrent_absorb_previous(em_layer *l, em_layer *prev)
{
    recurrent_config *c = l->config;
    if (!em_layer_is_embedding(prev))
        return false;
    c->embedding = prev;
    return true;
}

static void recurrent_describe(const em_layer *l, char *buf, size_t size)
{
    const recurrent_config *c = l->config;
    em_text_append(buf, size, "%lld", (long long)c->hidden_size);
    if (c->num_layers != 1)
        em_text_append(buf, size, " layers=%lld", (long long)c->num_layers);
    if (l->kind->variant == CELL_RNN && c->nonlinearity == EM_ACT_RELU)
        em_text_append(buf, size, " nonlinearity=relu");
    if (!c->bias)
        em_text_append(buf, size, " bias=false");
    if (!c->batch_first)
        em_text_append(buf, size, " batch_first=false");
    if (c->dropout != 0.0f) {
        em_text_append(buf, size, " dropout=");
        em_text_append_float(buf, size, c->dropout);
    }
}

static em_layer_carry *recurrent_carry(em_layer *l) { return &((recurrent_config *)l->config)->carry; }

#define RECURRENT_KIND(NAME, VARIANT, USAGE)                                                                  \
    {                                                                                                         \
        .name = NAME, .usage = USAGE, .config_size = sizeof(recurrent_config), .variant = VARIANT,            \
        .parse = recurrent_parse, .infer = recurrent_infer, .create = recurrent_create,                       \
        .forward = recurrent_forward, .describe = recurrent_describe, .carry = recurrent_carry,               \
        .absorb_previous = recurrent_absorb_previous,                                                          \
    }

const em_layer_kind em_layer_rnn =
    RECURRENT_KIND("rnn", CELL_RNN,
                   "rnn HIDDEN [layers=1] [nonlinearity=tanh|relu] [bias=true] [batch_first=true] [dropout=0]");
const em_layer_kind em_layer_lstm =
    RECURRENT_KIND("lstm", CELL_LSTM, "lstm HIDDEN [layers=1] [bias=true] [batch_first=true] [dropout=0]");
const em_layer_kind em_layer_gru =
    RECURRENT_KIND("gru", CELL_GRU, "gru HIDDEN [layers=1] [bias=true] [batch_first=true] [dropout=0]");
