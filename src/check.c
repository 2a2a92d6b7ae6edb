/* check.c - the failure path of ASSERT. */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void check_failed(const char *file, int line, const char *expr)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "wsgate: %s:%d: assertion failed: %s\n", file, line, expr);
    if (n > 0) {
        size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
        ssize_t k = write(STDERR_FILENO, msg, len);
        (void)k;
    }
    abort();
}
