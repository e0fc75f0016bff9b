/* maxpool K [stride=K] [pad=0] and avgpool K [stride=K] [pad=0] [count_include_pad=true]:
 * PyTorch's nn.MaxPool2d and nn.AvgPool2d (floor mode) over [channels, height, width]
 * examples. Sizes may be N or HxW. Two kinds sharing this code; the variant tells them
 * apart. */
#include <stdint.h>

#include "ember/cnn_ops.h"
#include "ember/error.h"
#include "nn/layer.h"

#define MAX_SIZE 65536

enum { POOL_MAX, POOL_AVG };

typedef struct pool2d_config {
    int64_t kernel[2], stride[2], pad[2]; /* stride as given: 0 means the kernel */
    bool count_include_pad;
} pool2d_config;

static int pool2d_parse(const em_layer_kind *kind, void *config, em_layer_options *o)
{
    pool2d_config *c = config;
    int r = em_option_pair(o, 0, "kernel_size|kernel", 1, MAX_SIZE, c->kernel);
    if (r <= 0)
        return r == 0 ? em_option_missing(o, "kernel_size") : EM_ERR;
    c->count_include_pad = true;
    if (em_option_pair(o, 1, "stride", 1, MAX_SIZE, c->stride) < 0 ||
        em_option_pair(o, 2, "padding|pad", 0, MAX_SIZE, c->pad) < 0)
        return EM_ERR;
    if (kind->variant == POOL_AVG && em_option_bool(o, -1, "count_include_pad", &c->count_include_pad) < 0)
        return EM_ERR;
    return EM_OK;
}

static int64_t stride_of(const pool2d_config *c, int d) { return c->stride[d] ? c->stride[d] : c->kernel[d]; }

static int pool2d_infer(em_layer *l, const em_shape *in, em_shape *out)
{
    const pool2d_config *c = l->config;
    for (int d = 0; d < 2; d++) {
        if (c->kernel[d] < 1 || c->kernel[d] > MAX_SIZE || c->stride[d] < 0 || c->stride[d] > MAX_SIZE)
            return em_error("kernel %lldx%lld and stride %lldx%lld must be in 1..%d", (long long)c->kernel[0],
                            (long long)c->kernel[1], (long long)stride_of(c, 0), (long long)stride_of(c, 1),
                            MAX_SIZE);
        if (c->pad[d] < 0 || 2 * c->pad[d] > c->kernel[d])
            return em_error("padding %lldx%lld must be at most half the kernel %lldx%lld", (long long)c->pad[0],
                            (long long)c->pad[1], (long long)c->kernel[0], (long long)c->kernel[1]);
    }
    if (in->ndim != 3)
        return em_error("%s takes [channels, height, width] examples, but the input is %s (%d-D)", l->kind->name,
                        em_dims_str(in->ndim, in->dim), in->ndim);
    out->ndim = 3;
    out->dim[0] = in->dim[0];
    for (int d = 0; d < 2; d++) {
        int64_t padded = in->dim[d + 1] + 2 * c->pad[d];
        if (padded < c->kernel[d])
            return em_error("the input %s padded to %lldx%lld is smaller than the window %lldx%lld",
                            em_dims_str(in->ndim, in->dim), (long long)(in->dim[1] + 2 * c->pad[0]), (long long)(in->dim[2] + 2 * c->pad[1]),
                            (long long)c->kernel[0], (long long)c->kernel[1]);
        out->dim[d + 1] = (padded - c->kernel[d]) / stride_of(c, d) + 1;
    }
    return EM_OK;
}

static em_tensor *pool2d_forward(em_layer *l, em_tensor *x, bool training)
{
    (void)training;
    const pool2d_config *c = l->config;
    int kh = (int)c->kernel[0], kw = (int)c->kernel[1];
    int sh = (int)stride_of(c, 0), sw = (int)stride_of(c, 1), ph = (int)c->pad[0], pw = (int)c->pad[1];
    if (l->kind->variant == POOL_MAX)
        return em_max_pool2d(x, kh, kw, sh, sw, ph, pw);
    return em_avg_pool2d(x, kh, kw, sh, sw, ph, pw, c->count_include_pad);
}

static void append_pair(char *buf, size_t size, const char *key, const int64_t v[2])
{
    if (v[0] == v[1])
        em_text_append(buf, size, "%s%s%lld", key ? " " : "", key ? key : "", (long long)v[0]);
    else
        em_text_append(buf, size, "%s%s%lldx%lld", key ? " " : "", key ? key : "", (long long)v[0],
                       (long long)v[1]);
}

static void pool2d_describe(const em_layer *l, char *buf, size_t size)
{
    const pool2d_config *c = l->config;
    append_pair(buf, size, NULL, c->kernel);
    int64_t stride[2] = {stride_of(c, 0), stride_of(c, 1)};
    if (stride[0] != c->kernel[0] || stride[1] != c->kernel[1])
        append_pair(buf, size, "stride=", stride);
    if (c->pad[0] || c->pad[1])
        append_pair(buf, size, "pad=", c->pad);
    if (l->kind->variant == POOL_AVG && !c->count_include_pad)
        em_text_append(buf, size, " count_include_pad=false");
}

bool em_layer_maxpool_window(const em_layer *l, em_pool2d_args *window)
{
    if (l->kind->forward != pool2d_forward || l->kind->variant != POOL_MAX)
        return false;
    const pool2d_config *c = l->config;
    *window = (em_pool2d_args){(int)c->kernel[0], (int)c->kernel[1], (int)stride_of(c, 0),
                               (int)stride_of(c, 1),  (int)c->pad[0],    (int)c->pad[1]};
    return true;
}

const em_layer_kind em_layer_maxpool = {
    .name = "maxpool",
    .usage = "maxpool KERNEL [stride=KERNEL] [pad=0] (sizes N or HxW)",
    .config_size = sizeof(pool2d_config),
    .variant = POOL_MAX,
    .parse = pool2d_parse,
    .infer = pool2d_infer,
    .forward = pool2d_forward,
    .describe = pool2d_describe,
};

const em_layer_kind em_layer_avgpool = {
    .name = "avgpool",
    .usage = "avgpool KERNEL [stride=KERNEL] [pad=0] [count_include_pad=true] (sizes N or HxW)",
    .config_size = sizeof(pool2d_config),
    .variant = POOL_AVG,
    .parse = pool2d_parse,
    .infer = pool2d_infer,
    .forward = pool2d_forward,
    .describe = pool2d_describe,
};
