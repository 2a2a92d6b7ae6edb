/* config.c - INI file -> immutable, refcounted struct config.
 *
 * One declarative table (keys[] below) lists every key of every section with
 * its type, bounds, default, target field and flags; the same table drives
 * parsing, defaults, per-route inheritance, validation and config_dump().
 *
 * inih does the tokenising. It is fed by our own line reader, which counts
 * lines (Debian's inih passes no line number to the handler), sees section
 * headers (inih does not report sections without keys), and reports the
 * lines inih would reject (too long, no '=', no ']') with a precise message.
 * Every problem is collected as "FILE:LINE: key: message"; the lines are
 * sorted by line number and returned together. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "config.h"
#include "errbuf.h"
#include "addr.h"

#include <limits.h>
#include <sys/stat.h>

#include "auth.h"
#include "jwt.h"
#include "redis_target.h"
#include "token.h"

#include <ini.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#define MS_SEC 1000ull
#define MS_MIN (60 * MS_SEC)
#define MS_HOUR (60 * MS_MIN)
#define KIB 1024ull
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

#define MAX_FILE_SIZE (4 * MIB) /* a configuration file larger than this is refused */
#define MAX_CONNECTIONS 10000000u

/* ---- the key table ---------------------------------------------------- */

enum section { S_NONE, S_GATEWAY, S_TLS, S_ROUTE, S_SKIP, S_TLSCERT };

enum type {
    T_DURATION, /* "30", "250ms", "30s", "5m", "1h" -> milliseconds */
    T_SIZE,     /* "65536", "64k", "16m", "1g" -> bytes */
    T_UINT,     /* decimal number */
    T_BOOL,     /* on/off yes/no true/false 1/0 */
    T_STRING,   /* anything, stored as written */
    T_ENUM,     /* one of choices[], stored as its index (an int / enum) */
    T_PATH,     /* URL path: starts with '/', no blanks, '?' or '#' */
    T_LISTEN,   /* "host:port[ tls]", appended to an array of listen_spec */
    T_BACKEND,  /* "host:port" | "[v6]:port" | "unix:/path", appended to backend_spec[] */
    T_LIST,     /* comma list, each item checked and appended to a char *[] */
    T_NETS,     /* comma list of CIDR networks or "unix", appended to a struct netcidr[] */
};

/* Which struct a key's offset points into. */
enum base {
    B_NONE,    /* stored nowhere (feature not implemented yet): validated only */
    B_CONFIG,  /* struct config */
    B_PARAMS,  /* struct route_params: config->defaults, or route->p in a route */
    B_ROUTE,   /* struct route */
    B_TLSCERT, /* struct tls_cert: the current [tls:NAME] */
};

#define F_REPEAT 0x01u   /* may be given several times; the values accumulate */
#define F_ROUTE 0x02u    /* a [gateway] key that [route:NAME] may override */
#define F_REQUIRED 0x04u /* a [route:NAME] must set it */

struct key {
    enum section sect;
    const char *name;
    enum type type;
    enum base base;
    size_t off;        /* field offset in the base struct */
    size_t size;       /* field size (0 for B_NONE) */
    size_t off2;       /* arrays: offset of the element count */
    uint64_t min, max; /* T_DURATION (ms), T_SIZE (bytes), T_UINT; max 0 = field max */
    const char *def;   /* default, written as in the file; NULL = none */
    unsigned flags;
    const char *const *choices;                        /* T_ENUM, NULL-terminated */
    int (*check)(const char *item, char *err, size_t); /* T_LIST: one item */
};

#define MSIZE(type, m) sizeof(((type *)0)->m)
#define CFG(m) .base = B_CONFIG, .off = offsetof(struct config, m), .size = MSIZE(struct config, m)
#define PAR(m)                                                                                     \
    .base = B_PARAMS, .off = offsetof(struct route_params, m), .size = MSIZE(struct route_params, m)
#define RTE(m) .base = B_ROUTE, .off = offsetof(struct route, m), .size = MSIZE(struct route, m)
#define CFG_ARRAY(m, n) CFG(m), .off2 = offsetof(struct config, n)
#define RTE_ARRAY(m, n) RTE(m), .off2 = offsetof(struct route, n)
#define NOFIELD .base = B_NONE
#define PAR_ARRAY(m, n) PAR(m), .off2 = offsetof(struct route_params, n)
#define TCE(m)                                                                                     \
    .base = B_TLSCERT, .off = offsetof(struct tls_cert, m), .size = MSIZE(struct tls_cert, m)

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const tls_versions[] = {"1.2", "1.3", NULL};
static const char *const record_formats[] = {"raw", "asciicast", NULL}; /* enum record_format */
/* index = enum real_ip_header; "" = off */
static const char *const real_ip_headers[] = {"", "X-Forwarded-For", "Forwarded", "X-Real-IP",
                                              NULL};
static const char *const proxy_versions[] = {"off", "v1", "v2", NULL}; /* index = version */
static const char *const client_cert_modes[] = {"required", "optional", NULL};

static int check_token(const char *item, char *err, size_t errlen);
static int check_origin(const char *item, char *err, size_t errlen);
static int check_dns_name(const char *item, char *err, size_t errlen);
static int check_backend_pattern(const char *item, char *err, size_t errlen);

/* Every key of DESIGN.md's schema. Keys with F_ROUTE are listed once, under
 * [gateway]; in a [route:NAME] they override that value for the route. To
 * add a key: give it a field and a line here. */
static const struct key keys[] = {
    /* [gateway] */
    {S_GATEWAY, "listen", T_LISTEN, CFG_ARRAY(listens, nlistens), .def = "0.0.0.0:8080",
     .flags = F_REPEAT},
    {S_GATEWAY, "workers", T_UINT, CFG(workers), .max = 1024, .def = "0"},
    {S_GATEWAY, "max_connections", T_UINT, CFG(max_connections), .min = 1, .max = MAX_CONNECTIONS,
     .def = "10000"},
    {S_GATEWAY, "handshake_timeout", T_DURATION, CFG(handshake_timeout_ms), .min = 1,
     .max = MS_HOUR, .def = "10"},
    {S_GATEWAY, "connect_timeout", T_DURATION, PAR(connect_timeout_ms), .min = 1, .max = MS_HOUR,
     .def = "5", .flags = F_ROUTE},
    {S_GATEWAY, "ping_interval", T_DURATION, PAR(ping_interval_ms), .max = 24 * MS_HOUR,
     .def = "30", .flags = F_ROUTE},
    {S_GATEWAY, "pong_timeout", T_DURATION, PAR(pong_timeout_ms), .min = 1, .max = MS_HOUR,
     .def = "10", .flags = F_ROUTE},
    {S_GATEWAY, "idle_timeout", T_DURATION, PAR(idle_timeout_ms), .max = 7 * 24 * MS_HOUR,
     .def = "0", .flags = F_ROUTE},
    {S_GATEWAY, "max_message_size", T_SIZE, PAR(max_message_size), .def = "0", .flags = F_ROUTE},
    {S_GATEWAY, "buffer_size", T_SIZE, CFG(buffer_size), .min = 4 * KIB, .max = 16 * MIB,
     .def = "64k"},
    {S_GATEWAY, "web_root", T_STRING, CFG(web_root)},
    {S_GATEWAY, "health_path", T_PATH, CFG(health_path), .def = "/healthz"},
    {S_GATEWAY, "metrics_path", T_PATH, CFG(metrics_path), .def = "/metrics"},
    {S_GATEWAY, "log_level", T_ENUM, CFG(log_level), .def = "info", .choices = log_levels},
    {S_GATEWAY, "log_format", T_ENUM, CFG(log_format), .def = "text", .choices = log_formats},
    {S_GATEWAY, "log_health_checks", T_BOOL, CFG(log_health_checks), .def = "off"},
    {S_GATEWAY, "drain_timeout", T_DURATION, CFG(drain_timeout_ms), .max = 24 * MS_HOUR,
     .def = "30"},
    {S_GATEWAY, "record", T_STRING, PAR(record), .flags = F_ROUTE},
    {S_GATEWAY, "record_format", T_ENUM, PAR(record_format), .def = "raw", .flags = F_ROUTE,
     .choices = record_formats},
    {S_GATEWAY, "compression", T_BOOL, PAR(compression), .def = "off", .flags = F_ROUTE},
    {S_GATEWAY, "compression_level", T_UINT, PAR(compression_level), .max = 9, .def = "1",
     .flags = F_ROUTE},
    {S_GATEWAY, "compression_window_bits", T_UINT, PAR(compression_window_bits), .min = 9,
     .max = 15, .def = "12", .flags = F_ROUTE},
    /* access (route keys; a [gateway] value is every route's default) */
    {S_GATEWAY, "token_jwt_key", T_STRING, PAR(token_jwt_key), .flags = F_ROUTE},
    {S_GATEWAY, "token_jwt_algorithms", T_LIST,
     PAR_ARRAY(token_jwt_algorithms, ntoken_jwt_algorithms), .flags = F_ROUTE | F_REPEAT,
     .check = jwt_check_alg_name},
    {S_GATEWAY, "token_jwt_audience", T_STRING, PAR(token_jwt_audience), .flags = F_ROUTE},
    {S_GATEWAY, "token_jwt_issuer", T_STRING, PAR(token_jwt_issuer), .flags = F_ROUTE},
    {S_GATEWAY, "token_jwt_leeway", T_DURATION, PAR(token_jwt_leeway_ms), .max = MS_HOUR,
     .def = "30s", .flags = F_ROUTE},
    {S_GATEWAY, "token_cookie", T_STRING, PAR(token_cookie), .flags = F_ROUTE},
    {S_GATEWAY, "basic_auth_file", T_STRING, PAR(basic_auth_file), .flags = F_ROUTE},
    {S_GATEWAY, "allowed_backends", T_LIST, PAR_ARRAY(allowed_backends, nallowed_backends),
     .flags = F_ROUTE | F_REPEAT, .check = check_backend_pattern},
    {S_GATEWAY, "trusted_proxies", T_NETS, CFG_ARRAY(trusted_proxies, ntrusted_proxies),
     .flags = F_REPEAT},
    {S_GATEWAY, "real_ip_header", T_ENUM, CFG(real_ip_header), .def = "",
     .choices = real_ip_headers},
    {S_GATEWAY, "max_connections_per_ip", T_UINT, PAR(max_connections_per_ip),
     .max = MAX_CONNECTIONS, .def = "0", .flags = F_ROUTE},
    {S_GATEWAY, "handshake_rate_per_ip", T_UINT, PAR(handshake_rate_per_ip), .max = 1000000,
     .def = "0", .flags = F_ROUTE},
    {S_GATEWAY, "ipv6_prefix", T_UINT, CFG(ipv6_prefix), .min = 1, .max = 128, .def = "64"},
    {S_GATEWAY, "max_handshakes", T_UINT, CFG(max_handshakes), .min = 1, .max = MAX_CONNECTIONS,
     .def = "1000"},

    /* [tls] */
    {S_TLS, "cert", T_STRING, CFG(tls.cert)},
    {S_TLS, "key", T_STRING, CFG(tls.key)},
    {S_TLS, "client_ca", T_STRING, CFG(tls.client_ca)},
    {S_TLS, "key_password_file", T_STRING, CFG(tls.key_password_file)},
    {S_TLS, "min_version", T_ENUM, CFG(tls.min_version), .def = "1.2", .choices = tls_versions},
    {S_TLS, "ciphers", T_STRING, CFG(tls.ciphers)},
    {S_TLS, "ciphersuites", T_STRING, CFG(tls.ciphersuites)},
    {S_TLS, "session_tickets", T_BOOL, CFG(tls.session_tickets), .def = "on"},
    {S_TLS, "record_offload", T_BOOL, CFG(tls.record_offload), .def = "on"},
    {S_TLS, "client_cert", T_ENUM, CFG(tls.client_cert), .def = "required",
     .choices = client_cert_modes},

    /* [tls:NAME] */
    {S_TLSCERT, "cert", T_STRING, TCE(cert), .flags = F_REQUIRED},
    {S_TLSCERT, "key", T_STRING, TCE(key)},
    {S_TLSCERT, "key_password_file", T_STRING, TCE(key_password_file)},

    /* [route:NAME] (plus the F_ROUTE keys above) */
    {S_ROUTE, "path", T_PATH, RTE(path), .flags = F_REQUIRED},
    {S_ROUTE, "backend", T_BACKEND, RTE_ARRAY(backends, nbackends), .flags = F_REPEAT | F_REQUIRED},
    {S_ROUTE, "token_file", T_STRING, RTE(token_file)},
    {S_ROUTE, "allowed_origins", T_LIST, RTE_ARRAY(origins, norigins), .flags = F_REPEAT,
     .check = check_origin},
    {S_ROUTE, "subprotocols", T_LIST, RTE_ARRAY(subprotocols, nsubprotocols), .flags = F_REPEAT,
     .check = check_token},
    {S_ROUTE, "max_connections", T_UINT, RTE(max_connections), .max = MAX_CONNECTIONS, .def = "0"},
    {S_ROUTE, "allowed_client_names", T_LIST, RTE_ARRAY(client_names, nclient_names),
     .flags = F_REPEAT, .check = check_dns_name},
    {S_ROUTE, "backend_tls", T_BOOL, RTE(backend_tls), .def = "off"},
    {S_ROUTE, "backend_ca", T_STRING, RTE(backend_ca)},
    {S_ROUTE, "backend_tls_verify", T_BOOL, RTE(backend_tls_verify), .def = "on"},

    /* access that scales out: Redis token store, DNS */
    {S_GATEWAY, "token_redis", T_STRING, PAR(token_redis), .flags = F_ROUTE},
    {S_GATEWAY, "token_redis_prefix", T_STRING, PAR(token_redis_prefix), .flags = F_ROUTE},
    {S_GATEWAY, "token_redis_password_file", T_STRING, PAR(token_redis_password_file),
     .flags = F_ROUTE},
    {S_GATEWAY, "resolver", T_STRING, CFG(resolver)},
    {S_ROUTE, "allowed_networks", T_NETS, RTE_ARRAY(allowed_networks, nallowed_networks),
     .flags = F_REPEAT},
    {S_ROUTE, "backend_proxy_protocol", T_ENUM, RTE(backend_proxy_protocol), .def = "off",
     .choices = proxy_versions},
    {S_ROUTE, "host", T_STRING, RTE(host)},
};

