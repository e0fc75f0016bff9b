/* Around the optimizer update: the gradient norm (logged every step, clipped on
 * request), the learning-rate schedule, the validation set, early stopping with the
 * best weights kept, and the history and metrics rows of every step and epoch.
 *
 * The schedule ticks where a PyTorch loop calls scheduler.step(): after the optimizer
 * step (per-step schedules) or after the epoch's evaluation (per-epoch ones). A plateau
 * schedule watches the validation loss, or the epoch's training loss without a
 * validation set. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/checkpoint.h"
#include "ember/error.h"
#include "ember/runtime.h"
#include "train/train_internal.h"

static int64_t state_numel(const em_model *m)
{
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    int64_t total = 0;
    for (int i = 0; i < count; i++)
        total += state[i].tensor->numel;
    return total;
}

/* Copies every parameter and buffer into (or out of) one buffer. */
static void copy_weights(em_model *m, float *buf, bool save)
{
    int count = 0;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++) {
        em_tensor *t = state[i].tensor;
        size_t bytes = (size_t)t->numel * sizeof(float);
        if (save)
            memcpy(buf, t->data, bytes);
        else
            memcpy(t->data, buf, bytes);
        buf += t->numel;
    }
}

static int start(em_monitor *mon, em_model *m, em_optim *opt, const em_train_opts *o, const em_dataset *val,
                 em_monitor_validate_fn validate, void *validate_ctx, em_metrics *metrics, int64_t batches,
                 double start_time);

int em_monitor_start(em_monitor *mon, em_model *m, em_optim *opt, const em_train_opts *o, const em_dataset *val,
                     em_metrics *metrics, int64_t batches, double start_time)
{
    return start(mon, m, opt, o, val, NULL, NULL, metrics, batches, start_time);
}

int em_monitor_start_custom(em_monitor *mon, em_model *m, em_optim *opt, const em_train_opts *o,
                            em_monitor_validate_fn validate, void *validate_ctx, em_metrics *metrics, int64_t batches,
                            double start_time)
{
    return start(mon, m, opt, o, NULL, validate, validate_ctx, metrics, batches, start_time);
}

static int start(em_monitor *mon, em_model *m, em_optim *opt, const em_train_opts *o, const em_dataset *val,
                 em_monitor_validate_fn validate, void *validate_ctx, em_metrics *metrics, int64_t batches,
                 double start_time)
{
    memset(mon, 0, sizeof *mon);
    mon->m = m;
    mon->opt = opt;
    mon->o = o;
    mon->val = val;
    mon->validate = validate;
    mon->validate_ctx = validate_ctx;
    mon->metrics = metrics;
    mon->start = start_time;
    mon->best_val = INFINITY;
    em_history_init(&mon->own_history);
    mon->history = o->history ? o->history : &mon->own_history;
    mon->history->steps_per_epoch = batches;
    mon->base_steps = mon->history->n_steps;
    mon->base_epochs = mon->history->n_epochs;
    if (o->patience > 0 && !val && !validate)
        return em_error("train: early stopping (patience %d) needs a validation set (a validation dataset or "
                        "a validation split)",
                        o->patience);
    if (o->patience < 0 || !(o->min_delta >= 0.0))
        return em_error("train: patience and min_delta must be >= 0, got %d and %g", o->patience, o->min_delta);
    if (!(o->clip_grad_norm >= 0.0) || !(o->clip_grad_value >= 0.0f))
        return em_error("train: gradient clipping limits must be >= 0, got norm %g and value %g", o->clip_grad_norm,
                        (double)o->clip_grad_value);
    if (o->schedule.kind != EM_SCHEDULE_CONSTANT) {
        em_schedule_opts so = o->schedule;
        if (so.kind == EM_SCHEDULE_COSINE && so.total == 0)
            so.total = so.per_step ? batches * o->epochs : o->epochs;
        mon->schedule = em_schedule_new(opt, &so);
        if (!mon->schedule)
            return em_error_prefix("train: ");
    }
    if (em_history_reserve(mon->history, mon->history->n_steps + batches * o->epochs,
                           mon->history->n_epochs + o->epochs) != EM_OK)
        return EM_ERR;
    if (o->patience > 0 && !o->keep_last_weights) {
        mon->best_weights = malloc((size_t)state_numel(m) * sizeof(float));
        if (!mon->best_weights)
            return em_error("train: out of memory for a copy of the best weights (%lld values)",
                            (long long)state_numel(m));
    }
    return EM_OK;
}

