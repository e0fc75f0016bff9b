/* The PNG of a comparison. For optimizers, activations and models, four panels with a
 * colour per run: validation accuracy per epoch; validation loss per epoch (solid)
 * against the training loss per epoch (dashed), where overfitting shows as the two
 * parting; the smoothed training loss per step; and the best validation accuracy of
 * each run as a bar with its time (a diverged run is named there in red). For learning
 * curves, two panels: test accuracy against the number of training examples (log
 * scale, a line per model) and the training accuracy beside it. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/compare.h"
#include "ember/error.h"
#include "train/plot_kit.h"

#define WIDTH 1280
#define HEIGHT 960

static const em_rgb ALERT = {0.80, 0.10, 0.10};

static int max_epochs(const em_comparison *c)
{
    int n = 1;
    for (int i = 0; i < c->n_runs; i++)
        if (c->runs[i].history.n_epochs > n)
            n = c->runs[i].history.n_epochs;
    return n;
}

/* Epoch numbers and one field of each epoch record, as doubles (malloc'd pair). */
static void epoch_series(const em_train_history *h, size_t field_offset, double scale, double *x, double *y)
{
    for (int e = 0; e < h->n_epochs; e++) {
        x[e] = h->epochs[e].epoch;
        y[e] = *(const double *)((const char *)&h->epochs[e] + field_offset) * scale;
    }
}

/* One key for every panel: a coloured line and the run's name per run, in rows under
 * the subtitle. Returns the height it took. */
static double run_key(cairo_t *cr, const em_comparison *c, double top)
{
    em_plot_font(cr, 13, true);
    double widths[64], total = 0;
    int n = c->n_runs < 64 ? c->n_runs : 64;
    for (int i = 0; i < n; i++) {
        cairo_text_extents_t e;
        cairo_text_extents(cr, c->runs[i].name, &e);
        widths[i] = 30 + e.x_advance + 22;
        total += widths[i];
    }
    const double max_row = WIDTH - 120, row_h = 20;
    /* Rows as even as the widths allow, each centred. */
    int rows = (int)ceil(total / max_row);
    double y = top, x = 0, row_start = 0;
    int i0 = 0;
    for (int i = 0; i <= n; i++) {
        bool end_row = i == n || (x + widths[i] > total / (rows > 0 ? rows : 1) + 60 && i > i0);
        if (end_row) {
            double left = (WIDTH - (x - row_start)) / 2.0, cx = left;
            for (int k = i0; k < i; k++) {
                em_plot_color(cr, em_plot_palette(k), 1);
                cairo_set_line_width(cr, 3);
                cairo_move_to(cr, cx, y + row_h / 2);
                cairo_line_to(cr, cx + 24, y + row_h / 2);
                cairo_stroke(cr);
                em_plot_color(cr, EM_PLOT_INK, 1);
                em_plot_text(cr, cx + 30, y + row_h / 2, 0.0, 0.5, c->runs[k].name);
                cx += widths[k];
            }
            if (i == n)
                break;
            y += row_h;
            row_start = x;
            i0 = i;
        }
        x += widths[i];
    }
    return y + row_h - top;
}