#define NKEYS (sizeof keys / sizeof keys[0])

/* ---- small helpers ---------------------------------------------------- */

/* Parse a non-empty run of decimal digits filling all of s. 0 or -1 (also on
 * overflow). *end gets the first non-digit when end is not NULL (then trailing
 * characters are allowed). */
static int parse_digits(const char *s, uint64_t *v, const char **end)
{
    uint64_t n = 0;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    if (end != NULL)
        *end = p;
    else if (*p != '\0')
        return -1;
    *v = n;
    return 0;
}

/* Number with an optional unit from units[] (suffix -> multiplier; "" = the
 * unit of a bare number). 0 or -1 on syntax error or overflow. */
struct unit {
    const char *suffix;
    uint64_t mult;
};

static int parse_with_unit(const char *s, const struct unit *units, uint64_t *out)
{
    const char *end;
    uint64_t n;

    if (s == NULL || parse_digits(s, &n, &end) < 0)
        return -1;
    for (const struct unit *u = units; u->suffix != NULL; u++) {
        if (strcmp(end, u->suffix) != 0)
            continue;
        if (n > UINT64_MAX / u->mult)
            return -1;
        *out = n * u->mult;
        return 0;
    }
    return -1;
}

static const struct unit duration_units[] = {
    {"", MS_SEC}, {"ms", 1}, {"s", MS_SEC}, {"m", MS_MIN}, {"h", MS_HOUR}, {NULL, 0},
};

static const struct unit size_units[] = {
    {"", 1}, {"k", KIB}, {"K", KIB}, {"m", MIB}, {"M", MIB}, {"g", GIB}, {"G", GIB}, {NULL, 0},
};

/* Contract in config.h. */
int config_parse_duration(const char *s, uint64_t *ms)
{
    return parse_with_unit(s, duration_units, ms);
}

/* Contract in config.h. */
int config_parse_size(const char *s, uint64_t *bytes)
{
    return parse_with_unit(s, size_units, bytes);
}

/* n in the largest unit of units[] that divides it exactly ("30s", "64k"),
 * 0 as "0", other sizes in bytes. */
static void fmt_with_unit(uint64_t n, const struct unit *units, char *buf, size_t len)
{
    const struct unit *best = NULL;

    for (const struct unit *u = units; n != 0 && u->suffix != NULL; u++)
        if (u->suffix[0] != '\0' && n % u->mult == 0 && (best == NULL || u->mult > best->mult))
            best = u;
    if (best == NULL)
        snprintf(buf, len, "%llu", (unsigned long long)n);
    else
        snprintf(buf, len, "%llu%s", (unsigned long long)(n / best->mult), best->suffix);
}

/* A number in the unit of its key type, for messages and dumps. */
static void fmt_number(enum type t, uint64_t v, char *buf, size_t len)
{
    if (t == T_DURATION)
        fmt_with_unit(v, duration_units, buf, len);
    else if (t == T_SIZE)
        fmt_with_unit(v, size_units, buf, len);
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* Parse a T_DURATION, T_SIZE or T_UINT value. 0 or -1. */
static int parse_number(enum type t, const char *s, uint64_t *v)
{
    if (t == T_DURATION)
        return config_parse_duration(s, v);
    if (t == T_SIZE)
        return config_parse_size(s, v);
    return parse_digits(s, v, NULL);
}

/* What a number of each type is called in messages, with examples. */
static const struct {
    const char *name, *hint;
} number_text[] = {
    [T_DURATION] = {"duration", " (e.g. 30, 250ms, 30s, 5m, 1h)"},
    [T_SIZE] = {"size", " (e.g. 65536, 64k, 16m, 1g)"},
    [T_UINT] = {"number", ""},
};

/* "on/off yes/no true/false 1/0" (any case) -> *v. 0 or -1. */
static int parse_bool(const char *s, bool *v)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *v = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *v = false;
            return 0;
        }
    }
    return -1;
}

/* Subprotocol: an RFC 7230 token. */
static int check_token(const char *item, char *err, size_t errlen)
{
    for (const char *p = item; *p; p++) {
        if (!isalnum((unsigned char)*p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL) {
            err_set(err, errlen, "'%s' is not a valid subprotocol name (an HTTP token)", item);
            return -1;
        }
    }
    return 0;
}

/* Origin: "scheme://host[:port]", "null", or a wildcard origin whose host
 * starts with "*." (any subdomain of the rest). */
static int check_origin(const char *item, char *err, size_t errlen)
{
    const char *sep = strstr(item, "://");
    bool ok = sep != NULL && sep > item && isalpha((unsigned char)item[0]);

    if (strcmp(item, "null") == 0)
        return 0;
    for (const char *p = item; ok && p < sep; p++)
        ok = isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.';
    if (ok) {
        const char *host = sep + 3;
        if (strncmp(host, "*.", 2) == 0)
            host += 2;
        ok = *host != '\0' && *host != ':';
        for (const char *p = host; ok && *p; p++)
            ok = isalnum((unsigned char)*p) || strchr(".-_:[]", *p) != NULL;
    }
    if (!ok) {
        err_set(err, errlen,
                "'%s' is not an origin (scheme://host[:port] or scheme://*.domain[:port])", item);
        return -1;
    }
    return 0;
}

/* Client certificate name: a DNS name, possibly "*.domain", or a CN without
 * blanks. */
static int check_dns_name(const char *item, char *err, size_t errlen)
{
    for (const char *p = item; *p; p++) {
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) {
            err_set(err, errlen, "'%s' is not a valid name", item);
            return -1;
        }
    }
    return 0;
}

/* allowed_backends entry: CIDR, host:port, host:*, *:port. */
static int check_backend_pattern(const char *item, char *err, size_t errlen)
{
    struct backend_pattern bp;

    return auth_backend_pattern_parse(item, &bp, err, errlen);
}

/* A cookie name: an RFC 6265 token. */
static int check_cookie_name(const char *s, char *err, size_t errlen)
{
    if (check_token(s, err, errlen) < 0) {
        err_set(err, errlen, "'%s' is not a valid cookie name", s);
        return -1;
    }
    return 0;
}

/* ---- typed storage ---------------------------------------------------- */

/* Largest value a numeric field of the key can hold, and its table bounds. */
static uint64_t key_max(const struct key *k)
{
    uint64_t fmax = k->size == sizeof(uint32_t) ? UINT32_MAX : UINT64_MAX;

    return k->max != 0 && k->max < fmax ? k->max : fmax;
}

