/* dial.h - connecting a session to its backend: every address of every
 * backend line in failover order, each attempt bounded by the route's
 * connect_timeout, TLS to the backend when the route asks for it.
 *
 * The dialer drives the session's backend transport (its fd and SSL) and
 * never touches the session's watchers: the caller stops its backend
 * watcher before each dial_* call (an attempt that fails closes its fd) and
 * watches d->tr->fd afterwards for io_events(d->tr, dial_events(d)). */
#ifndef WSGATE_DIAL_H
#define WSGATE_DIAL_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "io.h"

enum dial_state {
    DIAL_CONNECTING, /* TCP/Unix connect in progress */
    DIAL_TLS,        /* TLS handshake with the backend in progress */
    DIAL_UP,         /* connected (and TLS up): relay */
    DIAL_FAILED,     /* every address failed: err says how (ETIMEDOUT = 504) */
};

struct dial {
    const struct route *route;
    const struct backend_spec *specs;
    size_t nspecs, spec, addr;          /* the next address: specs[spec].addrs[addr] */
    const struct backend_spec *backend; /* the backend being tried or connected */
    struct io *tr;
    const char *who; /* the client, for log lines */
    enum dial_state state;
    int err;            /* errno of the last failed attempt */
    ev_tstamp deadline; /* of the attempt in progress */
    ev_tstamp started;  /* of the first attempt */
    const uint8_t *pp;  /* backend_proxy_protocol: header sent first on every attempt (set */
    size_t pp_len;      /* before dial_start, which keeps it; NULL = none) */
};

/* Start with the first address of specs[0..n). tr is the session's backend
 * transport (fd -1). Returns the new state. */
enum dial_state dial_start(struct dial *d, const struct route *route,
                           const struct backend_spec *specs, size_t n, struct io *tr,
                           const char *who, ev_tstamp now);
/* The backend fd became ready: finish the connect or go on with TLS. */
enum dial_state dial_resume(struct dial *d, ev_tstamp now);
/* The attempt in progress passed its deadline: try the next address. */
enum dial_state dial_timeout(struct dial *d, ev_tstamp now);
/* The watcher events the attempt in progress waits for. */
int dial_events(const struct dial *d);

#endif
