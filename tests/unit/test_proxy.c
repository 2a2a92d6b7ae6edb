/* test_proxy.c - PROXY protocol v1/v2 parser and encoder, byte by byte. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proxy.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Parse len bytes placed right before a guard page, so any read past the
 * end faults under every build. */
static int parse_guarded(const void *data, size_t len, struct proxy_info *info, const char **why)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t span = ((len + (size_t)pg - 1) / (size_t)pg + 1) * (size_t)pg;
    uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    uint8_t *guard = m + span - (size_t)pg;
    assert_int_equal(mprotect(guard, (size_t)pg, PROT_NONE), 0);
    memcpy(guard - len, data, len);
    int rc = proxy_parse(guard - len, len, info, why);
    munmap(m, span);
    return rc;
}

static int parse_str(const char *s, struct proxy_info *info)
{
    const char *why;
    return parse_guarded(s, strlen(s), info, &why);
}

static void expect_addr(const struct netaddr *a, const char *text)
{
    char buf[NETADDR_STRLEN];
    assert_string_equal(netaddr_str(a, buf, sizeof buf), text);
}

/* Every proper prefix of a valid header is PARTIAL; the whole is its length. */
static void check_prefixes(const uint8_t *h, size_t len, size_t hlen)
{
    struct proxy_info info;
    const char *why;
    for (size_t i = 0; i < hlen; i++)
        assert_int_equal(parse_guarded(h, i, &info, &why), PROXY_PARTIAL);
    assert_int_equal(parse_guarded(h, len, &info, &why), (int)hlen);
}

