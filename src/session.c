/* session.c - the relay between one WebSocket client and one TCP backend.
 *
 * A session has two halves, the client and the backend. Data flows through
 * two buffers taken from the worker's pool only while data is in flight:
 *
 *   in:  raw client frames. The decoder unmasks payload in place and records
 *        the payload ranges ("spans"); the backend gets them with writev, so
 *        client payload is never copied in user space. While spans are
 *        pending the client is not read once the buffer is full.
 *   out: one frame for the client at a time: backend bytes are read after
 *        WS_MAX_SERVER_HEADER bytes of headroom and the header is written just
 *        before them, so the frame goes out in one write. The backend is not
 *        read while a frame is in flight. The 101 response and error
 *        responses travel in the same buffer.
 *
 * Control frames (pong, ping, close) wait in small slots and are written
 * between data frames, never inside one.
 *
 * Every callback ends in session_rearm(), which derives the events each
 * watcher needs from the buffer state (backpressure is computed, not
 * toggled), closes a half whose work is done, and frees the session once both
 * halves are closed: session_end() is the one place a session ends. */
#include "session.h"

#include <errno.h>
#include <ev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend.h"
#include "buf.h"
#include "http.h"
#include "io.h"
#include "log.h"
#include "metrics.h"
#include "sock.h"
#include "static.h"
#include "token.h"
#include "tls.h"
#include "upgrade.h"
#include "worker.h"
#include "ws.h"

#define SPANS_MAX 32
#define CLOSE_WAIT 5.0 /* seconds for the close handshake and final flushes */
#define LINGER 2.0     /* seconds to drain a client after our last byte */

enum client_state {
    CL_REQUEST,    /* reading the upgrade request */
    CL_WAIT,       /* request accepted, backend connecting */
    CL_OPEN,       /* WebSocket open (101 queued or sent) */
    CL_RESPONDING, /* writing an error response */
    CL_LINGER,     /* our side shut down; discarding input until EOF */
    CL_CLOSED,
};

enum backend_state { BE_NONE, BE_CONNECTING, BE_TLS, BE_OPEN, BE_CLOSED };

enum writing { W_NONE, W_OUT, W_CTL };

/* Why a session ended: who closed it and how it counts in the metrics. */
enum end_cause {
    END_CLIENT_CLOSE,
    END_CLIENT_DROP,
    END_BACKEND_EOF,
    END_BACKEND_ERROR,
    END_PROTOCOL,
    END_TIMEOUT,
    END_SHUTDOWN,
    END_HANDSHAKE,
    END_ERROR,
};

static const struct {
    const char *by;
    enum session_result result;
} end_causes[] = {
    [END_CLIENT_CLOSE] = {"client", RESULT_NORMAL},
    [END_CLIENT_DROP] = {"client", RESULT_CLIENT_DROPPED},
    [END_BACKEND_EOF] = {"backend", RESULT_NORMAL},
    [END_BACKEND_ERROR] = {"backend", RESULT_BACKEND_ERROR},
    [END_PROTOCOL] = {"gateway", RESULT_PROTOCOL_ERROR},
    [END_TIMEOUT] = {"gateway", RESULT_TIMEOUT},
    [END_SHUTDOWN] = {"gateway", RESULT_SHUTDOWN},
    [END_HANDSHAKE] = {"gateway", RESULT_ERROR},
    [END_ERROR] = {"gateway", RESULT_ERROR},
};

struct half {
    struct io tr; /* the transport: plain socket or TLS */
    int events;   /* what the watcher currently waits for */
    ev_io io;
};

struct span { /* buffers are at most 16 MiB */
    uint32_t off, len;
};

struct session {
    struct session *prev, *next;
    struct worker *w;
    struct config *cfg;
    const struct route *route;
    struct route_stats *stats;
    int holds_slot; /* counted in the connection limits */

    struct half cl, be;
    enum client_state cl_state;
    enum backend_state be_state;

    ev_timer timer;
    ev_tstamp timer_at; /* when the timer fires; 0 = not running */
    ev_tstamp started, last_rx, last_payload, ping_sent, closing_since, linger_since;
    ev_tstamp connect_deadline, connect_started;

    /* handshake */
    size_t head_seen;
    struct backend_cursor cursor;
    const struct backend_spec *backend;
    int connect_err; /* errno of the last failed attempt, ETIMEDOUT for a timeout */

    /* client -> backend */
    struct buf *in;
    struct span spans[SPANS_MAX];
    int nspans, span0; /* pending spans are spans[span0..nspans) */
    struct ws_decoder dec;
    struct ws_b64dec b64;
    int base64;

    /* backend -> client */
    struct buf *out;
    enum writing writing;
    uint8_t ctl[WS_MAX_SERVER_HEADER + WS_MAX_CONTROL + 2];
    size_t ctl_len, ctl_off;
    int pong_pending, ping_pending, ping_outstanding; /* a pong's payload waits in dec.ctl */

