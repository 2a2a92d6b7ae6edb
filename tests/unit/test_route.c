/* test_route.c - unit tests for route choice by Host and path (src/route.c):
 * Host normalisation, host classes (exact > wildcard by longest suffix >
 * any), fall-through to the next class, the `host =` checks of config
 * loading, and the hash table against the linear scan on the same routes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/config.h"

static char err[4096];

static struct config *load(const char *text)
{
    struct config *c = NULL;
    err[0] = '\0';
    int rc = config_load_string("t.ini", text, &c, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(c->route_table);
    return c;
}

/* The route name for host and path with the table, checked against the
 * linear scan of the same configuration. */
static const char *pick(struct config *c, const char *host, const char *path)
{
    size_t hlen = host ? strlen(host) : 0;
    const struct route *t = config_match_route(c, host, hlen, path, strlen(path));
    struct route_table *saved = c->route_table;
    c->route_table = NULL;
    const struct route *l = config_match_route(c, host, hlen, path, strlen(path));
    c->route_table = saved;
    assert_ptr_equal(t, l);
    return t ? t->name : NULL;
}

static void test_normalize(void **state)
{
    char out[64];
    (void)state;
    assert_int_equal(route_host_normalize("Example.COM", 11, out, sizeof out), 11);
    assert_string_equal(out, "example.com");
    assert_int_equal(route_host_normalize("example.com.:8080", 17, out, sizeof out), 11);
    assert_string_equal(out, "example.com");
    assert_int_equal(route_host_normalize("example.com:", 12, out, sizeof out), 11);
    assert_int_equal(route_host_normalize("[::1]:8080", 10, out, sizeof out), 3);
    assert_string_equal(out, "::1");
    assert_int_equal(route_host_normalize("[FE80::A]", 9, out, sizeof out), 7);
    assert_string_equal(out, "fe80::a");
    assert_int_equal(route_host_normalize("127.0.0.1:80", 12, out, sizeof out), 9);
    /* malformed */
    assert_int_equal(route_host_normalize("::1", 3, out, sizeof out), -1);
    assert_int_equal(route_host_normalize("a.com:8x", 8, out, sizeof out), -1);
    assert_int_equal(route_host_normalize("[::1", 4, out, sizeof out), -1);
    assert_int_equal(route_host_normalize("[]", 2, out, sizeof out), -1);
    assert_int_equal(route_host_normalize("[::1]x", 6, out, sizeof out), -1);
    assert_int_equal(route_host_normalize("[zz]", 4, out, sizeof out), -1);
    assert_int_equal(route_host_normalize("a b", 3, out, sizeof out), -1);
    assert_int_equal(route_host_normalize("a\x01", 2, out, sizeof out), -1);
    assert_int_equal(route_host_normalize("u@a.com", 7, out, sizeof out), -1);
    assert_int_equal(route_host_normalize(".", 1, out, sizeof out), -1);
    assert_int_equal(route_host_normalize(":80", 3, out, sizeof out), -1);
    assert_int_equal(route_host_normalize("", 0, out, sizeof out), -1);
    /* cap: 11 characters need 12 bytes */
    assert_int_equal(route_host_normalize("example.com", 11, out, 11), -1);
    assert_int_equal(route_host_normalize("example.com", 11, out, 12), 11);
}

static const char classes_ini[] =
    "[route:exact]\nhost = vnc.example.com\npath = /\nbackend = "
    "127.0.0.1:1\n"
    "[route:exact-ssh]\nhost = VNC.Example.com.\npath = /ssh\nbackend "
    "= 127.0.0.1:1\n"
    "[route:wild]\nhost = *.example.com\npath = /\nbackend = "
    "127.0.0.1:1\n"
    "[route:wild-deep]\nhost = *.b.example.com\npath = /x/\nbackend = "
    "127.0.0.1:1\n"
    "[route:any]\npath = /\nbackend = 127.0.0.1:1\n"
    "[route:any-only]\npath = /only\nbackend = 127.0.0.1:1\n"
    "[route:v6]\nhost = [::1]\npath = /\nbackend = 127.0.0.1:1\n"
    "[route:v4]\nhost = 10.0.0.1\npath = /four\nbackend = "
    "127.0.0.1:1\n";

