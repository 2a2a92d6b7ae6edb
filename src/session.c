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
 *        read while a frame is in flight. Responses of the handshake
 *        (handshake.c) use the same buffer when the socket does not take
 *        them at once.
 *
 * Control frames (pong, ping, close) wait in small slots and are written
 * between data frames, never inside one.
 *
 * Every callback ends in session_rearm(), which derives the events each
 * watcher needs from the buffer state (backpressure is computed, not
 * toggled), closes a half whose work is done, and frees the session once both
 * halves are closed: session_end() is the one place a session ends. */
#include "session.h"
#include "session_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "sock.h"
#include "tls.h"

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

static void session_rearm(struct session *s);
static int client_has_output(struct session *s);

/* Record why the session ends; the first reason wins. */
void session_set_reason(struct session *s, enum end_cause cause, const char *fmt, ...)
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

void session_half_close(struct session *s, struct half *h)
{
    if (h->tr.fd < 0)
        return;
    ev_io_stop(s->w->loop, &h->io);
    io_close(&h->tr);
    h->events = 0;
}

void session_close_backend(struct session *s)
{
    session_half_close(s, &s->be);
    if (s->be_state != BE_NONE)
        s->be_state = BE_CLOSED;
    s->nspans = s->span0 = 0;
}

static void close_client(struct session *s)
{
    session_half_close(s, &s->cl);
    s->cl_state = CL_CLOSED;
}

void session_release_slot(struct session *s)
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
    session_close_backend(s);
    ev_timer_stop(w->loop, &s->timer);
    session_release_slot(s);
    if (s->status == 101)
        metrics_add(&session_counters(s)
                         ->results[s->has_cause ? end_causes[s->cause].result : RESULT_ERROR],
                    1);

    struct access_record r = {
        .client = s->peer,
        .route = s->route ? s->route->name : "-",
        .backend = s->backend ? s->backend->text : "-",
        .status = s->status,
        .duration = session_now(s) - s->started,
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
    session_set_reason(s, END_SHUTDOWN, "%s", why);
    close_client(s);
    session_close_backend(s);
    session_end(s);
}

struct session *session_next(struct session *s)
{
    return s->next;
}

/* Mark both halves closed at once; session_rearm() ends the session. */
void session_drop(struct session *s, enum end_cause cause, const char *why, int err)
{
    if (err)
        session_set_reason(s, cause, "%s: %s", why, strerror(err));
    else
        session_set_reason(s, cause, "%s", why);
    close_client(s);
    session_close_backend(s);
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
    s->linger_since = session_now(s);
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
    s->closing_since = session_now(s);
}

/* A protocol violation: send the close code, relay nothing more from the
 * client, close without waiting for the client's reply. */
static void fail(struct session *s, uint16_t code, const char *why)
{
    session_set_reason(s, END_PROTOCOL, "protocol error: %s", why);
    s->failing = 1;
    s->up_done = 1;
    queue_close(s, code, why);
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
    metrics_add(&session_counters(s)->bytes_up, len);
    s->last_payload = session_now(s);
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
            session_set_reason(s, END_CLIENT_CLOSE, "client closed (%u)", ev->close_code);
        queue_close(s, ev->close_code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : ev->close_code, "");
        if (s->close_sent)
            client_finish(s);
        break;
    default: /* pongs only prove the client is alive */
        break;
    }
}

/* Decode what the client sent, collecting payload spans for the backend. */
void session_process_input(struct session *s)
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
            session_drop(s, END_ERROR, "out of memory", 0);
            return;
        }
    }
    struct buf *in = s->in;
    ssize_t n = io_read(&s->cl.tr, in->data + in->end, buf_room(in));
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        session_drop(s, END_CLIENT_DROP, "client read error", errno);
        return;
    }
    if (n == 0) {
        session_drop(s, END_CLIENT_DROP, "client closed the connection without a close frame", 0);
        return;
    }
    in->end += (size_t)n;
    s->last_rx = session_now(s);
    s->ping_outstanding = 0;
    session_process_input(s);
    if (s->nspans > s->span0)
        session_backend_write(s);
    if (client_has_output(s)) /* a pong, or the close reply: now, not a loop later */
        session_client_write(s);
}

/* Write pending payload spans to the backend. */
void session_backend_write(struct session *s)
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
            session_set_reason(s, END_BACKEND_ERROR,
                               "backend write error: %s (%zu bytes not delivered)", strerror(e),
                               (size_t)0);
            session_close_backend(s); /* client payload from now on is discarded */
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
    session_process_input(s);
    if (s->nspans > s->span0)
        session_backend_write(s);
}

/* ---- backend -> client ------------------------------------------------ */

static void backend_read(struct session *s)
{
    struct buf *out = buf_get(&s->w->pool, s->cfg->buffer_size);
    if (!out) {
        session_drop(s, END_ERROR, "out of memory", 0);
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
            session_set_reason(s, END_BACKEND_EOF, "backend closed the connection");
            queue_close(s, WS_CLOSE_NORMAL, "");
        } else {
            session_set_reason(s, END_BACKEND_ERROR, "backend read error: %s", strerror(errno));
            session_close_backend(s); /* client payload from now on is discarded */
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
    metrics_add(&session_counters(s)->bytes_down, (uint64_t)n);
    s->last_payload = session_now(s);
    session_client_write(s);
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
    } else if (s->close_queued && !s->close_in_flight && !s->close_sent && s->cl_state == CL_OPEN) {
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
        session_process_input(s);
        if (s->nspans > s->span0)
            session_backend_write(s);
        return;
    }
    s->writing = W_NONE;
}

