/* metrics.c - counters and the Prometheus text format. */
#include "metrics.h"

#include "log.h"
#include "record.h"
#include "tlsrec.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int statuses[METRICS_NSTATUS] = METRICS_STATUSES;
static const double bucket_bounds[METRICS_NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                       0.025,  0.05,  0.1,    0.5,   1.0};
static const char *const result_names[RESULT_COUNT] = {
    "normal", "client_dropped", "protocol_error", "backend_error", "timeout", "shutdown", "error"};

/* A route_stats named name with zeroed slots, or NULL. */
static struct route_stats *stats_new(const char *name, unsigned nslots)
{
    struct route_stats *r = calloc(1, sizeof(*r));
    size_t size = (nslots ? nslots : 1) * sizeof(struct route_counters);
    if (!r || !(r->name = strdup(name)) ||
        !(r->slot = aligned_alloc(_Alignof(struct route_counters), size))) {
        if (r)
            free(r->name);
        free(r);
        return NULL;
    }
    memset(r->slot, 0, size);
    return r;
}

static void stats_free(struct route_stats *r)
{
    if (!r)
        return;
    free(r->slot);
    free(r->name);
    free(r);
}

/* Set up m for nslots workers. */
int metrics_init(struct metrics *m, unsigned nslots)
{
    memset(m, 0, sizeof(*m));
    m->nslots = nslots;
    m->none = stats_new("", nslots);
    return m->none ? 0 : -1;
}

/* The counters for route name, created on first use. */
struct route_stats *metrics_route(struct metrics *m, const char *name)
{
    for (struct route_stats *r = m->routes; r; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    struct route_stats *r = stats_new(name, m->nslots);
    if (!r)
        return NULL;
    r->next = m->routes;
    __atomic_store_n(&m->routes, r, __ATOMIC_RELEASE);
    return r;
}

/* Free every counter. */
void metrics_free(struct metrics *m)
{
    while (m->routes) {
        struct route_stats *r = m->routes;
        m->routes = r->next;
        stats_free(r);
    }
    stats_free(m->none);
    m->none = NULL;
}

/* Count a handshake answered with status. */
void metrics_failure(struct metrics *m, struct route_stats *rs, unsigned worker, int status)
{
    for (int i = 0; i < METRICS_NSTATUS; i++) {
        if (statuses[i] == status) {
            metrics_add(&(rs ? rs : m->none)->slot[worker].failures[i], 1);
            return;
        }
    }
}

/* Observe one successful backend connect. */
void metrics_connect_time(struct route_counters *c, double seconds)
{
    int i = 0;
    while (i < METRICS_NBUCKETS && seconds > bucket_bounds[i])
        i++;
    metrics_add(&c->connect_buckets[i], 1);
    metrics_add(&c->connect_count, 1);
    metrics_add(&c->connect_usec_sum, (uint64_t)(seconds * 1e6));
}

struct out {
    char *b;
    size_t n, cap;
    int oom;
};

static void outf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct out *o, const char *fmt, ...)
{
    for (;;) {
        if (o->oom)
            return;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(o->b + o->n, o->cap - o->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < o->cap - o->n) {
            o->n += (size_t)k;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)(k > 0 ? k : 0);
        char *b = realloc(o->b, cap);
        if (!b) {
            o->oom = 1;
            return;
        }
        o->b = b;
        o->cap = cap;
    }
}

/* The sum over every worker's slot of the counter at offset off of struct
 * route_counters. */
static uint64_t sum(const struct metrics *m, const struct route_stats *r, size_t off)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < (m->nslots ? m->nslots : 1); i++)
        total +=
            __atomic_load_n((const uint64_t *)((const char *)&r->slot[i] + off), __ATOMIC_RELAXED);
    return total;
}

#define SUM(field) sum(m, r, offsetof(struct route_counters, field))

/* Route names are [A-Za-z0-9_.-]+ (config.c checks), so they need no escaping. */
static void render_failures(struct out *o, const struct metrics *m, const struct route_stats *r)
{
    for (int i = 0; i < METRICS_NSTATUS; i++) {
        if (statuses[i] == METRICS_STATUS_PROXY)
            outf(o, "wsgate_handshake_failures_total{route=\"%s\",status=\"proxy\"} %llu\n",
                 r->name, (unsigned long long)SUM(failures[i]));
        else
            outf(o, "wsgate_handshake_failures_total{route=\"%s\",status=\"%d\"} %llu\n", r->name,
                 statuses[i], (unsigned long long)SUM(failures[i]));
    }
}

/* The metrics without a route label: recordings, TLS record offload, the
 * log queue. */
static void render_process(struct out *o)
{
    struct record_stats rs;
    record_get_stats(&rs);
    outf(o,
         "# HELP wsgate_recordings_total Session recordings opened, and those stopped early "
         "(queue full, write error, file not opened; the session went on).\n"
         "# TYPE wsgate_recordings_total counter\n"
         "wsgate_recordings_total{result=\"opened\"} %llu\n"
         "wsgate_recordings_total{result=\"stopped\"} %llu\n"
         "# HELP wsgate_recording_bytes_total Payload bytes written to recordings, and bytes "
         "relayed but not recorded because their recording had stopped.\n"
         "# TYPE wsgate_recording_bytes_total counter\n"
         "wsgate_recording_bytes_total{result=\"written\"} %llu\n"
         "wsgate_recording_bytes_total{result=\"dropped\"} %llu\n"
         "# HELP wsgate_recording_files_open Recording files open now.\n"
         "# TYPE wsgate_recording_files_open gauge\n"
         "wsgate_recording_files_open %llu\n",
         (unsigned long long)rs.opened, (unsigned long long)rs.stopped,
         (unsigned long long)rs.bytes_written, (unsigned long long)rs.bytes_dropped,
         (unsigned long long)rs.files_open);
    uint64_t taken, kept;
    tlsrec_counts(&taken, &kept);
    outf(o,
         "# HELP wsgate_tls_record_offload_total TLS connections whose records wsgate took over "
         "from OpenSSL after the handshake ([tls] record_offload), and those left to it.\n"
         "# TYPE wsgate_tls_record_offload_total counter\n"
         "wsgate_tls_record_offload_total{result=\"taken\"} %llu\n"
         "wsgate_tls_record_offload_total{result=\"openssl\"} %llu\n",
         (unsigned long long)taken, (unsigned long long)kept);
    outf(o,
         "# HELP wsgate_log_lines_dropped_total Log lines dropped because stderr was not "
         "read fast enough.\n# TYPE wsgate_log_lines_dropped_total counter\n"
         "wsgate_log_lines_dropped_total %llu\n",
         (unsigned long long)log_lines_dropped());
}

