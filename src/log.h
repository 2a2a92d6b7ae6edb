/* log.h - one line per event on stderr, as text or as JSON objects.
 *
 * Until log_start() lines are written directly, one write(2) each. After it,
 * log_msg and log_access never block on stderr: they format the line and put
 * it in a bounded queue (LOG_QUEUE_BYTES, LOG_QUEUE_LINES) that one writer
 * thread drains; lines never interleave. When the queue is full the line is
 * dropped and counted, and a "N log lines dropped" line takes its place in
 * the output once there is room again. The level and format are process-wide
 * settings (set at start and on reload, read atomically). */
#ifndef WSGATE_LOG_H
#define WSGATE_LOG_H

#include <stdint.h>

#include "config.h"

#define LOG_QUEUE_BYTES (1u << 20) /* queued bytes at most */
#define LOG_QUEUE_LINES 1024       /* queued lines at most */
#define LOG_SHUTDOWN_WAIT_MS 1000  /* log_shutdown waits this long for the queue */

void log_setup(enum log_level level, enum log_format format);

/* Start the writer thread (main thread, once the configuration is loaded).
 * Returns 0, or -1 with errno set (lines keep being written directly). */
int log_start(void);

/* At exit: wait up to LOG_SHUTDOWN_WAIT_MS for the queued lines to be
 * written. Returns 0 when they were (the thread is joined and later lines are
 * written directly), -1 when stderr did not take them in time (the thread,
 * maybe stuck in write(2), is left alone and later lines are dropped). */
int log_shutdown(void);

/* Lines dropped so far because the queue was full or stderr failed (for
 * wsgate_log_lines_dropped_total). Safe from any thread. */
uint64_t log_lines_dropped(void);
int log_enabled(enum log_level level);

/* Log a message at level (printf format). */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What one session did, for its access-log line. */
struct access_record {
    const char *client;      /* "ip:port" */
    const char *route;       /* route name or "-" */
    const char *backend;     /* backend spec or "-" */
    int status;              /* HTTP status of the handshake (101 when upgraded) */
    double duration;         /* seconds */
    uint64_t bytes_up;       /* client -> backend payload bytes */
    uint64_t bytes_down;     /* backend -> client payload bytes */
    int close_code;          /* WebSocket close code sent or echoed, 0 if none */
    const char *closed_by;   /* "client", "backend", "gateway" */
    const char *reason;      /* why the session ended */
    const char *client_name; /* verified TLS client certificate name, or NULL */
    const char *peer;        /* the TCP peer when it differs from client, or NULL */
};

/* Write the access-log line for a finished session (level info). */
void log_access(const struct access_record *r);

#endif
