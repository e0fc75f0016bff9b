/* Internal: the pieces every ember plot is drawn with (cairo): panels with round-number
 * ticks on linear or logarithmic axes, axis labels with units, legends, text that stays
 * legible over lines, a colour palette for several runs, smoothing of noisy curves. */
#ifndef EMBER_TRAIN_PLOT_KIT_H
#define EMBER_TRAIN_PLOT_KIT_H

#include <cairo.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct em_rgb {
    double r, g, b;
} em_rgb;

extern const em_rgb EM_PLOT_INK, EM_PLOT_MUTED, EM_PLOT_GRID;
/* Ten colours that stay apart for the usual forms of colour blindness; i wraps. */
em_rgb em_plot_palette(int i);

#define EM_PLOT_GRID_ROWS 12
#define EM_PLOT_GRID_COLS 16

/* A panel: its rectangle on the canvas and the data range it shows. */
typedef struct em_panel {
    double left, top, width, height;
    double x0, x1, y0, y1;
    bool log_x, log_y;      /* ranges must then be > 0 */
    bool integer_x;         /* ticks only at whole numbers (epochs) */
    bool percent_y;         /* tick labels with a % sign */
    bool no_y_ticks;        /* categories on y (drawn by the caller) */
    /* Where lines and markers were drawn, on a coarse grid, so that a legend can go
     * where it hides least (filled by em_plot_line and em_plot_markers). */
    unsigned char used[EM_PLOT_GRID_ROWS][EM_PLOT_GRID_COLS];
} em_panel;

double em_plot_x(const em_panel *p, double x);
double em_plot_y(const em_panel *p, double y);
void em_plot_color(cairo_t *cr, em_rgb c, double alpha);
void em_plot_font(cairo_t *cr, double size, bool bold);
/* Text anchored by (ax, ay) in [0,1]: 0 = left/top, 0.5 = centre, 1 = right/bottom. */
void em_plot_text(cairo_t *cr, double x, double y, double ax, double ay, const char *s);
/* Ink text on a white outline, legible where a line crosses it. */
void em_plot_text_halo(cairo_t *cr, double x, double y, double ax, double ay, const char *s);
/* Frame, grid, ticks, tick labels, axis labels and the panel's heading. */
void em_plot_axes(cairo_t *cr, const em_panel *p, const char *xlabel, const char *ylabel, const char *heading);
/* A message in the middle of an empty panel. */
void em_plot_note(cairo_t *cr, const em_panel *p, const char *text);

typedef struct em_legend_item {
    const char *label;
    em_rgb color;
    double alpha, width;
    bool marker, dashed;
} em_legend_item;

typedef enum em_legend_corner {
    EM_LEGEND_BEST = 0, /* the corner (or side's middle) where the box hides the fewest drawn points */
    EM_LEGEND_TOP_RIGHT,
    EM_LEGEND_BOTTOM_RIGHT,
    EM_LEGEND_TOP_LEFT,
    EM_LEGEND_BOTTOM_LEFT
} em_legend_corner;
void em_plot_legend(cairo_t *cr, const em_panel *p, const em_legend_item *items, int n, em_legend_corner corner);

/* A line through the finite points (x[i], y[i]) (x NULL: x = i + 1), broken at
 * non-finite values, clipped to the panel. */
void em_plot_line(cairo_t *cr, em_panel *p, const double *x, const double *y, int64_t n, em_rgb c,
                  double alpha, double width, bool dashed);
void em_plot_markers(cairo_t *cr, em_panel *p, const double *x, const double *y, int64_t n, em_rgb c,
                     double radius);

/* The mean over a centred window (shorter at the ends), skipping non-finite values. */
void em_plot_moving_average(const double *v, int64_t n, int64_t window, double *out);
/* A y range [lo, hi] holding nearly all finite values (the top `tail` fraction may
 * leave the panel rather than flatten the rest), padded a little. */
void em_plot_robust_range(const double *v, int64_t n, double tail, double *lo, double *hi);

/* A canvas with a title and a subtitle; em_plot_finish writes the PNG and frees. */
cairo_t *em_plot_begin(int width, int height, const char *title, const char *subtitle);
int em_plot_finish(cairo_t *cr, const char *path);

#endif
