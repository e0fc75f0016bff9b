/* The training plot: a PNG of four panels drawn from the run's history. Top left, the
 * loss of every step (faint) with a moving average (bold) and the validation and test
 * losses at each epoch's end; top right, training, validation and test accuracy per
 * epoch; bottom, the learning rate and the gradient norm of every step. The best
 * validation epoch (when early stopping keeps its weights) and a divergence are marked.
 * Every axis has round-number ticks, a label with its unit and a legend, so that the
 * plot reads without the command that made it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "train/plot_kit.h"
#include "train/train_internal.h"

#define WIDTH 1280
#define HEIGHT 940

static const em_rgb LOSS = {0.12, 0.35, 0.70};
static const em_rgb VAL = {0.90, 0.45, 0.05};
static const em_rgb TEST = {0.55, 0.25, 0.65};
static const em_rgb LR = {0.10, 0.55, 0.30};
static const em_rgb NORM = {0.60, 0.30, 0.20};
static const em_rgb ALERT = {0.80, 0.10, 0.10};

/* The per-step and per-epoch series of a history, as doubles. */
typedef struct series {
    int64_t n;
    double *step, *loss, *lr, *norm, *smooth;
    int epochs;
    double *epoch_step, *epoch_no, *val_loss, *test_loss, *train_acc, *val_acc, *test_acc;
} series;