static void store_uint(void *p, size_t size, uint64_t v)
{
    if (size == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)v;
        memcpy(p, &x, sizeof x);
    } else {
        memcpy(p, &v, sizeof v);
    }
}

static uint64_t load_uint(const void *p, size_t size)
{
    if (size == sizeof(uint32_t)) {
        uint32_t x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Append one element of elsize bytes to the array described by k (pointer at
 * base+off, count at base+off2). 0 or -1 (out of memory). */
static int array_push(void *base, const struct key *k, const void *elem, size_t elsize)
{
    char *arr;
    size_t n;

    memcpy(&arr, (char *)base + k->off, sizeof arr);
    memcpy(&n, (char *)base + k->off2, sizeof n);
    char *grown = realloc(arr, (n + 1) * elsize);
    if (grown == NULL)
        return -1;
    memcpy(grown + n * elsize, elem, elsize);
    n++;
    memcpy((char *)base + k->off, &grown, sizeof grown);
    memcpy((char *)base + k->off2, &n, sizeof n);
    return 0;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Split a comma list into trimmed items, each checked by check. An empty value
 * is an empty list; an empty item is an error. *out is NULL-free on error. */
static int split_list(const char *value, int (*check)(const char *, char *, size_t), char ***out,
                      size_t *nout, char *err, size_t errlen)
{
    char **v = NULL;
    size_t n = 0;
    const char *p = value;

    *out = NULL;
    *nout = 0;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0')
        return 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        while (p < e && isspace((unsigned char)*p))
            p++;
        while (e > p && isspace((unsigned char)e[-1]))
            e--;
        if (e == p) {
            err_set(err, errlen, "empty item in the list");
            goto fail;
        }
        char *item = strndup(p, (size_t)(e - p));
        char **grown = item ? realloc(v, (n + 1) * sizeof *v) : NULL;
        if (grown == NULL) {
            free(item);
            err_set(err, errlen, "out of memory");
            goto fail;
        }
        v = grown;
        v[n++] = item;
        if (check != NULL && check(item, err, errlen) < 0)
            goto fail;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    *out = v;
    *nout = n;
    return 0;
fail:
    free_strv(v, n);
    return -1;
}

/* A route or URL path: starts with '/', no blanks, controls, '?' or '#'. */
static int check_path(const char *s, char *err, size_t errlen)
{
    if (s[0] != '/') {
        err_set(err, errlen, "'%s' must start with '/'", s);
        return -1;
    }
    for (const char *p = s; *p; p++) {
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p) || *p == '?' || *p == '#') {
            err_set(err, errlen, "'%s': no blanks, '?' or '#' in a path", s);
            return -1;
        }
    }
    return 0;
}

/* The words after a listen address: tls, auto (with tls), proxy, admin,
 * mode=0NNN (unix only). 0 or -1 with a message. */
static int parse_listen_words(const char *opt, struct listen_spec *ls, bool *mode_set, char *err,
                              size_t errlen)
{
    static const char *const words[] = {"tls", "auto", "proxy", "admin"};

    ls->mode = 0660;
    *mode_set = false;
    for (;;) {
        opt += strspn(opt, " \t");
        if (*opt == '\0')
            break;
        size_t olen = strcspn(opt, " \t");
        bool *flag[] = {&ls->tls, &ls->tls_auto, &ls->proxy, &ls->admin};
        size_t w;
        for (w = 0; w < sizeof words / sizeof words[0]; w++)
            if (olen == strlen(words[w]) && strncmp(opt, words[w], olen) == 0)
                break;
        if (w < sizeof words / sizeof words[0]) {
            if (*flag[w]) {
                err_set(err, errlen, "'%s' given twice", words[w]);
                return -1;
            }
            *flag[w] = true;
        } else if (olen > 5 && strncmp(opt, "mode=", 5) == 0 && !*mode_set) {
            char *end;
            unsigned long m = strtoul(opt + 5, &end, 8);
            if (opt[5] != '0' || end != opt + olen || olen < 8 || olen > 9 || m > 07777) {
                err_set(err, errlen, "'%.*s': expected mode=0NNN (octal, e.g. mode=0660)",
                        (int)olen, opt);
                return -1;
            }
            ls->mode = (unsigned)m;
            *mode_set = true;
        } else {
            err_set(err, errlen,
                    "unknown listen option '%.*s' (tls, auto, proxy, admin, mode=0NNN)", (int)olen,
                    opt);
            return -1;
        }
        opt += olen;
    }
    if (ls->tls_auto && !ls->tls) {
        err_set(err, errlen, "'auto' needs 'tls'");
        return -1;
    }
    if (*mode_set && ls->kind != LISTEN_UNIX) {
        err_set(err, errlen, "mode= applies to unix: listeners only");
        return -1;
    }
    return 0;
}

/* A host name (not a numeric address): every address it resolves to, as
 * listen_specs copying tmpl, numeric text. 0 or -1 with a message. */
static int resolve_listen(const char *addr, const struct listen_spec *tmpl,
                          struct listen_spec **out, size_t *nout, char *err, size_t errlen)
{
    char host[256], serv[12], num[INET6_ADDRSTRLEN];
    struct addrinfo hints, *res = NULL;
    unsigned port;
    bool v6;

    if (addr_split_hostport(addr, host, sizeof host, &port, &v6, err, errlen) < 0)
        return -1;
    if (v6 || !addr_valid_host_name(host) || addr_looks_ipv4(host))
        return config_parse_listen(addr, &(struct sockaddr_any){0}, err, errlen);
    snprintf(serv, sizeof serv, "%u", port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    int rc = getaddrinfo(host, serv, &hints, &res);
    if (rc != 0 || res == NULL) {
        err_set(err, errlen, "cannot resolve '%s': %s", host,
                rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        if (res != NULL)
            freeaddrinfo(res);
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(struct sockaddr_storage))
            continue;
        struct listen_spec ls = *tmpl;
        memcpy(&ls.addr.ss, ai->ai_addr, ai->ai_addrlen);
        ls.addr.len = ai->ai_addrlen;
        bool dup = false;
        for (size_t i = 0; i < *nout; i++)
            dup |= (*out)[i].addr.len == ls.addr.len &&
                   memcmp(&(*out)[i].addr.ss, &ls.addr.ss, ls.addr.len) == 0;
        if (dup)
            continue;
        const void *ip = ai->ai_family == AF_INET
                             ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                             : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        inet_ntop(ai->ai_family, ip, num, sizeof num);
        char text[INET6_ADDRSTRLEN + 16];
        snprintf(text, sizeof text, ai->ai_family == AF_INET ? "%s:%u" : "[%s]:%u", num, port);
        struct listen_spec *grown = realloc(*out, (*nout + 1) * sizeof *grown);
        if (grown != NULL)
            *out = grown;
        if (grown == NULL || (ls.text = strdup(text)) == NULL) {
            freeaddrinfo(res);
            err_set(err, errlen, "out of memory");
            return -1;
        }
        (*out)[(*nout)++] = ls;
    }
    freeaddrinfo(res);
    if (*nout == 0) {
        err_set(err, errlen, "'%s' resolves to no IPv4 or IPv6 address", host);
        return -1;
    }
    return 0;
}

/* "ADDR[ words]" -> one or more listen_specs (*out malloc'd, *nout of them).
 * ADDR: host:port, [v6]:port, :port, unix:/path, systemd, systemd:NAME. */
static int parse_listen_line(const struct key *k, const char *value, int line,
                             struct listen_spec **out, size_t *nout, char *err, size_t errlen)
{
    size_t alen = strcspn(value, " \t");
    char *addr = strndup(value, alen);
    struct listen_spec ls;
    bool mode_set;

    *out = NULL;
    *nout = 0;
    memset(&ls, 0, sizeof ls);
    if (addr == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    ls.line = line;
    if (strncmp(addr, "unix:", 5) == 0)
        ls.kind = LISTEN_UNIX;
    else if (strcmp(addr, "systemd") == 0 || strncmp(addr, "systemd:", 8) == 0)
        ls.kind = LISTEN_SYSTEMD;
    if (parse_listen_words(value + alen, &ls, &mode_set, err, errlen) < 0)
        goto fail;
    if (ls.kind == LISTEN_UNIX) {
        struct backend_spec b;
        memset(&b, 0, sizeof b);
        if (addr_parse_unix(addr, &b, err, errlen) < 0)
            goto fail;
        ls.addr = b.addrs[0];
        config_free_backend(&b);
    } else if (ls.kind == LISTEN_SYSTEMD) {
        const char *name = addr[7] == ':' ? addr + 8 : NULL;
        if (name != NULL && (*name == '\0' || strlen(name) > 255 || strchr(name, ':') != NULL)) {
            err_set(err, errlen, "'%s': expected systemd or systemd:NAME (a FileDescriptorName)",
                    addr);
            goto fail;
        }
        if (name != NULL && (ls.systemd_name = strdup(name)) == NULL) {
            err_set(err, errlen, "out of memory");
            goto fail;
        }
    } else if (config_parse_listen(addr, &ls.addr, err, errlen) < 0) {
        /* not numeric: a host name resolves to every address it has */
        int rc = resolve_listen(addr, &ls, out, nout, err, errlen);
        free(addr);
        return rc;
    }
    *out = malloc(sizeof ls);
    if (*out == NULL) {
        free(ls.systemd_name);
        err_set(err, errlen, "out of memory");
        goto fail;
    }
    ls.text = addr;
    (*out)[0] = ls;
    *nout = 1;
    return 0;
fail:
    free(ls.systemd_name);
    free(addr);
    return -1;
}

static void free_listen(struct listen_spec *ls)
{
    free(ls->text);
    free(ls->systemd_name);
}

/* The setters: parse value as k's type and, when field is not NULL, store it
 * (base is the struct field points into, for arrays). Each returns 0, or -1
 * with a message (without the key) in err and nothing stored. */
typedef int setter_fn(const struct key *k, void *base, void *field, const char *value, int line,
                      char *err, size_t errlen);

static int set_number(const struct key *k, void *base, void *field, const char *value, int line,
                      char *err, size_t errlen)
{
    char lo[32], hi[32];
    uint64_t v;

    if (parse_number(k->type, value, &v) < 0) {
        err_set(err, errlen, "invalid %s '%s'%s", number_text[k->type].name, value,
                number_text[k->type].hint);
        return -1;
    }
    if (v < k->min || v > key_max(k)) {
        fmt_number(k->type, k->min, lo, sizeof lo);
        fmt_number(k->type, key_max(k), hi, sizeof hi);
        err_set(err, errlen, "'%s' out of range (%s..%s)", value, lo, hi);
        return -1;
    }
    if (field != NULL)
        store_uint(field, k->size, v);
    return 0;
}

static int set_bool(const struct key *k, void *base, void *field, const char *value, int line,
                    char *err, size_t errlen)
{
    bool b;

    if (parse_bool(value, &b) < 0) {
        err_set(err, errlen, "invalid value '%s' (on or off)", value);
        return -1;
    }
    if (field != NULL)
        memcpy(field, &b, sizeof b);
    return 0;
}

_Static_assert(sizeof(enum log_level) == sizeof(int) && sizeof(enum log_format) == sizeof(int),
               "T_ENUM fields are stored as int");

static int set_enum(const struct key *k, void *base, void *field, const char *value, int line,
                    char *err, size_t errlen)
{
    char list[128] = "";

    for (int i = 0; k->choices[i] != NULL; i++) {
        if (strcasecmp(value, k->choices[i]) == 0) {
            if (field != NULL)
                memcpy(field, &i, sizeof i);
            return 0;
        }
    }
    for (int i = 0; k->choices[i] != NULL; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? " | " : "", k->choices[i]);
    }
    err_set(err, errlen, "invalid value '%s' (%s)", value, list);
    return -1;
}

/* T_STRING and T_PATH. */
static int set_string(const struct key *k, void *base, void *field, const char *value, int line,
                      char *err, size_t errlen)
{
    char *s, *old;

    if (k->type == T_PATH && (*value || (k->flags & F_REQUIRED)) &&
        check_path(value, err, errlen) < 0)
        return -1;
    if (field == NULL)
        return 0;
    if (*value == '\0') { /* an empty optional string turns its feature off */
        memcpy(&old, field, sizeof old);
        free(old);
        s = NULL;
        memcpy(field, &s, sizeof s);
        return 0;
    }
    if ((s = strdup(value)) == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    memcpy(&old, field, sizeof old);
    free(old);
    memcpy(field, &s, sizeof s);
    return 0;
}

static int set_listen(const struct key *k, void *base, void *field, const char *value, int line,
                      char *err, size_t errlen)
{
    struct listen_spec *ls;
    size_t n, done = 0;

    if (parse_listen_line(k, value, line, &ls, &n, err, errlen) < 0) {
        for (size_t i = 0; i < n; i++)
            free_listen(&ls[i]);
        free(ls);
        return -1;
    }
    while (field != NULL && done < n && array_push(base, k, &ls[done], sizeof ls[done]) == 0)
        done++;
    for (size_t i = done; i < n; i++)
        free_listen(&ls[i]);
    free(ls);
    if (field == NULL || done == n)
        return 0;
    err_set(err, errlen, "out of memory");
    return -1;
}

/* Appends every network of the comma list (all or none). */
static int set_nets(const struct key *k, void *base, void *field, const char *value, int line,
                    char *err, size_t errlen)
{
    char **items;
    size_t n;
    int rc = 0;

    if (split_list(value, NULL, &items, &n, err, errlen) < 0)
        return -1;
    struct netcidr *nets = n ? calloc(n, sizeof *nets) : NULL;
    if (n && nets == NULL) {
        err_set(err, errlen, "out of memory");
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (netcidr_parse(items[i], &nets[i], err, errlen) < 0)
            rc = -1;
    for (size_t i = 0; rc == 0 && field != NULL && i < n; i++)
        if (array_push(base, k, &nets[i], sizeof nets[i]) < 0) {
            err_set(err, errlen, "out of memory");
            rc = -1;
        }
    free(nets);
    free_strv(items, n);
    return rc;
}

static int set_backend(const struct key *k, void *base, void *field, const char *value, int line,
                       char *err, size_t errlen)
{
    struct backend_spec bs;

    if (config_parse_backend_lazy(value, &bs, err, errlen) < 0)
        return -1;
    if (field != NULL && array_push(base, k, &bs, sizeof bs) == 0)
        return 0;
    config_free_backend(&bs);
    if (field == NULL)
        return 0;
    err_set(err, errlen, "out of memory");
    return -1;
}

/* Appends every item of the comma list (all or none). */
static int set_list(const struct key *k, void *base, void *field, const char *value, int line,
                    char *err, size_t errlen)
{
    char **items;
    size_t n, done = 0;
    int rc = 0;

    if (split_list(value, k->check, &items, &n, err, errlen) < 0)
        return -1;
    if (field != NULL && n > 0) {
        /* Grow once to the final size, then push without failing. */
        char *arr;
        size_t have;
        memcpy(&arr, field, sizeof arr);
        memcpy(&have, (char *)base + k->off2, sizeof have);
        char *grown = realloc(arr, (have + n) * sizeof(char *));
        if (grown == NULL) {
            err_set(err, errlen, "out of memory");
            rc = -1;
        } else {
            memcpy(grown + have * sizeof(char *), items, n * sizeof(char *));
            have += n;
            memcpy(field, &grown, sizeof grown);
            memcpy((char *)base + k->off2, &have, sizeof have);
            done = n;
        }
    }
    if (done == n)
        free(items);
    else
        free_strv(items, n);
    return rc;
}

static setter_fn *const setters[] = {
    [T_DURATION] = set_number, [T_SIZE] = set_number,   [T_UINT] = set_number,
    [T_BOOL] = set_bool,       [T_STRING] = set_string, [T_ENUM] = set_enum,
    [T_PATH] = set_string,     [T_LISTEN] = set_listen, [T_BACKEND] = set_backend,
    [T_LIST] = set_list,       [T_NETS] = set_nets,
};

/* Parse value as k's type and, when base is not NULL, store it into the
 * field k describes. Returns 0, or -1 with a message (without key) in err. */
static int set_value(const struct key *k, void *base, const char *value, int line, char *err,
                     size_t errlen)
{
    void *field = base != NULL && k->base != B_NONE ? (char *)base + k->off : NULL;

    return setters[k->type](k, base, field, value, line, err, errlen);
}

/* ---- parser state ----------------------------------------------------- */

struct error {
    int line;
    size_t seq;
    char *msg; /* "FILE:LINE: ..." */
};

struct route_state {
    int seen[NKEYS]; /* line where each key was first set in this route; 0 = not set */
};

struct parser {
    struct config *cfg;
    const char *name; /* for messages */

    /* line reader */
    const char *p, *end;
    int line;
    int max_line;      /* longest line inih accepts */
    bool have_key;     /* a key line since the section header (inih's prev_name) */
    bool continuation; /* the current line is an indented continuation */

    /* current section */
    enum section sect;
    size_t route; /* index in cfg->routes when sect == S_ROUTE */

    int seen[NKEYS];        /* [gateway] and [tls]: line where each key was first set */
    struct route_state *rs; /* parallel to cfg->routes */
    size_t tcert;           /* index in cfg->tls_certs when sect == S_TLSCERT */
    struct route_state *ts; /* parallel to cfg->tls_certs */

    struct error *errs;
    size_t nerrs;
    bool oom;
};

/* Record "NAME:LINE: message" (line 0: "NAME: message"). */
static void add_error(struct parser *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_error(struct parser *ps, int line, const char *fmt, ...)
{
    char buf[1024];
    int n;
    va_list ap;

    if (line > 0)
        n = snprintf(buf, sizeof buf, "%s:%d: ", ps->name, line);
    else
        n = snprintf(buf, sizeof buf, "%s: ", ps->name);
    if (n < 0 || (size_t)n >= sizeof buf)
        n = 0;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);

    struct error *grown = realloc(ps->errs, (ps->nerrs + 1) * sizeof *grown);
    char *msg = strdup(buf);
    if (grown != NULL)
        ps->errs = grown;
    if (grown == NULL || msg == NULL) {
        free(msg);
        ps->oom = true;
        return;
    }
    ps->errs[ps->nerrs] = (struct error){line, ps->nerrs, msg};
    ps->nerrs++;
}

static int error_cmp(const void *a, const void *b)
{
    const struct error *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All errors sorted by line, one per line, without a trailing newline; frees
 * them. NULL when out of memory. */
static char *take_errors(struct parser *ps)
{
    size_t len = 1;
    char *out, *p;

    if (ps->oom)
        add_error(ps, 0, "out of memory");
    if (ps->nerrs == 0)
        return NULL;
    qsort(ps->errs, ps->nerrs, sizeof *ps->errs, error_cmp);
    for (size_t i = 0; i < ps->nerrs; i++)
        len += strlen(ps->errs[i].msg) + 1;
    out = p = malloc(len);
    for (size_t i = 0; i < ps->nerrs; i++) {
        if (out != NULL) {
            if (i > 0)
                *p++ = '\n';
            size_t n = strlen(ps->errs[i].msg);
            memcpy(p, ps->errs[i].msg, n);
            p += n;
        }
        free(ps->errs[i].msg);
    }
    if (out != NULL)
        *p = '\0';
    free(ps->errs);
    ps->errs = NULL;
    ps->nerrs = 0;
    return out;
}

/* inih's find_chars_or_comment(): first of chars, or an inline ';' comment
 * (one preceded by white space), or the end. */
static const char *find_chars_or_comment(const char *s, const char *chars)
{
    bool was_space = false;

    while (*s && (chars == NULL || strchr(chars, *s) == NULL) && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

static bool valid_route_name(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

/* A "[tls:NAME]" header line: a new certificate section. */
static void begin_tls_cert(struct parser *ps, const char *name, size_t len)
{
    struct config *cfg = ps->cfg;
    const char *cname = name + 4;
    size_t clen = len - 4;

    if (!valid_route_name(cname, clen)) {
        add_error(ps, ps->line,
                  "[%.*s]: a certificate name must be non-empty and use only letters, digits, "
                  "'_', '.' and '-'",
                  (int)len, name);
        return;
    }
    for (size_t i = 0; i < cfg->ntls_certs; i++) {
        if (strlen(cfg->tls_certs[i].name) == clen &&
            memcmp(cfg->tls_certs[i].name, cname, clen) == 0) {
            add_error(ps, ps->line, "[%.*s]: duplicate certificate name (first on line %d)",
                      (int)len, name, cfg->tls_certs[i].line);
            return;
        }
    }
    struct tls_cert *certs = realloc(cfg->tls_certs, (cfg->ntls_certs + 1) * sizeof *certs);
    if (certs != NULL)
        cfg->tls_certs = certs;
    struct route_state *ts = realloc(ps->ts, (cfg->ntls_certs + 1) * sizeof *ts);
    if (ts != NULL)
        ps->ts = ts;
    char *dup = strndup(cname, clen);
    if (certs == NULL || ts == NULL || dup == NULL) {
        free(dup);
        ps->oom = true;
        return;
    }
    memset(&certs[cfg->ntls_certs], 0, sizeof *certs);
    memset(&ts[cfg->ntls_certs], 0, sizeof *ts);
    certs[cfg->ntls_certs].name = dup;
    certs[cfg->ntls_certs].line = ps->line;
    ps->tcert = cfg->ntls_certs++;
    ps->sect = S_TLSCERT;
}

/* A "[NAME]" header line: switch the current section. */
static void begin_section(struct parser *ps, const char *name, size_t len)
{
    struct config *cfg = ps->cfg;
    static const char prefix[] = "route:";
    const size_t plen = sizeof prefix - 1;

    ps->sect = S_SKIP;
    if (len == 7 && memcmp(name, "gateway", 7) == 0) {
        ps->sect = S_GATEWAY;
        return;
    }
    if (len == 3 && memcmp(name, "tls", 3) == 0) {
        ps->sect = S_TLS;
        return;
    }
    if (len >= 4 && memcmp(name, "tls:", 4) == 0) {
        begin_tls_cert(ps, name, len);
        return;
    }
    if (len < plen || memcmp(name, prefix, plen) != 0) {
        add_error(ps, ps->line,
                  "[%.*s]: unknown section (expected [gateway], [tls] or [route:NAME])", (int)len,
                  name);
        return;
    }
    const char *rname = name + plen;
    size_t rlen = len - plen;
    if (!valid_route_name(rname, rlen)) {
        add_error(ps, ps->line,
                  "[%.*s]: a route name must be non-empty and use only letters, digits, '_', "
                  "'.' and '-'",
                  (int)len, name);
        return;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (strlen(cfg->routes[i].name) == rlen && memcmp(cfg->routes[i].name, rname, rlen) == 0) {
            add_error(ps, ps->line, "[%.*s]: duplicate route name (first on line %d)", (int)len,
                      name, cfg->routes[i].line);
            return;
        }
    }
    struct route *routes = realloc(cfg->routes, (cfg->nroutes + 1) * sizeof *routes);
    if (routes != NULL)
        cfg->routes = routes;
    struct route_state *rs = realloc(ps->rs, (cfg->nroutes + 1) * sizeof *rs);
    if (rs != NULL)
        ps->rs = rs;
    char *dup = strndup(rname, rlen);
    if (routes == NULL || rs == NULL || dup == NULL) {
        free(dup);
        ps->oom = true;
        return;
    }
    memset(&routes[cfg->nroutes], 0, sizeof *routes);
    memset(&rs[cfg->nroutes], 0, sizeof *rs);
    routes[cfg->nroutes].name = dup;
    routes[cfg->nroutes].line = ps->line;
    routes[cfg->nroutes].index = cfg->nroutes;
    ps->route = cfg->nroutes++;
    ps->sect = S_ROUTE;
}

/* Look at a line before inih does: section headers, continuations, and the
 * syntax errors inih would report (those lines are blanked so that it does
 * not, and every one of them gets its own message). */
static void inspect_line(struct parser *ps, char *line)
{
    char *s = line;

    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0' || *s == ';' || *s == '#')
        return;
    if (s > line && ps->have_key) {
        ps->continuation = true;
        return;
    }
    if (*s == '[') {
        const char *e = find_chars_or_comment(s + 1, "]");
        if (*e != ']') {
            add_error(ps, ps->line, "syntax error: section header without ']'");
            line[0] = '\0';
            return;
        }
        const char *rest = e + 1 + strspn(e + 1, " \t");
        if (*rest != '\0' && *rest != ';' && *rest != '#')
            add_error(ps, ps->line, "syntax error: text after the section header");
        ps->have_key = false;
        begin_section(ps, s + 1, (size_t)(e - (s + 1)));
        return;
    }
    const char *e = find_chars_or_comment(s, "=:");
    if (*e != '=' && *e != ':') {
        add_error(ps, ps->line, "syntax error: expected 'key = value'");
        line[0] = '\0';
        return;
    }
    ps->have_key = true;
}

/* inih's fgets-style reader over ps->p..ps->end: one line per call, without
 * its line ending, counted in ps->line. */
static char *read_line(char *str, int num, void *stream)
{
    struct parser *ps = stream;
    const char *line = ps->p, *nl;
    size_t len;

    if (ps->p >= ps->end || num < 2)
        return NULL;
    nl = memchr(line, '\n', (size_t)(ps->end - line));
    len = nl != NULL ? (size_t)(nl - line) : (size_t)(ps->end - line);
    ps->p = line + len + (nl != NULL);
    ps->line++;
    ps->max_line = num - 1;
    ps->continuation = false;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (ps->line == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        len -= 3;
    }
    str[0] = '\0';
    if (memchr(line, '\0', len) != NULL) {
        add_error(ps, ps->line, "syntax error: NUL byte in the line");
        return str;
    }
    if (len > (size_t)num - 1) {
        add_error(ps, ps->line, "line longer than %d characters (repeat the key instead)", num - 1);
        return str;
    }
    memcpy(str, line, len);
    str[len] = '\0';
    inspect_line(ps, str);
    return str;
}

static const char *section_name(enum section s)
{
    return s == S_GATEWAY ? "gateway" : s == S_TLS || s == S_TLSCERT ? "tls" : "route";
}

/* The key of section sect called name, NULL if none. */
static const struct key *find_key(enum section sect, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        if ((k->sect == sect || (sect == S_ROUTE && (k->flags & F_ROUTE))) &&
            strcmp(k->name, name) == 0)
            return k;
    }
    return NULL;
}

/* The struct k's offset points into, in the current section (NULL: none). */
static void *key_base(struct parser *ps, enum section sect, size_t route, const struct key *k)
{
    struct route *r = sect == S_ROUTE ? &ps->cfg->routes[route] : NULL;

    switch (k->base) {
    case B_CONFIG:
        return ps->cfg;
    case B_PARAMS:
        return r != NULL ? (void *)&r->p : (void *)&ps->cfg->defaults;
    case B_ROUTE:
        return r;
    case B_TLSCERT:
        return sect == S_TLSCERT ? &ps->cfg->tls_certs[route] : NULL;
    case B_NONE:
        break;
    }
    return NULL;
}

/* inih handler: one "name = value" line of the current section. Always
 * returns 1 (errors are collected, not reported through inih). */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parser *ps = user;
    const struct key *k;
    char msg[512];
    int *seen;

    (void)section; /* the reader tracks sections itself */
    if (ps->sect == S_SKIP)
        return 1; /* in a section already reported as wrong */
    if (ps->continuation) {
        add_error(ps, ps->line,
                  "%s: indented line continues the value: not supported (repeat the key)", name);
        return 1;
    }
    if (ps->sect == S_NONE) {
        add_error(ps, ps->line, "%s: key outside any section (put it under [gateway])", name);
        return 1;
    }
    k = find_key(ps->sect, name);
    if (k == NULL) {
        const char *where = ps->sect == S_ROUTE     ? ps->cfg->routes[ps->route].name
                            : ps->sect == S_TLSCERT ? ps->cfg->tls_certs[ps->tcert].name
                                                    : "";
        if (ps->sect != S_GATEWAY && find_key(S_GATEWAY, name) != NULL)
            add_error(ps, ps->line, "%s: only allowed in [gateway]", name);
        else if (ps->sect == S_GATEWAY && find_key(S_ROUTE, name) != NULL)
            add_error(ps, ps->line, "%s: only allowed in [route:NAME]", name);
        else
            add_error(ps, ps->line, "%s: unknown key in [%s%s%s]", name, section_name(ps->sect),
                      *where ? ":" : "", where);
        return 1;
    }
    seen = ps->sect == S_ROUTE     ? ps->rs[ps->route].seen
           : ps->sect == S_TLSCERT ? ps->ts[ps->tcert].seen
                                   : ps->seen;
    size_t ki = (size_t)(k - keys);
    if (seen[ki] != 0 && !(k->flags & F_REPEAT)) {
        add_error(ps, ps->line, "%s: duplicate key (first set on line %d)", name, seen[ki]);
        return 1;
    }
    if (seen[ki] == 0)
        seen[ki] = ps->line;
    size_t idx = ps->sect == S_TLSCERT ? ps->tcert : ps->route;
    if (set_value(k, key_base(ps, ps->sect, idx, k), value, ps->line, msg, sizeof msg) < 0)
        add_error(ps, ps->line, "%s: %s", name, msg);
    return 1;
}

/* Apply the table default of k (unset so far) to base. */
static void apply_default(struct parser *ps, const struct key *k, void *base)
{
    char msg[256];

    if (k->def == NULL || base == NULL || k->base == B_NONE)
        return;
    if (set_value(k, base, k->def, 0, msg, sizeof msg) < 0)
        add_error(ps, 0, "internal error: default of %s: %s", k->name, msg);
}

/* The TLS keys that only make sense together. */
static void tls_checks(struct parser *ps)
{
    struct config *cfg = ps->cfg;
    const struct key *key = find_key(S_TLS, "key");
    const struct key *names = find_key(S_ROUTE, "allowed_client_names");
    const struct key *ca = find_key(S_ROUTE, "backend_ca");
    for (size_t i = 0; i < cfg->nlistens; i++) {
        if (!cfg->listens[i].tls)
            continue;
        if (!cfg->tls.cert) /* the key may sit in the cert file */
            add_error(ps, cfg->listens[i].line, "listen: a 'tls' listener needs [tls] cert");
        break;
    }
    if (cfg->tls.key && !cfg->tls.cert)
        add_error(ps, ps->seen[key - keys], "key: [tls] key needs [tls] cert");
    const struct key *cc = find_key(S_TLS, "client_cert");
    if (cfg->tls.client_cert != 0 && !cfg->tls.client_ca)
        add_error(ps, ps->seen[cc - keys], "client_cert: optional needs [tls] client_ca");
    const struct key *tc = find_key(S_TLSCERT, "cert");
    for (size_t i = 0; i < cfg->ntls_certs; i++) {
        const struct tls_cert *t = &cfg->tls_certs[i];
        if (!ps->ts[i].seen[tc - keys])
            add_error(ps, t->line, "cert: [tls:%s] needs a cert", t->name);
        else if (!cfg->tls.cert)
            add_error(ps, t->line,
                      "[tls:%s]: needs a default certificate ([tls] cert, for clients without "
                      "SNI)",
                      t->name);
    }
    for (size_t r = 0; r < cfg->nroutes; r++) {
        struct route *rt = &cfg->routes[r];
        if (rt->nclient_names && !cfg->tls.client_ca)
            add_error(ps, ps->rs[r].seen[names - keys],
                      "allowed_client_names: needs [tls] client_ca (client certificates)");
        if (rt->backend_ca && !rt->backend_tls)
            add_error(ps, ps->rs[r].seen[ca - keys], "backend_ca: needs backend_tls = on");
    }
}

/* web_root and token_file must be readable now, not at the first request. */
static void file_checks(struct parser *ps)
{
    struct config *cfg = ps->cfg;
    if (cfg->web_root) {
        struct stat st;
        /* A relative web_root is relative to the file's directory. */
        const char *slash = strrchr(ps->name, '/');
        char joined[PATH_MAX];
        const char *root = cfg->web_root;
        if (root[0] != '/' && slash && ps->name[0] != '<' &&
            snprintf(joined, sizeof(joined), "%.*s/%s", (int)(slash - ps->name), ps->name, root) <
                (int)sizeof(joined))
            root = joined;
        cfg->web_root_real = realpath(root, NULL);
        if (!cfg->web_root_real || stat(cfg->web_root_real, &st) < 0 || !S_ISDIR(st.st_mode))
            add_error(ps, ps->seen[find_key(S_GATEWAY, "web_root") - keys],
                      "web_root: '%s' is not a readable directory", cfg->web_root);
    }
    const struct key *tk = find_key(S_ROUTE, "token_file");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        struct route *rt = &cfg->routes[r];
        if (!rt->token_file)
            continue;
        char msg[256] = "";
        /* Read and resolved here, once; then re-read by the watcher thread. */
        if (token_cache_open(rt->token_file, &rt->tokens, msg, sizeof(msg)) < 0) {
            msg[strcspn(msg, "\n")] = '\0'; /* one line per error */
            add_error(ps, ps->rs[r].seen[tk - keys], "token_file: %s", msg);
            continue;
        }
    }
}

/* A `record` directory set on line `line` must be a writable directory now;
 * *dir becomes its realpath (relative paths are relative to the file's
 * directory). With report false a bad value is only left as it is (its
 * error is reported where it was set). */
static void record_dir_check(struct parser *ps, char **dir, int line, bool report)
{
    struct stat st;
    const char *slash = strrchr(ps->name, '/');
    char joined[PATH_MAX];
    const char *path = *dir;

    if (path == NULL)
        return;
    if (path[0] != '/' && slash && ps->name[0] != '<' &&
        snprintf(joined, sizeof(joined), "%.*s/%s", (int)(slash - ps->name), ps->name, path) <
            (int)sizeof(joined))
        path = joined;
    char *real = realpath(path, NULL);
    if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode) || access(real, W_OK | X_OK) < 0) {
        if (report)
            add_error(ps, line, "record: '%s' is not a writable directory", *dir);
        free(real);
        return;
    }
    free(*dir);
    *dir = real;
}

/* Copy the [gateway] value of the F_ROUTE key k into a route's params:
 * strings and lists are duplicated (each route_params owns its own). */
static void inherit_param(struct parser *ps, const struct key *k, struct route_params *dst,
                          const struct route_params *src)
{
    char *d = (char *)dst + k->off;

    memcpy(d, (const char *)src + k->off, k->size);
    if (k->type == T_STRING || k->type == T_PATH) {
        char *v;
        memcpy(&v, d, sizeof v);
        if (v != NULL && (v = strdup(v)) == NULL)
            ps->oom = true;
        memcpy(d, &v, sizeof v);
    } else if (k->type == T_LIST) {
        char **v, **copy = NULL;
        size_t n;
        memcpy(&v, d, sizeof v);
        memcpy(&n, (const char *)src + k->off2, sizeof n);
        if (n > 0 && (copy = calloc(n, sizeof *copy)) == NULL)
            ps->oom = true;
        for (size_t i = 0; copy != NULL && i < n; i++)
            if ((copy[i] = strdup(v[i])) == NULL)
                ps->oom = true;
        if (copy == NULL)
            n = 0;
        memcpy(d, &copy, sizeof copy);
        memcpy((char *)dst + k->off2, &n, sizeof n);
    }
}

/* Free the strings and lists of a route_params (the table says which). */
static void free_params(struct route_params *p)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        if (k->base != B_PARAMS)
            continue;
        char *f = (char *)p + k->off;
        if (k->type == T_STRING || k->type == T_PATH) {
            char *v;
            memcpy(&v, f, sizeof v);
            free(v);
        } else if (k->type == T_LIST) {
            char **v;
            size_t n;
            memcpy(&v, f, sizeof v);
            memcpy(&n, (char *)p + k->off2, sizeof n);
            free_strv(v, n);
        }
    }
}

/* The line a key got its value from in route r: the route's own line, else
 * [gateway]'s, else the route header. */
static int key_line(struct parser *ps, size_t r, const char *name)
{
    const struct key *k = find_key(S_ROUTE, name);
    size_t i = (size_t)(k - keys);

    if (ps->rs[r].seen[i])
        return ps->rs[r].seen[i];
    return ps->seen[i] ? ps->seen[i] : ps->cfg->routes[r].line;
}

/* Access keys (DESIGN "Access that scales out"): one token source per
 * route and no backend lines with it; the JWT key and basic_auth_file are
 * loaded now, so a bad one is a configuration error. */
static void access_checks(struct parser *ps)
{
    struct config *cfg = ps->cfg;
    char msg[512];

    if (cfg->defaults.basic_auth_file) {
        msg[0] = '\0';
        cfg->basic_auth = basic_auth_cache_new(cfg->defaults.basic_auth_file, msg, sizeof msg);
        if (cfg->basic_auth == NULL)
            ps->oom = true;
    }
    for (size_t r = 0; r < cfg->nroutes; r++) {
        struct route *rt = &cfg->routes[r];
        const struct route_params *p = &rt->p;
        /* Token sources, in DESIGN's order; token_redis: add its row here. */
        const struct {
            const char *key;
            bool set;
        } sources[] = {
            {"token_file", rt->token_file != NULL},
            {"token_jwt_key", p->token_jwt_key != NULL},
        };
        const char *source = NULL;
        for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) {
            if (!sources[i].set)
                continue;
            if (source != NULL)
                add_error(ps, key_line(ps, r, sources[i].key),
                          "%s: route '%s' already has a token source (%s); at most one",
                          sources[i].key, rt->name, source);
            else
                source = sources[i].key;
        }
        if (source != NULL && rt->nbackends > 0)
            add_error(ps, ps->rs[r].seen[find_key(S_ROUTE, "backend") - keys],
                      "backend: route '%s' takes its backend from %s; remove the backend lines",
                      rt->name, source);
        if (p->token_jwt_key) {
            struct jwt_settings js = {
                .algorithms = p->token_jwt_algorithms,
                .nalgorithms = p->ntoken_jwt_algorithms,
                .audience = p->token_jwt_audience,
                .issuer = p->token_jwt_issuer,
                .leeway_ms = p->token_jwt_leeway_ms,
            };
            size_t ai = (size_t)(find_key(S_ROUTE, "token_jwt_algorithms") - keys);
            int aline = ps->rs[r].seen[ai] ? ps->rs[r].seen[ai] : ps->seen[ai];
            bool reported = false; /* a bad value on that line, already an error */
            for (size_t e = 0; aline && e < ps->nerrs; e++)
                reported = reported || ps->errs[e].line == aline;
            if (p->ntoken_jwt_algorithms == 0 && reported)
                ;
            else if (p->ntoken_jwt_algorithms == 0)
                add_error(ps, key_line(ps, r, "token_jwt_key"),
                          "token_jwt_algorithms: required with token_jwt_key (route '%s')",
                          rt->name);
            else if (jwt_verifier_new(p->token_jwt_key, &js, &rt->jwt, msg, sizeof msg) < 0)
                add_error(ps, key_line(ps, r, "token_jwt_key"), "token_jwt_key: %s", msg);
        } else if (ps->rs[r].seen[find_key(S_ROUTE, "token_jwt_algorithms") - keys]) {
            add_error(ps, ps->rs[r].seen[find_key(S_ROUTE, "token_jwt_algorithms") - keys],
                      "token_jwt_algorithms: needs token_jwt_key");
        }
        if (p->token_cookie && check_cookie_name(p->token_cookie, msg, sizeof msg) < 0)
            add_error(ps, key_line(ps, r, "token_cookie"), "token_cookie: %s", msg);
        if (p->basic_auth_file) {
            struct basic_auth *t = NULL;
            if (basic_auth_load(p->basic_auth_file, &t, msg, sizeof msg) < 0) {
                msg[strcspn(msg, "\n")] = '\0';
                add_error(ps, key_line(ps, r, "basic_auth_file"), "basic_auth_file: %s", msg);
            }
            basic_auth_free(t);
            if ((rt->basic_auth = basic_auth_cache_new(p->basic_auth_file, msg, sizeof msg)) ==
                NULL)
                ps->oom = true;
        }
        if (p->nallowed_backends > 0) {
            rt->allowed = calloc(p->nallowed_backends, sizeof *rt->allowed);
            if (rt->allowed == NULL) {
                ps->oom = true;
                continue;
            }
            for (size_t i = 0; i < p->nallowed_backends; i++)
                if (auth_backend_pattern_parse(p->allowed_backends[i], &rt->allowed[i], NULL, 0) ==
                    0) /* checked when read */
                    rt->nallowed++;
        }
    }
}

