/* Central-difference gradient checking, for any op or whole model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/step_arena.h"
#include "ember/autograd.h"
#include "ember/error.h"

#define WEIGHT_SEED 0x5eedULL
#define ABS_FLOOR 1e-3

/* sum_j w_j * out_j in double, with w fixed by the output's size. */
static double weighted_sum(const em_tensor *out, const float *weights, float *scratch)
{
    em_copy_to(out, scratch);
    double total = 0.0;
    for (int64_t j = 0; j < out->numel; j++)
        total += (double)weights[j] * (double)scratch[j];
    return total;
}

static int64_t element_offset(const em_tensor *t, int64_t flat)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (flat % t->shape[d]) * t->stride[d];
        flat /= t->shape[d];
    }
    return off;
}

typedef struct probe_ctx {
    em_gradcheck_fn fn;
    void *user;
    em_tensor *const *inputs;
    int n_inputs;
    const float *weights;
    float *scratch;
    int64_t out_numel;
    em_arena *scratch_arena;
} probe_ctx;

static int probe(probe_ctx *c, double *value)
{
    em_arena *previous = em_swap_step_arena(c->scratch_arena);
    bool grad_was = em_set_grad_enabled(false);
    em_tensor *out = c->fn(c->user, c->inputs, c->n_inputs);
    int status = EM_OK;
    if (!out)
        status = em_error_prefix("gradcheck: the function failed: ");
    else if (out->numel != c->out_numel)
        status = em_error("gradcheck: output size changed between calls");
    else
        *value = weighted_sum(out, c->weights, c->scratch);
    em_set_grad_enabled(grad_was);
    em_arena_reset(c->scratch_arena);
    em_swap_step_arena(previous);
    return status;
}

int em_gradcheck(em_gradcheck_fn fn, void *user, em_tensor *const *inputs, int n_inputs,
                 double eps, int64_t max_per_input, em_gradcheck_report *report)
{
    memset(report, 0, sizeof *report);
    report->worst_input = -1;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i] || !inputs[i]->requires_grad)
            return em_error("gradcheck: input %d does not require a gradient", i);
        if (inputs[i]->is_param)
            em_zero_grad(inputs[i]);
        else
            inputs[i]->grad = NULL;
    }

    bool grad_was = em_set_grad_enabled(true);
    em_tensor *out = fn(user, inputs, n_inputs);
    em_set_grad_enabled(grad_was);
    if (!out)
        return em_error_prefix("gradcheck: the function failed: ");

    probe_ctx c = {fn, user, inputs, n_inputs, NULL, NULL, out->numel, NULL};
    float *weights = malloc((size_t)out->numel * sizeof(float));
    float *scratch = malloc((size_t)out->numel * sizeof(float));
    c.scratch_arena = em_arena_create(0);
    int status = EM_OK;
    if (!weights || !scratch || !c.scratch_arena) {
        status = em_error("gradcheck: out of memory");
        goto done;
    }
    em_rng rng;
    em_rng_seed(&rng, WEIGHT_SEED);
    for (int64_t j = 0; j < out->numel; j++)
        weights[j] = 0.5f + em_rng_uniform(&rng) * (em_rng_next(&rng) & 1 ? 1.0f : -1.0f);
    c.weights = weights;
    c.scratch = scratch;

    if (em_backward_with(out, weights) != EM_OK) {
        status = EM_ERR;
        goto done;
    }

    for (int i = 0; i < n_inputs; i++) {
        em_tensor *x = inputs[i];
        const float *analytic = x->grad;
        int64_t n = x->numel;
        int64_t probes = (max_per_input > 0 && max_per_input < n) ? max_per_input : n;
        for (int64_t p = 0; p < probes; p++) {
            int64_t flat = probes == n ? p : p * n / probes + (p * 7919) % (n / probes);
            float *cell = x->data + element_offset(x, flat);
            float original = *cell;
            double plus, minus;
            *cell = (float)(original + eps);
            double step_up = (double)*cell - original;
            status = probe(&c, &plus);
            *cell = (float)(original - eps);
            double step_down = original - (double)*cell;
            if (status == EM_OK)
                status = probe(&c, &minus);
            *cell = original;
            if (status != EM_OK)
                goto done;
            double numeric = (plus - minus) / (step_up + step_down);
            double a = analytic ? analytic[flat] : 0.0;
            double abs_err = fabs(a - numeric);
            double scale = fmax(fmax(fabs(a), fabs(numeric)), ABS_FLOOR);
            double rel = abs_err / scale;
            if (i < 16) {
                report->worst_rel_error[i] = fmax(report->worst_rel_error[i], rel);
                report->worst_abs_error[i] = fmax(report->worst_abs_error[i], abs_err);
            }
            if (rel > report->max_rel_error || report->worst_input < 0) {
                report->max_rel_error = rel;
                report->worst_input = i;
                report->worst_index = flat;
                report->analytic = a;
                report->numeric = numeric;
            }
            report->checked++;
        }
    }
done:
    free(weights);
    free(scratch);
    em_arena_destroy(c.scratch_arena);
    return status;
}
