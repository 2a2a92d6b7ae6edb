/* tls.c - OpenSSL contexts. */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ticket.h"
#include "tlsrec.h"

static void ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
    char buf[256] = "unknown error";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, errlen, "%s %s: %s", what, file ? file : "", buf);
    ERR_clear_error();
}

/* ALPN: we speak only http/1.1 (the WebSocket upgrade). */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char proto[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, proto, sizeof(proto) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Read the key password from a file: first line, without its newline. */
static int read_password(const char *file, char *pw, size_t len, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    if (!f || !fgets(pw, (int)len, f)) {
        snprintf(err, errlen, "cannot read key_password_file %s", file);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    pw[strcspn(pw, "\r\n")] = '\0';
    return 0;
}

static int load_key(SSL_CTX *ctx, const struct tls_settings *t, char *err, size_t errlen)
{
    const char *file = t->key ? t->key : t->cert;
    char pw[1024] = "";
    if (t->key_password_file && read_password(t->key_password_file, pw, sizeof(pw), err, errlen))
        return -1;
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open key %s", file);
        return -1;
    }
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, pw);
    fclose(f);
    OPENSSL_cleanse(pw, sizeof(pw));
    if (!pkey) {
        ssl_err(err, errlen, "cannot load key", file);
        return -1;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pkey);
    if (!ok) {
        ssl_err(err, errlen, "key does not match the certificate:", file);
        return -1;
    }
    return 0;
}

/* What every server context gets, whatever the certificate: resumption by
 * stateless session tickets sealed with the process-wide keys of ticket.c
 * (one ticket after a TLS 1.3 handshake instead of OpenSSL's two: one write
 * less; no server-side session cache, so resumption costs no memory), or no
 * resumption at all when session_tickets is off; and read/write buffers
 * released while empty, so an idle connection holds none. */
static void server_ctx_tune(SSL_CTX *ctx, const struct tls_settings *t)
{
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Read whole socket buffers at once (fewer read calls per record);
     * io_pending() sees what is read ahead. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (t->record_offload) /* the traffic secrets, for tlsrec_take() */
        SSL_CTX_set_keylog_callback(ctx, tlsrec_keylog);
    if (!t->session_tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
        return;
    }
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
}

