/* backend.c - connecting to a route's backends in failover order. */
#include "backend.h"

#include <errno.h>

#include "sock.h"

/* Start at the first address of the first backend. */
void backend_cursor_init(struct backend_cursor *c, const struct backend_spec *specs, size_t n)
{
    c->specs = specs;
    c->nspecs = n;
    c->spec = 0;
    c->addr = 0;
}

/* Start connecting to the next address of the failover list. */
int backend_connect_next(struct backend_cursor *c, const struct backend_spec **spec,
                         const struct sockaddr_any **addr, int *last_err)
{
    while (c->spec < c->nspecs) {
        const struct backend_spec *b = &c->specs[c->spec];
        if (c->addr >= b->naddrs) {
            c->spec++;
            c->addr = 0;
            continue;
        }
        const struct sockaddr_any *a = &b->addrs[c->addr++];
        int fd = sock_connect(a);
        if (fd >= 0) {
            *spec = b;
            *addr = a;
            return fd;
        }
        *last_err = errno;
    }
    return -1;
}
