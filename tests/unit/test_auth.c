/* test_auth.c - tokens from requests (query, cookie, Bearer), Basic
 * authentication with crypt(3) hashes made by other tools (fixture
 * tests/data/auth/users), change detection, the shared cache, and
 * allowed_backends patterns. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "http.h"

#define USERS TEST_DATA_DIR "/auth/users"

static struct http_request req;
static char head[4096];

/* Parse a request head (lines joined with \r\n) into req. */
static const struct http_request *request(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    assert_true(http_parse_request(head, strlen(head), 0, &req) > 0);
    return &req;
}

static void test_cookie_find(void **state)
{
    const char *v;
    size_t n;

    (void)state;
    const char *c = "a=1; tok=abc; b=2";
    assert_int_equal(auth_cookie_find(c, strlen(c), "tok", &v, &n), 1);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "abc", 3);
    c = "tokx=1;tok=\"q.v\"";
    assert_int_equal(auth_cookie_find(c, strlen(c), "tok", &v, &n), 1);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "q.v", 3);
    c = "novalue; tok = 5 ";
    assert_int_equal(auth_cookie_find(c, strlen(c), "tok", &v, &n), 1);
    assert_int_equal(n, 1);
    assert_memory_equal(v, "5", 1);
    c = "xtok=1; to=2";
    assert_int_equal(auth_cookie_find(c, strlen(c), "tok", &v, &n), 0);
    c = "tok=";
    assert_int_equal(auth_cookie_find(c, strlen(c), "tok", &v, &n), 1);
    assert_int_equal(n, 0);
}

static void test_bearer(void **state)
{
    const char *t;
    size_t n;

    (void)state;
    assert_int_equal(auth_bearer("Bearer abc.d-e_f", 16, &t, &n), 1);
    assert_memory_equal(t, "abc.d-e_f", 9);
    assert_int_equal(n, 9);
    assert_int_equal(auth_bearer("bearer   x==", 12, &t, &n), 1);
    assert_int_equal(n, 3);
    assert_int_equal(auth_bearer("Bearer a b", 10, &t, &n), 0);
    assert_int_equal(auth_bearer("Bearer ", 7, &t, &n), 0);
    assert_int_equal(auth_bearer("Bearerx abc", 11, &t, &n), 0);
    assert_int_equal(auth_bearer("Basic abc", 9, &t, &n), 0);
}

static void test_token_order(void **state)
{
    char out[64];
    size_t n;

    (void)state;
    /* ?token= wins over the cookie and the header */
    request("GET /v?token=q%41 HTTP/1.1\r\nCookie: t=c\r\nAuthorization: Bearer b\r\n\r\n");
    assert_int_equal(auth_token_from_request(&req, "t", out, sizeof out, &n), AUTH_TOKEN_QUERY);
    assert_string_equal(out, "qA");
    assert_int_equal(n, 2);
    /* a malformed ?token= is refused, no fallback */
    request("GET /v?token=%zz HTTP/1.1\r\nCookie: t=c\r\nAuthorization: Bearer b\r\n\r\n");
    assert_int_equal(auth_token_from_request(&req, "t", out, sizeof out, &n), AUTH_TOKEN_INVALID);
    assert_string_equal(out, "");
    /* an empty ?token= is absent: the cookie, from the second Cookie header */
    request("GET /v?token= HTTP/1.1\r\nCookie: a=1\r\nCookie: x=2; t=\"ck\"\r\n"
            "Authorization: Bearer b\r\n\r\n");
    assert_int_equal(auth_token_from_request(&req, "t", out, sizeof out, &n), AUTH_TOKEN_COOKIE);
    assert_string_equal(out, "ck");
    /* no token_cookie configured: the header */
    assert_int_equal(auth_token_from_request(&req, NULL, out, sizeof out, &n), AUTH_TOKEN_BEARER);
    assert_string_equal(out, "b");
    /* the Bearer header after a Basic one */
    request("GET /v HTTP/1.1\r\nAuthorization: Basic YTpi\r\nAuthorization: Bearer zz\r\n\r\n");
    assert_int_equal(auth_token_from_request(&req, "t", out, sizeof out, &n), AUTH_TOKEN_BEARER);
    assert_string_equal(out, "zz");
    request("GET /v HTTP/1.1\r\nCookie: other=1\r\n\r\n");
    assert_int_equal(auth_token_from_request(&req, "t", out, sizeof out, &n), AUTH_TOKEN_NONE);
    /* too long for the buffer: refused, not cut */
    request("GET /v HTTP/1.1\r\nCookie: t=0123456789\r\n\r\n");
    assert_int_equal(auth_token_from_request(&req, "t", out, 10, &n), AUTH_TOKEN_INVALID);
    assert_int_equal(auth_token_from_request(&req, "t", out, 11, &n), AUTH_TOKEN_COOKIE);
}

