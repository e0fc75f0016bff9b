#include "ember/runtime.h"

#include <omp.h>
#include <time.h>

/* OpenBLAS's own setter: with its OpenMP build it sizes the same pool, but it keeps a
 * separate count that omp_set_num_threads does not change. */
void openblas_set_num_threads(int n);

void em_set_num_threads(int n)
{
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int em_num_threads(void) { return omp_get_max_threads(); }

const char *em_version(void) { return "0.1.0"; }

double em_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
