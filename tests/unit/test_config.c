/* test_config.c - unit tests for the configuration loader (src/config.c).
 *
 * Most cases load INI text from memory under the name "t.ini", so every
 * message can be compared exactly ("t.ini:LINE: key: ..."); a few fixtures
 * under tests/data/config/ and the shipped etc/wsgate.ini go through the
 * file path of the loader. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* open_memstream, mkstemp */
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* By path: in the autotools build "-I." (top_builddir) comes first and holds
 * autoconf's own config.h, which "config.h" would find instead of ours. */
#include "../../src/config.h"
#include "../../src/auth.h"
#include "../../src/redis_target.h"

#ifndef TEST_DATA_DIR
#error "TEST_DATA_DIR must name tests/data"
#endif
#define CONF_DIR TEST_DATA_DIR "/config/"
#define SAMPLE_INI TEST_DATA_DIR "/../../etc/wsgate.ini"

#ifdef NEED_ROUTE_STUB
/* Only for building this file without src/route.c. */
const struct route *config_match_route(const struct config *c, const char *host, size_t hlen,
                                       const char *path, size_t len)
{
    (void)host;
    (void)hlen;
    (void)c;
    (void)path;
    (void)len;
    return NULL;
}
#endif

/* A route that makes a configuration valid. */
#define ROUTE "[route:r]\npath = /\nbackend = 127.0.0.1:1\n"

static char err[8192];

/* Load text that must be valid. */
static struct config *load_ok(const char *text)
{
    struct config *c = NULL;

    err[0] = '\0';
    if (config_load_string("t.ini", text, &c, err, sizeof err) != 0)
        fail_msg("unexpected errors:\n%s\nfor:\n%s", err, text);
    assert_non_null(c);
    assert_int_equal(c->refcount, 1);
    return c;
}

/* Load text that must be refused with exactly the errors want. */
static void expect_errors(const char *text, const char *want)
{
    struct config *c = (struct config *)1;

    err[0] = '\0';
    assert_int_equal(config_load_string("t.ini", text, &c, err, sizeof err), -1);
    assert_null(c);
    if (strcmp(err, want) != 0)
        fail_msg("for:\n%s\nwant:\n%s\ngot:\n%s", text, want, err);
}

/* "[section]\nkey = value\n" + ROUTE (or, for a route key, in the route). */
static void build(char *buf, size_t len, const char *section, const char *key, const char *value)
{
    if (strcmp(section, "route") == 0)
        snprintf(buf, len, "[route:r]\n%s = %s\npath = /\nbackend = 127.0.0.1:1\n", key, value);
    else
        snprintf(buf, len, "[%s]\n%s = %s\n" ROUTE, section, key, value);
}

static unsigned port_of(const struct sockaddr_any *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static const char *addr_of(const struct sockaddr_any *a, char *buf, size_t len)
{
    const void *p = a->ss.ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    return inet_ntop(a->ss.ss_family, p, buf, (socklen_t)len);
}

/* ---- values ------------------------------------------------------------ */

static void test_duration_good(void **state)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } cases[] = {
        {"0", 0},
        {"30", 30000},
        {"250ms", 250},
        {"30s", 30000},
        {"5m", 300000},
        {"1h", 3600000},
        {"007s", 7000},
        {"0ms", 0},
        {"18446744073709551615ms", UINT64_MAX},
        {"18446744073709551s", 18446744073709551000u},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms = 1;
        assert_int_equal(config_parse_duration(cases[i].s, &ms), 0);
        assert_int_equal(ms, cases[i].ms);
    }
}

static void test_duration_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "-1",
        "10x",
        "ms",
        "s",
        "1.5s",
        " 5",
        "5 ",
        "5 s",
        "+5",
        "5S",
        "5M",
        "1hh",
        "1d",
        "0x10",
        "1e3",
        "18446744073709551616",        /* digits overflow */
        "18446744073709552s",          /* unit overflow */
        "5124095576030432h",           /* unit overflow */
        "99999999999999999999999999ms" /* digits overflow */
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms = 42;
        if (config_parse_duration(bad[i], &ms) != -1)
            fail_msg("'%s' accepted as a duration", bad[i]);
        assert_int_equal(ms, 42);
    }
}

static void test_size_good(void **state)
{
    static const struct {
        const char *s;
        uint64_t n;
    } cases[] = {
        {"0", 0},
        {"65536", 65536},
        {"64k", 65536},
        {"64K", 65536},
        {"16m", 16777216},
        {"16M", 16777216},
        {"1g", 1073741824},
        {"2G", 2147483648u},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183g", 17179869183ull << 30},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t n = 1;
        assert_int_equal(config_parse_size(cases[i].s, &n), 0);
        assert_int_equal(n, cases[i].n);
    }
}

static void test_size_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "-1",
        "k",
        "1.5k",
        "64kb",
        "64KiB",
        "1t",
        " 1k",
        "1k ",
        "1 k",
        "+1k",
        "0x100",
        "1kk",
        "18446744073709551616",
        "17179869184g",
        "18014398509481984k",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t n = 42;
        if (config_parse_size(bad[i], &n) != -1)
            fail_msg("'%s' accepted as a size", bad[i]);
        assert_int_equal(n, 42);
    }
}

static void test_listen_forms(void **state)
{
    static const struct {
        const char *s;
        int family;
        const char *addr;
        unsigned port;
    } cases[] = {
        {"127.0.0.1:8080", AF_INET, "127.0.0.1", 8080},
        {":80", AF_INET, "0.0.0.0", 80},
        {"0.0.0.0:65535", AF_INET, "0.0.0.0", 65535},
        {"[::1]:8080", AF_INET6, "::1", 8080},
        {"[::]:1", AF_INET6, "::", 1},
        {"[fe80::1:2]:443", AF_INET6, "fe80::1:2", 443},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_any a;
        char buf[INET6_ADDRSTRLEN], e[256];
        if (config_parse_listen(cases[i].s, &a, e, sizeof e) != 0)
            fail_msg("'%s': %s", cases[i].s, e);
        assert_int_equal(a.ss.ss_family, cases[i].family);
        assert_int_equal(a.len, cases[i].family == AF_INET ? sizeof(struct sockaddr_in)
                                                           : sizeof(struct sockaddr_in6));
        assert_string_equal(addr_of(&a, buf, sizeof buf), cases[i].addr);
        assert_int_equal(port_of(&a), cases[i].port);
    }
}

