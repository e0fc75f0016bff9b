/* conv2d OUT K [stride=1] [pad=0] [dilation=1] [groups=1] [bias=true]: PyTorch's
 * nn.Conv2d over [channels, height, width] examples, weight [out, in/groups, kh, kw].
 * Every size may be N or HxW ("3", "3x5"). An activation line right after it is applied
 * in the convolution's output pass, as for linear. */
#include <math.h>
#include <stdint.h>

#include "ember/cnn_ops.h"
#include "ember/error.h"
#include "nn/layer.h"

/* Larger values are typos, and would overflow the int geometry of em_conv2d. */
#define MAX_SIZE 65536

typedef struct conv2d_config {
    int64_t out_channels;
    int64_t kernel[2], stride[2], pad[2], dilation[2];
    int64_t groups;
    bool bias;
    em_activation act; /* absorbed from the next line, EM_ACT_NONE otherwise */
    float act_param;
    em_tensor *weight;
    em_tensor *bias_t;
} conv2d_config;

static int conv2d_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    (void)kind;
    conv2d_config *c = config;
    int r = em_option_int(o, 0, "out_channels|out", 1, INT32_MAX, &c->out_channels);
    if (r <= 0)
        return r == 0 ? em_option_missing(o, "out_channels") : EM_ERR;
    r = em_option_pair(o, 1, "kernel_size|kernel", 1, MAX_SIZE, c->kernel);
    if (r <= 0)
        return r == 0 ? em_option_missing(o, "kernel_size") : EM_ERR;
    c->stride[0] = c->stride[1] = 1;
    c->dilation[0] = c->dilation[1] = 1;
    c->groups = 1;
    c->bias = true;
    /* positions as in nn.Conv2d's signature, without in_channels */
    if (em_option_pair(o, 2, "stride", 1, MAX_SIZE, c->stride) < 0 ||
        em_option_pair(o, 3, "padding|pad", 0, MAX_SIZE, c->pad) < 0 ||
        em_option_pair(o, 4, "dilation", 1, MAX_SIZE, c->dilation) < 0 ||
        em_option_int(o, 5, "groups", 1, INT32_MAX, &c->groups) < 0 || em_option_bool(o, 6, "bias", &c->bias) < 0)
        return EM_ERR;
    return EM_OK;
}

/* Output length of one spatial dimension, or 0 when the kernel does not fit. */
static int64_t out_length(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation)
{
    int64_t span = dilation * (kernel - 1) + 1;
    int64_t padded = in + 2 * pad;
    return padded < span ? 0 : (padded - span) / stride + 1;
}

static int conv2d_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const conv2d_config *c = l->config;
    for (int d = 0; d < 2; d++)
        if (c->kernel[d] < 1 || c->stride[d] < 1 || c->dilation[d] < 1 || c->pad[d] < 0 ||
            c->kernel[d] > MAX_SIZE || c->stride[d] > MAX_SIZE || c->dilation[d] > MAX_SIZE || c->pad[d] > MAX_SIZE)
            return em_error("kernel %lldx%lld, stride %lldx%lld and dilation %lldx%lld must be in 1..%d, "
                            "padding %lldx%lld in 0..%d",
                            (long long)c->kernel[0], (long long)c->kernel[1], (long long)c->stride[0],
                            (long long)c->stride[1], (long long)c->dilation[0], (long long)c->dilation[1],
                            MAX_SIZE, (long long)c->pad[0], (long long)c->pad[1], MAX_SIZE);
    if (c->out_channels < 1 || c->out_channels > INT32_MAX || c->groups < 1 || c->groups > INT32_MAX)
        return em_error("out_channels %lld and groups %lld must be at least 1", (long long)c->out_channels,
                        (long long)c->groups);
    if (in->ndim != 3)
        return em_error("conv2d takes [channels, height, width] examples, but the input is %s (%d-D)%s",
                        em_dims_str(in->ndim, in->dim), in->ndim,
                        in->ndim == 1 ? ": give the model an image input such as 'input 1x28x28'"
                                      : in->ndim == 2 ? ": give the input a channel dimension ('input 1xHxW')"
                                                      : "");
    int64_t channels = in->dim[0];
    if (channels % c->groups || c->out_channels % c->groups)
        return em_error("groups=%lld must divide both the input channels (%lld) and out_channels (%lld)",
                        (long long)c->groups, (long long)channels, (long long)c->out_channels);
    int64_t oh = out_length(in->dim[1], c->kernel[0], c->stride[0], c->pad[0], c->dilation[0]);
    int64_t ow = out_length(in->dim[2], c->kernel[1], c->stride[1], c->pad[1], c->dilation[1]);
    if (oh == 0 || ow == 0)
        return em_error("the input %s padded to %lldx%lld is smaller than the kernel %lldx%lld%s",
                        em_dims_str(in->ndim, in->dim), (long long)(in->dim[1] + 2 * c->pad[0]), (long long)(in->dim[2] + 2 * c->pad[1]),
                        (long long)(c->dilation[0] * (c->kernel[0] - 1) + 1),
                        (long long)(c->dilation[1] * (c->kernel[1] - 1) + 1),
                        c->dilation[0] > 1 || c->dilation[1] > 1 ? " (as dilated)" : "");
    out->ndim = 3;
    out->dim[0] = c->out_channels;
    out->dim[1] = oh;
    out->dim[2] = ow;
    return EM_OK;
}