/* The token_redis a route will have: its own, else the [gateway] one. */
static const char *route_token_redis(struct parser *ps, size_t r)
{
    const struct key *k = find_key(S_GATEWAY, "token_redis");

    return ps->rs[r].seen[k - keys] ? ps->cfg->routes[r].p.token_redis
                                    : ps->cfg->defaults.token_redis;
}

/* A route that does not set string key k gets its own copy of [gateway]'s. */
static void inherit_string(struct parser *ps, const struct key *k, struct route *rt)
{
    const char *def;
    char *copy = NULL;

    memcpy(&def, (char *)&ps->cfg->defaults + k->off, sizeof def);
    if (def != NULL && (copy = strdup(def)) == NULL)
        ps->oom = true;
    memcpy((char *)&rt->p + k->off, &copy, sizeof copy);
}

/* The line where route r's key k was set, else where [gateway] set it. */
static int route_key_line(struct parser *ps, size_t r, const char *name)
{
    const struct key *k = find_key(S_GATEWAY, name);
    int line = ps->rs[r].seen[k - keys];

    return line ? line : ps->seen[k - keys];
}

static int read_file(const char *file, char **buf, size_t *len);

/* Read a secret file: its content minus one trailing newline, non-empty,
 * without NUL bytes. NULL with err set otherwise. */
