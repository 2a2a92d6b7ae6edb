/* relay.c - the data path of an upgraded session (see relay.h). */
#include "relay.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "check.h"

void relay_init(struct relay *r, struct io *cl, struct io *be, struct ev_loop *loop,
                struct buf_pool *pool, size_t bufsize, struct route_counters *ctr,
                struct outcome *end, bool base64, uint64_t max_message)
{
    memset(r, 0, sizeof(*r));
    r->cl = cl;
    r->be = be;
    r->loop = loop;
    r->pool = pool;
    r->bufsize = bufsize;
    r->budget = bufsize < RELAY_BUDGET ? bufsize : RELAY_BUDGET;
    r->ctr = ctr;
    r->end = end;
    r->base64 = base64;
    ws_decoder_init(&r->dec, max_message);
    r->last_rx = r->last_payload = ev_now(loop);
}

/* Client bytes still needed (see relay.h): in `in` from the first pending
 * payload span, compressed input not yet inflated or undecoded byte to its
 * end, and in zout from its first pending span to its end. Spans of each
 * buffer are in increasing order, so the first one is the lowest. */
static size_t held_up(const struct relay *r)
{
    size_t n = 0;
    bool in_seen = false, z_seen = false;
    size_t low = r->in ? r->in->start : 0;
    if (r->in && r->zin.active && r->zin.off < low)
        low = r->zin.off;
    for (int i = r->span0; i < r->nspans && !(in_seen && z_seen); i++) {
        uint32_t off = r->spans[i].off;
        if ((off & RELAY_ZOUT) && !z_seen) {
            z_seen = true;
            n += r->zout->end - (off & ~RELAY_ZOUT);
        } else if (!(off & RELAY_ZOUT) && !in_seen) {
            in_seen = true;
            low = off < low ? off : low;
        }
    }
    return n + (r->in ? r->in->end - low : 0);
}

/* Bring the buffered-bytes gauges up to date with this session's buffers. */
static void account(struct relay *r)
{
    size_t up = held_up(r), down = r->out ? buf_len(r->out) : 0;
    if (up != r->held_up)
        metrics_add(&r->ctr->buffered_up, (uint64_t)up - (uint64_t)r->held_up);
    if (down != r->held_down)
        metrics_add(&r->ctr->buffered_down, (uint64_t)down - (uint64_t)r->held_down);
    r->held_up = up;
    r->held_down = down;
}

void relay_free(struct relay *r)
{
    buf_put(r->pool, r->in);
    buf_put(r->pool, r->out);
    buf_put(r->pool, r->zout);
    r->in = r->out = r->zout = NULL;
    r->nspans = r->span0 = 0;
    r->zin.active = false;
    account(r);
    if (r->pmd_on)
        pmd_free(&r->pmd);
}

void relay_compress(struct relay *r, const struct pmd_params *params, int level)
{
    pmd_init(&r->pmd, params, level, r->dec.max_message);
    r->pmd_on = true;
    r->dec.rsv1_ok = true;
}

void relay_record(struct relay *r, struct recording *h)
{
    r->rec = h;
}

int relay_start(struct relay *r, const char *head, size_t len)
{
    ssize_t n = io_write(r->cl, head, len);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        outcome_note(r->end, END_CLIENT_DROP, "client write error: %s", strerror(errno));
        return -1;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    if (sent == len)
        return 0;
    /* what the socket did not take goes first, like a frame */
    if (!(r->out = buf_get(r->pool, len - sent))) {
        outcome_note(r->end, END_ERROR, "out of memory");
        return -1;
    }
    memcpy(r->out->data, head + sent, len - sent);
    r->out->end = len - sent;
    r->head_left = len - sent;
    account(r);
    return 0;
}

void relay_take_input(struct relay *r, struct buf *in)
{
    ASSERT(!r->in);
    r->in = in;
    metrics_add(&r->ctr->wire_up, buf_len(in));
    account(r);
}