static void test_classes(void **state)
{
    (void)state;
    struct config *c = load(classes_ini);
    /* exact, in any spelling */
    assert_string_equal(pick(c, "vnc.example.com", "/"), "exact");
    assert_string_equal(pick(c, "VNC.EXAMPLE.COM:443", "/a/b"), "exact");
    assert_string_equal(pick(c, "vnc.example.com.", "/ssh"), "exact-ssh");
    /* wildcard: any depth, not the domain itself */
    assert_string_equal(pick(c, "a.example.com", "/z"), "wild");
    assert_string_equal(pick(c, "a.b.c.example.com", "/z"), "wild");
    assert_string_equal(pick(c, "example.com", "/z"), "any");
    assert_string_equal(pick(c, "badexample.com", "/z"), "any");
    /* longest suffix first; falls through to a shorter suffix when its path
     * does not match */
    assert_string_equal(pick(c, "q.b.example.com", "/x/1"), "wild-deep");
    assert_string_equal(pick(c, "q.b.example.com", "/y"), "wild");
    assert_string_equal(pick(c, "b.example.com", "/x/1"), "wild");
    /* exact class without a matching path: next class */
    assert_string_equal(pick(c, "vnc.example.com", "/only"), "exact");
    assert_string_equal(pick(c, "other.test", "/only"), "any-only");
    /* IPv6 and IPv4 literals */
    assert_string_equal(pick(c, "[::1]:8080", "/v"), "v6");
    assert_string_equal(pick(c, "[0:0::1]", "/v"), "any"); /* spelled differently: no match */
    assert_string_equal(pick(c, "10.0.0.1:80", "/four"), "v4");
    assert_string_equal(pick(c, "10.0.0.1", "/five"), "any");
    /* no or malformed Host: hostless routes only */
    assert_string_equal(pick(c, NULL, "/only"), "any-only");
    assert_string_equal(pick(c, "vnc.example.com:x", "/"), "any");
    assert_string_equal(pick(c, "vnc example.com", "/"), "any");
    config_unref(c);

    c = load("[route:a]\nhost = a.test\npath = /a\nbackend = 127.0.0.1:1\n");
    assert_null(pick(c, "b.test", "/a"));
    assert_null(pick(c, NULL, "/a"));
    assert_string_equal(pick(c, "A.TEST.", "/a"), "a");
    assert_null(pick(c, "a.test", "/b"));
    config_unref(c);
}

static void load_fails(const char *text, const char *want)
{
    struct config *c = NULL;
    err[0] = '\0';
    assert_int_equal(config_load_string("t.ini", text, &c, err, sizeof err), -1);
    assert_null(c);
    if (strstr(err, want) == NULL)
        fprintf(stderr, "got: %s\nwant: %s\n", err, want);
    assert_non_null(strstr(err, want));
}

static void test_host_key(void **state)
{
    (void)state;
    load_fails("[route:a]\nhost = a.test:80\npath = /\nbackend = 127.0.0.1:1\n",
               "t.ini:2: host: 'a.test:80' is not a host name");
    load_fails("[route:a]\nhost = a.*.test\npath = /\nbackend = 127.0.0.1:1\n",
               "t.ini:2: host: 'a.*.test' is not a host name");
    load_fails("[route:a]\nhost = *a.test\npath = /\nbackend = 127.0.0.1:1\n",
               "t.ini:2: host: '*a.test' is not a host name");
    load_fails("[route:a]\nhost = a..test\npath = /\nbackend = 127.0.0.1:1\n",
               "t.ini:2: host: 'a..test' is not a host name");
    load_fails("[route:a]\nhost = *.[::1]\npath = /\nbackend = 127.0.0.1:1\n",
               "t.ini:2: host: '*.[::1]' is not a host name");
    load_fails("[route:a]\nhost = [::1]:80\npath = /\nbackend = 127.0.0.1:1\n",
               "t.ini:2: host: '[::1]:80' is not a host name");
    /* the same host in two spellings and the same path is a duplicate */
    load_fails("[route:a]\nhost = A.test\npath = /\nbackend = 127.0.0.1:1\n"
               "[route:b]\nhost = a.test.\npath = /\nbackend = 127.0.0.1:1\n",
               "t.ini:7: path: duplicate route path '/' (also in [route:a], line 3)");
    /* the same path under different hosts is not */
    struct config *c = load("[route:a]\nhost = a.test\npath = /\nbackend = 127.0.0.1:1\n"
                            "[route:b]\nhost = *.a.test\npath = /\nbackend = 127.0.0.1:1\n"
                            "[route:c]\npath = /\nbackend = 127.0.0.1:1\n");
    assert_string_equal(pick(c, "a.test", "/"), "a");
    assert_string_equal(pick(c, "x.a.test", "/"), "b");
    assert_string_equal(pick(c, "x.b.test", "/"), "c");
    config_unref(c);
}

/* 1,000 host+path routes: the table gives the linear scan's answer for every
 * route's own host and path, for paths under prefixes and for misses. */
static void test_many(void **state)
{
    (void)state;
    size_t cap = 1000 * 120, n = 0;
    char *ini = malloc(cap);
    assert_non_null(ini);
    for (int i = 0; i < 1000; i++) {
        const char *kind = i % 3 == 0 ? "h%d.example.com" : i % 3 == 1 ? "*.w%d.example.com" : "";
        char host[64];
        snprintf(host, sizeof host, kind, i);
        n += (size_t)snprintf(ini + n, cap - n,
                              "[route:r%d]\nhost = %s\npath = /p%d%s\nbackend = 127.0.0.1:1\n", i,
                              host, i % 3 == 2 ? i : i % 10, i % 2 ? "/" : "");
    }
    struct config *c = load(ini);
    free(ini);
    assert_int_equal(c->nroutes, 1000);
    char host[64], path[64], name[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "r%d", i);
        snprintf(path, sizeof path, "/p%d%s", i % 3 == 2 ? i : i % 10, i % 2 ? "/deeper/x" : "");
        if (i % 3 == 0)
            snprintf(host, sizeof host, "H%d.example.com:443", i);
        else if (i % 3 == 1)
            snprintf(host, sizeof host, "a.b.w%d.example.com", i);
        else
            snprintf(host, sizeof host, "nowhere.test");
        const char *got = pick(c, host, path);
        assert_non_null(got);
        assert_string_equal(got, name);
        pick(c, host, "/nothing");
        pick(c, host, "/p1");
        pick(c, host, "/p1/");
        pick(c, host, "/p2");
    }
    config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_host_key),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
