/* proxy.c - PROXY protocol v1/v2 parser and encoder (proxy-protocol.txt). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v2sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1sig[] = "PROXY ";

#define BAD(msg)                                                                                   \
    do {                                                                                           \
        *why = (msg);                                                                              \
        return PROXY_BAD;                                                                          \
    } while (0)

/* A decimal port without leading zeros in s[0..len). -1 if not one. */
static int v1_port(const char *s, size_t len)
{
    unsigned v = 0;

    if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535 ? (int)v : -1;
}

/* The v1 line line[0..len) (CRLF excluded), which starts with "PROXY ". */
static int v1_fields(const char *line, size_t len, struct proxy_info *info, const char **why)
{
    const char *f[5];
    size_t fl[5], n = 0;
    const char *p = line + 6, *e = line + len;

    info->version = 1;
    info->cmd = PROXY_CMD_PROXY;
    if ((size_t)(e - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (e - p == 7 || p[7] == ' ')) {
        info->has_addr = false; /* the rest of the line is ignored */
        return 0;
    }
    if ((size_t)(e - p) < 5 || (memcmp(p, "TCP4 ", 5) != 0 && memcmp(p, "TCP6 ", 5) != 0))
        BAD("v1: protocol is not TCP4, TCP6 or UNKNOWN");
    int family = p[3] == '4' ? AF_INET : AF_INET6;
    p += 5;
    while (n < 5) {
        const char *sp = memchr(p, ' ', (size_t)(e - p));
        const char *fe = sp ? sp : e;
        if (fe == p)
            BAD("v1: empty field (fields are separated by one space)");
        f[n] = p;
        fl[n++] = (size_t)(fe - p);
        if (sp == NULL)
            break;
        p = sp + 1;
        if (n == 5)
            BAD("v1: text after the destination port");
    }
    if (n != 4)
        BAD("v1: expected SRC DST SPORT DPORT");
    for (int i = 0; i < 2; i++) {
        struct netaddr *a = i == 0 ? &info->src : &info->dst;
        uint8_t raw[16];
        char buf[64];
        if (fl[i] >= sizeof buf)
            BAD("v1: address too long");
        memcpy(buf, f[i], fl[i]);
        buf[fl[i]] = '\0';
        if (inet_pton(family, buf, raw) != 1)
            BAD(family == AF_INET ? "v1: invalid IPv4 address" : "v1: invalid IPv6 address");
        netaddr_parse(f[i], fl[i], a); /* v4-mapped IPv6 becomes AF_INET */
        int port = v1_port(f[2 + i], fl[2 + i]);
        if (port < 0)
            BAD("v1: invalid port");
        a->port = (uint16_t)port;
    }
    info->has_addr = true;
    return 0;
}

static int parse_v1(const uint8_t *buf, size_t len, struct proxy_info *info, const char **why)
{
    /* the CR of a line of PROXY_V1_MAX bytes is at index PROXY_V1_MAX - 2 */
    size_t n = len < PROXY_V1_MAX - 1 ? len : PROXY_V1_MAX - 1;

    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\r') {
            if (i + 1 == len)
                return PROXY_PARTIAL;
            if (buf[i + 1] != '\n')
                BAD("v1: CR without LF");
            if (v1_fields((const char *)buf, i, info, why) < 0)
                return PROXY_BAD;
            return (int)(i + 2);
        }
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            BAD("v1: control or non-ASCII byte in the line");
    }
    if (len >= PROXY_V1_MAX - 1)
        BAD("v1: no CRLF within 107 bytes");
    return PROXY_PARTIAL;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static int parse_v2(const uint8_t *buf, size_t len, struct proxy_info *info, const char **why)
{
    if (len < PROXY_V2_FIXED)
        return PROXY_PARTIAL;
    uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0f;
    uint8_t fam = buf[13] >> 4, proto = buf[13] & 0x0f;
    size_t body = get16(buf + 14);
    if (ver != 2)
        BAD("v2: unknown version");
    if (cmd > PROXY_CMD_PROXY)
        BAD("v2: unknown command");
    if (fam > 3)
        BAD("v2: unknown address family");
    if (proto > 1)
        BAD("v2: transport is not STREAM");
    if (body > PROXY_V2_MAX_LEN)
        BAD("v2: header longer than 2048 bytes");
    static const size_t addr_len[4] = {0, 12, 36, 216};
    if (body < addr_len[fam])
        BAD("v2: length too short for the addresses");
    if ((fam == 1 || fam == 2) && proto != 1 && cmd == PROXY_CMD_PROXY)
        BAD("v2: INET addresses without STREAM transport");
    if (len < PROXY_V2_FIXED + body)
        return PROXY_PARTIAL;
    const uint8_t *p = buf + PROXY_V2_FIXED;
    /* TLVs: each must fit in the header */
    for (size_t off = addr_len[fam]; off < body;) {
        if (body - off < 3)
            BAD("v2: truncated TLV");
        size_t tl = get16(p + off + 1);
        if (tl > body - off - 3)
            BAD("v2: TLV runs past the header");
        off += 3 + tl;
    }
    info->version = 2;
    info->cmd = cmd;
    info->has_addr = cmd == PROXY_CMD_PROXY && (fam == 1 || fam == 2);
    if (info->has_addr) {
        size_t al = fam == 1 ? 4 : 16;
        uint8_t raw[16];
        for (int i = 0; i < 2; i++) {
            struct netaddr *a = i == 0 ? &info->src : &info->dst;
            memset(a, 0, sizeof *a);
            memcpy(raw, p + i * al, al);
            if (fam == 1) {
                a->family = AF_INET;
                memcpy(a->a, raw, 4);
            } else {
                struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
                memcpy(&s6.sin6_addr, raw, 16);
                netaddr_from_sockaddr((struct sockaddr *)&s6, sizeof s6, a);
            }
            a->port = get16(p + 2 * al + 2 * (size_t)i);
        }
    }
    return (int)(PROXY_V2_FIXED + body);
}

