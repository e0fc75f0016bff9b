/* Losses, each reduced with the mean: mean squared error, cross-entropy on logits with
 * PyTorch's label smoothing (log-softmax and NLL fused), and binary cross-entropy on
 * logits in its overflow-free form. Totals accumulate in double per row and are added
 * in row order, so results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "ember/error.h"
#include "ember/ops.h"
#include "ops/dense.h"
#include "ops/fastmath.h"

static bool will_record(em_tensor *a, em_tensor *b)
{
    return em_grad_enabled() && ((a && a->requires_grad) || (b && b->requires_grad));
}

static int check_same_shape(const char *op, const char *what_a, const em_tensor *a,
                            const char *what_b, const em_tensor *b)
{
    if (em_same_shape(a, b))
        return EM_OK;
    return em_error("%s: %s %s and %s %s differ in shape", op, what_a, em_shape_str(a), what_b,
                    em_shape_str(b));
}

/* ---- mean squared error --------------------------------------------------------- */

static void mse_backward(em_node *node)
{
    const float *diff = node->saved; /* pred - target */
    em_tensor *pred = node->in[0], *target = node->in[1];
    float k = 2.0f * node->out->grad[0] / (float)pred->numel;
    if (pred->requires_grad)
        for (int64_t i = 0; i < pred->numel; i++)
            pred->grad[i] += k * diff[i];
    if (target->requires_grad)
        for (int64_t i = 0; i < target->numel; i++)
            target->grad[i] -= k * diff[i];
}

em_tensor *em_mse_loss(em_tensor *pred, em_tensor *target)
{
    if (!pred || !target)
        return NULL;
    if (check_same_shape("mse_loss", "prediction", pred, "target", target) != EM_OK)
        return NULL;
    const float *p = em_dense_data(pred), *t = em_dense_data(target);
    if (!p || !t)
        return NULL;
    int64_t n = pred->numel;
    float *diff = NULL;
    if (will_record(pred, target) &&
        !(diff = em_arena_alloc(em_step_arena(), (size_t)n * sizeof(float))))
        return NULL;
    double acc[8] = {0}, total = 0.0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float d = p[i + j] - t[i + j];
            if (diff)
                diff[i + j] = d;
            acc[j] += (double)d * d;
        }
    for (; i < n; i++) {
        float d = p[i] - t[i];
        if (diff)
            diff[i] = d;
        total += (double)d * d;
    }
    for (int j = 0; j < 8; j++)
        total += acc[j];
    em_tensor *out = em_tensor_scalar(NULL, (float)(total / (double)n));
    if (!out)
        return NULL;
    em_node *node = em_record("mse_loss", out, 2, (em_tensor *[]){pred, target}, mse_backward);
    if (node)
        node->saved = diff;
    return out;
}

/* ---- cross-entropy -------------------------------------------------------------- */

/* Per row r with log-probabilities lp = x - lse and smoothing ε over C classes:
 *   loss_r = (1 - ε)·(-lp[y_r]) + ε·mean_j(-lp[j])
 *   d loss_r / d x_j = softmax_j - (1 - ε)·[j == y_r] - ε/C
 * lse enters as its two parts m (row maximum) and log Σ exp(x - m), so that large
 * logits lose no digits in x - lse. */
typedef struct ce_saved {
    const float *x;     /* dense logits */
    int32_t *labels;    /* copied: the caller's buffer may be reused before backward */
    float *row_max;
    float *row_log_sum;
    int64_t rows, classes;
    float smoothing;
} ce_saved;

static void ce_backward(em_node *node)
{
    const ce_saved *s = node->saved;
    bool fresh;
    float *dx = em_grad_for_write(node->in[0], &fresh);
    if (!dx)
        return;
    float k = node->out->grad[0] / (float)s->rows;
    float off = s->smoothing / (float)s->classes;
    float on = 1.0f - s->smoothing;
    int64_t C = s->classes;
#pragma omp parallel for schedule(static) if (s->rows * C > EM_PARALLEL_MIN_ELEMENTS)
    for (int64_t r = 0; r < s->rows; r++) {
        const float *x = s->x + r * C;
        float *d = dx + r * C;
        float m = s->row_max[r], ls = s->row_log_sum[r];
        if (fresh)
            for (int64_t j = 0; j < C; j++)
                d[j] = k * (em_fast_expf((x[j] - m) - ls) - off);
        else
            for (int64_t j = 0; j < C; j++)
                d[j] += k * (em_fast_expf((x[j] - m) - ls) - off);
        d[s->labels[r]] -= k * on;
    }
}