static char *read_secret(const char *file, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t len = 0;

    if (read_file(file, &buf, &len) < 0) {
        err_set(err, errlen, "cannot read '%s': %s", file, strerror(errno));
        return NULL;
    }
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (len == 0 || memchr(buf, '\0', len) != NULL || memchr(buf, '\n', len) != NULL) {
        err_set(err, errlen, "'%s' must hold the password on one line", file);
        free(buf);
        return NULL;
    }
    char *s = strndup(buf, len);
    explicit_bzero(buf, len);
    free(buf);
    if (s == NULL)
        err_set(err, errlen, "out of memory");
    return s;
}

/* `resolver =`: a numeric DNS server address with an optional port. */
static int check_resolver(const char *s, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 8], buf[sizeof(struct in6_addr)];
    unsigned port;
    bool v6;

    if (strchr(s, ':') == NULL || (s[0] == '[' && strstr(s, "]:") == NULL)) {
        char with_port[INET6_ADDRSTRLEN + 16];
        snprintf(with_port, sizeof with_port, "%s:53", s);
        return check_resolver(with_port, err, errlen);
    }
    if (addr_split_hostport(s, host, sizeof host, &port, &v6, err, errlen) < 0)
        return -1;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, buf) != 1) {
        err_set(err, errlen, "'%s': expected a numeric DNS server: IPv4[:port] or [IPv6][:port]",
                s);
        return -1;
    }
    return 0;
}

