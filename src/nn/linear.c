/* linear OUT_FEATURES [bias=false]: PyTorch's nn.Linear, weight [out, in], applied to
 * the last dimension of a [features] or [steps, features] example. An activation line
 * right after it is applied in the same output pass (em_linear's fused epilogue). */
#include <math.h>
#include <stdint.h>

#include "ember/error.h"
#include "nn/layer.h"

typedef struct linear_config {
    int64_t out_features;
    bool bias;
    em_activation act; /* absorbed from the next line, EM_ACT_NONE otherwise */
    float act_param;
    em_tensor *weight;
    em_tensor *bias_t;
} linear_config;

static int linear_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    (void)kind;
    linear_config *c = config;
    int r = em_option_int(o, 0, "out_features|out", 1, INT32_MAX, &c->out_features);
    if (r == 0)
        return em_option_missing(o, "out_features");
    if (r < 0)
        return EM_ERR;
    c->bias = true;
    return em_option_bool(o, -1, "bias", &c->bias) < 0 ? EM_ERR : EM_OK;
}

static int linear_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const linear_config *c = l->config;
    if (c->out_features < 1)
        return em_error("out_features must be at least 1, got %lld", (long long)c->out_features);
    if (in->ndim > 2)
        return em_error("linear takes [features] or [steps, features] per example, but the input is %s "
                        "(%d-D): add a 'flatten' line before it",
                        em_dims_str(in->ndim, in->dim), in->ndim);
    *out = *in;
    out->dim[in->ndim - 1] = c->out_features;
    return EM_OK;
}

static int linear_create(em_layer *l, em_rng *rng)
{
    linear_config *c = l->config;
    int64_t in_features = l->in.dim[l->in.ndim - 1];
    c->weight = em_layer_param(l, "weight", 2, (int64_t[]){c->out_features, in_features});
    if (!c->weight)
        return EM_ERR;
    /* PyTorch's reset_parameters: kaiming_uniform_(a=sqrt(5)) gives a weight bound of
     * 1/sqrt(fan_in), and the bias takes the same bound. */
    em_init_kaiming_uniform(c->weight, rng, sqrtf(5.0f));
    if (c->bias) {
        c->bias_t = em_layer_param(l, "bias", 1, (int64_t[]){c->out_features});
        if (!c->bias_t)
            return EM_ERR;
        float bound = 1.0f / sqrtf((float)in_features);
        em_init_uniform(c->bias_t, rng, -bound, bound);
    }
    return EM_OK;
}

static em_tensor *linear_forward(em_layer *l, em_tensor *x, bool training)
{
    (void)training;
    linear_config *c = l->config;
    if (x->ndim == 2)
        return em_linear(x, c->weight, c->bias_t, c->act, c->act_param);
    /* [N, T, in] runs as one [N*T, in] product. */
    int64_t rows = x->numel / x->shape[x->ndim - 1];
    em_tensor *flat = em_reshape(x, 2, (int64_t[]){rows, x->shape[x->ndim - 1]});
    em_tensor *y = em_linear(flat, c->weight, c->bias_t, c->act, c->act_param);
    int64_t shape[EM_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++)
        shape[d] = x->shape[d];
    shape[x->ndim - 1] = c->out_features;
    return em_reshape(y, x->ndim, shape);
}

static void linear_describe(const em_layer *l, char *buf, size_t size)
{
    const linear_config *c = l->config;
    em_text_append(buf, size, "%lld%s", (long long)c->out_features, c->bias ? "" : " bias=false");
}

static bool linear_absorb(em_layer *l, em_activation act, float param)
{
    linear_config *c = l->config;
    if (c->act != EM_ACT_NONE || act == EM_ACT_NONE)
        return false;
    c->act = act;
    c->act_param = param;
    return true;
}

const em_layer_kind em_layer_linear = {
    .name = "linear",
    .usage = "linear OUT_FEATURES [bias=true|false]",
    .config_size = sizeof(linear_config),
    .parse = linear_parse,
    .infer = linear_infer,
    .create = linear_create,
    .forward = linear_forward,
    .describe = linear_describe,
    .absorb_activation = linear_absorb,
};

int em_model_add_linear(em_model *m, int64_t out_features, bool bias)
{
    linear_config c = {.out_features = out_features, .bias = bias};
    return em_model_add_layer(m, &em_layer_linear, &c);
}
