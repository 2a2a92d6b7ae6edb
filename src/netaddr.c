/* netaddr.c - client addresses, CIDR lists and the client-address rule. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "netaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Store an IPv6 address, as AF_INET when it is v4-mapped. */
static void set_v6(struct netaddr *out, const uint8_t a[16], uint16_t port)
{
    memset(out, 0, sizeof *out);
    out->port = port;
    if (memcmp(a, v4mapped, sizeof v4mapped) == 0) {
        out->family = AF_INET;
        memcpy(out->a, a + 12, 4);
    } else {
        out->family = AF_INET6;
        memcpy(out->a, a, 16);
    }
}

/* Contract in netaddr.h. inet_pton takes neither zone ids nor blanks. */
int netaddr_parse(const char *s, size_t len, struct netaddr *out)
{
    char buf[INET6_ADDRSTRLEN];
    uint8_t a[16];

    if (len == 0 || len >= sizeof buf || memchr(s, '\0', len) != NULL)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, a) == 1) {
        memset(out, 0, sizeof *out);
        out->family = AF_INET;
        memcpy(out->a, a, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, a) == 1) {
        set_v6(out, a, 0);
        return 0;
    }
    return -1;
}

/* Digits only, 0..65535. */
static int parse_port(const char *s, size_t len)
{
    unsigned v = 0;

    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535 ? (int)v : -1;
}

/* Contract in netaddr.h. */
int netaddr_parse_hostport(const char *s, size_t len, struct netaddr *out)
{
    if (len > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb == NULL)
            return -1;
        size_t rest = len - (size_t)(rb + 1 - s);
        if (rest > 0 && (rb[1] != ':' || parse_port(rb + 2, rest - 1) < 0))
            return -1;
        /* an IPv6 literal (possibly v4-mapped) in brackets, never IPv4 */
        if (memchr(s + 1, ':', (size_t)(rb - s - 1)) == NULL ||
            netaddr_parse(s + 1, (size_t)(rb - s - 1), out) < 0)
            return -1;
        return 0;
    }
    const char *colon = memchr(s, ':', len);
    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) == NULL) {
        /* exactly one colon: IPv4 with a port */
        if (parse_port(colon + 1, len - (size_t)(colon + 1 - s)) < 0)
            return -1;
        if (netaddr_parse(s, (size_t)(colon - s), out) < 0 || out->family != AF_INET)
            return -1;
        return 0;
    }
    return netaddr_parse(s, len, out);
}

/* Contract in netaddr.h. */
void netaddr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct netaddr *out)
{
    memset(out, 0, sizeof *out);
    out->family = AF_UNSPEC;
    if (sa == NULL || len < sizeof(sa_family_t))
        return;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out->family = AF_INET;
        memcpy(out->a, &in->sin_addr, 4);
        out->port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        set_v6(out, (const uint8_t *)&in6->sin6_addr, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        out->family = AF_UNIX;
    }
}

/* Contract in netaddr.h. */
socklen_t netaddr_to_sockaddr(const struct netaddr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(a->port);
        memcpy(&in->sin_addr, a->a, 4);
        return sizeof *in;
    }
    if (a->family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(a->port);
        memcpy(&in6->sin6_addr, a->a, 16);
        return sizeof *in6;
    }
    return 0;
}

/* Contract in netaddr.h. */
char *netaddr_host_str(const struct netaddr *a, char *out, size_t len)
{
    if (a->family == AF_INET || a->family == AF_INET6) {
        if (inet_ntop(a->family, a->a, out, (socklen_t)len) == NULL && len > 0)
            out[0] = '\0';
    } else {
        snprintf(out, len, "%s", a->family == AF_UNIX ? "unix" : "unknown");
    }
    return out;
}

/* Contract in netaddr.h. */
char *netaddr_str(const struct netaddr *a, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    netaddr_host_str(a, host, sizeof host);
    if (a->family == AF_INET)
        snprintf(out, len, "%s:%u", host, a->port);
    else if (a->family == AF_INET6)
        snprintf(out, len, "[%s]:%u", host, a->port);
    else
        snprintf(out, len, "%s", host);
    return out;
}

