/* The drawing pieces shared by the training plot and the comparison plots. */
#include "train/plot_kit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"

const em_rgb EM_PLOT_INK = {0.13, 0.13, 0.15};
const em_rgb EM_PLOT_MUTED = {0.40, 0.40, 0.44};
const em_rgb EM_PLOT_GRID = {0.88, 0.88, 0.90};

em_rgb em_plot_palette(int i)
{
    /* Tableau's ten categorical colours. */
    static const em_rgb colors[10] = {
        {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
        {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
        {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812},
    };
    return colors[(i % 10 + 10) % 10];
}

static double axis_pos(double v, bool log_scale) { return log_scale ? log10(v) : v; }

double em_plot_x(const em_panel *p, double x)
{
    double a = axis_pos(p->x0, p->log_x), b = axis_pos(p->x1, p->log_x);
    return p->left + (axis_pos(x, p->log_x) - a) / (b - a) * p->width;
}

double em_plot_y(const em_panel *p, double y)
{
    double a = axis_pos(p->y0, p->log_y), b = axis_pos(p->y1, p->log_y);
    return p->top + p->height - (axis_pos(y, p->log_y) - a) / (b - a) * p->height;
}

void em_plot_color(cairo_t *cr, em_rgb c, double alpha) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

void em_plot_font(cairo_t *cr, double size, bool bold)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

void em_plot_text(cairo_t *cr, double x, double y, double ax, double ay, const char *s)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
    cairo_show_text(cr, s);
}

void em_plot_text_halo(cairo_t *cr, double x, double y, double ax, double ay, const char *s)
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
    em_plot_color(cr, EM_PLOT_INK, 1);
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

static void format_tick(char *buf, size_t cap, double v, double step, bool percent)
{
    if (fabs(v) < step * 1e-6)
        v = 0.0;
    const char *unit = percent ? "%" : "";
    if (fabs(v) >= 1e5 || step >= 1.0) {
        if (fabs(v) >= 1e6)
            snprintf(buf, cap, "%.3gM%s", v / 1e6, unit);
        else if (fabs(v) >= 1e4 && fmod(v, 1000.0) == 0.0)
            snprintf(buf, cap, "%.0fk%s", v / 1e3, unit);
        else
            snprintf(buf, cap, "%.0f%s", v, unit);
    } else if (step < 1e-3 && !percent) {
        snprintf(buf, cap, "%.3g", v);
    } else {
        int decimals = (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, cap, "%.*f%s", decimals < 0 ? 0 : decimals, v, unit);
    }
}

/* Tick values of an axis: round steps, or on a log axis 1-2-5 times powers of ten
 * (just powers of ten when the range spans many decades). */
static int ticks(double lo, double hi, bool log_scale, bool integer, double *out, int cap, double *step_out)
{
    int n = 0;
    if (!log_scale) {
        double s = tick_step(lo, hi, 6);
        if (integer && s < 1.0)
            s = 1.0;
        *step_out = s;
        for (double v = ceil(lo / s - 1e-9) * s; v <= hi + s * 1e-9 && n < cap; v += s)
            out[n++] = v;
        return n;
    }
    double decades = log10(hi) - log10(lo);
    static const double mantissas[3] = {1, 2, 5};
    int per = decades > 4 ? 1 : 3;
    for (double mag = pow(10.0, floor(log10(lo))); mag <= hi * 1.0000001 && n < cap; mag *= 10.0)
        for (int k = 0; k < per && n < cap; k++) {
            double v = mantissas[k] * mag;
            if (v >= lo * 0.9999999 && v <= hi * 1.0000001)
                out[n++] = v;
        }
    *step_out = 0.0;
    return n;
}

static void tick_label(char *buf, size_t cap, double v, double step, bool log_scale, bool percent)
{
    if (!log_scale) {
        format_tick(buf, cap, v, step, percent);
        return;
    }
    if (v >= 1e4 && fmod(v, 1000.0) == 0.0)
        snprintf(buf, cap, "%.0fk", v / 1e3);
    else if (v >= 1.0)
        snprintf(buf, cap, "%.0f", v);
    else
        snprintf(buf, cap, "%g", v);
}

void em_plot_axes(cairo_t *cr, const em_panel *p, const char *xlabel, const char *ylabel, const char *heading)
{
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, p->left, p->top, p->width, p->height);
    cairo_fill(cr);

    em_plot_font(cr, 12, false);
    cairo_set_line_width(cr, 1);
    double values[64], step = 0.0;
    int n = p->no_y_ticks ? 0 : ticks(p->y0, p->y1, p->log_y, false, values, 64, &step);
    for (int i = 0; i < n; i++) {
        double y = round(em_plot_y(p, values[i])) + 0.5;
        em_plot_color(cr, EM_PLOT_GRID, 1);
        cairo_move_to(cr, p->left, y);
        cairo_line_to(cr, p->left + p->width, y);
        cairo_stroke(cr);
        em_plot_color(cr, EM_PLOT_INK, 1);
        cairo_move_to(cr, p->left - 5, y);
        cairo_line_to(cr, p->left, y);
        cairo_stroke(cr);
        char label[32];
        tick_label(label, sizeof label, values[i], step, p->log_y, p->percent_y);
        em_plot_text(cr, p->left - 8, y, 1.0, 0.5, label);
    }
    n = ticks(p->x0, p->x1, p->log_x, p->integer_x, values, 64, &step);
    for (int i = 0; i < n; i++) {
        double x = round(em_plot_x(p, values[i])) + 0.5;
        em_plot_color(cr, EM_PLOT_GRID, 1);
        cairo_move_to(cr, x, p->top);
        cairo_line_to(cr, x, p->top + p->height);
        cairo_stroke(cr);
        em_plot_color(cr, EM_PLOT_INK, 1);
        cairo_move_to(cr, x, p->top + p->height);
        cairo_line_to(cr, x, p->top + p->height + 5);
        cairo_stroke(cr);
        char label[32];
        tick_label(label, sizeof label, values[i], step, p->log_x, false);
        em_plot_text(cr, x, p->top + p->height + 9, 0.5, 0.0, label);
    }
    em_plot_color(cr, EM_PLOT_INK, 1);
    cairo_rectangle(cr, round(p->left) + 0.5, round(p->top) + 0.5, round(p->width), round(p->height));
    cairo_stroke(cr);

    em_plot_font(cr, 13, false);
    em_plot_text(cr, p->left + p->width / 2, p->top + p->height + 32, 0.5, 0.0, xlabel);
    cairo_save(cr);
    cairo_translate(cr, p->left - 70, p->top + p->height / 2);
    cairo_rotate(cr, -M_PI / 2);
    em_plot_text(cr, 0, 0, 0.5, 0.5, ylabel);
    cairo_restore(cr);
    em_plot_font(cr, 15, true);
    em_plot_text(cr, p->left, p->top - 12, 0.0, 1.0, heading);
}

