/* Errors are values: functions return NULL or a negative status and leave a
 * message here. The message is per thread and overwritten by the next error. */
#ifndef EMBER_ERROR_H
#define EMBER_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum { EM_OK = 0, EM_ERR = -1 };

/* The message of the last error on this thread ("" when none). */
const char *ember_last_error(void);

/* Sets the message (printf-style). Returns EM_ERR so that callers can write
 * `return em_error("...")`. */
int em_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prepends context ("reading foo.idx: ") to the current message. */
int em_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void em_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