    /* closing */
    int up_done;   /* no more client payload will be relayed */
    int down_done; /* no more backend bytes will be read */
    int close_queued, close_in_flight, close_sent, close_rcvd, failing;
    uint16_t close_code;
    const char *close_reason;

    /* for the access log */
    int status;
    uint64_t bytes_up, bytes_down;
    uint64_t file_left; /* bytes of s->file still to send */
    int has_cause;
    enum end_cause cause;
    char reason[160];
    char peer[64];
    char *tls_name; /* verified client certificate name (malloc'd), or NULL */
    char accept[29];            /* Sec-WebSocket-Accept of the pending 101 */
    const char *subprotocol;    /* chosen subprotocol (in cfg), or NULL */
    struct backend_spec *token_backend; /* picked by ?token=, owned */
    struct static_file file;            /* a file being sent from web_root */
};

static void session_rearm(struct session *s);
static void client_write(struct session *s);
static void backend_write(struct session *s);
static void start_connect(struct session *s);

static ev_tstamp now_of(struct session *s)
{
    return ev_now(s->w->loop);
}

/* Record why the session ends; the first reason wins. */
static void set_reason(struct session *s, enum end_cause cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_reason(struct session *s, enum end_cause cause, const char *fmt, ...)
{
    if (s->has_cause)
        return;
    s->has_cause = 1;
    s->cause = cause;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
    va_end(ap);
}

static void half_set_events(struct session *s, struct half *h, int events)
{
    if (h->tr.fd < 0 || h->events == events)
        return;
    ev_io_stop(s->w->loop, &h->io);
    if (events) {
        ev_io_set(&h->io, h->tr.fd, events);
        ev_io_start(s->w->loop, &h->io);
    }
    h->events = events;
}

static void half_close(struct session *s, struct half *h)
{
    if (h->tr.fd < 0)
        return;
    ev_io_stop(s->w->loop, &h->io);
    io_close(&h->tr);
    h->events = 0;
}

static void close_backend(struct session *s)
{
    half_close(s, &s->be);
    if (s->be_state != BE_NONE)
        s->be_state = BE_CLOSED;
    s->nspans = s->span0 = 0;
}

static void close_client(struct session *s)
{
    half_close(s, &s->cl);
    s->cl_state = CL_CLOSED;
}

static void release_slot(struct session *s)
{
    if (!s->holds_slot)
        return;
    __atomic_sub_fetch(&s->w->gw->active, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&s->stats->active, 1, __ATOMIC_RELAXED);
    s->w->nrelays--;
    s->holds_slot = 0;
}

/* The one place a session ends: log it, release everything, free it. */
static void session_end(struct session *s)
{
    struct worker *w = s->w;
    close_client(s);
    close_backend(s);
    ev_timer_stop(w->loop, &s->timer);
    release_slot(s);
    if (s->status == 101)
        metrics_add(&s->stats->results[s->has_cause ? end_causes[s->cause].result : RESULT_ERROR],
                    1);

    struct access_record r = {
        .client = s->peer,
        .route = s->route ? s->route->name : "-",
        .backend = s->backend ? s->backend->text : "-",
        .status = s->status,
        .duration = now_of(s) - s->started,
        .bytes_up = s->bytes_up,
        .bytes_down = s->bytes_down,
        .close_code = s->close_sent ? s->close_code : 0,
        .closed_by = s->has_cause ? end_causes[s->cause].by : "gateway",
        .reason = s->reason[0] ? s->reason : "-",
        .client_name = s->tls_name,
    };
    log_access(&r);

    buf_put(&w->pool, s->in);
    buf_put(&w->pool, s->out);
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->nsessions--;
    if (s->file.fd >= 0)
        static_close(&s->file);
    if (s->token_backend) {
        config_free_backend(s->token_backend);
        free(s->token_backend);
    }
    config_unref(s->cfg);
    free(s->tls_name);
    free(s);
}

/* Close a session now, whatever its state. */
void session_abort(struct session *s, const char *why)
{
    set_reason(s, END_SHUTDOWN, "%s", why);
    close_client(s);
    close_backend(s);
    session_end(s);
}

struct session *session_next(struct session *s)
{
    return s->next;
}

/* Mark both halves closed at once; session_rearm() ends the session. */
static void drop(struct session *s, enum end_cause cause, const char *why, int err)
{
    if (err)
        set_reason(s, cause, "%s: %s", why, strerror(err));
    else
        set_reason(s, cause, "%s", why);
    close_client(s);
    close_backend(s);
}

/* Our side of the client connection is done: shut it down and discard what
 * the client still sends until it closes, so our last bytes are not lost to a
 * reset. */
static void client_finish(struct session *s)
{
    if (s->cl_state == CL_LINGER || s->cl_state == CL_CLOSED)
        return;
    io_shutdown(&s->cl.tr);
    s->cl_state = CL_LINGER;
    s->linger_since = now_of(s);
    if (s->in && s->nspans == s->span0) {
        buf_put(&s->w->pool, s->in);
        s->in = NULL;
    }
}

/* Queue a close frame for the client. It is sent once the frame in flight is
 * out; the backend is read no more. */
static void queue_close(struct session *s, uint16_t code, const char *reason)
{
    s->down_done = 1;
    if (s->close_queued)
        return;
    s->close_queued = 1;
    s->close_code = code;
    s->close_reason = reason;
    s->closing_since = now_of(s);
}

/* A protocol violation: send the close code, relay nothing more from the
 * client, close without waiting for the client's reply. */
static void fail(struct session *s, uint16_t code, const char *why)
{
    set_reason(s, END_PROTOCOL, "protocol error: %s", why);
    s->failing = 1;
    s->up_done = 1;
    queue_close(s, code, why);
}

/* Make room for a response of up to len bytes in the out buffer (dropping
 * the request and any backend). NULL when out of memory (then dropped). */
static struct buf *response_buf(struct session *s, size_t len)
{
    release_slot(s);
    close_backend(s);
    buf_put(&s->w->pool, s->in);
    s->in = NULL;
    if (s->out && s->out->cap < len) {
        buf_put(&s->w->pool, s->out);
        s->out = NULL;
    }
    if (!s->out)
        s->out = buf_get(&s->w->pool, len);
    if (!s->out) {
        drop(s, END_ERROR, "out of memory", 0);
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
    s->linger_since = now_of(s);
    client_write(s);
}

/* Answer the handshake with an error status, then close. */
static void respond_error(struct session *s, int status, const char *why)
{
    set_reason(s, END_HANDSHAKE, "%d %s", status, why ? why : http_reason(status));
    metrics_failure(&s->w->gw->metrics, s->stats, status);
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
    set_reason(s, END_HANDSHAKE, "%d", status);
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
    set_reason(s, END_HANDSHAKE, "%d static", status);
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
        metrics_failure(&s->w->gw->metrics, NULL, status);
    respond(s, status);
    return 1;
}

/* Send the next piece of the file: sendfile on plain sockets, through the
 * out buffer under TLS. Returns bytes sent, 0 when the socket is full, -1
 * after a failure (the session is dropped). */
static ssize_t client_write_file(struct session *s)
{
    ssize_t n;
    if (!s->cl.tr.ssl) {
        size_t chunk = s->file_left > (1u << 20) ? (1u << 20) : (size_t)s->file_left;
        n = sendfile(s->cl.tr.fd, s->file.fd, NULL, chunk);
    } else {
        if (!s->out && !(s->out = buf_get(&s->w->pool, s->cfg->buffer_size))) {
            drop(s, END_ERROR, "out of memory", 0);
            return -1;
        }
        size_t chunk = s->out->cap < s->file_left ? s->out->cap : (size_t)s->file_left;
        n = read(s->file.fd, s->out->data, chunk);
        if (n > 0) {
            s->out->start = 0;
            s->out->end = (size_t)n;
            s->writing = W_OUT;
            s->file_left -= (uint64_t)n;
            return n; /* client_write() sends it as an ordinary buffer */
        }
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        drop(s, END_ERROR, "static file read error", n < 0 ? errno : EIO);
        return -1;
    }
    s->file_left -= (uint64_t)n;
    return n;
}

/* ---- client -> backend ------------------------------------------------ */

static int add_span(struct session *s, size_t off, size_t len)
{
    if (len == 0)
        return 0;
    if (s->nspans > s->span0) {
        struct span *last = &s->spans[s->nspans - 1];
        if (last->off + last->len == off) {
            last->len += (uint32_t)len;
            return 0;
        }
    }
    s->spans[s->nspans].off = (uint32_t)off;
    s->spans[s->nspans].len = (uint32_t)len;
    s->nspans++;
    return 0;
}

static void on_data(struct session *s, const struct ws_event *ev, size_t base)
{
    size_t off = base + ev->off, len = ev->len;
    if (s->base64) {
        long k = ws_b64_decode(&s->b64, s->in->data + off, len);
        if (k < 0) {
            fail(s, WS_CLOSE_BAD_DATA, "invalid base64");
            return;
        }
        len = (size_t)k;
        if (ev->fin) {
            if (!ws_b64_complete(&s->b64)) {
                fail(s, WS_CLOSE_BAD_DATA, "truncated base64");
                return;
            }
            memset(&s->b64, 0, sizeof(s->b64));
        }
    }
    if (s->be_state != BE_OPEN || len == 0)
        return;
    add_span(s, off, len);
    s->bytes_up += len;
    metrics_add(&s->stats->bytes_up, len);
    s->last_payload = now_of(s);
}

static void on_control(struct session *s, const struct ws_event *ev)
{
    switch (ev->opcode) {
    case WS_OP_PING:
        if (s->close_queued) /* closing: no pong may follow our close */
            break;
        s->pong_pending = 1; /* decoding pauses, so dec.ctl keeps the payload */
        break;
    case WS_OP_CLOSE:
        s->close_rcvd = 1;
        s->up_done = 1;
        if (!s->close_queued)
            set_reason(s, END_CLIENT_CLOSE, "client closed (%u)", ev->close_code);
        queue_close(s, ev->close_code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : ev->close_code,
                    "");
        if (s->close_sent)
            client_finish(s);
        break;
    default: /* pongs only prove the client is alive */
        break;
    }
}

/* Decode what the client sent, collecting payload spans for the backend. */
static void process_input(struct session *s)
{
    struct buf *in;
    /* A ping pauses decoding until its pong is out, so every ping gets its
     * pong without queueing more than one. */
    while ((in = s->in) && !s->up_done && !s->pong_pending && in->start < in->end &&
           s->nspans < SPANS_MAX) {
        struct ws_event ev;
        size_t base = in->start;
        in->start += ws_decode(&s->dec, in->data + base, in->end - base, &ev);
        switch (ev.type) {
        case WS_EV_NONE:
            break;
        case WS_EV_DATA:
            on_data(s, &ev, base);
            break;
        case WS_EV_CONTROL:
            on_control(s, &ev);
            break;
        case WS_EV_ERROR:
            fail(s, ev.close_code, ev.reason ? ev.reason : "invalid frame");
            break;
        }
    }
    /* (on_control() may have given the buffer back already) */
    if ((in = s->in) && s->nspans == s->span0 && (in->start == in->end || s->up_done)) {
        buf_put(&s->w->pool, in);
        s->in = NULL;
        s->nspans = s->span0 = 0;
    }
}

static void client_read_frames(struct session *s)
{
    if (!s->in) {
        s->in = buf_get(&s->w->pool, s->cfg->buffer_size);
        if (!s->in) {
            drop(s, END_ERROR, "out of memory", 0);
            return;
        }
    }
    struct buf *in = s->in;
    ssize_t n = io_read(&s->cl.tr, in->data + in->end, buf_room(in));
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        drop(s, END_CLIENT_DROP, "client read error", errno);
        return;
    }
    if (n == 0) {
        drop(s, END_CLIENT_DROP, "client closed the connection without a close frame", 0);
        return;
    }
    in->end += (size_t)n;
    s->last_rx = now_of(s);
    s->ping_outstanding = 0;
    process_input(s);
    if (s->nspans > s->span0)
        backend_write(s);
    if (s->pong_pending)
        client_write(s);
}

/* Write pending payload spans to the backend. */
static void backend_write(struct session *s)
{
    while (s->nspans > s->span0) {
        struct iovec iov[SPANS_MAX];
        int k = 0;
        for (int i = s->span0; i < s->nspans; i++, k++) {
            iov[k].iov_base = s->in->data + s->spans[i].off;
            iov[k].iov_len = s->spans[i].len;
        }
        ssize_t n = io_writev(&s->be.tr, iov, k);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            int e = errno;
            set_reason(s, END_BACKEND_ERROR, "backend write error: %s (%zu bytes not delivered)",
                       strerror(e), (size_t)0);
            close_backend(s); /* client payload from now on is discarded */
            queue_close(s, WS_CLOSE_INTERNAL, "backend error");
            return;
        }
        size_t left = (size_t)n;
        while (left > 0) {
            struct span *sp = &s->spans[s->span0];
            if (left >= sp->len) {
                left -= sp->len;
                s->span0++;
            } else {
                sp->off += (uint32_t)left;
                sp->len -= (uint32_t)left;
                left = 0;
            }
        }
    }
    s->nspans = s->span0 = 0;
    /* Everything decoded so far is delivered: decode the rest, or give the
     * buffer back when it is empty. */
    process_input(s);
    if (s->nspans > s->span0)
        backend_write(s);
}

