/* libgomp's idle workers spin for a long while (300k iterations) before sleeping. On a
 * machine whose cores are shared with other work, every spinning worker takes a core
 * from a thread that has real work. Measured on this project's 2-core machine under a
 * load of 12 (100 W1 steps): spinning 36 s, a 20k spin count 6.9 s, sleeping workers
 * (OMP_WAIT_POLICY=PASSIVE) 1.7 s; on an idle machine sleeping costs a futex wake per
 * parallel region, a few percent. libgomp reads its settings once, when it is loaded, so
 * the tool sets the variable and starts itself again; a user's own OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT always wins. */
#include <stdlib.h>
#include <unistd.h>

#include "commands.h"

void cli_apply_spin_policy(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("EMBER_NO_REEXEC"))
        return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0 || setenv("EMBER_NO_REEXEC", "1", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): carry on with libgomp's defaults */
}