static void test_listen_bad(void **state)
{
    static const struct {
        const char *s, *msg;
    } cases[] = {
        {"8080", "'8080': expected host:port"},
        {"localhost:80",
         "'localhost' is not a numeric IPv4 address (listen takes IP addresses only)"},
        {"::1:80", "'::1:80': an IPv6 address needs brackets: [addr]:port"},
        {"1.2.3.4:0", "'1.2.3.4:0': invalid port '0' (1-65535)"},
        {"1.2.3.4:65536", "'1.2.3.4:65536': invalid port '65536' (1-65535)"},
        {"1.2.3.4:", "'1.2.3.4:': invalid port '' (1-65535)"},
        {"1.2.3.4:http", "'1.2.3.4:http': invalid port 'http' (1-65535)"},
        {"1.2.3.4:-1", "'1.2.3.4:-1': invalid port '-1' (1-65535)"},
        {"[::1]80", "'[::1]80': expected [v6addr]:port"},
        {"[::1", "'[::1': expected [v6addr]:port"},
        {"[]:80", "'[]:80': empty address in brackets"},
        {"[127.0.0.1]:80",
         "'127.0.0.1' is not a numeric IPv6 address (listen takes IP addresses only)"},
        {"1.2.3:80", "'1.2.3' is not a numeric IPv4 address (listen takes IP addresses only)"},
        {"", "'': expected host:port"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_any a;
        char e[256] = "";
        assert_int_equal(config_parse_listen(cases[i].s, &a, e, sizeof e), -1);
        assert_string_equal(e, cases[i].msg);
    }
}

/* What config_unref() would free of a backend_spec. */
static void free_backend(struct backend_spec *b)
{
    free(b->text);
    free(b->host);
    free(b->addrs);
}

static void test_backend_forms(void **state)
{
    struct backend_spec b;
    char buf[INET6_ADDRSTRLEN], e[256];
    (void)state;

    assert_int_equal(config_parse_backend("127.0.0.1:5900", &b, e, sizeof e), 0);
    assert_string_equal(b.text, "127.0.0.1:5900");
    assert_string_equal(b.host, "127.0.0.1");
    assert_int_equal(b.naddrs, 1);
    assert_int_equal(b.addrs[0].ss.ss_family, AF_INET);
    assert_string_equal(addr_of(&b.addrs[0], buf, sizeof buf), "127.0.0.1");
    assert_int_equal(port_of(&b.addrs[0]), 5900);
    free_backend(&b);

    assert_int_equal(config_parse_backend("[::1]:22", &b, e, sizeof e), 0);
    assert_string_equal(b.text, "[::1]:22");
    assert_string_equal(b.host, "::1");
    assert_int_equal(b.naddrs, 1);
    assert_int_equal(b.addrs[0].ss.ss_family, AF_INET6);
    assert_string_equal(addr_of(&b.addrs[0], buf, sizeof buf), "::1");
    assert_int_equal(port_of(&b.addrs[0]), 22);
    free_backend(&b);

    /* A name: every address it resolves to (localhost comes from /etc/hosts). */
    if (config_parse_backend("localhost:7000", &b, e, sizeof e) != 0)
        fail_msg("localhost: %s", e);
    assert_string_equal(b.host, "localhost");
    assert_true(b.naddrs >= 1);
    for (size_t i = 0; i < b.naddrs; i++) {
        assert_true(b.addrs[i].ss.ss_family == AF_INET || b.addrs[i].ss.ss_family == AF_INET6);
        assert_int_equal(port_of(&b.addrs[i]), 7000);
    }
    free_backend(&b);

    assert_int_equal(config_parse_backend("unix:/run/x.sock", &b, e, sizeof e), 0);
    assert_string_equal(b.text, "unix:/run/x.sock");
    assert_null(b.host);
    assert_int_equal(b.naddrs, 1);
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&b.addrs[0].ss;
    assert_int_equal(sun->sun_family, AF_UNIX);
    assert_string_equal(sun->sun_path, "/run/x.sock");
    assert_int_equal(b.addrs[0].len, offsetof(struct sockaddr_un, sun_path) + 12);
    free_backend(&b);

    /* The longest unix path that fits sun_path with its NUL. */
    char longest[sizeof sun->sun_path + 8] = "unix:/";
    memset(longest + 6, 'a', sizeof sun->sun_path - 2);
    longest[5 + sizeof sun->sun_path - 1] = '\0';
    assert_int_equal(config_parse_backend(longest, &b, e, sizeof e), 0);
    assert_int_equal(strlen(((const struct sockaddr_un *)&b.addrs[0].ss)->sun_path),
                     sizeof sun->sun_path - 1);
    free_backend(&b);
}

static void test_backend_bad(void **state)
{
    char toolong[sizeof(((struct sockaddr_un *)0)->sun_path) + 8] = "unix:/";
    char longhost[400];
    static const struct {
        const char *s, *msg;
    } cases[] = {
        {"unix:relative.sock", "'unix:relative.sock': the unix socket path must be absolute"},
        {"unix:", "'unix:': the unix socket path must be absolute"},
        {":80", "':80': expected host:port, [v6addr]:port or unix:/path"},
        {"127.0.0.1", "'127.0.0.1': expected host:port"},
        {"127.0.0.1:0", "'127.0.0.1:0': invalid port '0' (1-65535)"},
        {"host name:80", "'host name:80': expected host:port, [v6addr]:port or unix:/path"},
        {"::1:80", "'::1:80': an IPv6 address needs brackets: [addr]:port"},
        {"[::1]", "'[::1]': expected [v6addr]:port"},
    };
    struct backend_spec b;
    char e[512] = "";
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(config_parse_backend(cases[i].s, &b, e, sizeof e), -1);
        assert_string_equal(e, cases[i].msg);
        assert_null(b.addrs);
        assert_null(b.text);
    }
    assert_int_equal(config_parse_backend("[localhost]:80", &b, e, sizeof e), -1);
    assert_non_null(strstr(e, "cannot resolve 'localhost'"));

    memset(toolong + 6, 'a', sizeof toolong - 7);
    toolong[sizeof toolong - 1] = '\0';
    assert_int_equal(config_parse_backend(toolong, &b, e, sizeof e), -1);
    assert_non_null(strstr(e, "unix socket path longer than 107 bytes"));

    memset(longhost, 'a', sizeof longhost);
    strcpy(longhost + 300, ":80");
    assert_int_equal(config_parse_backend(longhost, &b, e, sizeof e), -1);
    assert_non_null(strstr(e, "host too long"));
}

/* ---- loading ----------------------------------------------------------- */

static void test_defaults(void **state)
{
    char buf[INET6_ADDRSTRLEN];
    struct config *c = load_ok(ROUTE);
    (void)state;

    assert_string_equal(c->file, "t.ini");
    assert_int_equal(c->nlistens, 1);
    assert_string_equal(c->listens[0].text, "0.0.0.0:8080");
    assert_string_equal(addr_of(&c->listens[0].addr, buf, sizeof buf), "0.0.0.0");
    assert_int_equal(port_of(&c->listens[0].addr), 8080);
    assert_false(c->listens[0].tls);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->max_connections, 10000);
    assert_int_equal(c->handshake_timeout_ms, 10000);
    assert_int_equal(c->defaults.connect_timeout_ms, 5000);
    assert_int_equal(c->defaults.ping_interval_ms, 30000);
    assert_int_equal(c->defaults.pong_timeout_ms, 10000);
    assert_int_equal(c->defaults.idle_timeout_ms, 0);
    assert_int_equal(c->defaults.max_message_size, 0);
    assert_int_equal(c->buffer_size, 65536);
    assert_int_equal(c->log_level, WLOG_INFO);
    assert_int_equal(c->log_format, LOGF_TEXT);
    assert_false(c->log_health_checks);

    assert_int_equal(c->nroutes, 1);
    const struct route *r = &c->routes[0];
    assert_string_equal(r->name, "r");
    assert_string_equal(r->path, "/");
    assert_true(r->prefix);
    assert_int_equal(r->nbackends, 1);
    assert_int_equal(r->norigins, 0);
    assert_null(r->origins);
    assert_int_equal(r->nsubprotocols, 0);
    assert_int_equal(r->max_connections, 0);
    assert_int_equal(r->index, 0);
    assert_int_equal(r->line, 1);
    assert_memory_equal(&r->p, &c->defaults, sizeof r->p);
    config_unref(c);
}

static void test_all_gateway_keys(void **state)
{
    struct config *c = load_ok("[gateway]\n"
                               "listen = 127.0.0.1:1\n"
                               "listen = [::1]:2\n"
                               "listen = :3\n"
                               "workers = 4\n"
                               "max_connections = 5\n"
                               "handshake_timeout = 6s\n"
                               "connect_timeout = 7m\n"
                               "ping_interval = 0\n"
                               "pong_timeout = 9ms\n"
                               "idle_timeout = 1h\n"
                               "max_message_size = 11k\n"
                               "buffer_size = 12m\n"
                               "log_level = DEBUG\n"
                               "log_format = json\nlog_health_checks = on\n" ROUTE);
    (void)state;
    assert_int_equal(c->nlistens, 3);
    assert_string_equal(c->listens[0].text, "127.0.0.1:1");
    assert_int_equal(c->listens[0].line, 2);
    assert_string_equal(c->listens[1].text, "[::1]:2");
    assert_int_equal(c->listens[1].addr.ss.ss_family, AF_INET6);
    assert_string_equal(c->listens[2].text, ":3");
    assert_int_equal(c->listens[2].line, 4);
    assert_int_equal(c->workers, 4);
    assert_int_equal(c->max_connections, 5);
    assert_int_equal(c->handshake_timeout_ms, 6000);
    assert_int_equal(c->defaults.connect_timeout_ms, 7 * 60000);
    assert_int_equal(c->defaults.ping_interval_ms, 0);
    assert_int_equal(c->defaults.pong_timeout_ms, 9);
    assert_int_equal(c->defaults.idle_timeout_ms, 3600000);
    assert_int_equal(c->defaults.max_message_size, 11 * 1024);
    assert_int_equal(c->buffer_size, 12 * 1024 * 1024);
    assert_int_equal(c->log_level, WLOG_DEBUG);
    assert_int_equal(c->log_format, LOGF_JSON);
    assert_true(c->log_health_checks);
    assert_memory_equal(&c->routes[0].p, &c->defaults, sizeof c->defaults);
    config_unref(c);
}

/* A route inherits the [gateway] values it does not set, wherever [gateway]
 * stands in the file, and keeps its own overrides. */