/* Contract in netaddr.h. */
bool netaddr_same_host(const struct netaddr *x, const struct netaddr *y)
{
    return x->family == y->family && memcmp(x->a, y->a, sizeof x->a) == 0;
}

/* Clear the bits of a after the first prefix bits (of nbytes). */
static void mask_bits(uint8_t *a, size_t nbytes, unsigned prefix)
{
    for (size_t i = 0; i < nbytes; i++) {
        unsigned bit = (unsigned)i * 8;
        if (prefix >= bit + 8)
            continue;
        a[i] &= prefix <= bit ? 0 : (uint8_t)(0xff << (8 - (prefix - bit)));
    }
}

static size_t family_bytes(int family)
{
    return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

/* Contract in netaddr.h. */
int netcidr_parse(const char *s, struct netcidr *out, char *err, size_t errlen)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);

    memset(out, 0, sizeof *out);
    if (strcasecmp(s, "unix") == 0) {
        out->net.family = AF_UNIX;
        return 0;
    }
    if (netaddr_parse(s, alen, &out->net) < 0) {
        snprintf(err, errlen, "'%s' is not an address or network (1.2.3.0/24, ::1/128, unix)", s);
        return -1;
    }
    /* "::ffff:10.0.0.0/104" would be AF_INET with an IPv6 prefix: refuse */
    bool v6text = memchr(s, ':', alen) != NULL;
    unsigned bits = (unsigned)family_bytes(out->net.family) * 8, prefix = bits;
    if (v6text && out->net.family == AF_INET) {
        snprintf(err, errlen, "'%s': write IPv4-mapped networks as IPv4", s);
        return -1;
    }
    if (slash != NULL) {
        int p = parse_port(slash + 1, strlen(slash + 1));
        if (p < 0 || (unsigned)p > bits || (slash[1] == '0' && slash[2] != '\0')) {
            snprintf(err, errlen, "'%s': invalid prefix length (0..%u)", s, bits);
            return -1;
        }
        prefix = (unsigned)p;
    }
    struct netaddr masked = out->net;
    mask_bits(masked.a, family_bytes(masked.family), prefix);
    if (memcmp(masked.a, out->net.a, sizeof masked.a) != 0) {
        snprintf(err, errlen, "'%s': address has bits set beyond the /%u prefix", s, prefix);
        return -1;
    }
    out->prefix = (uint8_t)prefix;
    return 0;
}

/* Contract in netaddr.h. */
char *netcidr_str(const struct netcidr *c, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    if (c->net.family == AF_UNIX)
        snprintf(out, len, "unix");
    else
        snprintf(out, len, "%s/%u", netaddr_host_str(&c->net, host, sizeof host), c->prefix);
    return out;
}

/* Contract in netaddr.h. */
bool netcidr_match(const struct netcidr *c, const struct netaddr *a)
{
    if (c->net.family != a->family)
        return false;
    if (a->family == AF_UNIX)
        return true;
    struct netaddr m = *a;
    mask_bits(m.a, family_bytes(m.family), c->prefix);
    return memcmp(m.a, c->net.a, sizeof m.a) == 0;
}

/* Contract in netaddr.h. */
bool netcidr_list_match(const struct netcidr *list, size_t n, const struct netaddr *a)
{
    for (size_t i = 0; i < n; i++)
        if (netcidr_match(&list[i], a))
            return true;
    return false;
}

/* Contract in netaddr.h. */
void netaddr_key(const struct netaddr *a, unsigned v6_prefix, struct netaddr *key)
{
    *key = *a;
    key->port = 0;
    key->pad = 0;
    if (a->family == AF_INET6)
        mask_bits(key->a, 16, v6_prefix > 128 ? 128 : v6_prefix);
    else if (a->family != AF_INET)
        memset(key->a, 0, sizeof key->a);
}

/* Contract in netaddr.h. */
const char *real_ip_header_name(enum real_ip_header h)
{
    switch (h) {
    case REAL_IP_XFF:
        return "X-Forwarded-For";
    case REAL_IP_FORWARDED:
        return "Forwarded";
    case REAL_IP_X_REAL_IP:
        return "X-Real-IP";
    case REAL_IP_OFF:
        break;
    }
    return NULL;
}

