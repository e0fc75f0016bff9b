/* adaptive_avgpool 1: PyTorch's nn.AdaptiveAvgPool2d(1), the mean of each channel's
 * plane, [C, H, W] -> [C, 1, 1] (a 'flatten' after it gives [C]). Only the 1x1 output
 * size exists so far; others are refused by name. */
#include "ember/cnn_ops.h"
#include "ember/error.h"
#include "nn/layer.h"

typedef struct adaptive_avgpool_config {
    int64_t output_size[2];
} adaptive_avgpool_config;

static int adaptive_avgpool_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    (void)kind;
    adaptive_avgpool_config *c = config;
    int r = em_option_pair(o, 0, "output_size|size", 1, INT32_MAX, c->output_size);
    if (r <= 0)
        return r == 0 ? em_option_missing(o, "output_size") : EM_ERR;
    return EM_OK;
}

static int adaptive_avgpool_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const adaptive_avgpool_config *c = l->config;
    if (c->output_size[0] != 1 || c->output_size[1] != 1)
        return em_error("output size %lldx%lld is not supported; adaptive_avgpool pools each channel to 1x1 "
                        "('adaptive_avgpool 1')",
                        (long long)c->output_size[0], (long long)c->output_size[1]);
    if (in->ndim != 3)
        return em_error("adaptive_avgpool takes [channels, height, width] examples, but the input is %s (%d-D)",
                        em_dims_str(in->ndim, in->dim), in->ndim);
    out->ndim = 3;
    out->dim[0] = in->dim[0];
    out->dim[1] = 1;
    out->dim[2] = 1;
    return EM_OK;
}

static em_tensor *adaptive_avgpool_forward(em_layer *l, em_tensor *x, bool training)
{
    (void)l;
    (void)training;
    return em_adaptive_avg_pool2d_1x1(x);
}

static void adaptive_avgpool_describe(const em_layer *l, char *buf, size_t size)
{
    const adaptive_avgpool_config *c = l->config;
    if (c->output_size[0] == c->output_size[1])
        em_text_append(buf, size, "%lld", (long long)c->output_size[0]);
    else
        em_text_append(buf, size, "%lldx%lld", (long long)c->output_size[0], (long long)c->output_size[1]);
}

const em_layer_kind em_layer_adaptive_avgpool = {
    .name = "adaptive_avgpool",
    .usage = "adaptive_avgpool 1",
    .config_size = sizeof(adaptive_avgpool_config),
    .parse = adaptive_avgpool_parse,
    .infer = adaptive_avgpool_infer,
    .forward = adaptive_avgpool_forward,
    .describe = adaptive_avgpool_describe,
};
