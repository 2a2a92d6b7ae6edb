/* route_bench.c - cost of config_match_route() with N host+path routes, the
 * hash table against the linear scan on the same configuration.
 * Usage: route_bench [N] (default 1000). Prints ns per lookup. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/config.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ns per lookup over every route's own Host and path (plus a sub-path). */
static double measure(const struct config *c, int n, int rounds)
{
    char host[64], path[64];
    volatile const struct route *sink = NULL;
    double t0 = now();
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            int hl = snprintf(host, sizeof host, "h%d.example.com:443", i);
            int pl = snprintf(path, sizeof path, "/console/p%d/ws", i % 7);
            sink = config_match_route(c, host, (size_t)hl, path, (size_t)pl);
        }
    (void)sink;
    return (now() - t0) * 1e9 / ((double)rounds * n);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    size_t cap = (size_t)n * 128 + 64, len = 0;
    char *ini = malloc(cap), err[4096];
    struct config *c;
    for (int i = 0; i < n && ini; i++)
        len += (size_t)snprintf(ini + len, cap - len,
                                "[route:r%d]\nhost = h%d.example.com\npath = /console/p%d/\n"
                                "backend = 127.0.0.1:1\n",
                                i, i, i % 7);
    if (!ini || config_load_string("bench", ini, &c, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", ini ? err : "out of memory");
        return 1;
    }
    free(ini);
    int rounds = n >= 1000 ? 20 : 2000;
    double table = measure(c, n, rounds);
    struct route_table *t = c->route_table;
    c->route_table = NULL;
    double linear = measure(c, n, n >= 1000 ? 1 : 100);
    c->route_table = t;
    printf("%d routes: table %.0f ns/lookup, linear scan %.0f ns/lookup\n", n, table, linear);
    config_unref(c);
    return 0;
}
