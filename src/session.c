/* session.c - one client connection from accept to close.
 *
 * A session has two halves, the client and the backend, each a transport
 * (io.h) with one watcher, and one timer. Its life is one phase:
 *
 *   REQUEST --> CONNECT --> RELAY --> CLOSING --> LINGER --> FLUSH --> CLOSED
 *      |           |          |          |           |         ^
 *      +-----------+--> RESPOND --> LINGER           +---------+
 *   (any phase may go straight to CLOSED)
 *
 *   REQUEST  TLS handshake and request head (handshake_timeout)
 *   CONNECT  the upgrade is admitted; the backend is being dialled (dial.c)
 *   RESPOND  an HTTP answer (an error, health, metrics or a file) is written
 *   RELAY    101 sent: frames relayed both ways (relay.c)
 *   CLOSING  a close frame is queued or sent: the close handshake finishes
 *   LINGER   our last byte is out: the client's remaining bytes are discarded
 *            until it closes (the backend may still take what it is owed)
 *   FLUSH    the client is gone after a clean close; the backend still takes
 *            what it is owed
 *   CLOSED   both halves are closed; the session is freed
 *
 * The transitions are written in enter() and asserted against a table; the
 * layers below (gate.c before the 101, dial.c for the backend, relay.c for
 * the data) never call back here: they return results and note reasons in
 * the session's outcome. Every callback ends in settle(), which derives the
 * next phase from the state of the layers, frees a CLOSED session (the one
 * place a session ends), and rearms: watcher events derived from buffer state
 * (backpressure is computed, not toggled) and one timer for the earliest
 * deadline, whose action next_due() names. */
#include "session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "check.h"
#include "dial.h"
#include "edge.h"
#include "gate.h"
#include "http.h"
#include "iptable.h"
#include "log.h"
#include "outcome.h"
#include "record.h"
#include "proxy.h"
#include "pwcheck.h"
#include "redis.h"
#include "relay.h"
#include "resolver.h"
#include "sock.h"
#include "tls.h"
#include "upgrade.h"
#include "worker.h"

#define CLOSE_WAIT 5.0      /* seconds for the close handshake and final flushes */
#define LINGER 2.0          /* seconds to drain a client after our last byte */
#define PAUSED_PROBE 1.0    /* seconds between checks of a client we do not read */
#define RECORD_WAIT 1.0     /* seconds a session waits for a congested recording queue */
#define KEEPALIVE_AFTER 2.0 /* seconds a relay lives before its backend gets TCP keepalive */
#define LOOKUP_GRACE 0.5    /* beyond connect_timeout: Redis and DNS answer first */

enum phase {
    PH_REQUEST,
    PH_LOOKUP,
    PH_CONNECT,
    PH_RESPOND,
    PH_RELAY,
    PH_CLOSING,
    PH_LINGER,
    PH_FLUSH,
    PH_CLOSED
};

static const char *const phase_names[] = {"request", "lookup", "connect", "respond", "relay",
                                          "closing", "linger", "flush",   "closed"};

#define TO(p) (1u << (p))
static const unsigned next_phases[] = {
    [PH_REQUEST] = TO(PH_LOOKUP) | TO(PH_CONNECT) | TO(PH_RESPOND) | TO(PH_CLOSED),
    [PH_LOOKUP] = TO(PH_CONNECT) | TO(PH_RESPOND) | TO(PH_CLOSED),
    [PH_CONNECT] = TO(PH_RELAY) | TO(PH_RESPOND) | TO(PH_CLOSED),
    [PH_RESPOND] = TO(PH_LINGER) | TO(PH_CLOSED),
    [PH_RELAY] = TO(PH_CLOSING) | TO(PH_FLUSH) | TO(PH_CLOSED),
    [PH_CLOSING] = TO(PH_LINGER) | TO(PH_FLUSH) | TO(PH_CLOSED),
    [PH_LINGER] = TO(PH_FLUSH) | TO(PH_CLOSED),
    [PH_FLUSH] = TO(PH_CLOSED),
    [PH_CLOSED] = 0,
};

/* What the timer does when the earliest deadline is due. */
enum action {
    ACT_NONE,
    ACT_HANDSHAKE_TIMEOUT,
    ACT_LOOKUP_TIMEOUT,
    ACT_CONNECT_TIMEOUT,
    ACT_RESPONSE_STALLED,
    ACT_RESUME,         /* client input waits for another turn (the per-wake-up budget) */
    ACT_PROBE,          /* a client we do not read: did it reset? */
    ACT_RECORD_GIVE_UP, /* waited RECORD_WAIT for the recording queue: stop recording */
    ACT_CLOSE_TIMEOUT,
    ACT_PONG_TIMEOUT,
    ACT_PING,
    ACT_IDLE,
    ACT_LINGER_OVER,
    ACT_FLUSH_TIMEOUT,
    ACT_KEEPALIVE, /* the session outlived KEEPALIVE_AFTER: TCP keepalive on the backend */
};

struct half {
    struct io tr;
    ev_io io;
    int events; /* what the watcher waits for now */
};

struct session {
    struct session *prev, *next;
    struct worker *w;
    struct config *cfg;
    enum phase phase;
    struct half cl, be;
    ev_timer timer;
    ev_tstamp timer_at; /* when the timer fires; 0 = not running */
    ev_tstamp started;
    struct outcome end;
    char peer[64];

    /* who is connecting (DESIGN.md): the TCP peer, the client address */
    unsigned flags;            /* SESSION_* of the listener; PROXY and TLS_AUTO cleared when read */
    bool handshaking;          /* counted in gw->handshaking (max_handshakes) */
    bool holds_gw_ip;          /* counted in [gateway] max_connections_per_ip under gw_key */
    bool has_proxy_dst;        /* a PROXY header named a destination */
    struct iptable_key gw_key; /* the gateway-wide per-address count */
    struct netaddr peer_addr;  /* the TCP peer */
    struct netaddr client;     /* PROXY source or peer, then forwarding headers */
    struct netaddr proxy_dst;  /* the PROXY header's destination */
    uint8_t *pp;               /* backend_proxy_protocol header (malloc'd), or NULL */

    /* REQUEST: a head that arrived in pieces (malloc'd, exactly its size) */
    uint8_t *head; /* a partial request head; in LOOKUP, the request whose password is checked */
    size_t head_len;
    char *tls_name; /* verified client certificate name (malloc'd), or NULL */

    /* LOOKUP: a Basic-auth password being checked, a Redis token lookup or a
     * backend name being resolved */
    struct pwcheck_job *pw_q;
    int password;     /* the password check's answer: 1 matched, -1 did not, 0 none yet */
    bool early_bytes; /* the client sent more during the check: not watched further */
    struct redis_req *redis_q;
    struct resolver_req *dns_q;
    ev_tstamp lookup_since;
    struct backend_spec *specs; /* what is dialled when names were resolved (owned) */
    size_t nspecs, resolving;   /* specs[resolving] is being resolved */