static void test_route_inheritance(void **state)
{
    static const char *const gateway = "[gateway]\n"
                                       "connect_timeout = 1s\n"
                                       "ping_interval = 2s\n"
                                       "pong_timeout = 3s\n"
                                       "idle_timeout = 4s\n"
                                       "max_message_size = 5k\n";
    static const char *const routes = "[route:plain]\n"
                                      "path = /a\n"
                                      "backend = 127.0.0.1:1\n"
                                      "[route:own]\n"
                                      "path = /b/\n"
                                      "backend = 127.0.0.1:1\n"
                                      "connect_timeout = 10s\n"
                                      "ping_interval = 0\n"
                                      "pong_timeout = 30s\n"
                                      "idle_timeout = 40s\n"
                                      "max_message_size = 50k\n"
                                      "[route:some]\n"
                                      "path = /c\n"
                                      "backend = 127.0.0.1:1\n"
                                      "idle_timeout = 0\n";
    char text[2048];
    (void)state;

    for (int order = 0; order < 2; order++) {
        snprintf(text, sizeof text, "%s%s", order ? routes : gateway, order ? gateway : routes);
        struct config *c = load_ok(text);
        assert_int_equal(c->nroutes, 3);
        const struct route_params *p = &c->routes[0].p;
        assert_int_equal(p->connect_timeout_ms, 1000);
        assert_int_equal(p->ping_interval_ms, 2000);
        assert_int_equal(p->pong_timeout_ms, 3000);
        assert_int_equal(p->idle_timeout_ms, 4000);
        assert_int_equal(p->max_message_size, 5 * 1024);
        assert_false(c->routes[0].prefix);
        p = &c->routes[1].p;
        assert_int_equal(p->connect_timeout_ms, 10000);
        assert_int_equal(p->ping_interval_ms, 0);
        assert_int_equal(p->pong_timeout_ms, 30000);
        assert_int_equal(p->idle_timeout_ms, 40000);
        assert_int_equal(p->max_message_size, 50 * 1024);
        assert_true(c->routes[1].prefix);
        p = &c->routes[2].p;
        assert_int_equal(p->connect_timeout_ms, 1000);
        assert_int_equal(p->idle_timeout_ms, 0);
        assert_int_equal(p->max_message_size, 5 * 1024);
        for (size_t i = 0; i < c->nroutes; i++)
            assert_int_equal(c->routes[i].index, i);
        config_unref(c);
    }
}

static void test_route_keys(void **state)
{
    struct config *c = load_ok("[route:vnc-1.a_b]\n"
                               "path = /vnc\n"
                               "backend = 127.0.0.1:5900\n"
                               "backend = [::1]:5901\n"
                               "backend = unix:/run/vnc.sock\n"
                               "allowed_origins = https://a.example, http://*.example.org:8080\n"
                               "allowed_origins = null\n"
                               "subprotocols = binary,base64 , v2.proto\n"
                               "subprotocols = chat\n"
                               "max_connections = 7\n"
                               "allowed_client_names =\n"
                               "token_file =\n"
                               "backend_tls = off\n"
                               "backend_ca =\n"
                               "backend_tls_verify = on\n");
    (void)state;
    assert_int_equal(c->nroutes, 1);
    const struct route *r = &c->routes[0];
    assert_string_equal(r->name, "vnc-1.a_b");
    assert_string_equal(r->path, "/vnc");
    assert_false(r->prefix);
    assert_int_equal(r->nbackends, 3);
    assert_string_equal(r->backends[0].text, "127.0.0.1:5900");
    assert_string_equal(r->backends[1].text, "[::1]:5901");
    assert_string_equal(r->backends[2].text, "unix:/run/vnc.sock");
    assert_int_equal(r->backends[2].addrs[0].ss.ss_family, AF_UNIX);
    assert_int_equal(r->norigins, 3);
    assert_string_equal(r->origins[0], "https://a.example");
    assert_string_equal(r->origins[1], "http://*.example.org:8080");
    assert_string_equal(r->origins[2], "null");
    assert_int_equal(r->nsubprotocols, 4);
    assert_string_equal(r->subprotocols[0], "binary");
    assert_string_equal(r->subprotocols[1], "base64");
    assert_string_equal(r->subprotocols[2], "v2.proto");
    assert_string_equal(r->subprotocols[3], "chat");
    assert_int_equal(r->max_connections, 7);
    config_unref(c);
}

