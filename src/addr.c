/* addr.c - socket addresses as written in configurations and token targets:
 * "host:port", "[v6]:port", ":port", "unix:/path". One parser for the
 * configuration (config.c) and the token sources (token.c). Names resolve
 * with getaddrinfo (at load, or off the worker loops). */
#include "addr.h"
#include "errbuf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* "1".."65535", digits only. 0 or -1. */
static int parse_port(const char *s, unsigned *port)
{
    size_t n = strspn(s, "0123456789");
    unsigned long v = n > 0 && n <= 5 && s[n] == '\0' ? strtoul(s, NULL, 10) : 0;

    if (v < 1 || v > 65535)
        return -1;
    *port = (unsigned)v;
    return 0;
}

/* Split "host:port" or "[v6]:port": the host (without brackets) is copied into
 * host[hostsz], the port checked. *bracketed tells which form was used. */
int addr_split_hostport(const char *s, char *host, size_t hostsz, unsigned *port, bool *bracketed,
                        char *err, size_t errlen)
{
    const char *h, *he, *p;

    if (*s == '[') {
        h = s + 1;
        he = strchr(h, ']');
        if (he == NULL || he[1] != ':') {
            err_set(err, errlen, "'%s': expected [v6addr]:port", s);
            return -1;
        }
        p = he + 2;
        *bracketed = true;
    } else {
        he = strrchr(s, ':');
        if (he == NULL) {
            err_set(err, errlen, "'%s': expected host:port", s);
            return -1;
        }
        h = s;
        p = he + 1;
        *bracketed = false;
        if (memchr(h, ':', (size_t)(he - h)) != NULL) {
            err_set(err, errlen, "'%s': an IPv6 address needs brackets: [addr]:port", s);
            return -1;
        }
    }
    size_t hl = (size_t)(he - h);
    if (hl >= hostsz) {
        err_set(err, errlen, "'%s': host too long", s);
        return -1;
    }
    if (*bracketed && hl == 0) {
        err_set(err, errlen, "'%s': empty address in brackets", s);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (parse_port(p, port) < 0) {
        err_set(err, errlen, "'%s': invalid port '%s' (1-65535)", s, p);
        return -1;
    }
    return 0;
}

/* True for a dotted quad; false for the legacy forms getaddrinfo also takes
 * ("1.2.3", "127.1", "0x7f.1") and for anything that is not an address. */
bool addr_strict_ipv4(const char *host)
{
    struct in_addr in;

    return inet_pton(AF_INET, host, &in) == 1;
}

/* True when host looks like an IPv4 literal (digits and dots only). */
bool addr_looks_ipv4(const char *host)
{
    return host[0] != '\0' && strspn(host, "0123456789.") == strlen(host);
}

/* Contract in config.h. Numeric addresses only; ":port" = 0.0.0.0. */
int config_parse_listen(const char *s, struct sockaddr_any *addr, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 64], serv[12];
    struct addrinfo hints, *res = NULL;
    unsigned port;
    bool v6;

    if (addr_split_hostport(s, host, sizeof host, &port, &v6, err, errlen) < 0)
        return -1;
    if (host[0] == '\0')
        strcpy(host, "0.0.0.0");
    if (!v6 && !addr_strict_ipv4(host)) {
        err_set(err, errlen, "'%s' is not a numeric IPv4 address (listen takes IP addresses only)",
                host);
        return -1;
    }
    snprintf(serv, sizeof serv, "%u", port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = v6 ? AF_INET6 : AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    if (getaddrinfo(host, serv, &hints, &res) != 0 || res == NULL) {
        err_set(err, errlen, "'%s' is not a numeric %s address (listen takes IP addresses only)",
                host, v6 ? "IPv6" : "IPv4");
        return -1;
    }
    memset(addr, 0, sizeof *addr);
    memcpy(&addr->ss, res->ai_addr, res->ai_addrlen);
    addr->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

void config_free_backend(struct backend_spec *b)
{
    free(b->text);
    free(b->host);
    free(b->addrs);
    memset(b, 0, sizeof *b);
}

/* A DNS name or IPv4 literal: letters, digits, '.', '-', '_'. */
bool addr_valid_host_name(const char *h)
{
    if (*h == '\0')
        return false;
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && *h != '.' && *h != '-' && *h != '_')
            return false;
    return true;
}

/* "unix:/absolute/path" -> one AF_UNIX address. */
int addr_parse_unix(const char *s, struct backend_spec *b, char *err, size_t errlen)
{
    const char *path = s + strlen("unix:");
    struct sockaddr_un *sun;
    size_t len = strlen(path);

    if (path[0] != '/') {
        err_set(err, errlen, "'%s': the unix socket path must be absolute", s);
        return -1;
    }
    if (len >= sizeof sun->sun_path) {
        err_set(err, errlen, "'%s': unix socket path longer than %zu bytes", s,
                sizeof sun->sun_path - 1);
        return -1;
    }
    b->addrs = calloc(1, sizeof *b->addrs);
    b->text = strdup(s);
    if (b->addrs == NULL || b->text == NULL) {
        config_free_backend(b);
        err_set(err, errlen, "out of memory");
        return -1;
    }
    sun = (struct sockaddr_un *)&b->addrs[0].ss;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, len + 1);
    b->addrs[0].len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    b->naddrs = 1;
    return 0;
}

