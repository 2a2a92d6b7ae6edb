/* resolver.c - c-ares on a libev loop, with a TTL cache (contracts in
 * resolver.h).
 *
 * c-ares tells us which sockets it wants watched (sock_state_cb): each gets an
 * ev_io; one ev_timer follows ares_timeout(). Names live in `struct entry`
 * (the cache): an entry holds the last good answer and its expiry, and while
 * a query runs, the requests waiting for it. Every result reaches its request
 * through the request's own zero-delay timer, so no callback ever runs inside
 * resolver_lookup() or inside c-ares. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TTL 3600 /* seconds an answer is kept at most */

struct entry;

struct resolver_req {
    struct resolver *r;
    struct entry *e;                  /* waiting for e's query; NULL once answered */
    struct resolver_req *prev, *next; /* in e->waiters, or r->ready */
    resolver_cb *cb;                  /* NULL once cancelled */
    void *arg;
    unsigned port;
    ev_timer deliver; /* zero delay: hands the result over */
    enum resolver_status st;
    size_t naddrs;
    struct sockaddr_any addrs[RESOLVER_MAX_ADDRS];
};

struct entry {
    struct entry *next;
    struct resolver *r;
    char *host;
    bool querying;
    ev_tstamp expires;                             /* answer usable until then */
    size_t naddrs;                                 /* 0 = no answer cached */
    struct sockaddr_any addrs[RESOLVER_MAX_ADDRS]; /* port 0 */
    struct resolver_req *waiters;
};

struct sock {
    struct sock *next;
    ev_io io;
    struct resolver *r;
};

struct resolver {
    struct ev_loop *loop;
    ares_channel ch;
    ev_timer timer; /* c-ares timeouts */
    struct sock *socks;
    struct entry *entries;
    size_t nentries;
    struct resolver_req *ready; /* requests with a result on their way */
};

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

static void ares_global_init(void)
{
    ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

/* ---- c-ares sockets and timers on the loop ---------------------------- */

static void update_timer(struct resolver *r)
{
    struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);

    ev_timer_stop(r->loop, &r->timer);
    if (tvp != NULL) {
        ev_timer_set(&r->timer, (double)tv.tv_sec + (double)tv.tv_usec / 1e6 + 0.001, 0.);
        ev_timer_start(r->loop, &r->timer);
    }
}

static void on_sock(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sock *s = w->data;
    struct resolver *r = s->r;
    int fd = w->fd;

    ares_process_fd(r->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    update_timer(r);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct resolver *r = w->data;

    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    update_timer(r);
}

/* c-ares: watch fd for reading/writing, or stop watching it (both 0). */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;
    struct sock **pp = &r->socks, *s;

    for (; (s = *pp) != NULL; pp = &s->next)
        if (s->io.fd == fd)
            break;
    if (s != NULL)
        ev_io_stop(r->loop, &s->io);
    if (!readable && !writable) {
        if (s != NULL) {
            *pp = s->next;
            free(s);
        }
        return;
    }
    if (s == NULL) {
        if ((s = calloc(1, sizeof *s)) == NULL)
            return; /* the query times out */
        s->r = r;
        s->next = r->socks;
        r->socks = s;
    }
    ev_io_init(&s->io, on_sock, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    s->io.data = s;
    ev_io_start(r->loop, &s->io);
}

/* ---- delivery --------------------------------------------------------- */

static void list_del(struct resolver_req **head, struct resolver_req *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else if (*head == q)
        *head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void list_add(struct resolver_req **head, struct resolver_req *q)
{
    q->prev = NULL;
    q->next = *head;
    if (*head != NULL)
        (*head)->prev = q;
    *head = q;
}

static void on_deliver(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct resolver_req *q = w->data;
    struct resolver *r = q->r;

    list_del(&r->ready, q);
    if (q->cb != NULL)
        q->cb(q->arg, q->st, q->addrs, q->naddrs);
    free(q);
}

/* Give q its result (addresses with port 0 are copied with q's port) and
 * schedule the callback. */
static void ready(struct resolver_req *q, enum resolver_status st, const struct sockaddr_any *addrs,
                  size_t n)
{
    struct resolver *r = q->r;

    q->e = NULL;
    q->st = st;
    q->naddrs = 0;
    for (size_t i = 0; st == RESOLVER_OK && i < n && i < RESOLVER_MAX_ADDRS; i++) {
        struct sockaddr_any *a = &q->addrs[q->naddrs++];
        *a = addrs[i];
        if (a->ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)q->port);
        else
            ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)q->port);
    }
    if (st == RESOLVER_OK && q->naddrs == 0)
        q->st = RESOLVER_FAILED;
    list_add(&r->ready, q);
    ev_timer_init(&q->deliver, on_deliver, 0., 0.);
    q->deliver.data = q;
    ev_timer_start(r->loop, &q->deliver);
}

