/* log.h - one line per event on stderr, as text or as JSON objects.
 *
 * Each line is written with a single write(2) so lines from several worker
 * threads never interleave. The level and format are process-wide settings
 * (set at start and on reload, read atomically). */
#ifndef WSGATE_LOG_H
#define WSGATE_LOG_H

#include <stdint.h>

#include "config.h"

void log_setup(enum log_level level, enum log_format format);
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
};

/* Write the access-log line for a finished session (level info). */
void log_access(const struct access_record *r);

#endif