/* ---- backend -> client ------------------------------------------------ */

static void backend_read(struct session *s)
{
    struct buf *out = buf_get(&s->w->pool, s->cfg->buffer_size);
    if (!out) {
        drop(s, END_ERROR, "out of memory", 0);
        return;
    }
    size_t head = WS_MAX_SERVER_HEADER;
    uint8_t *dst;
    size_t want;
    if (s->base64) {
        /* Read raw bytes into the tail and encode them forward into the
         * front: the encoder's output never overtakes its input. */
        want = (out->cap - head - 4) / 4 * 3;
        dst = out->data + out->cap - want;
    } else {
        want = out->cap - head;
        dst = out->data + head;
    }
    ssize_t n = io_read(&s->be.tr, dst, want);
    if (n <= 0) {
        buf_put(&s->w->pool, out);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n == 0) {
            set_reason(s, END_BACKEND_EOF, "backend closed the connection");
            queue_close(s, WS_CLOSE_NORMAL, "");
        } else {
            set_reason(s, END_BACKEND_ERROR, "backend read error: %s", strerror(errno));
            close_backend(s); /* client payload from now on is discarded */
            queue_close(s, WS_CLOSE_INTERNAL, "backend error");
        }
        return;
    }
    size_t len = (size_t)n;
    enum ws_opcode op = WS_OP_BINARY;
    if (s->base64) {
        len = ws_base64_encode((char *)out->data + head, dst, len);
        op = WS_OP_TEXT;
    }
    size_t hl = ws_header_len(len);
    ws_header(out->data + head - hl, op, len);
    out->start = head - hl;
    out->end = head + len;
    s->out = out;
    s->bytes_down += (size_t)n;
    metrics_add(&s->stats->bytes_down, (uint64_t)n);
    s->last_payload = now_of(s);
    client_write(s);
}

