/* Gradient check of a whole model: every parameter's gradient from the tape against
 * finite differences, at a bounded number of elements per parameter.
 *
 * Float32 shapes this check (measured on models/mlp.ember and on a deep stack of
 * smooth activations, with the same procedure run in PyTorch float32 for reference):
 *  - A scalar loss of about 2.3 is itself rounded to 2.4e-7, which at a step of 1e-2
 *    already blurs gradients of 1e-3 by a percent. So the scalar is a fixed random
 *    weighting of the outputs summed in double (em_gradcheck's reduction), whose
 *    gradients are larger and whose rounding is that of the outputs alone.
 *  - Rounding favours large steps, but piecewise-linear activations (relu) have kinks,
 *    and a step that moves any of the thousands of downstream pre-activations across
 *    zero spoils a central difference; with 16 examples most large steps on a
 *    first-layer weight do. So each probe tries central and one-sided differences (a
 *    kink on one side leaves the other clean) at a step of 2e-2, halving it while none
 *    agrees, down to 3e-4; the element's error is that of the best difference.
 *  - Near-zero gradients are judged against a floor of 5% of the parameter's largest
 *    gradient: the resolution float32 differences have there.
 * Measured worst errors of correct models stay below 0.7%; a wrong backward (a missing
 * term, a wrong factor) disagrees with every difference, by tens of percent. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "nn/layer.h"

#define DEFAULT_BATCH 4
#define WEIGHT_SEED 0x5eedULL
#define FIRST_STEP 2e-2    /* large: float32 rounding over a small step swamps small gradients */
#define STEP_HALVINGS 6     /* ... down to 3.1e-4: small, to step between the kinks */
#define ABS_FLOOR 1e-3      /* as em_gradcheck */
#define REL_FLOOR 0.05      /* of the parameter's largest gradient */
#define GOOD_ENOUGH (EM_MODEL_GRADCHECK_TOLERANCE / 10)

typedef struct probe_ctx {
    em_model *model;
    em_tensor *x;
    const float *weights; /* one per output element */
    float *scratch;
    int64_t out_numel;
    em_rng rng_start;     /* restored before each forward: dropout masks repeat */
} probe_ctx;

/* sum(w * model(x)) in double, recording nothing. */
static int evaluate(probe_ctx *c, double *value)
{
    *em_model_rng(c->model) = c->rng_start;
    bool grad_was = em_set_grad_enabled(false);
    em_tensor *y = em_forward(c->model, c->x);
    int status = EM_OK;
    if (!y)
        status = EM_ERR;
    else if (y->numel != c->out_numel)
        status = em_error("the output size changed between two forwards");
    else {
        em_copy_to(y, c->scratch);
        double total = 0.0;
        for (int64_t j = 0; j < c->out_numel; j++)
            total += (double)c->weights[j] * (double)c->scratch[j];
        *value = total;
    }
    em_set_grad_enabled(grad_was);
    em_step_end();
    return status;
}

/* A random batch: N(0, 1) values, or what the first layer asks for (token ids). */
static em_tensor *example_batch(em_model *m, em_arena *arena, int64_t batch, em_rng *rng)
{
    int64_t shape[EM_MAX_DIMS];
    int ndim = em_model_input_shape(m, shape + 1);
    shape[0] = batch;
    em_tensor *x = em_tensor_empty(arena, ndim + 1, shape);
    if (!x)
        return NULL;
    const em_layer *first = em_model_layer_at(m, 0);
    if (first && first->kind->example_input)
        first->kind->example_input(first, x, rng);
    else
        em_init_normal(x, rng, 0.0f, 1.0f);
    return x;
}

static double relative_error(double analytic, double numeric, double floor)
{
    return fabs(analytic - numeric) / fmax(fmax(fabs(analytic), fabs(numeric)), floor);
}

/* The smallest disagreement between `analytic` and the differences at element `cell`. */
static int probe_element(probe_ctx *c, float *cell, double analytic, double base, double floor, double *error)
{
    const float original = *cell;
    double step = FIRST_STEP;
    *error = INFINITY;
    for (int k = 0; k <= STEP_HALVINGS && *error > GOOD_ENOUGH; k++, step /= 2) {
        double up, down;
        *cell = (float)(original + step);
        double step_up = (double)*cell - original;
        int status = evaluate(c, &up);
        *cell = (float)(original - step);
        double step_down = original - (double)*cell;
        if (status == EM_OK)
            status = evaluate(c, &down);
        *cell = original;
        if (status != EM_OK)
            return EM_ERR;
        const double differences[3] = {(up - down) / (step_up + step_down), (up - base) / step_up,
                                       (base - down) / step_down};
        for (int i = 0; i < 3; i++)
            *error = fmin(*error, relative_error(analytic, differences[i], floor));
    }
    return EM_OK;
}

