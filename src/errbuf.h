/* errbuf.h - messages into a caller's fixed buffer (err, errlen), the way
 * parsers and loaders report what is wrong without logging. Both accept a
 * NULL err or errlen 0 (then they do nothing) and always NUL-terminate. */
#ifndef WSGATE_ERRBUF_H
#define WSGATE_ERRBUF_H

#include <stddef.h>

/* Write the message (truncated to fit). */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Append the message as one more line ending in '\n' (truncated to fit). */
void err_add_line(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
