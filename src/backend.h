/* backend.h - connecting to a route's backends in failover order. */
#ifndef WSGATE_BACKEND_H
#define WSGATE_BACKEND_H

#include <stddef.h>

#include "config.h"

/* Position in a failover list: every address of every backend, in order. */
struct backend_cursor {
    const struct backend_spec *specs;
    size_t nspecs;
    size_t spec; /* index into route->backends */
    size_t addr; /* index into that backend's addrs */
};

void backend_cursor_init(struct backend_cursor *c, const struct backend_spec *specs, size_t n);

/* Start a non-blocking connect to the next address, skipping addresses that
 * fail at once. Returns the fd (connect possibly in progress) and sets *spec
 * and *addr to what it connects to, or -1 when the list is exhausted; *last_err
 * gets the errno of the last immediate failure. */
int backend_connect_next(struct backend_cursor *c, const struct backend_spec **spec,
                         const struct sockaddr_any **addr, int *last_err);

#endif