/* Contract in proxy.h. */
int proxy_parse(const uint8_t *buf, size_t len, struct proxy_info *info, const char **why)
{
    static const char *unused;

    if (why == NULL)
        why = &unused;
    *why = NULL;
    memset(info, 0, sizeof *info);
    if (len == 0)
        return PROXY_PARTIAL;
    if (buf[0] == v2sig[0]) {
        size_t n = len < sizeof v2sig ? len : sizeof v2sig;
        if (memcmp(buf, v2sig, n) != 0)
            BAD("not a PROXY protocol header");
        return len < sizeof v2sig ? PROXY_PARTIAL : parse_v2(buf, len, info, why);
    }
    size_t n = len < sizeof v1sig - 1 ? len : sizeof v1sig - 1;
    if (memcmp(buf, v1sig, n) != 0)
        BAD("not a PROXY protocol header");
    return len < sizeof v1sig - 1 ? PROXY_PARTIAL : parse_v1(buf, len, info, why);
}

/* ---- encoder ---------------------------------------------------------- */

static bool is_ip(const struct netaddr *a)
{
    return a != NULL && (a->family == AF_INET || a->family == AF_INET6);
}

/* a as 16 IPv6 bytes (v4-mapped for IPv4). */
static void as_v6(const struct netaddr *a, uint8_t out[16])
{
    if (a->family == AF_INET6) {
        memcpy(out, a->a, 16);
        return;
    }
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, a->a, 4);
}

