#include "ember/runtime.h"

#include <omp.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

/* OpenBLAS's own setter: with its OpenMP build it sizes the same pool, but it keeps a
 * separate count that omp_set_num_threads does not change. */
void openblas_set_num_threads(int n);

/* The defaults are the fastest set-up measured on the 2-core target (bench/RESULTS.md):
 * one thread per core, BLAS and ember's loops in libgomp's one pool, and libgomp's own
 * wait policy (workers spin briefly, then sleep). On a quiet machine W1 takes 0.86 s per
 * epoch this way; OMP_WAIT_POLICY=ACTIVE, a longer GOMP_SPINCOUNT or OMP_PROC_BIND=true
 * change nothing measurable (0.87 s), PASSIVE costs 16% (1.01 s: every parallel region
 * wakes sleeping workers) and one thread 1.53 s; sgemm reaches 204-208 GFLOP/s
 * (87-89% of peak) at n >= 512 with the default, as with ACTIVE, and PASSIVE loses half
 * the speed at n = 128. libgomp reads its environment once at start-up, so these are
 * left to the environment rather than set here. On a machine crowded by other
 * processes PASSIVE degrades far more gracefully than spinning workers: set
 * OMP_WAIT_POLICY=PASSIVE there. */
void em_set_num_threads(int n)
{
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int em_num_threads(void) { return omp_get_max_threads(); }

bool em_threads_spin(void)
{
    const char *policy = getenv("OMP_WAIT_POLICY");
    return !(policy && strcasecmp(policy, "passive") == 0);
}

const char *em_version(void) { return "0.1.0"; }

double em_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
