/* session_int.h - what session.c (the relay and the session's life) and
 * handshake.c (everything before the 101) share: the session struct and the
 * few functions each calls in the other. Not for other modules. */
#ifndef WSGATE_SESSION_INT_H
#define WSGATE_SESSION_INT_H

#include <ev.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"
#include "buf.h"
#include "config.h"
#include "io.h"
#include "metrics.h"
#include "static.h"
#include "worker.h"
#include "ws.h"

#define SPANS_MAX 32
#define CLOSE_WAIT 5.0   /* seconds for the close handshake and final flushes */
#define LINGER 2.0       /* seconds to drain a client after our last byte */
#define PAUSED_PROBE 1.0 /* seconds between checks of a client we do not read */

enum client_state {
    CL_REQUEST,    /* reading the upgrade request */
    CL_WAIT,       /* request accepted, backend connecting */
    CL_OPEN,       /* WebSocket open (101 queued or sent) */
    CL_RESPONDING, /* writing an error response */
    CL_LINGER,     /* our side shut down; discarding input until EOF */
    CL_CLOSED,
};

enum backend_state { BE_NONE, BE_CONNECTING, BE_TLS, BE_OPEN, BE_CLOSED };

enum writing { W_NONE, W_OUT, W_CTL };

/* Why a session ended: who closed it and how it counts in the metrics. */
enum end_cause {
    END_CLIENT_CLOSE,
    END_CLIENT_DROP,
    END_BACKEND_EOF,
    END_BACKEND_ERROR,
    END_PROTOCOL,
    END_TIMEOUT,
    END_SHUTDOWN,
    END_HANDSHAKE,
    END_ERROR,
};

struct half {
    struct io tr; /* the transport: plain socket or TLS */
    int events;   /* what the watcher currently waits for */
    ev_io io;
};

struct span { /* buffers are at most 16 MiB */
    uint32_t off, len;
};

struct session {
    struct session *prev, *next;
    struct worker *w;
    struct config *cfg;
    const struct route *route;
    struct route_stats *stats;
    int holds_slot; /* counted in the connection limits */

    struct half cl, be;
    enum client_state cl_state;
    enum backend_state be_state;

    ev_timer timer;
    ev_tstamp timer_at; /* when the timer fires; 0 = not running */
    ev_tstamp started, last_rx, last_payload, ping_sent, closing_since, linger_since;
    ev_tstamp connect_deadline, connect_started;

    /* handshake */
    size_t head_seen;
    struct backend_cursor cursor;
    const struct backend_spec *backend;
    int connect_err; /* errno of the last failed attempt, ETIMEDOUT for a timeout */

    /* client -> backend */
    struct buf *in;
    struct span spans[SPANS_MAX];
    int nspans, span0; /* pending spans are spans[span0..nspans) */
    struct ws_decoder dec;
    struct ws_b64dec b64;
    int base64;

    /* backend -> client */
    struct buf *out;
    enum writing writing;
    uint8_t ctl[WS_MAX_SERVER_HEADER + WS_MAX_CONTROL + 2];
    size_t ctl_len, ctl_off;
    int pong_pending, ping_pending, ping_outstanding; /* a pong's payload waits in dec.ctl */

    /* closing */
    int up_done;   /* no more client payload will be relayed */
    int down_done; /* no more backend bytes will be read */
    int close_queued, close_in_flight, close_sent, close_rcvd, failing;
    uint16_t close_code;
    const char *close_reason;

    /* for the access log */
    int status;
    uint64_t bytes_up, bytes_down;
    uint64_t file_left; /* bytes of s->file still to send */
    int has_cause;
    enum end_cause cause;
    char reason[160];
    char peer[64];
    char *tls_name;                     /* verified client certificate name (malloc'd), or NULL */
    char accept[29];                    /* Sec-WebSocket-Accept of the pending 101 */
    const char *subprotocol;            /* chosen subprotocol (in cfg), or NULL */
    struct backend_spec *token_backend; /* picked by ?token=, owned */
    struct static_file file;            /* a file being sent from web_root */
};

static inline ev_tstamp session_now(struct session *s)
{
    return ev_now(s->w->loop);
}

/* This worker's counters of the session's route (s->stats must be set). */
static inline struct route_counters *session_counters(struct session *s)
{
    return &s->stats->slot[s->w->id];
}

/* session.c */
/* Record why the session ends; the first reason wins. */
void session_set_reason(struct session *s, enum end_cause cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Close one half's transport and stop its watcher. */
void session_half_close(struct session *s, struct half *h);
/* Close the backend half (its pending spans are dropped). */
void session_close_backend(struct session *s);
/* Give back the connection slot counted in the limits. */
void session_release_slot(struct session *s);
/* Mark both halves closed at once; session_rearm() then ends the session. */
void session_drop(struct session *s, enum end_cause cause, const char *why, int err);
/* Write to the client until done or the socket is full. */
void session_client_write(struct session *s);
/* Write pending payload spans to the backend. */
void session_backend_write(struct session *s);
/* Decode what the client sent, collecting payload spans for the backend. */
void session_process_input(struct session *s);

/* handshake.c */
/* Read and answer the request head (after the TLS handshake, if any). */
void handshake_read_request(struct session *s);
/* Try the next backend address; when none is left answer 502 or 504. */
void handshake_connect(struct session *s);
/* The backend socket became writable: connected, or failed. */
void handshake_connect_done(struct session *s);
/* Drive the TLS handshake with a backend. */
void handshake_backend_tls(struct session *s);
/* Send the next piece of a static file; bytes sent, 0 when the socket is
 * full, -1 after a failure (the session is dropped). */
ssize_t handshake_write_file(struct session *s);

#endif
