/* outcome.h - why a session ended: who closed it, how it counts in the
 * metrics, and the reason its access-log line gives. The first reason noted
 * wins: later ones are consequences. */
#ifndef WSGATE_OUTCOME_H
#define WSGATE_OUTCOME_H

#include <stdbool.h>

#include "metrics.h"

enum end_cause {
    END_CLIENT_CLOSE,  /* the client sent a close frame */
    END_CLIENT_DROP,   /* the client went away without one */
    END_BACKEND_EOF,   /* the backend ended its stream */
    END_BACKEND_ERROR, /* the backend reset, or a read/write failed */
    END_PROTOCOL,      /* the client broke RFC 6455 */
    END_TIMEOUT,       /* a heartbeat, idle, close or transfer timeout */
    END_SHUTDOWN,      /* drain or stop */
    END_HANDSHAKE,     /* ended before the 101 (an HTTP answer or a failed handshake) */
    END_ERROR,         /* out of memory and the like */
};

struct outcome {
    bool set;
    enum end_cause cause;
    char reason[160];
};

/* Note why the session ends unless a reason is already noted. */
void outcome_note(struct outcome *o, enum end_cause cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Who closed: "client", "backend" or "gateway". */
const char *outcome_by(const struct outcome *o);

/* The wsgate_sessions_total{result} an upgraded session counts as. */
enum session_result outcome_result(const struct outcome *o);

#endif
