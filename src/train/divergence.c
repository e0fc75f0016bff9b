/* The message of a diverged training step: which step, what was not finite, and where
 * it started (the first parameter or gradient holding NaN or infinity, or the first op
 * when anomaly detection is on), with the usual remedies. */
#include <math.h>
#include <stdio.h>

#include "autograd/anomaly.h"
#include "ember/error.h"
#include "train/divergence.h"

bool em_find_non_finite(const em_model *m, bool grads, char *buf, size_t cap)
{
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++) {
        const em_tensor *t = state[i].tensor;
        if (state[i].is_buffer || !t->requires_grad)
            continue;
        if (grads) {
            int64_t bad = t->grad ? em_first_non_finite_dense(t->grad, t->numel) : -1;
            if (bad >= 0) {
                snprintf(buf, cap, "the gradient of '%s' %s has %s at element %lld", state[i].name,
                         em_shape_str(t), em_non_finite_name(t->grad[bad]), (long long)bad);
                return true;
            }
        } else {
            int64_t bad = em_first_non_finite(t);
            if (bad >= 0) {
                snprintf(buf, cap, "the parameter '%s' %s holds %s at element %lld", state[i].name,
                         em_shape_str(t), em_non_finite_name(t->data[bad]), (long long)bad);
                return true;
            }
        }
    }
    return false;
}

bool em_gradients_non_finite(const em_model *m, double norm)
{
    if (isfinite(norm))
        return false;
    char unused[8];
    return isnan(norm) || em_find_non_finite(m, true, unused, sizeof unused);
}

int em_divergence_error(const em_model *m, int epoch, int64_t step, int64_t batch, int64_t batches,
                        float loss, double grad_norm, float lr)
{
    char what[160], where[400] = "", anomaly[700] = "";
    bool loss_bad = !isfinite(loss);
    if (loss_bad)
        snprintf(what, sizeof what, "the loss is %s", isnan(loss) ? "NaN" : "infinite");
    else
        snprintf(what, sizeof what, "the loss is %.6g but the gradient norm is %s", (double)loss,
                 isnan(grad_norm) ? "NaN" : "infinite");

    char found[300];
    if (!loss_bad && em_find_non_finite(m, true, found, sizeof found))
        snprintf(where, sizeof where, "; %s", found);
    else if (em_find_non_finite(m, false, found, sizeof found))
        snprintf(where, sizeof where, "; %s", found);
    else if (loss_bad)
        snprintf(where, sizeof where, "; every parameter is finite, so the forward pass itself overflowed");

    if (em_detect_anomaly_enabled() && em_anomaly()[0])
        snprintf(anomaly, sizeof anomaly, "; anomaly detection: %s", em_anomaly());

    return em_error("training diverged at epoch %d, step %lld (batch %lld of %lld in the epoch): %s%s%s; "
                    "try a smaller learning rate than %g or gradient clipping%s",
                    epoch, (long long)step, (long long)batch, (long long)batches, what, where, anomaly,
                    (double)lr,
                    em_detect_anomaly_enabled() ? "" : ", or anomaly detection to find the first op that "
                                                      "produced a non-finite value");
}