static void put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static int encode_v1(const struct proxy_out *o, uint8_t *out, size_t cap)
{
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    int n;

    if (is_ip(o->src) && is_ip(o->dst) && o->src->family == o->dst->family) {
        n = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n",
                     o->src->family == AF_INET ? "TCP4" : "TCP6",
                     netaddr_host_str(o->src, s, sizeof s), netaddr_host_str(o->dst, d, sizeof d),
                     o->src->port, o->dst->port);
    } else if (is_ip(o->src) && is_ip(o->dst)) {
        /* mixed families: both as IPv6 (IPv4 v4-mapped) */
        uint8_t a[16], b[16];
        as_v6(o->src, a);
        as_v6(o->dst, b);
        inet_ntop(AF_INET6, a, s, sizeof s);
        inet_ntop(AF_INET6, b, d, sizeof d);
        n = snprintf((char *)out, cap, "PROXY TCP6 %s %s %u %u\r\n", s, d, o->src->port,
                     o->dst->port);
    } else {
        n = snprintf((char *)out, cap, "PROXY UNKNOWN\r\n");
    }
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Append a TLV; false when it does not fit. */
static bool put_tlv(uint8_t *out, size_t cap, size_t *off, uint8_t type, const void *v, size_t vl)
{
    if (cap - *off < 3 + vl)
        return false;
    out[*off] = type;
    put16(out + *off + 1, vl);
    if (vl)
        memcpy(out + *off + 3, v, vl);
    *off += 3 + vl;
    return true;
}

static int encode_v2(const struct proxy_out *o, uint8_t *out, size_t cap)
{
    size_t off = PROXY_V2_FIXED;

    if (cap < PROXY_V2_FIXED + 36)
        return -1;
    memcpy(out, v2sig, sizeof v2sig);
    if (is_ip(o->src) && is_ip(o->dst)) {
        out[12] = 0x21; /* version 2, PROXY */
        if (o->src->family == AF_INET && o->dst->family == AF_INET) {
            out[13] = 0x11; /* INET, STREAM */
            memcpy(out + off, o->src->a, 4);
            memcpy(out + off + 4, o->dst->a, 4);
            put16(out + off + 8, o->src->port);
            put16(out + off + 10, o->dst->port);
            off += 12;
        } else {
            out[13] = 0x21; /* INET6, STREAM */
            as_v6(o->src, out + off);
            as_v6(o->dst, out + off + 16);
            put16(out + off + 32, o->src->port);
            put16(out + off + 34, o->dst->port);
            off += 36;
        }
    } else {
        out[12] = 0x20; /* version 2, LOCAL */
        out[13] = 0x00; /* UNSPEC */
    }
    if (o->authority != NULL && o->authority_len > 0 && o->authority_len <= 255 &&
        !put_tlv(out, cap, &off, PP2_TYPE_AUTHORITY, o->authority, o->authority_len))
        return -1;
    if (o->tls) {
        /* client(1) verify(4) then sub-TLVs */
        size_t start = off;
        if (cap - off < 3 + 5)
            return -1;
        out[off] = PP2_TYPE_SSL;
        off += 3;
        out[off] =
            PP2_CLIENT_SSL | (o->cert_verified ? PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS : 0);
        uint32_t verify = o->cert_verified ? 0 : 1;
        out[off + 1] = (uint8_t)(verify >> 24);
        out[off + 2] = (uint8_t)(verify >> 16);
        out[off + 3] = (uint8_t)(verify >> 8);
        out[off + 4] = (uint8_t)verify;
        off += 5;
        if (o->tls_version != NULL && strlen(o->tls_version) <= 255 &&
            !put_tlv(out, cap, &off, PP2_SUBTYPE_SSL_VERSION, o->tls_version,
                     strlen(o->tls_version)))
            return -1;
        if (o->cert_verified && o->cn != NULL && strlen(o->cn) <= 255 &&
            !put_tlv(out, cap, &off, PP2_SUBTYPE_SSL_CN, o->cn, strlen(o->cn)))
            return -1;
        put16(out + start + 1, off - start - 3);
    }
    put16(out + 14, off - PROXY_V2_FIXED);
    return (int)off;
}

/* Contract in proxy.h. */
int proxy_encode(const struct proxy_out *o, uint8_t *out, size_t cap)
{
    if (o->version == 1)
        return encode_v1(o, out, cap);
    if (o->version == 2)
        return encode_v2(o, out, cap);
    return -1;
}
