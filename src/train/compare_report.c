/* The Markdown report of a comparison: what was held fixed, a table with a row per run,
 * the findings (ranking, speed, divergences, overfitting; for learning curves which
 * model leads at each size and where one overtakes another) and the definitions of the
 * figures, so that the file reads on its own. */
#include "ember/compare.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"

static const char *const axis_names[EM_COMPARE_AXIS_COUNT] = {"optimizer", "activation", "model",
                                                              "training-set size"};

const char *em_compare_axis_name(em_compare_axis axis)
{
    return (unsigned)axis < EM_COMPARE_AXIS_COUNT ? axis_names[axis] : "variant";
}

/* "87.12%" or "–" for NaN. */
static const char *percent(char *buf, size_t cap, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, "%.2f%%", 100.0 * v);
    else
        snprintf(buf, cap, "–");
    return buf;
}

static const char *number(char *buf, size_t cap, const char *format, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, format, v);
    else
        snprintf(buf, cap, "–");
    return buf;
}

/* The mean gradient norm over the run's last `window` finite steps. */
static double final_grad_norm(const em_train_history *h, int64_t window)
{
    double sum = 0.0;
    int64_t n = 0;
    for (int64_t i = h->n_steps - 1; i >= 0 && n < window; i--)
        if (isfinite(h->steps[i].grad_norm)) {
            sum += h->steps[i].grad_norm;
            n++;
        }
    return n ? sum / (double)n : NAN;
}

static bool run_ok(const em_compare_run *r) { return !r->failed && !r->history.diverged; }

/* A table cell must not break the table: '|' and newlines become spaces. */
static void put_cell(FILE *f, const char *text)
{
    fputc(' ', f);
    for (const char *p = text; *p; p++)
        fputc(*p == '|' || *p == '\n' ? ' ' : *p, f);
    fputs(" |", f);
}

static void outcome(char *buf, size_t cap, const em_compare_run *r, const em_diagnosis *d)
{
    const em_train_history *h = &r->history;
    if (r->failed)
        snprintf(buf, cap, "**failed**: %s", r->message);
    else if (h->diverged)
        snprintf(buf, cap, "**diverged**: loss not finite at step %lld (epoch %d)", (long long)h->diverged_step,
                 h->diverged_epoch);
    else if (h->early_stopped)
        snprintf(buf, cap, "stopped early after epoch %d, kept epoch %d%s", h->stopped_epoch, h->restored_epoch,
                 d->overfitting ? "; overfitting" : "");
    else if (d->overfitting)
        snprintf(buf, cap, "overfitting after epoch %d%s", d->best_epoch,
                 h->restored_epoch ? " (best weights kept)" : "");
    else
        snprintf(buf, cap, "ok");
}

static void diagnose(const em_comparison *c, const em_compare_run *r, em_diagnosis *d)
{
    em_history_diagnose(&r->history, c->patience, c->min_delta, c->target_loss, c->window, d);
}

static void write_table(FILE *f, const em_comparison *c)
{
    fprintf(f, "| %s | settings | best validation accuracy (epoch) | final validation accuracy | test accuracy "
               "| steps to loss ≤ %g | time | final gradient norm | train − validation accuracy | outcome |\n",
            em_compare_axis_name(c->axis), c->target_loss);
    fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int i = 0; i < c->n_runs; i++) {
        const em_compare_run *r = &c->runs[i];
        em_diagnosis d;
        diagnose(c, r, &d);
        char a[32], b[64], cell[640];
        fputc('|', f);
        snprintf(cell, sizeof cell, "**%s**", r->name);
        put_cell(f, cell);
        put_cell(f, r->settings);
        if (d.best_accuracy_epoch > 0)
            snprintf(b, sizeof b, "%s (%d)", percent(a, sizeof a, d.best_val_accuracy), d.best_accuracy_epoch);
        else
            snprintf(b, sizeof b, "–");
        put_cell(f, b);
        put_cell(f, percent(a, sizeof a, d.final_val_accuracy));
        put_cell(f, percent(a, sizeof a, r->test_accuracy));
        if (d.steps_to_target > 0)
            snprintf(b, sizeof b, "%lld", (long long)d.steps_to_target);
        else
            snprintf(b, sizeof b, "not reached");
        put_cell(f, b);
        snprintf(b, sizeof b, "%.1f s", r->seconds);
        put_cell(f, b);
        put_cell(f, number(a, sizeof a, "%.3g", final_grad_norm(&r->history, c->window)));
        if (isfinite(d.accuracy_gap))
            snprintf(b, sizeof b, "%+.2f points", 100.0 * d.accuracy_gap);
        else
            snprintf(b, sizeof b, "–");
        put_cell(f, b);
        outcome(cell, sizeof cell, r, &d);
        put_cell(f, cell);
        fputc('\n', f);
    }
}

