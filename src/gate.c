/* gate.c - the answer to a request head (see gate.h). */
#include "gate.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "edge.h"
#include "log.h"
#include "tls.h"
#include "token.h"
#include "upgrade.h"

struct buf *gate_error_response(struct buf_pool *pool, int status, const char *why)
{
    struct buf *b = buf_get(pool, 1024);
    if (b)
        b->end = upgrade_response_error(status, why, (char *)b->data, b->cap);
    return b;
}

static void verdict_error(struct gate_verdict *v, struct buf_pool *pool, int status,
                          const char *why)
{
    v->kind = GATE_RESPOND;
    v->failure = true;
    v->status = status;
    v->why = why ? why : http_reason(status);
    v->resp = gate_error_response(pool, status, why);
}

/* A 200 (or 503) with a body, for the built-in endpoints. */
static void verdict_body(struct gate_verdict *v, struct buf_pool *pool, int status,
                         const char *ctype, const char *body, size_t len, bool head_only)
{
    v->kind = GATE_RESPOND;
    v->status = status;
    struct buf *b = v->resp = buf_get(pool, len + 256);
    if (!b)
        return;
    int k = snprintf((char *)b->data, b->cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, http_reason(status), ctype, len);
    b->end = (size_t)k;
    if (!head_only) {
        memcpy(b->data + b->end, body, len);
        b->end += len;
    }
}

static bool is_path(const char *p, const struct http_request *req)
{
    return p && strlen(p) == req->path_len && memcmp(p, req->path, req->path_len) == 0;
}

/* health_path and metrics_path (only on admin listeners when there is
 * one). Returns true when the request was one. */
static bool builtin(struct gateway *gw, const struct config *c, const struct http_request *req,
                    struct buf_pool *pool, struct gate_verdict *v, bool admin)
{
    if (c->has_admin && !admin) { /* they moved to the admin listener */
        if (!is_path(c->health_path, req) && !is_path(c->metrics_path, req))
            return false;
        verdict_error(v, pool, 404, NULL);
        return true;
    }
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    bool get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    if (!get && !head)
        return false;
    const char *text = "text/plain; charset=utf-8";
    if (is_path(c->health_path, req)) {
        if (__atomic_load_n(&gw->draining, __ATOMIC_RELAXED))
            verdict_body(v, pool, 503, text, "draining\n", 9, head);
        else
            verdict_body(v, pool, 200, text, "ok\n", 3, head);
        return true;
    }
    if (!is_path(c->metrics_path, req))
        return false;
    size_t len = 0;
    char *body = metrics_render(&gw->metrics, &len);
    if (!body) {
        verdict_error(v, pool, 500, "out of memory");
        return true;
    }
    verdict_body(v, pool, 200, "text/plain; version=0.0.4; charset=utf-8", body, len, head);
    free(body);
    return true;
}

/* A file under web_root for a plain GET/HEAD (no Upgrade header). */
static bool static_file(const struct config *c, const struct http_request *req,
                        struct buf_pool *pool, struct gate_verdict *v)
{
    if (!c->web_root_real || http_find_header(req, "Upgrade"))
        return false;
    int status = static_request(c->web_root_real, req, &v->file);
    /* The head may quote the request path: build it while the request is
     * alive. */
    char head[HTTP_MAX_HEAD + 1024]; /* a 301 Location quotes the path */
    size_t len = static_response_head(&v->file, status, head, sizeof(head));
    if (len == 0) {
        static_close(&v->file);
        verdict_error(v, pool, 414, "path too long");
        return true;
    }
    v->kind = GATE_FILE;
    v->status = status;
    v->failure = status >= 400;
    v->why = "static";
    if ((v->resp = buf_get(pool, len))) {
        memcpy(v->resp->data, head, len);
        v->resp->end = len;
    }
    v->file_left = (status == 200 && !v->file.head_only) ? v->file.size : 0;
    return true;
}