    /* CONNECT and on */
    const struct route *route;
    struct gate_verdict v; /* the answer to the request */
    struct buf *pipelined; /* client bytes after the request head */
    bool holds_slot;       /* counted in the connection limits */
    bool busy;             /* counted in w->nbusy: drain waits for it */
    struct dial dial;

    /* RESPOND */
    ev_tstamp progress; /* last byte of the response written */
    bool client_eof;    /* the client half-closed: keep writing, stop reading */
    bool resp_is_body;  /* the response buffer holds file bytes (TLS) */
    uint64_t body_sent; /* bytes of the file written */

    /* RELAY and on */
    struct relay relay;
    ev_tstamp ping_sent;     /* a ping is outstanding while ping_sent > relay.last_rx */
    ev_tstamp probe_from;    /* reading the client paused (backpressure) since, or 0 */
    ev_tstamp rec_wait_from; /* reading paused for the recording queue since, or 0 */
    ev_tstamp linger_since;
    ev_tstamp relayed_at; /* the 101 went out */
    bool keepalive_on;    /* TCP keepalive set on the backend (after KEEPALIVE_AFTER) */
};

static ev_tstamp now_of(const struct session *s)
{
    return ev_now(s->w->loop);
}

/* ---- halves ----------------------------------------------------------- */

static void half_watch(struct session *s, struct half *h, int want)
{
    int events = h->tr.fd < 0 ? 0 : io_events(&h->tr, want);
    if (h->events != events) {
        ev_io_stop(s->w->loop, &h->io);
        if (events) {
            ev_io_set(&h->io, h->tr.fd, events);
            ev_io_start(s->w->loop, &h->io);
        }
        h->events = events;
    }
    /* Bytes OpenSSL already decrypted are handled now rather than after a
     * readiness that may never come. */
    if ((events & EV_READ) && io_pending(&h->tr))
        ev_feed_event(s->w->loop, &h->io, EV_READ);
}

static void half_unwatch(struct session *s, struct half *h)
{
    ev_io_stop(s->w->loop, &h->io);
    h->events = 0;
}

static void half_close(struct session *s, struct half *h)
{
    half_unwatch(s, h);
    if (h->tr.fd >= 0)
        io_close(&h->tr);
}

static bool half_open(const struct half *h)
{
    return h->tr.fd >= 0;
}

/* ---- the session's life ----------------------------------------------- */

static void release_slot(struct session *s)
{
    if (s->holds_slot) {
        gate_release_slot(s->w->gw, s->route);
        s->holds_slot = false;
    }
    gate_release_ip(s->w->gw, &s->v, now_of(s));
}

/* The TLS/HTTP handshake is over (max_handshakes): the listeners may
 * accept again (listener.c notices). */
static void handshake_over(struct session *s)
{
    if (s->handshaking)
        __atomic_sub_fetch(&s->w->gw->handshaking, 1, __ATOMIC_RELAXED);
    s->handshaking = false;
}

/* The gateway-wide per-address count for s->client, from accept (or the
 * PROXY header) on. Returns 0, or -1 when the address is over
 * [gateway] max_connections_per_ip. */
static int count_client(struct session *s)
{
    struct gateway *gw = s->w->gw;
    if (s->holds_gw_ip)
        iptable_conn_release(gw->iptable, &s->gw_key, now_of(s));
    s->holds_gw_ip = false;
    uint32_t max = s->cfg->defaults.max_connections_per_ip;
    if (max == 0)
        return 0;
    s->gw_key.scope = IPTABLE_GATEWAY;
    netaddr_key(&s->client, s->cfg->ipv6_prefix, &s->gw_key.addr);
    if (iptable_conn_acquire(gw->iptable, &s->gw_key, max, now_of(s)) < 0)
        return -1;
    s->holds_gw_ip = true;
    return 0;
}

static void set_busy(struct session *s, bool busy)
{
    if (s->busy != busy)
        s->w->nbusy += busy ? 1 : -1;
    s->busy = busy;
}

/* The relay is over (both close frames went, the backend is done): it no
 * longer counts in the limits or for drain, even if the client takes its
 * time to close TCP. */
static void relay_over(struct session *s)
{
    release_slot(s);
    set_busy(s, false);
}

static void lookup_cancel(struct session *s);
static void free_specs(struct session *s);
static void settle(struct session *s);

/* Move to phase to: the one place a phase changes. */
static void enter(struct session *s, enum phase to)
{
    ASSERT(next_phases[s->phase] & TO(to));
    if (s->phase == PH_REQUEST)
        handshake_over(s);
    if (log_enabled(WLOG_DEBUG))
        log_msg(WLOG_DEBUG, "%s: %s -> %s", s->peer, phase_names[s->phase], phase_names[to]);
    s->phase = to;
    switch (to) {
    case PH_RESPOND:
        lookup_cancel(s);
        release_slot(s);
        half_close(s, &s->be);
        s->progress = now_of(s);
        set_busy(s, s->v.file_left > 0);
        break;
    case PH_RELAY:
        set_busy(s, true);
        break;
    case PH_LINGER:
        s->linger_since = now_of(s);
        break;
    case PH_FLUSH:
        half_close(s, &s->cl);
        break;
    case PH_CLOSED:
        lookup_cancel(s);
        half_close(s, &s->cl);
        half_close(s, &s->be);
        set_busy(s, false);
        break;
    default:
        break;
    }
}

