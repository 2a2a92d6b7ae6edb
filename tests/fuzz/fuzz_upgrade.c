/* fuzz_upgrade.c - libFuzzer harness for the RFC 6455 server handshake
 * (src/upgrade.c) on top of the request parser and route matching.
 *
 * The input is a request head. When it parses, it is validated against two
 * configurations (routes with origins, wildcard origins and subprotocols; and a
 * "/" catch-all), and the response for the verdict is built into buffers of
 * several sizes. Checked for every input:
 *  - the status is one upgrade_validate may answer, with a reason exactly
 *    when it is not 101;
 *  - a 101 has the route config_match_route gives for the path, a 28-character
 *    Sec-WebSocket-Accept equal to upgrade_accept_key of the key, and a
 *    subprotocol that the route lists and the client offered (byte for byte);
 *  - the response builders never write past cap, return 0 or a length below
 *    cap, and a built response is a well-formed head whose Content-Length
 *    matches the body.
 * config_load_string resolves host names: getaddrinfo is wrapped (link with
 * -Wl,--wrap=getaddrinfo) so only numeric hosts and "localhost" resolve. */
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "config.h"
#include "http.h"
#include "upgrade.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
static const char main_ini[] =
    "[gateway]\n"
    "listen = 127.0.0.1:8080\n"
    "[route:vnc]\n"
    "path = /vnc\n"
    "backend = 127.0.0.1:5900\n"
    "subprotocols = binary, base64\n"
    "[route:telnet]\n"
    "path = /telnet/\n"
    "backend = 127.0.0.1:23\n"
    "[route:telnet-admin]\n"
    "path = /telnet/admin/\n"
    "backend = [::1]:23\n"
    "[route:secure]\n"
    "path = /secure\n"
    "backend = localhost:22\n"
    "allowed_origins = https://app.example.com, https://*.example.org\n"
    "allowed_origins = http://localhost:8080, https://*.example.net:8443, null\n"
    "subprotocols = binary, base64\n"
    "[route:pref]\n"
    "path = /pref\n"
    "backend = unix:/run/pref.sock\n"
    "subprotocols = base64, binary, chat.v2\n";

static const char catchall_ini[] = "[route:all]\n"
                                   "path = /\n"
                                   "backend = 127.0.0.1:1\n"
                                   "[route:vnc]\n"
                                   "path = /vnc\n"
                                   "backend = 127.0.0.1:2\n"
                                   "[route:app]\n"
                                   "path = /app/\n"
                                   "backend = 127.0.0.1:3\n"
                                   "allowed_origins = https://*.example.com\n";

static struct config *cfgs[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const texts[] = {main_ini, catchall_ini};
    char err[2048];

    for (size_t i = 0; i < 2; i++) {
        if (config_load_string("fuzz.ini", texts[i], &cfgs[i], err, sizeof err) != 0) {
            fprintf(stderr, "fuzz_upgrade: configuration %zu: %s\n", i, err);
            abort();
        }
    }
    return 0;
}

static int known_status(int st)
{
    switch (st) {
    case 101:
    case 400:
    case 403:
    case 404:
    case 405:
    case 426:
    case 500:
    case 505:
        return 1;
    default:
        return 0;
    }
}

/* True when some Sec-WebSocket-Protocol element equals proto exactly. */
/* The Host header value the route is chosen by (NULL when absent). */
static const char *host_of(const struct http_request *req)
{
    const struct http_header *h = http_find_header(req, "Host");
    return h != NULL ? h->value : NULL;
}

static size_t host_len(const struct http_request *req)
{
    const struct http_header *h = http_find_header(req, "Host");
    return h != NULL ? h->value_len : 0;
}