void em_plot_note(cairo_t *cr, const em_panel *p, const char *text)
{
    em_plot_font(cr, 14, false);
    em_plot_color(cr, EM_PLOT_MUTED, 1);
    em_plot_text(cr, p->left + p->width / 2, p->top + p->height / 2, 0.5, 0.5, text);
}

/* Marks the grid cell under canvas point (x, y). */
static void mark(em_panel *p, double x, double y)
{
    int c = (int)floor((x - p->left) / p->width * EM_PLOT_GRID_COLS);
    int r = (int)floor((y - p->top) / p->height * EM_PLOT_GRID_ROWS);
    if (c >= 0 && c < EM_PLOT_GRID_COLS && r >= 0 && r < EM_PLOT_GRID_ROWS && p->used[r][c] < 255)
        p->used[r][c]++;
}

/* Drawn points under a box, from the grid. */
static int covered(const em_panel *p, double x, double y, double w, double h)
{
    int c0 = (int)floor((x - p->left) / p->width * EM_PLOT_GRID_COLS);
    int c1 = (int)ceil((x + w - p->left) / p->width * EM_PLOT_GRID_COLS);
    int r0 = (int)floor((y - p->top) / p->height * EM_PLOT_GRID_ROWS);
    int r1 = (int)ceil((y + h - p->top) / p->height * EM_PLOT_GRID_ROWS);
    int total = 0;
    for (int r = r0 < 0 ? 0 : r0; r < r1 && r < EM_PLOT_GRID_ROWS; r++)
        for (int c = c0 < 0 ? 0 : c0; c < c1 && c < EM_PLOT_GRID_COLS; c++)
            total += p->used[r][c];
    return total;
}

