/* redis_target.c - Redis token store sources and values (contracts in
 * redis_target.h). Pure: strings in, results out. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "redis_target.h"
#include "errbuf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REDIS_DEFAULT_PORT 6379u
#define REDIS_MAX_DB 1000000u /* Redis's `databases` is an int; far above any real setting */

/* A host name or IPv4 address: letters, digits, '.', '-', '_', non-empty. */
static bool host_name_ok(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_')
            return false;
    return true;
}

/* An IPv6 literal (without brackets). */
static bool host_v6_ok(const char *h, size_t len)
{
    char buf[INET6_ADDRSTRLEN];
    struct in6_addr a;

    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, h, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, &a) == 1;
}

/* Decimal digits s[0..len) within lo..hi. 0 or -1. */
static int parse_uint(const char *s, size_t len, unsigned lo, unsigned hi, unsigned *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Percent-decode s[0..len) into a new string (NULL on a bad escape, a NUL
 * byte or no memory). */
static char *pct_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        if (i + 2 >= len) {
            free(out);
            return NULL;
        }
        char hex[3] = {s[i + 1], s[i + 2], '\0'};
        char *end;
        long v = strtol(hex, &end, 16);
        if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]) || *end != '\0' ||
            v == 0) {
            free(out);
            return NULL;
        }
        *o++ = (char)v;
        i += 2;
    }
    *o = '\0';
    return out;
}

/* "host" or "[v6]" at s (up to a ':' outside brackets or end): the host is
 * stored in t->host, *rest points after it. 0 or -1. */