em_tensor *em_cross_entropy(em_tensor *logits, const int32_t *labels, float label_smoothing)
{
    if (!logits)
        return NULL;
    if (logits->ndim != 2)
        return em_error("cross_entropy: logits must be [N, C], got %s", em_shape_str(logits)), NULL;
    if (!labels)
        return em_error("cross_entropy: no labels for logits %s", em_shape_str(logits)), NULL;
    if (!(label_smoothing >= 0.0f && label_smoothing < 1.0f))
        return em_error("cross_entropy: label_smoothing %g is outside [0, 1)",
                        (double)label_smoothing), NULL;
    int64_t N = logits->shape[0], C = logits->shape[1];
    for (int64_t r = 0; r < N; r++)
        if (labels[r] < 0 || labels[r] >= C)
            return em_error("cross_entropy: label %d at row %lld is out of range for %lld classes "
                            "(logits %s)",
                            (int)labels[r], (long long)r, (long long)C, em_shape_str(logits)),
                   NULL;
    const float *x = em_dense_data(logits);
    em_arena *arena = em_step_arena();
    float *row_max = em_arena_alloc(arena, (size_t)N * sizeof(float));
    float *row_log_sum = em_arena_alloc(arena, (size_t)N * sizeof(float));
    double *row_loss = em_arena_alloc(arena, (size_t)N * sizeof(double));
    if (!x || !row_max || !row_log_sum || !row_loss)
        return NULL;
    double eps = label_smoothing;
#pragma omp parallel for schedule(static) if (N * C > EM_PARALLEL_MIN_ELEMENTS)
    for (int64_t r = 0; r < N; r++) {
        const float *row = x + r * C;
        float m = em_max_floats(row, C);
        float acc[EM_PARTIALS] = {0};
        int64_t j = 0;
        for (; j + EM_PARTIALS <= C; j += EM_PARTIALS)
            for (int k = 0; k < EM_PARTIALS; k++)
                acc[k] += em_fast_expf(row[j + k] - m);
        float sum = 0.0f;
        for (; j < C; j++)
            sum += em_fast_expf(row[j] - m);
        for (int k = 0; k < EM_PARTIALS; k++)
            sum += acc[k];
        double log_sum = log((double)sum);
        row_max[r] = m;
        row_log_sum[r] = (float)log_sum;
        /* -lp[j] = (m - x_j) + log_sum */
        double nll = (double)(m - row[labels[r]]) + log_sum;
        double loss = (1.0 - eps) * nll;
        if (eps > 0.0) {
            double mean_x = (double)em_sum_floats(row, C) / (double)C;
            loss += eps * (((double)m - mean_x) + log_sum);
        }
        row_loss[r] = loss;
    }
    double total = 0.0;
    for (int64_t r = 0; r < N; r++)
        total += row_loss[r];
    em_tensor *out = em_tensor_scalar(NULL, (float)(total / (double)N));
    if (!out)
        return NULL;
    em_node *node = em_record("cross_entropy", out, 1, &logits, ce_backward);
    if (node) {
        ce_saved *s = em_arena_alloc(arena, sizeof *s);
        int32_t *kept = em_arena_alloc(arena, (size_t)N * sizeof(int32_t));
        if (!s || !kept)
            return NULL;
        memcpy(kept, labels, (size_t)N * sizeof(int32_t));
        *s = (ce_saved){x, kept, row_max, row_log_sum, N, C, label_smoothing};
        node->saved = s;
        node->takes_input_grads = true;
    }
    return out;
}

/* ---- binary cross-entropy on logits -------------------------------------------- */

/* loss_i = max(x, 0) - x·t + log(1 + exp(-|x|)): exp never overflows, and the log1p
 * keeps the small tail terms. d/dx = sigmoid(x) - t, d/dt = -x. */
typedef struct bce_saved {
    const float *x, *t;
} bce_saved;

static void bce_backward(em_node *node)
{
    const bce_saved *s = node->saved;
    em_tensor *logits = node->in[0], *targets = node->in[1];
    int64_t n = logits->numel;
    float k = node->out->grad[0] / (float)n;
    if (logits->requires_grad)
        for (int64_t i = 0; i < n; i++)
            logits->grad[i] += k * (em_fast_sigmoidf(s->x[i]) - s->t[i]);
    if (targets->requires_grad)
        for (int64_t i = 0; i < n; i++)
            targets->grad[i] -= k * s->x[i];
}

em_tensor *em_bce_with_logits(em_tensor *logits, em_tensor *targets)
{
    if (!logits || !targets)
        return NULL;
    if (check_same_shape("bce_with_logits", "logits", logits, "targets", targets) != EM_OK)
        return NULL;
    const float *x = em_dense_data(logits), *t = em_dense_data(targets);
    if (!x || !t)
        return NULL;
    int64_t n = logits->numel;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        total += (double)(v > 0.0f ? v : 0.0f) - (double)v * t[i] +
                 (double)log1pf(em_fast_expf(-fabsf(v)));
    }
    em_tensor *out = em_tensor_scalar(NULL, (float)(total / (double)n));
    if (!out)
        return NULL;
    em_node *node =
        em_record("bce_with_logits", out, 2, (em_tensor *[]){logits, targets}, bce_backward);
    if (node) {
        bce_saved *s = em_arena_alloc(em_step_arena(), sizeof *s);
        if (!s)
            return NULL;
        *s = (bce_saved){x, t};
        node->saved = s;
    }
    return out;
}
