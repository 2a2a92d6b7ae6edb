/* upgrade.c - RFC 6455 section 4.2 server handshake: validation and responses.
 * Pure apart from OpenSSL's SHA-1 and base64. Every failure text is a static
 * string and never echoes request bytes (a query string may carry a secret). */
#include "upgrade.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* True when a[0..n) equals b[0..n) ignoring ASCII case. */
static bool ascii_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return false;
    return true;
}

static bool is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* True when any header named name has token in its comma list
 * (case-insensitive). Repeated headers count as one combined list. */
static bool any_header_has_token(const struct http_request *req, const char *name,
                                 const char *token)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == n && ascii_ieq(h->name, name, n) &&
            http_list_has_token(h->value, h->value_len, token))
            return true;
    }
    return false;
}

/* A Sec-WebSocket-Key is the base64 of exactly 16 bytes: 22 alphabet
 * characters and "==". */
static bool valid_key(const char *k, size_t len)
{
    if (len != 24 || k[22] != '=' || k[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64_char((unsigned char)k[i]))
            return false;
    return true;
}

/* A byte allowed in a host name matched by a wildcard origin. */
static bool is_host_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

/* True when the request origin o[0..olen) matches the configured pattern p:
 * an exact origin (case-insensitive), or a wildcard (scheme, "://", "*.domain[:port]"), which
 * matches one or more labels under domain with the same scheme and port, but
 * not domain itself. */
static bool origin_matches(const char *p, const char *o, size_t olen)
{
    size_t plen = strlen(p);
    const char *sep = strstr(p, "://*.");

    if (sep == NULL)
        return plen == olen && ascii_ieq(p, o, olen);

    size_t scheme_len = (size_t)(sep - p) + 3; /* "https://" */
    const char *suffix = sep + 4;              /* ".example.com[:port]" */
    size_t suffix_len = strlen(suffix);
    if (olen < scheme_len + 1 + suffix_len || !ascii_ieq(p, o, scheme_len) ||
        !ascii_ieq(o + olen - suffix_len, suffix, suffix_len))
        return false;

    /* The labels the '*' stands for: non-empty, host characters only, no
     * empty label (so nothing like "a..example.com" or "user@host"). */
    const char *lab = o + scheme_len;
    size_t lab_len = olen - scheme_len - suffix_len;
    if (lab[0] == '.' || lab[lab_len - 1] == '.')
        return false;
    for (size_t i = 0; i < lab_len; i++) {
        if (!is_host_char((unsigned char)lab[i]))
            return false;
        if (lab[i] == '.' && i + 1 < lab_len && lab[i + 1] == '.')
            return false;
    }
    return true;
}

/* True when the client offered protocol proto in any Sec-WebSocket-Protocol
 * header. Subprotocol names compare case-sensitively: the one chosen is echoed
 * and the client checks it against what it sent. */
static bool client_offered(const struct http_request *req, const char *proto)
{
    static const char name[] = "Sec-WebSocket-Protocol";
    size_t plen = strlen(proto);

    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len != sizeof name - 1 || !ascii_ieq(h->name, name, h->name_len))
            continue;
        size_t k = 0;
        while (k < h->value_len) {
            size_t start = k;
            while (k < h->value_len && h->value[k] != ',')
                k++;
            size_t end = k;
            while (start < end && is_ows(h->value[start]))
                start++;
            while (end > start && is_ows(h->value[end - 1]))
                end--;
            if (plen > 0 && end - start == plen && memcmp(h->value + start, proto, plen) == 0)
                return true;
            k++;
        }
    }
    return false;
}

/* True when some Sec-WebSocket-Protocol header holds a non-empty element. */
static bool client_offers_any(const struct http_request *req)
{
    static const char name[] = "Sec-WebSocket-Protocol";

    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len != sizeof name - 1 || !ascii_ieq(h->name, name, h->name_len))
            continue;
        for (size_t k = 0; k < h->value_len; k++)
            if (h->value[k] != ',' && !is_ows(h->value[k]))
                return true;
    }
    return false;
}

/* Record a failure; returns status for "return fail(...)" in check(). */
static int fail(struct upgrade_result *res, int status, const char *why)
{
    res->why = why;
    return status;
}

