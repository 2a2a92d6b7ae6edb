/* session.h - one client connection: upgrade, backend connect, and the relay
 * between a WebSocket client and a TCP backend. */
#ifndef WSGATE_SESSION_H
#define WSGATE_SESSION_H

#include "config.h"

struct worker;
struct session;

/* What the listener a connection came on says about it. */
enum {
    SESSION_TLS = 1,      /* TLS from the first byte (after a PROXY header) */
    SESSION_TLS_AUTO = 2, /* TLS when the first byte is 0x16, else plain */
    SESSION_PROXY = 4,    /* a PROXY protocol header comes first */
    SESSION_ADMIN = 8,    /* an admin listener: health and metrics only */
};

/* Take over an accepted client socket fd and one handshake slot the caller
 * counted in w->gw->handshaking (both released whatever happens). flags:
 * SESSION_* bits. A connection over [gateway] max_connections_per_ip is
 * closed at once (on a proxy listener: once its header names the client). */
void session_start(struct worker *w, int fd, const struct sockaddr_any *peer, unsigned flags);

/* The recording queue has drained: w's sessions waiting for it read again. */
void session_record_drained(struct worker *w);
/* Begin an orderly stop of a session: close 1001 "going away" once its
 * pending data is flushed (connections still in the handshake are closed). */
void session_go_away(struct session *s);

/* Close a session now, whatever its state (the gateway is shutting down). */
void session_abort(struct session *s, const char *why);

/* The next session of a worker's list (for iteration that may free). */
struct session *session_next(struct session *s);

#endif
