/* redis.c - TokenRedis lookups with hiredis on libev (contracts in redis.h).
 *
 * A connection (struct conn) goes IDLE -> RESOLVING -> CONNECTING ->
 * HANDSHAKE ([AUTH] [SELECT] PING pipelined) -> UP, and on any failure to
 * DOWN, from where its timer reconnects after the back-off. conn->timer is
 * the attempt deadline while connecting and the back-off while DOWN.
 *
 * A request (struct redis_req) is queued on its connection until UP, then
 * handed to hiredis (q->sent: hiredis owns it and frees it through
 * on_reply(), with a NULL reply when the connection goes away). q->timer is
 * its deadline, or a zero-delay delivery for answers known at once. A
 * cancelled or answered request has cb == NULL. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "redis.h"

#include <arpa/inet.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "resolver.h"

enum cstate { C_IDLE, C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_UP, C_DOWN };

#define REDIS_ADDRS 8 /* addresses of a host name tried, in the resolver's order */

struct conn {
    struct conn *next;
    struct redis_ctx *ctx;
    struct redis_target t; /* copy: host, port, db, user, password, name */
    enum cstate st;
    redisAsyncContext *ac;
    struct resolver_req *rq;
    struct sockaddr_any addrs[REDIS_ADDRS]; /* of the host name, tried in order */
    size_t naddrs, addr;                    /* addrs[addr] is being tried */
    ev_timer timer;
    double backoff;
    uint32_t timeout_ms;     /* of the latest lookup: bounds connection attempts */
    struct redis_req *queue; /* waiting for UP */
    int handshake_left;      /* replies still expected before UP */
    bool outage;
    char reason[160];
};

struct redis_req {
    struct conn *c;
    redis_cb *cb; /* NULL once answered or cancelled */
    void *arg;
    ev_timer timer;
    bool sent, delivering;
    enum redis_result res;
    struct redis_req *prev, *next; /* c->queue, or ctx->done while delivering */
    size_t keylen;
    char key[];
};

struct redis_ctx {
    struct ev_loop *loop;
    struct resolver *res;
    struct conn *conns;
    struct redis_req *done; /* zero-delay deliveries */
    bool freeing;
};

static void conn_start(struct conn *c);
static void conn_fail(struct conn *c, const char *reason);
static void conn_next(struct conn *c, const char *why);

/* ---- request lists ---------------------------------------------------- */

static void list_del(struct redis_req **head, struct redis_req *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else if (*head == q)
        *head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void list_add_tail(struct redis_req **head, struct redis_req *q)
{
    struct redis_req **pp = head, *last = NULL;

    while (*pp != NULL) {
        last = *pp;
        pp = &last->next;
    }
    q->prev = last;
    q->next = NULL;
    *pp = q;
}

/* ---- delivering answers ----------------------------------------------- */

/* Call q's callback once (nothing if cancelled or answered already). */
static void answer(struct redis_req *q, enum redis_result res, const char *target)
{
    redis_cb *cb = q->cb;

    q->cb = NULL;
    ev_timer_stop(q->c->ctx->loop, &q->timer);
    if (cb != NULL)
        cb(q->arg, res, target);
}

static void on_req_timer(struct ev_loop *loop, ev_timer *w, int revents);

/* Answer a request that hiredis does not hold from the loop, soon. */
static void answer_later(struct redis_req *q, enum redis_result res)
{
    struct redis_ctx *ctx = q->c->ctx;

    ev_timer_stop(ctx->loop, &q->timer);
    q->delivering = true;
    q->res = res;
    list_add_tail(&ctx->done, q);
    ev_timer_set(&q->timer, 0., 0.);
    ev_timer_start(ctx->loop, &q->timer);
}

/* hiredis: the reply to a GET (NULL: the connection went away). */
static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_req *q = privdata;
    struct conn *c = q->c;
    redisReply *reply = r;
    char target[REDIS_TARGET_MAX];

    if (q->cb != NULL && !c->ctx->freeing) {
        if (reply == NULL) {
            answer(q, REDIS_UNAVAILABLE, NULL);
        } else if (reply->type == REDIS_REPLY_NIL) {
            answer(q, REDIS_NOT_FOUND, NULL);
        } else if (reply->type == REDIS_REPLY_STRING) {
            if (redis_value_parse(reply->str, reply->len, target, sizeof target) == 0) {
                answer(q, REDIS_FOUND, target);
            } else {
                log_msg(WLOG_WARN,
                        "redis %s: a token's value is neither host:port nor JSON "
                        "host/port: refused",
                        c->t.name);
                answer(q, REDIS_NOT_FOUND, NULL);
            }
        } else if (reply->type == REDIS_REPLY_ERROR) {
            log_msg(WLOG_WARN, "redis %s: GET failed: %.100s", c->t.name, reply->str);
            answer(q, REDIS_UNAVAILABLE, NULL);
        } else {
            log_msg(WLOG_WARN, "redis %s: a token's value is not a string: refused", c->t.name);
            answer(q, REDIS_NOT_FOUND, NULL);
        }
    }
    free(q);
}

