/* Ctrl-C (SIGINT) and SIGTERM during training: the handler only sets a flag, which the
 * training loop checks after each step; it then writes its checkpoint and returns, and
 * the command exits with 128 + the signal number, as a shell reports a signal. The
 * handler is installed for one signal only: a second Ctrl-C ends the process at once. */
#ifndef EMBER_TOOLS_CLI_STOP_H
#define EMBER_TOOLS_CLI_STOP_H

#include <signal.h>

#include "ember.h"

/* Installs the handlers; returns the flag to put in em_train_opts.stop_requested. */
volatile sig_atomic_t *cli_stop_install(void);
/* Puts the previous handlers back. */
void cli_stop_restore(void);
/* The signal that asked to stop, or 0. */
int cli_stop_signal(void);
/* "SIGINT", "SIGTERM" */
const char *cli_stop_signal_name(int sig);

/* Where a stop writes its checkpoint when no --checkpoint was given. */
#define CLI_INTERRUPT_CHECKPOINT "ember-interrupted.safetensors"

/* After em_train returned with result->interrupted: says where the checkpoint is and
 * how to continue; returns the exit status (128 + signal, or 0 after --max-steps). */
int cli_report_stop(const em_train_result *result, const char *checkpoint_path);

/* em_train with the handlers installed for its duration. Returns -1 when training ran
 * to its end, or the exit status to end with: that of a library error (printed) or of
 * a stop (reported by cli_report_stop). */
int cli_train_stoppable(em_model *m, const em_dataset *train, const em_dataset *test, em_train_opts *o,
                        em_train_result *result);

#endif