/* Pick the next thing to write to the client: control frames go between data
 * frames, the close frame goes last. */
static int pick_write(struct session *s)
{
    if (s->close_sent) /* nothing may follow a close frame */
        return 0;
    if (s->pong_pending) {
        s->ctl_len = ws_header(s->ctl, WS_OP_PONG, s->dec.ctl_len);
        memcpy(s->ctl + s->ctl_len, s->dec.ctl, s->dec.ctl_len);
        s->ctl_len += s->dec.ctl_len;
        s->pong_pending = 0;
    } else if (s->ping_pending) {
        s->ctl_len = ws_header(s->ctl, WS_OP_PING, 0);
        s->ping_pending = 0;
    } else if (s->out && buf_len(s->out) > 0) {
        s->writing = W_OUT;
        return 1;
    } else if (s->close_queued && !s->close_in_flight && !s->close_sent &&
               s->cl_state == CL_OPEN) {
        s->ctl_len = ws_close_frame(s->ctl, s->close_code, s->close_reason);
        s->close_in_flight = 1;
    } else {
        return 0;
    }
    s->ctl_off = 0;
    s->writing = W_CTL;
    return 1;
}

static int client_has_output(struct session *s)
{
    if (s->close_sent)
        return 0;
    return s->writing != W_NONE || s->pong_pending || s->ping_pending ||
           (s->out && buf_len(s->out) > 0) ||
           (s->close_queued && !s->close_sent && !s->close_in_flight);
}

