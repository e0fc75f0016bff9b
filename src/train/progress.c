/* Progress while training. On a terminal: one line redrawn in place with \r, at most
 * ten times a second (a redraw per step would cost more than a small model's step).
 * Elsewhere (a log file, CI): plain lines, a progress line at most every ten seconds
 * and one summary line per epoch, so logs stay short and readable. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "ember/runtime.h"
#include "train/train_internal.h"

#define BAR_REDRAW_SECONDS 0.1
#define LINE_EVERY_SECONDS 10.0
#define BAR_CELLS 24

void em_progress_init(em_progress *p, FILE *out, em_progress_mode mode, int epochs,
                      int64_t batches, int64_t items)
{
    memset(p, 0, sizeof *p);
    p->out = out ? out : stderr;
    p->quiet = mode == EM_PROGRESS_QUIET;
    p->bar = mode == EM_PROGRESS_BAR || (mode == EM_PROGRESS_AUTO && isatty(fileno(p->out)));
    p->epochs = epochs;
    p->batches = batches;
    p->items = items;
}

void em_progress_epoch_begin(em_progress *p, int epoch)
{
    p->epoch = epoch;
    p->epoch_start = em_now();
    p->last_draw = p->epoch_start;
}

/* "1:05" or "1:02:03". */
static void format_duration(char *buf, size_t cap, double seconds)
{
    if (!(seconds >= 0.0) || seconds > 1e7) {
        snprintf(buf, cap, "?");
        return;
    }
    long s = lround(seconds);
    if (s >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", s / 60, s % 60);
}

/* "950", "12.3k", "1.25M": items per second at a glance. */
static void format_rate(char *buf, size_t cap, double rate)
{
    if (!(rate >= 0.0))
        snprintf(buf, cap, "?");
    else if (rate >= 1e6)
        snprintf(buf, cap, "%.2fM", rate / 1e6);
    else if (rate >= 1e4)
        snprintf(buf, cap, "%.1fk", rate / 1e3);
    else
        snprintf(buf, cap, "%.0f", rate);
}

static void draw_bar(em_progress *p, int64_t done, int64_t items_done, double mean_loss, double now)
{
    double elapsed = now - p->epoch_start;
    double rate = elapsed > 0.0 ? (double)items_done / elapsed : 0.0;
    double fraction = p->batches > 0 ? (double)done / (double)p->batches : 1.0;
    if (fraction > 1.0)
        fraction = 1.0;
    char cells[BAR_CELLS + 1];
    int full = (int)(fraction * BAR_CELLS);
    for (int i = 0; i < BAR_CELLS; i++)
        cells[i] = i < full ? '#' : (i == full ? '>' : '.');
    if (full >= BAR_CELLS)
        cells[BAR_CELLS - 1] = '#';
    cells[BAR_CELLS] = '\0';
    char rate_s[32], eta_s[32];
    format_rate(rate_s, sizeof rate_s, rate);
    format_duration(eta_s, sizeof eta_s,
                    done > 0 ? elapsed / (double)done * (double)(p->batches - done) : NAN);
    char line[256];
    int n = snprintf(line, sizeof line, "%s %d/%d [%s] %3.0f%% %lld/%lld  %s items/s  loss %.4f  ETA %s",
                     p->unit ? p->unit : "epoch", p->epoch, p->epochs, cells, fraction * 100.0, (long long)done,
                     (long long)p->batches, rate_s, mean_loss, eta_s);
    if (n < 0)
        return;
    if (n >= (int)sizeof line)
        n = (int)sizeof line - 1;
    /* Blank what a longer previous line left behind. */
    int pad = p->drawn_width > n ? p->drawn_width - n : 0;
    fprintf(p->out, "\r%s%*s", line, pad, "");
    fflush(p->out);
    p->drawn_width = n;
}

void em_progress_step(em_progress *p, int64_t batches_done, int64_t items_done, double mean_loss)
{
    if (p->quiet)
        return;
    double now = em_now();
    if (p->bar) {
        if (now - p->last_draw >= BAR_REDRAW_SECONDS || batches_done == p->batches) {
            draw_bar(p, batches_done, items_done, mean_loss, now);
            p->last_draw = now;
        }
        return;
    }
    if (now - p->last_draw >= LINE_EVERY_SECONDS && batches_done < p->batches) {
        double elapsed = now - p->epoch_start;
        fprintf(p->out, "%s %d/%d  step %lld/%lld  loss %.4f  %.0f items/s\n", p->unit ? p->unit : "epoch",
                p->epoch, p->epochs,
                (long long)batches_done, (long long)p->batches, mean_loss,
                elapsed > 0.0 ? (double)items_done / elapsed : 0.0);
        fflush(p->out);
        p->last_draw = now;
    }
}

void em_progress_interrupt(em_progress *p)
{
    if (p->bar && p->drawn_width > 0) {
        fputc('\n', p->out);
        fflush(p->out);
        p->drawn_width = 0;
    }
}

void em_progress_epoch_end(em_progress *p, const em_epoch_stats *s, bool has_test)
{
    if (p->quiet)
        return;
    char line[320];
    int n = snprintf(line, sizeof line, "epoch %d/%d  train loss %.4f", s->epoch, p->epochs, s->train_loss);
    /* The validation columns when there is a validation set (NaN otherwise). */
    if (n > 0 && !isnan(s->val_loss))
        n += snprintf(line + n, sizeof line - (size_t)n, "  val loss %.4f  val accuracy %.2f%%", s->val_loss,
                      s->val_accuracy * 100.0);
    if (n > 0 && (size_t)n < sizeof line && has_test)
        n += snprintf(line + n, sizeof line - (size_t)n, "  test loss %.4f  test accuracy %.2f%%", s->test_loss,
                      s->test_accuracy * 100.0);
    if (n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, "  %.2f s  %.0f samples/s", s->seconds,
                      s->samples_per_second);
    if (n < 0)
        return;
    if (n >= (int)sizeof line)
        n = (int)sizeof line - 1;
    if (p->bar) {
        int pad = p->drawn_width > n ? p->drawn_width - n : 0;
        fprintf(p->out, "\r%s%*s\n", line, pad, "");
        p->drawn_width = 0;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
}