static void test_v1_tcp4(void **state)
{
    struct proxy_info info;
    const char *h = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
    size_t hl = strlen("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_int_equal(parse_str(h, &info), (int)hl);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.cmd, PROXY_CMD_PROXY);
    assert_true(info.has_addr);
    expect_addr(&info.src, "192.0.2.1:56324");
    expect_addr(&info.dst, "198.51.100.2:443");
    check_prefixes((const uint8_t *)h, strlen(h), hl);
}

static void test_v1_tcp6_and_unknown(void **state)
{
    struct proxy_info info;
    assert_int_equal(parse_str("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n", &info), 36);
    expect_addr(&info.src, "[2001:db8::1]:65535");
    expect_addr(&info.dst, "[::1]:0");
    /* v4-mapped source is an IPv4 client */
    assert_true(parse_str("PROXY TCP6 ::ffff:10.1.2.3 ::1 1 2\r\n", &info) > 0);
    expect_addr(&info.src, "10.1.2.3:1");
    assert_int_equal(parse_str("PROXY UNKNOWN\r\n", &info), 15);
    assert_int_equal(info.version, 1);
    assert_false(info.has_addr);
    assert_int_equal(parse_str("PROXY UNKNOWN ffff::1 ::1 1 2\r\n", &info), 31);
    assert_false(info.has_addr);
}

static void test_v1_bad(void **state)
{
    struct proxy_info info;
    static const char *bad[] = {
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n",     /* LF only */
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\rX",    /* CR without LF */
        "PROXY TCP4 192.0.2.1  198.51.100.2 56324 443\r\n",  /* two spaces */
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",       /* field missing */
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 1\r\n", /* field extra */
        "PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",   /* port range */
        "PROXY TCP4 192.0.2.1 198.51.100.2 0443 443\r\n",    /* leading zero */
        "PROXY TCP4 192.0.2.1 198.51.100.2 -1 443\r\n",
        "PROXY TCP4 ::1 198.51.100.2 1 443\r\n",       /* v6 address in TCP4 */
        "PROXY TCP6 192.0.2.1 ::1 1 443\r\n",          /* v4 address in TCP6 */
        "PROXY TCP6 fe80::1%eth0 ::1 1 443\r\n",       /* zone id */
        "PROXY TCP6 fe80::1%25eth0 ::1 1 443\r\n",     /* zone id, encoded */
        "PROXY TCP4 1.2.3 198.51.100.2 1 443\r\n",     /* legacy IPv4 form */
        "PROXY UDP4 192.0.2.1 198.51.100.2 1 443\r\n", /* protocol */
        "PROXY UNKNOWNX\r\n",
        "PROXY tcp4 192.0.2.1 198.51.100.2 1 443\r\n",  /* case */
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 443 \r\n", /* trailing space */
        "PROXY TCP4 192.0.2.1\t198.51.100.2 1 443\r\n", /* tab */
        "PROXY \r\n",
        "proxy TCP4 192.0.2.1 198.51.100.2 1 443\r\n", /* not the signature */
        "GET / HTTP/1.1\r\n",                          /* no header at all */
        "\x16\x03\x01",                                /* a ClientHello */
        "PROXYTCP4",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        int rc = parse_guarded(bad[i], strlen(bad[i]), &info, &why);
        if (rc != PROXY_BAD)
            fail_msg("case %zu '%s' gave %d", i, bad[i], rc);
        assert_non_null(why);
    }
    /* a non-header is refused at its first byte, a prefix waits */
    const char *why;
    assert_int_equal(parse_guarded("G", 1, &info, &why), PROXY_BAD);
    assert_int_equal(parse_guarded("PROX", 4, &info, &why), PROXY_PARTIAL);
    assert_int_equal(parse_guarded("PROXX", 5, &info, &why), PROXY_BAD);
}

/* 107 bytes with the CRLF is the longest line; 108 is too long, and a line
 * without CRLF is refused once 107 bytes are in without one. */
static void test_v1_length_bound(void **state)
{
    char line[256];
    struct proxy_info info;
    const char *why;
    /* "PROXY UNKNOWN " + padding + CRLF = exactly 107 */
    int n = snprintf(line, sizeof line, "PROXY UNKNOWN %s", "");
    memset(line + n, 'x', 107 - 2 - (size_t)n);
    memcpy(line + 105, "\r\n", 2);
    assert_int_equal(parse_guarded(line, 107, &info, &why), 107);
    /* one byte longer */
    memset(line + n, 'x', 108 - 2 - (size_t)n);
    memcpy(line + 106, "\r\n", 2);
    assert_int_equal(parse_guarded(line, 108, &info, &why), PROXY_BAD);
    assert_int_equal(parse_guarded(line, 106, &info, &why), PROXY_BAD);
    assert_int_equal(parse_guarded(line, 105, &info, &why), PROXY_PARTIAL);
    /* no CRLF at all */
    memset(line, 'x', sizeof line);
    memcpy(line, "PROXY TCP4 ", 11);
    assert_int_equal(parse_guarded(line, 106, &info, &why), PROXY_BAD);
    assert_string_equal(why, "v1: no CRLF within 107 bytes");
}

/* Build a v2 header: cmd/fam bytes, body. Returns its length. */
static size_t v2(uint8_t *out, uint8_t vc, uint8_t ft, const uint8_t *body, size_t blen)
{
    memcpy(out, SIG, 12);
    out[12] = vc;
    out[13] = ft;
    out[14] = (uint8_t)(blen >> 8);
    out[15] = (uint8_t)blen;
    memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void test_v2_inet_with_tlvs(void **state)
{
    uint8_t body[64] = {192,
                        0,
                        2,
                        1,
                        198,
                        51,
                        100,
                        2,
                        0xdc,
                        0x04,
                        0x01,
                        0xbb,
                        /* AUTHORITY "a.b" */ 0x02,
                        0,
                        3,
                        'a',
                        '.',
                        'b',
                        /* NOOP, empty */ 0x04,
                        0,
                        0,
                        /* unknown 0xE0, 2 bytes */ 0xE0,
                        0,
                        2,
                        0xff,
                        0xff};
    uint8_t h[256];
    size_t hl = v2(h, 0x21, 0x11, body, 12 + 6 + 3 + 5);
    memcpy(h + hl, "\x16\x03\x01", 3); /* the ClientHello that follows */
    struct proxy_info info;
    const char *why;
    assert_int_equal(parse_guarded(h, hl + 3, &info, &why), (int)hl);
    assert_int_equal(info.version, 2);
    assert_int_equal(info.cmd, PROXY_CMD_PROXY);
    assert_true(info.has_addr);
    expect_addr(&info.src, "192.0.2.1:56324");
    expect_addr(&info.dst, "198.51.100.2:443");
    check_prefixes(h, hl + 3, hl);
}

static void test_v2_inet6_local_unspec_unix(void **state)
{
    uint8_t body[216] = {0}, h[300];
    struct proxy_info info;
    const char *why;
    body[15] = 1;    /* src ::1 */
    body[16] = 0x20; /* dst 2001:db8::2 */
    body[17] = 0x01;
    body[18] = 0x0d;
    body[19] = 0xb8;
    body[31] = 2;
    body[32] = 0x12; /* sport 0x1234 */
    body[33] = 0x34;
    body[35] = 80;
    size_t hl = v2(h, 0x21, 0x21, body, 36);
    assert_int_equal(parse_guarded(h, hl, &info, &why), (int)hl);
    expect_addr(&info.src, "[::1]:4660");
    expect_addr(&info.dst, "[2001:db8::2]:80");
    /* LOCAL: addresses ignored, peer stands */
    hl = v2(h, 0x20, 0x21, body, 36);
    assert_int_equal(parse_guarded(h, hl, &info, &why), (int)hl);
    assert_int_equal(info.cmd, PROXY_CMD_LOCAL);
    assert_false(info.has_addr);
    hl = v2(h, 0x20, 0x00, body, 0);
    assert_int_equal(parse_guarded(h, hl, &info, &why), 16);
    assert_false(info.has_addr);
    /* PROXY with UNSPEC and with UNIX: accepted, no address */
    hl = v2(h, 0x21, 0x00, body, 0);
    assert_int_equal(parse_guarded(h, hl, &info, &why), 16);
    assert_false(info.has_addr);
    hl = v2(h, 0x21, 0x31, body, 216);
    assert_int_equal(parse_guarded(h, hl, &info, &why), 232);
    assert_false(info.has_addr);
    assert_int_equal(info.cmd, PROXY_CMD_PROXY);
}

static void test_v2_bad(void **state)
{
    uint8_t body[PROXY_V2_MAX_LEN + 16] = {0}, h[sizeof body + 16];
    struct proxy_info info;
    const char *why;
    struct {
        uint8_t vc, ft;
        size_t len;
        const char *why;
    } cases[] = {
        {0x11, 0x11, 12, "v2: unknown version"},
        {0x31, 0x11, 12, "v2: unknown version"},
        {0x22, 0x11, 12, "v2: unknown command"},
        {0x2f, 0x11, 12, "v2: unknown command"},
        {0x21, 0x41, 12, "v2: unknown address family"},
        {0x21, 0x12, 12, "v2: transport is not STREAM"}, /* DGRAM */
        {0x21, 0x13, 12, "v2: transport is not STREAM"},
        {0x21, 0x10, 12, "v2: INET addresses without STREAM transport"},
        {0x21, 0x11, 11, "v2: length too short for the addresses"},
        {0x21, 0x21, 35, "v2: length too short for the addresses"},
        {0x21, 0x31, 215, "v2: length too short for the addresses"},
        {0x21, 0x11, PROXY_V2_MAX_LEN + 1, "v2: header longer than 2048 bytes"},
        {0x21, 0x11, 65535, "v2: header longer than 2048 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t blen = cases[i].len > sizeof body ? 16 : cases[i].len;
        size_t hl = v2(h, cases[i].vc, cases[i].ft, body, blen);
        h[14] = (uint8_t)(cases[i].len >> 8);
        h[15] = (uint8_t)cases[i].len;
        /* decided from the 16 fixed bytes alone, before the body arrives */
        assert_int_equal(parse_guarded(h, 16, &info, &why), PROXY_BAD);
        assert_string_equal(why, cases[i].why);
        assert_int_equal(parse_guarded(h, hl, &info, &why), PROXY_BAD);
    }
    /* the largest accepted length */
    size_t hl = v2(h, 0x21, 0x11, body, PROXY_V2_MAX_LEN);
    body[12] = 0xE0; /* one TLV filling the rest */
    hl = v2(h, 0x21, 0x11, body, PROXY_V2_MAX_LEN);
    h[16 + 13] = (uint8_t)((PROXY_V2_MAX_LEN - 15) >> 8);
    h[16 + 14] = (uint8_t)(PROXY_V2_MAX_LEN - 15);
    assert_int_equal(parse_guarded(h, hl, &info, &why), 16 + PROXY_V2_MAX_LEN);
    assert_int_equal(parse_guarded(h, hl - 1, &info, &why), PROXY_PARTIAL);
    /* a TLV running one byte past the header */
    h[16 + 14] = (uint8_t)(PROXY_V2_MAX_LEN - 14);
    assert_int_equal(parse_guarded(h, hl, &info, &why), PROXY_BAD);
    assert_string_equal(why, "v2: TLV runs past the header");
    /* a TLV header cut short: 2 bytes left */
    memset(body, 0, sizeof body);
    hl = v2(h, 0x21, 0x11, body, 14);
    assert_int_equal(parse_guarded(h, hl, &info, &why), PROXY_BAD);
    assert_string_equal(why, "v2: truncated TLV");
    /* a broken signature, at each of its bytes */
    for (size_t i = 0; i < 12; i++) {
        hl = v2(h, 0x21, 0x11, body, 12);
        h[i] ^= 0x40;
        int rc = parse_guarded(h, hl, &info, &why);
        assert_int_equal(rc, PROXY_BAD);
    }
}

static void test_encode_v1(void **state)
{
    struct netaddr s, d, u = {.family = AF_UNIX};
    uint8_t out[PROXY_MAX_OUT];
    assert_int_equal(netaddr_parse("192.0.2.1", 9, &s), 0);
    assert_int_equal(netaddr_parse("127.0.0.1", 9, &d), 0);
    s.port = 5555;
    d.port = 8080;
    struct proxy_out o = {.version = 1, .src = &s, .dst = &d};
    int n = proxy_encode(&o, out, sizeof out);
    const char *want = "PROXY TCP4 192.0.2.1 127.0.0.1 5555 8080\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(out, want, (size_t)n);
    /* round trip */
    struct proxy_info info;
    assert_int_equal(proxy_parse(out, (size_t)n, &info, NULL), n);
    assert_true(netaddr_same_host(&info.src, &s));
    assert_int_equal(info.src.port, 5555);
    /* a mixed pair goes as TCP6 with v4-mapped */
    struct netaddr d6;
    assert_int_equal(netaddr_parse("::1", 3, &d6), 0);
    d6.port = 443;
    o.dst = &d6;
    n = proxy_encode(&o, out, sizeof out);
    want = "PROXY TCP6 ::ffff:192.0.2.1 ::1 5555 443\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(out, want, (size_t)n);
    /* a Unix client */
    o.src = &u;
    n = proxy_encode(&o, out, sizeof out);
    assert_int_equal(n, 15);
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
    /* too small a buffer */
    o.src = &s;
    o.dst = &d;
    assert_int_equal(proxy_encode(&o, out, 20), -1);
}

static void test_encode_v2(void **state)
{
    struct netaddr s, d;
    uint8_t out[PROXY_MAX_OUT];
    assert_int_equal(netaddr_parse("192.0.2.1", 9, &s), 0);
    assert_int_equal(netaddr_parse("127.0.0.1", 9, &d), 0);
    s.port = 0x1234;
    d.port = 0x1f90;
    struct proxy_out o = {
        .version = 2, .src = &s, .dst = &d, .authority = "example.com", .authority_len = 11};
    int n = proxy_encode(&o, out, sizeof out);
    static const uint8_t want[] = {
        0x0D, 0x0A, 0x0D, 0x0A,    0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, /* sig */
        0x21, 0x11, 0x00, 12 + 14,                                                 /* len */
        192,  0,    2,    1,       127,  0,    0,    1,    0x12, 0x34, 0x1f, 0x90, 0x02,
        0x00, 11,   'e',  'x',     'a',  'm',  'p',  'l',  'e',  '.',  'c',  'o',  'm',
    };
    assert_int_equal(n, (int)sizeof want);
    assert_memory_equal(out, want, sizeof want);
    struct proxy_info info;
    assert_int_equal(proxy_parse(out, (size_t)n, &info, NULL), n);

    /* TLS with a verified client certificate */
    o.tls = true;
    o.tls_version = "TLSv1.3";
    o.cert_verified = true;
    o.cn = "alice";
    o.authority = NULL;
    n = proxy_encode(&o, out, sizeof out);
    static const uint8_t ssl[] = {
        0x20, 0x00, 5 + 10 + 8, 0x07, 0,   0,   0,   0, /* client SSL|CERT_CONN|CERT_SESS, verify 0
                                                         */
        0x21, 0x00, 7,          'T',  'L', 'S', 'v', '1', '.',
        '3',  0x22, 0x00,       5,    'a', 'l', 'i', 'c', 'e',
    };
    assert_int_equal(n, 16 + 12 + (int)sizeof ssl);
    assert_int_equal(out[14] << 8 | out[15], 12 + (int)sizeof ssl);
    assert_memory_equal(out + 28, ssl, sizeof ssl);
    assert_int_equal(proxy_parse(out, (size_t)n, &info, NULL), n);
    /* no verified certificate: no CN, verify non-zero, client flag SSL only */
    o.cert_verified = false;
    n = proxy_encode(&o, out, sizeof out);
    static const uint8_t ssl2[] = {0x20, 0x00, 5 + 10, 0x01, 0,   0,   0,   1,   0x21,
                                   0x00, 7,    'T',    'L',  'S', 'v', '1', '.', '3'};
    assert_int_equal(n, 16 + 12 + (int)sizeof ssl2);
    assert_memory_equal(out + 28, ssl2, sizeof ssl2);

    /* IPv6 client */
    struct netaddr s6;
    assert_int_equal(netaddr_parse("2001:db8::7", 11, &s6), 0);
    s6.port = 1;
    o = (struct proxy_out){.version = 2, .src = &s6, .dst = &d};
    n = proxy_encode(&o, out, sizeof out);
    assert_int_equal(n, 16 + 36);
    assert_int_equal(out[13], 0x21);
    static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    assert_memory_equal(out + 16 + 16, mapped, 16);
    assert_int_equal(proxy_parse(out, (size_t)n, &info, NULL), n);
    expect_addr(&info.src, "[2001:db8::7]:1");
    expect_addr(&info.dst, "127.0.0.1:8080");

    /* a Unix client: LOCAL, AF_UNSPEC, no addresses */
    struct netaddr u = {.family = AF_UNIX};
    o.src = &u;
    n = proxy_encode(&o, out, sizeof out);
    assert_int_equal(n, 16);
    assert_int_equal(out[12], 0x20);
    assert_int_equal(out[13], 0x00);
    assert_int_equal(out[15], 0);
    /* an authority over 255 bytes is left out */
    char big[300];
    memset(big, 'a', sizeof big);
    o = (struct proxy_out){
        .version = 2, .src = &s, .dst = &d, .authority = big, .authority_len = sizeof big};
    assert_int_equal(proxy_encode(&o, out, sizeof out), 28);
    assert_int_equal(proxy_encode(&o, out, 27), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6_and_unknown),
        cmocka_unit_test(test_v1_bad),
        cmocka_unit_test(test_v1_length_bound),
        cmocka_unit_test(test_v2_inet_with_tlvs),
        cmocka_unit_test(test_v2_inet6_local_unspec_unix),
        cmocka_unit_test(test_v2_bad),
        cmocka_unit_test(test_encode_v1),
        cmocka_unit_test(test_encode_v2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