static void client_wrote(struct session *s)
{
    if (s->writing == W_OUT) {
        buf_put(&s->w->pool, s->out);
        s->out = NULL;
        if (s->cl_state == CL_RESPONDING && s->file_left == 0)
            client_finish(s);
    } else if (s->close_in_flight) {
        s->close_in_flight = 0;
        s->close_sent = 1;
        if (s->close_rcvd || s->failing)
            client_finish(s);
    } else if (s->in && s->in->start < s->in->end) {
        /* A pong went out: decoding may go on. */
        s->writing = W_NONE;
        process_input(s);
        if (s->nspans > s->span0)
            backend_write(s);
        return;
    }
    s->writing = W_NONE;
}

/* Write to the client until done or the socket is full. */
static void client_write(struct session *s)
{
    while (s->cl_state == CL_OPEN || s->cl_state == CL_RESPONDING) {
        if (s->writing == W_NONE && s->cl_state == CL_RESPONDING && s->file_left > 0 &&
            !s->out) {
            ssize_t k = client_write_file(s);
            if (k <= 0)
                return;
            if (s->writing == W_NONE) { /* sendfile moved the bytes itself */
                if (s->file_left == 0)
                    client_finish(s);
                continue;
            }
        }
        if (s->writing == W_NONE && !pick_write(s))
            return;
        const uint8_t *p;
        size_t len;
        if (s->writing == W_OUT) {
            p = s->out->data + s->out->start;
            len = buf_len(s->out);
        } else {
            p = s->ctl + s->ctl_off;
            len = s->ctl_len - s->ctl_off;
        }
        ssize_t n = io_write(&s->cl.tr, p, len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            drop(s, END_CLIENT_DROP, "client write error", errno);
            return;
        }
        if (s->writing == W_OUT)
            s->out->start += (size_t)n;
        else
            s->ctl_off += (size_t)n;
        if ((size_t)n < len)
            return;
        client_wrote(s);
    }
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
        drop(s, END_ERROR, "out of memory", 0);
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
        respond_error(s, 503, lim == -1 ? "too many connections" : "too many connections for route");
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
    start_connect(s);
}

