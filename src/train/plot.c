/* The training plot: a PNG with two panels. Left, the loss of every step (faint) with a
 * moving average over it (bold) and the test loss at each epoch's end; right, the test
 * accuracy per epoch. Both with ticks at round numbers, axis labels with units, a
 * legend and a title, so that it reads without the command that made it. */
#include <cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "train/train_internal.h"

#define WIDTH 1280
#define HEIGHT 560

typedef struct rgb {
    double r, g, b;
} rgb;

static const rgb INK = {0.13, 0.13, 0.15};
static const rgb MUTED = {0.40, 0.40, 0.44};
static const rgb GRID = {0.88, 0.88, 0.90};
static const rgb LOSS = {0.12, 0.35, 0.70};
static const rgb TEST = {0.90, 0.45, 0.05};
static const rgb ACCURACY = {0.10, 0.55, 0.30};

/* A panel: its rectangle on the canvas and the data range it shows. */
typedef struct panel {
    double left, top, width, height;
    double x0, x1, y0, y1;
} panel;

static double px(const panel *p, double x) { return p->left + (x - p->x0) / (p->x1 - p->x0) * p->width; }
static double py(const panel *p, double y) { return p->top + p->height - (y - p->y0) / (p->y1 - p->y0) * p->height; }

static void set_color(cairo_t *cr, rgb c, double alpha) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

static void font(cairo_t *cr, double size, bool bold)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* Text anchored by (ax, ay) in [0,1]: 0 = left/top, 0.5 = centre, 1 = right/bottom. */
static void text_at(cairo_t *cr, double x, double y, double ax, double ay, const char *s)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
    cairo_show_text(cr, s);
}

/* Ink text on a white outline, legible where a line crosses it. */
static void text_with_halo(cairo_t *cr, double x, double y, double ax, double ay, const char *s)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_new_path(cr);
    cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
    cairo_text_path(cr, s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_set_line_width(cr, 3.5);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_stroke_preserve(cr);
    set_color(cr, INK, 1);
    cairo_fill(cr);
}

/* A round tick step (1, 2 or 5 times a power of ten) giving about `want` ticks. */
static double tick_step(double lo, double hi, int want)
{
    double rough = (hi - lo) / want;
    if (!(rough > 0.0))
        return 1.0;
    double mag = pow(10.0, floor(log10(rough)));
    double r = rough / mag;
    return (r < 1.5 ? 1.0 : r < 3.5 ? 2.0 : r < 7.5 ? 5.0 : 10.0) * mag;
}

static void format_tick(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-6)
        v = 0.0;
    if (fabs(v) >= 1e5 || step >= 1.0) {
        if (fabs(v) >= 1e6)
            snprintf(buf, cap, "%.3gM", v / 1e6);
        else if (fabs(v) >= 1e4 && fmod(v, 1000.0) == 0.0)
            snprintf(buf, cap, "%.0fk", v / 1e3);
        else
            snprintf(buf, cap, "%.0f", v);
    } else {
        int decimals = (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, cap, "%.*f", decimals < 0 ? 0 : decimals, v);
    }
}