static void epoch_panel(cairo_t *cr, em_panel p, const em_comparison *c, bool accuracy)
{
    int epochs = max_epochs(c);
    double lo = INFINITY, hi = -INFINITY;
    double *x = malloc((size_t)epochs * sizeof *x), *y = malloc((size_t)epochs * sizeof *y);
    double *y2 = malloc((size_t)epochs * sizeof *y2);
    if (!x || !y || !y2) {
        free(x);
        free(y);
        free(y2);
        return;
    }
    size_t val_field = accuracy ? offsetof(em_epoch_record, val_accuracy) : offsetof(em_epoch_record, val_loss);
    double scale = accuracy ? 100.0 : 1.0;
    for (int i = 0; i < c->n_runs; i++) {
        const em_train_history *h = &c->runs[i].history;
        epoch_series(h, val_field, scale, x, y);
        if (!accuracy)
            epoch_series(h, offsetof(em_epoch_record, train_loss), 1.0, x, y2);
        for (int e = 0; e < h->n_epochs; e++) {
            if (isfinite(y[e])) {
                lo = fmin(lo, y[e]);
                hi = fmax(hi, y[e]);
            }
            if (!accuracy && isfinite(y2[e])) {
                lo = fmin(lo, y2[e]);
                hi = fmax(hi, y2[e]);
            }
        }
    }
    p.x0 = 0.5;
    p.x1 = epochs + 0.5;
    p.integer_x = true;
    p.percent_y = accuracy;
    const char *heading = accuracy ? "Validation accuracy per epoch" : "Loss per epoch: validation against training";
    const char *ylabel = accuracy ? "validation accuracy" : "cross-entropy loss (nats)";
    if (!isfinite(lo)) {
        p.y0 = 0;
        p.y1 = accuracy ? 100 : 1;
        em_plot_axes(cr, &p, "epoch", ylabel, heading);
        em_plot_note(cr, &p, "no validation figures (no complete epoch)");
    } else {
        if (accuracy) {
            /* Runs far behind the others (a diverged one at chance) may leave the panel
             * rather than squeeze the rest into a band. */
            double span = fmax(hi - lo, 4.0);
            p.y0 = fmax(0.0, lo - span * 0.15);
            p.y1 = fmin(100.0, hi + span * 0.15);
        } else {
            p.y0 = 0.0;
            p.y1 = fmin(hi, 3.0 * lo + 1.0) * 1.1;
        }
        em_plot_axes(cr, &p, "epoch", ylabel, heading);
        for (int i = 0; i < c->n_runs; i++) {
            const em_train_history *h = &c->runs[i].history;
            epoch_series(h, val_field, scale, x, y);
            em_plot_line(cr, &p, x, y, h->n_epochs, em_plot_palette(i), 1.0, 2.2, false);
            em_plot_markers(cr, &p, x, y, h->n_epochs, em_plot_palette(i), 3.5);
            if (!accuracy) {
                epoch_series(h, offsetof(em_epoch_record, train_loss), 1.0, x, y2);
                em_plot_line(cr, &p, x, y2, h->n_epochs, em_plot_palette(i), 0.9, 1.6, true);
            }
        }
        if (!accuracy) {
            em_legend_item items[2] = {{"validation", EM_PLOT_MUTED, 1.0, 2.2, true, false},
                                       {"training (epoch mean)", EM_PLOT_MUTED, 1.0, 1.6, false, true}};
            em_plot_legend(cr, &p, items, 2, EM_LEGEND_BEST);
        }
    }
    free(x);
    free(y);
    free(y2);
}