/* The checks of upgrade_validate in contract order; returns the status. */
static int check(const struct config *cfg, const struct http_request *req,
                 struct upgrade_result *res)
{
    const struct http_header *h;

    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0)
        return fail(res, 405, "method not allowed");
    if (req->version_major != 1 || req->version_minor != 1)
        return fail(res, 505, "HTTP/1.1 required");

    size_t nhost = http_count_headers(req, "Host");
    if (nhost == 0)
        return fail(res, 400, "missing Host header");
    if (nhost > 1)
        return fail(res, 400, "duplicate Host header");
    if (http_find_header(req, "Host")->value_len == 0)
        return fail(res, 400, "empty Host header");

    if (!any_header_has_token(req, "Upgrade", "websocket"))
        return fail(res, 400, "missing Upgrade: websocket");
    if (!any_header_has_token(req, "Connection", "Upgrade"))
        return fail(res, 400, "missing Connection: Upgrade");

    h = http_find_header(req, "Sec-WebSocket-Version");
    if (h == NULL)
        return fail(res, 426, "missing Sec-WebSocket-Version");
    if (http_count_headers(req, "Sec-WebSocket-Version") != 1 || h->value_len != 2 ||
        memcmp(h->value, "13", 2) != 0)
        return fail(res, 426, "unsupported Sec-WebSocket-Version");

    size_t nkey = http_count_headers(req, "Sec-WebSocket-Key");
    if (nkey == 0)
        return fail(res, 400, "missing Sec-WebSocket-Key");
    if (nkey > 1)
        return fail(res, 400, "duplicate Sec-WebSocket-Key");
    const struct http_header *key = http_find_header(req, "Sec-WebSocket-Key");
    if (!valid_key(key->value, key->value_len))
        return fail(res, 400, "invalid Sec-WebSocket-Key");

    const struct http_header *host = http_find_header(req, "Host");
    const struct route *r =
        config_match_route(cfg, host->value, host->value_len, req->path, req->path_len);
    if (r == NULL)
        return fail(res, 404, "no route for path");
    res->route = r;

    if (r->norigins > 0) {
        size_t norigin = http_count_headers(req, "Origin");
        if (norigin == 0)
            return fail(res, 403, "missing Origin header");
        if (norigin > 1)
            return fail(res, 403, "duplicate Origin header");
        h = http_find_header(req, "Origin");
        bool ok = false;
        for (size_t i = 0; i < r->norigins && !ok; i++)
            ok = origin_matches(r->origins[i], h->value, h->value_len);
        if (!ok)
            return fail(res, 403, "origin not allowed");
    }

    if (client_offers_any(req)) {
        for (size_t i = 0; i < r->nsubprotocols && res->subprotocol == NULL; i++)
            if (client_offered(req, r->subprotocols[i]))
                res->subprotocol = r->subprotocols[i];
        if (res->subprotocol == NULL)
            return fail(res, 400, "no acceptable subprotocol");
    }

    upgrade_accept_key(key->value, key->value_len, res->accept);
    if (res->accept[0] == '\0')
        return fail(res, 500, "cannot compute Sec-WebSocket-Accept");
    return 101;
}

/* Contract in upgrade.h. res->why is a static string (NULL on success);
 * res->route is also set on failures found after the route was chosen
 * (403, subprotocol 400) so the caller can label them. */
void upgrade_validate(const struct config *cfg, const struct http_request *req,
                      struct upgrade_result *res)
{
    res->why = NULL;
    res->route = NULL;
    res->subprotocol = NULL;
    res->accept[0] = '\0';
    res->extensions = NULL;
    res->status = check(cfg, req, res);
}

/* Contract in upgrade.h. On an OpenSSL failure out is the empty string. */
void upgrade_accept_key(const char *key, size_t key_len, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    out[0] = '\0';
    if (ctx == NULL)
        return;
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 && EVP_DigestUpdate(ctx, key, key_len) == 1 &&
        EVP_DigestUpdate(ctx, ws_guid, sizeof ws_guid - 1) == 1 &&
        EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 20)
        EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 chars + NUL */
    EVP_MD_CTX_free(ctx);
}

/* Contract in upgrade.h. out is NUL-terminated when there is room. */
size_t upgrade_response_101(const struct upgrade_result *res, char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s%s%s"
                     "%s%s%s"
                     "\r\n",
                     res->accept, res->subprotocol ? "Sec-WebSocket-Protocol: " : "",
                     res->subprotocol ? res->subprotocol : "", res->subprotocol ? "\r\n" : "",
                     res->extensions ? "Sec-WebSocket-Extensions: " : "",
                     res->extensions ? res->extensions : "", res->extensions ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

/* Contract in upgrade.h. why may be NULL (body "STATUS REASON\n"). */
size_t upgrade_response_error(int status, const char *why, char *out, size_t cap)
{
    const char *reason = http_reason(status);
    const char *sep = why != NULL ? ": " : "";
    const char *text = why != NULL ? why : "";
    int body = snprintf(NULL, 0, "%d %s%s%s\n", status, reason, sep, text);
    if (body < 0)
        return 0;
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %d\r\n"
                     "Connection: close\r\n"
                     "%s"
                     "\r\n"
                     "%d %s%s%s\n",
                     status, reason, body,
                     status == 426   ? "Sec-WebSocket-Version: 13\r\n"
                     : status == 405 ? "Allow: GET\r\n"
                     : status == 401 ? "WWW-Authenticate: Basic realm=\"wsgate\"\r\n"
                                     : "",
                     status, reason, sep, text);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}
