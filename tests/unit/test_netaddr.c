/* test_netaddr.c - addresses, CIDR lists, limit keys and the client-address
 * rule over trusted proxies and forwarding headers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "netaddr.h"

static struct netaddr A(const char *s) {
    struct netaddr a;
    if (netaddr_parse_hostport(s, strlen(s), &a) < 0)
        fail_msg("cannot parse '%s'", s);
    return a;
}

static void
expect_str(const struct netaddr *a, const char *want)
{
    char buf[NETADDR_STRLEN];
    assert_string_equal(netaddr_str(a, buf, sizeof buf), want);
}

static void test_parse(void **state)
{
    struct netaddr a;
    static const char *good[][2] = {
        {"1.2.3.4", "1.2.3.4:0"},
        {"1.2.3.4:80", "1.2.3.4:0"},
        {"::1", "[::1]:0"},
        {"[::1]", "[::1]:0"},
        {"[2001:db8::1]:443", "[2001:db8::1]:0"},
        {"::ffff:10.0.0.1", "10.0.0.1:0"},
        {"[::ffff:10.0.0.1]:5", "10.0.0.1:0"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(netaddr_parse_hostport(good[i][0], strlen(good[i][0]), &a), 0);
        expect_str(&a, good[i][1]);
    }
    static const char *bad[] = {
        "",          "1.2.3",         "1.2.3.4.5",    "256.1.1.1",
        "1.2.3.4:",  "1.2.3.4:99999", "[::1",         "[::1]x",
        "[::1]:",    "[1.2.3.4]",     "fe80::1%eth0", "[fe80::1%25eth0]:1",
        " 1.2.3.4",  "1.2.3.4 ",      "unknown",      "_hidden",
        "0x7f.1",    "::1:80:",       "1.2.3.4:-1",   "[::1]:1:2",
        "localhost", "1.2.3.4:0x10",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (netaddr_parse_hostport(bad[i], strlen(bad[i]), &a) == 0)
            fail_msg("'%s' was accepted", bad[i]);
    /* NUL inside */
    assert_int_equal(netaddr_parse("1.2.3.4\0", 8, &a), -1);
    /* plain parse takes no port or brackets */
    assert_int_equal(netaddr_parse("1.2.3.4:80", 10, &a), -1);
    assert_int_equal(netaddr_parse("[::1]", 5, &a), -1);
}

static void test_sockaddr(void **state)
{
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(99)};
    inet_pton(AF_INET6, "::ffff:192.0.2.9", &s6.sin6_addr);
    struct netaddr a;
    netaddr_from_sockaddr((struct sockaddr *)&s6, sizeof s6, &a);
    assert_int_equal(a.family, AF_INET);
    expect_str(&a, "192.0.2.9:99");
    struct sockaddr_storage ss;
    assert_int_equal(netaddr_to_sockaddr(&a, &ss), sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 99);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    netaddr_from_sockaddr((struct sockaddr *)&un, sizeof(sa_family_t), &a);
    assert_int_equal(a.family, AF_UNIX);
    expect_str(&a, "unix");
    assert_int_equal(netaddr_to_sockaddr(&a, &ss), 0);
    netaddr_from_sockaddr(NULL, 0, &a);
    expect_str(&a, "unknown");
}