static void client_read_request(struct session *s)
{
    char why[300];
    int hs = io_handshake(&s->cl.tr, why, sizeof(why));
    if (hs < 0) {
        set_reason(s, END_HANDSHAKE, "TLS handshake failed: %.*s", 120, why);
        drop(s, END_HANDSHAKE, "TLS handshake failed", 0);
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
        drop(s, END_HANDSHAKE, "client read error during handshake", errno);
        return;
    }
    if (n == 0) {
        drop(s, END_HANDSHAKE, "client closed during handshake", 0);
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
                drop(s, END_ERROR, "out of memory", 0);
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
        drop(s, END_CLIENT_DROP, "client write error", errno);
        return;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    if (sent == len)
        return;
    if (!(s->out = buf_get(&s->w->pool, len - sent))) {
        drop(s, END_ERROR, "out of memory", 0);
        return;
    }
    memcpy(s->out->data, resp + sent, len - sent);
    s->out->end = len - sent;
}

/* The backend is connected: send the 101 and start relaying, beginning with
 * whatever the client pipelined after its request. */
static void backend_connected(struct session *s, const struct sockaddr_any *addr)
{
    sock_tune(s->be.tr.fd, addr);
    s->be_state = BE_OPEN;
    s->cl_state = CL_OPEN;
    s->status = 101;
    s->last_rx = s->last_payload = now_of(s);
    metrics_connect_time(s->stats, ev_time() - s->connect_started);
    send_101(s);
    if (s->cl_state != CL_OPEN)
        return;
    process_input(s);
    if (s->nspans > s->span0)
        backend_write(s);
}

/* Try the next backend address; when none is left answer 502 or 504. */
static void start_connect(struct session *s)
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
        s->connect_deadline = now_of(s) + s->route->p.connect_timeout_ms / 1000.0;
        /* A Unix socket (or a fast loopback) may connect at once. */
        int err = sock_error(fd);
        if (err == 0 && addr->ss.ss_family == AF_UNIX) {
            backend_connected(s, addr);
            return;
        }
        if (err != 0 && err != EINPROGRESS) {
            log_msg(WLOG_DEBUG, "%s: backend %s: %s", s->peer, spec->text, strerror(err));
            s->connect_err = err;
            half_close(s, &s->be);
            continue;
        }
        return;
    }
}

/* Drive the TLS handshake with a backend; a failure moves on to the next
 * backend (and finally to 502). */
static void backend_tls_step(struct session *s)
{
    char why[300];
    int hs = io_handshake(&s->be.tr, why, sizeof(why));
    if (hs == 0)
        return;
    if (hs < 0) {
        log_msg(WLOG_WARN, "%s: route %s: backend %s: TLS handshake failed: %s", s->peer,
                s->route->name, s->backend->text, why);
        half_close(s, &s->be);
        s->connect_err = ECONNREFUSED;
        start_connect(s);
        return;
    }
    backend_connected(s, &s->backend->addrs[s->cursor.addr - 1]);
}

static void connect_done(struct session *s)
{
    int err = sock_error(s->be.tr.fd);
    if (err) {
        log_msg(WLOG_INFO, "%s: route %s: backend %s: %s", s->peer, s->route->name,
                s->backend->text, strerror(err));
        s->connect_err = err;
        half_close(s, &s->be);
        start_connect(s);
        return;
    }
    const struct sockaddr_any *addr = &s->backend->addrs[s->cursor.addr - 1];
    if (s->route->backend_tls) {
        sock_tune(s->be.tr.fd, addr);
        s->be.tr.ssl = tls_backend_ssl(s->route, s->backend->host, s->be.tr.fd);
        if (!s->be.tr.ssl) {
            log_msg(WLOG_ERROR, "%s: route %s: cannot set up TLS to %s", s->peer,
                    s->route->name, s->backend->text);
            half_close(s, &s->be);
            start_connect(s);
            return;
        }
        s->be_state = BE_TLS;
        backend_tls_step(s);
        return;
    }
    backend_connected(s, addr);
}

/* ---- events -------------------------------------------------------------- */

static void client_linger_read(struct session *s)
{
    char scratch[4096];
    ssize_t n = io_read(&s->cl.tr, scratch, sizeof(scratch));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        close_client(s);
}

static void client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = io->data;
    unsigned want = s->cl.tr.want;
    if ((want & IO_WRITE_WANTS_READ) && (revents & EV_READ))
        revents |= EV_WRITE;
    if ((want & (IO_READ_WANTS_WRITE | IO_HS_WANTS_WRITE)) && (revents & EV_WRITE))
        revents |= EV_READ;
    if (revents & EV_READ) {
        switch (s->cl_state) {
        case CL_REQUEST:
            client_read_request(s);
            break;
        case CL_OPEN:
            client_read_frames(s);
            break;
        case CL_LINGER:
        case CL_RESPONDING:
            client_linger_read(s);
            break;
        default:
            break;
        }
    }
    if ((revents & EV_WRITE) && s->cl.tr.fd >= 0)
        client_write(s);
    session_rearm(s);
}

