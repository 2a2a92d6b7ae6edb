/* check.h - invariants that stay checked in release builds.
 *
 * ASSERT(cond) costs one well-predicted branch; when cond is false it writes
 * "wsgate: FILE:LINE: assertion failed: cond" to stderr with one write(2)
 * (never through the log queue, which may be stuck) and aborts. Use it for
 * states the code must never reach, not for bad input. */
#ifndef WSGATE_CHECK_H
#define WSGATE_CHECK_H

void check_failed(const char *file, int line, const char *expr) __attribute__((noreturn));

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            check_failed(__FILE__, __LINE__, #cond);                                               \
    } while (0)

#endif
