/* listener.h - a worker's listening sockets: accept, and back off when out
 * of file descriptors.
 *
 * TCP listeners are opened by every worker with SO_REUSEPORT. Unix-socket
 * listeners and sockets passed by systemd cannot be: each exists once in the
 * process (a "shared socket", made by the main thread with
 * listeners_prepare()) and every worker watches the same fd. A unix socket
 * is closed and its file removed when the last of its holders (the
 * configuration through listeners_retain(), and the workers' listeners)
 * lets go; systemd sockets are never closed. */
#ifndef WSGATE_LISTENER_H
#define WSGATE_LISTENER_H

#include <ev.h>
#include <stdbool.h>

#include "config.h"

struct worker;
struct shared_sock;

struct listener {
    struct listener *next;
    struct worker *w;
    int fd;
    ev_io io;
    ev_timer backoff; /* re-enable accept after EMFILE/ENFILE */
    struct sockaddr_any addr;
    int tls;
    bool tls_auto;              /* listen word "auto" (with tls) */
    bool proxy;                 /* listen word "proxy": a PROXY header comes first */
    bool admin;                 /* listen word "admin": health and metrics only */
    enum listen_kind kind;      /* LISTEN_INET, LISTEN_UNIX, LISTEN_SYSTEMD */
    struct shared_sock *shared; /* unix and systemd: the process-wide socket */
    char name[120];
};

/* Open the listeners for spec on worker w: one for a TCP address (SO_REUSEPORT
 * so every worker has its own) or a unix: path (the shared socket), one per
 * matching passed socket for systemd. Returns them chained through next, or
 * NULL with a message in err. */
struct listener *listener_open(struct worker *w, const struct config *cfg,
                               const struct listen_spec *spec, char *err, size_t errlen);
/* True when l listens as spec says (same address, transport and words). */
int listener_matches(const struct listener *l, const struct listen_spec *spec);
/* The worker's accept_check timer (data = the worker): while accepts are
 * paused for max_handshakes, resume them once fewer handshakes are pending
 * in the process. */
void listeners_accept_check(struct ev_loop *loop, ev_timer *t, int revents);

/* Stop accepting and close (a shared socket: let go of it). */
void listener_close(struct listener *l);

/* Main thread, once at start: take the sockets systemd passed (LISTEN_PID =
 * our pid, LISTEN_FDS, LISTEN_FDNAMES), mark them close-on-exec and
 * non-blocking, and unset the variables. Returns how many. */
int listeners_systemd_init(void);
/* Main thread, before workers see cfg: create the unix sockets cfg names that
 * do not exist yet (mode applied; a changed mode applied to a kept one) and
 * check that every systemd spec has a passed socket. Returns 0, or -1 with
 * "FILE:LINE: listen: ..." in err (sockets made by this call are kept until
 * the next listeners_retain()). */
int listeners_prepare(const struct config *cfg, char *err, size_t errlen);
/* Main thread, after workers were told about cfg (NULL at exit): let go of
 * the unix sockets cfg does not name; each closes and its file is removed
 * once no worker listener holds it either. */
void listeners_retain(const struct config *cfg);

#endif