/* Render every metric in the Prometheus text format. */
char *metrics_render(struct metrics *m, size_t *len)
{
    struct out o = {.b = malloc(4096), .cap = 4096};
    if (!o.b)
        return NULL;
    struct route_stats *head = __atomic_load_n(&m->routes, __ATOMIC_ACQUIRE);

    outf(&o, "# HELP wsgate_build_info Build information.\n# TYPE wsgate_build_info gauge\n"
             "wsgate_build_info{version=\"" PACKAGE_VERSION "\"} 1\n");
    outf(&o, "# HELP wsgate_sessions_active Upgraded sessions now open.\n"
             "# TYPE wsgate_sessions_active gauge\n");
    for (struct route_stats *r = head; r; r = r->next)
        outf(&o, "wsgate_sessions_active{route=\"%s\"} %u\n", r->name,
             __atomic_load_n(&r->active, __ATOMIC_RELAXED));
    outf(&o, "# HELP wsgate_sessions_total Upgraded sessions ended, by result.\n"
             "# TYPE wsgate_sessions_total counter\n");
    for (struct route_stats *r = head; r; r = r->next)
        for (int i = 0; i < RESULT_COUNT; i++)
            outf(&o, "wsgate_sessions_total{route=\"%s\",result=\"%s\"} %llu\n", r->name,
                 result_names[i], (unsigned long long)SUM(results[i]));
    outf(&o, "# HELP wsgate_handshake_failures_total Upgrade requests refused, by HTTP status.\n"
             "# TYPE wsgate_handshake_failures_total counter\n");
    render_failures(&o, m, m->none);
    for (struct route_stats *r = head; r; r = r->next)
        render_failures(&o, m, r);
    outf(&o, "# HELP wsgate_bytes_total Payload bytes relayed (up = client to backend).\n"
             "# TYPE wsgate_bytes_total counter\n");
    for (struct route_stats *r = head; r; r = r->next) {
        outf(&o, "wsgate_bytes_total{route=\"%s\",direction=\"up\"} %llu\n", r->name,
             (unsigned long long)SUM(bytes_up));
        outf(&o, "wsgate_bytes_total{route=\"%s\",direction=\"down\"} %llu\n", r->name,
             (unsigned long long)SUM(bytes_down));
    }
    outf(&o, "# HELP wsgate_wire_bytes_total WebSocket frame bytes on the client connection, "
             "compressed or not (up = from the client).\n"
             "# TYPE wsgate_wire_bytes_total counter\n");
    for (struct route_stats *r = head; r; r = r->next) {
        outf(&o, "wsgate_wire_bytes_total{route=\"%s\",direction=\"up\"} %llu\n", r->name,
             (unsigned long long)SUM(wire_up));
        outf(&o, "wsgate_wire_bytes_total{route=\"%s\",direction=\"down\"} %llu\n", r->name,
             (unsigned long long)SUM(wire_down));
    }
    outf(&o, "# HELP wsgate_buffered_bytes Bytes held in relay buffers now (up = read from the "
             "client, not yet written to the backend).\n"
             "# TYPE wsgate_buffered_bytes gauge\n");
    for (struct route_stats *r = head; r; r = r->next) {
        outf(&o, "wsgate_buffered_bytes{route=\"%s\",direction=\"up\"} %llu\n", r->name,
             (unsigned long long)SUM(buffered_up));
        outf(&o, "wsgate_buffered_bytes{route=\"%s\",direction=\"down\"} %llu\n", r->name,
             (unsigned long long)SUM(buffered_down));
    }
    outf(&o, "# HELP wsgate_backend_connect_seconds Time to connect to a backend.\n"
             "# TYPE wsgate_backend_connect_seconds histogram\n");
    for (struct route_stats *r = head; r; r = r->next) {
        uint64_t cum = 0;
        for (int i = 0; i <= METRICS_NBUCKETS; i++) {
            cum += SUM(connect_buckets[i]);
            if (i < METRICS_NBUCKETS)
                outf(&o, "wsgate_backend_connect_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                     r->name, bucket_bounds[i], (unsigned long long)cum);
            else
                outf(&o, "wsgate_backend_connect_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                     r->name, (unsigned long long)cum);
        }
        outf(&o, "wsgate_backend_connect_seconds_sum{route=\"%s\"} %.6f\n", r->name,
             SUM(connect_usec_sum) / 1e6);
        outf(&o, "wsgate_backend_connect_seconds_count{route=\"%s\"} %llu\n", r->name,
             (unsigned long long)SUM(connect_count));
    }
    render_process(&o);
    if (o.oom) {
        free(o.b);
        return NULL;
    }
    *len = o.n;
    return o.b;
}