void relay_close(struct relay *r, uint16_t code, const char *reason)
{
    r->down_done = true;
    if (r->close != RC_OPEN)
        return;
    r->close = RC_QUEUED;
    r->close_code = code;
    r->close_reason = reason;
    r->closing_since = ev_now(r->loop);
}

/* A protocol violation: send the close code, relay nothing more from the
 * client, and do not wait for its reply. */
static void relay_fail(struct relay *r, uint16_t code, const char *why)
{
    outcome_note(r->end, END_PROTOCOL, "protocol error: %s", why);
    r->no_reply = true;
    r->up_done = true;
    relay_close(r, code, why);
}

void relay_ping(struct relay *r)
{
    r->ping_due = true;
}

void relay_backend_gone(struct relay *r)
{
    r->nspans = r->span0 = 0;
    r->be_gone = true;
    r->down_done = true;
    account(r);
}

/* ---- client -> backend ------------------------------------------------ */

static bool spans_pending(const struct relay *r)
{
    return r->nspans > r->span0;
}

uint64_t relay_undelivered(const struct relay *r)
{
    uint64_t n = 0;
    for (int i = r->span0; i < r->nspans; i++)
        n += r->spans[i].len;
    return n;
}

/* The bytes a span points at: in `in` or, with RELAY_ZOUT, in zout. */
static uint8_t *span_ptr(const struct relay *r, const struct relay_span *sp)
{
    if (sp->off & RELAY_ZOUT)
        return r->zout->data + (sp->off & ~RELAY_ZOUT);
    return r->in->data + sp->off;
}

static void add_span(struct relay *r, size_t off, size_t len)
{
    if (spans_pending(r)) {
        struct relay_span *last = &r->spans[r->nspans - 1];
        if (last->off + last->len == off) {
            last->len += (uint32_t)len;
            return;
        }
    }
    ASSERT(r->nspans < RELAY_SPANS);
    r->spans[r->nspans].off = (uint32_t)off;
    r->spans[r->nspans].len = (uint32_t)len;
    r->nspans++;
}

/* Base64 sessions: decode p[0..*len) in place; at a message end the base64
 * must be complete. false after a failure (the relay is failing). */
static bool b64_part(struct relay *r, uint8_t *p, size_t *len, bool fin)
{
    long k = ws_b64_decode(&r->b64, p, *len);
    if (k < 0) {
        relay_fail(r, WS_CLOSE_BAD_DATA, "invalid base64");
        return false;
    }
    *len = (size_t)k;
    if (fin) {
        if (!ws_b64_complete(&r->b64)) {
            relay_fail(r, WS_CLOSE_BAD_DATA, "truncated base64");
            return false;
        }
        memset(&r->b64, 0, sizeof(r->b64));
    }
    return true;
}

/* Inflate the compressed input r->zin into zout as far as zout has room;
 * the output becomes spans. zin stays active while input or output remains
 * (zout full: resumed once the backend took zout's bytes). */