static SSL_CTX *server_ctx(const struct tls_settings *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_err(err, errlen, "SSL_CTX_new", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, t->min_version == 1 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    server_ctx_tune(ctx, t);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
        ssl_err(err, errlen, "cannot load certificate", t->cert);
        goto fail;
    }
    if (load_key(ctx, t, err, errlen) < 0)
        goto fail;
    if (t->ciphers && SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1) {
        ssl_err(err, errlen, "invalid ciphers", t->ciphers);
        goto fail;
    }
    if (t->ciphersuites && SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1) {
        ssl_err(err, errlen, "invalid ciphersuites", t->ciphersuites);
        goto fail;
    }
    if (t->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
        if (!names || SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL) != 1) {
            if (names)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            ssl_err(err, errlen, "cannot load client_ca", t->client_ca);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | (t->client_cert == 0 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
            NULL);
    }
    static const unsigned char sid[] = "wsgate";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL_CTX *backend_ctx(const struct route *r, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_err(err, errlen, "SSL_CTX_new", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (r->backend_tls_verify) {
        int ok = r->backend_ca ? SSL_CTX_load_verify_locations(ctx, r->backend_ca, NULL)
                               : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            ssl_err(err, errlen, "cannot load backend_ca", r->backend_ca);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

/* ex_data slot of a server SSL: the tls_state of the configuration it was
 * made under (the session holds that configuration). */
static int sni_index = -1;

/* True when name[0..n) is a plausible host name for SNI matching. */
static int sni_name_ok(const char *name, size_t n)
{
    if (n == 0 || n > 253 || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* Contract in tls.h. */
SSL_CTX *tls_ctx_for_name(const struct tls_state *t, const char *name)
{
    char host[256];
    if (!t || !name || t->nsni == 0)
        return t ? t->server : NULL;
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.')
        n--;
    if (!sni_name_ok(name, n))
        return t->server;
    memcpy(host, name, n);
    host[n] = '\0';
    /* Exact names first, then wildcards (whole leftmost label only). */
    static const unsigned int pass_flags[2] = {
        X509_CHECK_FLAG_NO_WILDCARDS,
        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
    };
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < t->nsni; i++) {
            X509 *cert = t->sni[i] ? SSL_CTX_get0_certificate(t->sni[i]) : NULL;
            if (cert && X509_check_host(cert, host, n, pass_flags[pass], NULL) == 1)
                return t->sni[i];
        }
    }
    return t->server;
}

/* SNI: move the connection to the certificate its name selects. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    const struct tls_state *t = SSL_get_ex_data(ssl, sni_index);
    SSL_CTX *ctx = tls_ctx_for_name(t, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (ctx && ctx != SSL_get_SSL_CTX(ssl) && !SSL_set_SSL_CTX(ssl, ctx))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

/* The contexts of the [tls:NAME] sections; one that cannot be loaded keeps
 * the running configuration's context of the same NAME (kept_old set, the
 * reasons appended to err), else fails. 0 or -1. */
static int load_sni(struct tls_state *t, const struct config *cfg, const struct config *old,
                    int *kept_old, char *err, size_t errlen)
{
    t->sni = calloc(cfg->ntls_certs + 1, sizeof(*t->sni));
    if (!t->sni) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->nsni = cfg->ntls_certs;
    size_t used = *kept_old ? strlen(err) : 0;
    for (size_t i = 0; i < cfg->ntls_certs; i++) {
        const struct tls_cert *c = &cfg->tls_certs[i];
        struct tls_settings s = cfg->tls;
        s.cert = c->cert;
        s.key = c->key;
        s.key_password_file = c->key_password_file;
        char why[512];
        t->sni[i] = server_ctx(&s, why, sizeof(why));
        if (t->sni[i])
            continue;
        const struct tls_state *o = old ? old->tls_state : NULL;
        for (size_t j = 0; o && j < o->nsni && j < old->ntls_certs; j++)
            if (o->sni[j] && strcmp(old->tls_certs[j].name, c->name) == 0)
                t->sni[i] = o->sni[j];
        if (!t->sni[i]) {
            snprintf(err, errlen, "[tls:%s] %s", c->name, why);
            return -1;
        }
        SSL_CTX_up_ref(t->sni[i]);
        *kept_old = 1;
        if (used < errlen) {
            int k = snprintf(err + used, errlen - used, "%s[tls:%s] %s", used ? "; " : "", c->name,
                             why);
            used += k > 0 ? (size_t)k : 0;
        }
    }
    return 0;
}

static void tls_state_free(void *p)
{
    struct tls_state *t = p;
    if (!t)
        return;
    for (size_t i = 0; i < t->nsni; i++)
        SSL_CTX_free(t->sni[i]);
    free(t->sni);
    SSL_CTX_free(t->server);
    for (size_t i = 0; i < t->nbackend; i++)
        SSL_CTX_free(t->backend[i]);
    free(t->backend);
    free(t);
}

/* Build and attach the contexts cfg needs. */
int tls_attach(struct config *cfg, const struct config *old, int *kept_old, char *err,
               size_t errlen)
{
    *kept_old = 0;
    int need_server = 0;
    for (size_t i = 0; i < cfg->nlistens; i++)
        need_server |= cfg->listens[i].tls;
    struct tls_state *t = calloc(1, sizeof(*t));
    if (!t || !(t->backend = calloc(cfg->nroutes + 1, sizeof(*t->backend)))) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->nbackend = cfg->nroutes;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct route *r = &cfg->routes[i];
        if (!r->backend_tls)
            continue;
        t->backend[i] = backend_ctx(r, err, errlen);
        if (!t->backend[i])
            goto fail;
        if (cfg->tls.record_offload) /* backend connections are taken over too */
            SSL_CTX_set_keylog_callback(t->backend[i], tlsrec_keylog);
        r->backend_ssl_ctx = t->backend[i];
    }
    if (need_server) {
        t->server = server_ctx(&cfg->tls, err, errlen);
        if (!t->server) {
            const struct tls_state *o = old ? old->tls_state : NULL;
            if (!o || !o->server)
                goto fail;
            SSL_CTX_up_ref(o->server);
            t->server = o->server;
            *kept_old = 1;
        }
        if (sni_index < 0)
            sni_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        if (sni_index < 0) {
            snprintf(err, errlen, "SSL_get_ex_new_index failed");
            goto fail;
        }
        if (cfg->ntls_certs && load_sni(t, cfg, old, kept_old, err, errlen) < 0)
            goto fail;
        /* Set on a new context only: a kept one already has it, and other
         * threads may be using it. */
        if (!(*kept_old && old && old->tls_state && t->server == old->tls_state->server))
            SSL_CTX_set_tlsext_servername_callback(t->server, sni_cb);
    }
    /* New ticket keys at the start and on each reload; the previous key
     * still opens tickets until the next one. At the start there must be a
     * key; on a reload the running keys stay if no random bytes came. */
    if (need_server && cfg->tls.session_tickets && ticket_rotate() < 0 && !old) {
        snprintf(err, errlen, "cannot make session-ticket keys");
        goto fail;
    }
    cfg->tls_state = t;
    cfg->tls_state_free = tls_state_free;
    return 0;
fail:
    for (size_t i = 0; i < cfg->nroutes; i++)
        cfg->routes[i].backend_ssl_ctx = NULL;
    tls_state_free(t);
    return -1;
}

/* A new server-side SSL for fd. */
SSL *tls_server_ssl(const struct config *cfg, int fd)
{
    const struct tls_state *t = cfg->tls_state;
    if (!t || !t->server)
        return NULL;
    SSL *ssl = SSL_new(t->server);
    if (ssl && SSL_set_ex_data(ssl, sni_index, (void *)t) == 1 && SSL_set_fd(ssl, fd) == 1 &&
        (!cfg->tls.record_offload || tlsrec_watch(ssl, 0) == 0)) {
        SSL_set_accept_state(ssl);
        return ssl;
    }
    SSL_free(ssl);
    return NULL;
}

/* A new client-side SSL to a backend of route r. */
SSL *tls_backend_ssl(const struct route *r, const char *host, int fd)
{
    SSL *ssl = SSL_new(r->backend_ssl_ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        goto fail;
    if (SSL_CTX_get_keylog_callback(r->backend_ssl_ctx) == tlsrec_keylog &&
        tlsrec_watch(ssl, 1) < 0)
        goto fail;
    SSL_set_connect_state(ssl);
    if (host) {
        unsigned char ip[16];
        int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
        if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1)
            goto fail;
        if (r->backend_tls_verify) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
            if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1
                      : X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1)
                goto fail;
        }
    }
    return ssl;
fail:
    SSL_free(ssl);
    return NULL;
}

/* The verified client certificate's name for logs. */
void tls_peer_name(SSL *ssl, char *out, size_t len)
{
    out[0] = '\0';
    X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK)
        return;
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, out, (int)len);
    if (out[0])
        return;
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS) {
            snprintf(out, len, "%s", (const char *)ASN1_STRING_get0_data(g->d.dNSName));
            break;
        }
    }
    GENERAL_NAMES_free(sans);
}

/* True when the verified client certificate matches one of names. */
int tls_peer_allowed(SSL *ssl, char *const *names, size_t n)
{
    X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK)
        return 0;
    for (size_t i = 0; i < n; i++)
        /* The certificate's own names are literal here: a "*.corp" client
         * certificate is not every name under corp. */
        if (X509_check_host(cert, names[i], 0,
                            X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT | X509_CHECK_FLAG_NO_WILDCARDS,
                            NULL) == 1)
            return 1;
    return 0;
}
