/* handshake.c - a session before its 101: the request head, the built-in
 * endpoints (health, metrics), static files, token lookup, limits, and the
 * backend connect (with failover and TLS). Responses that end the
 * connection go out through the same buffers and close path as the relay
 * (session.c). */
#include "session_int.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "sock.h"
#include "tls.h"
#include "token.h"
#include "upgrade.h"

/* Make room for a response of up to len bytes in the out buffer (dropping
 * the request and any backend). NULL when out of memory (then dropped). */
static struct buf *response_buf(struct session *s, size_t len)
{
    session_release_slot(s);
    session_close_backend(s);
    buf_put(&s->w->pool, s->in);
    s->in = NULL;
    if (s->out && s->out->cap < len) {
        buf_put(&s->w->pool, s->out);
        s->out = NULL;
    }
    if (!s->out)
        s->out = buf_get(&s->w->pool, len);
    if (!s->out) {
        session_drop(s, END_ERROR, "out of memory", 0);
        return NULL;
    }
    s->out->start = s->out->end = 0;
    return s->out;
}

/* Send the response prepared in the out buffer, then close. */
static void respond(struct session *s, int status)
{
    s->status = status;
    s->writing = W_NONE;
    s->cl_state = CL_RESPONDING;
    s->linger_since = session_now(s);
    session_client_write(s);
}

/* Answer the handshake with an error status, then close. */
static void respond_error(struct session *s, int status, const char *why)
{
    session_set_reason(s, END_HANDSHAKE, "%d %s", status, why ? why : http_reason(status));
    metrics_failure(&s->w->gw->metrics, s->stats, s->w->id, status);
    struct buf *out = response_buf(s, 1024);
    if (!out)
        return;
    out->end = upgrade_response_error(status, why, (char *)out->data, out->cap);
    respond(s, status);
}

/* Answer a plain GET/HEAD with a body, then close. */
static void respond_body(struct session *s, int status, const char *ctype, const char *body,
                         size_t len, int head_only)
{
    session_set_reason(s, END_HANDSHAKE, "%d", status);
    struct buf *out = response_buf(s, len + 256);
    if (!out)
        return;
    int k = snprintf((char *)out->data, out->cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, http_reason(status), ctype, len);
    out->end = (size_t)k;
    if (!head_only) {
        memcpy(out->data + out->end, body, len);
        out->end += len;
    }
    respond(s, status);
}

/* Serve health_path and metrics_path. Returns 1 when the request was one of
 * them. */
static int serve_builtin(struct session *s, const struct http_request *req)
{
    int head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    int get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    if (!get && !head)
        return 0;
    const struct config *c = s->cfg;
#define IS_PATH(p) ((p) && strlen(p) == req->path_len && memcmp(p, req->path, req->path_len) == 0)
    if (IS_PATH(c->health_path)) {
        if (__atomic_load_n(&s->w->gw->draining, __ATOMIC_RELAXED))
            respond_body(s, 503, "text/plain; charset=utf-8", "draining\n", 9, head);
        else
            respond_body(s, 200, "text/plain; charset=utf-8", "ok\n", 3, head);
        return 1;
    }
    if (IS_PATH(c->metrics_path)) {
        size_t len = 0;
        char *text = metrics_render(&s->w->gw->metrics, &len);
        if (!text) {
            respond_error(s, 500, "out of memory");
            return 1;
        }
        respond_body(s, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, head);
        free(text);
        return 1;
    }
#undef IS_PATH
    return 0;
}

/* Serve a file under web_root for a plain GET/HEAD (no Upgrade header).
 * Returns 1 when the request was answered. */
static int serve_static(struct session *s, const struct http_request *req)
{
    if (!s->cfg->web_root_real || http_find_header(req, "Upgrade"))
        return 0;
    int status = static_request(s->cfg->web_root_real, req, &s->file);
    session_set_reason(s, END_HANDSHAKE, "%d static", status);
    /* The head may quote the request path: build it before the request
     * buffer goes. */
    char head[HTTP_MAX_HEAD + 1024]; /* a 301 Location quotes the path */
    size_t len = static_response_head(&s->file, status, head, sizeof(head));
    if (len == 0) {
        static_close(&s->file);
        s->file.fd = -1;
        respond_error(s, 414, "path too long");
        return 1;
    }
    struct buf *out = response_buf(s, len);
    if (!out)
        return 1;
    memcpy(out->data, head, len);
    out->end = len;
    s->file_left = (status == 200 && !s->file.head_only) ? s->file.size : 0;
    if (status >= 400)
        metrics_failure(&s->w->gw->metrics, NULL, s->w->id, status);
    respond(s, status);
    return 1;
}