/* End the session now: note why, close both halves. settle() frees it. */
static void session_close(struct session *s, enum end_cause cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void session_close(struct session *s, enum end_cause cause, const char *fmt, ...)
{
    if (!s->end.set) {
        char why[sizeof(s->end.reason)];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        outcome_note(&s->end, cause, "%s", why);
    }
    if (s->phase != PH_CLOSED)
        enter(s, PH_CLOSED);
}

/* Our last byte to the client is out. When the client has nothing unread
 * queued, close at once (FIN after our bytes); else shut our side down and
 * discard what it still sends until it closes, so a reset cannot destroy our
 * last bytes in flight (LINGER). */
static void client_finish(struct session *s)
{
    enter(s, PH_LINGER);
    uint8_t probe;
    ssize_t n = io_read(&s->cl.tr, &probe, 1);
    if (n == 0 || (n < 0 && (errno == EAGAIN || errno == EINTR) && !io_pending(&s->cl.tr))) {
        io_notify_close(&s->cl.tr);
        half_close(s, &s->cl);
    } else {
        io_shutdown(&s->cl.tr);
    }
}

/* The client connection is finished (EOF or error, noted): after a clean
 * close the backend still gets what it is owed, else both halves go. */
static void client_gone(struct session *s)
{
    if (s->relay.close_rcvd && half_open(&s->be) && !relay_backend_done(&s->relay))
        enter(s, PH_FLUSH);
    else
        session_close(s, END_CLIENT_DROP, "client gone");
}

/* The one place a session is freed: log it, release everything. */
static void session_free(struct session *s)
{
    struct worker *w = s->w;
    ASSERT(s->phase == PH_CLOSED && !half_open(&s->cl) && !half_open(&s->be) && !s->busy);
    ev_timer_stop(w->loop, &s->timer);
    release_slot(s);
    if (s->holds_gw_ip)
        iptable_conn_release(w->gw->iptable, &s->gw_key, now_of(s));
    char client[NETADDR_STRLEN];
    bool other = memcmp(&s->client, &s->peer_addr, sizeof(s->client)) != 0;
    if (s->v.status == 101)
        metrics_add(&s->route->stats->slot[w->id].results[outcome_result(&s->end)], 1);
    struct relay *r = &s->relay;
    bool relayed = s->v.status == 101;
    struct access_record rec = {
        .client = other ? netaddr_str(&s->client, client, sizeof(client)) : s->peer,
        .peer = other ? s->peer : NULL,
        .route = s->route ? s->route->name : "-",
        .backend = s->dial.backend ? s->dial.backend->text : "-",
        .status = s->v.status,
        .duration = now_of(s) - s->started,
        .bytes_up = relayed ? r->bytes_up : 0,
        .bytes_down = relayed ? r->bytes_down : s->body_sent,
        .close_code = relayed && r->close == RC_SENT ? r->close_code : 0,
        .closed_by = outcome_by(&s->end),
        .reason = s->end.reason[0] ? s->end.reason : "-",
        .client_name = s->tls_name,
    };
    if (!s->v.builtin || s->cfg->log_health_checks) /* probes and scrapes: not by default */
        log_access(&rec);

    record_close(r->rec, now_of(s));
    r->rec = NULL;
    relay_free(r);
    buf_put(&w->pool, s->pipelined);
    buf_put(&w->pool, s->v.resp);
    static_close(&s->v.file);
    gate_verdict_free(&s->v);
    free_specs(s);
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->nsessions--;
    config_unref(s->cfg);
    if (s->head) /* it may hold a password */
        OPENSSL_cleanse(s->head, s->head_len);
    free(s->head);
    free(s->tls_name);
    free(s->pp);
    free(s);
}

/* ---- RESPOND ---------------------------------------------------------- */

/* Answer with the verdict's response (and file), then close. */
static void respond(struct session *s)
{
    if (s->v.failure)
        metrics_failure(&s->w->gw->metrics, s->route ? s->route->stats : NULL, s->w->id,
                        s->v.status);
    if (!s->v.resp) {
        session_close(s, END_ERROR, "out of memory");
        return;
    }
    if (s->v.why)
        outcome_note(&s->end, END_HANDSHAKE, "%d %s", s->v.status, s->v.why);
    else
        outcome_note(&s->end, END_HANDSHAKE, "%d", s->v.status);
    enter(s, PH_RESPOND);
}

static void respond_error(struct session *s, int status, const char *why)
{
    buf_put(&s->w->pool, s->v.resp);
    s->v.kind = GATE_RESPOND;
    s->v.status = status;
    s->v.why = why;
    s->v.failure = true;
    s->v.resp = gate_error_response(&s->w->pool, status, why);
    respond(s);
}

/* Send the next piece of the file: sendfile on plain sockets, through the
 * response buffer under TLS. Returns bytes moved, 0 when the socket is full,
 * -1 after a failure (the session is closed). */
static ssize_t send_file_chunk(struct session *s, size_t chunk)
{
    struct gate_verdict *v = &s->v;
    if (chunk > v->file_left)
        chunk = (size_t)v->file_left;
    ssize_t n;
    if (!s->cl.tr.ssl) {
        n = sendfile(s->cl.tr.fd, v->file.fd, NULL, chunk);
    } else {
        if (chunk > v->resp->cap)
            chunk = v->resp->cap;
        n = read(v->file.fd, v->resp->data, chunk);
        if (n > 0) {
            v->resp->start = 0;
            v->resp->end = (size_t)n;
            s->resp_is_body = true;
        }
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        session_close(s, END_ERROR, "static file: %s", n < 0 ? strerror(errno) : "file shrank");
        return -1;
    }
    v->file_left -= (uint64_t)n;
    if (!s->cl.tr.ssl)
        s->body_sent += (uint64_t)n;
    return n;
}

/* Write the response: what waits in the response buffer (the head, or
 * under TLS a piece of the file), then one piece of the file per call (the
 * socket's next readiness brings the next), so a download never holds the
 * worker. */
static void respond_write(struct session *s)
{
    struct gate_verdict *v = &s->v;
    if (buf_len(v->resp) > 0) {
        if (v->file_left == 0) /* the answer's last bytes: client_finish follows */
            s->cl.tr.want |= IO_LAST;
        ssize_t n = io_write(&s->cl.tr, v->resp->data + v->resp->start, buf_len(v->resp));
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                session_close(s, END_CLIENT_DROP, "client write error: %s", strerror(errno));
            return;
        }
        v->resp->start += (size_t)n;
        if (s->resp_is_body)
            s->body_sent += (uint64_t)n;
        s->progress = now_of(s);
        if (buf_len(v->resp) > 0)
            return;
    }
    if (v->file_left == 0) {
        client_finish(s);
        return;
    }
    size_t chunk = s->cfg->buffer_size < RELAY_BUDGET ? s->cfg->buffer_size : RELAY_BUDGET;
    if (send_file_chunk(s, chunk) > 0)
        s->progress = now_of(s);
}

/* Read and discard what the client sends after we answered (RESPOND,
 * LINGER). Its EOF ends LINGER; in RESPOND the answer goes on. */
static void discard_client(struct session *s)
{
    char scratch[4096];
    ssize_t n = io_read(&s->cl.tr, scratch, sizeof(scratch));
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    if (s->phase == PH_RESPOND && n == 0) {
        s->client_eof = true; /* a half-close after the request: keep sending */
        return;
    }
    if (s->phase == PH_RESPOND) {
        session_close(s, END_CLIENT_DROP, "client read error: %s", strerror(errno));
        return;
    }
    half_close(s, &s->cl); /* LINGER: settle() moves on */
}

/* ---- CONNECT and RELAY ------------------------------------------------ */

/* The route records: open this session's recording (NULL when the writer
 * can not take it; the session goes on unrecorded). */
static void start_recording(struct session *s)
{
    static uint64_t last_id; /* shared by the workers */
    const struct route_params *p = &s->route->p;
    if (!p->record)
        return;
    uint64_t id = __atomic_add_fetch(&last_id, 1, __ATOMIC_RELAXED);
    relay_record(&s->relay,
                 record_open(p->record, (enum record_format)p->record_format, s->route->name,
                             s->peer, s->dial.backend ? s->dial.backend->text : "-", now_of(s),
                             id));
}

/* The backend is up: send the 101 and relay, beginning with what the client
 * pipelined after its request. */