static void inflate_some(struct relay *r)
{
    if (r->up_done || r->be_gone) { /* payload is discarded from now on */
        r->zin.active = false;
        return;
    }
    if (!r->zout && !(r->zout = buf_get(r->pool, r->bufsize))) {
        outcome_note(r->end, END_ERROR, "out of memory");
        r->no_reply = true;
        r->up_done = true;
        r->zin.active = false;
        relay_close(r, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    struct buf *z = r->zout;
    if (buf_room(z) == 0 || r->nspans >= RELAY_SPANS)
        return; /* wait for the backend */
    size_t used, made;
    uint16_t code = 0;
    const char *why = NULL;
    enum pmd_status st =
        pmd_inflate(&r->pmd, r->in->data + r->zin.off, r->zin.len, r->zin.fin, r->zin.text,
                    z->data + z->end, buf_room(z), &used, &made, &code, &why);
    r->zin.off += (uint32_t)used;
    r->zin.len -= (uint32_t)used;
    r->zwork += made;
    if (st == PMD_ERROR) {
        r->zin.active = false;
        relay_fail(r, code, why);
        return;
    }
    bool done = st == PMD_DONE;
    if (r->base64 && !b64_part(r, z->data + z->end, &made, done && r->zin.fin)) {
        r->zin.active = false;
        return;
    }
    if (made > 0) {
        add_span(r, z->end | RELAY_ZOUT, made);
        z->end += made;
        r->last_payload = ev_now(r->loop);
    }
    r->zin.active = !done;
}

static void on_data(struct relay *r, const struct ws_event *ev, size_t base)
{
    size_t off = base + ev->off, len = ev->len;
    if (ev->compressed) {
        r->zin.off = (uint32_t)off;
        r->zin.len = (uint32_t)len;
        r->zin.fin = ev->fin;
        r->zin.text = ev->opcode == WS_OP_TEXT;
        r->zin.active = true;
        inflate_some(r);
        return;
    }
    if (r->base64 && !b64_part(r, r->in->data + off, &len, ev->fin))
        return;
    if (r->up_done || r->be_gone || len == 0)
        return; /* the client's close reply is still decoded after a backend failure */
    add_span(r, off, len);
    r->last_payload = ev_now(r->loop);
}

static void on_control(struct relay *r, const struct ws_event *ev)
{
    switch (ev->opcode) {
    case WS_OP_PING:
        if (r->close != RC_OPEN) /* closing: no pong may follow our close */
            break;
        memcpy(r->pong, r->dec.ctl, r->dec.ctl_len);
        r->pong_len = (uint8_t)r->dec.ctl_len;
        r->pong_due = true; /* answers this ping and any earlier unanswered one */
        break;
    case WS_OP_CLOSE:
        r->close_rcvd = true;
        r->up_done = true;
        if (r->close == RC_OPEN)
            outcome_note(r->end, END_CLIENT_CLOSE, "client closed (%u)", ev->close_code);
        relay_close(r, ev->close_code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : ev->close_code, "");
        break;
    default: /* pongs only prove the client is alive */
        break;
    }
}

/* Decode up to limit bytes of buffered input. Returns the bytes consumed. */
static size_t decode(struct relay *r, size_t limit)
{
    struct buf *in = r->in;
    size_t used = 0;
    while (!r->up_done && !r->zin.active && in->start < in->end && used < limit &&
           r->nspans < RELAY_SPANS) {
        struct ws_event ev;
        size_t base = in->start, avail = in->end - base;
        if (avail > limit - used)
            avail = limit - used;
        size_t k = ws_decode(&r->dec, in->data + base, avail, &ev);
        in->start += k;
        used += k;
        switch (ev.type) {
        case WS_EV_NONE:
            break;
        case WS_EV_DATA:
            on_data(r, &ev, base);
            break;
        case WS_EV_CONTROL:
            on_control(r, &ev);
            break;
        case WS_EV_ERROR:
            relay_fail(r, ev.close_code, ev.reason ? ev.reason : "invalid frame");
            break;
        }
    }
    return used;
}

/* Give the input buffers back once nothing in them is needed. */
static void release_input(struct relay *r)
{
    struct buf *in = r->in;
    if (r->up_done)
        r->zin.active = false;
    if (r->zout && !spans_pending(r) && !r->zin.active) {
        buf_put(r->pool, r->zout);
        r->zout = NULL;
    }
    if (in && !spans_pending(r) && ((in->start == in->end && !r->zin.active) || r->up_done)) {
        buf_put(r->pool, in);
        r->in = NULL;
        r->nspans = r->span0 = 0;
    }
}

/* Write pending spans. Returns 1 when all are written, 0 when the backend
 * is full, -1 after a write error (the backend is then failed). */
static int flush_spans(struct relay *r)
{
    while (spans_pending(r)) {
        struct iovec iov[RELAY_SPANS];
        int k = 0;
        for (int i = r->span0; i < r->nspans; i++, k++) {
            iov[k].iov_base = span_ptr(r, &r->spans[i]);
            iov[k].iov_len = r->spans[i].len;
        }
        ssize_t n = io_writev(r->be, iov, k);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            int e = errno;
            outcome_note(r->end, END_BACKEND_ERROR,
                         "backend write error: %s (%llu bytes not delivered)", strerror(e),
                         (unsigned long long)relay_undelivered(r));
            relay_backend_gone(r); /* client payload from now on is discarded */
            relay_close(r, WS_CLOSE_INTERNAL, "backend error");
            return -1;
        }
        r->bytes_up += (uint64_t)n;
        metrics_add(&r->ctr->bytes_up, (uint64_t)n);
        for (size_t left = (size_t)n; left > 0;) {
            struct relay_span *sp = &r->spans[r->span0];
            record_data(r->rec, RECORD_IN, span_ptr(r, sp), left < sp->len ? left : sp->len,
                        ev_now(r->loop));
            if (left >= sp->len) {
                left -= sp->len;
                r->span0++;
            } else {
                sp->off += (uint32_t)left;
                sp->len -= (uint32_t)left;
                left = 0;
            }
        }
    }
    r->nspans = r->span0 = 0;
    if (r->zout)
        r->zout->start = r->zout->end = 0; /* every inflated byte is out */
    return 1;
}

void relay_pump_up(struct relay *r)
{
    size_t budget = r->budget;
    while (r->in) {
        r->zwork = 0;
        size_t work = 0;
        if (r->zin.active)
            inflate_some(r);
        else
            work = decode(r, budget);
        work += r->zwork; /* inflated bytes cost like decoded ones */
        budget -= work < budget ? work : budget;
        if (spans_pending(r) && flush_spans(r) <= 0)
            break;
        if (budget == 0 || r->up_done || (r->in->start == r->in->end && !r->zin.active))
            break;
    }
    release_input(r);
    account(r);
}

void relay_backend_write(struct relay *r)
{
    if (flush_spans(r) > 0)
        relay_pump_up(r);
    else
        release_input(r);
    account(r);
}

int relay_client_read(struct relay *r)
{
    if (!r->in && !(r->in = buf_get(r->pool, r->bufsize))) {
        outcome_note(r->end, END_ERROR, "out of memory");
        return -1;
    }
    struct buf *in = r->in;
    size_t want = buf_room(in) < r->budget ? buf_room(in) : r->budget;
    ssize_t n = io_read(r->cl, in->data + in->end, want);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        outcome_note(r->end, END_CLIENT_DROP, "client read error: %s", strerror(errno));
        return -1;
    }
    if (n == 0) {
        outcome_note(r->end, END_CLIENT_DROP, "client closed the connection without a close frame");
        return -1;
    }
    in->end += (size_t)n;
    metrics_add(&r->ctr->wire_up, (uint64_t)n);
    r->last_rx = ev_now(r->loop);
    relay_pump_up(r);
    return 0;
}

