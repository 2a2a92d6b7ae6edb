/* worker.c - event-loop threads and the process-wide gateway state. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listener.h"
#include "log.h"
#include "session.h"

#define POOL_MAX_FREE 256
#define STOP_GRACE 6.0 /* seconds for sessions to finish their close handshake */

/* Attach live counters to every route of cfg, creating them by name. */
int gateway_attach_stats(struct gateway *gw, struct config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct route *r = &cfg->routes[i];
        struct route_stats *st;
        for (st = gw->stats; st; st = st->next)
            if (strcmp(st->name, r->name) == 0)
                break;
        if (!st) {
            st = calloc(1, sizeof(*st));
            if (!st || !(st->name = strdup(r->name))) {
                free(st);
                return -1;
            }
            st->next = gw->stats;
            gw->stats = st;
        }
        r->stats = st;
    }
    return 0;
}

/* Free the counters. */
void gateway_free_stats(struct gateway *gw)
{
    while (gw->stats) {
        struct route_stats *st = gw->stats;
        gw->stats = st->next;
        free(st->name);
        free(st);
    }
}

static void close_listeners(struct worker *w)
{
    while (w->listeners) {
        struct listener *l = w->listeners;
        w->listeners = l->next;
        listener_close(l);
    }
}

/* While stopping: end the loop once every session is gone, or abort the
 * stragglers when the grace period is over. */
static void deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    if (w->nsessions > 0 && ev_now(loop) - w->stopping_since < STOP_GRACE)
        return;
    while (w->sessions)
        session_abort(w->sessions, "shutting down: grace period over");
    ev_timer_stop(loop, t);
    ev_break(loop, EVBREAK_ALL);
}

/* Another thread asked us to stop: no new connections, every session gets a
 * close 1001 after its pending data. */
static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct worker *w = a->data;
    if (w->stopping)
        return;
    w->stopping = 1;
    w->stopping_since = ev_now(loop);
    close_listeners(w);
    for (struct session *s = w->sessions, *next; s; s = next) {
        next = session_next(s);
        session_go_away(s);
    }
    ev_timer_init(&w->deadline, deadline_cb, 0.02, 0.05);
    w->deadline.data = w;
    ev_timer_start(loop, &w->deadline);
}

/* Set up worker id with its own loop and listeners. */
int worker_init(struct worker *w, struct gateway *gw, unsigned id, struct config *cfg, char *err,
                size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->gw = gw;
    w->id = id;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!w->loop) {
        snprintf(err, errlen, "cannot create an event loop");
        return -1;
    }
    w->cfg = config_ref(cfg);
    buf_pool_init(&w->pool, cfg->buffer_size, POOL_MAX_FREE);
    ev_async_init(&w->wake, wake_cb);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    for (size_t i = 0; i < cfg->nlistens; i++) {
        struct listener *l = listener_open(w, &cfg->listens[i], err, errlen);
        if (!l)
            return -1;
        l->next = w->listeners;
        w->listeners = l;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    ev_run(w->loop, 0);
    return NULL;
}

/* Run the worker's loop on a new thread. Signals stay with the main thread. */
int worker_start(struct worker *w)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    w->started = 1;
    return 0;
}

/* Ask a running worker to stop and wait for its thread. */
void worker_stop(struct worker *w)
{
    if (!w->started)
        return;
    ev_async_send(w->loop, &w->wake);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

/* Free what worker_init made. */
void worker_destroy(struct worker *w)
{
    if (!w->loop)
        return;
    while (w->sessions)
        session_abort(w->sessions, "shutting down");
    close_listeners(w);
    ev_async_stop(w->loop, &w->wake);
    ev_timer_stop(w->loop, &w->deadline);
    buf_pool_destroy(&w->pool);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
    config_unref(w->cfg);
    w->cfg = NULL;
}
