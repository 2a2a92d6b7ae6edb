/* metrics.h - live counters per route and their Prometheus text rendering.
 *
 * Every route's counters come in one slot per worker: a worker adds only to
 * its own slot (a plain load and store, no locked instruction, no cache line
 * shared with another worker) and a scrape sums the slots. Only the active
 * gauge, which the per-route connection limit reads, is one shared atomic.
 * Counters are kept by route name so they survive reloads. */
#ifndef WSGATE_METRICS_H
#define WSGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Why an upgraded session ended (wsgate_sessions_total{result}). */
enum session_result {
    RESULT_NORMAL,         /* close handshake or backend EOF, every byte delivered */
    RESULT_CLIENT_DROPPED, /* the client went away without a close frame */
    RESULT_PROTOCOL_ERROR, /* the client broke RFC 6455 (1002/1007/1009) */
    RESULT_BACKEND_ERROR,  /* backend reset or write error (1011) */
    RESULT_TIMEOUT,        /* pong, idle or close timeout */
    RESULT_SHUTDOWN,       /* drained or stopped by a signal */
    RESULT_ERROR,          /* out of memory and the like */
    RESULT_COUNT
};

/* Handshake statuses counted in wsgate_handshake_failures_total{status}. */
#define METRICS_STATUSES                                                                           \
    {                                                                                              \
        400, 401, 403, 404, 405, 414, 426, 429, 431, 500, 502, 503, 504, 505, METRICS_STATUS_PROXY \
    }
#define METRICS_NSTATUS 15
#define METRICS_STATUS_PROXY 1000 /* a bad or missing PROXY header: status="proxy" */
#define METRICS_NBUCKETS 10       /* connect-time histogram buckets, +Inf excluded */

/* One worker's counters of one route (a cache line of its own at least). */
struct route_counters {
    uint64_t results[RESULT_COUNT];
    uint64_t failures[METRICS_NSTATUS];
    uint64_t bytes_up, bytes_down;
    uint64_t wire_up, wire_down; /* frame bytes on the client connection (headers included) */
    uint64_t connect_buckets[METRICS_NBUCKETS + 1]; /* last = +Inf */
    uint64_t connect_count;
    uint64_t connect_usec_sum;
    /* gauges: bytes held in relay buffers (up = read from the client, not
     * yet taken by the backend); each session adds its changes to its own
     * worker's slot (a decrease as a wrapping add) and takes all back at its end */
    uint64_t buffered_up, buffered_down;
} __attribute__((aligned(64)));

struct route_stats {
    struct route_stats *next;
    char *name;                  /* "" for failures before a route was known */
    uint32_t active;             /* shared by all workers (atomic) */
    struct route_counters *slot; /* [metrics.nslots], one per worker */
};

struct metrics {
    struct route_stats *routes; /* prepend-only list, published atomically */
    struct route_stats *none;   /* failures with no route */
    unsigned nslots;            /* workers */
};

/* Set up m for nslots workers. Returns 0, or -1 when out of memory. */
int metrics_init(struct metrics *m, unsigned nslots);
/* The counters for route name, created on first use (main thread only, at
 * configuration load). NULL when out of memory. */
struct route_stats *metrics_route(struct metrics *m, const char *name);
/* Free every counter (at exit). */
void metrics_free(struct metrics *m);

/* Add n to a counter of the calling worker's own slot. Only that worker
 * writes it, so no locked add is needed; the relaxed atomic load and store
 * keep a concurrent scrape well defined. */
static inline void metrics_add(uint64_t *counter, uint64_t n)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* Count a handshake worker answered with status, for route rs (NULL: none
 * known yet); no-op for statuses not listed. */
void metrics_failure(struct metrics *m, struct route_stats *rs, unsigned worker, int status);
/* Observe one successful backend connect that took seconds. */
void metrics_connect_time(struct route_counters *c, double seconds);

/* Render every metric in the Prometheus text format into a malloc'd string;
 * *len gets its length. NULL when out of memory. */
char *metrics_render(struct metrics *m, size_t *len);

#endif