static void start_relay(struct session *s)
{
    struct relay *r = &s->relay;
    relay_init(r, &s->cl.tr, &s->be.tr, s->w->loop, &s->w->pool, s->cfg->buffer_size,
               &s->route->stats->slot[s->w->id], &s->end, s->v.base64,
               s->route->p.max_message_size);
    enter(s, PH_RELAY);
    io_offload(&s->cl.tr); /* the gate is done with the SSL: records go on without it */
    io_offload(&s->be.tr);
    s->relayed_at = now_of(s);
    metrics_connect_time(&s->route->stats->slot[s->w->id], ev_time() - s->dial.started);
    struct upgrade_result res = {.status = 101, .subprotocol = s->v.subprotocol};
    if (s->v.pmd) {
        res.extensions = s->v.pmd_resp;
        relay_compress(r, &s->v.pmd_params, (int)s->route->p.compression_level);
    }
    memcpy(res.accept, s->v.accept, sizeof(s->v.accept));
    char head[512];
    size_t len = upgrade_response_101(&res, head, sizeof(head));
    free(s->v.pmd_resp); /* sent: idle sessions hold nothing of the handshake */
    s->v.pmd_resp = NULL;
    if (relay_start(r, head, len) < 0) {
        session_close(s, END_CLIENT_DROP, "client write error");
        return;
    }
    start_recording(s);
    if (s->pipelined) {
        relay_take_input(r, s->pipelined);
        s->pipelined = NULL;
        relay_pump_up(r);
    }
}

static void on_dial(struct session *s, enum dial_state st)
{
    if (st == DIAL_UP)
        start_relay(s);
    else if (st == DIAL_FAILED)
        respond_error(s, s->dial.err == ETIMEDOUT ? 504 : 502,
                      s->dial.err == ETIMEDOUT ? "backend connect timeout" : "backend unavailable");
}

/* Keep the bytes a client pipelined after its request head. */
static int keep_pipelined(struct session *s, const uint8_t *rest, size_t len)
{
    if (len == 0)
        return 0;
    if (!(s->pipelined = buf_get(&s->w->pool, s->cfg->buffer_size))) {
        session_close(s, END_ERROR, "out of memory");
        return -1;
    }
    memcpy(s->pipelined->data, rest, len);
    s->pipelined->end = len;
    return 0;
}

/* backend_proxy_protocol: the header the dialer sends first (s->pp).
 * Returns 0, or -1 (closed: out of memory). */
static int backend_proxy_header(struct session *s, const struct http_request *req)
{
    int version = s->route->backend_proxy_protocol;
    if (version == 0)
        return 0;
    struct netaddr local = s->proxy_dst;
    if (!s->has_proxy_dst) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(s->cl.tr.fd, (struct sockaddr *)&ss, &len) == 0)
            netaddr_from_sockaddr((struct sockaddr *)&ss, len, &local);
        else
            local.family = AF_UNSPEC;
    }
    struct edge_backend_hdr h = {
        .version = version,
        .client = &s->client,
        .dst = &local,
        .req = req,
        .tls_version = s->cl.tr.ssl ? SSL_get_version(s->cl.tr.ssl) : NULL,
        .cert_name = s->tls_name,
    };
    if (edge_backend_header(&h, &s->pp, &s->dial.pp_len) < 0) {
        session_close(s, END_ERROR, "out of memory");
        return -1;
    }
    s->dial.pp = s->pp;
    return 0;
}

/* ---- LOOKUP ----------------------------------------------------------- */

static void start_dial(struct session *s);
static void on_redis(void *arg, enum redis_result res, const char *target);
static void on_resolved(void *arg, enum resolver_status st, const struct sockaddr_any *addrs,
                        size_t naddrs);

/* Forget a password check, a Redis or DNS request in flight (the one close path and the
 * lookup deadline call it); its callback will not run. */
static void lookup_cancel(struct session *s)
{
    if (s->pw_q)
        pwcheck_cancel(s->pw_q);
    s->pw_q = NULL;
    if (s->redis_q)
        redis_cancel(s->redis_q);
    if (s->dns_q)
        resolver_cancel(s->dns_q);
    s->redis_q = NULL;
    s->dns_q = NULL;
}

static void free_specs(struct session *s)
{
    for (size_t i = 0; i < s->nspecs; i++)
        config_free_backend(&s->specs[i]);
    free(s->specs);
    s->specs = NULL;
    s->nspecs = 0;
}

/* A deep copy of b into *d (addresses too). 0, or -1 when out of memory. */
static int copy_spec(struct backend_spec *d, const struct backend_spec *b)
{
    memset(d, 0, sizeof(*d));
    d->text = strdup(b->text);
    d->host = b->host ? strdup(b->host) : NULL;
    d->addrs = b->naddrs ? calloc(b->naddrs, sizeof(*d->addrs)) : NULL;
    if (!d->text || (b->host && !d->host) || (b->naddrs && !d->addrs))
        return -1;
    if (b->naddrs)
        memcpy(d->addrs, b->addrs, b->naddrs * sizeof(*d->addrs));
    d->naddrs = b->naddrs;
    return 0;
}

/* The backends this session dials, as copies whose names are resolved
 * (one lookup at a time, answered from the resolver's TTL cache when it
 * can). 0, or -1 after session_close. */
static int lookup_specs(struct session *s)
{
    const struct backend_spec *src = s->v.token_backend ? s->v.token_backend : s->route->backends;
    size_t n = s->v.token_backend ? 1 : s->route->nbackends;
    if (!(s->specs = calloc(n, sizeof(*s->specs)))) {
        session_close(s, END_ERROR, "out of memory");
        return -1;
    }
    for (; s->nspecs < n; s->nspecs++)
        if (copy_spec(&s->specs[s->nspecs], &src[s->nspecs]) < 0) {
            s->nspecs++;
            session_close(s, END_ERROR, "out of memory");
            return -1;
        }
    return 0;
}

/* The port written in a "host:port" spec. */
static unsigned spec_port_of(const struct backend_spec *b)
{
    const char *c = strrchr(b->text, ':');
    return c ? (unsigned)strtoul(c + 1, NULL, 10) : 0;
}

/* Resolve the next backend name, or dial when none is left. */
static void resolve_next(struct session *s)
{
    while (s->resolving < s->nspecs &&
           (s->specs[s->resolving].naddrs > 0 || !s->specs[s->resolving].host))
        s->resolving++;
    if (s->resolving == s->nspecs) {
        start_dial(s);
        return;
    }
    if (s->phase != PH_LOOKUP)
        enter(s, PH_LOOKUP);
    const struct backend_spec *b = &s->specs[s->resolving];
    s->lookup_since = now_of(s);
    if (!s->w->resolver ||
        !(s->dns_q = resolver_lookup(s->w->resolver, b->host, spec_port_of(b), on_resolved, s)))
        respond_error(s, 502, "cannot resolve backend");
}