/* ---- the cache -------------------------------------------------------- */

static void entry_free(struct entry *e)
{
    free(e->host);
    free(e);
}

/* Drop entries that hold nothing usable and nobody waits for, oldest answers
 * first, until there is room for one more. */
static void make_room(struct resolver *r)
{
    ev_tstamp now = ev_now(r->loop);
    struct entry **pp = &r->entries, *e;

    while ((e = *pp) != NULL) {
        if (!e->querying && e->waiters == NULL && e->expires <= now) {
            *pp = e->next;
            entry_free(e);
            r->nentries--;
        } else {
            pp = &e->next;
        }
    }
    while (r->nentries >= RESOLVER_MAX_ENTRIES) { /* all fresh: drop the one expiring first */
        struct entry **victim = NULL;
        for (pp = &r->entries; (e = *pp) != NULL; pp = &e->next)
            if (!e->querying && (victim == NULL || e->expires < (*victim)->expires))
                victim = pp;
        if (victim == NULL)
            return;
        e = *victim;
        *victim = e->next;
        entry_free(e);
        r->nentries--;
    }
}

static struct entry *entry_get(struct resolver *r, const char *host)
{
    struct entry *e;

    for (e = r->entries; e != NULL; e = e->next)
        if (strcmp(e->host, host) == 0)
            return e;
    make_room(r);
    if (r->nentries >= RESOLVER_MAX_ENTRIES || (e = calloc(1, sizeof *e)) == NULL)
        return NULL;
    if ((e->host = strdup(host)) == NULL) {
        free(e);
        return NULL;
    }
    e->r = r;
    e->next = r->entries;
    r->entries = e;
    r->nentries++;
    return e;
}

/* c-ares: the answer for an entry. */
static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct entry *e = arg;
    struct resolver *r = e->r;
    enum resolver_status st = RESOLVER_FAILED;
    int ttl = MAX_TTL;

    e->querying = false;
    if (status == ARES_EDESTRUCTION) { /* resolver_free(): entries go with it */
        if (res != NULL)
            ares_freeaddrinfo(res);
        return;
    }
    e->naddrs = 0;
    if (status == ARES_SUCCESS && res != NULL) {
        for (struct ares_addrinfo_node *n = res->nodes; n != NULL; n = n->ai_next) {
            if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                n->ai_addrlen > sizeof e->addrs[0].ss || e->naddrs >= RESOLVER_MAX_ADDRS)
                continue;
            struct sockaddr_any *a = &e->addrs[e->naddrs++];
            memset(a, 0, sizeof *a);
            memcpy(&a->ss, n->ai_addr, n->ai_addrlen);
            a->len = n->ai_addrlen;
            if (n->ai_ttl < ttl)
                ttl = n->ai_ttl < 0 ? 0 : n->ai_ttl;
        }
        for (struct ares_addrinfo_cname *c = res->cnames; c != NULL; c = c->next)
            if (c->ttl < ttl)
                ttl = c->ttl < 0 ? 0 : c->ttl;
        st = e->naddrs > 0 ? RESOLVER_OK : RESOLVER_NOT_FOUND;
    } else if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
        st = RESOLVER_NOT_FOUND;
    }
    if (res != NULL)
        ares_freeaddrinfo(res);
    struct resolver_req *q = e->waiters;
    e->expires = st == RESOLVER_OK ? ev_now(r->loop) + ttl : 0;
    e->waiters = NULL;
    while (q != NULL) {
        struct resolver_req *next = q->next;
        q->prev = q->next = NULL;
        ready(q, st, e->addrs, e->naddrs);
        q = next;
    }
}