/* Frame, grid, ticks and tick labels. integer_x: only whole numbers on x (epochs). */
static void draw_axes(cairo_t *cr, const panel *p, bool integer_x, const char *xlabel, const char *ylabel,
                      const char *heading)
{
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, p->left, p->top, p->width, p->height);
    cairo_fill(cr);

    font(cr, 12, false);
    double ys = tick_step(p->y0, p->y1, 6);
    for (double v = ceil(p->y0 / ys) * ys; v <= p->y1 + ys * 1e-9; v += ys) {
        double y = py(p, v);
        set_color(cr, GRID, 1);
        cairo_set_line_width(cr, 1);
        cairo_move_to(cr, p->left, round(y) + 0.5);
        cairo_line_to(cr, p->left + p->width, round(y) + 0.5);
        cairo_stroke(cr);
        set_color(cr, INK, 1);
        cairo_move_to(cr, p->left - 5, round(y) + 0.5);
        cairo_line_to(cr, p->left, round(y) + 0.5);
        cairo_stroke(cr);
        char label[32];
        format_tick(label, sizeof label, v, ys);
        text_at(cr, p->left - 8, y, 1.0, 0.5, label);
    }
    double xs = tick_step(p->x0, p->x1, 7);
    if (integer_x && xs < 1.0)
        xs = 1.0;
    for (double v = ceil(p->x0 / xs) * xs; v <= p->x1 + xs * 1e-9; v += xs) {
        double x = px(p, v);
        set_color(cr, GRID, 1);
        cairo_move_to(cr, round(x) + 0.5, p->top);
        cairo_line_to(cr, round(x) + 0.5, p->top + p->height);
        cairo_stroke(cr);
        set_color(cr, INK, 1);
        cairo_move_to(cr, round(x) + 0.5, p->top + p->height);
        cairo_line_to(cr, round(x) + 0.5, p->top + p->height + 5);
        cairo_stroke(cr);
        char label[32];
        format_tick(label, sizeof label, v, xs);
        text_at(cr, x, p->top + p->height + 9, 0.5, 0.0, label);
    }
    set_color(cr, INK, 1);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, round(p->left) + 0.5, round(p->top) + 0.5, round(p->width), round(p->height));
    cairo_stroke(cr);

    font(cr, 13, false);
    text_at(cr, p->left + p->width / 2, p->top + p->height + 34, 0.5, 0.0, xlabel);
    cairo_save(cr);
    cairo_translate(cr, p->left - 58, p->top + p->height / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, 0, 0, 0.5, 0.5, ylabel);
    cairo_restore(cr);
    font(cr, 15, true);
    text_at(cr, p->left, p->top - 12, 0.0, 1.0, heading);
}

typedef struct legend_item {
    const char *label;
    rgb color;
    double alpha, width;
    bool marker, dashed;
} legend_item;

static void draw_legend(cairo_t *cr, const panel *p, const legend_item *items, int n)
{
    font(cr, 12, false);
    double w = 0;
    for (int i = 0; i < n; i++) {
        cairo_text_extents_t e;
        cairo_text_extents(cr, items[i].label, &e);
        if (e.x_advance > w)
            w = e.x_advance;
    }
    double row = 19, box_w = w + 52, box_h = n * row + 10;
    double x = p->left + p->width - box_w - 10, y = p->top + 10;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.92);
    cairo_rectangle(cr, x, y, box_w, box_h);
    cairo_fill_preserve(cr);
    set_color(cr, GRID, 1);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
        double cy = y + 5 + row * i + row / 2;
        set_color(cr, items[i].color, items[i].alpha);
        cairo_set_line_width(cr, items[i].width);
        if (items[i].dashed) {
            const double dash[] = {5, 3};
            cairo_set_dash(cr, dash, 2, 0);
        }
        cairo_move_to(cr, x + 8, cy);
        cairo_line_to(cr, x + 36, cy);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        if (items[i].marker) {
            cairo_arc(cr, x + 22, cy, 4, 0, 2 * M_PI);
            cairo_fill(cr);
        }
        set_color(cr, INK, 1);
        text_at(cr, x + 44, cy, 0.0, 0.5, items[i].label);
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The moving average over a centred window of `window` steps (shorter at the ends),
 * skipping non-finite losses. */
static void moving_average(const float *loss, int64_t n, int64_t window, double *out)
{
    double *prefix = calloc((size_t)n + 1, sizeof *prefix);
    int64_t *count = calloc((size_t)n + 1, sizeof *count);
    if (!prefix || !count) {
        for (int64_t i = 0; i < n; i++)
            out[i] = loss[i];
        free(prefix);
        free(count);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        bool ok = isfinite(loss[i]);
        prefix[i + 1] = prefix[i] + (ok ? loss[i] : 0.0);
        count[i + 1] = count[i] + ok;
    }
    int64_t half = window / 2;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = i - half < 0 ? 0 : i - half, b = i + half + 1 > n ? n : i + half + 1;
        int64_t c = count[b] - count[a];
        out[i] = c ? (prefix[b] - prefix[a]) / (double)c : NAN;
    }
    free(prefix);
    free(count);
}

