/* edge.h - who is connecting: the client address of a request (PROXY
 * source or TCP peer, then trusted forwarding headers), the stable scope a
 * route's per-address counts are kept under, and the PROXY header sent to a
 * backend. No socket I/O, no logging. */
#ifndef WSGATE_EDGE_H
#define WSGATE_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "netaddr.h"

/* DESIGN.md's client address for req: start (the PROXY source, else the
 * TCP peer) unless start is in cfg's trusted_proxies and cfg's
 * real_ip_header lines name another (netaddr_client()). Writes *client. */
void edge_client(const struct config *cfg, const struct netaddr *start,
                 const struct http_request *req, struct netaddr *client);

/* The iptable scope of route name's per-address counts: a hash of the name
 * (so it survives reloads that reorder routes), never IPTABLE_GATEWAY. */
uint32_t edge_route_scope(const char *name);

/* What the backend PROXY header says (backend_proxy_protocol). */
struct edge_backend_hdr {
    int version;                  /* 1 or 2 */
    const struct netaddr *client; /* the client address */
    const struct netaddr *dst;    /* the incoming PROXY destination, else wsgate's local address */
    const struct http_request *req; /* its Host header is the v2 AUTHORITY (port stripped) */
    const char *tls_version;        /* the client's TLS version, or NULL when plain */
    const char *cert_name;          /* a verified client certificate's name, or NULL */
};

/* Encode h into a malloc'd buffer (*out, *len). Returns 0, or -1 when out of
 * memory. */
int edge_backend_header(const struct edge_backend_hdr *h, uint8_t **out, size_t *len);

#endif