static int by_best_accuracy(const void *a, const void *b)
{
    const double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return (y > x) - (y < x);
}

static void write_findings(FILE *f, const em_comparison *c)
{
    fprintf(f, "\n## Findings\n\n");
    /* Ranking by best validation accuracy. */
    double (*rank)[2] = calloc((size_t)c->n_runs + 1, sizeof *rank);
    int ranked = 0;
    for (int i = 0; rank && i < c->n_runs; i++) {
        em_diagnosis d;
        diagnose(c, &c->runs[i], &d);
        if (isfinite(d.best_val_accuracy) && !c->runs[i].failed) {
            rank[ranked][0] = d.best_val_accuracy;
            rank[ranked][1] = i;
            ranked++;
        }
    }
    if (ranked > 0) {
        qsort(rank, (size_t)ranked, sizeof *rank, by_best_accuracy);
        fprintf(f, "- **Best validation accuracy**: ");
        for (int k = 0; k < ranked; k++) {
            const em_compare_run *r = &c->runs[(int)rank[k][1]];
            fprintf(f, "%s%s %.2f%%", k ? (k == ranked - 1 ? " and " : ", ") : "", r->name, 100.0 * rank[k][0]);
        }
        fprintf(f, " (best first).\n");
        const em_compare_run *top = &c->runs[(int)rank[0][1]], *low = &c->runs[(int)rank[ranked - 1][1]];
        if (ranked > 1)
            fprintf(f, "- The spread between %s and %s is %.2f points of accuracy with the same data, seed and "
                       "budget.\n",
                    top->name, low->name, 100.0 * (rank[0][0] - rank[ranked - 1][0]));
        /* How far apart two accuracies must be to mean something: the binomial standard
         * error of an accuracy measured on n examples, and of a difference of two. */
        int64_t n = top->val_size;
        if (n > 0) {
            double p = rank[0][0], se = sqrt(p * (1.0 - p) / (double)n);
            int within = 0;
            for (int k = 1; k < ranked; k++)
                within += rank[0][0] - rank[k][0] < 2.0 * sqrt(2.0) * se;
            fprintf(f, "- With %lld validation examples an accuracy near %.0f%% has a standard error of %.2f "
                       "points, so differences below about %.1f points (two standard errors of a difference) may "
                       "be chance: %d run%s %s within that of the best.\n",
                    (long long)n, 100.0 * p, 100.0 * se, 200.0 * sqrt(2.0) * se, within, within == 1 ? "" : "s",
                    within == 1 ? "is" : "are");
        }
    }
    free(rank);

    /* Speed to the target loss. */
    int fastest = -1;
    int64_t best_steps = 0;
    int never = 0;
    char never_names[512] = "";
    for (int i = 0; i < c->n_runs; i++) {
        em_diagnosis d;
        diagnose(c, &c->runs[i], &d);
        if (d.steps_to_target > 0 && (fastest < 0 || d.steps_to_target < best_steps)) {
            fastest = i;
            best_steps = d.steps_to_target;
        } else if (d.steps_to_target <= 0) {
            size_t len = strlen(never_names);
            snprintf(never_names + len, sizeof never_names - len, "%s%s", never ? ", " : "", c->runs[i].name);
            never++;
        }
    }
    if (fastest >= 0)
        fprintf(f, "- **Fastest to a training loss of %g**: %s, after %lld steps.", c->target_loss,
                c->runs[fastest].name, (long long)best_steps);
    else
        fprintf(f, "- No run brought its training loss to %g within the budget.", c->target_loss);
    if (fastest >= 0 && never)
        fprintf(f, " Never reached within the budget: %s.", never_names);
    fputc('\n', f);

    /* Wall time. */
    int quick = -1, slow = -1;
    for (int i = 0; i < c->n_runs; i++) {
        if (c->runs[i].failed)
            continue;
        if (quick < 0 || c->runs[i].seconds < c->runs[quick].seconds)
            quick = i;
        if (slow < 0 || c->runs[i].seconds > c->runs[slow].seconds)
            slow = i;
    }
    if (quick >= 0 && slow >= 0 && quick != slow)
        fprintf(f, "- **Time**: from %.1f s (%s) to %.1f s (%s).\n", c->runs[quick].seconds, c->runs[quick].name,
                c->runs[slow].seconds, c->runs[slow].name);

    /* Divergences and failures, each on its own line. */
    for (int i = 0; i < c->n_runs; i++) {
        const em_compare_run *r = &c->runs[i];
        if (r->history.diverged)
            fprintf(f, "- **%s diverged**: %s The comparison went on without it.\n", r->name, r->message);
        else if (r->failed)
            fprintf(f, "- **%s failed**: %s\n", r->name, r->message);
    }

    fprintf(f, "\n## Overfitting\n\n");
    for (int i = 0; i < c->n_runs; i++) {
        const em_compare_run *r = &c->runs[i];
        em_diagnosis d;
        diagnose(c, r, &d);
        fprintf(f, "- **%s**: %s.", r->name, r->failed ? "failed, nothing to judge" : d.verdict);
        if (run_ok(r) && isfinite(d.loss_gap))
            fprintf(f, " Final training loss %.4f against validation loss %.4f (gap %+.4f); training accuracy "
                       "%.2f%% against %.2f%%.",
                    d.final_train_loss, d.final_val_loss, d.loss_gap, 100.0 * d.final_train_accuracy,
                    100.0 * d.final_val_accuracy);
        if (r->history.restored_epoch)
            fprintf(f, " The weights of epoch %d were kept.", r->history.restored_epoch);
        fputc('\n', f);
    }
}

