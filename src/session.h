/* session.h - one client connection: upgrade, backend connect, and the relay
 * between a WebSocket client and a TCP backend. */
#ifndef WSGATE_SESSION_H
#define WSGATE_SESSION_H

#include "config.h"

struct worker;
struct session;

/* Take over an accepted client socket fd (TLS on it when tls is set). */
void session_start(struct worker *w, int fd, const struct sockaddr_any *peer, int tls);

/* Begin an orderly stop of a session: close 1001 "going away" once its
 * pending data is flushed (connections still in the handshake are closed). */
void session_go_away(struct session *s);

/* Close a session now, whatever its state (the gateway is shutting down). */
void session_abort(struct session *s, const char *why);

/* The next session of a worker's list (for iteration that may free). */
struct session *session_next(struct session *s);

#endif