static void test_basic_parse(void **state)
{
    char u[16], p[16];

    (void)state;
    const char *h = "Basic YWxpY2U6c2VjcmV0MQ=="; /* alice:secret1 */
    assert_int_equal(auth_basic_parse(h, strlen(h), u, sizeof u, p, sizeof p), 0);
    assert_string_equal(u, "alice");
    assert_string_equal(p, "secret1");
    h = "basic dTpwOnE="; /* u:p:q, split at the first colon */
    assert_int_equal(auth_basic_parse(h, strlen(h), u, sizeof u, p, sizeof p), 0);
    assert_string_equal(u, "u");
    assert_string_equal(p, "p:q");
    h = "Basic dXNlcg=="; /* "user": no colon */
    assert_int_equal(auth_basic_parse(h, strlen(h), u, sizeof u, p, sizeof p), -1);
    h = "Basic OnB3"; /* ":pw": empty user */
    assert_int_equal(auth_basic_parse(h, strlen(h), u, sizeof u, p, sizeof p), -1);
    h = "Basic YW*j"; /* not base64 */
    assert_int_equal(auth_basic_parse(h, strlen(h), u, sizeof u, p, sizeof p), -1);
    h = "Basic YWxpY2U6c2VjcmV0MQ=="; /* password does not fit in 7 */
    assert_int_equal(auth_basic_parse(h, strlen(h), u, sizeof u, p, 7), -1);
    assert_int_equal(auth_basic_parse(h, strlen(h), u, sizeof u, p, 8), 0);
}