/* Hand q to hiredis. */
static void send_req(struct conn *c, struct redis_req *q)
{
    if (redisAsyncCommand(c->ac, on_reply, q, "GET %b", q->key, q->keylen) != REDIS_OK) {
        answer_later(q, REDIS_UNAVAILABLE);
        return;
    }
    q->sent = true;
}

/* The deadline of a request, or its zero-delay delivery. */
static void on_req_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct redis_req *q = w->data;
    struct conn *c = q->c;

    if (q->delivering) {
        list_del(&c->ctx->done, q);
        answer(q, q->res, NULL);
        free(q);
        return;
    }
    answer(q, REDIS_UNAVAILABLE, NULL);
    if (q->sent) { /* freed by on_reply() when the connection goes */
        conn_fail(c, "no answer within the timeout");
        return;
    }
    list_del(&c->queue, q);
    free(q);
    if (c->st == C_RESOLVING || c->st == C_CONNECTING || c->st == C_HANDSHAKE)
        conn_fail(c, "no connection within the timeout");
}

/* ---- the connection --------------------------------------------------- */

static void conn_up(struct conn *c)
{
    c->st = C_UP;
    c->backoff = REDIS_BACKOFF_MIN;
    ev_timer_stop(c->ctx->loop, &c->timer);
    if (c->outage)
        log_msg(WLOG_INFO, "redis %s: available again", c->t.name);
    c->outage = false;
    c->reason[0] = '\0';
    while (c->queue != NULL && c->st == C_UP) {
        struct redis_req *q = c->queue;
        list_del(&c->queue, q);
        send_req(c, q);
    }
}

/* hiredis: replies to AUTH, SELECT and PING. */
static void on_handshake(redisAsyncContext *ac, void *r, void *privdata)
{
    struct conn *c = ac->data;
    redisReply *reply = r;
    const char *what = privdata;
    char why[160];

    if (c == NULL || c->ac != ac || reply == NULL)
        return; /* the connection is being dropped; on_disconnect or conn_fail acts */
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof why, "%s failed: %.100s", what, reply->str);
        conn_fail(c, why);
        return;
    }
    if (--c->handshake_left == 0)
        conn_up(c);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct conn *c = ac->data;
    char why[160];

    if (c == NULL || status == REDIS_OK)
        return;
    snprintf(why, sizeof why, "cannot connect: %.100s", ac->errstr);
    ac->data = NULL; /* hiredis frees ac after this callback */
    c->ac = NULL;
    conn_next(c, why);
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct conn *c = ac->data;

    if (c == NULL)
        return;
    ac->data = NULL; /* hiredis frees ac after this callback */
    c->ac = NULL;
    conn_fail(c, "connection lost");
}

