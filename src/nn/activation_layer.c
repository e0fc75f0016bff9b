/* Activation lines: relu, leaky_relu [SLOPE], sigmoid, tanh, gelu [approximate=tanh],
 * gelu_tanh, silu. Each is its own kind (PyTorch's nn.ReLU, nn.LeakyReLU, ...) sharing
 * this code; the kind's variant is its em_activation. After a linear line the
 * activation runs inside the linear's output pass and this layer is skipped. */
#include <math.h>
#include <string.h>

#include "ember/error.h"
#include "nn/layer.h"

#define LEAKY_RELU_DEFAULT_SLOPE 0.01f

typedef struct activation_config {
    em_activation act;
    float param;
} activation_config;

static int activation_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    activation_config *c = config;
    c->act = (em_activation)kind->variant;
    if (c->act == EM_ACT_LEAKY_RELU) {
        c->param = LEAKY_RELU_DEFAULT_SLOPE;
        if (em_option_float(o, 0, "negative_slope|slope", -1e6, 1e6, &c->param) < 0)
            return EM_ERR;
    } else if (c->act == EM_ACT_GELU) {
        const char *approximate = NULL;
        if (em_option_word(o, -1, "approximate", &approximate) < 0)
            return EM_ERR;
        if (approximate && strcmp(approximate, "tanh") == 0)
            c->act = EM_ACT_GELU_TANH;
        else if (approximate && strcmp(approximate, "none") != 0)
            return em_error("gelu: approximate must be none or tanh, got '%s'", approximate);
    }
    return EM_OK;
}

static int activation_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const activation_config *c = l->config;
    if (!isfinite(c->param))
        return em_error("the activation's parameter must be finite, got %g", (double)c->param);
    *out = *in;
    return EM_OK;
}

static em_tensor *activation_forward(em_layer *l, em_tensor *x, bool training)
{
    (void)training;
    const activation_config *c = l->config;
    return em_activate(x, c->act, c->param);
}

static void activation_describe(const em_layer *l, char *buf, size_t size)
{
    const activation_config *c = l->config;
    if (c->act == EM_ACT_LEAKY_RELU && c->param != LEAKY_RELU_DEFAULT_SLOPE)
        em_text_append(buf, size, "%.9g", (double)c->param);
    else if (c->act == EM_ACT_GELU_TANH && l->kind->variant == EM_ACT_GELU)
        em_text_append(buf, size, "approximate=tanh");
}

static bool activation_of(const em_layer *l, em_activation *act, float *param)
{
    const activation_config *c = l->config;
    *act = c->act;
    *param = c->param;
    return true;
}

#define ACTIVATION_KIND(ident, word, usage_text, variant_value)                                   \
    const em_layer_kind ident = {                                                                  \
        .name = word,                                                                              \
        .usage = usage_text,                                                                       \
        .config_size = sizeof(activation_config),                                                  \
        .variant = variant_value,                                                                  \
        .parse = activation_parse,                                                                 \
        .infer = activation_infer,                                                                 \
        .forward = activation_forward,                                                             \
        .describe = activation_describe,                                                           \
        .activation_of = activation_of,                                                            \
    }

ACTIVATION_KIND(em_layer_relu, "relu", "relu", EM_ACT_RELU);
ACTIVATION_KIND(em_layer_leaky_relu, "leaky_relu", "leaky_relu [NEGATIVE_SLOPE (0.01)]", EM_ACT_LEAKY_RELU);
ACTIVATION_KIND(em_layer_sigmoid, "sigmoid", "sigmoid", EM_ACT_SIGMOID);
ACTIVATION_KIND(em_layer_tanh, "tanh", "tanh", EM_ACT_TANH);
ACTIVATION_KIND(em_layer_gelu, "gelu", "gelu [approximate=none|tanh]", EM_ACT_GELU);
ACTIVATION_KIND(em_layer_gelu_tanh, "gelu_tanh", "gelu_tanh", EM_ACT_GELU_TANH);
ACTIVATION_KIND(em_layer_silu, "silu", "silu", EM_ACT_SILU);

int em_model_add_activation(em_model *m, em_activation act, float param)
{
    static const em_layer_kind *const by_activation[EM_ACT_COUNT] = {
        [EM_ACT_RELU] = &em_layer_relu,       [EM_ACT_LEAKY_RELU] = &em_layer_leaky_relu,
        [EM_ACT_SIGMOID] = &em_layer_sigmoid, [EM_ACT_TANH] = &em_layer_tanh,
        [EM_ACT_GELU] = &em_layer_gelu,       [EM_ACT_GELU_TANH] = &em_layer_gelu_tanh,
        [EM_ACT_SILU] = &em_layer_silu,
    };
    if ((int)act <= EM_ACT_NONE || act >= EM_ACT_COUNT || !by_activation[act])
        return em_error("em_model_add_activation: %d is not an activation (EM_ACT_RELU ... EM_ACT_SILU)",
                        (int)act);
    activation_config c = {act, act == EM_ACT_LEAKY_RELU ? param : 0.0f};
    return em_model_add_layer(m, by_activation[act], &c);
}
