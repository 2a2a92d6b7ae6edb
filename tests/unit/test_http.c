/* test_http.c - unit tests for the request-head parser (src/http.c).
 *
 * Inputs are copied into heap blocks of exactly their length, so ASan reports
 * any read past the bytes the parser was given. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* A parse over an exact-size heap copy of s[0..len); the copy stays alive in
 * *keep (free it with free()) so the request's pointers stay valid. */
static int parse_copy(const char *s, size_t len, size_t prev, struct http_request *req, char **keep)
{
    char *p = malloc(len ? len : 1);
    assert_non_null(p);
    memcpy(p, s, len);
    int rc = http_parse_request(p, len, prev, req);
    if (keep != NULL)
        *keep = p;
    else
        free(p);
    return rc;
}

static int parse_str(const char *s)
{
    static struct http_request req;
    return parse_copy(s, strlen(s), 0, &req, NULL);
}

static void assert_span(const char *p, size_t len, const char *want)
{
    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
}

static const char simple_req[] = "GET /vnc?token=abc&x=1 HTTP/1.1\r\n"
                                 "Host: example.com:8080\r\n"
                                 "Upgrade: websocket\r\n"
                                 "Connection: keep-alive, Upgrade\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 "Sec-WebSocket-Version: 13\r\n"
                                 "\r\n";

static void test_simple_fields(void **state)
{
    struct http_request req;
    char *keep;
    size_t len = strlen(simple_req);

    assert_int_equal(parse_copy(simple_req, len, 0, &req, &keep), (int)len);
    assert_span(req.method, req.method_len, "GET");
    assert_span(req.target, req.target_len, "/vnc?token=abc&x=1");
    assert_span(req.path, req.path_len, "/vnc");
    assert_span(req.query, req.query_len, "token=abc&x=1");
    assert_int_equal(req.version_major, 1);
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.nheaders, 5);
    assert_span(req.headers[0].name, req.headers[0].name_len, "Host");
    assert_span(req.headers[0].value, req.headers[0].value_len, "example.com:8080");
    assert_span(req.headers[4].name, req.headers[4].name_len, "Sec-WebSocket-Version");
    assert_span(req.headers[4].value, req.headers[4].value_len, "13");
    free(keep);
}

static void test_no_query_and_empty_query(void **state)
{
    struct http_request req;
    char *keep;
    const char *a = "GET /a/b HTTP/1.1\r\n\r\n";
    const char *b = "GET /a? HTTP/1.0\r\n\r\n";
    const char *c = "GET /a?x?y HTTP/1.1\r\n\r\n";

    assert_int_equal(parse_copy(a, strlen(a), 0, &req, &keep), (int)strlen(a));
    assert_span(req.path, req.path_len, "/a/b");
    assert_null(req.query);
    assert_int_equal(req.query_len, 0);
    assert_int_equal(req.nheaders, 0);
    free(keep);

    assert_int_equal(parse_copy(b, strlen(b), 0, &req, &keep), (int)strlen(b));
    assert_span(req.path, req.path_len, "/a");
    assert_non_null(req.query);
    assert_int_equal(req.query_len, 0);
    assert_int_equal(req.version_minor, 0);
    free(keep);

    /* Split at the first '?'. */
    assert_int_equal(parse_copy(c, strlen(c), 0, &req, &keep), (int)strlen(c));
    assert_span(req.path, req.path_len, "/a");
    assert_span(req.query, req.query_len, "x?y");
    free(keep);
}

/* Every proper prefix is partial, the whole is the head length, whether the
 * parser resumes (prev_len = previous length) or starts over (prev_len = 0). */
static void check_byte_by_byte(const char *s, size_t len)
{
    struct http_request req;

    for (size_t i = 0; i < len; i++) {
        assert_int_equal(parse_copy(s, i, i > 0 ? i - 1 : 0, &req, NULL), HTTP_PARTIAL);
        assert_int_equal(parse_copy(s, i, 0, &req, NULL), HTTP_PARTIAL);
        assert_int_equal(parse_copy(s, i, i, &req, NULL), HTTP_PARTIAL);
    }
    assert_int_equal(parse_copy(s, len, len - 1, &req, NULL), (int)len);
    assert_int_equal(parse_copy(s, len, 0, &req, NULL), (int)len);
}

static void test_byte_by_byte(void **state)
{
    check_byte_by_byte(simple_req, strlen(simple_req));
}