static void step_panel(cairo_t *cr, em_panel p, const em_comparison *c)
{
    int64_t steps = 1;
    for (int i = 0; i < c->n_runs; i++) {
        const em_train_history *h = &c->runs[i].history;
        if (h->n_steps > steps)
            steps = h->n_steps;
    }
    double *x = malloc((size_t)steps * sizeof *x), *y = malloc((size_t)steps * sizeof *y);
    double *smooth = malloc((size_t)steps * sizeof *smooth);
    double **all = calloc((size_t)c->n_runs + 1, sizeof *all);
    if (!x || !y || !smooth || !all) {
        free(x);
        free(y);
        free(smooth);
        free(all);
        return;
    }
    int64_t window = steps / 40 < 1 ? 1 : steps / 40 > 100 ? 100 : steps / 40;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < c->n_runs; i++) {
        const em_train_history *h = &c->runs[i].history;
        all[i] = malloc((size_t)(h->n_steps ? h->n_steps : 1) * sizeof(double));
        if (!all[i])
            continue;
        for (int64_t s = 0; s < h->n_steps; s++)
            y[s] = h->steps[s].loss;
        em_plot_moving_average(y, h->n_steps, window, all[i]);
        /* The range follows the curves after their first few steps: the very first losses
         * (and an optimizer's first wild steps) may leave the panel at the top rather
         * than flatten the part where the runs differ. */
        int64_t skip = h->n_steps / 50 > window / 2 ? h->n_steps / 50 : window / 2;
        for (int64_t s = 0; s < h->n_steps; s++)
            if (isfinite(all[i][s])) {
                lo = fmin(lo, all[i][s]);
                if (s >= skip || h->n_steps <= 2 * skip)
                    hi = fmax(hi, all[i][s]);
            }
    }
    p.x0 = 0;
    p.x1 = (double)steps;
    p.integer_x = true;
    p.y0 = 0;
    /* A bad run's loss can be huge; keep the others readable. */
    double cap = isfinite(lo) ? 4.0 * lo + 2.5 : 1.0;
    p.y1 = isfinite(hi) ? fmin(hi, cap) * 1.15 : 1.0;
    char ylabel[96];
    if (window > 1)
        snprintf(ylabel, sizeof ylabel, "training loss, mean of %lld steps (nats)", (long long)window);
    else
        snprintf(ylabel, sizeof ylabel, "training loss per batch (nats)");
    em_plot_axes(cr, &p, "training step (one batch each)", ylabel, "Training loss per step");
    for (int i = 0; i < c->n_runs; i++) {
        const em_train_history *h = &c->runs[i].history;
        if (!all[i])
            continue;
        for (int64_t s = 0; s < h->n_steps; s++)
            x[s] = (double)h->steps[s].step;
        em_plot_line(cr, &p, x, all[i], h->n_steps, em_plot_palette(i), 1.0, 2.0, false);
        if (h->diverged && h->n_steps > 0) {
            /* A red cross where the run stopped, at the top edge if its loss left the panel. */
            double last_finite = NAN;
            for (int64_t s = h->n_steps - 1; s >= 0 && !isfinite(last_finite); s--)
                last_finite = all[i][s];
            double cy = isfinite(last_finite) ? fmin(em_plot_y(&p, fmin(last_finite, p.y1)), p.top + p.height)
                                              : p.top + 8;
            double cx = em_plot_x(&p, (double)h->diverged_step);
            em_plot_color(cr, ALERT, 1);
            cairo_set_line_width(cr, 2.5);
            cairo_move_to(cr, cx - 6, cy - 6);
            cairo_line_to(cr, cx + 6, cy + 6);
            cairo_move_to(cr, cx + 6, cy - 6);
            cairo_line_to(cr, cx - 6, cy + 6);
            cairo_stroke(cr);
        }
        free(all[i]);
    }
    free(all);
    free(x);
    free(y);
    free(smooth);
}

/* One horizontal bar per run: its best validation accuracy, with the time it took. */
static void bar_panel(cairo_t *cr, em_panel p, const em_comparison *c)
{
    double lo = INFINITY, hi = -INFINITY;
    double *best = malloc((size_t)(c->n_runs ? c->n_runs : 1) * sizeof *best);
    if (!best)
        return;
    for (int i = 0; i < c->n_runs; i++) {
        em_diagnosis d;
        em_history_diagnose(&c->runs[i].history, c->patience, c->min_delta, c->target_loss, c->window, &d);
        best[i] = c->runs[i].failed ? NAN : 100.0 * d.best_val_accuracy;
        if (isfinite(best[i])) {
            lo = fmin(lo, best[i]);
            hi = fmax(hi, best[i]);
        }
    }
    /* The bars start at a round value below the lowest so that differences show; the
     * axis says where they start. */
    double span = isfinite(lo) ? fmax(hi - lo, 2.0) : 100.0;
    p.x0 = isfinite(lo) ? fmax(0.0, floor((lo - span * 0.6) / 5.0) * 5.0) : 0.0;
    /* Room right of the longest bar for its label. */
    p.x1 = isfinite(hi) ? fmin(100.0, hi + (hi - p.x0) * 0.4) : 100.0;
    if (p.x1 <= p.x0)
        p.x1 = p.x0 + 1.0;
    p.y0 = 0;
    p.y1 = c->n_runs > 0 ? c->n_runs : 1;
    p.no_y_ticks = true;
    em_plot_axes(cr, &p, "best validation accuracy (%)", "", "Best validation accuracy and time per run");
    double row = p.height / (p.y1 - p.y0);
    double bar = fmin(row * 0.62, 28.0);
    for (int i = 0; i < c->n_runs; i++) {
        double cy = p.top + row * (i + 0.5);
        const em_compare_run *r = &c->runs[i];
        em_plot_font(cr, 12, true);
        em_plot_color(cr, EM_PLOT_INK, 1);
        em_plot_text(cr, p.left - 8, cy, 1.0, 0.5, r->name);
        char label[160];
        if (isfinite(best[i])) {
            double x1 = em_plot_x(&p, fmin(best[i], p.x1));
            em_plot_color(cr, em_plot_palette(i), 0.85);
            cairo_rectangle(cr, p.left + 1, cy - bar / 2, fmax(x1 - p.left - 1, 1.0), bar);
            cairo_fill(cr);
            snprintf(label, sizeof label, "%.2f%%   %.1f s%s", best[i], r->seconds,
                     r->history.diverged ? "   (then diverged)" : "");
            em_plot_font(cr, 11, true);
            cairo_text_extents_t e;
            cairo_text_extents(cr, label, &e);
            if (x1 + 6 + e.x_advance < p.left + p.width - 4) {
                em_plot_color(cr, EM_PLOT_INK, 1);
                em_plot_text(cr, x1 + 6, cy, 0.0, 0.5, label);
            } else {
                /* No room right of the bar: white on the bar's end. */
                cairo_set_source_rgb(cr, 1, 1, 1);
                em_plot_text(cr, x1 - 6, cy, 1.0, 0.5, label);
            }
        } else {
            if (r->history.diverged)
                snprintf(label, sizeof label, "diverged at step %lld (loss not finite)", (long long)r->history.diverged_step);
            else
                snprintf(label, sizeof label, "%s", r->failed ? "failed (see the report)" : "no validation figure");
            em_plot_font(cr, 12, true);
            em_plot_color(cr, ALERT, 1);
            em_plot_text(cr, p.left + 8, cy, 0.0, 0.5, label);
        }
    }
    free(best);
}

