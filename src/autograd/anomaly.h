/* Internal: the checks of anomaly-detection mode (em_set_detect_anomaly), called by the
 * tape. The first anomaly of a step is kept per thread until the step ends. */
#ifndef EMBER_ANOMALY_H
#define EMBER_ANOMALY_H

#include "ember/autograd.h"

/* True when anomaly detection is on (one load; the tape calls it for every op). */
bool em_anomaly_enabled(void);
/* After an op's forward: notes the op if its output holds NaN or infinity (naming the
 * input that already did, if one did). */
void em_anomaly_check_forward(const char *op, const em_tensor *out, int n_in, em_tensor *const *in);
/* After a node's backward: EM_ERR naming the op and input if a gradient it produced is
 * not finite. */
int em_anomaly_check_backward(const em_node *node);
/* Before backward: EM_ERR if the upstream gradient seeding it is not finite. */
int em_anomaly_check_seed(const em_tensor *root, const float *grad_out);
/* Forgets the step's anomaly (the step ended). */
void em_anomaly_clear(void);

/* Row-major index of the first non-finite element of t (any strides), or -1. */
int64_t em_first_non_finite(const em_tensor *t);
/* Same over n dense floats. */
int64_t em_first_non_finite_dense(const float *x, int64_t n);
/* "NaN", "inf" or "-inf". */
const char *em_non_finite_name(float v);

#endif