void em_plot_legend(cairo_t *cr, const em_panel *p, const em_legend_item *items, int n, em_legend_corner corner)
{
    if (n <= 0)
        return;
    em_plot_font(cr, 12, false);
    double w = 0;
    for (int i = 0; i < n; i++) {
        cairo_text_extents_t e;
        cairo_text_extents(cr, items[i].label, &e);
        if (e.x_advance > w)
            w = e.x_advance;
    }
    double row = 18, box_w = w + 52, box_h = n * row + 10;
    double left = p->left + 10, right = p->left + p->width - box_w - 10;
    double top = p->top + 10, bottom = p->top + p->height - box_h - 10;
    double x = left, y = top;
    if (corner == EM_LEGEND_BEST) {
        /* The four corners, then the middles of the sides; ties go to the first. */
        const double xs[8] = {right, left, right, left, right, left, (left + right) / 2, (left + right) / 2};
        const double ys[8] = {top, top, bottom, bottom, (top + bottom) / 2, (top + bottom) / 2, top, bottom};
        int best = -1;
        for (int k = 0; k < 8; k++) {
            int c = covered(p, xs[k], ys[k], box_w, box_h);
            if (best < 0 || c < best) {
                best = c;
                x = xs[k];
                y = ys[k];
            }
        }
    } else {
        bool is_left = corner == EM_LEGEND_TOP_LEFT || corner == EM_LEGEND_BOTTOM_LEFT;
        bool is_top = corner == EM_LEGEND_TOP_LEFT || corner == EM_LEGEND_TOP_RIGHT;
        x = is_left ? left : right;
        y = is_top ? top : bottom;
    }
    cairo_set_source_rgba(cr, 1, 1, 1, 0.92);
    cairo_rectangle(cr, x, y, box_w, box_h);
    cairo_fill_preserve(cr);
    em_plot_color(cr, EM_PLOT_GRID, 1);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
        double cy = y + 5 + row * i + row / 2;
        em_plot_color(cr, items[i].color, items[i].alpha);
        if (items[i].width > 0) {
            cairo_set_line_width(cr, items[i].width);
            if (items[i].dashed) {
                const double dash[] = {6, 4};
                cairo_set_dash(cr, dash, 2, 0);
            }
            cairo_move_to(cr, x + 8, cy);
            cairo_line_to(cr, x + 36, cy);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
        }
        if (items[i].marker) {
            cairo_arc(cr, x + 22, cy, 4, 0, 2 * M_PI);
            cairo_fill(cr);
        }
        em_plot_color(cr, EM_PLOT_INK, 1);
        em_plot_text(cr, x + 44, cy, 0.0, 0.5, items[i].label);
    }
}

static bool inside(const em_panel *p, double x, double y)
{
    if (!isfinite(x) || !isfinite(y))
        return false;
    if ((p->log_x && x <= 0) || (p->log_y && y <= 0))
        return false;
    return true;
}

