/* Gradient check of a whole model: every parameter's gradient from the tape against
 * central differences of a loss over a random batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "nn/layer.h"

#define DEFAULT_BATCH 4
#define STEP 1e-2

typedef struct loss_ctx {
    em_model *model;
    em_tensor *x;
    int32_t *labels;    /* cross-entropy: one per row of the [rows, classes] scores */
    int64_t classes;
    em_tensor *target;  /* mean squared error otherwise */
    em_rng rng_start;   /* restored before each forward: dropout masks repeat */
} loss_ctx;

static em_tensor *model_loss(void *user, em_tensor *const *inputs, int n_inputs)
{
    (void)inputs;
    (void)n_inputs;
    loss_ctx *c = user;
    *em_model_rng(c->model) = c->rng_start;
    em_tensor *y = em_forward(c->model, c->x);
    if (!y)
        return NULL;
    if (c->labels) {
        em_tensor *scores = em_reshape(y, 2, (int64_t[]){y->numel / c->classes, c->classes});
        return em_cross_entropy(scores, c->labels, 0.0f);
    }
    return em_mse_loss(y, c->target);
}

/* Fills c with a random batch and what the loss compares the output with. */
static int make_batch(loss_ctx *c, em_arena *arena, int64_t batch, em_rng *rng)
{
    em_model *m = c->model;
    int64_t shape[EM_MAX_DIMS];
    int in_ndim = em_model_input_shape(m, shape + 1);
    shape[0] = batch;
    c->x = em_tensor_empty(arena, in_ndim + 1, shape);
    if (!c->x)
        return EM_ERR;
    const em_layer *first = em_model_layer_at(m, 0);
    if (first && first->kind->example_input)
        first->kind->example_input(first, c->x, rng);
    else
        em_init_normal(c->x, rng, 0.0f, 1.0f);

    int out_ndim = em_model_output_shape(m, shape + 1);
    bool class_scores = (out_ndim == 1 || out_ndim == 2) && shape[out_ndim] >= 2;
    if (class_scores) {
        c->classes = shape[out_ndim];
        int64_t rows = batch * (out_ndim == 2 ? shape[1] : 1);
        c->labels = em_arena_alloc(arena, (size_t)rows * sizeof(int32_t));
        if (!c->labels)
            return EM_ERR;
        for (int64_t i = 0; i < rows; i++)
            c->labels[i] = (int32_t)em_rng_below(rng, (uint64_t)c->classes);
        return EM_OK;
    }
    c->target = em_tensor_empty(arena, out_ndim + 1, shape);
    if (!c->target)
        return EM_ERR;
    em_init_normal(c->target, rng, 0.0f, 1.0f);
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
    em_arena *arena = em_arena_create(0);
    if (!arena)
        return EM_ERR;
    em_rng rng;
    em_rng_seed(&rng, seed);
    loss_ctx c = {.model = m, .rng_start = *em_model_rng(m)};
    em_step_end();
    int status = make_batch(&c, arena, batch, &rng);
    if (status != EM_OK) {
        em_arena_destroy(arena);
        return em_error_prefix("gradcheck: ");
    }

    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    double worst_error = 0.0;
    const char *worst_name = NULL;
    if (report_out)
        fprintf(report_out, "gradient check: batch %lld, %s loss, up to %d elements per parameter\n",
                (long long)batch, c.labels ? "cross-entropy" : "mean squared error", EM_MODEL_GRADCHECK_PROBES);
    for (int i = 0; i < count && status == EM_OK; i++) {
        if (state[i].is_buffer)
            continue;
        em_tensor *p = state[i].tensor;
        em_gradcheck_report r;
        status = em_gradcheck(model_loss, &c, &p, 1, STEP, EM_MODEL_GRADCHECK_PROBES, &r);
        em_step_end();
        if (status != EM_OK)
            break;
        double e = r.worst_rel_error[0];
        if (report_out)
            fprintf(report_out, "  %-24s %-16s %5lld checked  worst relative error %.2e  %s\n", state[i].name,
                    em_shape_str(p), (long long)r.checked, e,
                    e <= EM_MODEL_GRADCHECK_TOLERANCE ? "ok" : "FAILED");
        if (!(e <= worst_error)) {
            worst_error = e;
            worst_name = state[i].name;
        }
    }
    *em_model_rng(m) = c.rng_start;
    em_model_zero_grad(m);
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