/* ---- API -------------------------------------------------------------- */

/* Contract in resolver.h. */
int resolver_new(struct ev_loop *loop, const char *server, unsigned timeout_ms,
                 struct resolver **out, char *err, size_t errlen)
{
    struct ares_options opt;
    struct resolver *r;
    int rc;

    *out = NULL;
    pthread_once(&ares_once, ares_global_init);
    if (ares_init_rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(ares_init_rc));
        return -1;
    }
    if ((r = calloc(1, sizeof *r)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->loop = loop;
    memset(&opt, 0, sizeof opt);
    opt.sock_state_cb = sock_state;
    opt.sock_state_cb_data = r;
    opt.timeout = (int)(timeout_ms ? timeout_ms : 2000);
    opt.tries = 2;
    rc = ares_init_options(&r->ch, &opt,
                           ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        free(r);
        return -1;
    }
    if (server != NULL && *server != '\0' &&
        (rc = ares_set_servers_ports_csv(r->ch, server)) != ARES_SUCCESS) {
        snprintf(err, errlen, "resolver '%s': %s", server, ares_strerror(rc));
        ares_destroy(r->ch);
        free(r);
        return -1;
    }
    ev_timer_init(&r->timer, on_timer, 0., 0.);
    r->timer.data = r;
    *out = r;
    return 0;
}

/* Contract in resolver.h. */
void resolver_free(struct resolver *r)
{
    if (r == NULL)
        return;
    ares_destroy(r->ch); /* on_answer(ARES_EDESTRUCTION) for running queries; sockets closed */
    while (r->socks != NULL) {
        struct sock *s = r->socks;
        r->socks = s->next;
        ev_io_stop(r->loop, &s->io);
        free(s);
    }
    ev_timer_stop(r->loop, &r->timer);
    while (r->entries != NULL) {
        struct entry *e = r->entries;
        r->entries = e->next;
        while (e->waiters != NULL) {
            struct resolver_req *q = e->waiters;
            e->waiters = q->next;
            free(q);
        }
        entry_free(e);
    }
    while (r->ready != NULL) {
        struct resolver_req *q = r->ready;
        r->ready = q->next;
        ev_timer_stop(r->loop, &q->deliver);
        free(q);
    }
    free(r);
}

/* Contract in resolver.h. */
struct resolver_req *resolver_lookup(struct resolver *r, const char *host, unsigned port,
                                     resolver_cb *cb, void *arg)
{
    struct resolver_req *q = calloc(1, sizeof *q);
    struct sockaddr_any lit;
    struct entry *e;

    if (q == NULL)
        return NULL;
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->port = port;
    memset(&lit, 0, sizeof lit);
    struct sockaddr_in *in = (struct sockaddr_in *)&lit.ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&lit.ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        lit.len = sizeof *in;
        ready(q, RESOLVER_OK, &lit, 1);
        return q;
    }
    memset(&lit, 0, sizeof lit);
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        lit.len = sizeof *in6;
        ready(q, RESOLVER_OK, &lit, 1);
        return q;
    }
    if ((e = entry_get(r, host)) == NULL) {
        free(q);
        return NULL;
    }
    if (!e->querying && e->naddrs > 0 && ev_now(r->loop) < e->expires) {
        ready(q, RESOLVER_OK, e->addrs, e->naddrs);
        return q;
    }
    q->e = e;
    list_add(&e->waiters, q);
    if (!e->querying) {
        struct ares_addrinfo_hints hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        e->querying = true;
        /* May answer at once (hosts file, bad name): on_answer() only
         * schedules deliveries, so that is safe here. */
        ares_getaddrinfo(r->ch, host, NULL, &hints, on_answer, e);
        update_timer(r);
    }
    return q;
}

/* Contract in resolver.h. */
void resolver_cancel(struct resolver_req *q)
{
    if (q == NULL)
        return;
    if (q->e != NULL) { /* waiting for a query: leave its answer to the cache */
        list_del(&q->e->waiters, q);
        free(q);
        return;
    }
    ev_timer_stop(q->r->loop, &q->deliver);
    list_del(&q->r->ready, q);
    free(q);
}