void em_plot_line(cairo_t *cr, em_panel *p, const double *x, const double *y, int64_t n, em_rgb c,
                  double alpha, double width, bool dashed)
{
    cairo_save(cr);
    cairo_rectangle(cr, p->left, p->top, p->width, p->height);
    cairo_clip(cr);
    em_plot_color(cr, c, alpha);
    cairo_set_line_width(cr, width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    if (dashed) {
        const double dash[] = {6, 4};
        cairo_set_dash(cr, dash, 2, 0);
    }
    bool pen_down = false;
    for (int64_t i = 0; i < n; i++) {
        double xv = x ? x[i] : (double)(i + 1), yv = y[i];
        if (!inside(p, xv, yv)) {
            pen_down = false;
            continue;
        }
        /* Far outside values are drawn at the edge's distance, not at the float limit. */
        double sy = em_plot_y(p, yv), sx = em_plot_x(p, xv);
        sy = fmax(p->top - 1000.0, fmin(p->top + p->height + 1000.0, sy));
        if (pen_down) {
            /* The segment's cells, sampled at a few points along it. */
            double px0, py0;
            cairo_get_current_point(cr, &px0, &py0);
            for (int k = 1; k <= 4; k++)
                mark(p, px0 + (sx - px0) * k / 4.0, py0 + (sy - py0) * k / 4.0);
            cairo_line_to(cr, sx, sy);
        } else {
            mark(p, sx, sy);
            cairo_move_to(cr, sx, sy);
        }
        pen_down = true;
    }
    cairo_stroke(cr);
    cairo_restore(cr);
}

void em_plot_markers(cairo_t *cr, em_panel *p, const double *x, const double *y, int64_t n, em_rgb c,
                     double radius)
{
    em_plot_color(cr, c, 1);
    for (int64_t i = 0; i < n; i++) {
        double xv = x ? x[i] : (double)(i + 1), yv = y[i];
        if (!inside(p, xv, yv) || yv < p->y0 || yv > p->y1)
            continue;
        mark(p, em_plot_x(p, xv), em_plot_y(p, yv));
        cairo_arc(cr, em_plot_x(p, xv), em_plot_y(p, yv), radius, 0, 2 * M_PI);
        cairo_fill(cr);
    }
}

void em_plot_moving_average(const double *v, int64_t n, int64_t window, double *out)
{
    int64_t half = window / 2;
    double sum = 0.0;
    int64_t count = 0, a = 0, b = 0; /* the window is [a, b) */
    for (int64_t i = 0; i < n; i++) {
        int64_t lo = i - half < 0 ? 0 : i - half, hi = i + half + 1 > n ? n : i + half + 1;
        while (b < hi) {
            if (isfinite(v[b])) {
                sum += v[b];
                count++;
            }
            b++;
        }
        while (a < lo) {
            if (isfinite(v[a])) {
                sum -= v[a];
                count--;
            }
            a++;
        }
        out[i] = count ? sum / (double)count : NAN;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void em_plot_robust_range(const double *v, int64_t n, double tail, double *lo, double *hi)
{
    double *sorted = malloc((size_t)(n > 0 ? n : 1) * sizeof *sorted);
    int64_t m = 0;
    for (int64_t i = 0; sorted && i < n; i++)
        if (isfinite(v[i]))
            sorted[m++] = v[i];
    if (m == 0) {
        *lo = 0.0;
        *hi = 1.0;
        free(sorted);
        return;
    }
    qsort(sorted, (size_t)m, sizeof *sorted, cmp_double);
    *lo = sorted[0];
    *hi = sorted[(int64_t)((double)(m - 1) * (1.0 - tail))];
    free(sorted);
}

cairo_t *em_plot_begin(int width, int height, const char *title, const char *subtitle)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    if (cairo_surface_status(surface) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surface);
        em_error("plot: cannot create a %dx%d image", width, height);
        return NULL;
    }
    cairo_t *cr = cairo_create(surface);
    cairo_surface_destroy(surface); /* the context keeps a reference */
    cairo_set_source_rgb(cr, 0.97, 0.97, 0.98);
    cairo_paint(cr);
    /* A long title gets a smaller font rather than running off the canvas. */
    double size = 20;
    for (; size > 11; size -= 1) {
        cairo_text_extents_t e;
        em_plot_font(cr, size, true);
        cairo_text_extents(cr, title ? title : "", &e);
        if (e.x_advance <= width - 60)
            break;
    }
    em_plot_color(cr, EM_PLOT_INK, 1);
    em_plot_text(cr, width / 2.0, 16, 0.5, 0.0, title ? title : "");
    if (subtitle) {
        em_plot_font(cr, 13, false);
        em_plot_color(cr, EM_PLOT_MUTED, 1);
        em_plot_text(cr, width / 2.0, 46, 0.5, 0.0, subtitle);
    }
    return cr;
}

int em_plot_finish(cairo_t *cr, const char *path)
{
    cairo_surface_t *surface = cairo_get_target(cr);
    cairo_status_t status = cairo_surface_write_to_png(surface, path);
    cairo_destroy(cr);
    if (status != CAIRO_STATUS_SUCCESS)
        return em_error("plot %s: %s", path, cairo_status_to_string(status));
    return EM_OK;
}
