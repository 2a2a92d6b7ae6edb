/* test_redis_target.c - Redis token store sources (redis:// URLs and
 * websockify's host:port:db:password:namespace) and token values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "redis_target.h"

/* Parse v and compare with want (NULL: must be refused). */
static void value_is(const char *v, const char *want)
{
    char out[300];
    int rc = redis_value_parse(v, strlen(v), out, sizeof out);
    if (want == NULL) {
        if (rc != -1)
            fail_msg("'%s' accepted as '%s'", v, out);
        return;
    }
    if (rc != 0)
        fail_msg("'%s' refused", v);
    assert_string_equal(out, want);
}

static void test_values(void **state)
{
    value_is("127.0.0.1:5900", "127.0.0.1:5900");
    value_is("  vnc.example.com:5901\r\n", "vnc.example.com:5901");
    value_is("[::1]:5900", "[::1]:5900");
    value_is("{\"host\": \"10.0.0.2:5902\"}", "10.0.0.2:5902");
    value_is("{\"host\": \"h\", \"port\": 5903}", "h:5903");
    value_is("{\"host\": \"h\", \"port\": \"5904\"}", "h:5904");
    value_is("{\"host\": \"::1\", \"port\": 5905}", "[::1]:5905");
    value_is("{\"host\": \"[::1]:5906\"}", "[::1]:5906");
    value_is(" {\"port\": 1, \"host\": \"a-b_c.d\"} ", "a-b_c.d:1");
    value_is("h:65535", "h:65535");
    /* refused */
    value_is("", NULL);
    value_is("   ", NULL);
    value_is("host", NULL);
    value_is("host:", NULL);
    value_is(":5900", NULL);
    value_is("host:0", NULL);
    value_is("host:65536", NULL);
    value_is("host:59a", NULL);
    value_is("host:+5", NULL);
    value_is("a:b:5900", NULL);
    value_is("::1:5900", NULL);
    value_is("[::1]5900", NULL);
    value_is("[1.2.3.4]:5900", NULL);
    value_is("[zz::1]:5900", NULL);
    value_is("ho st:5900", NULL);
    value_is("host/x:5900", NULL);
    value_is("{\"host\": \"h\"}", NULL);
    value_is("{\"host\": \"h\", \"port\": 0}", NULL);
    value_is("{\"host\": \"h\", \"port\": 70000}", NULL);
    value_is("{\"host\": \"h\", \"port\": -1}", NULL);
    value_is("{\"host\": \"h\", \"port\": 5.5}", NULL);
    value_is("{\"host\": \"h\", \"port\": \"x\"}", NULL);
    value_is("{\"host\": \"h\", \"port\": true}", NULL);
    value_is("{\"host\": \"h:1\", \"port\": 2}", NULL);
    value_is("{\"host\": 5, \"port\": 2}", NULL);
    value_is("{\"host\": \"\", \"port\": 2}", NULL);
    value_is("{\"port\": 2}", NULL);
    value_is("{\"host\": \"h\", \"host\": \"g\", \"port\": 2}", NULL);
    value_is("{\"host\": \"h\\u0000x\", \"port\": 2}", NULL);
    value_is("[\"h\", 2]", NULL);
    value_is("{\"host\": \"h\", \"port\": 2", NULL);
    value_is("{\"host\": \"h:1\"} trailing", NULL);
    /* embedded NUL and a target that does not fit */
    char out[8];
    assert_int_equal(redis_value_parse("h:1\0:2", 6, out, sizeof out), -1);
    assert_int_equal(redis_value_parse("abcdef:5900", 11, out, sizeof out), -1);
    assert_int_equal(redis_value_parse("abc:5900", 8, out, sizeof out), -1); /* 9 bytes with NUL */
    assert_int_equal(redis_value_parse("ab:5900", 7, out, sizeof out), 0);
    assert_string_equal(out, "ab:5900");
}