/* Count the session in the gateway's and the route's limits. */
static int take_slot(struct gateway *gw, const struct config *c, const struct route *r)
{
    uint32_t max = c->max_connections;
    if (__atomic_add_fetch(&gw->active, 1, __ATOMIC_RELAXED) > max && max > 0) {
        __atomic_sub_fetch(&gw->active, 1, __ATOMIC_RELAXED);
        return -1;
    }
    uint32_t rmax = r->max_connections;
    if (__atomic_add_fetch(&r->stats->active, 1, __ATOMIC_RELAXED) > rmax && rmax > 0) {
        __atomic_sub_fetch(&r->stats->active, 1, __ATOMIC_RELAXED);
        __atomic_sub_fetch(&gw->active, 1, __ATOMIC_RELAXED);
        return -2;
    }
    return 0;
}

void gate_release_slot(struct gateway *gw, const struct route *route)
{
    __atomic_sub_fetch(&gw->active, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&route->stats->active, 1, __ATOMIC_RELAXED);
}

/* A token route: ?token=X names the backend (websockify's TokenFile). The
 * token itself never reaches a log line. Returns an HTTP status (0 = ok)
 * and why. */
static int token_backend(const struct route *r, const struct http_request *req,
                         struct backend_spec **out, const char **why)
{
    char token[256], target[300], err[300];
    int n = req->query ? token_from_query(req->query, req->query_len, token, sizeof(token)) : -1;
    *why = "missing token";
    if (n <= 0)
        return 403;
    *why = "unknown token";
    int found =
        token_cache_lookup(r->tokens, token, (size_t)n, target, sizeof(target), err, sizeof(err));
    if (err[0])
        log_msg(WLOG_WARN, "route %s: %s", r->name, err);
    OPENSSL_cleanse(token, sizeof(token));
    if (found != 1)
        return 403;
    struct backend_spec *b = calloc(1, sizeof(*b));
    if (!b || config_parse_backend(target, b, err, sizeof(err)) < 0) {
        *why = "invalid token target";
        if (b)
            log_msg(WLOG_WARN, "route %s: token target: %s", r->name, err);
        free(b);
        return 502;
    }
    *out = b;
    return 0;
}

/* A 429 for handshake_rate_per_ip: the error with `Retry-After: 1`. */
static void verdict_rate(struct gate_verdict *v, struct buf_pool *pool)
{
    static const char why[] = "too many upgrades from this address";
    verdict_error(v, pool, 429, why);
    struct buf *b = v->resp;
    static const char hdr[] = "\r\nRetry-After: 1";
    size_t add = sizeof(hdr) - 1, at = 0;
    while (b && at + 4 <= b->end && memcmp(b->data + at, "\r\n\r\n", 4) != 0)
        at++;
    if (!b || at + 4 > b->end || b->end + add > b->cap)
        return;
    memmove(b->data + at + add, b->data + at, b->end - at);
    memcpy(b->data + at, hdr, add);
    b->end += add;
}

void gate_release_ip(struct gateway *gw, struct gate_verdict *v, double now)
{
    if (v->holds_ip)
        iptable_conn_release(gw->iptable, &v->ip_key, now);
    v->holds_ip = false;
}

/* The route's rules on the client address: allowed_networks (403),
 * handshake_rate_per_ip and max_connections_per_ip (429). Returns true when
 * admitted (the address's session counted in v->ip_key when limited). */
static bool admit_client(const struct config *c, struct gateway *gw, const struct gate_conn *conn,
                         struct buf_pool *pool, struct gate_verdict *v)
{
    const struct route *r = v->route;
    if (r->nallowed_networks &&
        !netcidr_list_match(r->allowed_networks, r->nallowed_networks, conn->client)) {
        verdict_error(v, pool, 403, "client address not allowed for this route");
        return false;
    }
    if (!r->p.handshake_rate_per_ip && !r->p.max_connections_per_ip)
        return true;
    v->ip_key.scope = edge_route_scope(r->name);
    netaddr_key(conn->client, c->ipv6_prefix, &v->ip_key.addr);
    if (iptable_rate_take(gw->iptable, &v->ip_key, r->p.handshake_rate_per_ip, conn->now) < 0) {
        verdict_rate(v, pool);
        return false;
    }
    if (r->p.max_connections_per_ip) {
        if (iptable_conn_acquire(gw->iptable, &v->ip_key, r->p.max_connections_per_ip, conn->now) <
            0) {
            verdict_error(v, pool, 429, "too many connections from this address");
            return false;
        }
        v->holds_ip = true;
    }
    return true;
}

