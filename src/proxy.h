/* proxy.h - the PROXY protocol (haproxy's proxy-protocol.txt), versions 1
 * (text) and 2 (binary): a parser for the header a load balancer puts in
 * front of a connection, and an encoder for the header wsgate sends to
 * backends. Pure: bytes in, result out; no I/O, no allocation. */
#ifndef WSGATE_PROXY_H
#define WSGATE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define PROXY_V1_MAX 107      /* a v1 line, CRLF included, is at most this long */
#define PROXY_V2_MAX_LEN 2048 /* largest v2 length field accepted (addresses + TLVs) */
#define PROXY_V2_FIXED 16     /* signature, version/command, family, length */
#define PROXY_MAX_HEADER (PROXY_V2_FIXED + PROXY_V2_MAX_LEN) /* longest header accepted */

enum {
    PROXY_PARTIAL = -2, /* a valid beginning: read more (the caller's deadline bounds it) */
    PROXY_BAD = -1,     /* not a PROXY header, or a malformed one: close without a response */
};

enum proxy_cmd {
    PROXY_CMD_LOCAL = 0, /* v2 LOCAL: the sender's own connection (health check) */
    PROXY_CMD_PROXY = 1, /* relayed for a client */
};

/* What a header said. When has_addr is false (v1 UNKNOWN, v2 LOCAL, v2
 * families UNSPEC and UNIX) the TCP peer stands for the client. */
struct proxy_info {
    int version; /* 1 or 2 */
    enum proxy_cmd cmd;
    bool has_addr;
    struct netaddr src, dst; /* AF_INET / AF_INET6 with ports, when has_addr */
};

/* Parse the header at the start of buf[0..len). Returns the header length
 * (the bytes after it belong to the client's stream: TLS or HTTP), or
 * PROXY_PARTIAL (every byte so far fits a header: read more), or PROXY_BAD
 * with a static reason in *why. Version is told from the first bytes. v1:
 * "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" with single spaces, addresses of
 * the named family (no zone ids), decimal ports 0..65535 without leading
 * zeros, or "PROXY UNKNOWN...\r\n"; no CRLF within PROXY_V1_MAX bytes is BAD.
 * v2: version 2, command LOCAL or PROXY, family UNSPEC/INET/INET6/UNIX with
 * transport UNSPEC or STREAM (INET/INET6 must be STREAM), length at most
 * PROXY_V2_MAX_LEN and large enough for the family's addresses; TLVs after
 * the addresses are skipped (a TLV running past the header is BAD). Anything
 * else is BAD. */
int proxy_parse(const uint8_t *buf, size_t len, struct proxy_info *info, const char **why);

/* What wsgate sends to a backend (backend_proxy_protocol). */
struct proxy_out {
    int version;               /* 1 or 2 */
    const struct netaddr *src; /* client address; NULL or not INET/INET6 = unknown */
    const struct netaddr *dst; /* incoming PROXY destination, else wsgate's local address */
    const char *authority;     /* v2: Host header without its port; NULL = none */
    size_t authority_len;
    bool tls;                /* v2: the client came over TLS: PP2_TYPE_SSL */
    const char *tls_version; /* "TLSv1.3" (PP2_SUBTYPE_SSL_VERSION); NULL = none */
    bool cert_verified;      /* a client certificate was presented and verified */
    const char *cn;          /* its CN (PP2_SUBTYPE_SSL_CN) when verified; NULL = none */
};

/* PP2 TLV types used (proxy-protocol.txt section 2.2). */
#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_NOOP 0x04
#define PP2_TYPE_SSL 0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN 0x22
#define PP2_CLIENT_SSL 0x01
#define PP2_CLIENT_CERT_CONN 0x02
#define PP2_CLIENT_CERT_SESS 0x04

/* Write the header o describes into out[cap]. v1: "PROXY TCP4|TCP6 ..." when
 * src and dst are both addresses of one family, else "PROXY UNKNOWN\r\n". v2:
 * command PROXY with family INET or INET6 (a mixed pair is sent as IPv6 with
 * the IPv4 one v4-mapped), or command LOCAL with family AF_UNSPEC when src is
 * unknown (a Unix-socket client), then the TLVs (AUTHORITY, SSL when tls;
 * strings longer than 255 bytes are left out). Returns the length, or -1
 * when cap is too small (PROXY_MAX_OUT always suffices). */
#define PROXY_MAX_OUT (PROXY_V2_FIXED + 36 + 3 + 255 + 3 + 5 + 3 + 255 + 3 + 255)
int proxy_encode(const struct proxy_out *o, uint8_t *out, size_t cap);

#endif