/* ---- backend -> client ------------------------------------------------ */

/* The backend failed or ran out of memory: fail the relay with 1011. */
static void backend_failed(struct relay *r, enum end_cause cause, const char *what)
{
    outcome_note(r->end, cause, "%s (%llu bytes not delivered)", what,
                 (unsigned long long)relay_undelivered(r));
    relay_backend_gone(r); /* client payload from now on is discarded */
    relay_close(r, WS_CLOSE_INTERNAL, cause == END_ERROR ? "out of memory" : "backend error");
}

/* Largest input whose compressed frame payload fits room bytes. */
static size_t deflate_input_max(size_t room)
{
    size_t n = room > 13 ? (room - 13) / 73 * 64 : 0;
    while (n > 0 && pmd_deflate_bound(n) > room)
        n--;
    return n;
}

/* Frame len payload bytes at src (read from the backend, base64-encoded on
 * base64 sessions) into out: compressed (pmd_frame) or in place after the
 * headroom. false when out of memory. */
static bool frame_out(struct relay *r, struct buf *out, const uint8_t *src, size_t len,
                      enum ws_opcode op)
{
    size_t head = WS_MAX_SERVER_HEADER;
    if (r->pmd_on) {
        size_t start, fl = pmd_frame(&r->pmd, op, src, len, out->data, out->cap, &start);
        if (fl == 0)
            return false;
        out->start = start;
        out->end = start + fl;
        return true;
    }
    size_t hl = ws_header_len(len);
    ws_header(out->data + head - hl, op, len);
    out->start = head - hl;
    out->end = head + len;
    return true;
}