static int take_host(const char *s, const char *end, struct redis_target *t, const char **rest,
                     char *err, size_t errlen)
{
    const char *h = s, *he;

    if (*s == '[') {
        h = s + 1;
        he = memchr(h, ']', (size_t)(end - h));
        if (he == NULL || !host_v6_ok(h, (size_t)(he - h))) {
            err_set(err, errlen, "expected [IPv6 address] as the Redis host");
            return -1;
        }
        *rest = he + 1;
    } else {
        he = memchr(s, ':', (size_t)(end - s));
        if (he == NULL)
            he = end;
        if (!host_name_ok(h, (size_t)(he - h))) {
            err_set(err, errlen, "invalid Redis host '%.*s'", (int)(he - h), h);
            return -1;
        }
        *rest = he;
    }
    t->host = strndup(h, (size_t)(he - h));
    if (t->host == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* redis://[[user]:password@]host[:port][/db] after the scheme. */
static int parse_url(const char *s, struct redis_target *t, char *err, size_t errlen)
{
    const char *at = strrchr(s, '@'), *p, *end;

    if (at != NULL) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        if (colon == NULL) {
            err_set(err, errlen, "redis:// URL: expected [user]:password@ before the host");
            return -1;
        }
        if (colon > s && (t->user = pct_decode(s, (size_t)(colon - s))) == NULL) {
            err_set(err, errlen, "redis:// URL: invalid user name");
            return -1;
        }
        if ((t->password = pct_decode(colon + 1, (size_t)(at - colon - 1))) == NULL ||
            t->password[0] == '\0') {
            err_set(err, errlen, "redis:// URL: invalid or empty password");
            return -1;
        }
        s = at + 1;
    }
    end = s + strcspn(s, "/");
    if (take_host(s, end, t, &p, err, errlen) < 0)
        return -1;
    t->port = REDIS_DEFAULT_PORT;
    if (p < end) {
        if (*p != ':' || parse_uint(p + 1, (size_t)(end - p - 1), 1, 65535, &t->port) < 0) {
            err_set(err, errlen, "redis:// URL: invalid port (1-65535)");
            return -1;
        }
    }
    if (*end == '/' && end[1] != '\0' &&
        parse_uint(end + 1, strlen(end + 1), 0, REDIS_MAX_DB, &t->db) < 0) {
        err_set(err, errlen, "redis:// URL: invalid database number '%s'", end + 1);
        return -1;
    }
    return 0;
}

/* websockify: host[:port[:db[:password[:namespace]]]]. */
static int parse_websockify(const char *s, struct redis_target *t, char *err, size_t errlen)
{
    const char *end = s + strlen(s), *p, *f[4] = {NULL, NULL, NULL, NULL};
    size_t flen[4] = {0, 0, 0, 0};

    if (take_host(s, end, t, &p, err, errlen) < 0)
        return -1;
    for (int i = 0; i < 4 && p < end; i++) { /* p is at a ':' */
        if (*p != ':') {
            err_set(err, errlen, "expected host[:port[:db[:password[:namespace]]]]");
            return -1;
        }
        f[i] = p + 1;
        p = i < 3 ? f[i] + strcspn(f[i], ":") : end; /* the namespace takes the rest */
        flen[i] = (size_t)(p - f[i]);
    }
    t->port = REDIS_DEFAULT_PORT;
    if (flen[0] > 0 && parse_uint(f[0], flen[0], 1, 65535, &t->port) < 0) {
        err_set(err, errlen, "invalid Redis port '%.*s' (1-65535)", (int)flen[0], f[0]);
        return -1;
    }
    if (flen[1] > 0 && parse_uint(f[1], flen[1], 0, REDIS_MAX_DB, &t->db) < 0) {
        err_set(err, errlen, "invalid Redis database number '%.*s'", (int)flen[1], f[1]);
        return -1;
    }
    if (flen[2] > 0 && (t->password = strndup(f[2], flen[2])) == NULL)
        goto oom;
    if (flen[3] > 0) {
        if ((t->prefix = malloc(flen[3] + 2)) == NULL)
            goto oom;
        memcpy(t->prefix, f[3], flen[3]);
        memcpy(t->prefix + flen[3], ":", 2);
    }
    return 0;
oom:
    err_set(err, errlen, "out of memory");
    return -1;
}

/* Contract in redis_target.h. */
int redis_target_parse(const char *s, struct redis_target *t, char *err, size_t errlen)
{
    int rc;

    memset(t, 0, sizeof *t);
    if (strncmp(s, "redis://", 8) == 0)
        rc = parse_url(s + 8, t, err, errlen);
    else if (strstr(s, "://") != NULL) {
        err_set(err, errlen,
                "only redis:// URLs (or websockify's host:port:db:password:namespace)");
        rc = -1;
    } else
        rc = parse_websockify(s, t, err, errlen);
    if (rc == 0) {
        bool v6 = strchr(t->host, ':') != NULL;
        if (asprintf(&t->name, "%s%s%s:%u/%u", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port,
                     t->db) < 0) {
            t->name = NULL;
            err_set(err, errlen, "out of memory");
            rc = -1;
        }
    }
    if (rc < 0)
        redis_target_free(t);
    return rc;
}

/* Contract in redis_target.h. */
void redis_target_free(struct redis_target *t)
{
    free(t->host);
    free(t->user);
    if (t->password != NULL)
        explicit_bzero(t->password, strlen(t->password));
    free(t->password);
    free(t->prefix);
    free(t->name);
    memset(t, 0, sizeof *t);
}

/* Write host (bracketed when it is IPv6) and port to target. 0 or -1. */
static int put_target(const char *host, size_t hlen, unsigned port, char *target, size_t cap)
{
    bool v6 = memchr(host, ':', hlen) != NULL;

    if (v6 ? !host_v6_ok(host, hlen) : !host_name_ok(host, hlen))
        return -1;
    int n =
        snprintf(target, cap, "%s%.*s%s:%u", v6 ? "[" : "", (int)hlen, host, v6 ? "]" : "", port);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* "host:port" or "[v6]:port" in s[0..len). 0 or -1. */
static int parse_hostport(const char *s, size_t len, char *target, size_t cap)
{
    const char *colon;
    unsigned port;

    if (len > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb == NULL || (size_t)(rb - s) + 1 >= len || rb[1] != ':')
            return -1;
        if (parse_uint(rb + 2, len - (size_t)(rb + 2 - s), 1, 65535, &port) < 0)
            return -1;
        if (memchr(s + 1, ':', (size_t)(rb - s - 1)) == NULL)
            return -1; /* brackets only around IPv6 */
        return put_target(s + 1, (size_t)(rb - s - 1), port, target, cap);
    }
    colon = memrchr(s, ':', len);
    if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
        return -1;
    if (parse_uint(colon + 1, len - (size_t)(colon + 1 - s), 1, 65535, &port) < 0)
        return -1;
    return put_target(s, (size_t)(colon - s), port, target, cap);
}

/* {"host": "host:port"} or {"host": "h", "port": p}. 0 or -1. */
static int parse_json(const char *s, size_t len, char *target, size_t cap)
{
    json_error_t jerr;
    json_t *root = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *host, *port;
    unsigned p;
    int rc = -1;

    if (root == NULL)
        return -1;
    host = json_object_get(root, "host");
    port = json_object_get(root, "port");
    if (!json_is_object(root) || !json_is_string(host))
        goto out;
    const char *h = json_string_value(host);
    size_t hlen = json_string_length(host);
    if (memchr(h, '\0', hlen) != NULL)
        goto out;
    if (port == NULL || json_is_null(port)) {
        rc = parse_hostport(h, hlen, target, cap);
    } else if (json_is_integer(port)) {
        json_int_t v = json_integer_value(port);
        if (v >= 1 && v <= 65535)
            rc = put_target(h, hlen, (unsigned)v, target, cap);
    } else if (json_is_string(port)) {
        if (parse_uint(json_string_value(port), json_string_length(port), 1, 65535, &p) == 0)
            rc = put_target(h, hlen, p, target, cap);
    }
out:
    json_decref(root);
    return rc;
}

/* Contract in redis_target.h. */
int redis_value_parse(const char *val, size_t len, char *target, size_t cap)
{
    while (len > 0 && isspace((unsigned char)val[0])) {
        val++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)val[len - 1]))
        len--;
    if (len == 0 || cap == 0)
        return -1;
    if (val[0] == '{')
        return parse_json(val, len, target, cap);
    return parse_hostport(val, len, target, cap);
}