/* token_redis: parse each route's source, read its password file, and
 * refuse a second token source or backend lines next to it. */
static void redis_checks(struct parser *ps)
{
    struct config *cfg = ps->cfg;
    char msg[512];

    if (cfg->resolver && check_resolver(cfg->resolver, msg, sizeof msg) < 0)
        add_error(ps, ps->seen[find_key(S_GATEWAY, "resolver") - keys], "resolver: %s", msg);
    for (size_t r = 0; r < cfg->nroutes; r++) {
        struct route *rt = &cfg->routes[r];
        int line = route_key_line(ps, r, "token_redis");
        if (rt->p.token_redis == NULL) {
            static const char *const needs[] = {"token_redis_prefix", "token_redis_password_file"};
            char *const vals[] = {rt->p.token_redis_prefix, rt->p.token_redis_password_file};
            for (size_t i = 0; i < 2; i++)
                if (ps->rs[r].seen[find_key(S_GATEWAY, needs[i]) - keys] && vals[i] && vals[i][0])
                    add_error(ps, route_key_line(ps, r, needs[i]), "%s: needs token_redis",
                              needs[i]);
            continue;
        }
        if (rt->token_file) {
            add_error(ps, line, "token_redis: route '%s' has both token_file and token_redis",
                      rt->name);
            continue;
        }
        if (rt->nbackends) {
            add_error(ps,
                      ps->rs[r].seen[find_key(S_GATEWAY, "token_redis") - keys]
                          ? line
                          : ps->rs[r].seen[find_key(S_ROUTE, "backend") - keys],
                      "token_redis: route '%s' has both token_redis%s and backend", rt->name,
                      ps->rs[r].seen[find_key(S_GATEWAY, "token_redis") - keys]
                          ? ""
                          : " (from [gateway]; set token_redis = to turn it off)");
            continue;
        }
        struct redis_target *t = calloc(1, sizeof *t);
        if (t == NULL) {
            ps->oom = true;
            return;
        }
        if (redis_target_parse(rt->p.token_redis, t, msg, sizeof msg) < 0) {
            add_error(ps, line, "token_redis: %s", msg);
            free(t);
            continue;
        }
        rt->redis = t;
        if (rt->p.token_redis_prefix) {
            free(t->prefix);
            if ((t->prefix = strdup(rt->p.token_redis_prefix)) == NULL)
                ps->oom = true;
        }
        if (rt->p.token_redis_password_file) {
            int pline = route_key_line(ps, r, "token_redis_password_file");
            if (t->password != NULL) {
                add_error(ps, pline,
                          "token_redis_password_file: token_redis already holds a password");
                continue;
            }
            if ((t->password = read_secret(rt->p.token_redis_password_file, msg, sizeof msg)) ==
                NULL)
                add_error(ps, pline, "token_redis_password_file: %s", msg);
        }
    }
}