/* The upgrade is valid: admit it to its route or say why not. */
static void admit(const struct config *c, struct gateway *gw, SSL *ssl,
                  const struct http_request *req, struct buf_pool *pool, struct gate_verdict *v,
                  const struct gate_conn *conn)
{
    const struct route *r = v->route;
    if (r->tokens) {
        const char *why;
        int st = token_backend(r, req, &v->token_backend, &why);
        if (st) {
            verdict_error(v, pool, st, why);
            return;
        }
    }
    if (r->nclient_names && !tls_peer_allowed(ssl, r->client_names, r->nclient_names)) {
        verdict_error(v, pool, 403, "client certificate not allowed for this route");
        return;
    }
    if (__atomic_load_n(&gw->draining, __ATOMIC_RELAXED)) {
        verdict_error(v, pool, 503, "draining");
        return;
    }
    if (!admit_client(c, gw, conn, pool, v))
        return;
    int lim = take_slot(gw, c, r);
    if (lim < 0) {
        gate_release_ip(gw, v, conn->now);
        verdict_error(v, pool, 503,
                      lim == -1 ? "too many connections" : "too many connections for route");
        return;
    }
    v->kind = GATE_UPGRADE;
    v->status = 101;
}

/* permessage-deflate: when the route compresses, answer the client's
 * Sec-WebSocket-Extensions offers (every header line); a declined or absent
 * offer leaves the session uncompressed. */
static void negotiate_compression(const struct http_request *req, struct gate_verdict *v)
{
    const struct route_params *p = &v->route->p;
    const char *vals[HTTP_MAX_HEADERS];
    size_t lens[HTTP_MAX_HEADERS], n = 0;
    if (!p->compression)
        return;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == 24 && strncasecmp(h->name, "Sec-WebSocket-Extensions", 24) == 0) {
            vals[n] = h->value;
            lens[n++] = h->value_len;
        }
    }
    struct pmd_settings set = {.level = (int)p->compression_level,
                               .window_bits = (int)p->compression_window_bits};
    v->pmd = n > 0 && pmd_negotiate(vals, lens, n, &set, &v->pmd_params, v->pmd_resp);
}

void gate_decide(const struct config *cfg, struct gateway *gw, SSL *ssl,
                 const struct http_request *req, struct buf_pool *pool, struct gate_verdict *v,
                 const struct gate_conn *conn)
{
    memset(v, 0, sizeof(*v));
    v->file.fd = -1;
    if (builtin(gw, cfg, req, pool, v, conn->admin))
        return;
    if (conn->admin) { /* nothing else is served there, upgrades included */
        verdict_error(v, pool, 404, NULL);
        return;
    }
    if (static_file(cfg, req, pool, v))
        return;
    struct upgrade_result res;
    upgrade_validate(cfg, req, &res);
    v->route = res.route;
    if (res.status != 101) {
        verdict_error(v, pool, res.status, res.why);
        return;
    }
    v->subprotocol = res.subprotocol;
    v->base64 = res.subprotocol && strcmp(res.subprotocol, "base64") == 0;
    memcpy(v->accept, res.accept, sizeof(v->accept));
    admit(cfg, gw, ssl, req, pool, v, conn);
    if (v->kind == GATE_UPGRADE)
        negotiate_compression(req, v);
    if (v->kind != GATE_UPGRADE && v->token_backend) {
        config_free_backend(v->token_backend);
        free(v->token_backend);
        v->token_backend = NULL;
    }
}
