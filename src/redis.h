/* redis.h - websockify TokenRedis lookups on a worker's event loop.
 *
 * One struct redis_ctx per worker loop. It keeps one connection per distinct
 * Redis server (host, port, db, user, password) that this worker's routes
 * use, opened at the first lookup (lazily) and kept; routes that share a
 * store share the connection, and lookups are pipelined on it. A lookup is
 * GET PREFIX+token, answered within the route's connect_timeout:
 *
 *   REDIS_FOUND        the value parsed as a target (redis_target.h)
 *   REDIS_NOT_FOUND    no such key, or a value that is no target (logged)
 *   REDIS_UNAVAILABLE  Redis unreachable, refusing, failing AUTH/SELECT,
 *                      or silent/slow beyond the timeout (the core answers
 *                      503: fail closed)
 *
 * A connection that fails, or a lookup that times out on it, is closed;
 * while it is down, lookups answer REDIS_UNAVAILABLE at once, and it is
 * reconnected after a back-off (250 ms doubling, capped at 5 s). An outage
 * is logged once when it starts (again only when the server answers but
 * refuses AUTH or SELECT in a new way) and once when it ends. Tokens and passwords
 * never appear in log lines.
 *
 * Host names of Redis servers are resolved with the worker's resolver
 * (resolver.h), never blocking the loop. Callbacks never run inside
 * redis_lookup(). */
#ifndef WSGATE_REDIS_H
#define WSGATE_REDIS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "redis_target.h"

struct route;
struct resolver;
struct redis_ctx;
struct redis_req;

enum redis_result { REDIS_FOUND, REDIS_NOT_FOUND, REDIS_UNAVAILABLE };

#define REDIS_TARGET_MAX 300   /* bytes of a target "host:port" with its NUL */
#define REDIS_BACKOFF_MIN 0.25 /* seconds before the first reconnect */
#define REDIS_BACKOFF_MAX 5.0  /* reconnect back-off cap, seconds */

/* The answer to a lookup: target ("host:port" or "[v6]:port") is set only
 * for REDIS_FOUND and valid during the call. */
typedef void redis_cb(void *arg, enum redis_result res, const char *target);

/* A context on loop; res (not owned, may be shared with other users on the
 * same loop) resolves server host names. NULL when out of memory. */
struct redis_ctx *redis_ctx_new(struct ev_loop *loop, struct resolver *res);

/* Close every connection and free ctx. Pending lookups are dropped without
 * their callbacks (cancel them first when their owner cares). Before the
 * resolver is freed. */
void redis_ctx_free(struct redis_ctx *ctx);

/* Look token[0..len) up in the store t (prefix t->prefix) within timeout_ms;
 * cb(arg, ...) runs exactly once, later, unless redis_cancel() comes first.
 * Returns the handle, or NULL when out of memory (cb never runs). */
struct redis_req *redis_lookup(struct redis_ctx *ctx, const struct redis_target *t,
                               uint32_t timeout_ms, const char *token, size_t len, redis_cb *cb,
                               void *arg);

/* redis_lookup() with a route's store (route->redis) and connect_timeout. */
struct redis_req *redis_lookup_route(struct redis_ctx *ctx, const struct route *route,
                                     const char *token, size_t len, redis_cb *cb, void *arg);

/* Forget a pending lookup: its callback will not run and arg is never
 * touched again. Only before the callback ran. */
void redis_cancel(struct redis_req *q);

#endif