static int check_parameter(probe_ctx *c, em_tensor *p, double base, int64_t *probed, double *worst)
{
    int64_t n = p->numel;
    double largest = 0.0;
    for (int64_t i = 0; i < n; i++)
        largest = fmax(largest, fabs((double)p->grad[i]));
    double floor = fmax(ABS_FLOOR, REL_FLOOR * largest);
    int64_t probes = n < EM_MODEL_GRADCHECK_PROBES ? n : EM_MODEL_GRADCHECK_PROBES;
    *worst = 0.0;
    for (int64_t k = 0; k < probes; k++) {
        /* spread over the tensor, off any regular stride of its layout */
        int64_t flat = probes == n ? k : k * n / probes + (k * 7919) % (n / probes);
        double e;
        if (probe_element(c, p->data + flat, (double)p->grad[flat], base, floor, &e) != EM_OK)
            return EM_ERR;
        *worst = fmax(*worst, e);
    }
    *probed = probes;
    return EM_OK;
}

int em_model_gradcheck(em_model *m, int64_t batch, uint64_t seed, FILE *report_out, double *worst)
{
    if (worst)
        *worst = 0.0;
    if (!m)
        return em_error("gradcheck: no model");
    if (batch <= 0)
        batch = DEFAULT_BATCH;
    em_step_end();
    em_arena *arena = em_arena_create(0);
    if (!arena)
        return em_error_prefix("gradcheck: ");
    em_rng rng;
    em_rng_seed(&rng, seed);
    probe_ctx c = {.model = m, .rng_start = *em_model_rng(m)};
    int status = EM_OK;
    double worst_error = 0.0;
    const char *worst_name = NULL;

    c.x = example_batch(m, arena, batch, &rng);
    if (!c.x) {
        status = EM_ERR;
        goto done;
    }
    /* The analytic gradients of every parameter from one backward. */
    em_model_zero_grad(m);
    *em_model_rng(m) = c.rng_start;
    em_tensor *y = em_forward(m, c.x);
    if (!y) {
        status = EM_ERR;
        goto done;
    }
    c.out_numel = y->numel;
    char out_shape[128];
    snprintf(out_shape, sizeof out_shape, "%s", em_shape_str(y));
    float *weights = em_arena_alloc(arena, (size_t)y->numel * sizeof(float));
    c.scratch = em_arena_alloc(arena, (size_t)y->numel * sizeof(float));
    if (!weights || !c.scratch) {
        status = EM_ERR;
        goto done;
    }
    em_rng weight_rng;
    em_rng_seed(&weight_rng, WEIGHT_SEED);
    for (int64_t j = 0; j < y->numel; j++)
        weights[j] = 0.5f + em_rng_uniform(&weight_rng) * (em_rng_next(&weight_rng) & 1 ? 1.0f : -1.0f);
    c.weights = weights;
    if (!y->requires_grad) {
        status = em_error("the output %s does not depend on any parameter (are gradients off?)", em_shape_str(y));
        goto done;
    }
    status = em_backward_with(y, weights);
    em_step_end();
    double base = 0.0;
    if (status == EM_OK)
        status = evaluate(&c, &base);
    if (status != EM_OK)
        goto done;

    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    if (report_out)
        fprintf(report_out,
                "gradient check: batch %lld, output %s weighted by fixed random numbers, up to %d elements "
                "per parameter\n",
                (long long)batch, out_shape, EM_MODEL_GRADCHECK_PROBES);
    for (int i = 0; i < count; i++) {
        if (state[i].is_buffer)
            continue;
        int64_t probed = 0;
        double e;
        status = check_parameter(&c, state[i].tensor, base, &probed, &e);
        if (status != EM_OK)
            goto done;
        if (report_out)
            fprintf(report_out, "  %-24s %-16s %4lld probed  worst relative error %.2e  %s\n", state[i].name,
                    em_shape_str(state[i].tensor), (long long)probed, e,
                    e <= EM_MODEL_GRADCHECK_TOLERANCE ? "ok" : "FAILED");
        if (!(e <= worst_error)) {
            worst_error = e;
            worst_name = state[i].name;
        }
    }
done:
    *em_model_rng(m) = c.rng_start;
    em_model_zero_grad(m);
    em_step_end();
    em_arena_destroy(arena);
    if (status != EM_OK)
        return em_error_prefix("gradcheck: ");
    if (worst)
        *worst = worst_error;
    if (!(worst_error <= EM_MODEL_GRADCHECK_TOLERANCE))
        return em_error("gradcheck: %s has relative error %.3g, above the tolerance %g", worst_name, worst_error,
                        EM_MODEL_GRADCHECK_TOLERANCE);
    return EM_OK;
}