/* Send the next piece of the file: sendfile on plain sockets, through the
 * out buffer under TLS. Returns bytes sent, 0 when the socket is full, -1
 * after a failure (the session is dropped). */
ssize_t handshake_write_file(struct session *s)
{
    ssize_t n;
    if (!s->cl.tr.ssl) {
        size_t chunk = s->file_left > (1u << 20) ? (1u << 20) : (size_t)s->file_left;
        n = sendfile(s->cl.tr.fd, s->file.fd, NULL, chunk);
    } else {
        if (!s->out && !(s->out = buf_get(&s->w->pool, s->cfg->buffer_size))) {
            session_drop(s, END_ERROR, "out of memory", 0);
            return -1;
        }
        size_t chunk = s->out->cap < s->file_left ? s->out->cap : (size_t)s->file_left;
        n = read(s->file.fd, s->out->data, chunk);
        if (n > 0) {
            s->out->start = 0;
            s->out->end = (size_t)n;
            s->writing = W_OUT;
            s->file_left -= (uint64_t)n;
            return n; /* session_client_write() sends it as an ordinary buffer */
        }
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        session_drop(s, END_ERROR, "static file read error", n < 0 ? errno : EIO);
        return -1;
    }
    s->file_left -= (uint64_t)n;
    return n;
}

/* ---- the handshake ------------------------------------------------------ */

static int take_slot(struct session *s)
{
    struct gateway *gw = s->w->gw;
    uint32_t max = s->cfg->max_connections;
    if (__atomic_add_fetch(&gw->active, 1, __ATOMIC_RELAXED) > max && max > 0) {
        __atomic_sub_fetch(&gw->active, 1, __ATOMIC_RELAXED);
        return -1;
    }
    uint32_t rmax = s->route->max_connections;
    if (__atomic_add_fetch(&s->stats->active, 1, __ATOMIC_RELAXED) > rmax && rmax > 0) {
        __atomic_sub_fetch(&s->stats->active, 1, __ATOMIC_RELAXED);
        __atomic_sub_fetch(&gw->active, 1, __ATOMIC_RELAXED);
        return -2;
    }
    s->holds_slot = 1;
    s->w->nrelays++;
    return 0;
}

/* A token route: ?token=X names the backend (websockify's TokenFile). The
 * token itself never reaches a log line. Returns -1 when answered with 403. */
static int pick_token_backend(struct session *s, const struct http_request *req)
{
    char token[256], target[300], err[300];
    int n = req->query ? token_from_query(req->query, req->query_len, token, sizeof(token)) : -1;
    if (n <= 0) {
        respond_error(s, 403, "missing token");
        return -1;
    }
    int found = token_cache_lookup(s->route->tokens, token, (size_t)n, target, sizeof(target), err,
                                   sizeof(err));
    if (err[0])
        log_msg(WLOG_WARN, "route %s: %s", s->route->name, err);
    OPENSSL_cleanse(token, sizeof(token));
    if (found != 1) {
        respond_error(s, 403, "unknown token");
        return -1;
    }
    struct backend_spec *b = calloc(1, sizeof(*b));
    if (!b || config_parse_backend(target, b, err, sizeof(err)) < 0) {
        if (b)
            log_msg(WLOG_WARN, "route %s: token target: %s", s->route->name, err);
        free(b);
        respond_error(s, 502, "invalid token target");
        return -1;
    }
    s->token_backend = b;
    return 0;
}

/* Keep the bytes a client pipelined after its request head (head[head_len
 * ..have)) in the in buffer; give the buffer back when there are none. The
 * request usually sits in a stack buffer and nothing is allocated. */
static int keep_pipelined(struct session *s, const uint8_t *head, size_t head_len, size_t have)
{
    if (s->in && head == s->in->data) {
        s->in->start = head_len;
        if (head_len == have) {
            buf_put(&s->w->pool, s->in);
            s->in = NULL;
        }
        return 0;
    }
    if (head_len == have)
        return 0;
    if (!(s->in = buf_get(&s->w->pool, s->cfg->buffer_size))) {
        session_drop(s, END_ERROR, "out of memory", 0);
        return -1;
    }
    memcpy(s->in->data, head + head_len, have - head_len);
    s->in->end = have - head_len;
    return 0;
}