/* After the last line: defaults, inheritance, required keys and the checks
 * that span several lines. Order-independent: a [route:NAME] before [gateway]
 * inherits the same values as one after it. */
static void finalize(struct parser *ps)
{
    struct config *cfg = ps->cfg;
    const struct key *path_key = find_key(S_ROUTE, "path");
    const struct key *host_key = find_key(S_ROUTE, "host");

    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        if (k->sect != S_ROUTE && k->sect != S_TLSCERT && ps->seen[i] == 0)
            apply_default(ps, k, key_base(ps, k->sect, 0, k));
    }
    for (size_t r = 0; r < cfg->nroutes; r++) {
        struct route *rt = &cfg->routes[r];
        const int *seen = ps->rs[r].seen;
        for (size_t i = 0; i < NKEYS; i++) {
            const struct key *k = &keys[i];
            if ((k->sect != S_ROUTE && !(k->flags & F_ROUTE)) || seen[i] != 0)
                continue;
            if ((k->flags & F_REQUIRED) && k->type == T_BACKEND &&
                (rt->token_file || rt->p.token_jwt_key || route_token_redis(ps, r) != NULL))
                continue; /* the token source picks the backend */
            if (k->flags & F_REQUIRED)
                add_error(ps, rt->line, "%s: route '%s' needs %s %s", k->name, rt->name,
                          (k->flags & F_REPEAT) ? "at least one" : "a", k->name);
            else if ((k->flags & F_ROUTE) && k->type == T_STRING)
                inherit_string(ps, k, rt);
            else if (k->flags & F_ROUTE)
                inherit_param(ps, k, &rt->p, &cfg->defaults);
            else
                apply_default(ps, k, key_base(ps, S_ROUTE, r, k));
        }
        rt->prefix = rt->path != NULL && rt->path[strlen(rt->path) - 1] == '/';
        char msg[256];
        if (rt->host && route_host_check(rt->host, msg, sizeof msg) < 0)
            add_error(ps, seen[host_key - keys], "host: %s", msg);
        for (size_t o = 0; rt->path != NULL && o < r; o++) {
            if (cfg->routes[o].path != NULL && strcmp(cfg->routes[o].path, rt->path) == 0 &&
                route_same_host(cfg->routes[o].host, rt->host)) {
                add_error(ps, seen[path_key - keys],
                          "path: duplicate route path '%s' (also in [route:%s], line %d)", rt->path,
                          cfg->routes[o].name, ps->rs[o].seen[path_key - keys]);
                break;
            }
        }
    }
    for (size_t i = 0; i < cfg->nlistens; i++)
        cfg->has_admin = cfg->has_admin || cfg->listens[i].admin;
    for (size_t i = 0; i < cfg->nlistens; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct listen_spec *x = &cfg->listens[i], *y = &cfg->listens[j];
            const struct sockaddr_any *a = &x->addr, *b = &y->addr;
            bool same = x->kind == y->kind &&
                        (x->kind == LISTEN_SYSTEMD
                             ? (x->systemd_name == NULL) == (y->systemd_name == NULL) &&
                                   (x->systemd_name == NULL ||
                                    strcmp(x->systemd_name, y->systemd_name) == 0)
                             : a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0);
            if (same) {
                add_error(ps, cfg->listens[i].line,
                          "listen: duplicate listen address '%s' (first on line %d)",
                          cfg->listens[i].text, cfg->listens[j].line);
                break;
            }
        }
    }
    tls_checks(ps);
    file_checks(ps);
    const struct key *rk = find_key(S_GATEWAY, "record");
    record_dir_check(ps, &cfg->defaults.record, ps->seen[rk - keys], true);
    for (size_t r = 0; r < cfg->nroutes; r++) {
        int line = ps->rs[r].seen[rk - keys];
        record_dir_check(ps, &cfg->routes[r].p.record, line ? line : ps->seen[rk - keys],
                         line != 0);
    }
    access_checks(ps);
    redis_checks(ps);
    char msg[256];
    if (ps->nerrs == 0 && !ps->oom && route_table_build(cfg, msg, sizeof msg) < 0)
        add_error(ps, 0, "%s", msg);
}

/* ---- loading ---------------------------------------------------------- */

static void config_free(struct config *c)
{
    if (c == NULL)
        return;
    if (c->tls_state_free)
        c->tls_state_free(c->tls_state);
    free(c->file);
    free(c->health_path);
    free(c->web_root);
    free(c->web_root_real);
    free(c->tls.cert);
    free(c->tls.key);
    free(c->tls.client_ca);
    free(c->tls.key_password_file);
    free(c->tls.ciphers);
    free(c->tls.ciphersuites);
    for (size_t i = 0; i < c->ntls_certs; i++) {
        free(c->tls_certs[i].name);
        free(c->tls_certs[i].cert);
        free(c->tls_certs[i].key);
        free(c->tls_certs[i].key_password_file);
    }
    free(c->tls_certs);
    free(c->metrics_path);
    free(c->resolver);
    for (size_t i = 0; i < c->nlistens; i++)
        free_listen(&c->listens[i]);
    free(c->trusted_proxies);
    free(c->listens);
    for (size_t i = 0; i < c->nroutes; i++) {
        struct route *r = &c->routes[i];
        free(r->name);
        free(r->path);
        for (size_t j = 0; j < r->nbackends; j++)
            config_free_backend(&r->backends[j]);
        free(r->backends);
        free_strv(r->origins, r->norigins);
        free_strv(r->subprotocols, r->nsubprotocols);
        free_strv(r->client_names, r->nclient_names);
        free(r->backend_ca);
        free(r->allowed_networks);
        free(r->token_file);
        free(r->host);
        token_cache_free(r->tokens);
        free_params(&r->p);
        jwt_verifier_free(r->jwt);
        basic_auth_cache_free(r->basic_auth);
        free(r->allowed);
        if (r->redis != NULL)
            redis_target_free(r->redis);
        free(r->redis);
    }
    free_params(&c->defaults);
    basic_auth_cache_free(c->basic_auth);
    route_table_free(c->route_table);
    free(c->routes);
    free(c);
}