/* The backend specs are known (token target or route): resolve, then dial. */
static void prepare_dial(struct session *s)
{
    if (lookup_specs(s) == 0)
        resolve_next(s);
}

static void on_resolved(void *arg, enum resolver_status st, const struct sockaddr_any *addrs,
                        size_t naddrs)
{
    struct session *s = arg;
    ASSERT(s->phase == PH_LOOKUP && s->dns_q);
    s->dns_q = NULL;
    struct backend_spec *b = &s->specs[s->resolving];
    if (st != RESOLVER_OK) {
        log_msg(WLOG_INFO, "%s: route %s: backend %s: %s", s->peer, s->route->name, b->text,
                st == RESOLVER_NOT_FOUND ? "no such name" : "name resolution failed");
        respond_error(s, 502,
                      st == RESOLVER_NOT_FOUND ? "backend name not found"
                                               : "backend name resolution failed");
    } else if (!(b->addrs = calloc(naddrs, sizeof(*b->addrs)))) {
        session_close(s, END_ERROR, "out of memory");
    } else {
        memcpy(b->addrs, addrs, naddrs * sizeof(*addrs));
        b->naddrs = naddrs;
        if (s->v.token_backend && gate_target_allowed(s->route, b)) {
            log_msg(WLOG_WARN, "route %s: token target %s resolves outside allowed_backends",
                    s->route->name, b->text);
            respond_error(s, 403, "token target not allowed");
        } else {
            resolve_next(s);
        }
    }
    settle(s);
}

/* Does a backend to dial have a name that must be resolved first? */
static bool needs_names(const struct session *s)
{
    const struct backend_spec *b = s->v.token_backend ? s->v.token_backend : s->route->backends;
    size_t n = s->v.token_backend ? 1 : s->route->nbackends;
    for (size_t i = 0; i < n; i++)
        if (b[i].naddrs == 0 && b[i].host)
            return true;
    return false;
}

/* Dial the resolved copies, the token's target or the route's backends. */
static void start_dial(struct session *s)
{
    const struct gate_verdict *v = &s->v;
    const struct backend_spec *specs = s->specs           ? s->specs
                                       : v->token_backend ? v->token_backend
                                                          : s->route->backends;
    size_t n = s->specs ? s->nspecs : v->token_backend ? 1 : s->route->nbackends;
    enter(s, PH_CONNECT);
    on_dial(s, dial_start(&s->dial, s->route, specs, n, &s->be.tr, s->peer, now_of(s)));
}

static void on_redis(void *arg, enum redis_result res, const char *target)
{
    struct session *s = arg;
    ASSERT(s->phase == PH_LOOKUP && s->redis_q);
    s->redis_q = NULL;
    const char *why = NULL;
    int st = 0;
    if (res == REDIS_FOUND)
        st = gate_token_target(s->route, target, &s->v.token_backend, &why);
    if (res == REDIS_FOUND && st == 0)
        prepare_dial(s);
    else if (res == REDIS_FOUND)
        respond_error(s, st, why);
    else if (res == REDIS_NOT_FOUND)
        respond_error(s, 403, "unknown token");
    else
        respond_error(s, 503, "token store unavailable");
    settle(s);
}

/* Start the Redis lookup the verdict asks for; the token is wiped then. */
static void start_redis(struct session *s)
{
    if (s->phase != PH_LOOKUP) /* after a password check it is already */
        enter(s, PH_LOOKUP);
    s->lookup_since = now_of(s);
    if (s->w->redis)
        s->redis_q =
            redis_lookup_route(s->w->redis, s->route, s->v.token, s->v.token_len, on_redis, s);
    OPENSSL_cleanse(s->v.token, s->v.token_len);
    free(s->v.token);
    s->v.token = NULL;
    if (!s->redis_q)
        respond_error(s, 503, "token store unavailable");
}

static void on_request(struct session *s, const struct http_request *req, const uint8_t *buf,
                       size_t head_len, size_t len);

/* The password check is answered: decide the same request again. */
static void on_password(void *arg, int good)
{
    struct session *s = arg;
    ASSERT(s->phase == PH_LOOKUP && s->pw_q);
    s->pw_q = NULL;
    s->password = good ? 1 : -1;
    uint8_t *buf = s->head;
    size_t len = s->head_len;
    s->head = NULL;
    s->head_len = 0;
    struct http_request req;
    int r = http_parse_request((const char *)buf, len, 0, &req);
    ASSERT(r > 0);
    on_request(s, &req, buf, (size_t)r, len);
    OPENSSL_cleanse(buf, len);
    free(buf);
    settle(s);
}

/* The verdict asks for a password check (need): keep the request (buf,
 * len: its head and what followed) and hand the check to the process's
 * password thread (pwcheck.c); 503 when too many wait for it. */
static void check_password(struct session *s, const uint8_t *buf, size_t len,
                           struct auth_crypt *need)
{
    enter(s, PH_LOOKUP);
    s->lookup_since = now_of(s);
    if (!(s->head = malloc(len))) {
        free(need->hash);
        respond_error(s, 503, "out of memory");
        return;
    }
    memcpy(s->head, buf, len);
    s->head_len = len;
    if (!(s->pw_q = pwcheck_submit(s->w->pwcheck, need, on_password, s)))
        respond_error(s, 503, "too many password checks waiting");
}

/* LOOKUP: the client is readable while its password is checked. When it
 * left (EOF, reset) the session closes and the queued check goes with it;
 * bytes it sent early stay in the socket for later, and it is not watched
 * any more (a TLS client's close_notify looks like that too). */