/* ---- learning curves -------------------------------------------------------------- */

static void curve_panel(cairo_t *cr, em_panel p, const em_comparison *c, bool training)
{
    int64_t smallest = 0, largest = 0;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < c->n_runs; i++) {
        const em_compare_run *r = &c->runs[i];
        const em_train_history *h = &r->history;
        double v = training ? (h->n_epochs ? h->epochs[h->n_epochs - 1].train_accuracy : NAN) : r->test_accuracy;
        if (!smallest || r->train_size < smallest)
            smallest = r->train_size;
        if (r->train_size > largest)
            largest = r->train_size;
        if (isfinite(v)) {
            lo = fmin(lo, 100.0 * v);
            hi = fmax(hi, 100.0 * v);
        }
    }
    p.log_x = true;
    p.x0 = smallest > 0 ? smallest / 1.5 : 1.0;
    p.x1 = largest > 0 ? largest * 1.5 : 10.0;
    p.percent_y = true;
    double span = isfinite(lo) ? fmax(hi - lo, 4.0) : 100.0;
    p.y0 = isfinite(lo) ? fmax(0.0, lo - span * 0.15) : 0.0;
    p.y1 = isfinite(hi) ? fmin(100.0, hi + span * 0.15) : 100.0;
    em_plot_axes(cr, &p, "training examples (log scale)", training ? "training accuracy (last epoch)" : "test accuracy",
                 training ? "Training accuracy against training-set size" : "Test accuracy against training-set size");
    /* One line per model, in the order models first appear; the test accuracies are
     * written above their points, pushed apart where several share a size. */
    struct {
        double x, y, value;
    } labels[64];
    int n_labels = 0;
    int color = 0;
    em_legend_item items[16];
    int n_items = 0;
    double x[64], y[64];
    for (int i = 0; i < c->n_runs; i++) {
        bool first = true;
        for (int j = 0; j < i; j++)
            first &= strcmp(c->runs[j].model, c->runs[i].model) != 0;
        if (!first)
            continue;
        int n = 0;
        for (int j = 0; j < c->n_runs && n < 64; j++) {
            const em_compare_run *r = &c->runs[j];
            if (strcmp(r->model, c->runs[i].model) != 0)
                continue;
            const em_train_history *h = &r->history;
            x[n] = (double)r->train_size;
            y[n] = 100.0 * (training ? (h->n_epochs ? h->epochs[h->n_epochs - 1].train_accuracy : NAN)
                                     : r->test_accuracy);
            n++;
        }
        em_rgb col = em_plot_palette(color);
        em_plot_line(cr, &p, x, y, n, col, 1.0, 2.4, false);
        em_plot_markers(cr, &p, x, y, n, col, 5.0);
        for (int k = 0; !training && k < n && n_labels < 64; k++)
            if (isfinite(y[k])) {
                labels[n_labels].x = em_plot_x(&p, x[k]);
                labels[n_labels].y = em_plot_y(&p, y[k]);
                labels[n_labels].value = y[k];
                n_labels++;
            }
        if (n_items < 16)
            items[n_items++] = (em_legend_item){c->runs[i].model, col, 1.0, 2.4, true, false};
        color++;
    }
    for (int a = 0; a < n_labels; a++) /* by size, then from the top */
        for (int b = a + 1; b < n_labels; b++)
            if (labels[b].x < labels[a].x - 1 || (fabs(labels[b].x - labels[a].x) <= 1 && labels[b].y < labels[a].y)) {
                double tx = labels[a].x, ty = labels[a].y, tv = labels[a].value;
                labels[a] = labels[b];
                labels[b].x = tx, labels[b].y = ty, labels[b].value = tv;
            }
    em_plot_font(cr, 11, true);
    double previous_x = -1e9, previous_bottom = -1e9;
    for (int k = 0; k < n_labels; k++) {
        double bottom = labels[k].y - 8; /* the label's baseline, above the point */
        if (fabs(labels[k].x - previous_x) <= 1 && bottom < previous_bottom + 13)
            bottom = previous_bottom + 13;
        char text[32];
        snprintf(text, sizeof text, "%.1f%%", labels[k].value);
        /* Pushed down past its own point: write it to the right instead. */
        double lx = labels[k].x, ax = 0.5;
        if (bottom > labels[k].y - 4) {
            lx += 8;
            ax = 0.0;
        }
        em_plot_text_halo(cr, lx, bottom, ax, 1.0, text);
        previous_x = labels[k].x;
        previous_bottom = bottom;
    }
    em_plot_legend(cr, &p, items, n_items, EM_LEGEND_BEST);
}

