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

struct route_stats;
struct tls_state;
struct token_cache;

enum log_level { WLOG_ERROR = 0, WLOG_WARN, WLOG_INFO, WLOG_DEBUG };
enum log_format { LOGF_TEXT = 0, LOGF_JSON };

/* One resolved socket address. */
struct sockaddr_any {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* A `listen =` line. */
struct listen_spec {
    char *text; /* as written, without the " tls" flag */
    struct sockaddr_any addr;
    bool tls;
    int line;
};

/* A `backend =` line: one or more resolved addresses (a host name may resolve
 * to several; they are tried in order like repeated lines). */
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
    uint32_t idle_timeout_ms;  /* 0 = never */
    uint64_t max_message_size; /* 0 = unlimited */
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
    bool backend_tls;           /* TLS to the backend */
    char *backend_ca;           /* CA file for backend_tls; NULL = system store */
    bool backend_tls_verify;    /* verify the backend certificate and host name */
    void *backend_ssl_ctx;      /* SSL_CTX for backend_tls, made by tls.c (not owned) */
    struct route_params p;
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
    bool session_tickets; /* resumption by stateless tickets (ticket.c) */
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
    struct tls_settings tls;
    struct tls_state *tls_state; /* contexts made by tls.c, freed with the config */
    void (*tls_state_free)(void *);

    struct route *routes;
    size_t nroutes;
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
/* Free what config_parse_backend() put in b (not b itself). */
void config_free_backend(struct backend_spec *b);

/* The route for a request path (query string already stripped): exact paths
 * match exactly, paths ending in '/' match everything under them (and the path
 * without its trailing slash); the longest match wins. NULL when none. */
const struct route *config_match_route(const struct config *c, const char *path, size_t len);

/* For `wsgate -t`: load FILE and print to OUT either every error, one
 * "FILE:LINE: key: message" per line, or "FILE: configuration OK". Returns 0
 * when the file is valid, 1 otherwise. */
int config_check_file(const char *file, FILE *out);

/* Print the effective configuration (defaults and inherited per-route values
 * filled in) as INI text that config_load_string() accepts; for `-t -v`. */
void config_dump(const struct config *c, FILE *out);

#endif
