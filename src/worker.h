/* worker.h - the gateway (process-wide state) and its workers: one thread and
 * one event loop each, with their own listening sockets and sessions. */
#ifndef WSGATE_WORKER_H
#define WSGATE_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"

/* Live counters of a route, kept by name so they outlive reloads. */
struct route_stats {
    struct route_stats *next;
    char *name;
    uint32_t active; /* atomic */
    uint64_t total;  /* atomic */
};

struct worker;
struct listener;
struct session;

/* Process-wide state. The configuration pointer is swapped under lock; the
 * counters are updated with atomic builtins. */
struct gateway {
    pthread_mutex_t lock;
    struct config *cfg;
    uint32_t active; /* sessions holding a connection slot, all workers */
    struct route_stats *stats;
    struct worker *workers;
    unsigned nworkers;
};

struct worker {
    struct gateway *gw;
    unsigned id;
    struct ev_loop *loop;
    pthread_t thread;
    ev_async wake;    /* another thread asks this worker to stop */
    ev_timer deadline; /* bound on the time a stop may take */
    int stopping;
    int started; /* the thread runs */
    ev_tstamp stopping_since;
    struct config *cfg; /* configuration new sessions get (one reference) */
    struct listener *listeners;
    struct session *sessions; /* doubly linked */
    unsigned nsessions;
    struct buf_pool pool;
};

/* Attach live counters to every route of cfg (creating them by name). */
int gateway_attach_stats(struct gateway *gw, struct config *cfg);
/* Free the counters. */
void gateway_free_stats(struct gateway *gw);

/* Set up worker id of gw with its own loop and listeners for cfg. Returns 0,
 * or -1 with a message in err. */
int worker_init(struct worker *w, struct gateway *gw, unsigned id, struct config *cfg, char *err,
                size_t errlen);
/* Run the worker's loop on a new thread. */
int worker_start(struct worker *w);
/* Ask a running worker to stop (thread-safe) and wait for its thread. */
void worker_stop(struct worker *w);
/* Free what worker_init made. */
void worker_destroy(struct worker *w);

#endif
