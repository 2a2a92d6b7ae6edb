/* config.h - the parsed, immutable, refcounted wsgate configuration.
 *
 * A configuration is built once from an INI file (or from the websockify-style
 * command line) and never changed afterwards; sessions hold a reference to the
 * configuration they started under. All durations are in milliseconds. */
#ifndef WSGATE_CONFIG_H
#define WSGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "netaddr.h"

struct route_stats;
struct route_table;
struct tls_state;
struct token_cache;
struct jwt_verifier;
struct basic_auth_cache;
struct backend_pattern;
struct redis_target;

enum log_level { WLOG_ERROR = 0, WLOG_WARN, WLOG_INFO, WLOG_DEBUG };
enum log_format { LOGF_TEXT = 0, LOGF_JSON };

/* One resolved socket address. */
struct sockaddr_any {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* What a listener listens on. */
enum listen_kind {
    LISTEN_INET = 0, /* host:port: one spec per address a name resolves to */
    LISTEN_UNIX,     /* unix:/path (addr is its sockaddr_un) */
    LISTEN_SYSTEMD,  /* systemd or systemd:NAME: sockets passed by systemd */
};

/* A `listen =` line (a host name gives one per address). */
struct listen_spec {
    char *text; /* the address as written (numeric for a resolved name), without the words */
    struct sockaddr_any addr; /* LISTEN_INET, LISTEN_UNIX; len 0 for systemd */
    bool tls;
    int line;
    enum listen_kind kind;
    bool tls_auto;      /* "auto" (with tls) */
    bool proxy;         /* "proxy": every connection starts with a PROXY header */
    bool admin;         /* "admin": only health_path and metrics_path */
    unsigned mode;      /* unix: permissions of the socket file ("mode=0660") */
    char *systemd_name; /* systemd:NAME; NULL = every passed socket */
};

/* A `backend =` line: one or more resolved addresses (a host name may resolve
 * to several; they are tried in order like repeated lines). A name in a
 * `backend =` line has naddrs 0: it is resolved at each connect. */
struct backend_spec {
    char *text; /* as written: "host:port", "[v6]:port" or "unix:/path" */
    char *host; /* host part (for logs and TLS SNI); NULL for unix: */
    struct sockaddr_any *addrs;
    size_t naddrs;
};

/* Settings a route may override; the [gateway] values are the defaults. */
struct route_params {
    uint32_t connect_timeout_ms;
    uint32_t ping_interval_ms; /* 0 = never */
    uint32_t pong_timeout_ms;
    uint32_t idle_timeout_ms;         /* 0 = never */
    uint64_t max_message_size;        /* 0 = unlimited */
    char *record;                     /* recording directory (its realpath), or NULL = off */
    int record_format;                /* enum record_format (record.h): 0 raw, 1 asciicast */
    bool compression;                 /* permessage-deflate when the client offers it */
    uint32_t compression_level;       /* zlib level 0..9 */
    uint32_t compression_window_bits; /* 9..15: server window, client window asked for */
    /* Access (DESIGN "Access that scales out"); strings and lists are owned
     * by each route_params (inherited values are copies). */
    char *token_jwt_key;         /* key file, or NULL */
    char **token_jwt_algorithms; /* allow-list, with token_jwt_key */
    size_t ntoken_jwt_algorithms;
    char *token_jwt_audience;     /* NULL = aud not checked */
    char *token_jwt_issuer;       /* NULL = iss not checked */
    uint32_t token_jwt_leeway_ms; /* clock skew for exp/nbf */
    char *token_cookie;           /* cookie name to take the token from, or NULL */
    char *basic_auth_file;        /* "user:hash" file, or NULL */
    char **allowed_backends;      /* as written; parsed in route->allowed */
    size_t nallowed_backends;
    char *token_redis;               /* token store source as written, or NULL */
    char *token_redis_prefix;        /* key prefix, or NULL */
    char *token_redis_password_file; /* AUTH password file, or NULL */
    uint32_t max_connections_per_ip; /* [gateway]: from accept on; route: its sessions; 0 = off */
    uint32_t handshake_rate_per_ip;  /* upgrades per second per client address; 0 = off */
};

struct route {
    char *name;
    char *path;  /* starts with '/' */
    bool prefix; /* path ends in '/': matches everything under it */
    struct backend_spec *backends;
    size_t nbackends;
    char **
        origins; /* exact origins or wildcard patterns like https://STAR.example.com (STAR = "*") */
    size_t norigins;
    char **subprotocols; /* server preference order */
    size_t nsubprotocols;
    uint32_t max_connections; /* 0 = no route limit */
    char **client_names;      /* allowed_client_names: verified client CN/SAN DNS names */
    size_t nclient_names;
    char *token_file;           /* websockify TokenFile source, or NULL */
    struct token_cache *tokens; /* its cache (token.h), when token_file is set */
    struct redis_target *redis; /* parsed p.token_redis with prefix and password (redis_target.h) */
    bool backend_tls;           /* TLS to the backend */
    char *backend_ca;           /* CA file for backend_tls; NULL = system store */
    bool backend_tls_verify;    /* verify the backend certificate and host name */
    void *backend_ssl_ctx;      /* SSL_CTX for backend_tls, made by tls.c (not owned) */
    struct netcidr *allowed_networks; /* client address outside -> 403; none = any */
    size_t nallowed_networks;
    int backend_proxy_protocol; /* 0 off, 1 v1, 2 v2 (the version) */
    struct route_params p;
    struct jwt_verifier *jwt;            /* with p.token_jwt_key (jwt.h) */
    struct basic_auth_cache *basic_auth; /* with p.basic_auth_file (auth.h) */
    struct backend_pattern *allowed;     /* p.allowed_backends parsed (auth.h); empty = any */
    size_t nallowed;
    char *host;                /* `host =`: exact name, "*.domain" or NULL = any host */
    size_t index;              /* position in config->routes */
    struct route_stats *stats; /* live counters, attached by the gateway (never freed by config) */
    int line;                  /* line of the [route:NAME] header */
};

/* The [tls] section. */
struct tls_settings {
    char *cert; /* PEM chain */
    char *key;
    char *client_ca;
    char *key_password_file;
    int min_version; /* 0 = TLS 1.2, 1 = TLS 1.3 */
    char *ciphers;
    char *ciphersuites;
    int client_cert;      /* with client_ca: 0 = required, 1 = optional (verified when sent) */
    bool session_tickets; /* resumption by stateless tickets (ticket.c) */
    bool record_offload;  /* TLS 1.3 records sealed by wsgate after the handshake (tlsrec.c) */
};

/* A [tls:NAME] section: another server certificate, chosen by SNI against
 * the certificate's own names. */
struct tls_cert {
    char *name; /* NAME */
    char *cert; /* PEM chain */
    char *key;  /* NULL = in the cert file */
    char *key_password_file;
    int line; /* of the [tls:NAME] header */
};

struct config {
    int refcount; /* touched only with atomic builtins */
    char *file;   /* file name, or "<command line>" */