/* Write to the client until done or the socket is full. */
void session_client_write(struct session *s)
{
    while (s->cl_state == CL_OPEN || s->cl_state == CL_RESPONDING) {
        if (s->writing == W_NONE && s->cl_state == CL_RESPONDING && s->file_left > 0 && !s->out) {
            ssize_t k = handshake_write_file(s);
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
            session_drop(s, END_CLIENT_DROP, "client write error", errno);
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
            handshake_read_request(s);
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
        session_client_write(s);
    session_rearm(s);
}

static void backend_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = io->data;
    if (s->be_state == BE_CONNECTING) {
        handshake_connect_done(s);
    } else if (s->be_state == BE_TLS) {
        handshake_backend_tls(s);
    } else {
        int rd = revents & EV_READ, wr = revents & EV_WRITE;
        unsigned want = s->be.tr.want;
        if ((want & IO_WRITE_WANTS_READ) && rd)
            wr = 1;
        if ((want & IO_READ_WANTS_WRITE) && wr)
            rd = 1;
        if (wr && s->be.tr.fd >= 0)
            session_backend_write(s);
        if (rd && s->be.tr.fd >= 0 && !s->out && !s->down_done)
            backend_read(s);
    }
    session_rearm(s);
}

/* Reading the client is paused by backpressure: the backend has not taken
 * what the client sent. */
static int client_paused(const struct session *s)
{
    return !s->up_done && s->in && (buf_room(s->in) == 0 || s->nspans >= SPANS_MAX);
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
            session_drop(s, END_HANDSHAKE, "handshake timeout", 0);
        break;
    case CL_WAIT:
        if ((s->be_state == BE_CONNECTING || s->be_state == BE_TLS) && now >= s->connect_deadline) {
            log_msg(WLOG_INFO, "%s: route %s: backend %s: connect timeout", s->peer, s->route->name,
                    s->backend->text);
            session_half_close(s, &s->be);
            s->connect_err = ETIMEDOUT;
            handshake_connect(s);
        }
        break;
    case CL_RESPONDING:
    case CL_LINGER:
        if (now >= s->linger_since + LINGER)
            close_client(s);
        break;
    case CL_OPEN:
        /* Not reading the client (backpressure), we would not see it leave:
         * ask the kernel. A FIN queued behind the data we do not read stays
         * invisible; the heartbeat ends such a session (no pong can be read
         * either). */
        if (client_paused(s) && sock_peer_gone(s->cl.tr.fd)) {
            session_drop(s, END_CLIENT_DROP,
                         "client reset TCP while its data waited for the backend", 0);
            break;
        }
        if (s->close_queued && now >= s->closing_since + CLOSE_WAIT) {
            session_drop(s, END_TIMEOUT,
                         s->close_sent ? "close timeout: no close frame from the client"
                                       : "close timeout: client not reading",
                         0);
            break;
        }
        if (s->close_queued)
            break;
        if (p->ping_interval_ms) {
            if (s->ping_outstanding && now >= s->ping_sent + p->pong_timeout_ms / 1000.0) {
                session_drop(
                    s, END_TIMEOUT,
                    client_paused(s)
                        ? "pong timeout: the backend took nothing, the client was not heard"
                        : "pong timeout: client sent nothing after a ping",
                    0);
                break;
            }
            if (!s->ping_outstanding && now >= s->last_rx + p->ping_interval_ms / 1000.0) {
                s->ping_pending = 1;
                s->ping_outstanding = 1;
                s->ping_sent = now;
                session_client_write(s);
            }
        }
        if (p->idle_timeout_ms && now >= s->last_payload + p->idle_timeout_ms / 1000.0) {
            session_set_reason(s, END_TIMEOUT, "idle timeout");
            queue_close(s, WS_CLOSE_GOING_AWAY, "idle timeout");
            session_client_write(s);
        }
        break;
    case CL_CLOSED:
        if (now >= s->closing_since + CLOSE_WAIT)
            session_drop(s, END_TIMEOUT, "close timeout: backend did not take its bytes", 0);
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
        if (client_paused(s))
            EARLIEST(session_now(s) + PAUSED_PROBE);
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
     * (session_drop() closes both at once). */
    if (s->be_state == BE_OPEN && s->up_done && s->nspans == s->span0) {
        io_shutdown(&s->be.tr);
        session_close_backend(s);
    }
    if (s->cl_state == CL_CLOSED && s->be_state != BE_OPEN) {
        session_end(s);
        return;
    }
    /* Both close frames went and the backend is done: the relay is over even
     * if the client takes its time to close TCP (a drain need not wait). */
    if (s->cl_state == CL_LINGER && s->be_state != BE_OPEN)
        session_release_slot(s);

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
        ev_tstamp after = d - session_now(s);
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
        session_set_reason(s, END_SHUTDOWN, "shutting down");
        queue_close(s, WS_CLOSE_GOING_AWAY, "going away");
        session_client_write(s);
    } else if (s->cl_state == CL_REQUEST || s->cl_state == CL_WAIT) {
        session_drop(s, END_SHUTDOWN, "shutting down", 0);
    }
    session_rearm(s);
}