static void on_request(struct session *s, const struct http_request *req, const uint8_t *head,
                       size_t head_len, size_t have)
{
    if (serve_builtin(s, req) || serve_static(s, req))
        return;
    struct upgrade_result res;
    upgrade_validate(s->cfg, req, &res);
    if (res.route) {
        s->route = res.route;
        s->stats = res.route->stats;
    }
    if (res.status != 101) {
        respond_error(s, res.status, res.why);
        return;
    }
    if (s->route->tokens && pick_token_backend(s, req) < 0)
        return;
    if (s->route->nclient_names &&
        !tls_peer_allowed(s->cl.tr.ssl, s->route->client_names, s->route->nclient_names)) {
        respond_error(s, 403, "client certificate not allowed for this route");
        return;
    }
    if (__atomic_load_n(&s->w->gw->draining, __ATOMIC_RELAXED)) {
        respond_error(s, 503, "draining");
        return;
    }
    int lim = take_slot(s);
    if (lim < 0) {
        respond_error(s, 503,
                      lim == -1 ? "too many connections" : "too many connections for route");
        return;
    }
    s->base64 = res.subprotocol && strcmp(res.subprotocol, "base64") == 0;
    ws_decoder_init(&s->dec, s->route->p.max_message_size);
    /* The 101 goes out once the backend is connected. */
    memcpy(s->accept, res.accept, sizeof(s->accept));
    s->subprotocol = res.subprotocol;
    if (keep_pipelined(s, head, head_len, have) < 0)
        return;
    s->cl_state = CL_WAIT;
    if (s->token_backend)
        backend_cursor_init(&s->cursor, s->token_backend, 1);
    else
        backend_cursor_init(&s->cursor, s->route->backends, s->route->nbackends);
    s->connect_err = ECONNREFUSED;
    s->connect_started = ev_time();
    handshake_connect(s);
}

void handshake_read_request(struct session *s)
{
    char why[300];
    int hs = io_handshake(&s->cl.tr, why, sizeof(why));
    if (hs < 0) {
        session_set_reason(s, END_HANDSHAKE, "TLS handshake failed: %.*s", 120, why);
        session_drop(s, END_HANDSHAKE, "TLS handshake failed", 0);
        return;
    }
    if (hs == 0)
        return;
    if (s->cl.tr.ssl && !s->tls_name) {
        char name[256];
        tls_peer_name(s->cl.tr.ssl, name, sizeof(name));
        if (name[0])
            s->tls_name = strdup(name);
    }
    /* Most requests arrive in one read: read into the stack and only keep a
     * buffer for a request that arrives in pieces. */
    uint8_t stack[HTTP_MAX_HEAD + 1];
    uint8_t *base = s->in ? s->in->data : stack;
    size_t have = s->in ? s->in->end : 0;
    ssize_t n = io_read(&s->cl.tr, base + have, HTTP_MAX_HEAD + 1 - have);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        session_drop(s, END_HANDSHAKE, "client read error during handshake", errno);
        return;
    }
    if (n == 0) {
        session_drop(s, END_HANDSHAKE, "client closed during handshake", 0);
        return;
    }
    have += (size_t)n;
    struct http_request req;
    int r = http_parse_request((const char *)base, have, s->head_seen, &req);
    s->head_seen = have;
    if (r == HTTP_PARTIAL) {
        if (have > HTTP_MAX_HEAD) {
            respond_error(s, 431, "request head too large");
            return;
        }
        if (!s->in) {
            if (!(s->in = buf_get(&s->w->pool, HTTP_MAX_HEAD + 1))) {
                session_drop(s, END_ERROR, "out of memory", 0);
                return;
            }
            memcpy(s->in->data, stack, have);
        }
        s->in->end = have;
        return;
    }
    if (r == HTTP_BAD)
        respond_error(s, 400, "malformed request");
    else if (r == HTTP_TOO_LARGE)
        respond_error(s, 431, "request head too large");
    else
        on_request(s, &req, base, (size_t)r, have);
}

/* Send the 101; what the socket does not take at once waits in the out
 * buffer. */