/* One case per kind of error: the whole err must be exactly this line. */
static void test_error_messages(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[gateway]\nfoo = 1\n" ROUTE, "t.ini:2: foo: unknown key in [gateway]"},
        {"[tls]\nfoo = 1\n" ROUTE, "t.ini:2: foo: unknown key in [tls]"},
        {ROUTE "foo = 1\n", "t.ini:4: foo: unknown key in [route:r]"},
        {ROUTE "workers = 1\n", "t.ini:4: workers: only allowed in [gateway]"},
        {"[gateway]\npath = /x\n" ROUTE, "t.ini:2: path: only allowed in [route:NAME]"},
        {"[foo]\n" ROUTE,
         "t.ini:1: [foo]: unknown section (expected [gateway], [tls] or [route:NAME])"},
        {"[foo]\nkey = 1\nother = 2\n" ROUTE,
         "t.ini:1: [foo]: unknown section (expected [gateway], [tls] or [route:NAME])"},
        {"[]\n" ROUTE, "t.ini:1: []: unknown section (expected [gateway], [tls] or [route:NAME])"},
        {"[Gateway]\n" ROUTE,
         "t.ini:1: [Gateway]: unknown section (expected [gateway], [tls] or [route:NAME])"},
        {"workers = 1\n" ROUTE,
         "t.ini:1: workers: key outside any section (put it under [gateway])"},
        {"[route:]\n" ROUTE, "t.ini:1: [route:]: a route name must be non-empty and use only "
                             "letters, digits, '_', '.' and '-'"},
        {"[route:a b]\npath = /\n" ROUTE, "t.ini:1: [route:a b]: a route name must be non-empty "
                                          "and use only letters, digits, '_', '.' and '-'"},
        {ROUTE "[route:r]\npath = /x\n",
         "t.ini:4: [route:r]: duplicate route name (first on line 1)"},
        {"[gateway]\nworkers = 1\nworkers = 2\n" ROUTE,
         "t.ini:3: workers: duplicate key (first set on line 2)"},
        {ROUTE "path = /x\n", "t.ini:4: path: duplicate key (first set on line 2)"},
        {"[gateway]\nworkers = many\n" ROUTE, "t.ini:2: workers: invalid number 'many'"},
        {"[gateway]\nworkers = -1\n" ROUTE, "t.ini:2: workers: invalid number '-1'"},
        {"[gateway]\nworkers = 1025\n" ROUTE, "t.ini:2: workers: '1025' out of range (0..1024)"},
        {"[gateway]\nworkers =\n" ROUTE, "t.ini:2: workers: invalid number ''"},
        {"[gateway]\nmax_connections = 0\n" ROUTE,
         "t.ini:2: max_connections: '0' out of range (1..10000000)"},
        {"[gateway]\nhandshake_timeout = 10x\n" ROUTE,
         "t.ini:2: handshake_timeout: invalid duration '10x' (e.g. 30, 250ms, 30s, 5m, 1h)"},
        {"[gateway]\nhandshake_timeout = 0\n" ROUTE,
         "t.ini:2: handshake_timeout: '0' out of range (1ms..1h)"},
        {"[gateway]\nconnect_timeout = 2h\n" ROUTE,
         "t.ini:2: connect_timeout: '2h' out of range (1ms..1h)"},
        {"[gateway]\nidle_timeout = 169h\n" ROUTE,
         "t.ini:2: idle_timeout: '169h' out of range (0..168h)"},
        {"[gateway]\nping_interval = 99999999999999999999\n" ROUTE,
         "t.ini:2: ping_interval: invalid duration '99999999999999999999' (e.g. 30, 250ms, 30s, "
         "5m, 1h)"},
        {ROUTE "pong_timeout = 0\n", "t.ini:4: pong_timeout: '0' out of range (1ms..1h)"},
        {"[gateway]\nbuffer_size = 1k\n" ROUTE,
         "t.ini:2: buffer_size: '1k' out of range (4k..16m)"},
        {"[gateway]\nbuffer_size = 17m\n" ROUTE,
         "t.ini:2: buffer_size: '17m' out of range (4k..16m)"},
        {"[gateway]\nbuffer_size = 64kb\n" ROUTE,
         "t.ini:2: buffer_size: invalid size '64kb' (e.g. 65536, 64k, 16m, 1g)"},
        {ROUTE "max_message_size = 99999999999g\n",
         "t.ini:4: max_message_size: invalid size '99999999999g' (e.g. 65536, 64k, 16m, 1g)"},
        {ROUTE "max_connections = 10000001\n",
         "t.ini:4: max_connections: '10000001' out of range (0..10000000)"},
        {"[gateway]\nlog_level = loud\n" ROUTE,
         "t.ini:2: log_level: invalid value 'loud' (error | warn | info | debug)"},
        {"[gateway]\nlog_format = xml\n" ROUTE,
         "t.ini:2: log_format: invalid value 'xml' (text | json)"},
        {ROUTE "backend_tls = maybe\n", "t.ini:4: backend_tls: invalid value 'maybe' (on or off)"},
        {"[gateway]\nlisten = 8080\n" ROUTE, "t.ini:2: listen: '8080': expected host:port"},
        {"[gateway]\nlisten =\n" ROUTE, "t.ini:2: listen: '': expected host:port"},
        {"[gateway]\nlisten = 1.2.3.4:80 ssl\n" ROUTE,
         "t.ini:2: listen: unknown listen option 'ssl' (tls, auto, proxy, admin, mode=0NNN)"},
        {"[gateway]\nlisten = 1.2.3.4:80\nlisten = 1.2.3.4:80\n" ROUTE,
         "t.ini:3: listen: duplicate listen address '1.2.3.4:80' (first on line 2)"},
        {"[gateway]\nlisten = [::]:80\nlisten = :81\nlisten = [0::0]:80\n" ROUTE,
         "t.ini:4: listen: duplicate listen address '[0::0]:80' (first on line 2)"},
        {"[route:r]\npath = /\nbackend = nowhere\n",
         "t.ini:3: backend: 'nowhere': expected host:port"},
        {"[route:r]\npath = /\nbackend =\n", "t.ini:3: backend: '': expected host:port"},
        {"[route:r]\npath = vnc\nbackend = 127.0.0.1:1\n",
         "t.ini:2: path: 'vnc' must start with '/'"},
        {"[route:r]\npath =\nbackend = 127.0.0.1:1\n", "t.ini:2: path: '' must start with '/'"},
        {"[route:r]\npath = /a?b\nbackend = 127.0.0.1:1\n",
         "t.ini:2: path: '/a?b': no blanks, '?' or '#' in a path"},
        {"[route:vnc]\npath = /vnc\n", "t.ini:1: backend: route 'vnc' needs at least one backend"},
        {"[route:vnc]\nbackend = 127.0.0.1:1\n", "t.ini:1: path: route 'vnc' needs a path"},
        {ROUTE "[route:s]\npath = /\nbackend = 127.0.0.1:2\n",
         "t.ini:5: path: duplicate route path '/' (also in [route:r], line 2)"},
        {ROUTE "subprotocols = a b\n",
         "t.ini:4: subprotocols: 'a b' is not a valid subprotocol name (an HTTP token)"},
        {ROUTE "subprotocols = a,,b\n", "t.ini:4: subprotocols: empty item in the list"},
        {ROUTE "subprotocols = a,\n", "t.ini:4: subprotocols: empty item in the list"},
        {ROUTE "allowed_origins = example.com\n",
         "t.ini:4: allowed_origins: 'example.com' is not an origin (scheme://host[:port] or "
         "scheme://*.domain[:port])"},
        {ROUTE "allowed_origins = https://a.example/path\n",
         "t.ini:4: allowed_origins: 'https://a.example/path' is not an origin "
         "(scheme://host[:port] "
         "or scheme://*.domain[:port])"},
        {ROUTE "allowed_origins = https://a.*.example\n",
         "t.ini:4: allowed_origins: 'https://a.*.example' is not an origin (scheme://host[:port] "
         "or scheme://*.domain[:port])"},
        {"[gateway\n" ROUTE, "t.ini:1: syntax error: section header without ']'"},
        {"[gateway ;]\n" ROUTE, "t.ini:1: syntax error: section header without ']'"},
        {"[gateway] junk\n" ROUTE, "t.ini:1: syntax error: text after the section header"},
        {"[gateway]\nworkers\n" ROUTE, "t.ini:2: syntax error: expected 'key = value'"},
        {"[gateway]\nworkers ; = 1\n" ROUTE, "t.ini:2: syntax error: expected 'key = value'"},
        {"[gateway]\nworkers = 1\n  2\n" ROUTE,
         "t.ini:3: workers: indented line continues the value: not supported (repeat the key)"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_errors(cases[i].text, cases[i].want);
}

/* An empty file, or one without routes, is valid (a gateway that answers
 * 404); the websockify-style command line always adds a route. */
static void test_empty_is_valid(void **state)
{
    struct config *c = load_ok("");
    (void)state;
    assert_int_equal(c->nroutes, 0);
    assert_int_equal(c->nlistens, 1);
    config_unref(c);
    c = load_ok("; only a comment\n\n# and another\n[gateway]\n[tls]\n");
    assert_int_equal(c->nroutes, 0);
    config_unref(c);
}

/* Every error is reported, sorted by line, one per line. */
static void test_many_errors(void **state)
{
    (void)state;
    expect_errors("[route:a]\n"             /* 1: no backend */
                  "path = x\n"              /* 2 */
                  "[gateway]\n"             /* 3 */
                  "workers = x\n"           /* 4 */
                  "workers = 2\n"           /* 5: duplicate (of a bad value) */
                  "bogus = 1\n"             /* 6 */
                  "[route:b]\n"             /* 7: no path */
                  "backend = 127.0.0.1:1\n" /* 8 */
                  "[bad\n"                  /* 9 */
                  "nokey\n",                /* 10 */
                  "t.ini:1: backend: route 'a' needs at least one backend\n"
                  "t.ini:2: path: 'x' must start with '/'\n"
                  "t.ini:4: workers: invalid number 'x'\n"
                  "t.ini:5: workers: duplicate key (first set on line 4)\n"
                  "t.ini:6: bogus: unknown key in [gateway]\n"
                  "t.ini:7: path: route 'b' needs a path\n"
                  "t.ini:9: syntax error: section header without ']'\n"
                  "t.ini:10: syntax error: expected 'key = value'");
}

/* Keys that only make sense together. */
static void test_key_dependencies(void **state)
{
    (void)state;
    /* TLS keys that need each other. */
    expect_errors("[gateway]\nlisten = 127.0.0.1:8443 tls\n" ROUTE,
                  "t.ini:2: listen: a 'tls' listener needs [tls] cert");
    expect_errors("[tls]\nkey = /k.pem\n" ROUTE, "t.ini:2: key: [tls] key needs [tls] cert");
    expect_errors(ROUTE "allowed_client_names = a.example\n",
                  "t.ini:4: allowed_client_names: needs [tls] client_ca (client certificates)");
    expect_errors(ROUTE "backend_ca = /ca.pem\n", "t.ini:4: backend_ca: needs backend_tls = on");
    /* Files and directories named by the configuration must exist now. */
    char text[512];
    struct config *c = NULL;
    build(text, sizeof text, "gateway", "web_root", "/nonexistent/www");
    expect_errors(text, "t.ini:2: web_root: '/nonexistent/www' is not a readable directory");
    build(text, sizeof text, "gateway", "web_root", TEST_DATA_DIR);
    config_unref(load_ok(text));
    /* A relative web_root is relative to the configuration file. */
    if (config_load(TEST_DATA_DIR "/config/webroot_relative.ini", &c, err, sizeof err) != 0)
        fail_msg("%s", err);
    char *want = realpath(TEST_DATA_DIR "/config", NULL);
    assert_non_null(want);
    assert_string_equal(c->web_root_real, want);
    free(want);
    config_unref(c);
    c = NULL;
    assert_int_equal(config_load_string("t.ini", "[route:t]\npath = /\ntoken_file = /nonexistent\n",
                                        &c, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "t.ini:3: token_file: "));
}

/* token_redis, its prefix and password file (inherited from [gateway] like
 * the other route keys), and resolver. */
static void test_token_redis(void **state)
{
    char text[1024], pwfile[256];
    (void)state;

    snprintf(pwfile, sizeof pwfile, "%s/wsgate-redis-pw-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(pwfile);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret\n", 7), 7);
    close(fd);

    /* in a route, URL form */
    struct config *c = load_ok("[route:r]\npath = /\ntoken_redis = redis://10.0.0.5:6380/2\n"
                               "token_redis_prefix = ws:\n");
    struct route *r = &c->routes[0];
    assert_string_equal(r->p.token_redis, "redis://10.0.0.5:6380/2");
    assert_non_null(r->redis);
    assert_string_equal(r->redis->host, "10.0.0.5");
    assert_int_equal(r->redis->port, 6380);
    assert_int_equal(r->redis->db, 2);
    assert_string_equal(r->redis->prefix, "ws:");
    assert_null(r->redis->password);
    assert_int_equal(r->nbackends, 0);
    assert_null(c->resolver);
    config_unref(c);

    /* from [gateway], with the password file; one route turns it off */
    snprintf(text, sizeof text,
             "[gateway]\ntoken_redis = redis-host:6379:1::ns\ntoken_redis_password_file = %s\n"
             "resolver = 127.0.0.1:5353\n"
             "[route:a]\npath = /a\n"
             "[route:b]\npath = /b\ntoken_redis =\nbackend = 127.0.0.1:1\n"
             "[route:c]\npath = /c\ntoken_redis_prefix = other:\n",
             pwfile);
    c = load_ok(text);
    assert_string_equal(c->resolver, "127.0.0.1:5353");
    assert_non_null(c->routes[0].redis);
    assert_string_equal(c->routes[0].redis->host, "redis-host");
    assert_int_equal(c->routes[0].redis->db, 1);
    assert_string_equal(c->routes[0].redis->password, "s3cret");
    assert_string_equal(c->routes[0].redis->prefix, "ns:");
    assert_null(c->routes[1].redis);
    assert_null(c->routes[1].p.token_redis);
    assert_string_equal(c->routes[2].redis->prefix, "other:");
    assert_string_equal(c->routes[2].redis->password, "s3cret");
    assert_true(c->routes[0].p.token_redis != c->defaults.token_redis); /* own copies */
    config_unref(c);

    /* errors name file, line and key */
    expect_errors("[route:r]\npath = /\ntoken_file = /etc/hostname\ntoken_redis = redis://h\n",
                  "t.ini:4: token_redis: route 'r' has both token_file and token_redis");
    expect_errors("[route:r]\npath = /\ntoken_redis = redis://h\nbackend = 127.0.0.1:1\n",
                  "t.ini:3: token_redis: route 'r' has both token_redis and backend");
    expect_errors("[gateway]\ntoken_redis = redis://h\n[route:r]\npath = /\n"
                  "backend = 127.0.0.1:1\n",
                  "t.ini:5: token_redis: route 'r' has both token_redis (from [gateway]; set "
                  "token_redis = to turn it off) and backend");
    expect_errors("[route:r]\npath = /\ntoken_redis = redis://h:0\n",
                  "t.ini:3: token_redis: redis:// URL: invalid port (1-65535)");
    expect_errors("[route:r]\npath = /\ntoken_redis = redis://h\n"
                  "token_redis_password_file = /nonexistent/pw\n",
                  "t.ini:4: token_redis_password_file: cannot read '/nonexistent/pw': No such "
                  "file or directory");
    snprintf(text, sizeof text,
             "[route:r]\npath = /\ntoken_redis = redis://:x@h\ntoken_redis_password_file = %s\n",
             pwfile);
    expect_errors(text, "t.ini:4: token_redis_password_file: token_redis already holds a "
                        "password");
    expect_errors("[route:r]\npath = /\nbackend = 127.0.0.1:1\ntoken_redis_prefix = x\n",
                  "t.ini:4: token_redis_prefix: needs token_redis");
    expect_errors("[route:r]\npath = /\n",
                  "t.ini:1: backend: route 'r' needs at least one backend");
    expect_errors("[gateway]\nresolver = dns.example:53\n" ROUTE,
                  "t.ini:2: resolver: 'dns.example:53': expected a numeric DNS server: IPv4[:port] "
                  "or [IPv6][:port]");
    expect_errors("[gateway]\nresolver = 127.0.0.1:0\n" ROUTE,
                  "t.ini:2: resolver: '127.0.0.1:0': invalid port '0' (1-65535)");
    c = load_ok("[gateway]\nresolver = [::1]\n" ROUTE);
    config_unref(c);
    c = load_ok("[gateway]\nresolver = 10.0.0.1\n" ROUTE);
    config_unref(c);
    /* an empty password file is refused */
    fd = open(pwfile, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    close(fd);
    snprintf(text, sizeof text,
             "[route:r]\npath = /\ntoken_redis = redis://h\ntoken_redis_password_file = %s\n",
             pwfile);
    char want[512];
    snprintf(want, sizeof want,
             "t.ini:4: token_redis_password_file: '%s' must hold the password on one line", pwfile);
    expect_errors(text, want);
    unlink(pwfile);
}

/* inih's line limit: 199 characters are fine, 200 are an error. */
static void test_long_lines(void **state)
{
    char text[1024], pad[300];
    const char *head = "[gateway]\nlog_level = info ;";
    (void)state;

    for (int len = 198; len <= 201; len++) {
        size_t fill = (size_t)len - strlen("log_level = info ;");
        memset(pad, 'x', fill);
        pad[fill] = '\0';
        for (int crlf = 0; crlf < 2; crlf++) {
            snprintf(text, sizeof text, "%s%s%s%s", head, pad, crlf ? "\r\n" : "\n", ROUTE);
            if (len <= 199) {
                config_unref(load_ok(text));
            } else {
                expect_errors(text,
                              "t.ini:2: line longer than 199 characters (repeat the key instead)");
            }
        }
    }
    /* The last line, without a newline. */
    memset(pad, 'x', 200);
    pad[200] = '\0';
    snprintf(text, sizeof text, ROUTE ";%s", pad);
    expect_errors(text, "t.ini:4: line longer than 199 characters (repeat the key instead)");
}

static void test_line_endings(void **state)
{
    (void)state;
    struct config *c = load_ok("\xEF\xBB\xBF[gateway]\r\nworkers = 3\r\n" ROUTE);
    assert_int_equal(c->workers, 3);
    config_unref(c);
    c = load_ok("[gateway]\nworkers = 3"); /* no final newline */
    assert_int_equal(c->workers, 3);
    config_unref(c);
    c = load_ok("[gateway]\nworkers: 3\n"); /* configparser's ':' */
    assert_int_equal(c->workers, 3);
    config_unref(c);
    c = load_ok("  [gateway]  ; comment\n  workers = 3 ; comment\n"); /* indented, not continued */
    assert_int_equal(c->workers, 3);
    config_unref(c);
    c = load_ok(ROUTE "  ; an indented comment is not a continuation\n");
    config_unref(c);
}

/* A NUL byte (only possible in a file) makes its line an error. */
static void test_nul_byte(void **state)
{
    static const char text[] = "[gateway]\nworkers = 1\0 2\n" ROUTE;
    char path[] = "/tmp/test_config_XXXXXX";
    struct config *c = NULL;
    char want[256];
    int fd = mkstemp(path);
    (void)state;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    assert_int_equal(config_load(path, &c, err, sizeof err), -1);
    unlink(path);
    snprintf(want, sizeof want, "%s:2: syntax error: NUL byte in the line", path);
    assert_string_equal(err, want);
}

static void test_err_truncation(void **state)
{
    struct config *c = NULL;
    char small[12];
    (void)state;

    memset(small, 'Z', sizeof small);
    assert_int_equal(config_load_string("t.ini", "[foo]\n", &c, small, sizeof small), -1);
    assert_null(c);
    assert_string_equal(small, "t.ini:1: [f");
    assert_int_equal(config_load_string("t.ini", "[foo]\n", &c, NULL, 0), -1);
    assert_int_equal(config_load_string("t.ini", "[foo]\n", &c, small, 0), -1);

    /* Several errors that do not all fit: whole lines only, never the
     * start of a cut line after the last newline. */
    static const char two[] = "[gateway]\nworkers = x\nbuffer_size = y\n";
    char full[256], cut[80];
    assert_int_equal(config_load_string("t.ini", two, &c, full, sizeof full), -1);
    const char *nl = strchr(full, '\n');
    assert_non_null(nl);
    size_t first = (size_t)(nl - full);
    assert_true(first + 5 < sizeof cut && strlen(full) >= sizeof cut);
    assert_int_equal(config_load_string("t.ini", two, &c, cut, first + 5), -1);
    assert_int_equal(strlen(cut), first);
    assert_memory_equal(cut, full, first);
    assert_int_equal(config_load_string("t.ini", two, &c, cut, first + 1), -1);
    assert_int_equal(strlen(cut), first);
}

static void test_refcount(void **state)
{
    struct config *c = load_ok(ROUTE);
    (void)state;

    assert_ptr_equal(config_ref(c), c);
    assert_int_equal(c->refcount, 2);
    config_unref(c);
    assert_int_equal(c->refcount, 1);
    config_unref(c);
    config_unref(NULL);
    assert_null(config_ref(NULL));
}

/* ---- files ------------------------------------------------------------- */

static void test_fixture_good(void **state)
{
    struct config *c = NULL;
    (void)state;

    if (config_load(CONF_DIR "good.ini", &c, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(c->file, CONF_DIR "good.ini");
    assert_int_equal(c->nlistens, 2);
    assert_int_equal(c->log_level, WLOG_DEBUG);
    assert_int_equal(c->log_format, LOGF_JSON);
    assert_int_equal(c->nroutes, 2);
    const struct route *vnc = &c->routes[0], *all = &c->routes[1];
    assert_string_equal(vnc->name, "vnc");
    assert_int_equal(vnc->line, 4);
    assert_int_equal(vnc->nbackends, 3);
    assert_int_equal(vnc->norigins, 3);
    assert_int_equal(vnc->nsubprotocols, 2);
    assert_int_equal(vnc->p.idle_timeout_ms, 300000);
    assert_int_equal(vnc->p.ping_interval_ms, 20000); /* [gateway] comes later */
    assert_int_equal(vnc->p.pong_timeout_ms, 5000);
    assert_int_equal(vnc->p.max_message_size, 1024 * 1024);
    assert_int_equal(vnc->p.connect_timeout_ms, 5000);
    assert_string_equal(all->path, "/");
    assert_true(all->prefix);
    assert_int_equal(all->max_connections, 100);
    assert_memory_equal(&all->p, &c->defaults, sizeof all->p);
    config_unref(c);
}

static void test_fixture_bad(void **state)
{
    struct config *c = NULL;
    (void)state;

    assert_int_equal(config_load(CONF_DIR "bad_many.ini", &c, err, sizeof err), -1);
    assert_null(c);
    assert_string_equal(
        err,
        CONF_DIR "bad_many.ini:4: listen: duplicate listen address '127.0.0.1:80' (first on "
                 "line 3)\n" CONF_DIR "bad_many.ini:5: workers: invalid number 'many'\n" CONF_DIR
                 "bad_many.ini:6: frobnicate: unknown key in [gateway]\n" CONF_DIR
                 "bad_many.ini:7: buffer_size: '1k' out of range (4k..16m)\n" CONF_DIR
                 "bad_many.ini:8: backend: route 'vnc' needs at least one backend\n" CONF_DIR
                 "bad_many.ini:9: path: 'vnc' must start with '/'\n" CONF_DIR
                 "bad_many.ini:11: [nonsense]: unknown section (expected [gateway], [tls] or "
                 "[route:NAME])\n" CONF_DIR
                 "bad_many.ini:13: [route:vnc]: duplicate route name (first on line 8)");

    assert_int_equal(config_load(CONF_DIR "bad_missing.ini", &c, err, sizeof err), -1);
    assert_string_equal(err,
                        CONF_DIR "bad_missing.ini:4: backend: route 'vnc' needs at least one "
                                 "backend\n" CONF_DIR
                                 "bad_missing.ini:7: path: route 'empty' needs a path\n" CONF_DIR
                                 "bad_missing.ini:7: backend: route 'empty' needs at least "
                                 "one backend");

    assert_int_equal(config_load(CONF_DIR "bad_long_line.ini", &c, err, sizeof err), -1);
    assert_string_equal(err, CONF_DIR
                        "bad_long_line.ini:2: line longer than 199 characters (repeat the key "
                        "instead)");

    c = NULL;
    if (config_load(CONF_DIR "crlf_bom.ini", &c, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(c->workers, 2);
    assert_string_equal(c->routes[0].path, "/x/");
    config_unref(c);

    assert_int_equal(config_load(CONF_DIR "no-such-file.ini", &c, err, sizeof err), -1);
    assert_string_equal(err, CONF_DIR "no-such-file.ini: cannot read: No such file or directory");
    assert_int_equal(config_load(CONF_DIR, &c, err, sizeof err), -1);
    assert_string_equal(err, CONF_DIR ": cannot read: Is a directory");
}

/* The shipped sample loads and says what it documents. */
static void test_sample_config(void **state)
{
    struct config *c = NULL;
    char buf[INET6_ADDRSTRLEN];
    (void)state;

    if (config_load(SAMPLE_INI, &c, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(c->nlistens, 2);
    assert_string_equal(addr_of(&c->listens[0].addr, buf, sizeof buf), "127.0.0.1");
    assert_int_equal(port_of(&c->listens[0].addr), 8080);
    assert_string_equal(addr_of(&c->listens[1].addr, buf, sizeof buf), "::1");
    assert_int_equal(port_of(&c->listens[1].addr), 8080);
    assert_int_equal(c->buffer_size, 65536);
    assert_int_equal(c->nroutes, 1);
    const struct route *r = &c->routes[0];
    assert_string_equal(r->name, "echo");
    assert_string_equal(r->path, "/echo");
    assert_int_equal(r->nbackends, 1);
    assert_string_equal(r->backends[0].text, "127.0.0.1:7000");
    assert_int_equal(r->nsubprotocols, 2);
    assert_string_equal(r->subprotocols[0], "binary");
    assert_string_equal(r->subprotocols[1], "base64");
    assert_memory_equal(&r->p, &c->defaults, sizeof r->p);
    config_unref(c);
}

/* Access keys: inheritance from [gateway] (copies, not shared), the JWT key
 * loaded at config load, one token source per route, no backend lines with
 * one, and each problem named FILE:LINE: key. */
static void test_access_keys(void **state)
{
    char secret[256], text[2048];
    const char *rsa = TEST_DATA_DIR "/jwt/rsa-public.pem";
    const char *users = TEST_DATA_DIR "/auth/users";
    (void)state;

    snprintf(secret, sizeof secret, "%s/wsgate-cfg-secret-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(secret);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef\n", 33), 33);
    close(fd);

    snprintf(text, sizeof text,
             "[gateway]\ntoken_jwt_key = %s\ntoken_jwt_algorithms = HS256\n"
             "token_cookie = wsg\nallowed_backends = 10.0.0.0/8, *:5900\n"
             "allowed_backends = vnc.internal:*\n"
             "[route:a]\npath = /a\ntoken_jwt_leeway = 5s\ntoken_jwt_audience = gw\n"
             "[route:b]\npath = /b\ntoken_jwt_key =\nbackend = 127.0.0.1:1\n"
             "basic_auth_file = %s\n",
             secret, users);
    struct config *c = load_ok(text);
    const struct route *a = &c->routes[0], *b = &c->routes[1];
    assert_non_null(a->jwt);
    assert_int_equal(a->p.token_jwt_leeway_ms, 5000);
    assert_string_equal(a->p.token_jwt_audience, "gw");
    assert_string_equal(a->p.token_cookie, "wsg");
    assert_ptr_not_equal(a->p.token_cookie, c->defaults.token_cookie);
    assert_int_equal(a->p.nallowed_backends, 3);
    assert_int_equal(a->nallowed, 3);
    assert_string_equal(a->allowed[2].host, "vnc.internal");
    assert_null(a->basic_auth);
    assert_null(b->jwt);
    assert_int_equal(b->p.token_jwt_leeway_ms, 30000);
    assert_string_equal(b->p.token_cookie, "wsg");
    assert_non_null(b->basic_auth);
    assert_int_equal(b->nallowed, 3);
    config_unref(c);

    snprintf(text, sizeof text,
             "[route:r]\npath = /\ntoken_file = %s\ntoken_jwt_key = %s\n"
             "token_jwt_algorithms = HS256\nbackend = 127.0.0.1:1\n",
             users, secret);
    expect_errors(text, "t.ini:4: token_jwt_key: route 'r' already has a token source "
                        "(token_file); at most one\n"
                        "t.ini:6: backend: route 'r' takes its backend from token_file; remove "
                        "the backend lines");
    snprintf(text, sizeof text, "[route:r]\npath = /\ntoken_jwt_key = %s\n", secret);
    expect_errors(text, "t.ini:3: token_jwt_algorithms: required with token_jwt_key (route 'r')");
    snprintf(text, sizeof text, "[route:r]\npath = /\ntoken_jwt_key = %s\ntoken_jwt_algorithms =\n",
             secret);
    expect_errors(text, "t.ini:3: token_jwt_algorithms: required with token_jwt_key (route 'r')");
    snprintf(text, sizeof text,
             "[route:r]\npath = /\ntoken_jwt_key = %s\ntoken_jwt_algorithms = HS256, none\n",
             secret);
    expect_errors(text, "t.ini:4: token_jwt_algorithms: 'none' is never accepted");
    snprintf(text, sizeof text,
             "[route:r]\npath = /\ntoken_jwt_key = %s\ntoken_jwt_algorithms = RS256,HS256\n", rsa);
    expect_errors(text,
                  "t.ini:3: token_jwt_key: HS256 needs an HMAC secret, the key is an RSA key");
    expect_errors("[route:r]\npath = /\nbackend = 127.0.0.1:1\ntoken_jwt_algorithms = ES256\n"
                  "allowed_backends = 10.0.0.1/8\ntoken_cookie = a b\n"
                  "basic_auth_file = /nonexistent/users\n",
                  "t.ini:4: token_jwt_algorithms: needs token_jwt_key\n"
                  "t.ini:5: allowed_backends: '10.0.0.1/8': address has bits set beyond /8\n"
                  "t.ini:6: token_cookie: 'a b' is not a valid cookie name\n"
                  "t.ini:7: basic_auth_file: /nonexistent/users: cannot read: No such file or "
                  "directory");
    unlink(secret);
}

/* Every key of DESIGN.md's schema appears in the sample (maybe commented). */
static void test_sample_documents_every_key(void **state)
{
    static const char *const every[] = {
        "listen",
        "workers",
        "max_connections",
        "handshake_timeout",
        "connect_timeout",
        "ping_interval",
        "pong_timeout",
        "idle_timeout",
        "max_message_size",
        "buffer_size",
        "web_root",
        "health_path",
        "metrics_path",
        "log_level",
        "log_format",
        "log_health_checks",
        "drain_timeout",
        "record",
        "record_format",
        "cert",
        "key",
        "client_ca",
        "key_password_file",
        "min_version",
        "ciphers",
        "ciphersuites",
        "path",
        "backend",
        "token_file",
        "allowed_origins",
        "subprotocols",
        "allowed_client_names",
        "backend_tls",
        "backend_ca",
        "backend_tls_verify",
        "compression",
        "compression_level",
        "compression_window_bits",
        "token_jwt_key",
        "token_jwt_algorithms",
        "token_jwt_audience",
        "token_jwt_issuer",
        "token_jwt_leeway",
        "token_cookie",
        "basic_auth_file",
        "allowed_backends",
        "token_redis",
        "token_redis_prefix",
        "token_redis_password_file",
        "resolver",
        "trusted_proxies",
        "real_ip_header",
        "max_connections_per_ip",
        "handshake_rate_per_ip",
        "ipv6_prefix",
        "allowed_networks",
        "backend_proxy_protocol",
    };
    char line[512];
    bool found[sizeof every / sizeof every[0]] = {false};
    FILE *f = fopen(SAMPLE_INI, "r");
    (void)state;

    assert_non_null(f);
    while (fgets(line, sizeof line, f) != NULL) {
        const char *p = line + strspn(line, "; ");
        size_t n = strcspn(p, " =");
        for (size_t i = 0; i < sizeof every / sizeof every[0]; i++)
            if (strlen(every[i]) == n && strncmp(p, every[i], n) == 0)
                found[i] = true;
    }
    fclose(f);
    for (size_t i = 0; i < sizeof every / sizeof every[0]; i++)
        if (!found[i])
            fail_msg("%s is not documented in etc/wsgate.ini", every[i]);
}

/* compression, compression_level, compression_window_bits: defaults,
 * inheritance from [gateway], route overrides and bounds. */
static void test_compression_keys(void **state)
{
    (void)state;
    struct config *c = load_ok(ROUTE);
    assert_false(c->defaults.compression);
    assert_int_equal(c->defaults.compression_level, 1);
    assert_int_equal(c->defaults.compression_window_bits, 12);
    assert_false(c->routes[0].p.compression);
    assert_int_equal(c->routes[0].p.compression_window_bits, 12);
    config_unref(c);

    c = load_ok("[gateway]\ncompression = on\ncompression_level = 9\n"
                "compression_window_bits = 9\n" ROUTE
                "[route:own]\npath = /own\nbackend = 127.0.0.1:1\ncompression = off\n"
                "compression_level = 0\ncompression_window_bits = 15\n");
    assert_true(c->routes[0].p.compression);
    assert_int_equal(c->routes[0].p.compression_level, 9);
    assert_int_equal(c->routes[0].p.compression_window_bits, 9);
    assert_false(c->routes[1].p.compression);
    assert_int_equal(c->routes[1].p.compression_level, 0);
    assert_int_equal(c->routes[1].p.compression_window_bits, 15);
    config_unref(c);

    expect_errors(ROUTE "compression = maybe\n",
                  "t.ini:4: compression: invalid value 'maybe' (on or off)");
    expect_errors(ROUTE "compression_level = 10\n",
                  "t.ini:4: compression_level: '10' out of range (0..9)");
    expect_errors("[gateway]\ncompression_window_bits = 8\n" ROUTE,
                  "t.ini:2: compression_window_bits: '8' out of range (9..15)");
    expect_errors(ROUTE "compression_window_bits = 16\n",
                  "t.ini:4: compression_window_bits: '16' out of range (9..15)");
}

static void test_check_file(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out;
    (void)state;

    out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(config_check_file(CONF_DIR "good.ini", out), 0);
    fclose(out);
    assert_string_equal(buf, CONF_DIR "good.ini: configuration OK\n");
    free(buf);

    out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(config_check_file(CONF_DIR "bad_missing.ini", out), 1);
    fclose(out);
    assert_string_equal(buf,
                        CONF_DIR "bad_missing.ini:4: backend: route 'vnc' needs at least "
                                 "one backend\n" CONF_DIR
                                 "bad_missing.ini:7: path: route 'empty' needs a path\n" CONF_DIR
                                 "bad_missing.ini:7: backend: route 'empty' needs at least "
                                 "one backend\n");
    free(buf);
}

/* config_dump() writes INI that loads back to the same configuration. */
static void test_dump_round_trip(void **state)
{
    struct config *c = NULL, *again;
    char *one = NULL, *two = NULL;
    size_t len;
    FILE *out;
    (void)state;

    if (config_load(CONF_DIR "good.ini", &c, err, sizeof err) != 0)
        fail_msg("%s", err);
    out = open_memstream(&one, &len);
    config_dump(c, out);
    fclose(out);
    assert_non_null(strstr(one, "\n[route:vnc]\npath = /vnc\n"));
    assert_non_null(strstr(one, "idle_timeout = 5m\n"));
    assert_non_null(strstr(one, "buffer_size = 64k\n"));
    again = load_ok(one);
    out = open_memstream(&two, &len);
    config_dump(again, out);
    fclose(out);
    /* Only the first line, naming the file, differs. */
    assert_string_equal(strchr(one, '\n'), strchr(two, '\n'));
    assert_int_equal(again->nroutes, c->nroutes);
    for (size_t i = 0; i < c->nroutes; i++)
        assert_memory_equal(&again->routes[i].p, &c->routes[i].p, sizeof c->routes[i].p);
    free(one);
    free(two);
    config_unref(again);
    config_unref(c);
}

/* record / record_format: a writable directory checked at load (stored as
 * its realpath), inherited by routes, overridden or turned off per route. */
static void test_record_keys(void **state)
{
    char dir[] = "/tmp/wsgate-cfg-rec-XXXXXX", text[2048], want[1024];
    char *dump = NULL;
    size_t len;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(text, sizeof text,
             "[gateway]\nrecord = %s/.\nrecord_format = asciicast\n"
             "[route:a]\npath = /a\nbackend = 127.0.0.1:1\n"
             "[route:b]\npath = /b\nbackend = 127.0.0.1:1\nrecord =\n"
             "[route:c]\npath = /c\nbackend = 127.0.0.1:1\nrecord_format = raw\n",
             dir);
    struct config *c = load_ok(text);
    assert_string_equal(c->defaults.record, dir); /* realpath: no "/." */
    assert_int_equal(c->defaults.record_format, 1);
    assert_string_equal(c->routes[0].p.record, dir);
    assert_ptr_not_equal(c->routes[0].p.record, c->defaults.record); /* own copy */
    assert_int_equal(c->routes[0].p.record_format, 1);
    assert_null(c->routes[1].p.record);
    assert_string_equal(c->routes[2].p.record, dir);
    assert_int_equal(c->routes[2].p.record_format, 0);
    FILE *out = open_memstream(&dump, &len);
    config_dump(c, out);
    fclose(out);
    snprintf(want, sizeof want, "record = %s\nrecord_format = asciicast\n", dir);
    assert_non_null(strstr(dump, want));
    assert_non_null(strstr(dump, "[route:b]\npath = /b\nbackend = 127.0.0.1:1\n"));
    const char *rb = strstr(dump, "[route:b]"), *rc = strstr(dump, "[route:c]");
    const char *off = strstr(rb, "record =\nrecord_format = asciicast\n");
    assert_non_null(off);
    assert_true(off < rc);
    struct config *again = load_ok(dump);
    assert_null(again->routes[1].p.record);
    assert_string_equal(again->routes[0].p.record, dir);
    config_unref(again);
    free(dump);
    config_unref(c);

    /* Defaults: off, raw. */
    c = load_ok(ROUTE);
    assert_null(c->defaults.record);
    assert_null(c->routes[0].p.record);
    assert_int_equal(c->routes[0].p.record_format, 0);
    config_unref(c);

    /* Errors name the line where the value was set. */
    expect_errors("[gateway]\nrecord = /nonexistent/rec\n" ROUTE,
                  "t.ini:2: record: '/nonexistent/rec' is not a writable directory");
    expect_errors(ROUTE "record = /etc/hostname\n",
                  "t.ini:4: record: '/etc/hostname' is not a writable directory");
    expect_errors(ROUTE "record_format = cast\n",
                  "t.ini:4: record_format: invalid value 'cast' (raw | asciicast)");
    rmdir(dir);
}

/* "Who is connecting": listen words, unix and systemd listeners, host names,
 * trusted_proxies, real_ip_header, per-IP limits and their inheritance,
 * allowed_networks, backend_proxy_protocol; and the dump of all of them. */
static void test_edge_keys(void **state)
{
    char buf[64], *one = NULL, *two = NULL;
    size_t len;
    (void)state;
    struct config *c = load_ok("[gateway]\n"
                               "listen = 127.0.0.1:1 proxy\n"
                               "listen = 127.0.0.1:2 tls auto proxy admin\n"
                               "listen = unix:/run/w.sock mode=0600 proxy\n"
                               "listen = unix:/run/x.sock\n"
                               "listen = systemd\n"
                               "listen = systemd:web tls\n"
                               "listen = localhost:3\n"
                               "trusted_proxies = 10.0.0.0/8, ::1/128, unix\n"
                               "trusted_proxies = 192.168.1.1\n"
                               "real_ip_header = x-forwarded-for\n"
                               "max_connections_per_ip = 20\n"
                               "handshake_rate_per_ip = 5\n"
                               "ipv6_prefix = 56\n"
                               "[tls]\ncert = /c.pem\n"
                               "[route:a]\npath = /a\nbackend = 127.0.0.1:1\n"
                               "allowed_networks = 192.0.2.0/24, 2001:db8::/32\n"
                               "backend_proxy_protocol = v2\n"
                               "max_connections_per_ip = 3\n"
                               "[route:b]\npath = /b\nbackend = 127.0.0.1:1\n");
    assert_true(c->nlistens >= 7);
    const struct listen_spec *l = c->listens;
    assert_true(l[0].proxy && !l[0].tls && !l[0].admin && l[0].kind == LISTEN_INET);
    assert_true(l[1].tls && l[1].tls_auto && l[1].proxy && l[1].admin);
    assert_int_equal(l[2].kind, LISTEN_UNIX);
    assert_string_equal(l[2].text, "unix:/run/w.sock");
    assert_int_equal(l[2].mode, 0600);
    assert_string_equal(((struct sockaddr_un *)&l[2].addr.ss)->sun_path, "/run/w.sock");
    assert_int_equal(l[3].mode, 0660);
    assert_int_equal(l[4].kind, LISTEN_SYSTEMD);
    assert_null(l[4].systemd_name);
    assert_int_equal(l[5].kind, LISTEN_SYSTEMD);
    assert_string_equal(l[5].systemd_name, "web");
    assert_true(l[5].tls);
    /* localhost: every address, numeric text, same line */
    for (size_t i = 6; i < c->nlistens; i++) {
        assert_int_equal(l[i].line, 8);
        assert_true(strcmp(l[i].text, "127.0.0.1:3") == 0 || strcmp(l[i].text, "[::1]:3") == 0);
    }
    assert_int_equal(c->ntrusted_proxies, 4);
    assert_string_equal(netcidr_str(&c->trusted_proxies[2], buf, sizeof buf), "unix");
    assert_string_equal(netcidr_str(&c->trusted_proxies[3], buf, sizeof buf), "192.168.1.1/32");
    assert_int_equal(c->real_ip_header, REAL_IP_XFF);
    assert_int_equal(c->ipv6_prefix, 56);
    assert_int_equal(c->defaults.max_connections_per_ip, 20);
    assert_int_equal(c->defaults.handshake_rate_per_ip, 5);
    assert_int_equal(c->routes[0].p.max_connections_per_ip, 3);
    assert_int_equal(c->routes[0].p.handshake_rate_per_ip, 5); /* inherited */
    assert_int_equal(c->routes[1].p.max_connections_per_ip, 20);
    assert_int_equal(c->routes[0].nallowed_networks, 2);
    assert_string_equal(netcidr_str(&c->routes[0].allowed_networks[1], buf, sizeof buf),
                        "2001:db8::/32");
    assert_int_equal(c->routes[0].backend_proxy_protocol, 2);
    assert_int_equal(c->routes[1].backend_proxy_protocol, 0);
    assert_int_equal(c->routes[1].nallowed_networks, 0);

    FILE *out = open_memstream(&one, &len);
    config_dump(c, out);
    fclose(out);
    assert_non_null(strstr(one, "listen = 127.0.0.1:2 tls auto proxy admin\n"));
    assert_non_null(strstr(one, "listen = unix:/run/w.sock proxy mode=0600\n"));
    assert_non_null(strstr(one, "listen = unix:/run/x.sock mode=0660\n"));
    assert_non_null(strstr(one, "listen = systemd\nlisten = systemd:web tls\n"));
    assert_non_null(strstr(one, "trusted_proxies = 10.0.0.0/8\ntrusted_proxies = ::1/128\n"
                                "trusted_proxies = unix\n"));
    assert_non_null(strstr(one, "real_ip_header = X-Forwarded-For\n"));
    assert_non_null(strstr(one, "ipv6_prefix = 56\n"));
    assert_non_null(strstr(one, "allowed_networks = 192.0.2.0/24\n"));
    assert_non_null(strstr(one, "backend_proxy_protocol = v2\n"));
    struct config *again = load_ok(one);
    out = open_memstream(&two, &len);
    config_dump(again, out);
    fclose(out);
    assert_string_equal(strchr(one, '\n'), strchr(two, '\n'));
    free(one);
    free(two);
    config_unref(again);
    config_unref(c);

    c = load_ok("[gateway]\nlisten = 127.0.0.1:1\n" ROUTE);
    assert_int_equal(c->real_ip_header, REAL_IP_OFF);
    assert_int_equal(c->ipv6_prefix, 64);
    assert_int_equal(c->ntrusted_proxies, 0);
    assert_int_equal(c->defaults.max_connections_per_ip, 0);
    assert_false(c->listens[0].proxy);
    config_unref(c);
}

static void test_edge_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[gateway]\nlisten = 127.0.0.1:1 auto\n" ROUTE, "t.ini:2: listen: 'auto' needs 'tls'"},
        {"[gateway]\nlisten = 127.0.0.1:1 mode=0600\n" ROUTE,
         "t.ini:2: listen: mode= applies to unix: listeners only"},
        {"[gateway]\nlisten = unix:/a mode=600\n" ROUTE,
         "t.ini:2: listen: 'mode=600': expected mode=0NNN (octal, e.g. mode=0660)"},
        {"[gateway]\nlisten = unix:/a mode=0689\n" ROUTE,
         "t.ini:2: listen: 'mode=0689': expected mode=0NNN (octal, e.g. mode=0660)"},
        {"[gateway]\nlisten = unix:/a proxy proxy\n" ROUTE, "t.ini:2: listen: 'proxy' given twice"},
        {"[gateway]\nlisten = unix:rel\n" ROUTE,
         "t.ini:2: listen: 'unix:rel': the unix socket path must be absolute"},
        {"[gateway]\nlisten = systemd:\n" ROUTE,
         "t.ini:2: listen: 'systemd:': expected systemd or systemd:NAME (a FileDescriptorName)"},
        {"[gateway]\nlisten = systemd:a\nlisten = systemd:a proxy\n" ROUTE,
         "t.ini:3: listen: duplicate listen address 'systemd:a' (first on line 2)"},
        {"[gateway]\nlisten = unix:/a\nlisten = unix:/a proxy\n" ROUTE,
         "t.ini:3: listen: duplicate listen address 'unix:/a' (first on line 2)"},
        {"[gateway]\nlisten = no-such-host.invalid:80\n" ROUTE, NULL},
        {"[gateway]\ntrusted_proxies = 10.0.0.1/8\n" ROUTE,
         "t.ini:2: trusted_proxies: '10.0.0.1/8': address has bits set beyond the /8 prefix"},
        {"[gateway]\ntrusted_proxies = 10.0.0.0/8,\n" ROUTE,
         "t.ini:2: trusted_proxies: empty item in the list"},
        {"[gateway]\ntrusted_proxies = fe80::1%eth0\n" ROUTE,
         "t.ini:2: trusted_proxies: 'fe80::1%eth0' is not an address or network (1.2.3.0/24, "
         "::1/128, unix)"},
        {"[gateway]\nreal_ip_header = X-Client-IP\n" ROUTE,
         "t.ini:2: real_ip_header: invalid value 'X-Client-IP' ( | X-Forwarded-For | Forwarded "
         "| X-Real-IP)"},
        {"[gateway]\nipv6_prefix = 0\n" ROUTE, "t.ini:2: ipv6_prefix: '0' out of range (1..128)"},
        {"[gateway]\nipv6_prefix = 129\n" ROUTE,
         "t.ini:2: ipv6_prefix: '129' out of range (1..128)"},
        {"[gateway]\nallowed_networks = 10.0.0.0/8\n" ROUTE,
         "t.ini:2: allowed_networks: only allowed in [route:NAME]"},
        {"[route:r]\npath = /\nbackend = 127.0.0.1:1\nbackend_proxy_protocol = v3\n",
         "t.ini:4: backend_proxy_protocol: invalid value 'v3' (off | v1 | v2)"},
        {"[route:r]\npath = /\nbackend = 127.0.0.1:1\nipv6_prefix = 48\n",
         "t.ini:4: ipv6_prefix: only allowed in [gateway]"},
        {"[route:r]\npath = /\nbackend = 127.0.0.1:1\nallowed_networks = 1.2.3.4/33\n",
         "t.ini:4: allowed_networks: '1.2.3.4/33': invalid prefix length (0..32)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].want != NULL) {
            expect_errors(cases[i].text, cases[i].want);
            continue;
        }
        struct config *c = (struct config *)1;
        assert_int_equal(config_load_string("t.ini", cases[i].text, &c, err, sizeof err), -1);
        assert_non_null(strstr(err, "t.ini:2: listen: cannot resolve 'no-such-host.invalid'"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_good),
        cmocka_unit_test(test_duration_bad),
        cmocka_unit_test(test_size_good),
        cmocka_unit_test(test_size_bad),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_listen_bad),
        cmocka_unit_test(test_backend_forms),
        cmocka_unit_test(test_backend_bad),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_gateway_keys),
        cmocka_unit_test(test_route_inheritance),
        cmocka_unit_test(test_route_keys),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_empty_is_valid),
        cmocka_unit_test(test_many_errors),
        cmocka_unit_test(test_key_dependencies),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_err_truncation),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_fixture_good),
        cmocka_unit_test(test_fixture_bad),
        cmocka_unit_test(test_sample_config),
        cmocka_unit_test(test_sample_documents_every_key),
        cmocka_unit_test(test_compression_keys),
        cmocka_unit_test(test_check_file),
        cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_record_keys),
        cmocka_unit_test(test_access_keys),
        cmocka_unit_test(test_token_redis),
        cmocka_unit_test(test_edge_keys),
        cmocka_unit_test(test_edge_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