/* ---- learning curves -------------------------------------------------------------- */

static void write_learning_curves(FILE *f, const em_comparison *c)
{
    fprintf(f, "| model | training examples | epochs | steps | test accuracy | training accuracy (last epoch) "
               "| train − test accuracy | time | outcome |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int i = 0; i < c->n_runs; i++) {
        const em_compare_run *r = &c->runs[i];
        const em_train_history *h = &r->history;
        const em_epoch_record *last = h->n_epochs ? &h->epochs[h->n_epochs - 1] : NULL;
        char a[32], b[32], cell[600];
        em_diagnosis d;
        diagnose(c, r, &d);
        fprintf(f, "| **%s** | %lld | %d | %lld | %s | %s |", r->model, (long long)r->train_size, h->n_epochs,
                (long long)h->n_steps, percent(a, sizeof a, r->test_accuracy),
                percent(b, sizeof b, last ? last->train_accuracy : NAN));
        if (last && isfinite(r->test_accuracy))
            fprintf(f, " %+.2f points |", 100.0 * (last->train_accuracy - r->test_accuracy));
        else
            fprintf(f, " – |");
        fprintf(f, " %.1f s |", r->seconds);
        outcome(cell, sizeof cell, r, &d);
        put_cell(f, cell);
        fputc('\n', f);
    }

    fprintf(f, "\n## Findings\n\n");
    /* The distinct sizes, in order, and the leader at each. */
    int64_t sizes[64];
    int n_sizes = 0;
    for (int i = 0; i < c->n_runs && n_sizes < 64; i++) {
        bool seen = false;
        for (int k = 0; k < n_sizes; k++)
            seen |= sizes[k] == c->runs[i].train_size;
        if (!seen)
            sizes[n_sizes++] = c->runs[i].train_size;
    }
    for (int a = 0; a < n_sizes; a++)
        for (int b = a + 1; b < n_sizes; b++)
            if (sizes[b] < sizes[a]) {
                int64_t t = sizes[a];
                sizes[a] = sizes[b];
                sizes[b] = t;
            }
    const char *previous_leader = NULL;
    for (int k = 0; k < n_sizes; k++) {
        int leader = -1, trailer = -1;
        for (int i = 0; i < c->n_runs; i++) {
            const em_compare_run *r = &c->runs[i];
            if (r->train_size != sizes[k] || !isfinite(r->test_accuracy))
                continue;
            if (leader < 0 || r->test_accuracy > c->runs[leader].test_accuracy)
                leader = i;
            if (trailer < 0 || r->test_accuracy < c->runs[trailer].test_accuracy)
                trailer = i;
        }
        if (leader < 0)
            continue;
        const em_compare_run *L = &c->runs[leader];
        fprintf(f, "- **%lld examples**: %s leads with %.2f%%", (long long)sizes[k], L->model, 100.0 * L->test_accuracy);
        if (trailer != leader)
            fprintf(f, ", %.2f points ahead of %s", 100.0 * (L->test_accuracy - c->runs[trailer].test_accuracy),
                    c->runs[trailer].model);
        if (previous_leader && strcmp(previous_leader, L->model) != 0)
            fprintf(f, " (it overtakes %s here)", previous_leader);
        fprintf(f, ".\n");
        previous_leader = L->model;
    }
    /* Gain per model from the smallest to the largest size. */
    for (int i = 0; i < c->n_runs; i++) {
        const em_compare_run *r = &c->runs[i];
        bool first_of_model = true;
        for (int j = 0; j < i; j++)
            first_of_model &= strcmp(c->runs[j].model, r->model) != 0;
        if (!first_of_model)
            continue;
        const em_compare_run *small = NULL, *large = NULL;
        for (int j = 0; j < c->n_runs; j++) {
            const em_compare_run *s = &c->runs[j];
            if (strcmp(s->model, r->model) != 0 || !isfinite(s->test_accuracy))
                continue;
            if (!small || s->train_size < small->train_size)
                small = s;
            if (!large || s->train_size > large->train_size)
                large = s;
        }
        if (small && large && small != large)
            fprintf(f, "- %s: %.2f%% with %lld examples, %.2f%% with %lld (%+.2f points).\n", r->model,
                    100.0 * small->test_accuracy, (long long)small->train_size, 100.0 * large->test_accuracy,
                    (long long)large->train_size, 100.0 * (large->test_accuracy - small->test_accuracy));
    }
    for (int i = 0; i < c->n_runs; i++)
        if (!run_ok(&c->runs[i]))
            fprintf(f, "- **%s with %lld examples %s**: %s\n", c->runs[i].model, (long long)c->runs[i].train_size,
                    c->runs[i].failed ? "failed" : "diverged", c->runs[i].message);
}

