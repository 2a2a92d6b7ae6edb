/* benchutil.h - small helpers shared by the benchmark load generator and echo
 * backend: clocks, limits, sockets and address parsing. */
#ifndef WSGATE_BENCHUTIL_H
#define WSGATE_BENCHUTIL_H

#include <stdint.h>
#include <sys/socket.h>

/* Monotonic clock in nanoseconds. */
uint64_t bench_now_ns(void);

/* Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit. */
long bench_raise_nofile(void);

/* Put fd in non-blocking mode; returns 0 or -1 with errno set. */
int bench_set_nonblock(int fd);

/* Parse "HOST:PORT" or "[V6]:PORT" (numeric host, or "localhost") into *ss
 * and *len. Returns 0, or -1 when the text is not such an address. */
int bench_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len);

/* Print "prog: message" and the errno text when err != 0 to stderr, exit 1. */
_Noreturn void bench_die(const char *prog, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
