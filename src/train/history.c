/* A run's records and their reading: the best validation epoch, overfitting, where
 * early stopping would stop, steps to a target loss. */
#include "ember/history.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"

void em_history_init(em_train_history *h)
{
    memset(h, 0, sizeof *h);
}

void em_history_free(em_train_history *h)
{
    if (!h)
        return;
    free(h->steps);
    free(h->epochs);
    em_history_init(h);
}

int em_history_reserve(em_train_history *h, int64_t steps, int epochs)
{
    if (steps > h->cap_steps) {
        em_step_record *s = realloc(h->steps, (size_t)steps * sizeof *s);
        if (!s)
            return em_error("history: out of memory for %lld steps", (long long)steps);
        h->steps = s;
        h->cap_steps = steps;
    }
    if (epochs > h->cap_epochs) {
        em_epoch_record *e = realloc(h->epochs, (size_t)epochs * sizeof *e);
        if (!e)
            return em_error("history: out of memory for %d epochs", epochs);
        h->epochs = e;
        h->cap_epochs = epochs;
    }
    return EM_OK;
}

int em_history_add_step(em_train_history *h, const em_step_record *r)
{
    if (h->n_steps == h->cap_steps && em_history_reserve(h, h->cap_steps ? 2 * h->cap_steps : 256, h->cap_epochs) != EM_OK)
        return EM_ERR;
    h->steps[h->n_steps++] = *r;
    return EM_OK;
}

int em_history_add_epoch(em_train_history *h, const em_epoch_record *r)
{
    if (h->n_epochs == h->cap_epochs && em_history_reserve(h, h->cap_steps, h->cap_epochs ? 2 * h->cap_epochs : 16) != EM_OK)
        return EM_ERR;
    h->epochs[h->n_epochs++] = *r;
    return EM_OK;
}

bool em_history_improves(double loss, double best, double min_delta)
{
    if (!isfinite(loss))
        return false;
    return !isfinite(best) || loss < best - min_delta;
}

static int64_t first_step_at_target(const em_train_history *h, double target, int64_t window)
{
    double sum = 0.0;
    int64_t finite = 0;
    for (int64_t i = 0; i < h->n_steps; i++) {
        double v = h->steps[i].loss;
        if (!isfinite(v))
            return -1; /* diverged: the losses after it mean nothing */
        sum += v;
        finite++;
        if (i >= window) {
            sum -= h->steps[i - window].loss;
            finite--;
        }
        if (finite == window && sum / (double)window <= target)
            return i + 1;
    }
    return -1;
}

