#include "ember/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define EM_ERROR_CAP 1024

static _Thread_local char last_error[EM_ERROR_CAP];

const char *ember_last_error(void) { return last_error; }

void em_clear_error(void) { last_error[0] = '\0'; }

/* Both format into a local buffer first: callers pass the previous message as an
 * argument ("... (%s)", ember_last_error()), which must not be overwritten while it is
 * read. */
int em_error(const char *fmt, ...)
{
    char message[EM_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    memcpy(last_error, message, sizeof last_error);
    return EM_ERR;
}

int em_error_prefix(const char *fmt, ...)
{
    char message[EM_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    int written = vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    size_t used = written < 0 ? 0 : (size_t)written;
    if (used < sizeof message - 1) {
        size_t room = sizeof message - 1 - used;
        size_t len = strnlen(last_error, room);
        memcpy(message + used, last_error, len);
        message[used + len] = '\0';
    }
    memcpy(last_error, message, sizeof last_error);
    return EM_ERR;
}
