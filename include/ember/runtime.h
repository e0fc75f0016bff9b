/* Threads. ember and OpenBLAS share one OpenMP pool (OpenBLAS's OpenMP build), so
 * setting the count here sets it for both. */
#ifndef EMBER_RUNTIME_H
#define EMBER_RUNTIME_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* n <= 0 picks the number of cores. Counts above the core count are allowed. */
void em_set_num_threads(int n);
int em_num_threads(void);
/* False when idle OpenMP threads sleep (OMP_WAIT_POLICY=passive) instead of spinning:
 * work split into many short parallel steps (one generated token) then pays a wake-up
 * per step and is better left on one thread. */
bool em_threads_spin(void);
const char *em_version(void);
/* Seconds on a monotonic clock. */
double em_now(void);

#ifdef __cplusplus
}
#endif
#endif
