/* resolver.h - asynchronous DNS (c-ares) on one worker's event loop, with a
 * cache that honours the answers' TTLs.
 *
 * One resolver per worker loop; it is used only on that loop's thread. A
 * lookup asks for A and AAAA records together (a name with only AAAA records
 * resolves), answers from the cache while the smallest TTL of the answer has
 * not expired, and asks again after that, so a host whose address changes is
 * followed without a reload. Concurrent lookups of one name share one query.
 * Numeric addresses are answered without DNS. Failures are not cached.
 *
 * Callbacks never run inside resolver_lookup(): every result is delivered
 * from the loop, after the call returned. */
#ifndef WSGATE_RESOLVER_H
#define WSGATE_RESOLVER_H

#include <ev.h>
#include <stddef.h>

#include "config.h" /* struct sockaddr_any */

#define RESOLVER_MAX_ADDRS 16     /* addresses delivered per lookup, at most */
#define RESOLVER_MAX_ENTRIES 1024 /* names cached per worker, at most */

struct resolver;
struct resolver_req;

enum resolver_status {
    RESOLVER_OK = 0,    /* naddrs >= 1 */
    RESOLVER_NOT_FOUND, /* NXDOMAIN, or no A/AAAA record (NODATA) */
    RESOLVER_FAILED,    /* timeout, server failure, refused, out of memory */
};

/* A result: addrs[0..naddrs) carry the lookup's port, in the order c-ares
 * sorted them (RFC 6724). They are valid only during the call. */
typedef void resolver_cb(void *arg, enum resolver_status st, const struct sockaddr_any *addrs,
                         size_t naddrs);

/* A resolver on loop asking server ("IPv4[:port]" or "[IPv6][:port]", as
 * config.c checks `resolver =`; NULL or "" = the system's /etc/resolv.conf). Returns 0, or -1 with
 * a message in err. Queries time out after timeout_ms per try, two tries per server. */
int resolver_new(struct ev_loop *loop, const char *server, unsigned timeout_ms,
                 struct resolver **out, char *err, size_t errlen);

/* Free r with its cache and sockets. Pending lookups are dropped: their
 * callbacks are never called (cancel them first when their owner cares). */
void resolver_free(struct resolver *r);

/* Resolve host (a name, an IPv4 address or an IPv6 address without
 * brackets) and deliver addresses with port to cb(arg, ...) later. Returns a
 * handle valid until the callback ran or resolver_cancel() was called, or
 * NULL when out of memory (then cb is never called). */
struct resolver_req *resolver_lookup(struct resolver *r, const char *host, unsigned port,
                                     resolver_cb *cb, void *arg);

/* Forget a pending lookup: its callback is never called. Not after the
 * callback ran. */
void resolver_cancel(struct resolver_req *q);

#endif