    struct listen_spec *listens;
    size_t nlistens;
    uint32_t workers; /* 0 = one per CPU */
    uint32_t max_connections;
    uint32_t handshake_timeout_ms;
    struct route_params defaults;
    size_t buffer_size;
    enum log_level log_level;
    enum log_format log_format;
    char *web_root;      /* static files for plain GET/HEAD, or NULL */
    char *web_root_real; /* its realpath */
    char *health_path;   /* NULL = not served */
    char *metrics_path;  /* NULL = not served */
    uint32_t drain_timeout_ms;
    char *resolver; /* DNS server "IPv4[:port]" or "[IPv6][:port]"; NULL = the system's */
    struct netcidr *trusted_proxies; /* peers whose forwarding headers are believed */
    size_t ntrusted_proxies;
    int real_ip_header;      /* enum real_ip_header (netaddr.h) */
    uint32_t ipv6_prefix;    /* IPv6 clients count per this prefix for the per-IP limits */
    uint32_t max_handshakes; /* connections in their TLS/HTTP handshake at once, per process */
    bool has_admin;          /* a listener is "admin": health and metrics only there */
    bool log_health_checks;  /* access-log health_path and metrics_path requests too */
    struct tls_settings tls;
    struct tls_cert *tls_certs; /* [tls:NAME] sections in file order */
    size_t ntls_certs;
    struct tls_state *tls_state; /* contexts made by tls.c, freed with the config */
    void (*tls_state_free)(void *);