static void lookup_peek(struct session *s)
{
    uint8_t b;
    ssize_t n = recv(s->cl.tr.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        s->early_bytes = true;
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        session_close(s, END_CLIENT_DROP, "client gone during the password check");
}

/* The request head is complete (buf: head_len bytes of head, then what
 * followed it, len in all): act on the verdict. */
static void on_request(struct session *s, const struct http_request *req, const uint8_t *buf,
                       size_t head_len, size_t len)
{
    struct gate_verdict *v = &s->v;
    if (!s->password) { /* the first decision on this request */
        struct netaddr start = s->client;
        edge_client(s->cfg, &start, req, &s->client);
    }
    struct auth_crypt need = {0};
    struct gate_conn conn = {.client = &s->client,
                             .admin = s->flags & SESSION_ADMIN,
                             .now = now_of(s),
                             .crypt = &need,
                             .password = s->password};
    gate_decide(s->cfg, s->w->gw, s->cl.tr.ssl, req, &s->w->pool, v, &conn);
    s->route = v->route;
    if (v->kind == GATE_PASSWORD) {
        check_password(s, buf, len, &need); /* or answered 503 */
        OPENSSL_cleanse(need.password, sizeof(need.password));
        return;
    }
    if (v->kind != GATE_UPGRADE) {
        respond(s);
        return;
    }
    s->holds_slot = true;
    if (keep_pipelined(s, buf + head_len, len - head_len) < 0 || backend_proxy_header(s, req) < 0)
        return;
    if (v->wait == GATE_WAIT_REDIS)
        start_redis(s);
    else if (needs_names(s))
        prepare_dial(s);
    else
        start_dial(s);
}

/* ---- REQUEST ---------------------------------------------------------- */

/* A bad or missing PROXY header: closed without a response, logged,
 * counted as handshake failure status "proxy". */
static void proxy_refused(struct session *s, const char *why)
{
    log_msg(WLOG_INFO, "%s: PROXY header refused: %s", s->peer, why);
    metrics_failure(&s->w->gw->metrics, NULL, s->w->id, METRICS_STATUS_PROXY);
    session_close(s, END_HANDSHAKE, "bad PROXY header: %s", why);
}

/* The PROXY header of a proxy listener. What has arrived is peeked and
 * parsed together with the part kept from earlier reads (s->head); while
 * the header is incomplete every byte peeked belongs to it, so those are
 * read and kept (no readiness stays pending); once it is complete exactly
 * its remaining bytes are read, so the client's first byte (a ClientHello
 * or the request) stays in the socket. Returns 1 (read), 0 (wait), or -1
 * (closed). */
static int proxy_read(struct session *s)
{
    uint8_t buf[PROXY_MAX_HEADER];
    size_t have = s->head_len;
    if (have)
        memcpy(buf, s->head, have);
    ssize_t n = recv(s->cl.tr.fd, buf + have, sizeof(buf) - have, MSG_PEEK);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        proxy_refused(s, n == 0 ? "connection closed before the header" : strerror(errno));
        return -1;
    }
    struct proxy_info info;
    const char *why = "incomplete";
    int r = proxy_parse(buf, have + (size_t)n, &info, &why);
    size_t take = r > 0 ? (size_t)r - have : (size_t)n;
    if (r == PROXY_BAD || (r == PROXY_PARTIAL && have + (size_t)n >= sizeof(buf))) {
        proxy_refused(s, why);
        return -1;
    }
    ASSERT(take <= (size_t)n);
    if (recv(s->cl.tr.fd, buf + have, take, 0) != (ssize_t)take) {
        proxy_refused(s, "read error");
        return -1;
    }
    have += take;
    uint8_t *h = r > 0 ? NULL : realloc(s->head, have);
    if (r > 0) {
        free(s->head);
        s->head = NULL;
        s->head_len = 0;
    } else if (!h) {
        session_close(s, END_ERROR, "out of memory");
        return -1;
    } else {
        memcpy(h, buf, have);
        s->head = h;
        s->head_len = have;
        return 0;
    }
    if (info.has_addr && info.cmd == PROXY_CMD_PROXY) {
        s->client = info.src;
        s->proxy_dst = info.dst;
        s->has_proxy_dst = true;
    }
    if (count_client(s) < 0) {
        session_close(s, END_HANDSHAKE, "too many connections from this address");
        return -1;
    }
    return 1;
}

/* What comes before the TLS/HTTP handshake: the PROXY header (proxy
 * listeners), then the first byte that tells TLS from plain (`tls auto`),
 * then the TLS connection. Returns 1 (done), 0 (wait), or -1 (closed). */
static int preface_read(struct session *s)
{
    if (s->flags & SESSION_PROXY) {
        int r = proxy_read(s);
        if (r <= 0)
            return r;
        s->flags &= ~(unsigned)SESSION_PROXY;
    }
    if (s->flags & SESSION_TLS_AUTO) {
        uint8_t first;
        ssize_t n = recv(s->cl.tr.fd, &first, 1, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (n <= 0) {
            session_close(s, END_HANDSHAKE, "client %s during handshake",
                          n == 0 ? "closed" : "read error");
            return -1;
        }
        s->flags &= ~(unsigned)SESSION_TLS_AUTO;
        s->flags |= first == 0x16 ? SESSION_TLS : 0;
    }
    if ((s->flags & SESSION_TLS) && !s->cl.tr.ssl &&
        !(s->cl.tr.ssl = tls_server_ssl(s->cfg, s->cl.tr.fd))) {
        session_close(s, END_ERROR, "cannot start TLS");
        return -1;
    }
    return 1;
}

/* Read what the client sent of its request head, and answer it once it is
 * complete. Most heads arrive in one read: they are parsed on the stack and
 * only a head that arrives in pieces is kept, in a buffer of its size. */
static void request_read(struct session *s)
{
    char why[300];
    if ((s->flags & (SESSION_PROXY | SESSION_TLS_AUTO)) && preface_read(s) <= 0)
        return;
    int hs = io_handshake(&s->cl.tr, why, sizeof(why));
    if (hs <= 0) {
        if (hs < 0)
            session_close(s, END_HANDSHAKE, "TLS handshake failed: %.120s", why);
        return;
    }
    if (s->cl.tr.ssl && !s->tls_name) {
        char name[256];
        tls_peer_name(s->cl.tr.ssl, name, sizeof(name));
        if (name[0])
            s->tls_name = strdup(name);
    }
    uint8_t stack[HTTP_MAX_HEAD + 1];
    size_t have = s->head_len;
    if (have) /* s->head is NULL before the first piece (memcpy from NULL is undefined) */
        memcpy(stack, s->head, have);
    ssize_t n = io_read(&s->cl.tr, stack + have, sizeof(stack) - have);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        session_close(s, END_HANDSHAKE, "client %s during handshake",
                      n == 0 ? "closed" : "read error");
        return;
    }
    struct http_request req;
    int r = http_parse_request((const char *)stack, have + (size_t)n, have, &req);
    have += (size_t)n;
    if (r == HTTP_PARTIAL && have <= HTTP_MAX_HEAD) {
        uint8_t *h = realloc(s->head, have);
        if (!h) {
            session_close(s, END_ERROR, "out of memory");
            return;
        }
        memcpy(h, stack, have);
        s->head = h;
        s->head_len = have;
        return;
    }
    free(s->head);
    s->head = NULL;
    s->head_len = 0;
    if (r == HTTP_BAD)
        respond_error(s, 400, "malformed request");
    else if (r == HTTP_TOO_LARGE || r == HTTP_PARTIAL)
        respond_error(s, 431, "request head too large");
    else
        on_request(s, &req, stack, (size_t)r, have);
}

/* ---- deadlines -------------------------------------------------------- */

