/* Anomaly detection: with it on, the output of every op is checked for NaN and infinity
 * right after its forward and every gradient right after the backward that produced it,
 * so that a diverging run names the op where the first non-finite value appeared
 * instead of only the loss it ended in. Off by default: each check is a pass over the
 * tensor. */
#include <math.h>
#include <stdio.h>

#include "autograd/anomaly.h"
#include "ember/error.h"

/* Process-wide, as the switch is in PyTorch; read by every op, written rarely. */
static bool enabled;
/* The first forward anomaly of the current step on this thread ("" when none). */
static _Thread_local char first_anomaly[640];

bool em_set_detect_anomaly(bool on)
{
    bool previous = enabled;
    enabled = on;
    return previous;
}

bool em_detect_anomaly_enabled(void) { return enabled; }
bool em_anomaly_enabled(void) { return enabled; }

const char *em_anomaly(void) { return first_anomaly; }

void em_anomaly_clear(void) { first_anomaly[0] = '\0'; }

const char *em_non_finite_name(float v)
{
    if (isnan(v))
        return "NaN";
    return v > 0 ? "inf" : "-inf";
}

int64_t em_first_non_finite_dense(const float *x, int64_t n)
{
    /* Blocks summed as x * 0 (NaN for NaN and for infinities) keep the common all-finite
     * case a vectorised pass; only a bad block is searched element by element. */
    const int64_t block = 1024;
    for (int64_t start = 0; start < n; start += block) {
        int64_t end = start + block < n ? start + block : n;
        float probe = 0.0f;
        for (int64_t i = start; i < end; i++)
            probe += x[i] * 0.0f;
        if (probe == 0.0f)
            continue;
        for (int64_t i = start; i < end; i++)
            if (!isfinite(x[i]))
                return i;
    }
    return -1;
}

int64_t em_first_non_finite(const em_tensor *t)
{
    if (!t || !t->data || t->numel <= 0)
        return -1;
    if (em_is_contiguous(t))
        return em_first_non_finite_dense(t->data, t->numel);
    /* A view: walk the multi-index in row-major order. */
    int64_t idx[EM_MAX_DIMS] = {0};
    for (int64_t k = 0; k < t->numel; k++) {
        if (!isfinite(t->data[em_offset(t, idx)]))
            return k;
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return -1;
}

/* The value at row-major index k of t. */
static float element_at(const em_tensor *t, int64_t k)
{
    int64_t idx[EM_MAX_DIMS] = {0};
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = k % t->shape[d];
        k /= t->shape[d];
    }
    return t->data[em_offset(t, idx)];
}

/* "'1.weight' [512, 784]" or "[64, 512]". */
static void describe(char *buf, size_t cap, const em_tensor *t)
{
    if (t->name)
        snprintf(buf, cap, "'%s' %s", t->name, em_shape_str(t));
    else
        snprintf(buf, cap, "%s", em_shape_str(t));
}

void em_anomaly_check_forward(const char *op, const em_tensor *out, int n_in, em_tensor *const *in)
{
    if (!enabled || first_anomaly[0] || !out)
        return;
    int64_t bad = em_first_non_finite(out);
    if (bad < 0)
        return;
    char what[160];
    describe(what, sizeof what, out);
    /* An input that was already non-finite is where to look, not this op. */
    for (int i = 0; i < n_in; i++) {
        if (!in[i] || in[i] == out)
            continue;
        int64_t in_bad = em_first_non_finite(in[i]);
        if (in_bad >= 0) {
            char input[160];
            describe(input, sizeof input, in[i]);
            snprintf(first_anomaly, sizeof first_anomaly,
                     "the output %s of op '%s' has %s at element %lld, and its input %d %s already "
                     "had %s at element %lld",
                     what, op, em_non_finite_name(element_at(out, bad)), (long long)bad, i, input,
                     em_non_finite_name(element_at(in[i], in_bad)), (long long)in_bad);
            return;
        }
    }
    snprintf(first_anomaly, sizeof first_anomaly,
             "op '%s' produced %s at element %lld of its output %s from finite inputs", op,
             em_non_finite_name(element_at(out, bad)), (long long)bad, what);
}

int em_anomaly_check_seed(const em_tensor *root, const float *grad_out)
{
    int64_t bad = em_first_non_finite_dense(grad_out, root->numel);
    if (bad < 0)
        return EM_OK;
    return em_error("anomaly detection: the gradient seeding backward has %s at element %lld",
                    em_non_finite_name(grad_out[bad]), (long long)bad);
}

int em_anomaly_check_backward(const em_node *node)
{
    for (int i = 0; i < node->n_in; i++) {
        const em_tensor *t = node->in[i];
        if (!t || !t->requires_grad || !t->grad)
            continue;
        int64_t bad = em_first_non_finite_dense(t->grad, t->numel);
        if (bad < 0)
            continue;
        char what[160];
        describe(what, sizeof what, t);
        const em_tensor *out = node->out;
        int64_t out_bad = out->grad ? em_first_non_finite_dense(out->grad, out->numel) : -1;
        return em_error("anomaly detection: backward of op '%s' produced %s at element %lld of the "
                        "gradient of its input %d %s (the gradient arriving at its output %s %s)",
                        node->op, em_non_finite_name(t->grad[bad]), (long long)bad, i, what,
                        em_shape_str(out), out_bad < 0 ? "is finite" : "is already non-finite");
    }
    return EM_OK;
}
