#include "cli_stop.h"

#include <stdio.h>
#include <string.h>

#include "args.h"
#include "cli_common.h"

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t stop_signal;
static struct sigaction previous_int, previous_term;
static int installed;

static void on_signal(int sig)
{
    stop_signal = sig;
    stop_flag = 1;
}

volatile sig_atomic_t *cli_stop_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* One-shot: after the first signal the default action is back, so that a second
     * Ctrl-C stops a run that is slow to reach the end of its step. */
    sa.sa_flags = SA_RESETHAND;
    stop_flag = 0;
    stop_signal = 0;
    sigaction(SIGINT, &sa, &previous_int);
    sigaction(SIGTERM, &sa, &previous_term);
    installed = 1;
    return &stop_flag;
}

void cli_stop_restore(void)
{
    if (!installed)
        return;
    sigaction(SIGINT, &previous_int, NULL);
    sigaction(SIGTERM, &previous_term, NULL);
    installed = 0;
}

int cli_stop_signal(void) { return (int)stop_signal; }

const char *cli_stop_signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

int cli_report_stop(const em_train_result *result, const char *checkpoint_path)
{
    const char *path = checkpoint_path ? checkpoint_path : CLI_INTERRUPT_CHECKPOINT;
    int sig = cli_stop_signal();
    if (sig)
        printf("interrupted by %s after step %lld: checkpoint %s (continue with the same command and "
               "--resume %s)\n",
               cli_stop_signal_name(sig), (long long)result->steps, path, path);
    else
        printf("stopped after step %lld (--max-steps): checkpoint %s (continue with the same command and "
               "--resume %s)\n",
               (long long)result->steps, path, path);
    fflush(stdout);
    return sig ? 128 + sig : 0;
}

int cli_train_stoppable(em_model *m, const em_dataset *train, const em_dataset *test, em_train_opts *o,
                        em_train_result *result)
{
    memset(result, 0, sizeof *result);
    o->stop_requested = cli_stop_install();
    int trained = em_train(m, train, test, o, result);
    cli_stop_restore();
    if (trained != EM_OK) {
        fflush(stdout);
        return cli_library_error();
    }
    if (result->interrupted)
        return cli_report_stop(result, o->checkpoint_path);
    return -1;
}