static void backend_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = io->data;
    if (s->be_state == BE_CONNECTING) {
        connect_done(s);
    } else if (s->be_state == BE_TLS) {
        backend_tls_step(s);
    } else {
        int rd = revents & EV_READ, wr = revents & EV_WRITE;
        unsigned want = s->be.tr.want;
        if ((want & IO_WRITE_WANTS_READ) && rd)
            wr = 1;
        if ((want & IO_READ_WANTS_WRITE) && wr)
            rd = 1;
        if (wr && s->be.tr.fd >= 0)
            backend_write(s);
        if (rd && s->be.tr.fd >= 0 && !s->out && !s->down_done)
            backend_read(s);
    }
    session_rearm(s);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct session *s = t->data;
    ev_tstamp now = ev_now(loop);
    const struct route_params *p = s->route ? &s->route->p : &s->cfg->defaults;
    s->timer_at = 0;

    switch (s->cl_state) {
    case CL_REQUEST:
        if (now >= s->started + s->cfg->handshake_timeout_ms / 1000.0)
            drop(s, END_HANDSHAKE, "handshake timeout", 0);
        break;
    case CL_WAIT:
        if ((s->be_state == BE_CONNECTING || s->be_state == BE_TLS) &&
            now >= s->connect_deadline) {
            log_msg(WLOG_INFO, "%s: route %s: backend %s: connect timeout", s->peer,
                    s->route->name, s->backend->text);
            half_close(s, &s->be);
            s->connect_err = ETIMEDOUT;
            start_connect(s);
        }
        break;
    case CL_RESPONDING:
    case CL_LINGER:
        if (now >= s->linger_since + LINGER)
            close_client(s);
        break;
    case CL_OPEN:
        if (s->close_queued && now >= s->closing_since + CLOSE_WAIT) {
            drop(s, END_TIMEOUT, s->close_sent ? "close timeout: no close frame from the client"
                                             : "close timeout: client not reading",
                 0);
            break;
        }
        if (s->close_queued)
            break;
        if (p->ping_interval_ms) {
            if (s->ping_outstanding && now >= s->ping_sent + p->pong_timeout_ms / 1000.0) {
                drop(s, END_TIMEOUT, "pong timeout: client sent nothing after a ping", 0);
                break;
            }
            if (!s->ping_outstanding && now >= s->last_rx + p->ping_interval_ms / 1000.0) {
                s->ping_pending = 1;
                s->ping_outstanding = 1;
                s->ping_sent = now;
                client_write(s);
            }
        }
        if (p->idle_timeout_ms && now >= s->last_payload + p->idle_timeout_ms / 1000.0) {
            set_reason(s, END_TIMEOUT, "idle timeout");
            queue_close(s, WS_CLOSE_GOING_AWAY, "idle timeout");
            client_write(s);
        }
        break;
    case CL_CLOSED:
        if (now >= s->closing_since + CLOSE_WAIT)
            drop(s, END_TIMEOUT, "close timeout: backend did not take its bytes", 0);
        break;
    }
    session_rearm(s);
}

/* When the session's next timeout is due. */
static ev_tstamp next_deadline(struct session *s)
{
    const struct route_params *p = s->route ? &s->route->p : &s->cfg->defaults;
    ev_tstamp d = 0;
#define EARLIEST(t)                                                                                \
    do {                                                                                           \
        ev_tstamp t_ = (t);                                                                        \
        if (d == 0 || t_ < d)                                                                      \
            d = t_;                                                                                \
    } while (0)
    switch (s->cl_state) {
    case CL_REQUEST:
        EARLIEST(s->started + s->cfg->handshake_timeout_ms / 1000.0);
        break;
    case CL_WAIT:
        if (s->be_state == BE_CONNECTING || s->be_state == BE_TLS)
            EARLIEST(s->connect_deadline);
        break;
    case CL_RESPONDING:
    case CL_LINGER:
        EARLIEST(s->linger_since + LINGER);
        break;
    case CL_OPEN:
        if (s->close_queued) {
            EARLIEST(s->closing_since + CLOSE_WAIT);
            break;
        }
        if (p->ping_interval_ms) {
            if (s->ping_outstanding)
                EARLIEST(s->ping_sent + p->pong_timeout_ms / 1000.0);
            else
                EARLIEST(s->last_rx + p->ping_interval_ms / 1000.0);
        }
        if (p->idle_timeout_ms)
            EARLIEST(s->last_payload + p->idle_timeout_ms / 1000.0);
        break;
    case CL_CLOSED: /* the backend is still being flushed */
        EARLIEST(s->closing_since + CLOSE_WAIT);
        break;
    }
#undef EARLIEST
    return d;
}

/* Add what the transport needs to the events the relay wants: a TLS read may
 * wait for writability and a write for readability; bytes OpenSSL already
 * decrypted are handled now rather than after a readiness that may never
 * come. */