/* Parse s; expect the fields (NULL strings: absent). */
static void source_is(const char *s, const char *host, unsigned port, unsigned db, const char *user,
                      const char *password, const char *prefix, const char *name)
{
    struct redis_target t;
    char err[256] = "";

    if (redis_target_parse(s, &t, err, sizeof err) != 0)
        fail_msg("'%s' refused: %s", s, err);
    assert_string_equal(t.host, host);
    assert_int_equal(t.port, port);
    assert_int_equal(t.db, db);
#define OPT(field, want)                                                                           \
    do {                                                                                           \
        if ((want) == NULL)                                                                        \
            assert_null(t.field);                                                                  \
        else                                                                                       \
            assert_string_equal(t.field, (want));                                                  \
    } while (0)
    OPT(user, user);
    OPT(password, password);
    OPT(prefix, prefix);
    assert_string_equal(t.name, name);
    redis_target_free(&t);
}

static void source_bad(const char *s, const char *msg_part)
{
    struct redis_target t;
    char err[256] = "";

    if (redis_target_parse(s, &t, err, sizeof err) == 0)
        fail_msg("'%s' accepted", s);
    assert_non_null(strstr(err, msg_part));
    assert_null(t.host);
    assert_null(t.password);
}

static void test_sources(void **state)
{
    source_is("redis://127.0.0.1:6380/2", "127.0.0.1", 6380, 2, NULL, NULL, NULL,
              "127.0.0.1:6380/2");
    source_is("redis://localhost", "localhost", 6379, 0, NULL, NULL, NULL, "localhost:6379/0");
    source_is("redis://localhost/", "localhost", 6379, 0, NULL, NULL, NULL, "localhost:6379/0");
    source_is("redis://:s3cr%40t@r.example:7000/15", "r.example", 7000, 15, NULL, "s3cr@t", NULL,
              "r.example:7000/15");
    source_is("redis://user:p@ss@[::1]:6379/1", "::1", 6379, 1, "user", "p@ss", NULL,
              "[::1]:6379/1");
    /* websockify 0.13 */
    source_is("redis-host", "redis-host", 6379, 0, NULL, NULL, NULL, "redis-host:6379/0");
    source_is("redis-host:6380", "redis-host", 6380, 0, NULL, NULL, NULL, "redis-host:6380/0");
    source_is("redis-host::3", "redis-host", 6379, 3, NULL, NULL, NULL, "redis-host:6379/3");
    source_is("redis-host:::verysecret", "redis-host", 6379, 0, NULL, "verysecret", NULL,
              "redis-host:6379/0");
    source_is("redis-host::::app", "redis-host", 6379, 0, NULL, NULL, "app:", "redis-host:6379/0");
    source_is("10.1.1.1:6381:4:pw:app:nested", "10.1.1.1", 6381, 4, NULL, "pw",
              "app:nested:", "10.1.1.1:6381/4");
    source_is("[::1]:6390", "::1", 6390, 0, NULL, NULL, NULL, "[::1]:6390/0");
    /* refused, and a password never echoed */
    source_bad("", "invalid Redis host");
    source_bad("redis://", "invalid Redis host");
    source_bad("rediss://h", "only redis://");
    source_bad("http://h", "only redis://");
    source_bad("redis://h:0", "invalid port");
    source_bad("redis://h:65536", "invalid port");
    source_bad("redis://h:x", "invalid port");
    source_bad("redis://h/x", "database");
    source_bad("redis://h/-1", "database");
    source_bad("redis://pw@h", "password@");
    source_bad("redis://u:@h", "password");
    source_bad("redis://:%zz@h", "password");
    source_bad("redis://:a%00b@h", "password");
    source_bad("h:99999", "port");
    source_bad("h:1:x", "database");
    source_bad("ho st", "invalid Redis host");
    source_bad("[::1", "IPv6");
    source_bad("[::1]x", "expected host");

    char err[256];
    struct redis_target t;
    assert_int_equal(redis_target_parse("redis://:hunter2@h:x", &t, err, sizeof err), -1);
    assert_null(strstr(err, "hunter2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