void em_history_diagnose(const em_train_history *h, int patience, double min_delta, double target_loss,
                         int64_t window, em_diagnosis *d)
{
    memset(d, 0, sizeof *d);
    d->patience = patience < 1 ? 1 : patience;
    d->target_loss = target_loss;
    d->best_val_loss = d->best_val_accuracy = NAN;
    d->final_val_loss = d->final_val_accuracy = d->final_train_loss = d->final_train_accuracy = NAN;
    d->loss_gap = d->accuracy_gap = NAN;
    d->steps_to_target = first_step_at_target(h, target_loss, window < 1 ? 1 : window);
    if (h->n_epochs == 0) {
        snprintf(d->verdict, sizeof d->verdict, "%s", h->diverged ? "diverged before the end of the first epoch"
                                                                  : "no complete epoch to judge");
        return;
    }
    const em_epoch_record *e = h->epochs, *last = &h->epochs[h->n_epochs - 1];
    d->final_train_loss = last->train_loss;
    d->final_train_accuracy = last->train_accuracy;
    d->final_val_loss = last->val_loss;
    d->final_val_accuracy = last->val_accuracy;
    double best = INFINITY, best_acc = -INFINITY;
    int since_best = 0;
    for (int i = 0; i < h->n_epochs; i++) {
        if (!isnan(e[i].val_loss))
            d->has_validation = true;
        if (em_history_improves(e[i].val_loss, best, min_delta)) {
            best = e[i].val_loss;
            d->best_epoch = e[i].epoch;
            since_best = 0;
        } else if (d->best_epoch) {
            since_best++;
            if (since_best >= d->patience && !d->stop_epoch) {
                d->stop_epoch = e[i].epoch;
                d->stop_keep_epoch = d->best_epoch;
            }
        }
        if (isfinite(e[i].val_accuracy) && e[i].val_accuracy > best_acc) {
            best_acc = e[i].val_accuracy;
            d->best_accuracy_epoch = e[i].epoch;
        }
    }
    if (!d->has_validation) {
        snprintf(d->verdict, sizeof d->verdict, "no validation set: overfitting cannot be judged");
        return;
    }
    /* The early-stopping rule keeps the first of nearly equal losses; the lowest value
     * itself is what a report calls the best loss. */
    for (int i = 0; i < h->n_epochs; i++)
        if (isfinite(e[i].val_loss) && e[i].val_loss < best)
            best = e[i].val_loss;
    d->best_val_loss = best;
    d->best_val_accuracy = best_acc;
    d->loss_gap = last->val_loss - last->train_loss;
    d->accuracy_gap = last->train_accuracy - last->val_accuracy;

    const em_epoch_record *at_best = &e[0];
    for (int i = 0; i < h->n_epochs; i++)
        if (e[i].epoch == d->best_epoch)
            at_best = &e[i];
    double rise = last->val_loss - at_best->val_loss;
    double allowed = fmax(min_delta, 0.02 * fabs(at_best->val_loss));
    bool rose = d->best_epoch > 0 && d->best_epoch < last->epoch && rise > allowed &&
                last->train_loss < at_best->train_loss;
    /* One epoch of rise may be noise; two or more, or a large one, is a trend. */
    d->overfitting = rose && (last->epoch - d->best_epoch >= 2 || rise > 0.1 * fabs(at_best->val_loss));
    char stop[160] = "";
    if (d->stop_epoch && d->stop_keep_epoch == d->best_epoch)
        snprintf(stop, sizeof stop, "; early stopping (patience %d) would stop after epoch %d and keep epoch %d",
                 d->patience, d->stop_epoch, d->best_epoch);
    else if (d->stop_epoch)
        snprintf(stop, sizeof stop,
                 "; early stopping (patience %d) would stop after epoch %d and keep epoch %d, missing the later "
                 "best",
                 d->patience, d->stop_epoch, d->stop_keep_epoch);
    else if (d->best_epoch > 0 && d->best_epoch < last->epoch)
        snprintf(stop, sizeof stop,
                 "; early stopping (patience %d) would not have stopped yet (%d epoch%s without improvement)",
                 d->patience, last->epoch - d->best_epoch, last->epoch - d->best_epoch == 1 ? "" : "s");
    else
        snprintf(stop, sizeof stop, "; early stopping (patience %d) would not stop", d->patience);
    if (d->overfitting)
        snprintf(d->verdict, sizeof d->verdict,
                 "overfitting: validation loss rose from %.4f (epoch %d) to %.4f (epoch %d) while training loss "
                 "fell from %.4f to %.4f%s",
                 at_best->val_loss, d->best_epoch, last->val_loss, last->epoch, at_best->train_loss, last->train_loss,
                 stop);
    else if (rose)
        snprintf(d->verdict, sizeof d->verdict,
                 "possibly the start of overfitting: validation loss rose from %.4f (epoch %d) to %.4f in the last "
                 "epoch while training loss fell from %.4f to %.4f; one epoch is too few to tell%s",
                 at_best->val_loss, d->best_epoch, last->val_loss, at_best->train_loss, last->train_loss, stop);
    else if (d->best_epoch == last->epoch)
        snprintf(d->verdict, sizeof d->verdict,
                 "no overfitting yet: validation loss still falling at the last epoch (%.4f)%s", last->val_loss,
                 stop);
    else if (d->best_epoch == 0)
        snprintf(d->verdict, sizeof d->verdict, "no finite validation loss");
    else
        snprintf(d->verdict, sizeof d->verdict,
                 "validation loss levelled off after epoch %d (%.4f, last %.4f) without a clear rise%s", d->best_epoch,
                 at_best->val_loss, last->val_loss, stop);
}