/* relay_backend_read without the accounting. */
static void backend_read(struct relay *r)
{
    ASSERT(!r->out && !r->down_done);
    struct buf *out = buf_get(r->pool, r->bufsize);
    /* compressing: bytes are read into a second buffer and deflated into out */
    struct buf *raw = out && r->pmd_on ? buf_get(r->pool, r->bufsize) : NULL;
    if (!out || (r->pmd_on && !raw)) {
        buf_put(r->pool, out);
        backend_failed(r, END_ERROR, "out of memory");
        return;
    }
    size_t head = WS_MAX_SERVER_HEADER, room = out->cap - head;
    if (room > r->budget)
        room = r->budget;
    uint8_t *area = out->data + head; /* where the payload (base64 text) is built */
    if (raw) {
        room = deflate_input_max(room);
        if (room > raw->cap)
            room = raw->cap;
        area = raw->data;
    }
    uint8_t *dst = area;
    size_t want = room;
    if (r->base64) {
        /* Read raw bytes into the tail and encode them forward into the
         * front: the encoder's output never overtakes its input. */
        want = (room - 4) / 4 * 3;
        dst = area + room - want;
    }
    ssize_t n = io_read(r->be, dst, want);
    if (n <= 0) {
        int e = errno;
        buf_put(r->pool, out);
        buf_put(r->pool, raw);
        if (n < 0 && (e == EAGAIN || e == EINTR))
            return;
        if (n == 0) {
            outcome_note(r->end, END_BACKEND_EOF, "backend closed the connection");
            relay_close(r, WS_CLOSE_NORMAL, "");
        } else {
            char what[128];
            snprintf(what, sizeof(what), "backend read error: %s", strerror(e));
            backend_failed(r, END_BACKEND_ERROR, what);
        }
        return;
    }
    record_data(r->rec, RECORD_OUT, dst, (size_t)n, ev_now(r->loop));
    size_t len = (size_t)n;
    enum ws_opcode op = WS_OP_BINARY;
    if (r->base64) {
        len = ws_base64_encode((char *)area, dst, len);
        op = WS_OP_TEXT;
    }
    bool ok = frame_out(r, out, area, len, op);
    buf_put(r->pool, raw);
    if (!ok) {
        buf_put(r->pool, out);
        backend_failed(r, END_ERROR, "out of memory");
        return;
    }
    r->out = out;
    r->bytes_down += (uint64_t)n;
    metrics_add(&r->ctr->bytes_down, (uint64_t)n);
    r->last_payload = ev_now(r->loop);
}

void relay_backend_read(struct relay *r)
{
    backend_read(r);
    account(r);
}

/* Pick the next thing to write: control frames go between data frames, the
 * close frame goes last. Returns false when there is nothing. */
