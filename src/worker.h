/* worker.h - the gateway (process-wide state) and its workers: one thread and
 * one event loop each, with their own listening sockets and sessions. */
#ifndef WSGATE_WORKER_H
#define WSGATE_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "metrics.h"

struct worker;
struct listener;
struct redis_ctx;
struct resolver;
struct pwcheck_port;
struct session;
struct iptable;

/* Process-wide state. Workers share only the configuration pointer (handed
 * over under lock on reload), the counters (one slot per worker, see metrics.h)
 * and the connection-limit gauges (atomic). */
struct gateway {
    pthread_mutex_t lock;
    struct config *cfg; /* the newest configuration */
    uint32_t active;    /* sessions holding a connection slot, all workers */
    int draining;       /* atomic: SIGTERM received, new upgrades get 503 */
    struct metrics metrics;
    struct worker *workers;
    unsigned nworkers;
    struct iptable *iptable; /* per-address counts and rates (iptable.h), shared */
    uint32_t handshaking;    /* atomic: connections in their handshake (max_handshakes) */
};

/* Commands a worker receives from the main thread (bits, atomic). */
enum {
    WCMD_RELOAD = 1, /* take gw->cfg for new sessions and listeners */
    WCMD_DRAIN = 2,  /* drain: finish sessions within drain_timeout, then stop */
    WCMD_STOP = 4,   /* close everything now and stop */
    WCMD_RECORD = 8, /* the recording queue drained: sessions waiting for it go on */
};

struct worker {
    struct gateway *gw;
    unsigned id;
    struct ev_loop *loop;
    pthread_t thread;
    int started;    /* the thread runs */
    ev_async wake;  /* the main thread posted commands */
    unsigned cmd;   /* atomic WCMD_* bits */
    ev_timer drain; /* while draining: checks progress */
    int draining, went_away;
    ev_tstamp drain_deadline, stop_deadline;
    struct config *cfg; /* configuration new sessions get (one reference) */
    struct listener *listeners;
    struct session *sessions; /* doubly linked */
    unsigned nsessions;       /* all connections */
    unsigned nbusy;           /* relays and downloads drain waits for */
    struct buf_pool pool;
    ev_timer accept_check; /* while accepts are paused for max_handshakes */
    bool accept_paused;
    struct resolver *resolver;    /* c-ares on this loop: backend and Redis host names */
    struct redis_ctx *redis;      /* token_redis lookups on this loop (one connection per store) */
    struct pwcheck_port *pwcheck; /* Basic-auth password checks answered on this loop */
    void (*on_exit)(void);        /* called on the worker's thread when its loop ends */
};

/* Attach live counters to every route of cfg (creating them by name). */
int gateway_attach_stats(struct gateway *gw, struct config *cfg);

/* Set up worker id of gw with its own loop and listeners for cfg. Returns 0,
 * or -1 with a message in err. */
int worker_init(struct worker *w, struct gateway *gw, unsigned id, struct config *cfg, char *err,
                size_t errlen);
/* Run the worker's loop on a new thread. */
int worker_start(struct worker *w);
/* Post commands to a running worker (thread-safe). */
void worker_post(struct worker *w, unsigned cmd);
/* Wait for a worker's thread to end. */
void worker_join(struct worker *w);
/* Free what worker_init made. */
void worker_destroy(struct worker *w);

#endif
