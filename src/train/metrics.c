/* The metrics file: CSV that a spreadsheet or pandas reads as is. Every step writes a
 * row with its batch loss and accuracy, learning rate and gradient norm; every epoch
 * writes a row with the epoch's means and the evaluations. The `kind` column tells
 * them apart ("step" or "epoch"); a column without a value is left empty. */
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
    fputs("step,epoch,kind,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy,lr,grad_norm,"
          "seconds\n",
          mf->f);
    return mf;
}

/* Empty for NaN (no value), so that readers see a missing value, not a string. */
static void put_value(FILE *f, double v)
{
    if (!isnan(v))
        fprintf(f, "%.9g", v);
    fputc(',', f);
}

/* The last column; empty for the records a resumed run restored from its checkpoint,
 * which keeps no timings. */
static void put_seconds(FILE *f, double seconds)
{
    if (!isnan(seconds))
        fprintf(f, "%.4f", seconds);
    fputc('\n', f);
}

void em_metrics_step(em_metrics *mf, int epoch, const em_step_record *r)
{
    if (!mf)
        return;
    fprintf(mf->f, "%lld,%d,step,", (long long)r->step, epoch);
    /* A diverged loss is written as nan/inf, not left empty: it is a value. */
    if (isnan(r->loss))
        fputs("nan,", mf->f);
    else
        put_value(mf->f, r->loss);
    put_value(mf->f, r->accuracy);
    fputs(",,,,", mf->f);
    put_value(mf->f, r->lr);
    put_value(mf->f, r->grad_norm);
    put_seconds(mf->f, r->seconds);
}

void em_metrics_epoch(em_metrics *mf, const em_epoch_record *e)
{
    if (!mf)
        return;
    fprintf(mf->f, "%lld,%d,epoch,", (long long)e->steps, e->epoch);
    put_value(mf->f, e->train_loss);
    put_value(mf->f, e->train_accuracy);
    put_value(mf->f, e->val_loss);
    put_value(mf->f, e->val_accuracy);
    put_value(mf->f, e->test_loss);
    put_value(mf->f, e->test_accuracy);
    put_value(mf->f, e->lr);
    put_value(mf->f, e->grad_norm);
    put_seconds(mf->f, e->seconds);
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
