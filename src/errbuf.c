/* errbuf.c - messages into a caller's fixed buffer. */
#include "errbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void err_set(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void err_add_line(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    size_t used = strnlen(err, errlen - 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + used, errlen - used, fmt, ap);
    va_end(ap);
    used = strnlen(err, errlen - 1);
    if (used + 1 < errlen) {
        err[used] = '\n';
        err[used + 1] = '\0';
    }
}