static void test_load_and_verify(void **state)
{
    struct basic_auth *t = NULL;
    char err[2048] = "";

    (void)state;
    assert_int_equal(basic_auth_load(USERS, &t, err, sizeof err), 4);
    assert_string_equal(err,
                        USERS ":7: unsupported or malformed hash (use yescrypt $y$, sha512-crypt "
                              "$6$ or bcrypt $2b$)\n" USERS ":8: expected user:hash\n" USERS
                              ":9: empty user name\n" USERS
                              ":10: unsupported or malformed hash (use yescrypt $y$, "
                              "sha512-crypt $6$ or bcrypt $2b$)\n");
    assert_int_equal(basic_auth_count(t), 3);
    assert_int_equal(basic_auth_verify(t, "alice", "secret1"), 1);
    assert_int_equal(basic_auth_verify(t, "bob", "secret2"), 1);
    assert_int_equal(basic_auth_verify(t, "carol", "secret3"), 1);
    assert_int_equal(basic_auth_verify(t, "alice", "secret2"), 0);
    assert_int_equal(basic_auth_verify(t, "carol", "secret"), 0);
    assert_int_equal(basic_auth_verify(t, "dave", "x"), 0);
    assert_int_equal(basic_auth_verify(t, "mallory", "secret1"), 0);
    /* remembered successes change no answer: the same again, a wrong
     * password after a right one, a right password under another name, and
     * the user and password split differently (the digest separates them) */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(basic_auth_verify(t, "alice", "secret1"), 1);
        assert_int_equal(basic_auth_verify(t, "alice", "secret11"), 0);
        assert_int_equal(basic_auth_verify(t, "alic", "esecret1"), 0);
        assert_int_equal(basic_auth_verify(t, "bob", "secret1"), 0);
    }

    request("GET / HTTP/1.1\r\nAuthorization: Basic Ym9iOnNlY3JldDI=\r\n\r\n"); /* bob:secret2 */
    assert_int_equal(basic_auth_check(t, &req), 200);
    assert_int_equal(basic_auth_check(NULL, &req), 401);
    request("GET / HTTP/1.1\r\nAuthorization: Basic Ym9iOnNlY3JldDM=\r\n\r\n"); /* bob:secret3 */
    assert_int_equal(basic_auth_check(t, &req), 401);
    request("GET / HTTP/1.1\r\nAuthorization: Bearer Ym9iOnNlY3JldDI=\r\n\r\n");
    assert_int_equal(basic_auth_check(t, &req), 401);
    request("GET / HTTP/1.1\r\n\r\n");
    assert_int_equal(basic_auth_check(t, &req), 401);
    basic_auth_free(t);
    assert_string_equal(AUTH_WWW_AUTHENTICATE, "Basic realm=\"wsgate\"");

    assert_int_equal(basic_auth_load("/nonexistent/users", &t, err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/users: cannot read: No such file or directory\n");
}

static void test_changes_and_cache(void **state)
{
    char path[256], err[512];
    struct basic_auth *t = NULL;

    (void)state;
    snprintf(path, sizeof path, "%s/wsgate-auth-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *one = "bob:$2b$04$1MjHOlxT6Dtbb/VPY07JueGKCnnWja5mVF00bohaoBSV2G08xMGZi\n";
    assert_int_equal(write(fd, one, strlen(one)), (ssize_t)strlen(one));
    close(fd);
    assert_int_equal(basic_auth_load(path, &t, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(basic_auth_changed(path, t), 0);

    struct basic_auth_cache *c = basic_auth_cache_new(path, err, sizeof err);
    assert_non_null(c);
    request("GET / HTTP/1.1\r\nAuthorization: Basic Ym9iOnNlY3JldDI=\r\n\r\n");
    assert_int_equal(basic_auth_cache_check(c, &req), 200);
    assert_int_equal(basic_auth_cache_reload(c, err, sizeof err), 0);

    FILE *f = fopen(path, "w"); /* bob removed: another size */
    assert_non_null(f);
    fputs("# nobody\n", f);
    fclose(f);
    assert_int_equal(basic_auth_changed(path, t), 1);
    assert_int_equal(basic_auth_cache_reload(c, err, sizeof err), 1);
    assert_int_equal(basic_auth_cache_check(c, &req), 401);
    assert_int_equal(basic_auth_cache_reload(c, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(basic_auth_changed(path, t), 1);
    assert_int_equal(basic_auth_cache_reload(c, err, sizeof err), 1);
    assert_string_equal(strstr(err, "cannot read"), "cannot read: No such file or directory\n");
    assert_int_equal(basic_auth_cache_check(c, &req), 401);
    basic_auth_cache_free(c);
    basic_auth_free(t);
}

/* basic_auth_cache_begin(): the check left to the caller, then decided
 * with its answer (remembered when good). */
static void test_check_in_two_steps(void **state)
{
    char err[512];
    struct auth_crypt need = {0};

    (void)state;
    struct basic_auth_cache *c = basic_auth_cache_new(USERS, err, sizeof err);
    assert_non_null(c);
    /* bob:secret2 */
    request("GET / HTTP/1.1\r\nAuthorization: Basic Ym9iOnNlY3JldDI=\r\n\r\n");
    assert_int_equal(basic_auth_cache_begin(c, &req, 0, &need), 0);
    assert_non_null(need.hash);
    assert_int_equal(need.known, 1);
    assert_string_equal(need.password, "secret2");
    assert_int_equal(basic_auth_crypt_matches(need.hash, need.password), 1);
    assert_int_equal(basic_auth_crypt_matches(need.hash, "secret1"), 0);
    free(need.hash);
    need.hash = NULL;
    assert_int_equal(basic_auth_cache_begin(c, &req, -1, &need), 401);
    assert_null(need.hash);
    assert_int_equal(basic_auth_cache_begin(c, &req, 1, &need), 200);
    /* remembered: no check asked for any more */
    assert_int_equal(basic_auth_cache_begin(c, &req, 0, &need), 200);
    assert_null(need.hash);
    /* nobody:secret2: checked against the first user's hash, never good */
    request("GET / HTTP/1.1\r\nAuthorization: Basic bm9ib2R5OnNlY3JldDI=\r\n\r\n");
    assert_int_equal(basic_auth_cache_begin(c, &req, 0, &need), 0);
    assert_int_equal(need.known, 0);
    assert_non_null(need.hash);
    free(need.hash);
    need.hash = NULL;
    assert_int_equal(basic_auth_cache_begin(c, &req, 1, &need), 401);
    /* no credentials: 401 at once */
    request("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(basic_auth_cache_begin(c, &req, 0, &need), 401);
    assert_null(need.hash);
    basic_auth_cache_free(c);
}

static void test_backend_patterns(void **state)
{
    struct backend_pattern p;
    char err[256];

    (void)state;
    assert_int_equal(auth_backend_pattern_parse("10.0.0.0/8", &p, err, sizeof err), 0);
    assert_int_equal(p.kind, BP_CIDR);
    assert_int_equal(p.family, AF_INET);
    assert_int_equal(p.prefix, 8);
    assert_int_equal(p.addr[0], 10);
    assert_int_equal(auth_backend_pattern_parse("2001:db8::/32", &p, err, sizeof err), 0);
    assert_int_equal(p.family, AF_INET6);
    assert_int_equal(p.prefix, 32);
    assert_int_equal(auth_backend_pattern_parse("192.0.2.7", &p, err, sizeof err), 0);
    assert_int_equal(p.prefix, 32);
    assert_int_equal(auth_backend_pattern_parse("0.0.0.0/0", &p, err, sizeof err), 0);
    assert_int_equal(p.prefix, 0);
    assert_int_equal(auth_backend_pattern_parse("VNC.internal:5900", &p, err, sizeof err), 0);
    assert_int_equal(p.kind, BP_HOSTPORT);
    assert_string_equal(p.host, "vnc.internal");
    assert_int_equal(p.port, 5900);
    assert_int_equal(auth_backend_pattern_parse("db:*", &p, err, sizeof err), 0);
    assert_int_equal(p.port, 0);
    assert_int_equal(auth_backend_pattern_parse("*:22", &p, err, sizeof err), 0);
    assert_string_equal(p.host, "*");
    assert_int_equal(auth_backend_pattern_parse("[2001:db8::1]:22", &p, err, sizeof err), 0);
    assert_string_equal(p.host, "2001:db8::1");
    assert_int_equal(auth_backend_pattern_parse("10.0.0.1/8", &p, err, sizeof err), -1);
    assert_string_equal(err, "'10.0.0.1/8': address has bits set beyond /8");
    assert_int_equal(auth_backend_pattern_parse("10.0.0.0/33", &p, err, sizeof err), -1);
    assert_string_equal(err, "'10.0.0.0/33': prefix length must be 0..32");
    assert_int_equal(auth_backend_pattern_parse("*:*", &p, err, sizeof err), -1);
    assert_string_equal(err, "'*:*': *:* allows everything (leave allowed_backends empty)");
    static const char *const bad[] = {"host", "host:0",         "host:65536",  "a b:1",
                                      ":22",  "2001:db8::1:zz", "[nothex]:22", "host/8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(auth_backend_pattern_parse(bad[i], &p, err, sizeof err), -1);
        assert_non_null(strstr(err, "expected CIDR"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_find),      cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_token_order),      cmocka_unit_test(test_basic_parse),
        cmocka_unit_test(test_load_and_verify),  cmocka_unit_test(test_changes_and_cache),
        cmocka_unit_test(test_backend_patterns), cmocka_unit_test(test_check_in_two_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