static int conv2d_create(em_layer *l, em_rng *rng)
{
    conv2d_config *c = l->config;
    int64_t in_per_group = l->in.dim[0] / c->groups;
    c->weight = em_layer_param(l, "weight", 4,
                               (int64_t[]){c->out_channels, in_per_group, c->kernel[0], c->kernel[1]});
    if (!c->weight)
        return EM_ERR;
    /* PyTorch's reset_parameters, as for nn.Linear: kaiming_uniform_(a=sqrt(5)), so a
     * weight bound of 1/sqrt(fan_in), and the bias takes the same bound. */
    em_init_kaiming_uniform(c->weight, rng, sqrtf(5.0f));
    if (c->bias) {
        c->bias_t = em_layer_param(l, "bias", 1, (int64_t[]){c->out_channels});
        if (!c->bias_t)
            return EM_ERR;
        float bound = 1.0f / sqrtf((float)(in_per_group * c->kernel[0] * c->kernel[1]));
        em_init_uniform(c->bias_t, rng, -bound, bound);
    }
    return EM_OK;
}

static em_tensor *conv2d_forward(em_layer *l, em_tensor *x, bool training)
{
    (void)training;
    const conv2d_config *c = l->config;
    return em_conv2d(x, c->weight, c->bias_t, (int)c->stride[0], (int)c->stride[1], (int)c->pad[0],
                     (int)c->pad[1], (int)c->dilation[0], (int)c->dilation[1], (int)c->groups, c->act,
                     c->act_param);
}

static bool conv2d_runs_next(const em_layer *l, const em_layer *next)
{
    (void)l;
    em_pool2d_args window;
    return em_layer_maxpool_window(next, &window);
}

static em_tensor *conv2d_forward_with_next(em_layer *l, em_layer *next, em_tensor *x)
{
    const conv2d_config *c = l->config;
    em_pool2d_args window;
    if (!em_layer_maxpool_window(next, &window))
        return NULL;
    const em_conv2d_args args = {(int)c->stride[0], (int)c->stride[1],   (int)c->pad[0], (int)c->pad[1],
                                 (int)c->dilation[0], (int)c->dilation[1], (int)c->groups, c->act,
                                 c->act_param};
    return em_conv2d_max_pool2d(x, c->weight, c->bias_t, &args, &window);
}

/* " key=HxW" (or " key=N" when square), nothing when it is the default. */
static void describe_pair(char *buf, size_t size, const char *key, const int64_t v[2], int64_t deflt)
{
    if (v[0] == deflt && v[1] == deflt)
        return;
    if (v[0] == v[1])
        em_text_append(buf, size, " %s=%lld", key, (long long)v[0]);
    else
        em_text_append(buf, size, " %s=%lldx%lld", key, (long long)v[0], (long long)v[1]);
}

static void conv2d_describe(const em_layer *l, char *buf, size_t size)
{
    const conv2d_config *c = l->config;
    em_text_append(buf, size, "%lld ", (long long)c->out_channels);
    if (c->kernel[0] == c->kernel[1])
        em_text_append(buf, size, "%lld", (long long)c->kernel[0]);
    else
        em_text_append(buf, size, "%lldx%lld", (long long)c->kernel[0], (long long)c->kernel[1]);
    describe_pair(buf, size, "stride", c->stride, 1);
    describe_pair(buf, size, "pad", c->pad, 0);
    describe_pair(buf, size, "dilation", c->dilation, 1);
    if (c->groups != 1)
        em_text_append(buf, size, " groups=%lld", (long long)c->groups);
    if (!c->bias)
        em_text_append(buf, size, " bias=false");
}

static bool conv2d_absorb(em_layer *l, em_activation act, float param)
{
    conv2d_config *c = l->config;
    if (c->act != EM_ACT_NONE || act == EM_ACT_NONE)
        return false;
    c->act = act;
    c->act_param = param;
    return true;
}

const em_layer_kind em_layer_conv2d = {
    .name = "conv2d",
    .usage = "conv2d OUT_CHANNELS KERNEL [stride=1] [pad=0] [dilation=1] [groups=1] [bias=true] "
             "(sizes N or HxW)",
    .config_size = sizeof(conv2d_config),
    .parse = conv2d_parse,
    .infer = conv2d_infer,
    .create = conv2d_create,
    .forward = conv2d_forward,
    .describe = conv2d_describe,
    .absorb_activation = conv2d_absorb,
    .runs_next = conv2d_runs_next,
    .forward_with_next = conv2d_forward_with_next,
};