/* Connect to a resolved address of the server and pipeline the handshake. */
static void conn_connect(struct conn *c, const struct sockaddr_any *a)
{
    char ip[INET6_ADDRSTRLEN];
    const void *src = a->ss.ss_family == AF_INET
                          ? (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr
                          : (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    char why[160];

    if (inet_ntop(a->ss.ss_family, src, ip, sizeof ip) == NULL) {
        conn_fail(c, "bad address");
        return;
    }
    redisAsyncContext *ac = redisAsyncConnect(ip, (int)c->t.port);
    if (ac == NULL) {
        conn_fail(c, "out of memory");
        return;
    }
    if (ac->err) {
        snprintf(why, sizeof why, "cannot connect: %.100s", ac->errstr);
        redisAsyncFree(ac);
        conn_next(c, why);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->st = C_HANDSHAKE;
    redisLibevAttach(c->ctx->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->handshake_left = 0;
    int rc = REDIS_OK;
    if (c->t.password != NULL && c->t.user != NULL)
        rc |= redisAsyncCommand(ac, on_handshake, "AUTH", "AUTH %s %s", c->t.user, c->t.password);
    else if (c->t.password != NULL)
        rc |= redisAsyncCommand(ac, on_handshake, "AUTH", "AUTH %s", c->t.password);
    c->handshake_left += c->t.password != NULL;
    if (c->t.db != 0) {
        rc |= redisAsyncCommand(ac, on_handshake, "SELECT", "SELECT %u", c->t.db);
        c->handshake_left++;
    }
    rc |= redisAsyncCommand(ac, on_handshake, "PING", "PING");
    c->handshake_left++;
    if (rc != REDIS_OK)
        conn_fail(c, "out of memory");
}

static void on_resolved(void *arg, enum resolver_status st, const struct sockaddr_any *addrs,
                        size_t n)
{
    struct conn *c = arg;

    c->rq = NULL;
    if (st != RESOLVER_OK) {
        conn_fail(c, st == RESOLVER_NOT_FOUND ? "host name not found" : "host name lookup failed");
        return;
    }
    c->naddrs = n < REDIS_ADDRS ? n : REDIS_ADDRS;
    memcpy(c->addrs, addrs, c->naddrs * sizeof(*addrs));
    c->addr = 0;
    conn_connect(c, &c->addrs[0]);
}

/* Connecting to addrs[addr] failed (why): the next address of the name, or
 * the connection fails when none is left (e.g. "localhost" is ::1 first and
 * the server listens on 127.0.0.1 only). */
static void conn_next(struct conn *c, const char *why)
{
    if (c->addr + 1 < c->naddrs)
        conn_connect(c, &c->addrs[++c->addr]);
    else
        conn_fail(c, why);
}

/* Timer: the attempt deadline (connecting) or the end of the back-off (DOWN). */
static void on_conn_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = w->data;

    if (c->st == C_DOWN)
        conn_start(c);
    else if (c->st != C_UP)
        conn_fail(c, "no connection within the timeout");
}

/* Start a connection attempt (resolve, connect, handshake) with a deadline. */
static void conn_start(struct conn *c)
{
    struct sockaddr_any a;
    struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.ss;

    c->st = C_RESOLVING;
    c->naddrs = c->addr = 0; /* a literal address is the only one */
    ev_timer_stop(c->ctx->loop, &c->timer);
    ev_timer_set(&c->timer, c->timeout_ms / 1000., 0.);
    ev_timer_start(c->ctx->loop, &c->timer);
    memset(&a, 0, sizeof a);
    if (inet_pton(AF_INET, c->t.host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        conn_connect(c, &a);
    } else if (inet_pton(AF_INET6, c->t.host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        conn_connect(c, &a);
    } else if (c->ctx->res == NULL) {
        conn_fail(c, "no resolver for a host name");
    } else if ((c->rq = resolver_lookup(c->ctx->res, c->t.host, c->t.port, on_resolved, c)) ==
               NULL) {
        conn_fail(c, "out of memory");
    }
}

/* Close whatever the connection has, fail its queued requests, log the
 * outage (once, or when its reason changes) and schedule the reconnect. */
static void conn_fail(struct conn *c, const char *reason)
{
    struct redis_ctx *ctx = c->ctx;

    if (c->ac != NULL) { /* sent requests get on_reply(NULL) */
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    if (c->rq != NULL) {
        resolver_cancel(c->rq);
        c->rq = NULL;
    }
    c->st = C_DOWN;
    while (c->queue != NULL) {
        struct redis_req *q = c->queue;
        list_del(&c->queue, q);
        answer_later(q, REDIS_UNAVAILABLE);
    }
    /* Once per outage; again only when the server refuses us in a new way
     * (it is back, but AUTH or SELECT fails), not for every retry. */
    bool refused = strstr(reason, " failed: ") != NULL;
    if (!c->outage || (refused && strcmp(c->reason, reason) != 0)) {
        log_msg(WLOG_WARN, "redis %s: unavailable: %s (token lookups answer 503)", c->t.name,
                reason);
        snprintf(c->reason, sizeof c->reason, "%s", reason);
    }
    c->outage = true;
    ev_timer_stop(ctx->loop, &c->timer);
    ev_timer_set(&c->timer, c->backoff, 0.);
    ev_timer_start(ctx->loop, &c->timer);
    c->backoff = c->backoff * 2 > REDIS_BACKOFF_MAX ? REDIS_BACKOFF_MAX : c->backoff * 2;
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The connection for t, made (IDLE) when this worker has none yet. */
static struct conn *conn_get(struct redis_ctx *ctx, const struct redis_target *t)
{
    struct conn *c;

    for (c = ctx->conns; c != NULL; c = c->next)
        if (c->t.port == t->port && c->t.db == t->db && strcmp(c->t.host, t->host) == 0 &&
            same_str(c->t.user, t->user) && same_str(c->t.password, t->password))
            return c;
    if ((c = calloc(1, sizeof *c)) == NULL)
        return NULL;
    c->t.host = strdup(t->host);
    c->t.name = strdup(t->name);
    c->t.user = t->user ? strdup(t->user) : NULL;
    c->t.password = t->password ? strdup(t->password) : NULL;
    if (c->t.host == NULL || c->t.name == NULL || (t->user && !c->t.user) ||
        (t->password && !c->t.password)) {
        redis_target_free(&c->t);
        free(c);
        return NULL;
    }
    c->t.port = t->port;
    c->t.db = t->db;
    c->ctx = ctx;
    c->st = C_IDLE;
    c->backoff = REDIS_BACKOFF_MIN;
    ev_timer_init(&c->timer, on_conn_timer, 0., 0.);
    c->timer.data = c;
    c->next = ctx->conns;
    ctx->conns = c;
    return c;
}

/* ---- API -------------------------------------------------------------- */

/* Contract in redis.h. */
struct redis_ctx *redis_ctx_new(struct ev_loop *loop, struct resolver *res)
{
    struct redis_ctx *ctx = calloc(1, sizeof *ctx);

    if (ctx != NULL) {
        ctx->loop = loop;
        ctx->res = res;
    }
    return ctx;
}

/* Contract in redis.h. */
void redis_ctx_free(struct redis_ctx *ctx)
{
    if (ctx == NULL)
        return;
    ctx->freeing = true;
    while (ctx->conns != NULL) {
        struct conn *c = ctx->conns;
        ctx->conns = c->next;
        if (c->ac != NULL) {
            c->ac->data = NULL;
            redisAsyncFree(c->ac); /* on_reply(NULL) frees the sent requests */
        }
        if (c->rq != NULL)
            resolver_cancel(c->rq);
        while (c->queue != NULL) {
            struct redis_req *q = c->queue;
            list_del(&c->queue, q);
            ev_timer_stop(ctx->loop, &q->timer);
            free(q);
        }
        ev_timer_stop(ctx->loop, &c->timer);
        redis_target_free(&c->t);
        free(c);
    }
    while (ctx->done != NULL) {
        struct redis_req *q = ctx->done;
        list_del(&ctx->done, q);
        ev_timer_stop(ctx->loop, &q->timer);
        free(q);
    }
    free(ctx);
}

/* Contract in redis.h. */
struct redis_req *redis_lookup(struct redis_ctx *ctx, const struct redis_target *t,
                               uint32_t timeout_ms, const char *token, size_t len, redis_cb *cb,
                               void *arg)
{
    size_t plen = t->prefix != NULL ? strlen(t->prefix) : 0;
    struct conn *c = conn_get(ctx, t);
    struct redis_req *q;

    if (c == NULL || (q = calloc(1, sizeof *q + plen + len)) == NULL)
        return NULL;
    q->c = c;
    q->cb = cb;
    q->arg = arg;
    if (plen > 0)
        memcpy(q->key, t->prefix, plen);
    if (len > 0)
        memcpy(q->key + plen, token, len);
    q->keylen = plen + len;
    ev_timer_init(&q->timer, on_req_timer, timeout_ms / 1000., 0.);
    q->timer.data = q;
    c->timeout_ms = timeout_ms;
    if (c->st == C_IDLE)
        conn_start(c); /* may go DOWN at once (no address, no memory) */
    if (c->st == C_DOWN) {
        answer_later(q, REDIS_UNAVAILABLE);
        return q;
    }
    ev_timer_start(ctx->loop, &q->timer);
    if (c->st == C_UP)
        send_req(c, q);
    else
        list_add_tail(&c->queue, q);
    return q;
}

/* Contract in redis.h. */
struct redis_req *redis_lookup_route(struct redis_ctx *ctx, const struct route *route,
                                     const char *token, size_t len, redis_cb *cb, void *arg)
{
    return redis_lookup(ctx, route->redis, route->p.connect_timeout_ms, token, len, cb, arg);
}

/* Contract in redis.h. */
void redis_cancel(struct redis_req *q)
{
    struct redis_ctx *ctx;

    if (q == NULL)
        return;
    ctx = q->c->ctx;
    q->cb = NULL;
    ev_timer_stop(ctx->loop, &q->timer);
    if (q->sent)
        return; /* hiredis holds it: on_reply() frees it */
    if (q->delivering)
        list_del(&ctx->done, q);
    else
        list_del(&q->c->queue, q);
    free(q);
}
