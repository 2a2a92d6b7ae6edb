/* tls.h - OpenSSL contexts for a configuration: the server context of the
 * "tls" listeners and one client context per backend_tls route. */
#ifndef WSGATE_TLS_H
#define WSGATE_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"

struct tls_state {
    SSL_CTX *server; /* NULL when no listener is marked tls */
    SSL_CTX **sni;   /* per [tls:NAME], parallel to cfg->tls_certs (with server) */
    size_t nsni;
    SSL_CTX **backend; /* per route (NULL where backend_tls is off) */
    size_t nbackend;
};

/* Build the contexts cfg needs and attach them to cfg (cfg->tls_state, and
 * each backend_tls route's backend_ssl_ctx); they are freed with cfg.
 * If the server certificate or key cannot be loaded and old (the running
 * configuration, may be NULL) has a server context, that one is kept and
 * *kept_old is set with the reason in err. Returns 0, or -1 with err. */
int tls_attach(struct config *cfg, const struct config *old, int *kept_old, char *err,
               size_t errlen);

/* The server context for an SNI host name (as the client sent it, may be
 * NULL): the first [tls:NAME] certificate whose own names (SAN DNS names,
 * the CN only when there are none) match it exactly, else the first whose
 * wildcard name ("*.example.com": one whole leftmost label) matches, else
 * t->server. A name that is not a host name (empty, over 253 bytes, bytes
 * other than letters, digits, '-', '_' and '.') gets t->server. */
SSL_CTX *tls_ctx_for_name(const struct tls_state *t, const char *name);

/* A new server-side SSL for fd, or NULL. The SNI callback switches it to
 * the certificate tls_ctx_for_name() picks from cfg's state. */
SSL *tls_server_ssl(const struct config *cfg, int fd);
/* A new client-side SSL to a backend of route r (SNI and host name check
 * for host, which may be NULL for Unix sockets), or NULL. */
SSL *tls_backend_ssl(const struct route *r, const char *host, int fd);

/* The verified client certificate's subject name for logs ("CN" or first SAN
 * DNS name) into out; "" when none. */
void tls_peer_name(SSL *ssl, char *out, size_t len);
/* True when the verified client certificate matches one of names (CN or SAN
 * DNS names). False without a certificate or when it was not verified (no
 * client_ca, or client_cert = optional and none sent): a route with
 * allowed_client_names then answers 403. */
int tls_peer_allowed(SSL *ssl, char *const *names, size_t n);

#endif