static void test_cidr(void **state)
{
    struct netcidr c;
    char err[160], buf[64];
    assert_int_equal(netcidr_parse("10.0.0.0/8", &c, err, sizeof err), 0);
    assert_string_equal(netcidr_str(&c, buf, sizeof buf), "10.0.0.0/8");
    struct netaddr in = A("10.255.1.2"), out = A("11.0.0.1");
    assert_true(netcidr_match(&c, &in));
    assert_false(netcidr_match(&c, &out));
    assert_int_equal(netcidr_parse("::1", &c, err, sizeof err), 0);
    assert_string_equal(netcidr_str(&c, buf, sizeof buf), "::1/128");
    struct netaddr l6 = A("::1"), l4 = A("127.0.0.1");
    assert_true(netcidr_match(&c, &l6));
    assert_false(netcidr_match(&c, &l4));
    assert_int_equal(netcidr_parse("2001:db8::/33", &c, err, sizeof err), 0);
    struct netaddr x = A("2001:db8:7fff::1"), y = A("2001:db8:8000::1");
    assert_true(netcidr_match(&c, &x));
    assert_false(netcidr_match(&c, &y));
    assert_int_equal(netcidr_parse("0.0.0.0/0", &c, err, sizeof err), 0);
    assert_true(netcidr_match(&c, &out));
    assert_false(netcidr_match(&c, &l6));
    assert_int_equal(netcidr_parse("UNIX", &c, err, sizeof err), 0);
    assert_string_equal(netcidr_str(&c, buf, sizeof buf), "unix");
    struct netaddr u = {.family = AF_UNIX};
    assert_true(netcidr_match(&c, &u));
    assert_false(netcidr_match(&c, &in));
    static const char *bad[] = {
        "10.0.0.1/8",          "10.0.0.0/33",    "10.0.0.0/",   "10.0.0.0/08", "::1/129",
        "::ffff:10.0.0.0/104", "fe80::%eth0/64", "10.0.0.0/8x", "foo",         "",
        "10.0.0.0/-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (netcidr_parse(bad[i], &c, err, sizeof err) == 0)
            fail_msg("'%s' was accepted", bad[i]);
    assert_string_equal(err, "'10.0.0.0/-1': invalid prefix length (0..32)");
}

static void test_key(void **state)
{
    struct netaddr a = A("[2001:db8:1:3:3:4:5:6]:99"), b = A("2001:db8:1:3:ffff::1"), k1, k2;
    netaddr_key(&a, 64, &k1);
    netaddr_key(&b, 64, &k2);
    assert_memory_equal(&k1, &k2, sizeof k1);
    expect_str(&k1, "[2001:db8:1:3::]:0");
    netaddr_key(&a, 128, &k1);
    netaddr_key(&b, 128, &k2);
    assert_memory_not_equal(&k1, &k2, sizeof k1);
    netaddr_key(&a, 63, &k1);
    expect_str(&k1, "[2001:db8:1:2::]:0");
    struct netaddr v4 = A("1.2.3.4:80");
    v4.port = 80;
    netaddr_key(&v4, 1, &k1); /* IPv4 is never cut */
    expect_str(&k1, "1.2.3.4:0");
}

/* The client for peer with the given header lines. */
static const char *client_of(const char *peer, const char *trusted, enum real_ip_header h,
                             const char **lines, size_t n, bool *decided)
{
    static char out[NETADDR_STRLEN];
    struct netcidr tl[8];
    size_t nt = 0;
    char buf[256], err[128];
    snprintf(buf, sizeof buf, "%s", trusted);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ')
            tok++;
        assert_int_equal(netcidr_parse(tok, &tl[nt++], err, sizeof err), 0);
    }
    struct netaddr_hval v[8];
    for (size_t i = 0; i < n; i++)
        v[i] = (struct netaddr_hval){lines[i], strlen(lines[i])};
    struct netaddr start, c;
    if (strcmp(peer, "unix") == 0)
        start = (struct netaddr){.family = AF_UNIX};
    else
        start = A(peer);
    if (start.family == AF_INET || start.family == AF_INET6)
        start.port = 4242;
    bool d = netaddr_client(&start, tl, nt, h, v, n, &c);
    if (decided)
        *decided = d;
    return netaddr_str(&c, out, sizeof out);
}

#define L(...)                                                                                     \
    ((const char *[]){__VA_ARGS__}), (sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *))

static void test_client_xff(void **state)
{
    const char *T = "10.0.0.0/8, ::1/128, unix";
    bool d;
    /* untrusted peer: headers ignored */
    assert_string_equal(client_of("192.0.2.1", T, REAL_IP_XFF, L("1.1.1.1"), &d), "192.0.2.1:4242");
    assert_false(d);
    /* header off */
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_OFF, L("1.1.1.1"), &d), "10.0.0.1:4242");
    /* trusted peer, one hop */
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_XFF, L("1.1.1.1"), &d), "1.1.1.1:0");
    assert_true(d);
    /* right to left: first untrusted */
    assert_string_equal(
        client_of("10.0.0.1", T, REAL_IP_XFF, L("6.6.6.6, 1.1.1.1, 10.2.2.2"), NULL), "1.1.1.1:0");
    /* lines are one list, in order */
    assert_string_equal(
        client_of("10.0.0.1", T, REAL_IP_XFF, L("6.6.6.6, 1.1.1.1", "10.2.2.2"), NULL),
        "1.1.1.1:0");
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_XFF, L("10.2.2.2", "7.7.7.7"), NULL),
                        "7.7.7.7:0");
    /* all trusted: leftmost */
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_XFF, L("10.3.3.3, ::1,10.2.2.2"), NULL),
                        "10.3.3.3:0");
    /* malformed entry stops the walk; the address so far stands */
    assert_string_equal(
        client_of("10.0.0.1", T, REAL_IP_XFF, L("1.1.1.1, garbage, 10.2.2.2"), NULL), "10.2.2.2:0");
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_XFF, L("1.1.1.1, 10.2.2.2, junk"), &d),
                        "10.0.0.1:4242");
    assert_false(d);
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_XFF, L("1.1.1.1,"), NULL),
                        "10.0.0.1:4242");
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_XFF, L(""), NULL), "10.0.0.1:4242");
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_XFF, L("fe80::1%eth0"), NULL),
                        "10.0.0.1:4242");
    /* ports and brackets accepted, port dropped */
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_XFF, L("[2001:db8::5]:77"), NULL),
                        "[2001:db8::5]:0");
    /* a unix peer is trusted through the word unix */
    assert_string_equal(client_of("unix", T, REAL_IP_XFF, L("3.3.3.3"), NULL), "3.3.3.3:0");
    assert_string_equal(client_of("unix", "10.0.0.0/8", REAL_IP_XFF, L("3.3.3.3"), NULL), "unix");
    /* X-Real-IP */
    assert_string_equal(client_of("::1", T, REAL_IP_X_REAL_IP, L("2.2.2.2"), NULL), "2.2.2.2:0");
}