int em_compare_write_report(const em_comparison *c, const char *path, const char *png_name)
{
    if (!c || !path)
        return em_error("compare report: no comparison or path");
    FILE *f = fopen(path, "w");
    if (!f)
        return em_error("cannot create the report %s: %s", path, strerror(errno));
    fprintf(f, "# %s\n\n", c->title ? c->title : "Comparison");
    if (c->setup)
        fprintf(f, "%s\n\n", c->setup);
    if (png_name)
        fprintf(f, "![%s](%s)\n\n", c->title ? c->title : "curves", png_name);
    if (c->axis == EM_COMPARE_TRAIN_SIZES) {
        write_learning_curves(f, c);
    } else {
        write_table(f, c);
        write_findings(f, c);
    }
    fprintf(f, "\n## How to read the figures\n\n");
    if (c->axis == EM_COMPARE_TRAIN_SIZES) {
        fprintf(f, "- Each model trains on nested random samples of the training data (a smaller sample is part "
                   "of every larger one) with the same seed and the same number of optimizer steps, then is "
                   "evaluated once on the whole test set.\n"
                   "- *Training accuracy* is measured on the last epoch's batches as they went by (dropout "
                   "active); its distance to the test accuracy shows how much of what was learnt does not "
                   "generalise.\n");
    } else {
        fprintf(f, "- *Validation accuracy* is measured after every epoch on a held-out part of the training "
                   "data; *best* is its highest value and the epoch it was reached.\n"
                   "- *Test accuracy* is measured once, at the end, on the weights the run kept.\n"
                   "- *Steps to loss ≤ %g*: the first step at which the mean of the last %lld batch losses was at "
                   "or below %g.\n"
                   "- *Final gradient norm*: the mean L2 norm of all gradients (before any clipping) over the "
                   "last %lld steps.\n"
                   "- *Train − validation accuracy*: the last epoch's accuracy on its training batches minus "
                   "its validation accuracy; a widening gap with a rising validation loss is overfitting.\n"
                   "- *Overfitting* is called when, after the epoch of the lowest validation loss, the "
                   "validation loss rose by more than 2%% (and more than %g) while the training loss kept "
                   "falling, for two epochs or more (or by more than 10%% in one). Early stopping with patience %d stops after %d epochs without an improvement of "
                   "the validation loss by more than %g, and keeps the best epoch's weights.\n"
                   "- A run whose loss becomes NaN or infinite stops there and is reported as diverged; the "
                   "other runs go on.\n",
                c->target_loss, (long long)c->window, c->target_loss, (long long)c->window, c->min_delta,
                c->patience, c->patience, c->min_delta);
    }
    int failed = ferror(f);
    failed |= fclose(f) != 0;
    if (failed)
        return em_error("writing the report %s failed", path);
    return EM_OK;
}