/* ---- forwarding headers ---------------------------------------------- */

/* The entries of the header lines, the rightmost NETADDR_MAX_HOPS of them. */
struct hops {
    struct netaddr addr[NETADDR_MAX_HOPS];
    bool ok[NETADDR_MAX_HOPS];
    size_t n; /* entries seen (may exceed the ring) */
};

static void hops_push(struct hops *h, const struct netaddr *a, bool ok)
{
    size_t i = h->n % NETADDR_MAX_HOPS;

    if (ok)
        h->addr[i] = *a;
    h->ok[i] = ok;
    h->n++;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Trim blanks from both ends of [*p, *e). */
static void trim(const char **p, const char **e)
{
    while (*p < *e && is_ows(**p))
        (*p)++;
    while (*e > *p && is_ows((*e)[-1]))
        (*e)--;
}

/* One comma-separated entry of X-Forwarded-For or X-Real-IP. */
static void push_plain(struct hops *h, const char *p, const char *e)
{
    struct netaddr a;

    trim(&p, &e);
    bool ok = netaddr_parse_hostport(p, (size_t)(e - p), &a) == 0;
    hops_push(h, &a, ok);
}

/* One Forwarded element (pairs separated by ';'): its for= value. RFC 7239:
 * for=192.0.2.60, for="[2001:db8::1]:4711", for=unknown, for="_hidden". */
static void push_forwarded(struct hops *h, const char *p, const char *e)
{
    struct netaddr a;
    bool ok = false, seen = false;

    while (p < e && !seen) {
        const char *pe = p;
        bool quoted = false;
        while (pe < e && (quoted || *pe != ';')) {
            if (*pe == '"')
                quoted = !quoted;
            pe++;
        }
        const char *np = p, *ne = pe;
        trim(&np, &ne);
        if (ne - np >= 4 && strncasecmp(np, "for=", 4) == 0) {
            const char *v = np + 4, *ve = ne;
            seen = true;
            if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
                v++;
                ve--;
                if (memchr(v, '"', (size_t)(ve - v)) != NULL || memchr(v, '\\', (size_t)(ve - v)))
                    v = ve; /* escapes: not an address anyway */
            }
            ok = v < ve && netaddr_parse_hostport(v, (size_t)(ve - v), &a) == 0;
            /* a bare IPv6 address must be quoted and bracketed */
            if (ok && a.family == AF_INET6 && *v != '[')
                ok = false;
        }
        p = pe < e ? pe + 1 : pe;
    }
    hops_push(h, &a, ok);
}

/* Split one header value into entries at commas outside quotes. */
static void split_line(struct hops *h, enum real_ip_header hdr, const char *p, size_t len)
{
    const char *e = p + len;

    while (p <= e) {
        const char *q = p;
        bool quoted = false;
        while (q < e && (quoted || *q != ',')) {
            if (*q == '"' && hdr == REAL_IP_FORWARDED)
                quoted = !quoted;
            q++;
        }
        if (hdr == REAL_IP_FORWARDED)
            push_forwarded(h, p, q);
        else
            push_plain(h, p, q);
        p = q + 1;
    }
}

/* Contract in netaddr.h. */
bool netaddr_client(const struct netaddr *start, const struct netcidr *trusted, size_t ntrusted,
                    enum real_ip_header hdr, const struct netaddr_hval *vals, size_t nvals,
                    struct netaddr *client)
{
    struct hops h;

    *client = *start;
    if (hdr == REAL_IP_OFF || nvals == 0 || !netcidr_list_match(trusted, ntrusted, start))
        return false;
    h.n = 0;
    for (size_t i = 0; i < nvals; i++)
        split_line(&h, hdr, vals[i].p, vals[i].len);
    size_t kept = h.n < NETADDR_MAX_HOPS ? h.n : NETADDR_MAX_HOPS;
    bool decided = false;
    for (size_t k = 0; k < kept; k++) {
        size_t i = (h.n - 1 - k) % NETADDR_MAX_HOPS;
        if (!h.ok[i])
            break;
        *client = h.addr[i];
        client->port = 0;
        decided = true;
        if (!netcidr_list_match(trusted, ntrusted, client))
            break;
    }
    return decided;
}