static void free_series(series *s)
{
    double *all[] = {s->step, s->loss, s->lr, s->norm, s->smooth, s->epoch_step, s->epoch_no,
                     s->val_loss, s->test_loss, s->train_acc, s->val_acc, s->test_acc};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

static int64_t smoothing_window(int64_t n)
{
    int64_t w = n / 40 < 1 ? 1 : n / 40;
    return w > 200 ? 200 : w;
}

static bool make_series(const em_train_history *h, series *s)
{
    memset(s, 0, sizeof *s);
    int64_t n = h->n_steps, e = h->n_epochs;
    s->n = n;
    s->epochs = (int)e;
    size_t sn = (size_t)(n ? n : 1), se = (size_t)(e ? e : 1);
    double **step_arrays[] = {&s->step, &s->loss, &s->lr, &s->norm, &s->smooth};
    double **epoch_arrays[] = {&s->epoch_step, &s->epoch_no, &s->val_loss, &s->test_loss,
                               &s->train_acc, &s->val_acc, &s->test_acc};
    bool ok = true;
    for (size_t i = 0; i < 5; i++)
        ok &= (*step_arrays[i] = malloc(sn * sizeof(double))) != NULL;
    for (size_t i = 0; i < 7; i++)
        ok &= (*epoch_arrays[i] = malloc(se * sizeof(double))) != NULL;
    if (!ok) {
        free_series(s);
        return false;
    }
    for (int64_t i = 0; i < n; i++) {
        const em_step_record *r = &h->steps[i];
        s->step[i] = (double)r->step;
        s->loss[i] = r->loss;
        s->lr[i] = r->lr;
        s->norm[i] = r->grad_norm;
    }
    em_plot_moving_average(s->loss, n, smoothing_window(n), s->smooth);
    for (int64_t i = 0; i < e; i++) {
        const em_epoch_record *r = &h->epochs[i];
        s->epoch_step[i] = (double)r->steps;
        s->epoch_no[i] = r->epoch;
        s->val_loss[i] = r->val_loss;
        s->test_loss[i] = r->test_loss;
        s->train_acc[i] = r->train_accuracy * 100.0;
        s->val_acc[i] = r->val_accuracy * 100.0;
        s->test_acc[i] = r->test_accuracy * 100.0;
    }
    return true;
}

static bool any_finite(const double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (isfinite(v[i]))
            return true;
    return false;
}

/* A dashed vertical line across the panel with a label at its top. */
static void vertical_marker(cairo_t *cr, const em_panel *p, double x, em_rgb c, const char *label)
{
    double sx = round(em_plot_x(p, x)) + 0.5;
    if (sx < p->left || sx > p->left + p->width)
        return;
    const double dash[] = {4, 3};
    cairo_set_dash(cr, dash, 2, 0);
    em_plot_color(cr, c, 0.9);
    cairo_set_line_width(cr, 1.5);
    cairo_move_to(cr, sx, p->top);
    cairo_line_to(cr, sx, p->top + p->height);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    em_plot_font(cr, 11, true);
    bool right_half = sx > p->left + p->width * 0.6;
    em_plot_text_halo(cr, sx + (right_half ? -4 : 4), p->top + 6, right_half ? 1.0 : 0.0, 0.0, label);
}

static void epoch_boundaries(cairo_t *cr, const em_panel *p, const series *s)
{
    if (s->epochs < 2 || s->epochs > 20)
        return;
    const double dash[] = {2, 4};
    cairo_set_dash(cr, dash, 2, 0);
    em_plot_color(cr, EM_PLOT_MUTED, 0.5);
    cairo_set_line_width(cr, 1);
    for (int e = 0; e + 1 < s->epochs; e++) {
        double x = round(em_plot_x(p, s->epoch_step[e])) + 0.5;
        cairo_move_to(cr, x, p->top);
        cairo_line_to(cr, x, p->top + p->height);
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
}

static void run_markers(cairo_t *cr, const em_panel *p, const em_train_history *h, const series *s, bool per_step)
{
    if (h->restored_epoch > 0) {
        char label[64];
        snprintf(label, sizeof label, "best epoch %d (weights kept)", h->restored_epoch);
        for (int e = 0; e < s->epochs; e++)
            if ((int)s->epoch_no[e] == h->restored_epoch)
                vertical_marker(cr, p, per_step ? s->epoch_step[e] : s->epoch_no[e], VAL, label);
    }
    if (h->diverged) {
        char label[64];
        snprintf(label, sizeof label, "diverged at step %lld", (long long)h->diverged_step);
        vertical_marker(cr, p, per_step ? (double)h->diverged_step : h->diverged_epoch, ALERT, label);
    }
}

static double first_step(const series *s) { return s->n ? s->step[0] - 1 : 0; }
static double last_step(const series *s) { return s->n ? s->step[s->n - 1] : 1; }

static void loss_panel(cairo_t *cr, em_panel p, const em_train_history *h, const series *s)
{
    double lo, hi;
    em_plot_robust_range(s->loss, s->n, 0.005, &lo, &hi);
    for (int64_t i = 0; i < s->n; i++)
        if (isfinite(s->smooth[i]))
            hi = fmax(hi, s->smooth[i]);
    for (int e = 0; e < s->epochs; e++) {
        if (isfinite(s->val_loss[e]))
            hi = fmax(hi, s->val_loss[e]);
        if (isfinite(s->test_loss[e]))
            hi = fmax(hi, s->test_loss[e]);
    }
    p.x0 = first_step(s);
    p.x1 = fmax(last_step(s), p.x0 + 1);
    p.y0 = lo >= 0.0 ? 0.0 : lo * 1.05;
    p.y1 = hi > 0.0 ? hi * 1.08 : 1.0;
    p.integer_x = true;
    em_plot_axes(cr, &p, "training step (one batch each)", "cross-entropy loss (nats)", "Loss");
    epoch_boundaries(cr, &p, s);
    em_plot_line(cr, &p, s->step, s->loss, s->n, LOSS, 0.25, 1.0, false);
    em_plot_line(cr, &p, s->step, s->smooth, s->n, LOSS, 1.0, 2.2, false);
    bool val = any_finite(s->val_loss, s->epochs), test = any_finite(s->test_loss, s->epochs);
    if (val) {
        em_plot_line(cr, &p, s->epoch_step, s->val_loss, s->epochs, VAL, 1.0, 2.0, false);
        em_plot_markers(cr, &p, s->epoch_step, s->val_loss, s->epochs, VAL, 4.5);
    }
    if (test)
        em_plot_markers(cr, &p, s->epoch_step, s->test_loss, s->epochs, TEST, 4.0);
    run_markers(cr, &p, h, s, true);
    char smooth_label[64];
    snprintf(smooth_label, sizeof smooth_label, "training, mean of %lld steps", (long long)smoothing_window(s->n));
    em_legend_item items[4] = {{"training, each batch", LOSS, 0.35, 1.0, false, false},
                               {smooth_label, LOSS, 1.0, 2.2, false, false}};
    int n = 2;
    if (val)
        items[n++] = (em_legend_item){"validation (end of epoch)", VAL, 1.0, 2.0, true, false};
    if (test)
        items[n++] = (em_legend_item){"test (end of epoch)", TEST, 1.0, 0.0, true, false};
    em_plot_legend(cr, &p, items, n, EM_LEGEND_BEST);
}

static void accuracy_panel(cairo_t *cr, em_panel p, const em_train_history *h, const series *s)
{
    double lo = INFINITY, hi = -INFINITY;
    const double *curves[3] = {s->train_acc, s->val_acc, s->test_acc};
    for (int c = 0; c < 3; c++)
        for (int e = 0; e < s->epochs; e++)
            if (isfinite(curves[c][e])) {
                lo = fmin(lo, curves[c][e]);
                hi = fmax(hi, curves[c][e]);
            }
    p.x0 = s->epochs ? s->epoch_no[0] - 0.5 : 0.5;
    p.x1 = s->epochs ? s->epoch_no[s->epochs - 1] + 0.5 : 1.5;
    p.integer_x = true;
    p.percent_y = true;
    if (!isfinite(lo)) {
        p.y0 = 0;
        p.y1 = 100;
        em_plot_axes(cr, &p, "epoch", "accuracy", "Accuracy per epoch");
        em_plot_note(cr, &p, s->epochs ? "no accuracy recorded" : "no complete epoch");
        return;
    }
    double span = fmax(hi - lo, 4.0);
    p.y0 = fmax(0.0, lo - span * 0.3);
    p.y1 = fmin(100.0, hi + span * 0.3);
    if (p.y1 - p.y0 < 1.0)
        p.y0 = p.y1 - 1.0;
    em_plot_axes(cr, &p, "epoch", "accuracy", "Accuracy per epoch");
    static const em_rgb colors[3] = {{0.12, 0.35, 0.70}, {0.90, 0.45, 0.05}, {0.55, 0.25, 0.65}};
    static const char *const labels[3] = {"training batches", "validation", "test"};
    em_legend_item items[3];
    int n = 0;
    /* The last value of each curve beside its point, pushed apart when they would
     * overlap. */
    double label_y[3], label_x[3], label_v[3];
    int labels_n = 0;
    for (int c = 0; c < 3; c++) {
        if (!any_finite(curves[c], s->epochs))
            continue;
        em_plot_line(cr, &p, s->epoch_no, curves[c], s->epochs, colors[c], 1.0, 2.0, c == 0);
        em_plot_markers(cr, &p, s->epoch_no, curves[c], s->epochs, colors[c], 4.0);
        items[n++] = (em_legend_item){labels[c], colors[c], 1.0, 2.0, true, c == 0};
        for (int e = s->epochs - 1; e >= 0; e--)
            if (isfinite(curves[c][e])) {
                label_x[labels_n] = em_plot_x(&p, s->epoch_no[e]) - 8;
                label_y[labels_n] = em_plot_y(&p, curves[c][e]) - 6;
                label_v[labels_n] = curves[c][e];
                labels_n++;
                break;
            }
    }
    for (int a = 0; a < labels_n; a++) /* top to bottom */
        for (int b = a + 1; b < labels_n; b++)
            if (label_y[b] < label_y[a]) {
                double t = label_y[a], u = label_x[a], v = label_v[a];
                label_y[a] = label_y[b], label_x[a] = label_x[b], label_v[a] = label_v[b];
                label_y[b] = t, label_x[b] = u, label_v[b] = v;
            }
    for (int k = 1; k < labels_n; k++)
        if (label_y[k] - label_y[k - 1] < 14)
            label_y[k] = label_y[k - 1] + 14;
    em_plot_font(cr, 11, true);
    for (int k = 0; k < labels_n; k++) {
        char label[32];
        snprintf(label, sizeof label, "%.2f%%", label_v[k]);
        em_plot_text_halo(cr, label_x[k], label_y[k], 1.0, 1.0, label);
    }
    run_markers(cr, &p, h, s, false);
    em_plot_legend(cr, &p, items, n, EM_LEGEND_BEST);
}

static void lr_panel(cairo_t *cr, em_panel p, const em_train_history *h, const series *s)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < s->n; i++)
        if (isfinite(s->lr[i]) && s->lr[i] > 0) {
            lo = fmin(lo, s->lr[i]);
            hi = fmax(hi, s->lr[i]);
        }
    p.x0 = first_step(s);
    p.x1 = fmax(last_step(s), p.x0 + 1);
    p.integer_x = true;
    if (!isfinite(lo)) {
        p.y0 = 0;
        p.y1 = 1;
        em_plot_axes(cr, &p, "training step", "learning rate", "Learning rate");
        em_plot_note(cr, &p, "no learning rate recorded");
        return;
    }
    /* A log axis for multiplicative decays (the rate spans a factor of 20 to 10^4); a
     * cosine down to almost nothing reads better on a linear one. */
    p.log_y = hi / lo > 20.0 && hi / lo < 1e4;
    if (p.log_y) {
        p.y0 = pow(10.0, floor(log10(lo)));
        p.y1 = pow(10.0, ceil(log10(hi)));
    } else {
        p.y0 = 0.0;
        p.y1 = hi * 1.15;
    }
    em_plot_axes(cr, &p, "training step", p.log_y ? "learning rate (log scale)" : "learning rate", "Learning rate");
    em_plot_line(cr, &p, s->step, s->lr, s->n, LR, 1.0, 2.2, false);
    run_markers(cr, &p, h, s, true);
}

