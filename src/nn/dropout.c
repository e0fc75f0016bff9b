/* dropout [P (0.5)]: PyTorch's nn.Dropout, inverted (kept elements scaled by 1/(1-P)
 * in training, the identity in evaluation). The mask comes from the model's random
 * generator, so the model's seed fixes it and checkpoints resume it. */
#include "ember/cnn_ops.h"
#include "ember/error.h"
#include "nn/layer.h"

#define DEFAULT_P 0.5f

typedef struct dropout_config {
    float p;
} dropout_config;

static int dropout_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    (void)kind;
    dropout_config *c = config;
    c->p = DEFAULT_P;
    return em_option_float(o, 0, "p", 0.0, 1.0, &c->p) < 0 ? EM_ERR : EM_OK;
}

static int dropout_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const dropout_config *c = l->config;
    if (!(c->p >= 0.0f && c->p <= 1.0f))
        return em_error("p must lie in [0, 1], got %g", (double)c->p);
    *out = *in;
    return EM_OK;
}

static em_tensor *dropout_forward(em_layer *l, em_tensor *x, bool training)
{
    const dropout_config *c = l->config;
    return em_dropout(x, c->p, training, em_model_rng(l->model));
}

static void dropout_describe(const em_layer *l, char *buf, size_t size)
{
    const dropout_config *c = l->config;
    if (c->p != DEFAULT_P)
        em_text_append_float(buf, size, c->p);
}

const em_layer_kind em_layer_dropout = {
    .name = "dropout",
    .usage = "dropout [P (0.5)]",
    .config_size = sizeof(dropout_config),
    .parse = dropout_parse,
    .infer = dropout_infer,
    .forward = dropout_forward,
    .describe = dropout_describe,
};