static int transport_events(struct session *s, struct half *h, int ev)
{
    const struct io *t = &h->tr;
    if (!t->ssl)
        return ev;
    if (!t->handshaken && h == &s->cl && s->cl_state == CL_REQUEST)
        return (t->want & IO_HS_WANTS_WRITE) ? EV_WRITE : EV_READ;
    if ((ev & EV_READ) && (t->want & IO_READ_WANTS_WRITE))
        ev |= EV_WRITE;
    if ((ev & EV_WRITE) && (t->want & IO_WRITE_WANTS_READ))
        ev |= EV_READ;
    if ((ev & EV_READ) && io_pending(t))
        ev_feed_event(s->w->loop, &h->io, EV_READ);
    return ev;
}

/* Derive what each half waits for from the session's state, close halves
 * whose work is done, and end the session when both are closed. */
static void session_rearm(struct session *s)
{
    /* The backend is done once it has every byte it is owed: an orderly end
     * (TLS close_notify, FIN). A client that dropped took the backend with it
     * (drop() closes both at once). */
    if (s->be_state == BE_OPEN && s->up_done && s->nspans == s->span0) {
        io_shutdown(&s->be.tr);
        close_backend(s);
    }
    if (s->cl_state == CL_CLOSED && s->be_state != BE_OPEN) {
        session_end(s);
        return;
    }
    /* Both close frames went and the backend is done: the relay is over even
     * if the client takes its time to close TCP (a drain need not wait). */
    if (s->cl_state == CL_LINGER && s->be_state != BE_OPEN)
        release_slot(s);

    int cev = 0, bev = 0;
    switch (s->cl_state) {
    case CL_REQUEST:
    case CL_LINGER:
        cev = EV_READ;
        break;
    case CL_RESPONDING:
        cev = EV_READ | EV_WRITE;
        break;
    case CL_OPEN:
        if (!s->up_done && (!s->in || buf_room(s->in) > 0) && s->nspans < SPANS_MAX)
            cev |= EV_READ;
        if (client_has_output(s))
            cev |= EV_WRITE;
        break;
    default:
        break;
    }
    if (s->be_state == BE_CONNECTING) {
        bev = EV_WRITE;
    } else if (s->be_state == BE_OPEN) {
        if (!s->down_done && !s->out && s->cl_state == CL_OPEN)
            bev |= EV_READ;
        if (s->nspans > s->span0)
            bev |= EV_WRITE;
    }
    if (s->be_state == BE_TLS)
        bev = (s->be.tr.want & IO_HS_WANTS_WRITE) ? EV_WRITE : EV_READ;
    half_set_events(s, &s->cl, transport_events(s, &s->cl, cev));
    half_set_events(s, &s->be, transport_events(s, &s->be, bev));

    ev_tstamp d = next_deadline(s);
    if (d == 0) {
        ev_timer_stop(s->w->loop, &s->timer);
        s->timer_at = 0;
    } else if (s->timer_at == 0 || d < s->timer_at) {
        /* Timers only move earlier here; a late timer re-checks and re-arms. */
        ev_tstamp after = d - now_of(s);
        ev_timer_stop(s->w->loop, &s->timer);
        ev_timer_set(&s->timer, after > 0 ? after : 0, 0);
        ev_timer_start(s->w->loop, &s->timer);
        s->timer_at = d;
    }
}

/* Take over an accepted client socket fd. */
void session_start(struct worker *w, int fd, const struct sockaddr_any *peer, int tls)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        log_msg(WLOG_ERROR, "out of memory for a new session");
        close(fd);
        return;
    }
    s->w = w;
    s->cfg = config_ref(w->cfg);
    s->cl.tr.fd = fd;
    s->be.tr.fd = -1;
    s->file.fd = -1;
    if (tls && !(s->cl.tr.ssl = tls_server_ssl(s->cfg, fd))) {
        log_msg(WLOG_ERROR, "%s: cannot start TLS", s->peer);
        config_unref(s->cfg);
        close(fd);
        free(s);
        return;
    }
    ev_io_init(&s->cl.io, client_cb, fd, 0);
    s->cl.io.data = s;
    ev_io_init(&s->be.io, backend_cb, -1, 0);
    s->be.io.data = s;
    ev_timer_init(&s->timer, timer_cb, 0, 0);
    s->timer.data = s;
    s->started = ev_now(w->loop);
    s->cl_state = CL_REQUEST;
    s->be_state = BE_NONE;
    sock_addr_str(peer, s->peer, sizeof(s->peer));

    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->nsessions++;
    session_rearm(s);
}

/* Begin an orderly stop: close 1001 once pending data is flushed. */
void session_go_away(struct session *s)
{
    if (s->cl_state == CL_OPEN) {
        set_reason(s, END_SHUTDOWN, "shutting down");
        queue_close(s, WS_CLOSE_GOING_AWAY, "going away");
        client_write(s);
    } else if (s->cl_state == CL_REQUEST || s->cl_state == CL_WAIT) {
        drop(s, END_SHUTDOWN, "shutting down", 0);
    }
    session_rearm(s);
}