static void test_byte_by_byte_bare_lf(void **state)
{
    const char *s = "GET / HTTP/1.1\nHost: a\nUpgrade: websocket\n\n";
    check_byte_by_byte(s, strlen(s));
    const char *mixed = "GET / HTTP/1.1\r\nHost: a\n\r\n";
    check_byte_by_byte(mixed, strlen(mixed));
    const char *mixed2 = "GET / HTTP/1.1\nHost: a\r\n\n";
    check_byte_by_byte(mixed2, strlen(mixed2));
}

/* Chunks of every size, resuming from the previous length each time. */
static void test_chunked_resume(void **state)
{
    struct http_request req;
    size_t len = strlen(simple_req);

    for (size_t step = 1; step <= len; step++) {
        size_t have = 0, prev = 0;
        int rc = HTTP_PARTIAL;
        while (rc == HTTP_PARTIAL) {
            have = have + step > len ? len : have + step;
            rc = parse_copy(simple_req, have, prev, &req, NULL);
            prev = have;
            if (have < len)
                assert_int_equal(rc, HTTP_PARTIAL);
        }
        assert_int_equal(rc, (int)len);
    }
}

static void test_bare_lf(void **state)
{
    struct http_request req;
    char *keep;
    const char *s = "GET /x HTTP/1.1\nHost: h\nX: y  \n\n";

    assert_int_equal(parse_copy(s, strlen(s), 0, &req, &keep), (int)strlen(s));
    assert_int_equal(req.nheaders, 2);
    assert_span(req.headers[1].value, req.headers[1].value_len, "y");
    free(keep);
}