void em_monitor_gradients(em_monitor *mon, const em_tensor *logits, const int32_t *labels, int64_t n)
{
    int64_t correct = 0;
    int32_t *pred = logits && n > 0 ? em_arena_alloc(em_step_arena(), (size_t)n * sizeof *pred) : NULL;
    if (pred) {
        em_argmax_rows(logits, pred);
        for (int64_t i = 0; i < n; i++)
            correct += pred[i] == labels[i];
        mon->correct += correct;
        mon->seen += n;
    }
    mon->step_accuracy = pred ? (float)correct / (float)n : NAN;
    mon->step_lr = em_optim_lr(mon->opt);
    double norm = mon->o->clip_grad_norm > 0.0 ? em_optim_clip_grad_norm(mon->opt, mon->o->clip_grad_norm, 2.0)
                                               : em_optim_grad_norm(mon->opt, 2.0);
    if (mon->o->clip_grad_value > 0.0f)
        em_optim_clip_grad_value(mon->opt, mon->o->clip_grad_value);
    mon->step_grad_norm = (float)norm;
    if (isfinite(norm)) {
        mon->grad_norm_sum += norm;
        mon->grad_norms++;
    }
}

static void record_step(em_monitor *mon, int64_t step, int epoch, float loss)
{
    em_step_record r = {
        .step = step,
        .loss = loss,
        .lr = mon->step_lr,
        .grad_norm = mon->step_grad_norm,
        .accuracy = mon->step_accuracy,
        .seconds = (float)(em_now() - mon->start),
    };
    em_history_add_step(mon->history, &r); /* never grows: reserved at the start */
    em_metrics_step(mon->metrics, epoch, &r);
}

void em_monitor_step(em_monitor *mon, int64_t step, int epoch, float loss)
{
    record_step(mon, step, epoch, loss);
    if (mon->schedule && em_schedule_options(mon->schedule)->per_step)
        em_schedule_step(mon->schedule);
}

int em_monitor_set_optimizer(em_monitor *mon, em_optim *opt, const int *from)
{
    mon->opt = opt;
    return mon->schedule ? em_schedule_rebind_groups(mon->schedule, opt, from) : EM_OK;
}

void em_monitor_resume(em_monitor *mon, int64_t steps_done, int epochs_done)
{
    if (!mon->schedule || em_schedule_options(mon->schedule)->kind == EM_SCHEDULE_PLATEAU)
        return;
    int64_t ticks = em_schedule_options(mon->schedule)->per_step ? steps_done : epochs_done;
    for (int64_t t = 0; t < ticks; t++)
        em_schedule_step(mon->schedule);
}

void em_monitor_run_history(const em_monitor *mon, em_train_history *view)
{
    const em_train_history *h = mon->history;
    *view = *h;
    view->steps = h->steps ? h->steps + mon->base_steps : NULL;
    view->n_steps = h->n_steps - mon->base_steps;
    view->cap_steps = view->n_steps;
    view->epochs = h->epochs ? h->epochs + mon->base_epochs : NULL;
    view->n_epochs = h->n_epochs - mon->base_epochs;
    view->cap_epochs = view->n_epochs;
}

/* The metrics rows of restored records, in the order the run wrote them: each epoch's
 * row after its last step's. */
static void replay_rows(em_metrics *mf, const em_train_history *h)
{
    int e = 0;
    for (int64_t i = 0; i < h->n_steps; i++) {
        while (e < h->n_epochs && h->epochs[e].steps < h->steps[i].step)
            em_metrics_epoch(mf, &h->epochs[e++]);
        int epoch = e < h->n_epochs ? h->epochs[e].epoch : h->n_epochs ? h->epochs[h->n_epochs - 1].epoch + 1 : 1;
        em_metrics_step(mf, epoch, &h->steps[i]);
    }
    while (e < h->n_epochs)
        em_metrics_epoch(mf, &h->epochs[e++]);
}