static void test_client_forwarded(void **state)
{
    const char *T = "10.0.0.0/8";
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_FORWARDED,
                                  L("for=192.0.2.60;proto=http;by=203.0.113.43"), NULL),
                        "192.0.2.60:0");
    assert_string_equal(
        client_of("10.0.0.1", T, REAL_IP_FORWARDED, L("for=\"[2001:db8:cafe::17]:4711\""), NULL),
        "[2001:db8:cafe::17]:0");
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_FORWARDED,
                                  L("For=\"192.0.2.43:47011\", for=10.9.9.9"), NULL),
                        "192.0.2.43:0");
    /* quoted comma does not split */
    assert_string_equal(
        client_of("10.0.0.1", T, REAL_IP_FORWARDED, L("for=1.1.1.1;x=\"a,b\", for=10.1.1.1"), NULL),
        "1.1.1.1:0");
    /* unknown and obfuscated stop the walk */
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_FORWARDED,
                                  L("for=1.1.1.1, for=unknown, for=10.1.1.1"), NULL),
                        "10.1.1.1:0");
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_FORWARDED, L("for=_hidden"), NULL),
                        "10.0.0.1:4242");
    /* element without for= is malformed */
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_FORWARDED, L("proto=https"), NULL),
                        "10.0.0.1:4242");
    /* unquoted IPv6 is not valid Forwarded syntax */
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_FORWARDED, L("for=2001:db8::1"), NULL),
                        "10.0.0.1:4242");
    /* unbalanced quote */
    assert_string_equal(client_of("10.0.0.1", T, REAL_IP_FORWARDED, L("for=\"1.1.1.1"), NULL),
                        "10.0.0.1:4242");
}

/* 1,000+ entries and garbage: bounded, and the rightmost are the ones read. */
static void test_client_many(void **state)
{
    size_t cap = 20 * 3000 + 64;
    char *big = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < 3000; i++)
        n += (size_t)snprintf(big + n, cap - n, "%s10.%d.%d.1", i ? ", " : "", i / 256, i % 256);
    struct netcidr t;
    char err[64];
    assert_int_equal(netcidr_parse("10.0.0.0/8", &t, err, sizeof err), 0);
    struct netaddr peer = A("10.0.0.1"), c;
    struct netaddr_hval v = {big, n};
    /* all trusted: the leftmost of the rightmost 1000 kept */
    assert_true(netaddr_client(&peer, &t, 1, REAL_IP_XFF, &v, 1, &c));
    expect_str(&c, "10.7.208.1:0"); /* entry 2000 = 7*256+208 */
    /* an untrusted entry at the right end wins */
    v.len = n + (size_t)snprintf(big + n, cap - n, ", 99.7.0.1");
    assert_true(netaddr_client(&peer, &t, 1, REAL_IP_XFF, &v, 1, &c));
    expect_str(&c, "99.7.0.1:0");
    /* garbage everywhere */
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 7919 % 251 + 1);
    netaddr_client(&peer, &t, 1, REAL_IP_FORWARDED, &v, 1, &c);
    netaddr_client(&peer, &t, 1, REAL_IP_XFF, &v, 1, &c);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),       cmocka_unit_test(test_sockaddr),
        cmocka_unit_test(test_cidr),        cmocka_unit_test(test_key),
        cmocka_unit_test(test_client_xff),  cmocka_unit_test(test_client_forwarded),
        cmocka_unit_test(test_client_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