static int offered(const struct http_request *req, const char *proto)
{
    size_t plen = strlen(proto);

    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len != 22 || strncasecmp(h->name, "Sec-WebSocket-Protocol", 22) != 0)
            continue;
        for (size_t k = 0; k + plen <= h->value_len; k++) {
            if (memcmp(h->value + k, proto, plen) != 0)
                continue;
            size_t a = k, b = k + plen;
            while (a > 0 && (h->value[a - 1] == ' ' || h->value[a - 1] == '\t'))
                a--;
            while (b < h->value_len && (h->value[b] == ' ' || h->value[b] == '\t'))
                b++;
            if ((a == 0 || h->value[a - 1] == ',') && (b == h->value_len || h->value[b] == ','))
                return 1;
        }
    }
    return 0;
}

/* A response of n bytes in out (cap bytes, guarded) is a plausible head. */
static void check_response(const char *out, size_t n, size_t cap, int status)
{
    char line[32];

    CHECK(n < cap);
    CHECK(out[n] == '\0');
    CHECK(strlen(out) == n);
    snprintf(line, sizeof line, "HTTP/1.1 %d ", status);
    CHECK(strncmp(out, line, strlen(line)) == 0);
    const char *end = strstr(out, "\r\n\r\n");
    CHECK(end != NULL);
    size_t head = (size_t)(end - out) + 4;
    if (status == 101) {
        CHECK(head == n);
        return;
    }
    const char *cl = strstr(out, "\r\nContent-Length: ");
    CHECK(cl != NULL && cl < end);
    CHECK((size_t)strtoul(cl + 18, NULL, 10) == n - head);
    CHECK((strstr(out, "Sec-WebSocket-Version: 13\r\n") != NULL) == (status == 426));
}

/* Build the response into exact-size heap blocks of several caps: a
 * builder that writes past cap hits ASan. */
static void build_responses(const struct upgrade_result *res, size_t data_cap)
{
    size_t caps[] = {0, 1, 16, 96, 128, 160, 200, 256, 4096, data_cap};
    size_t full = 0;

    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        size_t cap = caps[i];
        char *out = malloc(cap ? cap : 1);
        CHECK(out != NULL);
        size_t n = res->status == 101 ? upgrade_response_101(res, out, cap)
                                      : upgrade_response_error(res->status, res->why, out, cap);
        if (n != 0) {
            check_response(out, n, cap, res->status);
            if (full != 0)
                CHECK(n == full);
            full = n;
        }
        free(out);
    }
    CHECK(full != 0); /* 4096 bytes always suffice */
}

static void check_verdict(const struct config *cfg, const struct http_request *req,
                          const struct upgrade_result *res, size_t data_cap)
{
    CHECK(known_status(res->status));
    CHECK((res->why == NULL) == (res->status == 101));
    if (res->status == 101) {
        const struct route *r =
            config_match_route(cfg, host_of(req), host_len(req), req->path, req->path_len);
        CHECK(r != NULL && r == res->route);
        CHECK(strlen(res->accept) == 28);
        const struct http_header *key = http_find_header(req, "Sec-WebSocket-Key");
        CHECK(key != NULL && key->value_len == 24);
        char accept[32];
        upgrade_accept_key(key->value, key->value_len, accept);
        CHECK(strcmp(accept, res->accept) == 0);
        CHECK(req->method_len == 3 && memcmp(req->method, "GET", 3) == 0);
        CHECK(req->version_major == 1 && req->version_minor == 1);
        if (res->subprotocol != NULL) {
            int listed = 0;
            for (size_t i = 0; i < r->nsubprotocols; i++)
                listed |= r->subprotocols[i] == res->subprotocol;
            CHECK(listed);
            CHECK(offered(req, res->subprotocol));
        }
    }
    if (res->status == 404)
        CHECK(config_match_route(cfg, host_of(req), host_len(req), req->path, req->path_len) ==
              NULL);
    build_responses(res, data_cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct http_request req;
    struct upgrade_result res;

    int head = http_parse_request((const char *)data, size, 0, &req);
    if (head <= 0)
        return 0;
    for (size_t i = 0; i < 2; i++) {
        memset(&res, 0xa5, sizeof res); /* upgrade_validate must set every field */
        upgrade_validate(cfgs[i], &req, &res);
        check_verdict(cfgs[i], &req, &res, size);
    }
    return 0;
}
