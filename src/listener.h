/* listener.h - a worker's listening sockets: accept, and back off when out
 * of file descriptors. */
#ifndef WSGATE_LISTENER_H
#define WSGATE_LISTENER_H

#include <ev.h>

#include "config.h"

struct worker;

struct listener {
    struct listener *next;
    struct worker *w;
    int fd;
    ev_io io;
    ev_timer backoff; /* re-enable accept after EMFILE/ENFILE */
    struct sockaddr_any addr;
    int tls;
    char name[80];
};

/* Open a listener for spec on worker w (SO_REUSEPORT so every worker has its
 * own). Returns it, or NULL with a message in err. */
struct listener *listener_open(struct worker *w, const struct config *cfg,
                               const struct listen_spec *spec, char *err, size_t errlen);
/* True when l listens as spec says (same address and transport). */
int listener_matches(const struct listener *l, const struct listen_spec *spec);
/* Stop accepting and close. */
void listener_close(struct listener *l);

#endif