/* When the session's next deadline is due and what happens then. */
static ev_tstamp next_due(const struct session *s, enum action *act)
{
    const struct route_params *p = s->route ? &s->route->p : &s->cfg->defaults;
    const struct relay *r = &s->relay;
    ev_tstamp d = 0;
    *act = ACT_NONE;
#define DUE(t, a)                                                                                  \
    do {                                                                                           \
        ev_tstamp t_ = (t);                                                                        \
        if (d == 0 || t_ < d) {                                                                    \
            d = t_;                                                                                \
            *act = (a);                                                                            \
        }                                                                                          \
    } while (0)
    switch (s->phase) {
    case PH_REQUEST:
        DUE(s->started + s->cfg->handshake_timeout_ms / 1000.0, ACT_HANDSHAKE_TIMEOUT);
        break;
    case PH_LOOKUP:
        DUE(s->lookup_since + p->connect_timeout_ms / 1000.0 + LOOKUP_GRACE, ACT_LOOKUP_TIMEOUT);
        break;
    case PH_CONNECT:
        DUE(s->dial.deadline, ACT_CONNECT_TIMEOUT);
        break;
    case PH_RESPOND:
        DUE(s->progress + s->cfg->handshake_timeout_ms / 1000.0, ACT_RESPONSE_STALLED);
        break;
    case PH_RELAY:
    case PH_CLOSING:
        if (relay_up_pending(r))
            DUE(now_of(s), ACT_RESUME);
        if (!s->keepalive_on && half_open(&s->be))
            DUE(s->relayed_at + KEEPALIVE_AFTER, ACT_KEEPALIVE);
        if (s->probe_from)
            DUE(s->probe_from + PAUSED_PROBE, ACT_PROBE);
        if (s->rec_wait_from)
            DUE(s->rec_wait_from + RECORD_WAIT, ACT_RECORD_GIVE_UP);
        if (s->phase == PH_CLOSING) {
            DUE(r->closing_since + CLOSE_WAIT, ACT_CLOSE_TIMEOUT);
            break;
        }
        if (p->ping_interval_ms && s->ping_sent > r->last_rx)
            DUE(s->ping_sent + p->pong_timeout_ms / 1000.0, ACT_PONG_TIMEOUT);
        else if (p->ping_interval_ms)
            DUE(r->last_rx + p->ping_interval_ms / 1000.0, ACT_PING);
        if (p->idle_timeout_ms)
            DUE(r->last_payload + p->idle_timeout_ms / 1000.0, ACT_IDLE);
        break;
    case PH_LINGER:
        DUE(s->linger_since + LINGER, ACT_LINGER_OVER);
        if (half_open(&s->be))
            DUE(r->closing_since + CLOSE_WAIT, ACT_FLUSH_TIMEOUT);
        break;
    case PH_FLUSH:
        DUE(r->closing_since + CLOSE_WAIT, ACT_FLUSH_TIMEOUT);
        break;
    case PH_CLOSED:
        break;
    }
#undef DUE
    return d;
}

/* Do what a due deadline says. */
static void act(struct session *s, enum action a)
{
    struct relay *r = &s->relay;
    switch (a) {
    case ACT_NONE:
        break;
    case ACT_HANDSHAKE_TIMEOUT:
        if (s->flags & SESSION_PROXY)
            proxy_refused(s, "no complete header within handshake_timeout");
        session_close(s, END_HANDSHAKE, "handshake timeout");
        break;
    case ACT_LOOKUP_TIMEOUT: {
        bool redis = s->redis_q != NULL, pw = s->pw_q != NULL;
        lookup_cancel(s);
        respond_error(s, redis || pw ? 503 : 502,
                      pw      ? "password check timed out"
                      : redis ? "token store timeout"
                              : "backend name resolution timed out");
        break;
    }
    case ACT_CONNECT_TIMEOUT:
        half_unwatch(s, &s->be);
        on_dial(s, dial_timeout(&s->dial, now_of(s)));
        break;
    case ACT_RESPONSE_STALLED:
        session_close(s, END_TIMEOUT, "response stalled: no progress for %u ms",
                      s->cfg->handshake_timeout_ms);
        break;
    case ACT_RESUME:
        relay_pump_up(r);
        break;
    case ACT_PROBE:
        /* Not reading the client (backpressure), we would not see it leave:
         * ask the kernel. A FIN queued behind the data we do not read stays
         * invisible; the heartbeat ends such a session. */
        s->probe_from = now_of(s);
        if (sock_peer_gone(s->cl.tr.fd))
            session_close(s, END_CLIENT_DROP,
                          "client reset TCP while its data waited for the backend");
        break;
    case ACT_RECORD_GIVE_UP:
        /* The writer is stuck (a slow disk): the session goes on unrecorded. */
        record_abandon(r->rec, now_of(s));
        break;
    case ACT_CLOSE_TIMEOUT:
        session_close(s, END_TIMEOUT,
                      r->close == RC_SENT ? "close timeout: no close frame from the client"
                                          : "close timeout: client not reading");
        break;
    case ACT_PONG_TIMEOUT:
        if (relay_client_paused(r) && !relay_wants_client_write(r) && sock_all_acked(s->cl.tr.fd)) {
            /* Backpressure: its pong waits behind data we do not read. Its
             * TCP acknowledged everything we sent, the ping included: the
             * client is there, heard now (doc/design.md, Heartbeats). */
            r->last_rx = now_of(s);
            break;
        }
        session_close(s, END_TIMEOUT,
                      relay_client_paused(r)
                          ? "pong timeout: the backend took nothing, the client was not heard"
                          : "pong timeout: client sent nothing after a ping");
        break;
    case ACT_PING:
        s->ping_sent = now_of(s);
        relay_ping(r);
        break;
    case ACT_IDLE:
        outcome_note(&s->end, END_TIMEOUT, "idle timeout");
        relay_close(r, WS_CLOSE_GOING_AWAY, "idle timeout");
        break;
    case ACT_LINGER_OVER:
        half_close(s, &s->cl);
        break;
    case ACT_FLUSH_TIMEOUT:
        session_close(s, END_TIMEOUT, "close timeout: backend did not take its bytes");
        break;
    case ACT_KEEPALIVE:
        sock_keepalive(s->be.tr.fd, &s->dial.backend->addrs[s->dial.addr - 1]);
        s->keepalive_on = true;
        break;
    }
}

/* ---- settle: derived transitions and events --------------------------- */

/* Move on as far as the layers' state allows. */
static void advance(struct session *s)
{
    struct relay *r = &s->relay;
    if (s->phase < PH_RELAY || s->phase == PH_CLOSED)
        return;
    /* The backend is done once it has every byte it is owed (an orderly end:
     * TLS close_notify, FIN), or at once when it failed. */
    if (half_open(&s->be) && (r->be_gone || relay_backend_done(r))) {
        if (!r->be_gone)
            io_notify_close(&s->be.tr); /* then close: FIN after every byte */
        half_close(s, &s->be);
        relay_backend_gone(r);
    }
    if (s->phase == PH_RELAY && r->close != RC_OPEN)
        enter(s, PH_CLOSING);
    if (s->phase == PH_CLOSING && relay_client_done(r))
        client_finish(s);
    if (s->phase == PH_LINGER && !half_open(&s->cl))
        enter(s, half_open(&s->be) ? PH_FLUSH : PH_CLOSED);
    if (s->phase == PH_LINGER && !half_open(&s->be))
        relay_over(s);
    if (s->phase == PH_FLUSH && !half_open(&s->be))
        enter(s, PH_CLOSED);
}