static void loss_panel(cairo_t *cr, const panel *frame, const em_plot_data *d)
{
    panel p = *frame;
    int64_t n = d->n_steps;
    int64_t window = n / 40 < 1 ? 1 : n / 40;
    if (window > 200)
        window = 200;
    double *smooth = malloc((size_t)(n ? n : 1) * sizeof *smooth);
    float *sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    if (!smooth || !sorted) {
        free(smooth);
        free(sorted);
        return;
    }
    moving_average(d->step_loss, n, window, smooth);
    int64_t finite = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(d->step_loss[i]))
            sorted[finite++] = d->step_loss[i];
    qsort(sorted, (size_t)finite, sizeof *sorted, cmp_float);
    /* The y range follows the smoothed curve and nearly all raw points; a few spikes
     * may leave the panel rather than flatten everything else. */
    double top = finite ? sorted[(int64_t)((double)(finite - 1) * 0.995)] : 1.0;
    double bottom = finite ? sorted[0] : 0.0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(smooth[i]) && smooth[i] > top)
            top = smooth[i];
    for (int e = 0; e < d->n_epochs; e++)
        if (isfinite(d->test_loss[e]) && d->test_loss[e] > top)
            top = d->test_loss[e];
    if (!(top > 0.0))
        top = 1.0;
    p.x0 = 0;
    p.x1 = n > 1 ? (double)n : 1.0;
    p.y0 = bottom >= 0.0 ? 0.0 : bottom * 1.05;
    p.y1 = top * 1.08;
    draw_axes(cr, &p, true, "training step (one batch each)", "cross-entropy loss (nats)",
              "Training loss per step");

    cairo_save(cr);
    cairo_rectangle(cr, p.left, p.top, p.width, p.height);
    cairo_clip(cr);
    /* Epoch boundaries. */
    if (d->steps_per_epoch > 0 && d->n_epochs > 1) {
        const double dash[] = {2, 4};
        cairo_set_dash(cr, dash, 2, 0);
        set_color(cr, MUTED, 0.6);
        cairo_set_line_width(cr, 1);
        for (int e = 1; e < d->n_epochs; e++) {
            double x = round(px(&p, (double)(e * d->steps_per_epoch))) + 0.5;
            cairo_move_to(cr, x, p.top);
            cairo_line_to(cr, x, p.top + p.height);
        }
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        /* Name the epochs while their labels fit between the lines. */
        double epoch_width = p.width * (double)d->steps_per_epoch / (p.x1 - p.x0);
        if (epoch_width >= 60) {
            font(cr, 11, false);
            set_color(cr, MUTED, 1);
            for (int e = 0; e < d->n_epochs; e++) {
                char label[32];
                snprintf(label, sizeof label, "epoch %d", e + 1);
                text_at(cr, px(&p, (double)(e * d->steps_per_epoch)) + 5, p.top + p.height - 6, 0.0, 1.0, label);
            }
        }
    }
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (int pass = 0; pass < 2; pass++) {
        set_color(cr, LOSS, pass == 0 ? 0.28 : 1.0);
        cairo_set_line_width(cr, pass == 0 ? 1.0 : 2.2);
        bool pen_down = false;
        for (int64_t i = 0; i < n; i++) {
            double v = pass == 0 ? d->step_loss[i] : smooth[i];
            if (!isfinite(v)) {
                pen_down = false;
                continue;
            }
            double x = px(&p, (double)(i + 1)), y = py(&p, v);
            if (pen_down)
                cairo_line_to(cr, x, y);
            else
                cairo_move_to(cr, x, y);
            pen_down = true;
        }
        cairo_stroke(cr);
    }
    cairo_restore(cr);
    /* Outside the clip: the last epoch's marker sits on the right edge. */
    bool any_test = false;
    for (int e = 0; e < d->n_epochs; e++) {
        if (!isfinite(d->test_loss[e]) || d->test_loss[e] > p.y1)
            continue;
        double x = px(&p, (double)((e + 1) * d->steps_per_epoch)), y = py(&p, d->test_loss[e]);
        set_color(cr, TEST, 1);
        cairo_arc(cr, x, y, 5, 0, 2 * M_PI);
        cairo_fill(cr);
        any_test = true;
    }

    char smooth_label[96];
    snprintf(smooth_label, sizeof smooth_label, "moving average (%lld steps)", (long long)window);
    legend_item items[3] = {
        {"batch loss", LOSS, 0.35, 1.0, false, false},
        {smooth_label, LOSS, 1.0, 2.2, false, false},
        {"test loss (end of epoch)", TEST, 1.0, 0.0, true, false},
    };
    draw_legend(cr, &p, items, any_test ? 3 : 2);
    free(smooth);
    free(sorted);
}

