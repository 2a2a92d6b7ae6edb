/* gate.c - the answer to a request head (see gate.h). */
#include "gate.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "edge.h"
#include <time.h>

#include "auth.h"
#include "jwt.h"
#include "netaddr.h"
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
    v->builtin = is_path(c->health_path, req) || is_path(c->metrics_path, req);
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

/* A listener a plain-HTTP probe can use: TCP, no PROXY header, plain or
 * "tls auto" (which takes plain HTTP too). */
static bool plain_http(const struct listen_spec *l)
{
    return l->kind == LISTEN_INET && !l->proxy && (!l->tls || l->tls_auto);
}

int gate_health_url(const struct config *c, char *out, size_t len)
{
    if (!c->health_path) {
        snprintf(out, len, "health_path is empty: no health endpoint is served");
        return -1;
    }
    const struct listen_spec *l = NULL;
    for (size_t i = 0; i < c->nlistens && !l; i++)
        if (c->listens[i].admin == c->has_admin && plain_http(&c->listens[i]))
            l = &c->listens[i];
    if (!l) {
        snprintf(out, len, "no %slistener answers plain HTTP on TCP", c->has_admin ? "admin " : "");
        return -1;
    }
    struct netaddr a;
    netaddr_from_sockaddr((const struct sockaddr *)&l->addr.ss, l->addr.len, &a);
    static const uint8_t zero[16];
    if (memcmp(a.a, zero, sizeof(zero)) == 0) { /* 0.0.0.0 -> 127.0.0.1, :: -> ::1 */
        if (a.family == AF_INET) {
            a.a[0] = 127;
            a.a[3] = 1;
        } else {
            a.a[15] = 1;
        }
    }
    char hp[NETADDR_STRLEN];
    snprintf(out, len, "http://%s%s", netaddr_str(&a, hp, sizeof(hp)), c->health_path);
    return 0;
}

/* Basic authentication against ba: 200, 401, or 0 when the password is to
 * be checked off the loop first (v->kind is GATE_PASSWORD then). */
static int basic_step(struct basic_auth_cache *ba, const struct http_request *req,
                      const struct gate_conn *conn, struct gate_verdict *v)
{
    int st = basic_auth_cache_begin(ba, req, conn->password, conn->crypt);
    if (st == 0)
        v->kind = GATE_PASSWORD;
    return st;
}