static void norm_panel(cairo_t *cr, em_panel p, const em_train_history *h, const series *s)
{
    p.x0 = first_step(s);
    p.x1 = fmax(last_step(s), p.x0 + 1);
    p.integer_x = true;
    if (!any_finite(s->norm, s->n)) {
        p.y0 = 0;
        p.y1 = 1;
        em_plot_axes(cr, &p, "training step", "L2 norm of all gradients", "Gradient norm (before clipping)");
        em_plot_note(cr, &p, "no gradient norm recorded");
        return;
    }
    double *smooth = malloc((size_t)(s->n ? s->n : 1) * sizeof *smooth);
    if (!smooth)
        return;
    em_plot_moving_average(s->norm, s->n, smoothing_window(s->n), smooth);
    double lo, hi;
    em_plot_robust_range(s->norm, s->n, 0.01, &lo, &hi);
    p.y0 = 0.0;
    p.y1 = hi > 0 ? hi * 1.1 : 1.0;
    em_plot_axes(cr, &p, "training step", "L2 norm of all gradients", "Gradient norm (before clipping)");
    em_plot_line(cr, &p, s->step, s->norm, s->n, NORM, 0.25, 1.0, false);
    em_plot_line(cr, &p, s->step, smooth, s->n, NORM, 1.0, 2.2, false);
    run_markers(cr, &p, h, s, true);
    em_legend_item items[2] = {{"each step", NORM, 0.35, 1.0, false, false}, {"moving average", NORM, 1.0, 2.2, false, false}};
    em_plot_legend(cr, &p, items, 2, EM_LEGEND_BEST);
    free(smooth);
}

int em_plot_training(const char *path, const em_plot_data *d)
{
    const em_train_history *h = d->history;
    if (!h)
        return em_error("plot %s: no history to draw", path);
    series s;
    if (!make_series(h, &s))
        return em_error("plot %s: out of memory", path);
    cairo_t *cr = em_plot_begin(WIDTH, HEIGHT, d->title ? d->title : "Training", d->subtitle);
    if (!cr) {
        free_series(&s);
        return em_error_prefix("plot %s: ", path);
    }
    const double left = 105, mid = 735, top = 110, bottom = 560, wide = 560, narrow = 450, tall = 330, short_h = 280;
    loss_panel(cr, (em_panel){.left = left, .top = top, .width = wide, .height = tall}, h, &s);
    accuracy_panel(cr, (em_panel){.left = mid + 70, .top = top, .width = narrow - 10, .height = tall}, h, &s);
    lr_panel(cr, (em_panel){.left = left, .top = bottom + 30, .width = wide, .height = short_h}, h, &s);
    norm_panel(cr, (em_panel){.left = mid + 70, .top = bottom + 30, .width = narrow - 10, .height = short_h}, h, &s);
    free_series(&s);
    return em_plot_finish(cr, path);
}