/* Parse text[0..len) (named name in messages) into *out. On failure returns
 * -1 and *errs holds every error, one per line (NULL if out of memory). */
static int load_text(const char *name, const char *text, size_t len, struct config **out,
                     char **errs)
{
    struct parser ps;
    int rc;

    memset(&ps, 0, sizeof ps);
    ps.name = name;
    ps.p = text;
    ps.end = text + len;
    ps.max_line = 199;
    ps.sect = S_NONE;
    *out = NULL;
    *errs = NULL;
    ps.cfg = calloc(1, sizeof *ps.cfg);
    if (ps.cfg == NULL || (ps.cfg->file = strdup(name)) == NULL) {
        free(ps.cfg);
        return -1;
    }
    ps.cfg->refcount = 1;
    rc = ini_parse_stream(read_line, &ps, on_key, &ps);
    if (rc > 0)
        add_error(&ps, rc, "syntax error (or line longer than %d characters)", ps.max_line);
    else if (rc < 0)
        add_error(&ps, 0, "cannot parse (inih error %d)", rc);
    finalize(&ps);
    free(ps.rs);
    free(ps.ts);
    if (ps.nerrs > 0 || ps.oom) {
        *errs = take_errors(&ps);
        config_free(ps.cfg);
        return -1;
    }
    *out = ps.cfg;
    return 0;
}

/* Read a whole file (at most MAX_FILE_SIZE bytes). 0, or -1 with errno. */
static int read_file(const char *file, char **buf, size_t *len)
{
    FILE *f = fopen(file, "rb");
    char *b = NULL;
    size_t n = 0, cap = 0;
    int saved;

    if (f == NULL)
        return -1;
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_FILE_SIZE) {
                errno = EFBIG;
                goto fail;
            }
            cap = cap ? cap * 2 : 4096;
            char *grown = realloc(b, cap);
            if (grown == NULL)
                goto fail;
            b = grown;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                if (errno == 0)
                    errno = EIO;
                goto fail;
            }
            break;
        }
    }
    fclose(f);
    *buf = b;
    *len = n;
    return 0;
fail:
    saved = errno;
    free(b);
    fclose(f);
    errno = saved;
    return -1;
}

/* config_load() with the errors returned unabridged in *errs (malloc'd). */
static int load_file(const char *file, struct config **out, char **errs)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    *errs = NULL;
    errno = 0;
    if (read_file(file, &text, &len) < 0) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s: cannot read: %s", file, strerror(errno));
        *errs = strdup(buf);
        return -1;
    }
    rc = load_text(file, text, len, out, errs);
    free(text);
    return rc;
}

/* Copy errs (or "out of memory" when NULL) into err[errlen]. When they do
 * not all fit, whole lines are kept (never a partial line after a newline);
 * only a first line longer than the buffer is cut. */
static void copy_errors(const char *errs, char *err, size_t errlen)
{
    if (err == NULL || errlen == 0)
        return;
    if (errs == NULL)
        errs = "out of memory";
    size_t len = strlen(errs);
    if (len >= errlen) {
        len = errlen - 1;
        const char *nl = memrchr(errs, '\n', len + 1);
        if (nl != NULL)
            len = (size_t)(nl - errs);
    }
    memcpy(err, errs, len);
    err[len] = '\0';
}

/* Contract in config.h. */
int config_load(const char *file, struct config **out, char *err, size_t errlen)
{
    char *errs;
    int rc = load_file(file, out, &errs);

    if (rc < 0)
        copy_errors(errs, err, errlen);
    free(errs);
    return rc;
}

/* Contract in config.h. */
int config_load_string(const char *name, const char *text, struct config **out, char *err,
                       size_t errlen)
{
    char *errs;
    int rc = load_text(name, text, strlen(text), out, &errs);

    if (rc < 0)
        copy_errors(errs, err, errlen);
    free(errs);
    return rc;
}

/* Contract in config.h. */
struct config *config_ref(struct config *c)
{
    if (c != NULL)
        __atomic_add_fetch(&c->refcount, 1, __ATOMIC_RELAXED);
    return c;
}

/* Contract in config.h. The last reference frees everything. */
void config_unref(struct config *c)
{
    if (c != NULL && __atomic_sub_fetch(&c->refcount, 1, __ATOMIC_ACQ_REL) == 0)
        config_free(c);
}

/* Contract in config.h. */
int config_check_file(const char *file, FILE *out)
{
    struct config *c;
    char *errs;

    if (load_file(file, &c, &errs) < 0) {
        fprintf(out, "%s\n", errs != NULL ? errs : "out of memory");
        free(errs);
        return 1;
    }
    fprintf(out, "%s: configuration OK\n", file);
    config_unref(c);
    return 0;
}

/* ---- dump ------------------------------------------------------------- */

/* Print one key of the struct at base in INI syntax (arrays: one line per
 * element). Keys stored nowhere are skipped. */
static void dump_key(const struct key *k, const void *base, FILE *out)
{
    const char *field = (const char *)base + k->off;
    char buf[32];
    const char *s;
    size_t n = 0;
    int i;

    if (k->base == B_NONE)
        return;
    if (k->off2 != 0)
        memcpy(&n, (const char *)base + k->off2, sizeof n);
    switch (k->type) {
    case T_DURATION:
    case T_SIZE:
    case T_UINT:
        fmt_number(k->type, load_uint(field, k->size), buf, sizeof buf);
        fprintf(out, "%s = %s\n", k->name, buf);
        break;
    case T_BOOL:
        fprintf(out, "%s = %s\n", k->name, *(const bool *)field ? "on" : "off");
        break;
    case T_ENUM:
        memcpy(&i, field, sizeof i);
        fprintf(out, "%s = %s\n", k->name, k->choices[i]);
        break;
    case T_PATH:
    case T_STRING:
        memcpy(&s, field, sizeof s);
        if (s != NULL)
            /* inih reads " ;x" as a comment, but not ";x" right after '=' */
            fprintf(out, "%s =%s%s\n", k->name, s[0] == ';' ? "" : " ", s);
        else if ((k->def != NULL && k->def[0] != '\0') || k->base == B_PARAMS)
            fprintf(out, "%s =\n", k->name); /* turned off, unlike the default or [gateway] */
        break;
    case T_LISTEN: {
        const struct listen_spec *v;
        memcpy(&v, field, sizeof v);
        for (size_t j = 0; j < n; j++) {
            fprintf(out, "%s = %s%s%s%s%s", k->name, v[j].text, v[j].tls ? " tls" : "",
                    v[j].tls_auto ? " auto" : "", v[j].proxy ? " proxy" : "",
                    v[j].admin ? " admin" : "");
            if (v[j].kind == LISTEN_UNIX)
                fprintf(out, " mode=0%o", v[j].mode);
            fputc('\n', out);
        }
        break;
    }
    case T_BACKEND: {
        const struct backend_spec *v;
        memcpy(&v, field, sizeof v);
        for (size_t j = 0; j < n; j++)
            fprintf(out, "%s = %s\n", k->name, v[j].text);
        break;
    }
    case T_NETS: {
        const struct netcidr *v;
        char nb[INET6_ADDRSTRLEN + 8];
        memcpy(&v, field, sizeof v);
        for (size_t j = 0; j < n; j++)
            fprintf(out, "%s = %s\n", k->name, netcidr_str(&v[j], nb, sizeof nb));
        break;
    }
    case T_LIST: {
        char *const *v;
        memcpy(&v, field, sizeof v);
        for (size_t j = 0; j < n; j++)
            fprintf(out, "%s = %s\n", k->name, v[j]);
        break;
    }
    }
}

/* Whether k is stored in section sect (pass 0: the section's own keys, pass
 * 1: in a route, the [gateway] keys it overrides). */
static bool dump_in(const struct key *k, enum section sect, int pass)
{
    if (k->base == B_NONE)
        return false;
    return pass == 0 ? k->sect == sect : sect == S_ROUTE && (k->flags & F_ROUTE);
}

/* Contract in config.h. Sections print their own keys first, then (routes)
 * the inherited [gateway] values; sections with nothing stored are left out. */
void config_dump(const struct config *c, FILE *out)
{
    static const enum section order[] = {S_GATEWAY, S_TLS};

    fprintf(out, "; effective configuration of %s\n", c->file);
    for (size_t s = 0; s < sizeof order / sizeof order[0]; s++) {
        bool any = false;
        for (size_t i = 0; i < NKEYS; i++) {
            const struct key *k = &keys[i];
            if (!dump_in(k, order[s], 0))
                continue;
            if (!any)
                fprintf(out, "%s[%s]\n", s > 0 ? "\n" : "", section_name(order[s]));
            any = true;
            dump_key(k, k->base == B_PARAMS ? (const void *)&c->defaults : (const void *)c, out);
        }
    }
    for (size_t t = 0; t < c->ntls_certs; t++) {
        fprintf(out, "\n[tls:%s]\n", c->tls_certs[t].name);
        for (size_t i = 0; i < NKEYS; i++)
            if (dump_in(&keys[i], S_TLSCERT, 0))
                dump_key(&keys[i], &c->tls_certs[t], out);
    }
    for (size_t r = 0; r < c->nroutes; r++) {
        const struct route *rt = &c->routes[r];
        fprintf(out, "\n[route:%s]\n", rt->name);
        for (int pass = 0; pass < 2; pass++) {
            for (size_t i = 0; i < NKEYS; i++) {
                const struct key *k = &keys[i];
                if (dump_in(k, S_ROUTE, pass))
                    dump_key(k, k->base == B_PARAMS ? (const void *)&rt->p : (const void *)rt, out);
            }
        }
    }
}