/* Contract in config.h. All addresses a name resolves to are kept, in the
 * order getaddrinfo returns them; with lazy_names a name is kept unresolved
 * (resolved at each connect, resolver.h). On failure b holds nothing. */
static int parse_backend(const char *s, struct backend_spec *b, bool lazy_names, char *err,
                         size_t errlen)
{
    char host[256], serv[12];
    struct addrinfo hints, *res = NULL;
    unsigned port;
    bool v6;
    int rc;

    memset(b, 0, sizeof *b);
    if (strncmp(s, "unix:", 5) == 0)
        return addr_parse_unix(s, b, err, errlen);
    if (addr_split_hostport(s, host, sizeof host, &port, &v6, err, errlen) < 0)
        return -1;
    if (!v6 && !addr_valid_host_name(host)) {
        err_set(err, errlen, "'%s': expected host:port, [v6addr]:port or unix:/path", s);
        return -1;
    }
    if (!v6 && addr_looks_ipv4(host) && !addr_strict_ipv4(host)) {
        err_set(err, errlen, "'%s' is not a valid IPv4 address", host);
        return -1;
    }
    if (lazy_names && !v6 && !addr_looks_ipv4(host)) {
        b->text = strdup(s);
        b->host = strdup(host);
        if (b->text == NULL || b->host == NULL) {
            config_free_backend(b);
            err_set(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    snprintf(serv, sizeof serv, "%u", port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = v6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (v6 ? AI_NUMERICHOST : 0);
    rc = getaddrinfo(host, serv, &hints, &res);
    if (rc != 0 || res == NULL) {
        err_set(err, errlen, "cannot resolve '%s': %s", host,
                rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        if (res != NULL)
            freeaddrinfo(res);
        return -1;
    }
    size_t n = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
        n++;
    b->addrs = calloc(n, sizeof *b->addrs);
    b->text = strdup(s);
    b->host = strdup(host);
    if (b->addrs == NULL || b->text == NULL || b->host == NULL) {
        freeaddrinfo(res);
        config_free_backend(b);
        err_set(err, errlen, "out of memory");
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof b->addrs[0].ss)
            continue;
        memcpy(&b->addrs[b->naddrs].ss, ai->ai_addr, ai->ai_addrlen);
        b->addrs[b->naddrs].len = ai->ai_addrlen;
        b->naddrs++;
    }
    freeaddrinfo(res);
    return 0;
}

int config_parse_backend(const char *s, struct backend_spec *b, char *err, size_t errlen)
{
    return parse_backend(s, b, false, err, errlen);
}

int config_parse_backend_lazy(const char *s, struct backend_spec *b, char *err, size_t errlen)
{
    return parse_backend(s, b, true, err, errlen);
}
