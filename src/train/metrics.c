/* The metrics file: CSV that a spreadsheet or pandas reads as is. Every step writes a
 * row with its batch loss; every epoch writes a row with the epoch's mean training loss
 * and the evaluation, so rows with test columns filled are the epoch summaries. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"
#include "train/train_internal.h"

struct em_metrics {
    FILE *f;
    char path[1024];
};

em_metrics *em_metrics_open(const char *path)
{
    em_metrics *mf = calloc(1, sizeof *mf);
    if (!mf) {
        em_error("out of memory opening the metrics file %s", path);
        return NULL;
    }
    snprintf(mf->path, sizeof mf->path, "%s", path);
    mf->f = fopen(path, "w");
    if (!mf->f) {
        em_error("cannot create the metrics file %s: %s", path, strerror(errno));
        free(mf);
        return NULL;
    }
    fputs("step,epoch,train_loss,test_loss,test_accuracy,lr,seconds\n", mf->f);
    return mf;
}

/* Empty for NaN (no value), so that readers see a missing value, not a string. */
static void put_value(FILE *f, double v, const char *sep)
{
    if (isnan(v))
        fputs(sep, f);
    else
        fprintf(f, "%.9g%s", v, sep);
}

void em_metrics_step(em_metrics *mf, int64_t step, int epoch, double loss, double lr, double seconds)
{
    if (!mf)
        return;
    /* A diverged loss is written as nan/inf, not left empty: it is a value. */
    if (isnan(loss))
        fprintf(mf->f, "%lld,%d,nan,,,%.9g,%.4f\n", (long long)step, epoch, lr, seconds);
    else
        fprintf(mf->f, "%lld,%d,%.9g,,,%.9g,%.4f\n", (long long)step, epoch, loss, lr, seconds);
}

void em_metrics_epoch(em_metrics *mf, int64_t step, const em_epoch_stats *s, double lr, double seconds)
{
    if (!mf)
        return;
    fprintf(mf->f, "%lld,%d,", (long long)step, s->epoch);
    put_value(mf->f, s->train_loss, ",");
    put_value(mf->f, s->test_loss, ",");
    put_value(mf->f, s->test_accuracy, ",");
    fprintf(mf->f, "%.9g,%.4f\n", lr, seconds);
    fflush(mf->f);
}

int em_metrics_close(em_metrics *mf)
{
    if (!mf)
        return EM_OK;
    int failed = ferror(mf->f);
    failed |= fclose(mf->f) != 0;
    int rc = failed ? em_error("writing the metrics file %s failed", mf->path) : EM_OK;
    free(mf);
    return rc;
}
