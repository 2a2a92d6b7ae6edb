/* tls.h - OpenSSL contexts for a configuration: the server context of the
 * "tls" listeners and one client context per backend_tls route. */
#ifndef WSGATE_TLS_H
#define WSGATE_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"

struct tls_state {
    SSL_CTX *server;   /* NULL when no listener is marked tls */
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

/* A new server-side SSL for fd, or NULL. */
SSL *tls_server_ssl(const struct config *cfg, int fd);
/* A new client-side SSL to a backend of route r (SNI and host name check
 * for host, which may be NULL for Unix sockets), or NULL. */
SSL *tls_backend_ssl(const struct route *r, const char *host, int fd);

/* The verified client certificate's subject name for logs ("CN" or first SAN
 * DNS name) into out; "" when none. */
void tls_peer_name(SSL *ssl, char *out, size_t len);
/* True when the verified client certificate matches one of names (CN or SAN
 * DNS names). */
int tls_peer_allowed(SSL *ssl, char *const *names, size_t n);

#endif