static void send_101(struct session *s)
{
    struct upgrade_result res = {.status = 101, .subprotocol = s->subprotocol};
    memcpy(res.accept, s->accept, sizeof(s->accept));
    char resp[512];
    size_t len = upgrade_response_101(&res, resp, sizeof(resp));
    ssize_t n = io_write(&s->cl.tr, resp, len);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        session_drop(s, END_CLIENT_DROP, "client write error", errno);
        return;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    if (sent == len)
        return;
    if (!(s->out = buf_get(&s->w->pool, len - sent))) {
        session_drop(s, END_ERROR, "out of memory", 0);
        return;
    }
    memcpy(s->out->data, resp + sent, len - sent);
    s->out->end = len - sent;
}

/* The backend is connected (and its TLS up, if any): send the 101 and start
 * relaying, beginning with whatever the client pipelined after its request. */
static void backend_connected(struct session *s)
{
    s->be_state = BE_OPEN;
    s->cl_state = CL_OPEN;
    s->status = 101;
    s->last_rx = s->last_payload = session_now(s);
    metrics_connect_time(session_counters(s), ev_time() - s->connect_started);
    send_101(s);
    if (s->cl_state != CL_OPEN)
        return;
    session_process_input(s);
    if (s->nspans > s->span0)
        session_backend_write(s);
}

/* The connect to s->backend failed with err: note it and close the socket
 * (the caller tries the next address). */
static void connect_failed(struct session *s, int err)
{
    log_msg(WLOG_INFO, "%s: route %s: backend %s: %s", s->peer, s->route->name, s->backend->text,
            strerror(err));
    s->connect_err = err;
    session_half_close(s, &s->be);
}

/* The backend's TCP (or Unix) connection is up: start TLS over it when the
 * route wants it, else relay. */
static void backend_ready(struct session *s, const struct sockaddr_any *addr)
{
    sock_tune(s->be.tr.fd, addr);
    if (s->route->backend_tls) {
        s->be.tr.ssl = tls_backend_ssl(s->route, s->backend->host, s->be.tr.fd);
        if (!s->be.tr.ssl) {
            log_msg(WLOG_ERROR, "%s: route %s: cannot set up TLS to %s", s->peer, s->route->name,
                    s->backend->text);
            session_half_close(s, &s->be);
            handshake_connect(s);
            return;
        }
        s->be_state = BE_TLS;
        handshake_backend_tls(s);
        return;
    }
    backend_connected(s);
}

/* Try the next backend address; when none is left answer 502 or 504. */
void handshake_connect(struct session *s)
{
    for (;;) {
        const struct backend_spec *spec;
        const struct sockaddr_any *addr;
        int fd = backend_connect_next(&s->cursor, &spec, &addr, &s->connect_err);
        if (fd < 0) {
            s->be_state = BE_NONE;
            if (s->connect_err == ETIMEDOUT)
                respond_error(s, 504, "backend connect timeout");
            else
                respond_error(s, 502, "backend unavailable");
            return;
        }
        s->backend = spec;
        s->be.tr.fd = fd;
        s->be.events = 0;
        s->be_state = BE_CONNECTING;
        s->connect_deadline = session_now(s) + s->route->p.connect_timeout_ms / 1000.0;
        /* A Unix socket or a loopback backend has usually connected
         * already: go on now rather than after a round of the loop. */
        int rc = sock_connect_check(fd, addr);
        if (rc > 0) {
            backend_ready(s, addr);
            return;
        }
        if (rc < 0) {
            connect_failed(s, errno);
            continue;
        }
        return;
    }
}

/* Drive the TLS handshake with a backend; a failure moves on to the next
 * backend (and finally to 502). */
void handshake_backend_tls(struct session *s)
{
    char why[300];
    int hs = io_handshake(&s->be.tr, why, sizeof(why));
    if (hs == 0)
        return;
    if (hs < 0) {
        log_msg(WLOG_WARN, "%s: route %s: backend %s: TLS handshake failed: %s", s->peer,
                s->route->name, s->backend->text, why);
        session_half_close(s, &s->be);
        s->connect_err = ECONNREFUSED;
        handshake_connect(s);
        return;
    }
    backend_connected(s);
}

void handshake_connect_done(struct session *s)
{
    int err = sock_error(s->be.tr.fd);
    if (err) {
        connect_failed(s, err);
        handshake_connect(s);
        return;
    }
    backend_ready(s, &s->backend->addrs[s->cursor.addr - 1]);
}
