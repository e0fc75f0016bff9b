/* batchnorm [momentum=0.1] [eps=1e-5] [affine=true] [track_running_stats=true]:
 * PyTorch's nn.BatchNorm2d after a [channels, height, width] output, nn.BatchNorm1d
 * after [features] or [channels, length]; the channel count comes from the input.
 * State as PyTorch's: weight, bias (affine), running_mean, running_var and
 * num_batches_tracked (tracking). PyTorch keeps num_batches_tracked as an int64
 * scalar; here it is a float32 scalar buffer (exact up to 2^24 batches), which is what
 * checkpoints hold; checkpoint loading converts PyTorch's int64 one. */
#include <stdint.h>

#include "ember/cnn_ops.h"
#include "ember/error.h"
#include "nn/layer.h"

#define DEFAULT_MOMENTUM 0.1f
#define DEFAULT_EPS 1e-5f

typedef struct batchnorm_config {
    float momentum, eps;
    bool affine, track_running_stats;
    em_tensor *weight, *bias, *running_mean, *running_var, *num_batches_tracked;
} batchnorm_config;

static int batchnorm_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    (void)kind;
    batchnorm_config *c = config;
    c->momentum = DEFAULT_MOMENTUM;
    c->eps = DEFAULT_EPS;
    c->affine = true;
    c->track_running_stats = true;
    if (em_option_float(o, -1, "momentum", 0.0, 1.0, &c->momentum) < 0 ||
        em_option_float(o, -1, "eps", 0.0, 1.0, &c->eps) < 0 || em_option_bool(o, -1, "affine", &c->affine) < 0 ||
        em_option_bool(o, -1, "track_running_stats", &c->track_running_stats) < 0)
        return EM_ERR;
    return EM_OK;
}

static int batchnorm_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const batchnorm_config *c = l->config;
    if (!(c->momentum >= 0.0f && c->momentum <= 1.0f) || !(c->eps >= 0.0f && c->eps <= 1.0f))
        return em_error("momentum %g and eps %g must lie in [0, 1]", (double)c->momentum, (double)c->eps);
    if (in->ndim < 1 || in->ndim > 3)
        return em_error("batchnorm takes [features], [channels, length] or [channels, height, width] "
                        "examples, but the input is %s (%d-D)",
                        em_dims_str(in->ndim, in->dim), in->ndim);
    *out = *in;
    return EM_OK;
}

static int batchnorm_create(em_layer *l, em_rng *rng)
{
    (void)rng;
    batchnorm_config *c = l->config;
    const int64_t channels[1] = {l->in.dim[0]};
    if (c->affine) {
        if (!(c->weight = em_layer_param(l, "weight", 1, channels)) ||
            !(c->bias = em_layer_param(l, "bias", 1, channels)))
            return EM_ERR;
        em_fill(c->weight, 1.0f);
    }
    if (c->track_running_stats) {
        if (!(c->running_mean = em_layer_buffer(l, "running_mean", 1, channels)) ||
            !(c->running_var = em_layer_buffer(l, "running_var", 1, channels)) ||
            !(c->num_batches_tracked = em_layer_buffer(l, "num_batches_tracked", 0, NULL)))
            return EM_ERR;
        em_fill(c->running_var, 1.0f);
    }
    return EM_OK;
}

static em_tensor *batchnorm_forward(em_layer *l, em_tensor *x, bool training)
{
    batchnorm_config *c = l->config;
    em_tensor *y = em_batch_norm(x, c->weight, c->bias, c->running_mean, c->running_var, training, c->momentum,
                                 c->eps);
    if (y && training && c->num_batches_tracked)
        c->num_batches_tracked->data[0] += 1.0f;
    return y;
}

static void batchnorm_describe(const em_layer *l, char *buf, size_t size)
{
    const batchnorm_config *c = l->config;
    const char *sep = "";
    if (c->momentum != DEFAULT_MOMENTUM) {
        em_text_append(buf, size, "momentum=");
        em_text_append_float(buf, size, c->momentum);
        sep = " ";
    }
    if (c->eps != DEFAULT_EPS) {
        em_text_append(buf, size, "%seps=", sep);
        em_text_append_float(buf, size, c->eps);
        sep = " ";
    }
    if (!c->affine) {
        em_text_append(buf, size, "%saffine=false", sep);
        sep = " ";
    }
    if (!c->track_running_stats)
        em_text_append(buf, size, "%strack_running_stats=false", sep);
}

const em_layer_kind em_layer_batchnorm = {
    .name = "batchnorm",
    .usage = "batchnorm [momentum=0.1] [eps=1e-5] [affine=true] [track_running_stats=true]",
    .config_size = sizeof(batchnorm_config),
    .parse = batchnorm_parse,
    .infer = batchnorm_infer,
    .create = batchnorm_create,
    .forward = batchnorm_forward,
    .describe = batchnorm_describe,
};
