/* dial.c - connecting a session to its backend (see dial.h). */
#include "dial.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"
#include "log.h"
#include "sock.h"
#include "tls.h"

/* Note a failed attempt and close its socket. */
static void attempt_failed(struct dial *d, int err, const char *why)
{
    log_msg(WLOG_INFO, "%s: route %s: backend %s: %s", d->who, d->route->name, d->backend->text,
            why ? why : strerror(err));
    d->err = err;
    io_close(d->tr);
}

/* Drive the TLS handshake with the backend: DIAL_TLS (waiting), DIAL_UP,
 * or DIAL_FAILED for this attempt (its socket is closed). */
static enum dial_state tls_step(struct dial *d)
{
    char why[300];
    int hs = io_handshake(d->tr, why, sizeof(why));
    if (hs == 0)
        return DIAL_TLS;
    if (hs > 0)
        return DIAL_UP;
    char msg[340];
    snprintf(msg, sizeof(msg), "TLS handshake failed: %s", why);
    attempt_failed(d, ECONNREFUSED, msg);
    return DIAL_FAILED;
}

/* backend_proxy_protocol: the PROXY header goes first, before any byte of
 * the client's and before TLS. The connection is new, so its send buffer
 * takes the whole header at once. Returns 0, or -1 (attempt failed). */
static int send_proxy_header(struct dial *d)
{
    if (!d->pp)
        return 0;
    ssize_t n = send(d->tr->fd, d->pp, d->pp_len, MSG_NOSIGNAL);
    if (n == (ssize_t)d->pp_len)
        return 0;
    attempt_failed(d, n < 0 ? errno : EIO, n < 0 ? NULL : "short write of the PROXY header");
    return -1;
}

/* The connection to d->backend is up: TLS over it when the route wants it.
 * Returns as tls_step() does. */
static enum dial_state attempt_up(struct dial *d, const struct sockaddr_any *addr)
{
    sock_tune(d->tr->fd, addr);
    if (send_proxy_header(d) < 0)
        return DIAL_FAILED;
    if (!d->route->backend_tls)
        return DIAL_UP;
    d->tr->ssl = tls_backend_ssl(d->route, d->backend->host, d->tr->fd);
    if (!d->tr->ssl) {
        attempt_failed(d, ECONNREFUSED, "cannot set up TLS");
        return DIAL_FAILED;
    }
    return tls_step(d);
}

/* Start the next address; addresses that fail at once are skipped. */
static enum dial_state next_address(struct dial *d, ev_tstamp now)
{
    while (d->spec < d->nspecs) {
        const struct backend_spec *b = &d->specs[d->spec];
        if (d->addr >= b->naddrs) {
            d->spec++;
            d->addr = 0;
            continue;
        }
        const struct sockaddr_any *a = &b->addrs[d->addr++];
        d->backend = b;
        int fd = sock_connect(a);
        if (fd < 0) {
            attempt_failed(d, errno, NULL);
            continue;
        }
        d->tr->fd = fd;
        d->deadline = now + d->route->p.connect_timeout_ms / 1000.0;
        /* A Unix socket or a loopback backend has usually connected
         * already: go on now rather than after a round of the loop. */
        int rc = sock_connect_check(fd, a);
        if (rc < 0) {
            attempt_failed(d, errno, NULL);
            continue;
        }
        enum dial_state st = rc > 0 ? attempt_up(d, a) : DIAL_CONNECTING;
        if (st != DIAL_FAILED)
            return d->state = st;
    }
    return d->state = DIAL_FAILED;
}

enum dial_state dial_start(struct dial *d, const struct route *route,
                           const struct backend_spec *specs, size_t n, struct io *tr,
                           const char *who, ev_tstamp now)
{
    const uint8_t *pp = d->pp;
    size_t pp_len = d->pp_len;
    memset(d, 0, sizeof(*d));
    d->pp = pp;
    d->pp_len = pp_len;
    d->route = route;
    d->specs = specs;
    d->nspecs = n;
    d->tr = tr;
    d->who = who;
    d->err = ECONNREFUSED;
    d->started = ev_time();
    return next_address(d, now);
}

enum dial_state dial_resume(struct dial *d, ev_tstamp now)
{
    ASSERT(d->state == DIAL_CONNECTING || d->state == DIAL_TLS);
    enum dial_state st;
    if (d->state == DIAL_TLS) {
        st = tls_step(d);
    } else {
        int err = sock_error(d->tr->fd);
        if (err)
            attempt_failed(d, err, NULL);
        st = err ? DIAL_FAILED : attempt_up(d, &d->backend->addrs[d->addr - 1]);
    }
    return st == DIAL_FAILED ? next_address(d, now) : (d->state = st);
}

enum dial_state dial_timeout(struct dial *d, ev_tstamp now)
{
    if (d->tr->fd >= 0)
        attempt_failed(d, ETIMEDOUT, "connect timeout");
    return next_address(d, now);
}

int dial_events(const struct dial *d)
{
    return d->state == DIAL_CONNECTING ? EV_WRITE : io_events(d->tr, EV_READ);
}
