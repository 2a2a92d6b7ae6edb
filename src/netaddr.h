/* netaddr.h - one compact address type for client addresses, its parser,
 * CIDR lists (with the word "unix" for Unix-socket peers), the per-prefix key
 * the per-address limits count by, and DESIGN.md's client-address rule over
 * trusted proxies and forwarding headers. Pure: no I/O, no allocation except
 * in netlist_add(). */
#ifndef WSGATE_NETADDR_H
#define WSGATE_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* family: AF_INET (a[0..3]), AF_INET6 (a[0..15]), AF_UNIX (a Unix-socket
 * peer: no address), AF_UNSPEC (unknown). IPv4-mapped IPv6 addresses are
 * stored as AF_INET. Bytes of a beyond the family's length are zero, so two
 * equal addresses compare equal with memcmp. port in host order. */
struct netaddr {
    uint8_t family;
    uint8_t pad;
    uint16_t port;
    uint8_t a[16];
};

/* One CIDR network ("10.0.0.0/8", "::1/128", "1.2.3.4" = /32) or, with
 * family AF_UNIX, the word "unix". Host bits of net are zero. */
struct netcidr {
    struct netaddr net;
    uint8_t prefix;
};

#define NETADDR_STRLEN 56 /* "[v6]:port", "unix", with the NUL */

/* An IPv4 dotted quad or an IPv6 literal (no brackets, no port, no zone id
 * "%eth0") in s[0..len). Returns 0 with *out (port 0), or -1. */
int netaddr_parse(const char *s, size_t len, struct netaddr *out);

/* An address as forwarding headers write it: "1.2.3.4", "1.2.3.4:80",
 * "::1", "[::1]", "[::1]:80" in s[0..len). The port is dropped (0). 0 or -1. */
int netaddr_parse_hostport(const char *s, size_t len, struct netaddr *out);

/* From a socket address (AF_INET, AF_INET6 with v4-mapped -> AF_INET,
 * AF_UNIX -> family AF_UNIX). Others: family AF_UNSPEC. */
void netaddr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct netaddr *out);

/* To a socket address (AF_INET, AF_INET6). Returns its length, 0 for other
 * families. */
socklen_t netaddr_to_sockaddr(const struct netaddr *a, struct sockaddr_storage *ss);

/* "1.2.3.4:80", "[::1]:80", "unix", "unknown" into out[len]. Returns out. */
char *netaddr_str(const struct netaddr *a, char *out, size_t len);
/* The address alone: "1.2.3.4", "::1", "unix", "unknown". Returns out. */
char *netaddr_host_str(const struct netaddr *a, char *out, size_t len);

/* Equal family and address (ports ignored). */
bool netaddr_same_host(const struct netaddr *x, const struct netaddr *y);

/* "10.0.0.0/8", "2001:db8::/32", "1.2.3.4" (= /32), "::1" (= /128), "unix".
 * Set host bits are an error (they would say something else than meant).
 * Returns 0, or -1 with a message in err. */
int netcidr_parse(const char *s, struct netcidr *out, char *err, size_t errlen);
/* The text netcidr_parse() reads back ("10.0.0.0/8", "unix"). Returns out. */
char *netcidr_str(const struct netcidr *c, char *out, size_t len);
/* True when a lies in c (a Unix peer matches only "unix"). */
bool netcidr_match(const struct netcidr *c, const struct netaddr *a);
/* True when a lies in any of list[0..n). */
bool netcidr_list_match(const struct netcidr *list, size_t n, const struct netaddr *a);

/* The key the per-address limits count a by: the address with port 0 and,
 * for IPv6, only its first v6_prefix bits (1..128). Unix peers all share one
 * key (family AF_UNIX). */
void netaddr_key(const struct netaddr *a, unsigned v6_prefix, struct netaddr *key);

/* Which header carries forwarded client addresses. */
enum real_ip_header {
    REAL_IP_OFF = 0,
    REAL_IP_XFF,       /* X-Forwarded-For: 1.2.3.4, 5.6.7.8 */
    REAL_IP_FORWARDED, /* Forwarded: for=1.2.3.4;proto=https, for="[::1]:80" */
    REAL_IP_X_REAL_IP, /* X-Real-IP: 1.2.3.4 */
};

/* The header name of h ("X-Forwarded-For"...), NULL for REAL_IP_OFF. */
const char *real_ip_header_name(enum real_ip_header h);

/* One header line's value (not NUL-terminated). */
struct netaddr_hval {
    const char *p;
    size_t len;
};

#define NETADDR_MAX_HOPS 1000 /* entries read from the headers at most, the rest ignored */

/* DESIGN.md's client address. start is the PROXY source when there was one,
 * else the TCP peer. When start is in trusted[0..ntrusted) and hdr is not
 * off, the entries of vals[0..nvals) (the values of every header line named
 * hdr, in order, as one list) are read right to left: the first entry not
 * trusted is the client; when every entry is trusted, the leftmost is. A
 * malformed entry (not an address; Forwarded "for=unknown", an obfuscated
 * identifier or an element without for=) ends the walk: the address found so
 * far stands. Only the rightmost NETADDR_MAX_HOPS entries are kept. A client
 * taken from a header has port 0. Writes *client (start itself when no
 * header entry applies) and returns true when a header entry decided. */
bool netaddr_client(const struct netaddr *start, const struct netcidr *trusted, size_t ntrusted,
                    enum real_ip_header hdr, const struct netaddr_hval *vals, size_t nvals,
                    struct netaddr *client);

#endif