static bool pick_write(struct relay *r)
{
    if (r->close == RC_SENT) /* nothing may follow a close frame */
        return false;
    if (r->pong_due && r->close == RC_OPEN) {
        r->ctl_len = ws_header(r->ctl, WS_OP_PONG, r->pong_len);
        memcpy(r->ctl + r->ctl_len, r->pong, r->pong_len);
        r->ctl_len += r->pong_len;
        r->pong_due = false;
    } else if (r->ping_due && r->close == RC_OPEN) {
        r->ctl_len = ws_header(r->ctl, WS_OP_PING, 0);
        r->ping_due = false;
    } else if (r->out && buf_len(r->out) > 0) {
        r->writing = W_OUT;
        return true;
    } else if (r->close == RC_QUEUED) {
        r->ctl_len = ws_close_frame(r->ctl, r->close_code, r->close_reason);
        r->close = RC_WRITING;
        if (r->close_rcvd || r->no_reply) /* the session closes once it is out */
            r->cl->want |= IO_LAST;
    } else {
        return false;
    }
    r->ctl_off = 0;
    r->writing = W_CTL;
    return true;
}

/* The frame being written is out. */
static void wrote(struct relay *r)
{
    if (r->writing == W_OUT) {
        buf_put(r->pool, r->out);
        r->out = NULL;
    } else if (r->close == RC_WRITING) {
        r->close = RC_SENT;
    }
    r->writing = W_NONE;
}

/* relay_client_write without the accounting. */
static int client_write(struct relay *r)
{
    while (r->writing != W_NONE || pick_write(r)) {
        const uint8_t *p;
        size_t len;
        if (r->writing == W_OUT) {
            p = r->out->data + r->out->start;
            len = buf_len(r->out);
        } else {
            p = r->ctl + r->ctl_off;
            len = r->ctl_len - r->ctl_off;
        }
        ssize_t n = io_write(r->cl, p, len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            outcome_note(r->end, END_CLIENT_DROP, "client write error: %s", strerror(errno));
            return -1;
        }
        size_t frame_bytes = (size_t)n;
        if (r->writing == W_OUT) {
            r->out->start += (size_t)n;
            size_t h = r->head_left < (size_t)n ? r->head_left : (size_t)n;
            r->head_left -= h; /* the 101 head is not a frame */
            frame_bytes -= h;
        } else {
            r->ctl_off += (size_t)n;
        }
        metrics_add(&r->ctr->wire_down, frame_bytes);
        if ((size_t)n < len)
            return 0;
        wrote(r);
    }
    return 0;
}

int relay_client_write(struct relay *r)
{
    int rc = client_write(r);
    account(r);
    return rc;
}

/* ---- derived state ---------------------------------------------------- */

bool relay_record_waits(const struct relay *r)
{
    return r->rec && record_congested() && record_live(r->rec);
}

bool relay_wants_client_read(const struct relay *r)
{
    return !r->up_done && (!r->in || buf_room(r->in) > 0) && r->nspans < RELAY_SPANS &&
           !relay_record_waits(r);
}

bool relay_wants_client_write(const struct relay *r)
{
    if (r->close == RC_SENT)
        return false;
    return r->writing != W_NONE || (r->close == RC_OPEN && (r->pong_due || r->ping_due)) ||
           (r->out && buf_len(r->out) > 0) || r->close == RC_QUEUED;
}

bool relay_wants_backend_read(const struct relay *r)
{
    return !r->down_done && !r->be_gone && !r->out && !relay_record_waits(r);
}

bool relay_wants_backend_write(const struct relay *r)
{
    return spans_pending(r);
}

bool relay_up_pending(const struct relay *r)
{
    return r->in && !r->up_done && (r->in->start < r->in->end || r->zin.active) &&
           !spans_pending(r);
}

bool relay_client_paused(const struct relay *r)
{
    return !r->up_done && r->in && (buf_room(r->in) == 0 || r->nspans >= RELAY_SPANS);
}

bool relay_client_done(const struct relay *r)
{
    return r->close == RC_SENT && (r->close_rcvd || r->no_reply);
}

bool relay_backend_done(const struct relay *r)
{
    return r->up_done && !spans_pending(r);
}