    struct route *routes;
    size_t nroutes;
    struct basic_auth_cache *basic_auth; /* [gateway] basic_auth_file: web_root files */
    struct route_table *route_table;     /* lookup index (route.c); NULL = linear scan */
};

/* Load and validate FILE. On success returns 0 and stores a configuration with
 * refcount 1 in *out. On failure returns -1 and writes one or more lines of
 * "FILE:LINE: key: message" into err (NUL-terminated; when they do not all fit
 * in errlen, whole lines are kept and the rest dropped). */
int config_load(const char *file, struct config **out, char *err, size_t errlen);

/* Same as config_load, for INI text in memory; NAME is used in messages. */
int config_load_string(const char *name, const char *text, struct config **out, char *err,
                       size_t errlen);

struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/* "30", "250ms", "30s", "5m", "1h" -> milliseconds. Returns 0 or -1. */
int config_parse_duration(const char *s, uint64_t *ms);
/* "65536", "64k", "16m", "1g" (also KiB-style "64K") -> bytes. Returns 0 or -1. */
int config_parse_size(const char *s, uint64_t *bytes);
/* Parse a listen address "host:port", "[v6]:port" or ":port" (all IPv4
 * addresses); numeric hosts only. Returns 0 or -1 with a message in err. */
int config_parse_listen(const char *s, struct sockaddr_any *addr, char *err, size_t errlen);
/* Parse a backend spec (host:port, [v6]:port, unix:/path), resolving names. */
int config_parse_backend(const char *s, struct backend_spec *b, char *err, size_t errlen);
/* Same, except that a host name is not resolved: b->host is set and
 * b->naddrs is 0 (the session resolves it at each connect, resolver.h).
 * `backend =` lines are parsed this way. */
int config_parse_backend_lazy(const char *s, struct backend_spec *b, char *err, size_t errlen);
/* Free what config_parse_backend() put in b (not b itself). */
void config_free_backend(struct backend_spec *b);

/* The route for a request: HOST is the raw Host header value (hlen bytes,
 * may be NULL = no host), PATH the request path (query string already
 * stripped). Host classes are tried in order: routes whose `host` equals the
 * normalised Host, then wildcard routes "*.domain" from the longest matching
 * suffix to the shortest (any depth below domain), then routes without a
 * host; the first class with a path match wins. A malformed Host matches only
 * routes without a host. Paths: exact paths match exactly, paths ending in
 * '/' match everything under them (and the path without its trailing slash);
 * the longest match wins. NULL when none. */
const struct route *config_match_route(const struct config *c, const char *host, size_t hlen,
                                       const char *path, size_t len);

/* Normalise a Host header value: port and IPv6 brackets removed, ASCII lower
 * case, one trailing dot dropped ("WWW.Example.COM.:8080" -> "www.example.com",
 * "[::1]:8080" -> "::1"). Writes a NUL-terminated name into out[cap]; returns
 * its length, or -1 when malformed (bad port, bare IPv6, blanks or controls)
 * or longer than cap - 1. */
int route_host_normalize(const char *in, size_t len, char *out, size_t cap);

/* Check a configured `host =` value (name, "*.domain", IPv4 or [IPv6]; no
 * port). 0, or -1 with a message in err. */
int route_host_check(const char *host, char *err, size_t errlen);

/* True when two configured host values name the same host class and key
 * (NULL and "" are both "any host"). */
bool route_same_host(const char *a, const char *b);

/* Build c->route_table from c->routes (after they are complete and valid).
 * 0, or -1 with err. */
int route_table_build(struct config *c, char *err, size_t errlen);
void route_table_free(struct route_table *t);

/* For `wsgate -t`: load FILE and print to OUT either every error, one
 * "FILE:LINE: key: message" per line, or "FILE: configuration OK". Returns 0
 * when the file is valid, 1 otherwise. */
int config_check_file(const char *file, FILE *out);

/* Print the effective configuration (defaults and inherited per-route values
 * filled in) as INI text that config_load_string() accepts; for `-t -v`. */
void config_dump(const struct config *c, FILE *out);

#endif
