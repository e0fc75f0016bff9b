#include "ember/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define EM_ERROR_CAP 1024

static _Thread_local char last_error[EM_ERROR_CAP];

const char *ember_last_error(void) { return last_error; }

void em_clear_error(void) { last_error[0] = '\0'; }

int em_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return EM_ERR;
}

int em_error_prefix(const char *fmt, ...)
{
    char previous[EM_ERROR_CAP];
    memcpy(previous, last_error, sizeof previous);
    va_list ap;
    va_start(ap, fmt);
    int written = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    size_t used = written < 0 ? 0 : (size_t)written;
    if (used < sizeof last_error - 1) {
        size_t room = sizeof last_error - 1 - used;
        size_t len = strnlen(previous, room);
        memcpy(last_error + used, previous, len);
        last_error[used + len] = '\0';
    }
    return EM_ERR;
}