int em_monitor_restore_history(em_monitor *mon, const char *path, int64_t steps_done)
{
    em_train_history saved;
    em_history_init(&saved);
    if (em_checkpoint_read_history(path, &saved) != EM_OK)
        return EM_ERR;
    int rc = EM_OK;
    if (saved.n_steps && saved.steps[saved.n_steps - 1].step != steps_done)
        rc = em_error("%s: the history ends at step %lld but the checkpoint is at step %lld", path,
                      (long long)saved.steps[saved.n_steps - 1].step, (long long)steps_done);
    em_train_history *h = mon->history;
    if (rc == EM_OK)
        rc = em_history_reserve(h, h->n_steps + saved.n_steps + (h->cap_steps - h->n_steps),
                                h->n_epochs + saved.n_epochs + (h->cap_epochs - h->n_epochs));
    if (rc == EM_OK) {
        for (int64_t i = 0; i < saved.n_steps; i++)
            em_history_add_step(h, &saved.steps[i]);
        for (int i = 0; i < saved.n_epochs; i++)
            em_history_add_epoch(h, &saved.epochs[i]);
        replay_rows(mon->metrics, &saved);
    }
    em_history_free(&saved);
    return rc;
}

void em_monitor_diverged(em_monitor *mon, int64_t step, int epoch, float loss)
{
    if (mon->step_lr == 0.0f)
        mon->step_lr = em_optim_lr(mon->opt);
    mon->step_grad_norm = NAN;
    mon->step_accuracy = NAN;
    record_step(mon, step, epoch, loss);
    mon->history->diverged = true;
    mon->history->diverged_step = step;
    mon->history->diverged_epoch = epoch;
}

int em_monitor_epoch_end(em_monitor *mon, em_epoch_stats *s, int64_t steps)
{
    const em_train_opts *o = mon->o;
    s->train_accuracy = mon->seen ? (double)mon->correct / (double)mon->seen : NAN;
    s->val_loss = s->val_accuracy = NAN;
    bool validated = mon->val || mon->validate;
    if (mon->validate && mon->validate(mon->validate_ctx, &s->val_loss, &s->val_accuracy) != EM_OK)
        return em_error_prefix("validation after epoch %d: ", s->epoch);
    if (mon->val && em_evaluate(mon->m, mon->val, o->eval_batch_size, &s->val_loss, &s->val_accuracy) != EM_OK)
        return em_error_prefix("validation after epoch %d: ", s->epoch);

    em_epoch_record e = {
        .epoch = s->epoch,
        .steps = steps,
        .train_loss = s->train_loss,
        .train_accuracy = s->train_accuracy,
        .val_loss = s->val_loss,
        .val_accuracy = s->val_accuracy,
        .test_loss = s->test_loss,
        .test_accuracy = s->test_accuracy,
        .lr = em_optim_lr(mon->opt),
        .grad_norm = mon->grad_norms ? mon->grad_norm_sum / (double)mon->grad_norms : NAN,
        .seconds = em_now() - mon->start,
    };
    em_history_add_epoch(mon->history, &e);
    em_metrics_epoch(mon->metrics, &e);
    mon->grad_norm_sum = 0.0;
    mon->grad_norms = mon->correct = mon->seen = 0;

    if (mon->schedule && !em_schedule_options(mon->schedule)->per_step)
        em_schedule_step_metric(mon->schedule, validated ? s->val_loss : s->train_loss);

    if (validated) {
        if (em_history_improves(s->val_loss, mon->best_val, o->min_delta)) {
            mon->best_val = s->val_loss;
            mon->best_epoch = s->epoch;
            mon->since_best = 0;
            if (mon->best_weights)
                copy_weights(mon->m, mon->best_weights, true);
        } else {
            mon->since_best++;
        }
        if (o->patience > 0 && mon->best_epoch > 0 && mon->since_best >= o->patience)
            mon->stop = true;
    }
    return EM_OK;
}

void em_monitor_finish(em_monitor *mon, em_train_result *result)
{
    em_train_history *h = mon->history;
    int last = h->n_epochs ? h->epochs[h->n_epochs - 1].epoch : 0;
    if (mon->stop && last < mon->o->epochs) {
        h->early_stopped = true;
        h->stopped_epoch = last;
    }
    if (mon->best_weights && mon->best_epoch > 0 && mon->best_epoch != last && !h->diverged) {
        copy_weights(mon->m, mon->best_weights, false);
        mon->restored_epoch = mon->best_epoch;
    }
    h->restored_epoch = mon->restored_epoch;
    h->total_seconds = em_now() - mon->start;
    if (result) {
        result->diverged = h->diverged;
        result->early_stopped = h->early_stopped;
        result->best_epoch = mon->best_epoch;
        result->restored_epoch = mon->restored_epoch;
    }
}

void em_monitor_free(em_monitor *mon)
{
    em_schedule_free(mon->schedule);
    mon->schedule = NULL;
    free(mon->best_weights);
    mon->best_weights = NULL;
    em_history_free(&mon->own_history);
}
