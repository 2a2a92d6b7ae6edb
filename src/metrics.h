/* metrics.h - live counters per route and their Prometheus text rendering.
 *
 * Counters are shared by all workers and updated with relaxed atomic adds;
 * they are kept by route name so they survive reloads. */
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
        400, 403, 404, 405, 426, 431, 500, 502, 503, 504, 505                                      \
    }
#define METRICS_NSTATUS 11
#define METRICS_NBUCKETS 10 /* connect-time histogram buckets, +Inf excluded */

struct route_stats {
    struct route_stats *next;
    char *name; /* "" for failures before a route was known */
    uint32_t active;
    uint64_t results[RESULT_COUNT];
    uint64_t failures[METRICS_NSTATUS];
    uint64_t bytes_up, bytes_down;
    uint64_t connect_buckets[METRICS_NBUCKETS + 1]; /* last = +Inf */
    uint64_t connect_count;
    uint64_t connect_usec_sum;
};

struct metrics {
    struct route_stats *routes; /* prepend-only list, published atomically */
    struct route_stats none;    /* failures with no route */
};

/* The counters for route name, created on first use (main thread only, at
 * configuration load). NULL when out of memory. */
struct route_stats *metrics_route(struct metrics *m, const char *name);
/* Free every counter (at exit). */
void metrics_free(struct metrics *m);

static inline void metrics_add(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

/* Count a handshake answered with status (no-op for statuses not listed). */
void metrics_failure(struct metrics *m, struct route_stats *rs, int status);
/* Observe one successful backend connect that took seconds. */
void metrics_connect_time(struct route_stats *rs, double seconds);

/* Render every metric in the Prometheus text format into a malloc'd string;
 * *len gets its length. NULL when out of memory. */
char *metrics_render(struct metrics *m, size_t *len);

#endif
