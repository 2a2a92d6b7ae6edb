/* worker.c - event-loop threads: listeners, sessions, reload and drain. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listener.h"
#include "log.h"
#include "pwcheck.h"
#include "redis.h"
#include "resolver.h"
#include "session.h"

#define POOL_MAX_FREE 32 /* buffers kept for reuse per worker */
#define STOP_GRACE 6.0   /* seconds for close handshakes after the last close 1001 */

/* Attach live counters to every route of cfg, creating them by name. */
int gateway_attach_stats(struct gateway *gw, struct config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        cfg->routes[i].stats = metrics_route(&gw->metrics, cfg->routes[i].name);
        if (!cfg->routes[i].stats)
            return -1;
    }
    return 0;
}

static void close_listeners(struct worker *w)
{
    while (w->listeners) {
        struct listener *l = w->listeners;
        w->listeners = l->next;
        listener_close(l);
    }
}

/* Open the listeners of cfg this worker does not have yet and close those cfg
 * no longer names (a spec may have several: systemd passes many sockets).
 * Errors are logged; the rest goes on. */
static int sync_listeners(struct worker *w, struct config *cfg, char *err, size_t errlen)
{
    struct listener *keep = NULL;
    int rc = 0;
    for (size_t i = 0; i < cfg->nlistens; i++) {
        struct listener **pp = &w->listeners, *l;
        int found = 0;
        while ((l = *pp)) {
            if (!listener_matches(l, &cfg->listens[i])) {
                pp = &l->next;
                continue;
            }
            *pp = l->next; /* already open: keep it */
            l->next = keep;
            keep = l;
            found = 1;
        }
        if (found)
            continue;
        if (!(l = listener_open(w, cfg, &cfg->listens[i], err, errlen))) {
            rc = -1;
            continue;
        }
        while (l) {
            struct listener *next = l->next;
            l->next = keep;
            keep = l;
            l = next;
        }
    }
    close_listeners(w);
    w->listeners = keep;
    return rc;
}

static void stop_now(struct worker *w)
{
    while (w->sessions)
        session_abort(w->sessions, "shutting down now");
    close_listeners(w);
    ev_timer_stop(w->loop, &w->drain);
    ev_timer_stop(w->loop, &w->accept_check);
    ev_break(w->loop, EVBREAK_ALL);
}

/* While draining: after drain_timeout every session gets close 1001 once its
 * data is flushed; the worker stops when no relay is left (or the close
 * handshakes took too long). */
static void drain_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    ev_tstamp now = ev_now(loop);
    if (!w->went_away && (w->nbusy == 0 || now >= w->drain_deadline)) {
        w->went_away = 1;
        w->stop_deadline = now + STOP_GRACE;
        for (struct session *s = w->sessions, *next; s; s = next) {
            next = session_next(s);
            session_go_away(s);
        }
    }
    if (w->went_away && (w->nbusy == 0 || now >= w->stop_deadline))
        stop_now(w);
}

static void reload(struct worker *w)
{
    struct gateway *gw = w->gw;
    pthread_mutex_lock(&gw->lock);
    struct config *cfg = config_ref(gw->cfg);
    pthread_mutex_unlock(&gw->lock);
    if (cfg == w->cfg) {
        config_unref(cfg);
        return;
    }
    char err[512];
    if (sync_listeners(w, cfg, err, sizeof(err)) < 0)
        log_msg(WLOG_ERROR, "reload: %s", err);
    if (cfg->buffer_size != w->pool.cap) {
        /* Buffers of the old size are freed as they come back. */
        buf_pool_destroy(&w->pool);
        w->pool.cap = cfg->buffer_size;
    }
    config_unref(w->cfg);
    w->cfg = cfg;
}

/* The main thread posted commands. */
static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct worker *w = a->data;
    unsigned cmd = __atomic_exchange_n(&w->cmd, 0, __ATOMIC_ACQ_REL);
    if (cmd & WCMD_STOP) {
        stop_now(w);
        return;
    }
    if (cmd & WCMD_RELOAD)
        reload(w);
    if (cmd & WCMD_RECORD)
        session_record_drained(w);
    if ((cmd & WCMD_DRAIN) && !w->draining) {
        w->draining = 1;
        w->drain_deadline = ev_now(loop) + w->cfg->drain_timeout_ms / 1000.0;
        ev_timer_init(&w->drain, drain_cb, 0, 0.05);
        w->drain.data = w;
        ev_timer_again(loop, &w->drain);
    }
}

/* The worker's resolver (cfg's `resolver =`, each try within half the
 * default connect_timeout), its Redis context and its password-check port. 0, or -1 with err. */
static int lookups_init(struct worker *w, const struct config *cfg, char *err, size_t errlen)
{
    unsigned try_ms = cfg->defaults.connect_timeout_ms / 2;
    if (resolver_new(w->loop, cfg->resolver, try_ms < 250 ? 250 : try_ms, &w->resolver, err,
                     errlen) < 0)
        return -1;
    if (!(w->redis = redis_ctx_new(w->loop, w->resolver)) ||
        !(w->pwcheck = pwcheck_port_new(w->loop))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
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
    ev_init(&w->drain, drain_cb);
    ev_init(&w->accept_check, listeners_accept_check);
    w->accept_check.data = w;
    if (lookups_init(w, cfg, err, errlen) < 0)
        return -1;
    return sync_listeners(w, cfg, err, errlen);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    ev_run(w->loop, 0);
    if (w->on_exit)
        w->on_exit();
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

/* Post commands to a running worker. */
void worker_post(struct worker *w, unsigned cmd)
{
    __atomic_or_fetch(&w->cmd, cmd, __ATOMIC_ACQ_REL);
    ev_async_send(w->loop, &w->wake);
}

/* Wait for a worker's thread to end. */
void worker_join(struct worker *w)
{
    if (!w->started)
        return;
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
    /* the sessions cancelled their lookups when they closed */
    redis_ctx_free(w->redis);
    w->redis = NULL;
    pwcheck_port_free(w->pwcheck);
    w->pwcheck = NULL;
    if (w->resolver)
        resolver_free(w->resolver);
    w->resolver = NULL;
    ev_async_stop(w->loop, &w->wake);
    ev_timer_stop(w->loop, &w->drain);
    ev_timer_stop(w->loop, &w->accept_check);
    buf_pool_destroy(&w->pool);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
    config_unref(w->cfg);
    w->cfg = NULL;
}