static void accuracy_panel(cairo_t *cr, const panel *frame, const em_plot_data *d)
{
    panel p = *frame;
    double lo = INFINITY, hi = -INFINITY;
    for (int e = 0; e < d->n_epochs; e++) {
        double a = d->test_accuracy[e] * 100.0;
        if (isfinite(a)) {
            lo = fmin(lo, a);
            hi = fmax(hi, a);
        }
    }
    p.x0 = 0.5;
    p.x1 = d->n_epochs + 0.5;
    if (!isfinite(lo)) {
        p.y0 = 0;
        p.y1 = 100;
        draw_axes(cr, &p, true, "epoch", "test accuracy (%)", "Test accuracy per epoch");
        font(cr, 14, false);
        set_color(cr, MUTED, 1);
        text_at(cr, p.left + p.width / 2, p.top + p.height / 2, 0.5, 0.5, "no test set");
        return;
    }
    double span = hi - lo < 4.0 ? 4.0 : hi - lo;
    p.y0 = fmax(0.0, lo - span * 0.35);
    p.y1 = fmin(100.0, hi + span * 0.35);
    if (p.y1 - p.y0 < 1.0)
        p.y0 = p.y1 - 1.0;
    draw_axes(cr, &p, true, "epoch", "test accuracy (%)", "Test accuracy per epoch");

    cairo_save(cr);
    cairo_rectangle(cr, p.left, p.top, p.width, p.height);
    cairo_clip(cr);
    set_color(cr, ACCURACY, 1);
    cairo_set_line_width(cr, 2.2);
    bool pen_down = false;
    for (int e = 0; e < d->n_epochs; e++) {
        double a = d->test_accuracy[e] * 100.0;
        if (!isfinite(a)) {
            pen_down = false;
            continue;
        }
        if (pen_down)
            cairo_line_to(cr, px(&p, e + 1), py(&p, a));
        else
            cairo_move_to(cr, px(&p, e + 1), py(&p, a));
        pen_down = true;
    }
    cairo_stroke(cr);
    font(cr, 12, true);
    for (int e = 0; e < d->n_epochs; e++) {
        double a = d->test_accuracy[e] * 100.0;
        if (!isfinite(a))
            continue;
        double x = px(&p, e + 1), y = py(&p, a);
        set_color(cr, ACCURACY, 1);
        cairo_arc(cr, x, y, 5, 0, 2 * M_PI);
        cairo_fill(cr);
        /* Values beside the points while they fit (the last one always). */
        if (d->n_epochs <= 12 || e == d->n_epochs - 1) {
            char label[32];
            snprintf(label, sizeof label, "%.2f%%", a);
            text_with_halo(cr, x, y - 10, e == d->n_epochs - 1 && d->n_epochs > 1 ? 0.8 : 0.5, 1.0, label);
        }
    }
    cairo_restore(cr);
}

int em_plot_training(const char *path, const em_plot_data *d)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, WIDTH, HEIGHT);
    if (cairo_surface_status(surface) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surface);
        return em_error("plot %s: cannot create a %dx%d image", path, WIDTH, HEIGHT);
    }
    cairo_t *cr = cairo_create(surface);
    cairo_set_source_rgb(cr, 0.97, 0.97, 0.98);
    cairo_paint(cr);

    font(cr, 20, true);
    set_color(cr, INK, 1);
    text_at(cr, WIDTH / 2.0, 16, 0.5, 0.0, d->title ? d->title : "Training");
    if (d->subtitle) {
        font(cr, 13, false);
        set_color(cr, MUTED, 1);
        text_at(cr, WIDTH / 2.0, 46, 0.5, 0.0, d->subtitle);
    }
    panel loss = {.left = 90, .top = 104, .width = 700, .height = 370};
    panel acc = {.left = 920, .top = 104, .width = 330, .height = 370};
    loss_panel(cr, &loss, d);
    accuracy_panel(cr, &acc, d);

    cairo_status_t status = cairo_surface_write_to_png(surface, path);
    cairo_destroy(cr);
    cairo_surface_destroy(surface);
    if (status != CAIRO_STATUS_SUCCESS)
        return em_error("plot %s: %s", path, cairo_status_to_string(status));
    return EM_OK;
}