/* What each half waits for, and when the timer fires. */
static void rearm(struct session *s)
{
    struct relay *r = &s->relay;
    int cev = 0, bev = 0;
    switch (s->phase) {
    case PH_REQUEST:
    case PH_LINGER:
        cev = EV_READ;
        break;
    case PH_LOOKUP: /* a client that leaves takes its password check with it */
        cev = s->pw_q && !s->early_bytes ? EV_READ : 0;
        break;
    case PH_CONNECT:
        bev = dial_events(&s->dial);
        break;
    case PH_RESPOND:
        cev = (s->client_eof ? 0 : EV_READ) | EV_WRITE;
        break;
    case PH_RELAY:
    case PH_CLOSING:
        cev = (relay_wants_client_read(r) ? EV_READ : 0) |
              (relay_wants_client_write(r) ? EV_WRITE : 0);
        break;
    default:
        break;
    }
    if (s->phase >= PH_RELAY && half_open(&s->be))
        bev = (relay_wants_backend_read(r) && s->phase <= PH_CLOSING ? EV_READ : 0) |
              (relay_wants_backend_write(r) ? EV_WRITE : 0);
    half_watch(s, &s->cl, cev);
    half_watch(s, &s->be, bev);
    if (s->phase >= PH_RELAY && relay_client_paused(r))
        s->probe_from = s->probe_from ? s->probe_from : now_of(s);
    else
        s->probe_from = 0;
    if (s->phase >= PH_RELAY && s->phase <= PH_CLOSING && relay_record_waits(r))
        s->rec_wait_from = s->rec_wait_from ? s->rec_wait_from : now_of(s);
    else
        s->rec_wait_from = 0;

    enum action a;
    ev_tstamp d = next_due(s, &a);
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

/* The end of every callback. */
static void settle(struct session *s)
{
    advance(s);
    if (s->phase == PH_CLOSED)
        session_free(s);
    else
        rearm(s);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct session *s = t->data;
    s->timer_at = 0;
    enum action a;
    ev_tstamp d = next_due(s, &a);
    if (d != 0 && d <= ev_now(loop))
        act(s, a);
    settle(s);
}

/* ---- events ----------------------------------------------------------- */

static void relay_client_events(struct session *s, int ready)
{
    struct relay *r = &s->relay;
    if ((ready & EV_READ) && !relay_record_waits(r) && relay_client_read(r) < 0) {
        client_gone(s);
        return;
    }
    /* a pong or the close reply goes now, not a loop later */
    if (relay_wants_client_write(r) && relay_client_write(r) < 0)
        session_close(s, END_CLIENT_DROP, "client write error");
}

static void client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = io->data;
    int ready = io_ready(&s->cl.tr, revents);
    switch (s->phase) {
    case PH_REQUEST:
        request_read(s);
        break;
    case PH_RESPOND:
        if (ready & EV_READ)
            discard_client(s);
        if ((ready & EV_WRITE) && s->phase == PH_RESPOND)
            respond_write(s);
        break;
    case PH_RELAY:
    case PH_CLOSING:
        relay_client_events(s, ready);
        break;
    case PH_LINGER:
        discard_client(s);
        break;
    case PH_LOOKUP:
        lookup_peek(s);
        break;
    default:
        break;
    }
    settle(s);
}

static void backend_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct session *s = io->data;
    struct relay *r = &s->relay;
    if (s->phase == PH_CONNECT) {
        half_unwatch(s, &s->be); /* an attempt that fails closes its fd */
        on_dial(s, dial_resume(&s->dial, now_of(s)));
    } else {
        int ready = io_ready(&s->be.tr, revents);
        if (ready & EV_WRITE)
            relay_backend_write(r);
        if ((ready & EV_READ) && relay_wants_backend_read(r) && s->phase <= PH_CLOSING) {
            relay_backend_read(r);
            if (relay_wants_client_write(r) && relay_client_write(r) < 0)
                session_close(s, END_CLIENT_DROP, "client write error");
        }
    }
    settle(s);
}

/* ---- the public interface --------------------------------------------- */

void session_start(struct worker *w, int fd, const struct sockaddr_any *peer, unsigned flags)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        log_msg(WLOG_ERROR, "out of memory for a new session");
        __atomic_sub_fetch(&w->gw->handshaking, 1, __ATOMIC_RELAXED);
        close(fd);
        return;
    }
    s->w = w;
    s->cfg = config_ref(w->cfg);
    s->cl.tr.fd = fd;
    s->be.tr.fd = -1;
    s->v.file.fd = -1;
    s->flags = flags;
    s->handshaking = true;
    netaddr_from_sockaddr((const struct sockaddr *)&peer->ss, peer->len, &s->peer_addr);
    s->client = s->peer_addr;
    /* A proxy listener counts the address its PROXY header names. */
    bool refused = !(flags & SESSION_PROXY) && count_client(s) < 0;
    sock_addr_str(peer, s->peer, sizeof(s->peer));
    bool tls_now = (flags & SESSION_TLS) && !(flags & (SESSION_PROXY | SESSION_TLS_AUTO));
    if (refused || (tls_now && !(s->cl.tr.ssl = tls_server_ssl(s->cfg, fd)))) {
        if (!refused)
            log_msg(WLOG_ERROR, "%s: cannot start TLS", s->peer);
        if (s->holds_gw_ip)
            iptable_conn_release(w->gw->iptable, &s->gw_key, ev_now(w->loop));
        handshake_over(s);
        config_unref(s->cfg);
        close(fd); /* over max_connections_per_ip: no response */
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
    s->phase = PH_REQUEST;

    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->nsessions++;
    settle(s);
}

void session_record_drained(struct worker *w)
{
    for (struct session *s = w->sessions, *next; s; s = next) {
        next = s->next; /* settling may free s */
        if (s->rec_wait_from)
            settle(s);
    }
}

void session_go_away(struct session *s)
{
    switch (s->phase) {
    case PH_REQUEST:
    case PH_LOOKUP:
    case PH_CONNECT:
        session_close(s, END_SHUTDOWN, "shutting down");
        break;
    case PH_RELAY:
        outcome_note(&s->end, END_SHUTDOWN, "shutting down");
        relay_close(&s->relay, WS_CLOSE_GOING_AWAY, "going away");
        if (relay_client_write(&s->relay) < 0)
            session_close(s, END_CLIENT_DROP, "client write error");
        break;
    default: /* responses (downloads) and closes finish on their own */
        break;
    }
    settle(s);
}

void session_abort(struct session *s, const char *why)
{
    session_close(s, END_SHUTDOWN, "%s", why);
    settle(s);
}

struct session *session_next(struct session *s)
{
    return s->next;
}
