/* Evaluation: the mean cross-entropy and the accuracy of a model over a dataset, in
 * evaluation mode (no dropout, running statistics) and without recording a tape. */
#include <math.h>

#include "ember/autograd.h"
#include "ember/error.h"
#include "ember/train.h"
#include "train/train_internal.h"

#define DEFAULT_EVAL_BATCH 500

em_tensor *em_train_model_input(const em_model *m, em_tensor *x)
{
    int64_t shape[EM_MAX_DIMS + 1];
    int ndim = em_model_input_shape(m, shape + 1);
    if (ndim <= 0 || !x || ndim + 1 > EM_MAX_DIMS)
        return x;
    bool same = x->ndim == ndim + 1;
    for (int d = 0; same && d < ndim; d++)
        same = x->shape[d + 1] == shape[d + 1];
    if (same)
        return x;
    shape[0] = x->shape[0];
    return em_reshape(x, ndim + 1, shape);
}

int em_train_check_fit(const em_model *m, const em_dataset *ds)
{
    int64_t in_shape[EM_MAX_DIMS], out_shape[EM_MAX_DIMS];
    int in_ndim = em_model_input_shape(m, in_shape);
    int out_ndim = em_model_output_shape(m, out_shape);
    if (in_ndim < 0 || out_ndim < 0)
        return EM_ERR;
    if (em_shape_numel(in_ndim, in_shape) != ds->item_numel)
        return em_error("the model takes inputs of shape %s but the examples of %s have shape %s",
                        em_dims_str(in_ndim, in_shape), ds->source,
                        em_dims_str(ds->item_ndim, ds->item_shape));
    if (out_ndim != 1)
        return em_error("the model's output has shape %s per example; classification needs one "
                        "score per class (end the model with a linear layer)",
                        em_dims_str(out_ndim, out_shape));
    if (out_shape[0] < ds->num_classes)
        return em_error("the model has %lld outputs but %s has %d classes",
                        (long long)out_shape[0], ds->source, ds->num_classes);
    return EM_OK;
}

int em_evaluate(em_model *m, const em_dataset *ds, int64_t batch_size, double *loss, double *accuracy)
{
    if (!m || !ds)
        return em_error("evaluate: needs a model and a dataset");
    if (em_train_check_fit(m, ds) != EM_OK)
        return em_error_prefix("evaluate: ");
    if (batch_size <= 0)
        batch_size = DEFAULT_EVAL_BATCH;
    em_loader *loader = em_loader_new(ds, batch_size, false, 0);
    if (!loader)
        return em_error_prefix("evaluate: ");

    bool was_training = em_model_is_training(m);
    bool grad_was = em_set_grad_enabled(false);
    em_model_set_training(m, false);
    double loss_sum = 0.0;
    int64_t correct = 0, seen = 0;
    int rc = EM_OK;
    em_batch b;
    while (em_loader_next(loader, &b)) {
        em_tensor *logits = em_forward(m, em_train_model_input(m, b.x));
        em_tensor *l = em_cross_entropy(logits, b.y, 0.0f);
        int32_t *pred = em_arena_alloc(em_step_arena(), (size_t)b.n * sizeof *pred);
        if (!l || !pred) {
            rc = em_error_prefix("evaluate on %s, batch %lld: ", ds->source, (long long)b.index + 1);
            em_step_end();
            break;
        }
        loss_sum += (double)em_item(l) * (double)b.n;
        em_argmax_rows(logits, pred);
        for (int64_t i = 0; i < b.n; i++)
            correct += pred[i] == b.y[i];
        seen += b.n;
        em_step_end();
    }
    em_model_set_training(m, was_training);
    em_set_grad_enabled(grad_was);
    em_loader_free(loader);
    if (rc != EM_OK)
        return rc;
    if (seen != ds->count)
        return em_error("evaluate on %s: read %lld of %lld examples (%s)", ds->source, (long long)seen,
                        (long long)ds->count, ember_last_error());
    if (loss)
        *loss = loss_sum / (double)seen;
    if (accuracy)
        *accuracy = (double)correct / (double)seen;
    return EM_OK;
}