static void test_pipelined_not_consumed(void **state)
{
    struct http_request req;
    char *keep;
    size_t head = strlen(simple_req);
    char buf[sizeof simple_req + 16];

    memcpy(buf, simple_req, head);
    memcpy(buf + head, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f", 8); /* a masked frame */
    assert_int_equal(parse_copy(buf, head + 8, 0, &req, &keep), (int)head);
    free(keep);

    /* A second request pipelined behind the first is not looked at either. */
    const char *two = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    assert_int_equal(parse_copy(two, strlen(two), 0, &req, &keep), 28);
    assert_span(req.path, req.path_len, "/a");
    free(keep);

    /* Bytes after the head that look like a blank line do not matter. */
    const char *trail = "GET / HTTP/1.1\r\n\r\n\r\n\r\n";
    assert_int_equal(parse_str(trail), 18);
}

static void test_value_trimming(void **state)
{
    struct http_request req;
    char *keep;
    const char *s = "GET / HTTP/1.1\r\n"
                    "A:value\r\n"
                    "B:  \t spaced  out \t \r\n"
                    "C:\r\n"
                    "D: \t \r\n"
                    "E: in\tside\r\n"
                    "F: caf\xc3\xa9\r\n"
                    "\r\n";

    assert_int_equal(parse_copy(s, strlen(s), 0, &req, &keep), (int)strlen(s));
    assert_int_equal(req.nheaders, 6);
    assert_span(req.headers[0].value, req.headers[0].value_len, "value");
    assert_span(req.headers[1].value, req.headers[1].value_len, "spaced  out");
    assert_int_equal(req.headers[2].value_len, 0);
    assert_int_equal(req.headers[3].value_len, 0);
    assert_span(req.headers[4].value, req.headers[4].value_len, "in\tside");
    assert_span(req.headers[5].value, req.headers[5].value_len, "caf\xc3\xa9");
    free(keep);
}

static void test_find_and_count(void **state)
{
    struct http_request req;
    char *keep;
    const char *s = "GET / HTTP/1.1\r\n"
                    "host: one\r\n"
                    "X-A: 1\r\n"
                    "HOST: two\r\n"
                    "Sec-WebSocket-Protocol: a, b\r\n"
                    "sec-websocket-protocol: c\r\n"
                    "\r\n";

    assert_int_equal(parse_copy(s, strlen(s), 0, &req, &keep), (int)strlen(s));
    const struct http_header *h = http_find_header(&req, "Host");
    assert_non_null(h);
    assert_span(h->value, h->value_len, "one");
    assert_int_equal(http_count_headers(&req, "Host"), 2);
    assert_int_equal(http_count_headers(&req, "SEC-WEBSOCKET-PROTOCOL"), 2);
    assert_int_equal(http_count_headers(&req, "X-A"), 1);
    assert_int_equal(http_count_headers(&req, "X"), 0);
    assert_int_equal(http_count_headers(&req, "X-AB"), 0);
    assert_null(http_find_header(&req, "Origin"));
    assert_null(http_find_header(&req, "Hos"));
    free(keep);
}

static void test_list_has_token(void **state)
{
#define HAS(v, t) http_list_has_token(v, strlen(v), t)
    assert_true(HAS("Upgrade", "Upgrade"));
    assert_true(HAS("upgrade", "Upgrade"));
    assert_true(HAS("keep-alive, Upgrade", "upgrade"));
    assert_true(HAS("keep-alive,Upgrade", "upgrade"));
    assert_true(HAS("Upgrade, keep-alive", "upgrade"));
    assert_true(HAS(" \tUpgrade\t ", "upgrade"));
    assert_true(HAS("a,,  ,Upgrade,", "upgrade"));
    assert_true(HAS("WebSocket", "websocket"));
    assert_false(HAS("", "upgrade"));
    assert_false(HAS(",", "upgrade"));
    assert_false(HAS("keep-alive", "upgrade"));
    assert_false(HAS("Upgrade2", "upgrade"));
    assert_false(HAS("xUpgrade", "upgrade"));
    assert_false(HAS("Up grade", "upgrade"));
    assert_false(HAS("Upgrad", "upgrade"));
    assert_false(HAS("websocket/13", "websocket"));
    assert_false(HAS("a, b", ""));
#undef HAS
    /* The length bounds the list: no NUL needed, bytes beyond are ignored. */
    assert_false(http_list_has_token("keep-alive, Upgrade", 12, "upgrade"));
    assert_true(http_list_has_token("keep-alive, Upgrade, x", 19, "upgrade"));
}

static void test_bad_request_lines(void **state)
{
    static const char *const bad[] = {
        "GET  / HTTP/1.1\r\n\r\n",          /* two spaces */
        "GET /  HTTP/1.1\r\n\r\n",          /* two spaces */
        "GET / HTTP/1.1 \r\n\r\n",          /* trailing space */
        " GET / HTTP/1.1\r\n\r\n",          /* leading space */
        "GET\t/ HTTP/1.1\r\n\r\n",          /* tab separator */
        "GET /\r\n\r\n",                    /* HTTP/0.9 style */
        "GET / HTTP/1.1 x\r\n\r\n",         /* extra field */
        "GET HTTP/1.1\r\n\r\n",             /* no target */
        "GET  HTTP/1.1\r\n\r\n",            /* empty target */
        " / HTTP/1.1\r\n\r\n",              /* empty method */
        "G(T / HTTP/1.1\r\n\r\n",           /* non-token method */
        "GE\"T / HTTP/1.1\r\n\r\n",         /* non-token method */
        "GET /a\x01z HTTP/1.1\r\n\r\n",     /* control char in target */
        "GET /a\x7fz HTTP/1.1\r\n\r\n",     /* DEL in target */
        "GET /a\rz HTTP/1.1\r\n\r\n",       /* CR in target */
        "GET / HTTP/1\r\n\r\n",             /* no minor */
        "GET / HTTP/1.\r\n\r\n",            /* no minor */
        "GET / HTTP/1.10\r\n\r\n",          /* two-digit minor */
        "GET / HTTP/11.1\r\n\r\n",          /* two-digit major */
        "GET / HTTP/a.b\r\n\r\n",           /* letters */
        "GET / http/1.1\r\n\r\n",           /* lower case */
        "GET / HTTPS/1.1\r\n\r\n",          /* wrong protocol */
        "GET / HTTP/1.1\r\r\n\r\n",         /* CR CR LF */
        "GET / HTTP/1,1\r\n\r\n",           /* comma */
        "\r\nGET / HTTP/1.1\r\n\r\n",       /* leading empty line */
        "\r\n\r\n",                         /* nothing */
        "\x16\x03\x01\x02\x00\x01\x00\n\n", /* TLS ClientHello-ish */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        print_message("bad request line %zu\n", i);
        assert_int_equal(parse_str(bad[i]), HTTP_BAD);
    }
}

static void test_bad_headers(void **state)
{
    static const char *const bad[] = {
        "NoColon",             /* no colon */
        ": value",             /* empty name */
        "Na me: v",            /* space in name */
        "Name : v",            /* whitespace before colon */
        "Name\t: v",           /* tab before colon */
        "Na(me): v",           /* non-token char */
        "Na\"me: v",           /* non-token char */
        "N\x01: v",            /* control char in name */
        "X: a\x01z",           /* control char in value */
        "X: a\x7fz",           /* DEL in value */
        "X: a\rz",             /* bare CR in value */
        "X: v\r\n folded",     /* obs-fold with SP */
        "X: v\r\n\tfolded",    /* obs-fold with HTAB */
        "X: v\r\n  ",          /* whitespace-only line */
        "X: ok\r\nBad Header", /* second line bad */
    };
    static const char prefix[] = "GET / HTTP/1.1\r\nHost: h\r\n";
    char buf[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t blen = strlen(bad[i]);
        size_t n = 0;
        memcpy(buf, prefix, sizeof prefix - 1);
        n += sizeof prefix - 1;
        memcpy(buf + n, bad[i], blen);
        n += blen;
        memcpy(buf + n, "\r\n\r\n", 4);
        n += 4;
        struct http_request req;
        print_message("bad header %zu\n", i);
        assert_int_equal(parse_copy(buf, n, 0, &req, NULL), HTTP_BAD);
    }
}

static void test_nul_bytes(void **state)
{
    struct http_request req;
    static const char value[] = "GET / HTTP/1.1\r\nX: a\0z\r\n\r\n";
    static const char name[] = "GET / HTTP/1.1\r\nX\0Y: a\r\n\r\n";
    static const char target[] = "GET /a\0b HTTP/1.1\r\n\r\n";

    assert_int_equal(parse_copy(value, sizeof value - 1, 0, &req, NULL), HTTP_BAD);
    assert_int_equal(parse_copy(name, sizeof name - 1, 0, &req, NULL), HTTP_BAD);
    assert_int_equal(parse_copy(target, sizeof target - 1, 0, &req, NULL), HTTP_BAD);
}

static void test_bad_stays_partial_until_complete(void **state)
{
    /* A malformed header is only reported once the head is complete... */
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nNoColon\r\n"), HTTP_PARTIAL);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), HTTP_BAD);
    /* ...but bytes that cannot start a request line fail at once. */
    assert_int_equal(parse_str("\x16\x03\x01"), HTTP_BAD);
    assert_int_equal(parse_str(" GET"), HTTP_BAD);
    assert_int_equal(parse_str("\r\n"), HTTP_BAD);
    assert_int_equal(parse_str("GET"), HTTP_PARTIAL);
    assert_int_equal(parse_str(""), HTTP_PARTIAL);
}

static void test_method_and_versions(void **state)
{
    struct http_request req;
    char *keep;
    const char *s = "M-SEARCH * HTTP/2.0\r\n\r\n";

    assert_int_equal(parse_copy(s, strlen(s), 0, &req, &keep), (int)strlen(s));
    assert_span(req.method, req.method_len, "M-SEARCH");
    assert_span(req.path, req.path_len, "*");
    assert_int_equal(req.version_major, 2);
    assert_int_equal(req.version_minor, 0);
    free(keep);
    assert_int_equal(parse_str("get /x HTTP/1.0\r\n\r\n"), 19);
    assert_int_equal(parse_str("GET http://h/x%20y HTTP/1.1\r\n\r\n"), 31);
}

/* A head of exactly total bytes: request line, one X-Pad header filling the
 * rest, blank line. */
static char *make_head(size_t total, size_t *len)
{
    static const char start[] = "GET / HTTP/1.1\r\nX-Pad: ";
    static const char end[] = "\r\n\r\n";
    size_t fixed = sizeof start - 1 + sizeof end - 1;
    char *p = malloc(total);

    assert_non_null(p);
    assert_true(total > fixed);
    memcpy(p, start, sizeof start - 1);
    memset(p + sizeof start - 1, 'a', total - fixed);
    memcpy(p + total - (sizeof end - 1), end, sizeof end - 1);
    *len = total;
    return p;
}

static void test_size_boundary(void **state)
{
    struct http_request req;
    size_t len;
    char *p;

    /* Exactly HTTP_MAX_HEAD bytes: accepted, also when more bytes follow. */
    p = make_head(HTTP_MAX_HEAD, &len);
    assert_int_equal(parse_copy(p, len, 0, &req, NULL), HTTP_MAX_HEAD);
    assert_int_equal(parse_copy(p, len, len - 1, &req, NULL), HTTP_MAX_HEAD);
    assert_int_equal(req.headers[0].value_len, HTTP_MAX_HEAD - 27);
    assert_int_equal(parse_copy(p, len - 1, 0, &req, NULL), HTTP_PARTIAL);
    char *more = malloc(len + 100);
    assert_non_null(more);
    memcpy(more, p, len);
    memset(more + len, 'z', 100);
    assert_int_equal(parse_copy(more, len + 100, 0, &req, NULL), HTTP_MAX_HEAD);
    free(more);
    free(p);

    /* One byte more: too large as soon as HTTP_MAX_HEAD bytes are in hand. */
    p = make_head(HTTP_MAX_HEAD + 1, &len);
    assert_int_equal(parse_copy(p, len, 0, &req, NULL), HTTP_TOO_LARGE);
    assert_int_equal(parse_copy(p, len, len - 1, &req, NULL), HTTP_TOO_LARGE);
    assert_int_equal(parse_copy(p, HTTP_MAX_HEAD, 0, &req, NULL), HTTP_TOO_LARGE);
    assert_int_equal(parse_copy(p, HTTP_MAX_HEAD - 1, 0, &req, NULL), HTTP_PARTIAL);
    free(p);

    /* Bare-LF variant at exactly the limit. */
    p = make_head(HTTP_MAX_HEAD, &len);
    p[len - 4] = 'a';
    p[len - 3] = 'a';
    p[len - 2] = '\n';
    p[len - 1] = '\n';
    assert_int_equal(parse_copy(p, len, 0, &req, NULL), HTTP_MAX_HEAD);
    free(p);

    /* A long partial head under the limit stays partial; garbage that never
     * ends is too large. */
    p = make_head(HTTP_MAX_HEAD * 2, &len);
    assert_int_equal(parse_copy(p, HTTP_MAX_HEAD - 1, HTTP_MAX_HEAD - 2, &req, NULL), HTTP_PARTIAL);
    assert_int_equal(parse_copy(p, HTTP_MAX_HEAD * 2, 0, &req, NULL), HTTP_TOO_LARGE);
    assert_int_equal(parse_copy(p, HTTP_MAX_HEAD * 2, HTTP_MAX_HEAD * 2, &req, NULL),
                     HTTP_TOO_LARGE);
    free(p);
}

/* A head with n headers "H<i>: v". */
static char *make_headers(size_t n, size_t *len)
{
    size_t cap = 32 + n * 16, pos = 0;
    char *p = malloc(cap);

    assert_non_null(p);
    pos += (size_t)snprintf(p + pos, cap - pos, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++)
        pos += (size_t)snprintf(p + pos, cap - pos, "H%zu: v\r\n", i);
    pos += (size_t)snprintf(p + pos, cap - pos, "\r\n");
    *len = pos;
    return p;
}

static void test_too_many_headers(void **state)
{
    struct http_request req;
    size_t len;
    char *p;

    p = make_headers(HTTP_MAX_HEADERS, &len);
    assert_int_equal(parse_copy(p, len, 0, &req, NULL), (int)len);
    assert_int_equal(req.nheaders, HTTP_MAX_HEADERS);
    free(p);

    p = make_headers(HTTP_MAX_HEADERS + 1, &len);
    assert_int_equal(parse_copy(p, len, 0, &req, NULL), HTTP_TOO_LARGE);
    free(p);
}

static void test_prev_len_out_of_range(void **state)
{
    struct http_request req;
    size_t len = strlen(simple_req);

    /* A prev_len beyond the data cannot be a previous length: searched from 0. */
    assert_int_equal(parse_copy(simple_req, len, len + 1000, &req, NULL), (int)len);
}

static void test_reasons(void **state)
{
    static const struct {
        int code;
        const char *text;
    } want[] = {
        {101, "Switching Protocols"},
        {200, "OK"},
        {206, "Partial Content"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {426, "Upgrade Required"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_string_equal(http_reason(want[i].code), want[i].text);
    assert_non_null(http_reason(999));
    assert_non_null(http_reason(-1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_fields),
        cmocka_unit_test(test_no_query_and_empty_query),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_byte_by_byte_bare_lf),
        cmocka_unit_test(test_chunked_resume),
        cmocka_unit_test(test_bare_lf),
        cmocka_unit_test(test_pipelined_not_consumed),
        cmocka_unit_test(test_value_trimming),
        cmocka_unit_test(test_find_and_count),
        cmocka_unit_test(test_list_has_token),
        cmocka_unit_test(test_bad_request_lines),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_bad_stays_partial_until_complete),
        cmocka_unit_test(test_method_and_versions),
        cmocka_unit_test(test_size_boundary),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_prev_len_out_of_range),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