/* A file under web_root for a plain GET/HEAD (no Upgrade header). */
static bool static_file(const struct config *c, const struct http_request *req,
                        struct buf_pool *pool, struct gate_verdict *v, const struct gate_conn *conn)
{
    if (!c->web_root_real || http_find_header(req, "Upgrade"))
        return false;
    int ba = c->basic_auth ? basic_step(c->basic_auth, req, conn, v) : 200;
    if (ba == 0)
        return true;
    if (ba != 200) {
        verdict_error(v, pool, 401, "authentication required");
        return true;
    }
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

/* The port of a "host:port" / "[v6]:port" target text (0 for unix:). */
static unsigned spec_port(const struct backend_spec *b)
{
    const char *c = b->host ? strrchr(b->text, ':') : NULL;
    return c ? (unsigned)strtoul(c + 1, NULL, 10) : 0;
}

static void free_spec(struct backend_spec *b)
{
    if (b) {
        config_free_backend(b);
        free(b);
    }
}

int gate_target_allowed(const struct route *r, const struct backend_spec *b)
{
    int ok =
        auth_backend_allowed(r->allowed, r->nallowed, b->host, spec_port(b), b->addrs, b->naddrs);
    return ok == 0 || (ok < 0 && b->naddrs > 0) ? 403 : 0;
}

int gate_token_target(const struct route *r, const char *target, struct backend_spec **out,
                      const char **why)
{
    char err[300];
    struct backend_spec *b = calloc(1, sizeof(*b));
    *out = NULL;
    if (!b || config_parse_backend_lazy(target, b, err, sizeof(err)) < 0) {
        *why = "invalid token target";
        if (b)
            log_msg(WLOG_WARN, "route %s: token target: %s", r->name, err);
        free(b);
        return 502;
    }
    if (gate_target_allowed(r, b)) {
        log_msg(WLOG_WARN, "route %s: token target %s is outside allowed_backends", r->name,
                b->text);
        *why = "token target not allowed";
        free_spec(b);
        return 403;
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
    if (!conn->password && /* a decision again after the password check: charged before */
        iptable_rate_take(gw->iptable, &v->ip_key, r->p.handshake_rate_per_ip, conn->now) < 0) {
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

/* token_file: the table resolved the target when it was loaded. */
static int token_file_target(const struct route *r, const char *tok, size_t n,
                             struct gate_verdict *v)
{
    char err[300];
    struct backend_spec *b = calloc(1, sizeof(*b));
    int found = b ? token_cache_resolve(r->tokens, tok, n, b, err, sizeof(err)) : -1;
    if (found != 1) {
        free(b);
        v->why = found == 0 ? "unknown token" : "invalid token target";
        if (found < 0)
            log_msg(WLOG_WARN, "route %s: %s", r->name, b ? err : "out of memory");
        return found == 0 ? 403 : 502;
    }
    if (gate_target_allowed(r, b)) {
        log_msg(WLOG_WARN, "route %s: token target %s is outside allowed_backends", r->name,
                b->text);
        free_spec(b);
        v->why = "token target not allowed";
        return 403;
    }
    v->token_backend = b;
    return 0;
}

/* token_jwt_key: the signed token names the target. */
static int jwt_target(const struct route *r, const char *tok, size_t n, struct gate_verdict *v)
{
    char target[JWT_TARGET_MAX], why[80];
    if (jwt_verify(r->jwt, tok, n, r->name, (int64_t)time(NULL), target, sizeof(target), why,
                   sizeof(why)) < 0) {
        size_t len = strlen(why) + sizeof("invalid token: ");
        free(v->detail);
        if ((v->detail = malloc(len)))
            snprintf(v->detail, len, "invalid token: %s", why);
        v->why = v->detail ? v->detail : "invalid token";
        return 403;
    }
    return gate_token_target(r, target, &v->token_backend, &v->why);
}

/* A token route: the token from ?token=, the cookie or Bearer names the
 * backend now (token_file, JWT) or after a Redis lookup (v->wait). The
 * token itself never reaches a log line. Returns an HTTP status (0 = ok)
 * with v->why. */
static int token_step(const struct route *r, const struct http_request *req, struct gate_verdict *v)
{
    if (!r->tokens && !r->jwt && !r->redis)
        return 0;
    char tok[AUTH_MAX_TOKEN + 1];
    size_t n = 0;
    int src = auth_token_from_request(req, r->p.token_cookie, tok, sizeof(tok), &n);
    int st = 403;
    v->why = src == AUTH_TOKEN_NONE ? "missing token" : "invalid token";
    if (src > 0 && r->tokens) {
        st = token_file_target(r, tok, n, v);
    } else if (src > 0 && r->jwt) {
        st = jwt_target(r, tok, n, v);
    } else if (src > 0) {
        st = 503;
        v->why = "out of memory";
        if ((v->token = malloc(n))) {
            memcpy(v->token, tok, n);
            v->token_len = n;
            v->wait = GATE_WAIT_REDIS;
            st = 0;
        }
    }
    OPENSSL_cleanse(tok, sizeof(tok));
    return st;
}

/* The upgrade is valid: admit it to its route or say why not. */
static void admit(const struct config *c, struct gateway *gw, SSL *ssl,
                  const struct http_request *req, struct buf_pool *pool, struct gate_verdict *v,
                  const struct gate_conn *conn)
{
    const struct route *r = v->route;
    /* the client address first: the cheap checks and the per-address rate
     * come before any password or signature is checked */
    if (!admit_client(c, gw, conn, pool, v))
        return;
    int st = 0;
    const char *why = NULL;
    int ba = r->basic_auth ? basic_step(r->basic_auth, req, conn, v) : 200;
    if (ba == 0) { /* decided again once the password is checked */
        gate_release_ip(gw, v, conn->now);
        return;
    }
    if (ba != 200) {
        st = 401;
        why = "authentication required";
    } else if ((st = token_step(r, req, v)) != 0) {
        why = v->why;
    } else if (r->nclient_names && !tls_peer_allowed(ssl, r->client_names, r->nclient_names)) {
        st = 403;
        why = "client certificate not allowed for this route";
    } else if (__atomic_load_n(&gw->draining, __ATOMIC_RELAXED)) {
        st = 503;
        why = "draining";
    } else if ((st = take_slot(gw, c, r)) < 0) {
        why = st == -1 ? "too many connections" : "too many connections for route";
        st = 503;
    }
    if (st) {
        gate_release_ip(gw, v, conn->now);
        verdict_error(v, pool, st, why);
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
    char resp[PMD_RESPONSE_MAX];
    v->pmd = n > 0 && pmd_negotiate(vals, lens, n, &set, &v->pmd_params, resp);
    if (v->pmd && !(v->pmd_resp = strdup(resp)))
        v->pmd = false; /* out of memory: no compression */
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
    if (static_file(cfg, req, pool, v, conn))
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
    if (v->kind != GATE_UPGRADE)
        gate_verdict_clear(v);
}

void gate_verdict_free(struct gate_verdict *v)
{
    gate_verdict_clear(v);
    free(v->detail);
    v->detail = NULL;
}

void gate_verdict_clear(struct gate_verdict *v)
{
    free(v->pmd_resp);
    v->pmd_resp = NULL;
    free_spec(v->token_backend);
    v->token_backend = NULL;
    if (v->token) {
        OPENSSL_cleanse(v->token, v->token_len);
        free(v->token);
        v->token = NULL;
    }
    v->token_len = 0;
    v->wait = GATE_WAIT_NONE;
}
