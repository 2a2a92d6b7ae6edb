/* test_upgrade.c - unit tests for the RFC 6455 handshake (src/upgrade.c) and
 * route matching (src/route.c). The configuration is built by hand here, so
 * these tests do not depend on config.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "upgrade.h"

/* ---- a hand-built configuration ---------------------------------------- */

static char *vnc_protos[] = {"binary", "base64"};
static char *pref_protos[] = {"base64", "binary", "chat.v2"};
static char *secure_origins[] = {"https://app.example.com", "https://*.example.org",
                                 "http://localhost:8080", "https://*.example.net:8443"};

enum { R_VNC, R_TELNET, R_TELNET_ADMIN, R_SECURE, R_PLAIN, R_PREF, R_NROUTES };

static struct route main_routes[] = {
    [R_VNC] = {.name = "vnc", .path = "/vnc", .subprotocols = vnc_protos, .nsubprotocols = 2},
    [R_TELNET] = {.name = "telnet", .path = "/telnet/", .prefix = true},
    [R_TELNET_ADMIN] = {.name = "telnet-admin", .path = "/telnet/admin/", .prefix = true},
    [R_SECURE] = {.name = "secure",
                  .path = "/secure",
                  .origins = secure_origins,
                  .norigins = 4,
                  .subprotocols = vnc_protos,
                  .nsubprotocols = 2},
    [R_PLAIN] = {.name = "plain", .path = "/plain"},
    [R_PREF] = {.name = "pref", .path = "/pref", .subprotocols = pref_protos, .nsubprotocols = 3},
};

static struct config main_cfg = {
    .refcount = 1,
    .file = "test",
    .routes = main_routes,
    .nroutes = R_NROUTES,
};

/* "/" catch-all listed first: longer routes still win. */
static struct route catchall_routes[] = {
    {.name = "all", .path = "/", .prefix = true},
    {.name = "vnc", .path = "/vnc"},
    {.name = "app", .path = "/app/", .prefix = true},
};

static struct config catchall_cfg = {
    .refcount = 1,
    .file = "test",
    .routes = catchall_routes,
    .nroutes = 3,
};

static struct config empty_cfg = {.refcount = 1, .file = "empty"};

/* ---- helpers ------------------------------------------------------------ */

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define H_HOST "Host: example.com\r\n"
#define H_UPGRADE "Upgrade: websocket\r\n"
#define H_CONN "Connection: Upgrade\r\n"
#define H_VERSION "Sec-WebSocket-Version: 13\r\n"
#define H_KEY "Sec-WebSocket-Key: " KEY "\r\n"
#define STD H_HOST H_UPGRADE H_CONN H_VERSION H_KEY

/* Parse head (which must be a complete, well-formed head) and validate it
 * against cfg; returns res->status. */
static int run(const struct config *cfg, const char *head, struct upgrade_result *res)
{
    struct http_request req;
    size_t len = strlen(head);
    char *copy = malloc(len);

    assert_non_null(copy);
    memcpy(copy, head, len);
    assert_int_equal(http_parse_request(copy, len, 0, &req), (int)len);
    memset(res, 0xa5, sizeof *res); /* validate must set every field */
    upgrade_validate(cfg, &req, res);
    free(copy);
    if (res->status != 101)
        assert_non_null(res->why);
    return res->status;
}

/* Status for "GET path HTTP/1.1" + STD + extra headers against main_cfg. */
static int status_for(const char *path, const char *extra, struct upgrade_result *res)
{
    char head[4096];
    int n = snprintf(head, sizeof head, "GET %s HTTP/1.1\r\n" STD "%s\r\n", path, extra);
    assert_true(n > 0 && (size_t)n < sizeof head);
    return run(&main_cfg, head, res);
}

/* ---- Sec-WebSocket-Accept ----------------------------------------------- */