int em_compare_plot(const em_comparison *c, const char *path)
{
    if (!c || !path)
        return em_error("compare plot: no comparison or path");
    char subtitle[160];
    snprintf(subtitle, sizeof subtitle, "%d run%s, one %s each; same data, seed, data order and budget", c->n_runs,
             c->n_runs == 1 ? "" : "s", em_compare_axis_name(c->axis));
    bool curves = c->axis == EM_COMPARE_TRAIN_SIZES;
    /* The run key takes one row per ~1100 pixels of names; the canvas grows with it. */
    double key_rows_h = 0;
    if (!curves) {
        cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 8, 8);
        cairo_t *pc = cairo_create(probe);
        key_rows_h = run_key(pc, c, 0);
        cairo_destroy(pc);
        cairo_surface_destroy(probe);
    }
    double shift = curves ? 0 : key_rows_h + 14;
    cairo_t *cr = em_plot_begin(WIDTH, (int)((curves ? 600 : HEIGHT) + shift), c->title, subtitle);
    if (!cr)
        return em_error_prefix("plot %s: ", path);
    if (curves) {
        curve_panel(cr, (em_panel){.left = 105, .top = 110, .width = 510, .height = 390}, c, false);
        curve_panel(cr, (em_panel){.left = 735, .top = 110, .width = 510, .height = 390}, c, true);
    } else {
        run_key(cr, c, 70);
        epoch_panel(cr, (em_panel){.left = 105, .top = 110 + shift, .width = 510, .height = 340}, c, true);
        epoch_panel(cr, (em_panel){.left = 735, .top = 110 + shift, .width = 510, .height = 340}, c, false);
        step_panel(cr, (em_panel){.left = 105, .top = 560 + shift, .width = 510, .height = 320}, c);
        bar_panel(cr, (em_panel){.left = 735, .top = 560 + shift, .width = 510, .height = 320}, c);
    }
    return em_plot_finish(cr, path);
}
