/* gate.h - the answer to a request head: a built-in endpoint (health,
 * metrics), a file under web_root, an HTTP error, or an upgrade admitted to
 * a route (origin, subprotocol, token, client certificate, drain and
 * connection limits checked). No socket I/O: the caller reads the request
 * and writes what the verdict says. */
#ifndef WSGATE_GATE_H
#define WSGATE_GATE_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "buf.h"
#include "config.h"
#include "http.h"
#include "pmd.h"
#include "iptable.h"
#include "static.h"
#include "worker.h"

/* What must finish before an admitted upgrade can dial its backend. */
enum gate_wait {
    GATE_WAIT_NONE,  /* dial now (backend names still resolve first, see gate_needs_dns) */
    GATE_WAIT_REDIS, /* look token[0..token_len) up in route->redis (redis.h) */
};

enum gate_kind {
    GATE_RESPOND,  /* write resp, then close */
    GATE_FILE,     /* write resp (the head), then file_left bytes of file */
    GATE_UPGRADE,  /* connect the backend, then send the 101 */
    GATE_PASSWORD, /* check conn->crypt off the loop, then decide again with conn->password */
};

struct gate_verdict {
    enum gate_kind kind;
    int status;              /* the HTTP status (101 for an upgrade) */
    const char *why;         /* an error's reason (for the body and the log) */
    bool failure;            /* counts in wsgate_handshake_failures_total */
    bool builtin;            /* health_path or metrics_path answered (log_health_checks) */
    struct buf *resp;        /* GATE_RESPOND, GATE_FILE: the bytes to write (NULL: out of memory) */
    struct static_file file; /* GATE_FILE: fd open while a body follows */
    uint64_t file_left;
    /* GATE_UPGRADE */
    const struct route *route;          /* also set for errors once the route is known */
    const char *subprotocol;            /* chosen (in the route's configuration) or NULL */
    char accept[29];                    /* Sec-WebSocket-Accept */
    struct backend_spec *token_backend; /* picked by ?token= (caller frees), or NULL */
    bool base64;                        /* the "base64" subprotocol was chosen */
    bool pmd;                           /* permessage-deflate agreed (route compression = on) */
    struct pmd_params pmd_params;       /* its parameters */
    char *pmd_resp; /* the Sec-WebSocket-Extensions value of the 101 (malloc'd until sent) */
    struct iptable_key ip_key; /* the route's per-address count held (holds_ip) */
    bool holds_ip;             /* release with gate_release_ip() */
    enum gate_wait wait;       /* GATE_UPGRADE: a lookup before the dial */
    char *token;               /* GATE_WAIT_REDIS: the token (gate_verdict_clear) */
    size_t token_len;
    char *detail; /* a why built from parts, malloc'd (never a token) */
};

/* The connection a request came on. */
struct gate_conn {
    const struct netaddr *client; /* the client address (DESIGN.md "Who is connecting") */
    bool admin;                   /* an admin listener: health and metrics only */
    double now;                   /* seconds (ev_now), for the per-address rate */
    /* Basic authentication: with crypt set, a password that must be hashed
     * is not checked here: the verdict is GATE_PASSWORD with *crypt filled
     * (auth.h), and the caller decides the same request again with password
     * = 1 (it matched) or -1 (it did not); the per-address rate was charged
     * the first time. crypt NULL: checked here. */
    struct auth_crypt *crypt;
    int password;
};

/* What the request asks and what it may have. The verdict's buffers come
 * from pool; an upgrade holds a connection slot (gate_release_slot). ssl is
 * the client's TLS connection or NULL. */
void gate_decide(const struct config *cfg, struct gateway *gw, SSL *ssl,
                 const struct http_request *req, struct buf_pool *pool, struct gate_verdict *v,
                 const struct gate_conn *conn);

/* The URL a local health probe should fetch for c (wsgate --health-url):
 * http://ADDR:PORT/health_path of the first admin listener when there is
 * one (health_path is served there only), else of the first listener that
 * answers plain HTTP (not tls without auto, not proxy, not unix or
 * systemd). A wildcard address (0.0.0.0, ::) becomes the loopback address.
 * Returns 0 with the URL in out[len], or -1 with the reason in out. */
int gate_health_url(const struct config *c, char *out, size_t len);

/* An error response for status (and why) in a buffer from pool (NULL when
 * out of memory). */
struct buf *gate_error_response(struct buf_pool *pool, int status, const char *why);

/* Free what the verdict holds for the dial (token_backend, token; the
 * token is wiped). Safe to call twice. */
/* Everything a verdict holds, at the session's end (v->why may point into
 * it until then). */
void gate_verdict_free(struct gate_verdict *v);
void gate_verdict_clear(struct gate_verdict *v);

/* A token target text ("host:port", "[v6]:port", "unix:/path") for route r
 * as a backend: 0 with *out (caller frees: config_free_backend + free),
 * 403 (outside allowed_backends) or 502 (not a target), with *why. A host
 * name is not resolved: (*out)->naddrs is 0, and gate_target_allowed() is
 * asked again once it is. */
int gate_token_target(const struct route *r, const char *target, struct backend_spec **out,
                      const char **why);

/* allowed_backends for a token target b (its addresses when resolved):
 * 0 = allowed or undecided until b is resolved, 403 = refused. */
int gate_target_allowed(const struct route *r, const struct backend_spec *b);

/* Give back the connection slot an upgrade verdict took. */
void gate_release_slot(struct gateway *gw, const struct route *route);

/* Give back the route's per-address count an upgrade verdict holds (no-op
 * when it holds none). */
void gate_release_ip(struct gateway *gw, struct gate_verdict *v, double now);

#endif