static void test_accept_key(void **state)
{
    char out[29];

    upgrade_accept_key(KEY, strlen(KEY), out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    upgrade_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", 24, out);
    assert_string_equal(out, "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
    /* Only key_len bytes are used. */
    upgrade_accept_key("x3JJHMbDL1EzLkh9GBhXDw==garbage", 24, out);
    assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_success(void **state)
{
    struct upgrade_result res;

    assert_int_equal(status_for("/vnc", "", &res), 101);
    assert_ptr_equal(res.route, &main_routes[R_VNC]);
    assert_null(res.subprotocol);
    assert_null(res.why);
    assert_string_equal(res.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    /* Header names in any case, values with extra list members. */
    assert_int_equal(run(&main_cfg,
                         "GET /vnc HTTP/1.1\r\n"
                         "HOST: h\r\n"
                         "upgrade: WebSocket\r\n"
                         "connection: keep-alive, upgrade\r\n"
                         "sec-websocket-version: 13\r\n"
                         "SEC-WEBSOCKET-KEY: " KEY "\r\n"
                         "\r\n",
                         &res),
                     101);
    assert_string_equal(res.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* ---- validation order ---------------------------------------------------- */

/* A request wrong in every way; fixing one fault at a time reveals the next
 * status in the contract order. */
static void test_order(void **state)
{
    static const struct {
        const char *head;
        int status;
    } steps[] = {
        {"POST /secure HTTP/1.0\r\n"
         "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
         405},
        {"GET /secure HTTP/1.0\r\n"
         "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
         505},
        {"GET /secure HTTP/1.1\r\n"
         "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
         400}, /* Host */
        {"GET /secure HTTP/1.1\r\n" H_HOST
         "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
         400}, /* Upgrade */
        {"GET /secure HTTP/1.1\r\n" H_HOST H_UPGRADE
         "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
         400}, /* Connection */
        {"GET /secure HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN
         "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
         426},
        {"GET /nowhere HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_VERSION
         "Sec-WebSocket-Protocol: chat\r\n\r\n",
         400}, /* key */
        {"GET /nowhere HTTP/1.1\r\n" STD "Sec-WebSocket-Protocol: chat\r\n\r\n", 404},
        {"GET /secure HTTP/1.1\r\n" STD "Sec-WebSocket-Protocol: chat\r\n\r\n", 403},
        {"GET /secure HTTP/1.1\r\n" STD "Origin: https://app.example.com\r\n"
         "Sec-WebSocket-Protocol: chat\r\n\r\n",
         400}, /* subprotocol */
        {"GET /secure HTTP/1.1\r\n" STD "Origin: https://app.example.com\r\n"
         "Sec-WebSocket-Protocol: chat, binary\r\n\r\n",
         101},
    };
    static const char *const why[] = {
        "method not allowed",
        "HTTP/1.1 required",
        "missing Host header",
        "missing Upgrade: websocket",
        "missing Connection: Upgrade",
        "unsupported Sec-WebSocket-Version",
        "missing Sec-WebSocket-Key",
        "no route for path",
        "missing Origin header",
        "no acceptable subprotocol",
        NULL,
    };
    struct upgrade_result res;

    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        print_message("step %zu\n", i);
        assert_int_equal(run(&main_cfg, steps[i].head, &res), steps[i].status);
        if (why[i] != NULL)
            assert_string_equal(res.why, why[i]);
        else
            assert_null(res.why);
    }
    assert_string_equal(res.subprotocol, "binary");
}

static void test_method(void **state)
{
    static const char *const methods[] = {"POST", "HEAD", "get", "Get", "PUT", "OPTIONS", "GETX"};
    struct upgrade_result res;
    char head[512];

    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        snprintf(head, sizeof head, "%s /vnc HTTP/1.1\r\n" STD "\r\n", methods[i]);
        assert_int_equal(run(&main_cfg, head, &res), 405);
        assert_null(res.route);
    }
}

static void test_version(void **state)
{
    static const char *const versions[] = {"1.0", "2.0", "1.2", "0.9", "3.1"};
    struct upgrade_result res;
    char head[512];

    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        snprintf(head, sizeof head, "GET /vnc HTTP/%s\r\n" STD "\r\n", versions[i]);
        assert_int_equal(run(&main_cfg, head, &res), 505);
    }
}

static void test_host(void **state)
{
    struct upgrade_result res;

    assert_int_equal(
        run(&main_cfg, "GET /vnc HTTP/1.1\r\n" H_UPGRADE H_CONN H_VERSION H_KEY "\r\n", &res), 400);
    assert_string_equal(res.why, "missing Host header");
    assert_int_equal(status_for("/vnc", "Host: other\r\n", &res), 400);
    assert_string_equal(res.why, "duplicate Host header");
    assert_int_equal(run(&main_cfg,
                         "GET /vnc HTTP/1.1\r\nHost:\r\n" H_UPGRADE H_CONN H_VERSION H_KEY "\r\n",
                         &res),
                     400);
}

static void test_upgrade_connection_tokens(void **state)
{
    static const struct {
        const char *upgrade, *connection;
        int status;
    } cases[] = {
        {"websocket", "Upgrade", 101},
        {"WebSocket", "upgrade", 101},
        {"websocket", "keep-alive, Upgrade", 101},
        {"h2c, websocket", "Upgrade,keep-alive", 101},
        {"websocket", "keep-alive", 400},
        {"websocket", "Upgrade2", 400},
        {"websockets", "Upgrade", 400},
        {"h2c", "Upgrade", 400},
        {"", "Upgrade", 400},
        {"websocket", "", 400},
        {"websocket/13", "Upgrade", 400},
    };
    struct upgrade_result res;
    char head[512];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(head, sizeof head,
                 "GET /vnc HTTP/1.1\r\n" H_HOST "Upgrade: %s\r\nConnection: %s\r\n" H_VERSION H_KEY
                 "\r\n",
                 cases[i].upgrade, cases[i].connection);
        print_message("case %zu\n", i);
        assert_int_equal(run(&main_cfg, head, &res), cases[i].status);
    }

    /* Tokens spread over repeated headers count. */
    assert_int_equal(run(&main_cfg,
                         "GET /vnc HTTP/1.1\r\n" H_HOST H_UPGRADE
                         "Connection: keep-alive\r\nConnection: Upgrade\r\n" H_VERSION H_KEY "\r\n",
                         &res),
                     101);
    /* Missing headers. */
    assert_int_equal(
        run(&main_cfg, "GET /vnc HTTP/1.1\r\n" H_HOST H_CONN H_VERSION H_KEY "\r\n", &res), 400);
    assert_string_equal(res.why, "missing Upgrade: websocket");
    assert_int_equal(
        run(&main_cfg, "GET /vnc HTTP/1.1\r\n" H_HOST H_UPGRADE H_VERSION H_KEY "\r\n", &res), 400);
    assert_string_equal(res.why, "missing Connection: Upgrade");
}

static void test_ws_version(void **state)
{
    static const struct {
        const char *value;
        int status;
    } cases[] = {
        {"13", 101},    {"  13  ", 101}, {"8", 426},   {"12", 426}, {"013", 426},
        {"13, 8", 426}, {"8, 13", 426},  {"13,", 426}, {"", 426},   {"1 3", 426},
    };
    struct upgrade_result res;
    char head[512];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(head, sizeof head,
                 "GET /vnc HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN
                 "Sec-WebSocket-Version: %s\r\n" H_KEY "\r\n",
                 cases[i].value);
        print_message("case %zu\n", i);
        assert_int_equal(run(&main_cfg, head, &res), cases[i].status);
    }
    assert_int_equal(
        run(&main_cfg, "GET /vnc HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY "\r\n", &res), 426);
    assert_string_equal(res.why, "missing Sec-WebSocket-Version");
    /* Two headers are a list: not allowed even when both say 13. */
    assert_int_equal(status_for("/vnc", "Sec-WebSocket-Version: 13\r\n", &res), 426);
}

static void test_ws_key(void **state)
{
    static const struct {
        const char *value;
        int status;
    } cases[] = {
        {KEY, 101},
        {"AAAAAAAAAAAAAAAAAAAAAA==", 101},
        {"+/+/+/+/+/+/+/+/+/+/+w==", 101},
        {"dGhlIHNhbXBsZSBub25jZQ=", 400},      /* 23 chars */
        {"dGhlIHNhbXBsZSBub25jZQ===", 400},    /* 25 chars */
        {"dGhlIHNhbXBsZSBub25jZQ", 400},       /* no padding */
        {"dGhlIHNhbXBsZSBub25jZQA", 400},      /* 24 chars, no padding */
        {"dGhlIHNhbXBsZSBub25jZQA=", 400},     /* 17 bytes */
        {"dGhlIHNhbXBsZSBub25jZ===", 400},     /* '=' too early */
        {"dGhlIHNhbXBsZSBub2=jZQ==", 400},     /* '=' inside */
        {"dGhlIHNhbXBsZSBub25jZ!==", 400},     /* bad alphabet */
        {"dGhlIHNhbXBsZSBub25jZ-==", 400},     /* base64url alphabet */
        {"dGhlIHNhbXBsZSBub25j Q==", 400},     /* space inside */
        {"dGhlIHNhbXBsZSBub25jZQ==dGhl", 400}, /* too long */
        {"", 400},
    };
    struct upgrade_result res;
    char head[512];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(head, sizeof head,
                 "GET /vnc HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_VERSION
                 "Sec-WebSocket-Key: %s\r\n\r\n",
                 cases[i].value);
        print_message("case %zu\n", i);
        assert_int_equal(run(&main_cfg, head, &res), cases[i].status);
        if (cases[i].status == 400)
            assert_string_equal(res.why, "invalid Sec-WebSocket-Key");
    }
    assert_int_equal(
        run(&main_cfg, "GET /vnc HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_VERSION "\r\n", &res),
        400);
    assert_string_equal(res.why, "missing Sec-WebSocket-Key");
    assert_int_equal(status_for("/vnc", H_KEY, &res), 400);
    assert_string_equal(res.why, "duplicate Sec-WebSocket-Key");
    assert_int_equal(status_for("/vnc", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n", &res),
                     400);
    assert_string_equal(res.why, "duplicate Sec-WebSocket-Key");
}

/* ---- routes ------------------------------------------------------------- */

static const char *match(const struct config *c, const char *path)
{
    const struct route *r = config_match_route(c, NULL, 0, path, strlen(path));
    return r != NULL ? r->name : NULL;
}

static struct route host_routes[] = {
    {.name = "any", .path = "/x"},
    {.name = "a", .path = "/x", .host = "a.test"},
    {.name = "wild", .path = "/x", .host = "*.test"},
};
static struct config host_cfg = {
    .refcount = 1, .file = "hosts", .routes = host_routes, .nroutes = 3};

/* The Host header chooses among routes with the same path. */
static void test_route_host_header(void **state)
{
    struct upgrade_result res;
    const char *tail = H_UPGRADE H_CONN H_VERSION H_KEY "\r\n";
    static const struct {
        const char *host, *route;
    } cases[] = {
        {"a.test", "a"},      {"A.TEST:8080", "a"},   {"a.test.", "a"},      {"b.a.test", "wild"},
        {"b.test:1", "wild"}, {"example.com", "any"}, {"[::1]:8080", "any"}, {"a.test:x", "any"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char head[512];
        snprintf(head, sizeof head, "GET /x HTTP/1.1\r\nHost: %s\r\n%s", cases[i].host, tail);
        assert_int_equal(run(&host_cfg, head, &res), 101);
        assert_string_equal(res.route->name, cases[i].route);
    }
    /* a host route alone: another host gets 404 */
    struct config only = {.refcount = 1, .file = "only", .routes = &host_routes[1], .nroutes = 1};
    char head[512];
    snprintf(head, sizeof head, "GET /x HTTP/1.1\r\nHost: b.test\r\n%s", tail);
    assert_int_equal(run(&only, head, &res), 404);
    assert_null(res.route);
}

static void test_route_exact(void **state)
{
    assert_string_equal(match(&main_cfg, "/vnc"), "vnc");
    assert_null(match(&main_cfg, "/vnc/"));
    assert_null(match(&main_cfg, "/vnc/x"));
    assert_null(match(&main_cfg, "/vncx"));
    assert_null(match(&main_cfg, "/vn"));
    assert_null(match(&main_cfg, "/VNC"));
    assert_null(match(&main_cfg, "vnc"));
    assert_null(match(&main_cfg, ""));
    assert_null(match(&main_cfg, "/"));
    /* The length bounds the path: no NUL needed. */
    const struct route *r = config_match_route(&main_cfg, NULL, 0, "/vnc?token=x", 4);
    assert_non_null(r);
    assert_string_equal(r->name, "vnc");
}

static void test_route_prefix(void **state)
{
    assert_string_equal(match(&main_cfg, "/telnet"), "telnet");
    assert_string_equal(match(&main_cfg, "/telnet/"), "telnet");
    assert_string_equal(match(&main_cfg, "/telnet/x"), "telnet");
    assert_string_equal(match(&main_cfg, "/telnet/x/y/z"), "telnet");
    assert_null(match(&main_cfg, "/telnetx"));
    assert_null(match(&main_cfg, "/telne"));
    /* Longest match wins. */
    assert_string_equal(match(&main_cfg, "/telnet/admin"), "telnet-admin");
    assert_string_equal(match(&main_cfg, "/telnet/admin/"), "telnet-admin");
    assert_string_equal(match(&main_cfg, "/telnet/admin/x"), "telnet-admin");
    assert_string_equal(match(&main_cfg, "/telnet/adminx"), "telnet");
    assert_string_equal(match(&main_cfg, "/telnet/admi"), "telnet");
}

static void test_route_catchall(void **state)
{
    assert_string_equal(match(&catchall_cfg, "/"), "all");
    assert_string_equal(match(&catchall_cfg, "/anything"), "all");
    assert_string_equal(match(&catchall_cfg, "/a/b/c"), "all");
    assert_string_equal(match(&catchall_cfg, "/vnc"), "vnc");
    assert_string_equal(match(&catchall_cfg, "/vnc/"), "all");
    assert_string_equal(match(&catchall_cfg, "/app"), "app");
    assert_string_equal(match(&catchall_cfg, "/app/x"), "app");
    assert_string_equal(match(&catchall_cfg, "/apps"), "all");
    assert_string_equal(match(&catchall_cfg, ""), "all");
    assert_null(match(&empty_cfg, "/"));
    assert_null(match(&empty_cfg, "/vnc"));
}

static void test_route_in_handshake(void **state)
{
    struct upgrade_result res;

    /* The query string is ignored for matching. */
    assert_int_equal(status_for("/vnc?token=abc", "", &res), 101);
    assert_ptr_equal(res.route, &main_routes[R_VNC]);
    assert_int_equal(status_for("/telnet/admin/x?y=1", "", &res), 101);
    assert_ptr_equal(res.route, &main_routes[R_TELNET_ADMIN]);
    assert_int_equal(status_for("/telnet?", "", &res), 101);
    assert_ptr_equal(res.route, &main_routes[R_TELNET]);

    /* 404, and the reason never carries the query (it may hold a secret). */
    assert_int_equal(status_for("/nope?token=s3cr3t", "", &res), 404);
    assert_null(res.route);
    assert_null(strstr(res.why, "s3cr3t"));
    assert_null(strstr(res.why, "token"));
    assert_int_equal(status_for("/vnc/?token=s3cr3t", "", &res), 404);
    assert_null(strstr(res.why, "s3cr3t"));
    assert_int_equal(status_for("/?x", "", &res), 404);

    assert_int_equal(run(&catchall_cfg, "GET /whatever?x=1 HTTP/1.1\r\n" STD "\r\n", &res), 101);
    assert_ptr_equal(res.route, &catchall_routes[0]);
    assert_int_equal(run(&empty_cfg, "GET / HTTP/1.1\r\n" STD "\r\n", &res), 404);
}

/* ---- Origin -------------------------------------------------------------- */

static int origin_status(const char *origin, struct upgrade_result *res)
{
    char extra[512];
    snprintf(extra, sizeof extra, "Origin: %s\r\n", origin);
    return status_for("/secure", extra, res);
}

static void test_origin(void **state)
{
    static const struct {
        const char *origin;
        int status;
    } cases[] = {
        /* exact, case-insensitive */
        {"https://app.example.com", 101},
        {"HTTPS://APP.Example.COM", 101},
        {"http://localhost:8080", 101},
        {"https://app.example.com:443", 403},
        {"http://app.example.com", 403},
        {"https://app.example.com/", 403},
        {"https://app.example.co", 403},
        {"https://x.app.example.com", 403},
        {"http://localhost", 403},
        {"http://localhost:80800", 403},
        {"https://evil.com", 403},
        {"null", 403},
        {"", 403},
        /* wildcard: any depth, not the domain itself, same scheme and port */
        {"https://a.example.org", 101},
        {"https://a.b.c.example.org", 101},
        {"https://A-1.Example.ORG", 101},
        {"https://example.org", 403},
        {"https://.example.org", 403},
        {"https://a..example.org", 403},
        {"https://evilexample.org", 403},
        {"http://a.example.org", 403},
        {"http://ab.example.org", 403}, /* as long as "https://a.example.org" */
        {"wss://a.example.org", 403},
        {"https://a.example.org:8443", 403},
        {"https://a.example.org.evil.com", 403},
        {"https://evil.com/.example.org", 403},
        {"https://user@a.example.org", 403},
        {"https://a.example.org/", 403},
        {"https://a.example.net:8443", 101},
        {"https://a.b.example.net:8443", 101},
        {"https://a.example.net", 403},
        {"https://a.example.net:8444", 403},
        {"https://example.net:8443", 403},
    };
    struct upgrade_result res;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("case %zu %s\n", i, cases[i].origin);
        assert_int_equal(origin_status(cases[i].origin, &res), cases[i].status);
        assert_ptr_equal(res.route, &main_routes[R_SECURE]);
        if (cases[i].status == 403)
            assert_string_equal(res.why, "origin not allowed");
    }

    /* Missing or duplicate Origin with an allow-list. */
    assert_int_equal(status_for("/secure", "", &res), 403);
    assert_string_equal(res.why, "missing Origin header");
    assert_int_equal(status_for("/secure",
                                "Origin: https://app.example.com\r\n"
                                "Origin: https://app.example.com\r\n",
                                &res),
                     403);

    /* No allow-list: any Origin, or none. */
    assert_int_equal(status_for("/vnc", "Origin: https://evil.com\r\n", &res), 101);
    assert_int_equal(status_for("/vnc", "", &res), 101);
}

/* ---- subprotocols -------------------------------------------------------- */

static const char *chosen(const char *path, const char *extra, int want_status)
{
    static struct upgrade_result res;
    assert_int_equal(status_for(path, extra, &res), want_status);
    return res.subprotocol;
}

static void test_subprotocols(void **state)
{
    /* Route "vnc" accepts "binary, base64" in that preference order. */
    assert_null(chosen("/vnc", "", 101));
    assert_string_equal(chosen("/vnc", "Sec-WebSocket-Protocol: binary\r\n", 101), "binary");
    assert_string_equal(chosen("/vnc", "Sec-WebSocket-Protocol: base64\r\n", 101), "base64");
    assert_string_equal(chosen("/vnc", "Sec-WebSocket-Protocol: base64, binary\r\n", 101),
                        "binary");
    assert_string_equal(chosen("/vnc", "Sec-WebSocket-Protocol: chat, base64\r\n", 101), "base64");
    /* The choice points into the route configuration. */
    assert_ptr_equal(chosen("/vnc", "Sec-WebSocket-Protocol: binary\r\n", 101), vnc_protos[0]);

    /* Route "pref" prefers base64. */
    assert_string_equal(chosen("/pref", "Sec-WebSocket-Protocol: binary, base64\r\n", 101),
                        "base64");
    assert_string_equal(chosen("/pref", "Sec-WebSocket-Protocol: chat.v2, binary\r\n", 101),
                        "binary");
    assert_string_equal(chosen("/pref", "Sec-WebSocket-Protocol: chat.v2\r\n", 101), "chat.v2");

    /* Several headers, each a list. */
    assert_string_equal(chosen("/vnc",
                               "Sec-WebSocket-Protocol: chat\r\n"
                               "Sec-WebSocket-Protocol: base64\r\n",
                               101),
                        "base64");
    assert_string_equal(chosen("/vnc",
                               "Sec-WebSocket-Protocol: base64, chat\r\n"
                               "sec-websocket-protocol: x, binary\r\n",
                               101),
                        "binary");
    assert_string_equal(chosen("/pref",
                               "Sec-WebSocket-Protocol: binary\r\n"
                               "Sec-WebSocket-Protocol: base64\r\n",
                               101),
                        "base64");

    /* Offered but none accepted -> 400. Names are case-sensitive (the chosen
     * one is echoed and must equal what the client sent). */
    assert_null(chosen("/vnc", "Sec-WebSocket-Protocol: chat\r\n", 400));
    assert_null(chosen("/vnc", "Sec-WebSocket-Protocol: BINARY\r\n", 400));
    assert_null(chosen("/vnc", "Sec-WebSocket-Protocol: binary64, bin\r\n", 400));
    /* A route that accepts none. */
    assert_null(chosen("/plain", "Sec-WebSocket-Protocol: binary\r\n", 400));
    assert_null(chosen("/plain", "", 101));
    /* An empty header offers nothing. */
    assert_null(chosen("/vnc", "Sec-WebSocket-Protocol:\r\n", 101));
    assert_null(chosen("/vnc", "Sec-WebSocket-Protocol: , \r\n", 101));
}

/* ---- responses ------------------------------------------------------------ */

static void test_response_101(void **state)
{
    struct upgrade_result res;
    char out[512];
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "\r\n";
    static const char want_proto[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                     "Upgrade: websocket\r\n"
                                     "Connection: Upgrade\r\n"
                                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                     "Sec-WebSocket-Protocol: base64\r\n"
                                     "\r\n";

    assert_int_equal(status_for("/vnc", "", &res), 101);
    size_t n = upgrade_response_101(&res, out, sizeof out);
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    /* Too small -> 0; just enough (with the NUL) works. */
    assert_int_equal(upgrade_response_101(&res, out, sizeof want - 1), 0);
    assert_int_equal(upgrade_response_101(&res, out, 0), 0);
    assert_int_equal(upgrade_response_101(&res, out, sizeof want), sizeof want - 1);

    assert_int_equal(status_for("/vnc", "Sec-WebSocket-Protocol: base64\r\n", &res), 101);
    n = upgrade_response_101(&res, out, sizeof out);
    assert_int_equal(n, sizeof want_proto - 1);
    assert_memory_equal(out, want_proto, n);
}

static void check_error(int status, const char *why, const char *want)
{
    char out[1024];
    size_t n = upgrade_response_error(status, why, out, sizeof out);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    /* Content-Length matches the body. */
    const char *body = strstr(out, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    const char *cl = strstr(out, "Content-Length: ");
    assert_non_null(cl);
    assert_int_equal(strtoul(cl + 16, NULL, 10), n - (size_t)(body - out));
    /* Too small -> 0. */
    assert_int_equal(upgrade_response_error(status, why, out, n), 0);
    assert_int_equal(upgrade_response_error(status, why, out, n + 1), n);
}

static void test_response_error(void **state)
{
    check_error(400, "no acceptable subprotocol",
                "HTTP/1.1 400 Bad Request\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: 43\r\n"
                "Connection: close\r\n"
                "\r\n"
                "400 Bad Request: no acceptable subprotocol\n");
    check_error(426, "unsupported Sec-WebSocket-Version",
                "HTTP/1.1 426 Upgrade Required\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: 56\r\n"
                "Connection: close\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                "\r\n"
                "426 Upgrade Required: unsupported Sec-WebSocket-Version\n");
    check_error(404, NULL,
                "HTTP/1.1 404 Not Found\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: 14\r\n"
                "Connection: close\r\n"
                "\r\n"
                "404 Not Found\n");
    check_error(503, "too many connections",
                "HTTP/1.1 503 Service Unavailable\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: 46\r\n"
                "Connection: close\r\n"
                "\r\n"
                "503 Service Unavailable: too many connections\n");
}

/* Every failure of upgrade_validate produces a well-formed error response. */
static void test_validate_then_respond(void **state)
{
    struct upgrade_result res;
    char out[1024];

    assert_int_equal(status_for("/nope?token=s3cr3t", "", &res), 404);
    size_t n = upgrade_response_error(res.status, res.why, out, sizeof out);
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(strstr(out, "HTTP/1.1 404 Not Found\r\n"));
    assert_non_null(strstr(out, "\r\n\r\n404 Not Found: no route for path\n"));
    assert_null(strstr(out, "s3cr3t"));
}

/* A 405 says which method is allowed (RFC 9110 15.5.6). */
static void test_405_allow(void **state)
{
    char out[512];
    (void)state;
    size_t n = upgrade_response_error(405, "method not allowed", out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(strstr(out, "\r\nAllow: GET\r\n"));
    n = upgrade_response_error(400, "x", out, sizeof(out));
    out[n] = '\0';
    assert_null(strstr(out, "Allow:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_405_allow),
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_method),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_upgrade_connection_tokens),
        cmocka_unit_test(test_ws_version),
        cmocka_unit_test(test_ws_key),
        cmocka_unit_test(test_route_exact),
        cmocka_unit_test(test_route_host_header),
        cmocka_unit_test(test_route_prefix),
        cmocka_unit_test(test_route_catchall),
        cmocka_unit_test(test_route_in_handshake),
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_subprotocols),
        cmocka_unit_test(test_response_101),
        cmocka_unit_test(test_response_error),
        cmocka_unit_test(test_validate_then_respond),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
